"""Bronze: raw files into append-only tables, every line kept, with lineage.

Two halves:

* **File inventory** (plain Python over the landing folder): which files match a source's glob,
  which of them were ingested before according to ``bronze/_ingested_files``, and what to do
  with a file that changed under the same name (:func:`plan_ingest`).
* **Reading** (:func:`read_source_rows`): the one reader of raw files, used by the bronze job
  and by batch scoring on raw input, so both parse a file identically.
* **Pure transformations** of the raw text: CSV and JSON files are read one row per line
  (``spark.read.text``) so that no line can be lost, then split into the declared columns with
  Spark's own parsers (``from_csv``/``from_json`` in PERMISSIVE mode). A line that does not fit
  - wrong number of fields, a quote out of place, invalid JSON or more than one JSON value, a
  field the declaration does not know, bytes that are not text in the source's encoding -
  keeps its raw text in ``_rescued_data``; clean rows have ``_rescued_data`` null.

Limits of line-based reading: a quoted CSV field spanning several lines becomes one rescued
row per line (nothing is lost, silver quarantines them); blank lines carry no data and are not
rows; a data line identical to its file's header line is taken for a header.

Example:
    >>> parsed = read_source_rows(spark, spec, "/landing/online_retail/*.csv.gz")
    >>> bronze = parsed.transform(with_lineage, spec=spec, batch_id="b1", ingested_at=now)

    or, step by step:

    >>> lines = spark.read.text(paths).select("value", source_file_from_uri("_metadata.file_path"))
    >>> bronze = lines.transform(parse_csv_lines, spec=spec, header=header, header_line=first)
    >>> bronze = bronze.transform(with_lineage, spec=spec, batch_id="b1", ingested_at=now)
"""

from featurelake.lakehouse.bronze.landing import (
    ChangedFileError,
    IngestPlan,
    LandedFile,
    file_sha256,
    list_landed_files,
    plan_ingest,
    unreadable_reason,
)
from featurelake.lakehouse.bronze.parsing import (
    align_parquet_columns,
    bronze_schema,
    parse_csv_header,
    parse_csv_lines,
    parse_json_lines,
    read_first_line,
    read_source_rows,
    resolve_source_paths,
    source_file_from_uri,
    with_decoded_lines,
    with_lineage,
)
from featurelake.lakehouse.bronze.schema import (
    BATCH_ID,
    ERROR_PREVIEW,
    INGESTED_AT,
    INGESTED_FILES_SCHEMA,
    INGESTED_FILES_TABLE,
    RESCUED_DATA,
    SOURCE_FILE,
)

__all__ = [
    "BATCH_ID",
    "ChangedFileError",
    "ERROR_PREVIEW",
    "INGESTED_AT",
    "INGESTED_FILES_SCHEMA",
    "INGESTED_FILES_TABLE",
    "IngestPlan",
    "LandedFile",
    "RESCUED_DATA",
    "SOURCE_FILE",
    "align_parquet_columns",
    "bronze_schema",
    "file_sha256",
    "list_landed_files",
    "parse_csv_header",
    "parse_csv_lines",
    "parse_json_lines",
    "plan_ingest",
    "read_first_line",
    "read_source_rows",
    "resolve_source_paths",
    "source_file_from_uri",
    "unreadable_reason",
    "with_decoded_lines",
    "with_lineage",
]
