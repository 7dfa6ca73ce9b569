"""Silver: bronze rows -> typed, cleaned, validated, deduplicated, pseudonymised tables.

A silver table is declared in ``conf/tables/<name>.yaml`` (:class:`SilverTableSpec`): the bronze
table it reads, its columns (parsed from a raw column with cleaning steps, or derived by a SQL
expression), the dedup key, expectations, table checks and PII columns.

:func:`build_silver` turns one bronze snapshot into a :class:`SilverPlan` (all lazy):

1. keep the raw strings in a struct (quarantine rows show them exactly as ingested);
2. parse every column strictly (``parse:<column>`` when a present value does not parse) and
   mark rows with ``_rescued_data`` (``malformed_line``);
3. derive columns, then check the row rules (``drop``/``warn``/``fail``);
4. among the rows that passed, deduplicate on the key keeping the latest record
   (``_ingested_at``, then ``_batch_id``, then ``_source_file``, all descending; a hash of the
   raw row breaks remaining ties so reruns choose the same row);
5. check ``unique`` rules on the deduplicated rows;
6. every bronze row gets exactly one ``_outcome``: ``clean``, ``quarantined`` or
   ``duplicate`` - so bronze rows = silver + quarantined + duplicates, by construction and by
   count (the job verifies it);
7. PII columns are hashed or dropped - in silver *and* in the quarantine's raw columns.

Example:
    >>> spec = load_table_specs(Path("conf/tables"))["transactions"]
    >>> plan = build_silver(bronze_df, spec, as_of=now, run_id="r1", quarantined_at=now,
    ...                     pii_key=None)
    >>> plan.silver, plan.quarantine
"""

from featurelake.lakehouse.silver.counts import (
    METRICS_SCHEMA,
    METRICS_TABLE,
    SilverCounts,
    fatal_examples,
    fatal_failures,
    quality_metric_rows,
    summarize_counts,
)
from featurelake.lakehouse.silver.job import (
    run_silver,
)
from featurelake.lakehouse.silver.pairs import (
    SilverPair,
    SilverPairError,
    read_silver,
    read_silver_pair,
)
from featurelake.lakehouse.silver.spec import (
    DEFAULT_LATEST_BY,
    INVALID_ENCODING_RULE,
    LINEAGE_COLUMNS,
    MALFORMED_RULE,
    OUTCOME,
    RAW,
    RESCUED,
    TOTAL_RULE,
    DedupSpec,
    SilverTableSpec,
    load_table_specs,
    silver_constraints,
)
from featurelake.lakehouse.silver.transform import (
    BronzeSchemaError,
    SilverPlan,
    build_silver,
)

__all__ = [
    "BronzeSchemaError",
    "DEFAULT_LATEST_BY",
    "DedupSpec",
    "INVALID_ENCODING_RULE",
    "LINEAGE_COLUMNS",
    "MALFORMED_RULE",
    "METRICS_SCHEMA",
    "METRICS_TABLE",
    "OUTCOME",
    "RAW",
    "RESCUED",
    "SilverCounts",
    "SilverPair",
    "SilverPairError",
    "SilverPlan",
    "SilverTableSpec",
    "TOTAL_RULE",
    "build_silver",
    "fatal_examples",
    "fatal_failures",
    "load_table_specs",
    "quality_metric_rows",
    "read_silver",
    "read_silver_pair",
    "run_silver",
    "silver_constraints",
    "summarize_counts",
]
