"""Delta tables: the only code in featurelake that reads or writes tables.

Two backends sit behind :class:`DeltaTables`:

* **native** (:mod:`featurelake.delta.native`) - delta-spark's ``format("delta")``, used when
  its JVM classes are on the classpath (``spark-submit.sh`` and ``build_spark_session`` fetch
  the jar from Maven Central into a local cache).
* **delta-rs** (:mod:`featurelake.delta.rs`) - Spark writes Parquet data files in parallel
  into a staging folder inside the table; delta-rs (the ``deltalake`` package) commits them in
  one atomic transaction with per-file statistics read from the Parquet footers.

Either way the result is a real Delta table that delta-spark, ``deltalake``, polars and duckdb
read, and either backend appends to a table the other wrote. Nothing else in the code knows
which backend is active.
"""

from featurelake.delta.errors import (
    AlreadyCommittedError,
    ConcurrentWriteError,
    ConstraintViolationError,
    SchemaMismatchError,
    TableIOError,
    TableNotFoundError,
)
from featurelake.delta.model import (
    AppTransaction,
    ColumnStats,
    Lineage,
    StagedWrite,
    WriteResult,
)
from featurelake.delta.native_support import native_delta_available
from featurelake.delta.tables import DeltaTables

__all__ = [
    "AlreadyCommittedError",
    "AppTransaction",
    "ColumnStats",
    "ConcurrentWriteError",
    "ConstraintViolationError",
    "DeltaTables",
    "Lineage",
    "SchemaMismatchError",
    "StagedWrite",
    "TableIOError",
    "TableNotFoundError",
    "WriteResult",
    "native_delta_available",
]
