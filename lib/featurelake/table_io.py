"""Delta table I/O: the only code in featurelake that reads or writes tables.

Two backends sit behind :class:`DeltaTables`:

* **native** - delta-spark's ``format("delta")``, used when its JVM classes are on the
  classpath (a cluster started with ``--packages io.delta:delta-spark_2.13:<v>``).
* **delta-rs** - Spark writes Parquet data files in parallel into a staging folder inside the
  table; they are moved beside the table's data and committed in one atomic transaction by
  delta-rs (the ``deltalake`` package), with per-file statistics read from the Parquet footers.
  Reads take the snapshot's file list (any version) and hand it to Spark.

Either way the result is a real Delta table that ``deltalake``, polars and duckdb read. Nothing
else in the code knows which backend is active.

Example:
    >>> tables = DeltaTables(spark)
    >>> tables.write(df, "/lake/silver/transactions", mode="append", partition_by=["invoice_date"])
    >>> tables.read("/lake/silver/transactions", version=0).count()
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from featurelake.config import DeltaSettings, ParquetCodec
from featurelake.session import arrow_rows

__all__ = [
    "AlreadyCommittedError",
    "AppTransaction",
    "ColumnStats",
    "ConcurrentWriteError",
    "DeltaTables",
    "SchemaMismatchError",
    "StagedWrite",
    "TableIOError",
    "TableNotFoundError",
    "WriteResult",
    "native_delta_available",
]

log = logging.getLogger(__name__)

WriteMode = Literal["append", "overwrite"]
# Arrow's name for a codec where it differs from Spark's (Arrow's "lz4" is the raw block format).
_ARROW_CODEC = {"lz4_raw": "lz4", "uncompressed": "none"}
_STAGING = "_staging"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Delta's convention: string statistics are kept only for short prefixes; we keep exact
# values only, so a longer string simply has no min/max (readers then cannot skip on it).
_MAX_STRING_STAT = 32


class TableIOError(RuntimeError):
    """Base class for table I/O errors."""


class TableNotFoundError(TableIOError):
    """There is no Delta table at the path (or not at the requested version)."""


class SchemaMismatchError(TableIOError, ValueError):
    """A write's schema is incompatible with the table's schema."""


class ConcurrentWriteError(TableIOError):
    """Another writer committed a conflicting change first; nothing of this write was committed."""


class AlreadyCommittedError(ConcurrentWriteError):
    """The table already records the write's application transaction; nothing was committed."""


@dataclass(frozen=True)
class AppTransaction:
    """A claim committed with a write: application ``app_id`` has reached ``version``.

    Delta's idempotent-write mechanism (the ``txn`` action): the table keeps the latest version
    committed per application id. A write carrying a claim commits only while the table
    records a lower version for ``app_id``, and two writers claiming the same ``app_id`` at
    once conflict - the second fails. So "these rows were written" and "this claim was made"
    are one atomic decision: a job that plans from table version ``v`` and claims ``v + 1``
    cannot commit after another job that planned from the same state.

    Attributes:
        app_id: the application id (e.g. ``featurelake.bronze.<source>``).
        version: the version claimed; must exceed the recorded one.
    """

    app_id: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    """What one commit did.

    Attributes:
        path: the table path.
        version: the table version this commit created.
        rows_written: rows in the files this commit added.
        files_added: number of data files added.
        operation: append, overwrite, partition-overwrite, upsert or create.
    """

    path: str
    version: int
    rows_written: int
    files_added: int
    operation: str


@dataclass(frozen=True)
class ColumnStats:
    """One column's statistics over a whole table version, from its files' Delta statistics.

    Attributes:
        min: the smallest non-null value; None when the column holds no non-null value.
        max: the largest non-null value; None when the column holds no non-null value.
        null_count: rows where the column is null.
    """

    min: Any
    max: Any
    null_count: int


@dataclass(frozen=True)
class _ArrowRows:
    """Rows held on the driver, as an Arrow table of a Spark schema (see ``append_rows``)."""

    table: Any  # pyarrow.Table
    struct: StructType


@dataclass
class StagedWrite:
    """A write whose data files exist but are not committed yet (:meth:`DeltaTables.stage`).

    Readers see nothing of it until :meth:`DeltaTables.commit`; :meth:`DeltaTables.abort`
    removes its files.

    Attributes:
        path: the table path.
        rows: rows in the staged files (from their Parquet footers, or counted).
        files: number of staged data files.
        state: ``staged``, ``committed``, ``failed`` (the commit raised; :meth:`abort` still
            removes the files) or ``aborted``.
    """

    path: str
    rows: int
    files: int
    _commit: Callable[[], WriteResult] = field(repr=False)
    _abort: Callable[[], None] = field(repr=False)
    state: Literal["staged", "committed", "failed", "aborted"] = "staged"


@dataclass
class Lineage:
    """Commit metadata: who wrote, in which run, after reading which table versions."""

    job: str = "interactive"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reads: dict[str, int] = field(default_factory=dict)

    def commit_metadata(self, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
        meta = {
            "featurelake.job": self.job,
            "featurelake.run_id": self.run_id,
            "featurelake.reads": json.dumps(self.reads, sort_keys=True),
        }
        for key, value in (extra or {}).items():
            meta[f"featurelake.{key}"] = value if isinstance(value, str) else json.dumps(value)
        return meta


def native_delta_available(spark: SparkSession) -> bool:
    """True when delta-spark's JVM classes are loaded in this session."""
    try:
        jvm = spark.sparkContext._jvm  # noqa: SLF001 - the only way to probe the classpath
        jvm.java.lang.Class.forName(
            "io.delta.tables.DeltaTable", False, jvm.Thread.currentThread().getContextClassLoader()
        )
        return True
    except Exception:  # noqa: BLE001 - any failure means the classes are not usable
        return False


def _local_path(path: str) -> str:
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return os.path.abspath(unquote(parsed.path) if parsed.scheme else path)
    raise TableIOError(
        f"{path}: the delta-rs backend supports local or mounted paths only; "
        "use the native delta-spark backend (--packages io.delta:delta-spark_2.13:<v>) "
        "for object stores"
    )


def _schema_diff(table: StructType, incoming: StructType) -> tuple[list[str], list[str], list[str]]:
    """Columns (missing from incoming, extra in incoming, with a different type)."""
    table_types = {f.name: f.dataType for f in table.fields}
    incoming_types = {f.name: f.dataType for f in incoming.fields}
    missing = [n for n in table_types if n not in incoming_types]
    extra = [n for n in incoming_types if n not in table_types]
    changed = [
        f"{n} (table {table_types[n].simpleString()}, write {incoming_types[n].simpleString()})"
        for n in incoming_types
        if n in table_types and table_types[n] != incoming_types[n]
    ]
    return missing, extra, changed


class DeltaTables:
    """Reads and writes Delta tables; one instance per job (it carries the lineage).

    Args:
        spark: the job's session.
        backend: ``auto`` (native when available, else delta-rs), ``native`` or ``delta-rs``.
        lineage: job name, run id and the versions read so far, recorded on every commit.
        parquet_compression: the data files' codec (``zstd``, ``snappy``, ``gzip``,
            ``lz4_raw``, ``uncompressed``).
        parquet_dictionary: dictionary-encode the data files' columns. Off by default: on the
            bench's transactions the dictionaries cost more write (and read) time than they
            save, and with zstd the files stay about as small (docs/PERFORMANCE.md).

    Raises:
        TableIOError: ``backend="native"`` but delta-spark is not on the classpath.
        ValueError: an unknown ``parquet_compression``.
    """

    def __init__(
        self,
        spark: SparkSession,
        backend: Literal["auto", "native", "delta-rs"] = "auto",
        lineage: Lineage | None = None,
        *,
        parquet_compression: ParquetCodec = "zstd",
        parquet_dictionary: bool = False,
    ) -> None:
        if parquet_compression not in get_args(ParquetCodec):
            raise ValueError(
                f"parquet_compression must be one of {list(get_args(ParquetCodec))}, "
                f"got {parquet_compression!r}"
            )
        self.spark = spark
        self.lineage = lineage or Lineage()
        self.parquet_compression = parquet_compression
        self.parquet_dictionary = parquet_dictionary
        native = native_delta_available(spark)
        if backend == "native" and not native:
            raise TableIOError(
                "delta.backend is 'native' but delta-spark's classes are not on the classpath; "
                "start Spark with --packages io.delta:delta-spark_2.13:<version> or use 'auto'"
            )
        self.backend = (
            "native" if (backend == "native" or (backend == "auto" and native)) else "delta-rs"
        )
        self.rows_read: dict[str, int] = {}
        self.rows_written: dict[str, int] = {}

    @classmethod
    def for_settings(
        cls, spark: SparkSession, delta: DeltaSettings, lineage: Lineage
    ) -> DeltaTables:
        """The tables of a job or notebook configured by the ``delta`` settings."""
        return cls(
            spark,
            delta.backend,
            lineage,
            parquet_compression=delta.parquet_compression,
            parquet_dictionary=delta.parquet_dictionary,
        )

    def _parquet_options(self) -> dict[str, str]:
        """Spark writer options for the data files."""
        return {
            "compression": self.parquet_compression,
            "parquet.enable.dictionary": "true" if self.parquet_dictionary else "false",
        }

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """True when ``path`` holds a Delta table."""
        if self.backend == "native":
            from delta.tables import DeltaTable as SparkDeltaTable

            return bool(SparkDeltaTable.isDeltaTable(self.spark, path))
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(_local_path(path)))

    def version(self, path: str) -> int:
        """The latest version of the table at ``path``."""
        return int(self.history(path, limit=1)[0]["version"])

    def transaction_version(self, path: str, app_id: str) -> int | None:
        """The latest version committed for ``app_id`` (:class:`AppTransaction`); None if none.

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        if self.backend == "native":
            if not self.exists(path):
                raise TableNotFoundError(f"no Delta table at {path}")
            jvm = self.spark.sparkContext._jvm  # noqa: SLF001 - no Python API for txn versions
            log_ = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
                self.spark._jsparkSession, path  # noqa: SLF001
            )
            versions = log_.update(False, jvm.scala.Option.empty(), jvm.scala.Option.empty())
            recorded = versions.transactions().get(app_id)
            return int(recorded.get()) if recorded.isDefined() else None
        value = self._open_rs(path, None, None).transaction_version(app_id)
        return None if value is None else int(value)

    def read(
        self,
        path: str,
        version: int | None = None,
        timestamp: datetime | str | None = None,
        *,
        record: bool = True,
    ) -> DataFrame:
        """Read the table at ``path``: the latest snapshot, or as of a version or a timestamp.

        Args:
            path: the table path.
            version: read this version (time travel).
            timestamp: read the latest version committed at or before this time (UTC when naive).
            record: record the version read in the lineage of this job's later commits.

        Returns:
            A DataFrame with the table's columns in the table's order.

        Raises:
            TableNotFoundError: no table at ``path``, or no version at the requested point.
            ValueError: both ``version`` and ``timestamp`` were given.
        """
        if version is not None and timestamp is not None:
            raise ValueError("give version or timestamp, not both")
        if self.backend == "native":
            df, read_version, rows = self._read_native(path, version, timestamp)
        else:
            df, read_version, rows = self._read_rs(path, version, timestamp)
        if record:
            self.lineage.reads[path] = read_version
            self.rows_read[path] = self.rows_read.get(path, 0) + rows
        return df

    def column_stats(
        self, path: str, columns: Sequence[str], version: int | None = None
    ) -> dict[str, ColumnStats] | None:
        """Min, max and null count of columns over a table version, from the Delta log alone.

        Each data file's statistics (written with every commit by this module, and by most
        Delta writers) are combined; no data file is read. Exact for numbers, dates and
        timestamps; other writers may keep only a prefix of a long string, so string min/max
        are for display, not for logic.

        Args:
            path: the table path.
            columns: top-level column names.
            version: the table version (the latest when None); pass the version a read
                recorded (``lineage.reads[path]``) to describe the rows that read returns.

        Returns:
            Per column, its :class:`ColumnStats`; None when any file lacks a needed statistic
            (a null count, or a min/max where the file has non-null values), and on the
            native backend (its tables may be on storage delta-rs is not set up for) - the
            caller then computes the figures from the data.

        Raises:
            TableNotFoundError: no table at ``path``, or no such version.
        """
        if self.backend == "native":
            return None
        actions = _add_actions(self._open_rs(path, version, None))
        if actions.num_rows == 0:
            return {c: ColumnStats(None, None, 0) for c in columns}
        if "num_records" not in actions.column_names:
            return None
        records = actions.column("num_records").to_pylist()
        out = {}
        for name in columns:
            needed = [f"null_count.{name}", f"min.{name}", f"max.{name}"]
            if any(c not in actions.column_names for c in needed):
                return None
            nulls, lows, highs = (actions.column(c).to_pylist() for c in needed)
            low = high = None
            for n, count, lo, hi in zip(records, nulls, lows, highs, strict=True):
                if n is None or count is None:
                    return None
                if count == n:  # only nulls in this file: it has no min or max
                    continue
                if lo is None or hi is None:
                    return None
                low = lo if low is None else min(low, lo)
                high = hi if high is None else max(high, hi)
            out[name] = ColumnStats(low, high, int(sum(nulls)))
        return out

    def _open_rs(self, path: str, version: int | None, timestamp: datetime | str | None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError as RsNotFound

        local = _local_path(path)
        try:
            table = DeltaTable(local)
        except RsNotFound as exc:
            raise TableNotFoundError(f"no Delta table at {path}") from exc
        try:
            if version is not None:
                table.load_as_version(version)
            elif timestamp is not None:
                when = _as_utc(timestamp)
                created = table.history()[-1]["timestamp"] / 1000
                if when.timestamp() < created:
                    # delta-rs would quietly load version 0; a time before the table is an error
                    raise ValueError(f"{when.isoformat()} is before the table was created")
                table.load_as_version(when)
        except Exception as exc:  # delta-rs raises a generic error for a missing version
            first = table.history()[-1]
            raise TableNotFoundError(
                f"{path}: no version at {version if version is not None else timestamp!r} "
                f"(table created at version {first['version']}, "
                f"{datetime.fromtimestamp(first['timestamp'] / 1000, timezone.utc).isoformat()}; "
                f"latest version {DeltaTable(local).version()}): {exc}"
            ) from exc
        return table

    def _read_rs(
        self, path: str, version: int | None, timestamp: datetime | str | None
    ) -> tuple[DataFrame, int, int]:
        table = self._open_rs(path, version, timestamp)
        schema = StructType.fromJson(json.loads(table.schema().to_json()))
        files = table.file_uris()
        rows = _total_rows(table)
        if not files:
            return self.spark.createDataFrame([], schema), table.version(), rows
        root = _local_path(path)
        df = (
            self.spark.read.schema(schema)
            .option("basePath", root)
            .parquet(*files)
            .select(*[F.col(f"`{f.name}`") for f in schema.fields])
        )
        return df, table.version(), rows

    def _read_native(
        self, path: str, version: int | None, timestamp: datetime | str | None
    ) -> tuple[DataFrame, int, int]:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        elif timestamp is not None:
            reader = reader.option("timestampAsOf", _as_utc(timestamp).isoformat())
        df = reader.load(path)
        read_version = version if version is not None else self._native_version_at(path, timestamp)
        return df, read_version, -1

    def _native_version_at(self, path: str, timestamp: datetime | str | None) -> int:
        entries = self.history(path)
        if timestamp is None:
            return int(entries[0]["version"])
        limit = _as_utc(timestamp).timestamp() * 1000
        return int(next(e["version"] for e in entries if e["timestamp"] <= limit))

    # ----------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------

    def write(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode = "append",
        *,
        partition_by: Sequence[str] | None = None,
        replace_partitions: Literal["dynamic"] | Mapping[str, Any] | None = None,
        schema_evolution: bool = False,
        overwrite_schema: bool = False,
        metadata: Mapping[str, Any] | None = None,
        txn: AppTransaction | None = None,
    ) -> WriteResult:
        """Write ``df`` to the table at ``path`` in one atomic commit.

        Args:
            df: the rows to write.
            path: the table path; the table is created when absent.
            mode: ``append`` or ``overwrite``.
            partition_by: partition columns when the table is created; must match later.
            replace_partitions: with ``overwrite``, replace only some partitions: ``"dynamic"``
                replaces the partitions present in ``df``; a mapping ``{column: value}`` replaces
                that partition (every row of ``df`` must belong to it).
            schema_evolution: allow new columns (added to the table schema).
            overwrite_schema: with a full ``overwrite``, replace the table schema.
            metadata: extra key/values for the commit info (besides job, run id and reads).
            txn: an application transaction committed with the rows (see
                :class:`AppTransaction`).

        Returns:
            The :class:`WriteResult` of the commit.

        Raises:
            SchemaMismatchError: columns missing, extra (without ``schema_evolution``) or retyped;
                the message names them.
            ConcurrentWriteError: a conflicting commit landed first; nothing was committed and
                this write's files are removed. :class:`AlreadyCommittedError` when ``txn``'s
                claim was already made.
            ValueError: inconsistent arguments.
        """
        staged = self.stage(
            df,
            path,
            mode,
            partition_by=partition_by,
            replace_partitions=replace_partitions,
            schema_evolution=schema_evolution,
            overwrite_schema=overwrite_schema,
            metadata=metadata,
            txn=txn,
        )
        try:
            return self.commit(staged)
        except ConcurrentWriteError:
            self.abort(staged)  # no version references the files: remove them now
            raise

    def append_rows(
        self,
        rows: Sequence[Sequence[Any] | Mapping[str, Any]],
        schema: StructType | str,
        path: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        schema_evolution: bool = False,
        txn: AppTransaction | None = None,
    ) -> WriteResult:
        """Append rows held on the driver (ledger entries, metrics, metadata) in one commit.

        The same as ``write(local_frame(spark, rows, schema), path, "append")`` - same schema
        checks, same commit - without a Spark job on the delta-rs backend: the rows go from
        Arrow to one Parquet file beside the table's data, then to the commit. A Spark write of
        a few rows costs 0.1-0.2 s, nearly all of it scheduling, and a pipeline run makes a
        dozen of them. Partitioned tables and the native backend are written through Spark.

        Args:
            rows: tuples in schema order, or mappings by field name (as ``local_frame``).
            schema: the rows' schema (``StructType`` or DDL).
            path: the table; created when absent.
            metadata: extra key/values for the commit info.
            schema_evolution: allow new columns (added to the table schema).
            txn: an application transaction committed with the rows (as :meth:`write`).

        Raises:
            SchemaMismatchError: as :meth:`write`.
            ConcurrentWriteError: as :meth:`write`.
            TypeError, ValueError: rows that do not fit the schema (as ``local_frame``).
        """
        table, struct = arrow_rows(rows, schema)
        if self.backend == "native":
            frame = self.spark.createDataFrame(table, struct)
            return self.write(
                frame, path, "append", metadata=metadata, schema_evolution=schema_evolution,
                txn=txn,
            )
        staged = self._stage_rs(
            _ArrowRows(table, struct), path, "append", None, None, schema_evolution, False,
            metadata, txn,
        )
        try:
            return self.commit(staged)
        except ConcurrentWriteError:
            self.abort(staged)
            raise

    def stage(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode = "append",
        *,
        partition_by: Sequence[str] | None = None,
        replace_partitions: Literal["dynamic"] | Mapping[str, Any] | None = None,
        schema_evolution: bool = False,
        overwrite_schema: bool = False,
        metadata: Mapping[str, Any] | None = None,
        txn: AppTransaction | None = None,
    ) -> StagedWrite:
        """The first half of :meth:`write`: compute ``df`` and write its data files, uncommitted.

        A job that must judge what it computed before publishing anything (silver's ``fail``
        rules) stages every output, then commits them or aborts them all. The schema is checked
        here, before any Spark work. A conflicting commit landing between ``stage`` and
        ``commit`` makes ``commit`` raise :class:`ConcurrentWriteError`.

        Args: as :meth:`write`.

        Returns:
            A :class:`StagedWrite` to pass to :meth:`commit` or :meth:`abort`.
        """
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
        if replace_partitions is not None and mode != "overwrite":
            raise ValueError("replace_partitions needs mode='overwrite'")
        if overwrite_schema and (mode != "overwrite" or replace_partitions is not None):
            raise ValueError("overwrite_schema needs a full overwrite (mode='overwrite')")
        backend_stage = self._stage_native if self.backend == "native" else self._stage_rs
        return backend_stage(
            df,
            path,
            mode,
            partition_by,
            replace_partitions,
            schema_evolution,
            overwrite_schema,
            metadata,
            txn,
        )

    def commit(self, staged: StagedWrite) -> WriteResult:
        """Commit a staged write in one atomic Delta commit.

        Raises:
            ConcurrentWriteError: a conflicting commit landed first; nothing was committed
                (:meth:`abort` removes the staged files; ``vacuum`` would too).
            ValueError: the staged write was already committed, failed or aborted.
        """
        if staged.state != "staged":
            raise ValueError(f"{staged.path}: this staged write was already {staged.state}")
        try:
            result = staged._commit()
        except BaseException:
            staged.state = "failed"
            raise
        staged.state = "committed"
        self.rows_written[result.path] = self.rows_written.get(result.path, 0) + result.rows_written
        log.info(
            "table_committed",
            extra={
                "fields": {
                    "table": result.path,
                    "version": result.version,
                    "rows": result.rows_written,
                    "operation": result.operation,
                }
            },
        )
        return result

    def abort(self, staged: StagedWrite) -> None:
        """Discard a staged write's files; the table is untouched. A no-op once committed."""
        if staged.state not in ("staged", "failed"):
            return
        staged.state = "aborted"
        staged._abort()
        log.info("table_write_aborted", extra={"fields": {"table": staged.path}})

    def _prepare_schema(
        self,
        df: DataFrame,
        table_schema: StructType | None,
        schema_evolution: bool,
        overwrite_schema: bool,
        path: str,
    ) -> tuple[DataFrame, StructType]:
        """Check ``df`` against the table; return df aligned to the (possibly evolved) schema."""
        schema, align = _resolve_schema(
            _nullable(df.schema), table_schema, schema_evolution, overwrite_schema, path
        )
        if not align:
            return df, schema
        return df.select(*[F.col(f"`{n}`") for n in schema.fieldNames()]), schema

    def _stage_rs(
        self,
        df: DataFrame | _ArrowRows,
        path: str,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        replace_partitions: Literal["dynamic"] | Mapping[str, Any] | None,
        schema_evolution: bool,
        overwrite_schema: bool,
        metadata: Mapping[str, Any] | None,
        txn: AppTransaction | None = None,
    ) -> StagedWrite:
        from deltalake import DeltaTable, Schema
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import (
            CommitProperties,
            Transaction,
            create_table_with_add_actions,
        )

        root = _local_path(path)
        existing = DeltaTable(root) if DeltaTable.is_deltatable(root) else None
        table_schema = (
            StructType.fromJson(json.loads(existing.schema().to_json())) if existing else None
        )
        table_partitions = list(existing.metadata().partition_columns) if existing else None
        partitions = list(partition_by or table_partitions or [])
        if (
            table_partitions is not None
            and partition_by is not None
            and not overwrite_schema
            and list(partition_by) != table_partitions
        ):
            raise SchemaMismatchError(
                f"cannot write to {path}: partitioned by {table_partitions}, write asks for "
                f"{list(partition_by)}"
            )
        if replace_partitions is not None and not partitions:
            raise ValueError(f"{path} is not partitioned; replace_partitions needs partitions")
        if isinstance(df, _ArrowRows) and partitions:  # partitioned: Spark lays out the files
            df = self.spark.createDataFrame(df.table, df.struct)
        if isinstance(df, _ArrowRows):
            schema, _ = _resolve_schema(
                _nullable(df.struct), table_schema, schema_evolution, overwrite_schema, path
            )
            adds = _stage_arrow(
                df.table, root, schema, self.parquet_compression, self.parquet_dictionary
            )
        else:
            df, schema = self._prepare_schema(
                df, table_schema, schema_evolution, overwrite_schema, path
            )
            missing_parts = [c for c in partitions if c not in schema.fieldNames()]
            if missing_parts:
                raise SchemaMismatchError(
                    f"cannot write to {path}: partition columns {missing_parts} are not in the "
                    f"write (columns: {', '.join(schema.fieldNames())})"
                )
            adds, staging = self._stage_files(df, root, partitions, schema)
            shutil.rmtree(staging, ignore_errors=True)
        rows = sum(json.loads(a.stats)["numRecords"] for a in adds)

        def commit() -> WriteResult:
            nonlocal existing, mode
            # delta-rs checks appends against each other, but an overwrite built on an older
            # snapshot would remove only the files of that snapshot and keep rows committed
            # since: refuse it instead (a retry of the job recomputes from the new version).
            if existing is None:
                landed = DeltaTable.is_deltatable(root)
            else:
                landed = mode == "overwrite" and DeltaTable(root).version() != existing.version()
            if landed:
                raise ConcurrentWriteError(
                    f"{path}: another commit landed after this {mode} was staged; nothing was "
                    "committed (retry the job)"
                )
            if txn is not None:
                _check_claim(path, txn, DeltaTable(root).transaction_version(txn.app_id)
                             if existing is not None else None)
            try:
                delta_schema = Schema.from_json(schema.json())
                properties = CommitProperties(
                    custom_metadata=self.lineage.commit_metadata(metadata),
                    app_transactions=(
                        [Transaction(txn.app_id, txn.version)] if txn is not None else None
                    ),
                )
                if existing is None:
                    create_table_with_add_actions(
                        root,
                        delta_schema,
                        adds,
                        mode="error",
                        partition_by=partitions or None,
                        commit_properties=properties,
                    )
                    operation = "create"
                else:
                    evolve = table_schema is not None and schema != table_schema
                    if evolve and not overwrite_schema:
                        assert table_schema is not None
                        # Appends do not carry a new schema in delta-rs: evolve it first.
                        from deltalake.schema import Field as DeltaField

                        new_fields = [
                            f for f in schema.fields if f.name not in table_schema.fieldNames()
                        ]
                        existing.alter.add_columns(
                            [DeltaField.from_json(json.dumps(f.jsonValue())) for f in new_fields],
                            commit_properties=CommitProperties(
                                custom_metadata=self.lineage.commit_metadata(
                                    {"schema_evolution": "add"}
                                )
                            ),
                        )
                        existing = DeltaTable(root)
                    filters = None
                    operation = mode
                    if mode == "overwrite" and replace_partitions is not None:
                        filters = _partition_filters(replace_partitions, adds, partitions, path)
                        operation = "partition-overwrite"
                        if filters is None:  # dynamic overwrite with no rows: nothing to replace
                            mode, operation = "append", "partition-overwrite"
                    existing.create_write_transaction(
                        adds,
                        mode=mode,
                        schema=delta_schema,
                        partition_by=partitions or None,
                        partition_filters=filters,
                        commit_properties=properties,
                    )
                version = DeltaTable(root).version()
            except CommitFailedError as exc:
                if txn is not None and "transaction" in str(exc).lower():
                    raise AlreadyCommittedError(
                        f"{path}: a concurrent writer claimed {txn.app_id} first; nothing of "
                        f"this {mode} was committed: {exc}"
                    ) from exc
                raise ConcurrentWriteError(
                    f"{path}: a concurrent commit conflicted with this {mode}; nothing was "
                    f"committed (retry the job): {exc}"
                ) from exc
            return WriteResult(path, version, rows, len(adds), operation)

        def abort() -> None:
            for add in adds:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(root, add.path))

        return StagedWrite(path, rows, len(adds), commit, abort)

    def _stage_files(
        self, df: DataFrame, root: str, partitions: Sequence[str], schema: StructType
    ) -> tuple[list[Any], str]:
        """Spark writes Parquet into a staging folder; files move beside the table's data.

        Until the delta-rs commit lands, the moved files are referenced by no version, so a
        crash leaves the table at its previous version (``vacuum`` removes the orphans).
        """
        from deltalake.transaction import AddAction

        batch = uuid.uuid4().hex
        staging = os.path.join(root, _STAGING, batch)
        writer = df.write.mode("errorifexists").options(**self._parquet_options())
        if partitions:
            writer = writer.partitionBy(*partitions)
        writer.parquet(staging)
        adds = []
        types = {f.name: f.dataType for f in schema.fields}
        for dirpath, _dirs, names in os.walk(staging):
            for name in names:
                if not name.endswith(".parquet"):
                    continue
                source = os.path.join(dirpath, name)
                relative = os.path.relpath(source, staging)
                values = _partition_values(relative, partitions)
                stats = _file_stats(source, types, set(partitions))
                if stats["numRecords"] == 0:
                    continue  # Spark writes an empty file for an empty frame; Delta needs none
                target = os.path.join(root, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(source, target)
                adds.append(
                    AddAction(
                        relative.replace(os.sep, "/"),
                        os.path.getsize(target),
                        values,
                        int(time.time() * 1000),
                        True,
                        json.dumps(stats),
                    )
                )
        return adds, staging

    def upsert(
        self,
        df: DataFrame,
        path: str,
        keys: Sequence[str],
        *,
        partition_by: Sequence[str] | None = None,
        schema_evolution: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Insert rows of ``df`` whose keys are new; replace rows whose keys exist (MERGE).

        On a partitioned table whose partition columns are among the keys, only the touched
        partitions are rewritten.

        Args:
            df: the new rows; each key must appear at most once.
            path: the table path; created when absent.
            keys: the key columns.
            partition_by: partition columns when the table is created.
            schema_evolution: allow new columns.
            metadata: extra commit metadata.

        Raises:
            ValueError: ``keys`` empty, not columns of ``df``, or duplicated in ``df``.
            SchemaMismatchError: as :meth:`write`.
        """
        keys = list(keys)
        if not keys:
            raise ValueError("upsert needs at least one key column")
        absent = [k for k in keys if k not in df.columns]
        if absent:
            raise ValueError(f"upsert keys {absent} are not columns of the data ({df.columns})")
        dupes = df.groupBy(*keys).count().filter("count > 1").limit(3).collect()
        if dupes:
            shown = [{k: row[k] for k in keys} for row in dupes]
            raise ValueError(
                f"upsert into {path}: keys {keys} repeat in the new rows, e.g. {shown}"
            )
        if not self.exists(path):
            result = self.write(df, path, "overwrite", partition_by=partition_by, metadata=metadata)
            return WriteResult(
                path, result.version, result.rows_written, result.files_added, "upsert"
            )
        if self.backend == "native":
            return self._upsert_native(df, path, keys, schema_evolution, metadata)

        current = self.read(path, record=False)
        partitions = self.partition_columns(path)
        replace: Literal["dynamic"] | None = None
        if partitions and set(partitions) <= set(keys):
            touched = df.select(*partitions).distinct()
            current = current.join(touched, partitions, "left_semi")
            replace = "dynamic"
        kept = current.join(df.select(*keys), keys, "left_anti")
        merged = kept.unionByName(df, allowMissingColumns=schema_evolution)
        result = self.write(
            merged,
            path,
            "overwrite",
            replace_partitions=replace,
            schema_evolution=schema_evolution,
            metadata={"operation": "upsert", **(metadata or {})},
        )
        return WriteResult(path, result.version, result.rows_written, result.files_added, "upsert")

    # ----------------------------------------------------------------------------------------
    # Maintenance
    # ----------------------------------------------------------------------------------------

    def partition_columns(self, path: str) -> list[str]:
        """The table's partition columns."""
        if self.backend == "native":
            detail = self.spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]
            return list(detail["partitionColumns"])
        return list(self._open_rs(path, None, None).metadata().partition_columns)

    def history(self, path: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first: version, timestamp (ms), operation and featurelake lineage."""
        if self.backend == "native":
            from delta.tables import DeltaTable as SparkDeltaTable

            rows = SparkDeltaTable.forPath(self.spark, path).history(limit or 1000).collect()
            out = []
            for row in rows:
                entry = {
                    "version": row["version"],
                    "timestamp": int(row["timestamp"].timestamp() * 1000),
                    "operation": row["operation"],
                }
                if row["userMetadata"]:
                    entry.update(json.loads(row["userMetadata"]))
                out.append(entry)
            return out
        table = self._open_rs(path, None, None)
        entries = sorted(table.history(limit), key=lambda e: -int(e["version"]))
        return entries

    def vacuum(self, path: str, retention_hours: int = 168, *, dry_run: bool = False) -> list[str]:
        """Delete data files no version within ``retention_hours`` references.

        Also removes staging folders left by crashed writes.

        Returns:
            The files deleted (or that would be, with ``dry_run``).
        """
        if self.backend == "native":
            from delta.tables import DeltaTable as SparkDeltaTable

            SparkDeltaTable.forPath(self.spark, path).vacuum(retention_hours)
            return []
        table = self._open_rs(path, None, None)
        deleted = table.vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=False,
            full=True,
            commit_properties=_commit(self.lineage.commit_metadata()),
        )
        if not dry_run:
            staging = Path(_local_path(path), _STAGING)
            cutoff = time.time() - retention_hours * 3600
            if staging.is_dir():
                for batch in staging.iterdir():
                    if batch.stat().st_mtime <= cutoff:
                        shutil.rmtree(batch, ignore_errors=True)
        return list(deleted)

    def compact(self, path: str, target_size_mb: int = 128) -> dict[str, Any]:
        """Rewrite small files into files of about ``target_size_mb`` (no data change).

        Returns:
            Metrics of the compaction (files added and removed).
        """
        if self.backend == "native":
            from delta.tables import DeltaTable as SparkDeltaTable

            metrics = SparkDeltaTable.forPath(self.spark, path).optimize().executeCompaction()
            return metrics.collect()[0].asDict(recursive=True)
        from deltalake import ColumnProperties, WriterProperties

        table = self._open_rs(path, None, None)
        properties = WriterProperties(
            compression=self.parquet_compression.upper(),
            default_column_properties=ColumnProperties(dictionary_enabled=self.parquet_dictionary),
        )
        return dict(
            table.optimize.compact(
                target_size=target_size_mb * 1024 * 1024,
                writer_properties=properties,
                commit_properties=_commit(self.lineage.commit_metadata({"operation": "compact"})),
            )
        )

    # ----------------------------------------------------------------------------------------
    # Native delta-spark backend
    # ----------------------------------------------------------------------------------------

    def _stage_native(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        replace_partitions: Literal["dynamic"] | Mapping[str, Any] | None,
        schema_evolution: bool,
        overwrite_schema: bool,
        metadata: Mapping[str, Any] | None,
        txn: AppTransaction | None = None,
    ) -> StagedWrite:
        # delta-spark writes and commits in one call: staging computes the rows once into
        # Spark's cache (counted), and the commit writes them from there.
        if self.exists(path):
            table_schema = self.read(path, record=False).schema
            self._prepare_schema(df, table_schema, schema_evolution, overwrite_schema, path)
        cached = df.persist()
        rows = cached.count()

        def commit() -> WriteResult:
            try:
                return self._write_native(
                    cached,
                    path,
                    mode,
                    partition_by,
                    replace_partitions,
                    schema_evolution,
                    overwrite_schema,
                    metadata,
                    txn,
                )
            finally:
                cached.unpersist()

        def abort() -> None:
            cached.unpersist()

        return StagedWrite(path, rows, cached.rdd.getNumPartitions(), commit, abort)

    def _write_native(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        replace_partitions: Literal["dynamic"] | Mapping[str, Any] | None,
        schema_evolution: bool,
        overwrite_schema: bool,
        metadata: Mapping[str, Any] | None,
        txn: AppTransaction | None = None,
    ) -> WriteResult:
        exists = self.exists(path)
        if exists:
            table_schema = self.read(path, record=False).schema
            df, _ = self._prepare_schema(df, table_schema, schema_evolution, overwrite_schema, path)
        write_id = uuid.uuid4().hex
        user_metadata = self.lineage.commit_metadata({**(metadata or {}), "write_id": write_id})
        writer = (
            df.write.format("delta")
            .mode(mode)
            .options(**self._parquet_options())
            .option("userMetadata", json.dumps(user_metadata))
        )
        if txn is not None:
            # delta-spark skips a write whose claim is not above the recorded version (an
            # idempotent write) and fails one that races a commit of the same app id.
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if schema_evolution:
            writer = writer.option("mergeSchema", "true")
        if overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        operation = "create" if not exists else mode
        if replace_partitions == "dynamic":
            writer = writer.option("partitionOverwriteMode", "dynamic")
            operation = "partition-overwrite"
        elif isinstance(replace_partitions, Mapping):
            condition = " AND ".join(
                f"`{k}` = {_sql_literal(v)}" for k, v in replace_partitions.items()
            )
            writer = writer.option("replaceWhere", condition)
            operation = "partition-overwrite"
        with _native_conflicts(path, txn):
            writer.save(path)
        last = self._native_commit_of(path, write_id)
        if last is None:
            assert txn is not None  # only a claimed write is skipped
            raise AlreadyCommittedError(
                f"{path}: {txn.app_id} already reached version {txn.version}; delta-spark "
                "skipped this write and nothing of it was committed"
            )
        return WriteResult(path, last[0], last[1], last[2], operation)

    def _native_commit_of(self, path: str, write_id: str) -> tuple[int, int, int] | None:
        """(version, rows, files) of the commit carrying ``write_id``; None when it was skipped."""
        from delta.tables import DeltaTable as SparkDeltaTable

        for row in SparkDeltaTable.forPath(self.spark, path).history(20).collect():
            meta = json.loads(row["userMetadata"]) if row["userMetadata"] else {}
            if meta.get("featurelake.write_id") == write_id:
                metrics = row["operationMetrics"] or {}
                return (
                    int(row["version"]),
                    int(metrics.get("numOutputRows", 0)),
                    int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
                )
        return None

    def _native_last_commit(self, path: str) -> tuple[int, int, int]:
        from delta.tables import DeltaTable as SparkDeltaTable

        row = SparkDeltaTable.forPath(self.spark, path).history(1).collect()[0]
        metrics = row["operationMetrics"] or {}
        return (
            int(row["version"]),
            int(metrics.get("numOutputRows", 0)),
            int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
        )

    def _upsert_native(
        self,
        df: DataFrame,
        path: str,
        keys: Sequence[str],
        schema_evolution: bool,
        metadata: Mapping[str, Any] | None,
    ) -> WriteResult:
        from delta.tables import DeltaTable as SparkDeltaTable

        self.spark.conf.set(
            "spark.databricks.delta.commitInfo.userMetadata",
            json.dumps(self.lineage.commit_metadata(metadata)),
        )
        if schema_evolution:
            self.spark.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        try:
            (
                SparkDeltaTable.forPath(self.spark, path)
                .alias("t")
                .merge(df.alias("s"), condition)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            self.spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        version, _, files = self._native_last_commit(path)
        from delta.tables import DeltaTable as SDT

        metrics = SDT.forPath(self.spark, path).history(1).collect()[0]["operationMetrics"] or {}
        rows = int(metrics.get("numTargetRowsInserted", 0)) + int(
            metrics.get("numTargetRowsUpdated", 0)
        )
        return WriteResult(path, version, rows, files, "upsert")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _stage_arrow(
    table: Any, root: str, schema: StructType, compression: str, dictionary: bool
) -> list[Any]:
    """Write an Arrow table as one Parquet file in the table's folder; its add action.

    Columns are written in ``schema``'s order, all nullable, as Spark writes them. No rows,
    no file (Delta needs none). The file is referenced by no version until the commit.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    if table.num_rows == 0:
        return []
    aligned = table.select(schema.fieldNames())
    aligned = aligned.cast(pa.schema([pa.field(f.name, f.type, True) for f in aligned.schema]))
    codec = _ARROW_CODEC.get(compression, compression)
    name = f"part-00000-{uuid.uuid4().hex}-c000.{compression}.parquet"
    target = os.path.join(root, name)
    os.makedirs(root, exist_ok=True)
    pq.write_table(aligned, target, compression=codec, use_dictionary=dictionary)
    stats = _file_stats(target, {f.name: f.dataType for f in schema.fields}, set())
    return [AddAction(name, os.path.getsize(target), {}, int(time.time() * 1000), True,
                      json.dumps(stats))]


def _resolve_schema(
    incoming: StructType,
    table_schema: StructType | None,
    schema_evolution: bool,
    overwrite_schema: bool,
    path: str,
) -> tuple[StructType, bool]:
    """The schema a write gets, and whether its columns must be put in that schema's order.

    Raises:
        SchemaMismatchError: columns missing, extra (without ``schema_evolution``) or retyped.
    """
    if table_schema is None or overwrite_schema:
        return incoming, False
    missing, extra, changed = _schema_diff(table_schema, incoming)
    if changed or (extra and not schema_evolution) or missing:
        parts = []
        if changed:
            parts.append(f"type changed: {', '.join(changed)}")
        if extra and not schema_evolution:
            parts.append(
                f"columns not in the table: {', '.join(extra)} "
                "(pass schema_evolution=True to add them)"
            )
        if missing:
            parts.append(f"columns missing from the write: {', '.join(missing)}")
        raise SchemaMismatchError(
            f"cannot write to {path}: "
            + "; ".join(parts)
            + f". Table columns: {', '.join(table_schema.fieldNames())}; "
            f"write columns: {', '.join(incoming.fieldNames())}"
        )
    evolved = StructType(
        list(table_schema.fields) + [f for f in incoming.fields if f.name in extra]
    )
    return evolved, True


@contextlib.contextmanager
def _native_conflicts(path: str, txn: AppTransaction | None) -> Any:
    """Turn delta-spark's concurrent-modification exceptions into ConcurrentWriteError."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - py4j and pyspark wrap the JVM exception
        text = str(exc)
        if "ConcurrentTransactionException" in text and txn is not None:
            raise AlreadyCommittedError(
                f"{path}: a concurrent writer claimed {txn.app_id} first; nothing of this "
                "write was committed"
            ) from exc
        if "Concurrent" in text and "Exception" in text:
            first = text.strip().splitlines()[0][:300]
            raise ConcurrentWriteError(
                f"{path}: a concurrent commit conflicted with this write; nothing was "
                f"committed (retry the job): {first}"
            ) from exc
        raise


def _check_claim(path: str, txn: AppTransaction, recorded: int | None) -> None:
    """Raise when the table already records ``txn.app_id`` at ``txn.version`` or later."""
    if recorded is not None and recorded >= txn.version:
        raise AlreadyCommittedError(
            f"{path}: {txn.app_id} is already at version {recorded} (this write claims "
            f"{txn.version}); another writer committed first and nothing of this write was "
            "committed"
        )


def _commit(metadata: Mapping[str, str]) -> Any:
    from deltalake.transaction import CommitProperties

    return CommitProperties(custom_metadata=dict(metadata))


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _nullable(schema: StructType) -> StructType:
    """Delta columns are written nullable: a NOT NULL Spark column would block later appends."""
    return StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _add_actions(table: Any) -> Any:
    """A delta-rs table's data files with their flattened statistics, as an Arrow table."""
    import pyarrow as pa

    return pa.table(table.get_add_actions(flatten=True))


def _total_rows(table: Any) -> int:
    actions = _add_actions(table)
    if actions.num_rows == 0 or "num_records" not in actions.column_names:
        return 0
    return int(sum(v or 0 for v in actions.column("num_records").to_pylist()))


def _partition_values(relative: str, partitions: Sequence[str]) -> dict[str, str | None]:
    """Partition values from a Hive-style relative path (``a=1/b=x/part-0.parquet``)."""
    values: dict[str, str | None] = {}
    for segment in relative.split(os.sep)[:-1]:
        key, _, raw = segment.partition("=")
        value = unquote(raw)
        values[unquote(key)] = None if value == _HIVE_NULL else value
    return {p: values.get(p) for p in partitions}


def _partition_filters(
    replace: Literal["dynamic"] | Mapping[str, Any],
    adds: Iterable[Any],
    partitions: Sequence[str],
    path: str,
) -> list[tuple[str, str, Any]] | None:
    """delta-rs partition filters selecting the partitions a partition overwrite replaces."""
    if isinstance(replace, Mapping):
        unknown = [k for k in replace if k not in partitions]
        if unknown:
            raise ValueError(
                f"{path}: {unknown} are not partition columns (partitions: {partitions})"
            )
        for add in adds:
            for key, value in replace.items():
                if add.partition_values.get(key) != _partition_string(value):
                    raise ValueError(
                        f"{path}: rows outside the partition being replaced "
                        f"({key}={add.partition_values.get(key)!r}, replacing {key}={value!r})"
                    )
        return [(k, "=", _partition_string(v)) for k, v in replace.items()]
    present = {tuple(a.partition_values.get(p) for p in partitions) for a in adds}
    if not present:
        return None
    if len(partitions) == 1:
        return (
            [(partitions[0], "in", sorted(v[0] for v in present if v[0] is not None))]
            if all(v[0] is not None for v in present)
            else _null_partition_error(path)
        )
    if len(present) == 1:
        (only,) = present
        return [(p, "=", v) for p, v in zip(partitions, only, strict=True)]
    raise ValueError(
        f"{path}: dynamic partition overwrite across several values of a multi-column partition "
        f"is not supported by the delta-rs backend; write one partition at a time"
    )


def _null_partition_error(path: str) -> None:
    raise ValueError(f"{path}: dynamic partition overwrite of a null partition is not supported")


def _partition_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


# Types whose Parquet statistics translate exactly into Delta statistics.
_NUMERIC = (ByteType, ShortType, IntegerType, LongType, FloatType, DoubleType)


def _file_stats(path: str, types: Mapping[str, DataType], skip: set[str]) -> dict[str, Any]:
    """Delta per-file statistics (numRecords, minValues, maxValues, nullCount) from the footer."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    stats: dict[str, Any] = {
        "numRecords": meta.num_rows,
        "minValues": {},
        "maxValues": {},
        "nullCount": {},
    }
    if meta.num_rows == 0:
        return stats
    columns = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for name, dtype in types.items():
        if name in skip or name not in columns:
            continue
        index = columns[name]
        lows, highs, nulls, complete = [], [], 0, True
        for rg in range(meta.num_row_groups):
            s = meta.row_group(rg).column(index).statistics
            if s is None or not s.has_null_count:
                complete = False
                break
            nulls += s.null_count
            if s.has_min_max:
                lows.append(s.min)
                highs.append(s.max)
        if not complete:
            continue
        stats["nullCount"][name] = nulls
        if not lows:
            continue
        low, high = _stat_value(min(lows), dtype, "min"), _stat_value(max(highs), dtype, "max")
        if low is not None and high is not None:
            stats["minValues"][name] = low
            stats["maxValues"][name] = high
    return stats


def _stat_value(value: Any, dtype: DataType, side: str) -> Any:
    """A Parquet statistic as a Delta JSON statistic, or None when it cannot be exact."""
    if isinstance(dtype, BooleanType):
        return bool(value)
    if isinstance(dtype, _NUMERIC):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        return value
    if isinstance(dtype, DateType) and isinstance(value, date):
        return value.isoformat()
    if isinstance(dtype, TimestampType) and isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        # Delta timestamps statistics have millisecond precision: round outwards.
        millis = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if side == "max" and millis != value:
            millis += timedelta(milliseconds=1)
        return (
            millis.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{millis.microsecond // 1000:03d}Z"
        )
    if isinstance(dtype, StringType) and isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return text if len(text) <= _MAX_STRING_STAT else None
    if isinstance(value, Decimal):
        return None  # exact decimals do not survive a JSON float; no skipping on them
    return None
