"""DeltaTables: the one reader and writer of featurelake's tables, whichever backend is active.

It checks every write's arguments the same way for both backends, records lineage in every
commit (job, run id, the table versions the job read), counts rows read and written, and hands
the work to :class:`~featurelake.delta.native.NativeBackend` or
:class:`~featurelake.delta.rs.RsBackend`.

Example:
    >>> tables = DeltaTables(spark)
    >>> tables.write(df, "/lake/silver/transactions", mode="append", partition_by=["invoice_date"])
    >>> tables.read("/lake/silver/transactions", version=0).count()
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from featurelake.core.config import DeltaSettings, ParquetCodec
from featurelake.core.session import arrow_rows
from featurelake.delta.backend import TableBackend
from featurelake.delta.checks import check_rows_within, check_upsert, check_write_mode
from featurelake.delta.model import (
    AppTransaction,
    ArrowRows,
    ColumnStats,
    Lineage,
    ReplacePartitions,
    StagedWrite,
    WriteMode,
    WriteRequest,
    WriteResult,
)
from featurelake.delta.native import NativeBackend
from featurelake.delta.native_support import native_delta_available, not_available
from featurelake.delta.rs import RsBackend
from featurelake.delta.schema import nullable, resolve_schema

__all__ = ["DeltaTables"]

log = logging.getLogger(__name__)


class DeltaTables:
    """Reads and writes Delta tables; one instance per job (it carries the lineage).

    Args:
        spark: the job's session.
        backend: ``auto`` (native when delta-spark's classes are loaded, else delta-rs),
            ``native`` or ``delta-rs``.
        lineage: job name, run id and the versions read so far, recorded on every commit.
        parquet_compression: the data files' codec (``zstd``, ``snappy``, ``gzip``,
            ``lz4_raw``, ``uncompressed``).
        parquet_dictionary: dictionary-encode the data files' columns (docs/PERFORMANCE.md).

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
            raise not_available("its classes did not load in this session")
        chosen: TableBackend
        if backend == "native" or (backend == "auto" and native):
            chosen = NativeBackend(spark, parquet_compression, parquet_dictionary)
        else:
            chosen = RsBackend(spark, parquet_compression, parquet_dictionary)
        self._backend = chosen
        self.rows_read: dict[str, int] = {}
        self.rows_written: dict[str, int] = {}

    @property
    def backend(self) -> str:
        """``native`` or ``delta-rs``."""
        return self._backend.name

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

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """True when ``path`` holds a Delta table."""
        return self._backend.exists(path)

    def version(self, path: str) -> int:
        """The latest version of the table at ``path`` (read from the log; no Spark job).

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        return self._backend.version(path)

    def transaction_version(self, path: str, app_id: str) -> int | None:
        """The latest version committed for ``app_id`` (:class:`AppTransaction`); None if none.

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        return self._backend.transaction_version(path, app_id)

    def history(self, path: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first: version, timestamp (ms), operation and featurelake lineage.

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        return self._backend.history(path, limit)

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
        when = _as_utc(timestamp) if timestamp is not None else None
        df, read_version, rows = self._backend.read(path, version, when)
        if record:
            self.lineage.record_read(path, read_version)
            if rows >= 0:  # known for free on delta-rs; row_count() asks for it
                self.rows_read[path] = self.rows_read.get(path, 0) + rows
        return df

    def row_count(self, path: str, version: int | None = None) -> int:
        """Rows of a table version from the log's per-file statistics (no data file is read).

        Returns:
            The row count; -1 when a data file has no statistics.

        Raises:
            TableNotFoundError: no table at ``path``, or no such version.
        """
        return self._backend.row_count(path, version)

    def column_stats(
        self, path: str, columns: Sequence[str], version: int | None = None
    ) -> dict[str, ColumnStats] | None:
        """Min, max and null count of columns over a table version, from the Delta log alone.

        Each data file's statistics (written with every commit by both backends, and by most
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
            (a null count, or a min/max where the file has non-null values): the caller then
            computes the figures from the data.

        Raises:
            TableNotFoundError: no table at ``path``, or no such version.
        """
        return self._backend.column_stats(path, columns, version)

    def partition_columns(self, path: str) -> list[str]:
        """The table's partition columns."""
        return self._backend.partition_columns(path)

    # ----------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------

    def _request(
        self,
        data: DataFrame | ArrowRows,
        path: str,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        replace_partitions: ReplacePartitions,
        schema_evolution: bool,
        overwrite_schema: bool,
        metadata: Mapping[str, Any] | None,
        txn: AppTransaction | None,
        properties: Mapping[str, str] | None = None,
        constraints: Mapping[str, str] | None = None,
    ) -> WriteRequest:
        check_write_mode(mode, replace_partitions, overwrite_schema)
        return WriteRequest(
            data,
            path,
            mode,
            partition_by,
            replace_partitions,
            schema_evolution,
            overwrite_schema,
            self.lineage.commit_metadata(metadata),
            txn,
            properties,
            constraints,
        )

    def write(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode = "append",
        *,
        partition_by: Sequence[str] | None = None,
        replace_partitions: ReplacePartitions = None,
        schema_evolution: bool = False,
        overwrite_schema: bool = False,
        metadata: Mapping[str, Any] | None = None,
        txn: AppTransaction | None = None,
        properties: Mapping[str, str] | None = None,
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
            properties: table properties set when the write creates the table (e.g.
                ``{"delta.enableChangeDataFeed": "true"}``).

        Returns:
            The :class:`WriteResult` of the commit.

        Raises:
            SchemaMismatchError: columns missing, extra (without ``schema_evolution``) or retyped;
                the message names them.
            ConcurrentWriteError: a conflicting commit landed first; nothing was committed and
                nothing of this write is left behind. :class:`AlreadyCommittedError` when
                ``txn``'s claim was already made.
            ValueError: inconsistent arguments.
        """
        request = self._request(
            df,
            path,
            mode,
            partition_by,
            replace_partitions,
            schema_evolution,
            overwrite_schema,
            metadata,
            txn,
            properties,
        )
        return self._committed(self._backend.write(request))

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
        checks, same commit. On the delta-rs backend an unpartitioned table gets the rows
        from Arrow as one Parquet file, without a Spark job (a Spark write of a few rows is
        mostly scheduling, and a pipeline run makes a dozen of them).

        Args:
            rows: tuples in schema order, or mappings by field name (as ``local_frame``).
            schema: the rows' schema (``StructType`` or DDL).
            path: the table; created when absent.
            metadata: extra key/values for the commit info.
            schema_evolution: allow new columns (added to the table schema).
            txn: an application transaction committed with the rows (as :meth:`write`).

        Raises:
            SchemaMismatchError, ConcurrentWriteError: as :meth:`write`.
            TypeError, ValueError: rows that do not fit the schema (as ``local_frame``).
        """
        table, struct = arrow_rows(rows, schema)
        request = self._request(
            ArrowRows(table, struct),
            path,
            "append",
            None,
            None,
            schema_evolution,
            False,
            metadata,
            txn,
        )
        return self._committed(self._backend.write(request))

    def replace_rows(
        self,
        rows: Sequence[Sequence[Any] | Mapping[str, Any]],
        schema: StructType | str,
        path: str,
        where: Mapping[str, Sequence[Any]],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Replace the table's rows matching ``where`` by ``rows`` (driver rows), in one commit.

        ``where`` maps columns to values: a row matches when each column holds one of its
        values. Every new row must match too (it takes the place of those it replaces). The
        table is created when absent. ``rows_written`` counts the new rows only.

        Raises:
            SchemaMismatchError, ConcurrentWriteError: as :meth:`write`.
            ValueError: a new row does not match ``where``.
        """
        table, struct = arrow_rows(rows, schema)
        check_rows_within(table, path, where)
        meta = self.lineage.commit_metadata(metadata)
        return self._committed(
            self._backend.replace_rows(ArrowRows(table, struct), path, where, meta)
        )

    def stage(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode = "append",
        *,
        partition_by: Sequence[str] | None = None,
        replace_partitions: ReplacePartitions = None,
        schema_evolution: bool = False,
        overwrite_schema: bool = False,
        metadata: Mapping[str, Any] | None = None,
        txn: AppTransaction | None = None,
        properties: Mapping[str, str] | None = None,
        constraints: Mapping[str, str] | None = None,
    ) -> StagedWrite:
        """The first half of :meth:`write`: compute ``df``'s rows, uncommitted.

        A job that must judge what it computed before publishing anything (silver's ``fail``
        rules) stages every output, then commits them or aborts them all. The schema is checked
        here, before any Spark work. A conflicting commit landing between ``stage`` and
        ``commit`` makes ``commit`` raise :class:`ConcurrentWriteError`.

        Args: as :meth:`write`, and
            constraints: Delta CHECK constraints (name -> Spark SQL) the table gets in the
                commit that creates it (native backend; see :meth:`set_constraints` for a
                table that exists).

        Returns:
            A :class:`StagedWrite` to pass to :meth:`commit` or :meth:`abort`.
        """
        request = self._request(
            df,
            path,
            mode,
            partition_by,
            replace_partitions,
            schema_evolution,
            overwrite_schema,
            metadata,
            txn,
            properties,
            constraints,
        )
        return self._backend.stage(request)

    def commit(self, staged: StagedWrite) -> WriteResult:
        """Commit a staged write in one atomic Delta commit.

        Raises:
            ConcurrentWriteError: a conflicting commit landed first; nothing was committed
                (:meth:`abort` discards what was staged).
            ValueError: the staged write was already committed, failed or aborted.
        """
        if staged.state != "staged":
            raise ValueError(f"{staged.path}: this staged write was already {staged.state}")
        try:
            result = staged._commit()  # noqa: SLF001 - the backend's half of the write
        except BaseException:
            staged.state = "failed"
            raise
        staged.state = "committed"
        return self._committed(result)

    def abort(self, staged: StagedWrite) -> None:
        """Discard a staged write; the table is untouched. A no-op once committed."""
        if staged.state not in ("staged", "failed"):
            return
        staged.state = "aborted"
        staged._abort()  # noqa: SLF001
        log.info("table_write_aborted", extra={"fields": {"table": staged.path}})

    def _committed(self, result: WriteResult) -> WriteResult:
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

    def upsert(
        self,
        df: DataFrame,
        path: str,
        keys: Sequence[str],
        *,
        partition_by: Sequence[str] | None = None,
        schema_evolution: bool = False,
        metadata: Mapping[str, Any] | None = None,
        txn: AppTransaction | None = None,
        keys_unique: bool = False,
        key_lower_bounds: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Insert rows of ``df`` whose keys are new; replace rows whose keys exist (MERGE).

        The native backend runs Delta's MERGE; delta-rs rewrites the kept and new rows (only
        the touched partitions when the partition columns are among the keys).

        Args:
            df: the new rows; each key must appear at most once.
            path: the table path; created when absent.
            keys: the key columns.
            partition_by: partition columns when the table is created.
            schema_evolution: allow new columns.
            metadata: extra commit metadata.
            txn: an application transaction committed with the merge (as :meth:`write`):
                a merge whose claim was already made is skipped - a streaming query replaying
                a micro-batch it had committed before a crash changes nothing.
            keys_unique: the caller guarantees each key once in ``df`` (an aggregation's
                output): the check, a Spark job of its own, is skipped.
            key_lower_bounds: key column -> a value no row of ``df`` is below (its least
                non-null value): the native MERGE then reads only the table's files that can
                hold a matching row (their statistics reach the bound), not the whole table -
                a streaming view merging recent windows into a table of all past ones. The
                caller vouches for the bounds; rows of the table below them are left as they
                are.

        Raises:
            ValueError: ``keys`` empty, not columns of ``df``, or duplicated in ``df``; a
                bound on a column that is not a key.
            SchemaMismatchError: as :meth:`write`.
            AlreadyCommittedError: ``txn``'s claim was already made; nothing was committed.
        """
        keys = check_upsert(df, path, keys, key_lower_bounds, keys_unique)
        if not self.exists(path):
            result = self.write(
                df, path, "overwrite", partition_by=partition_by, metadata=metadata, txn=txn
            )
            return WriteResult(
                path, result.version, result.rows_written, result.files_added, "upsert"
            )
        if not schema_evolution:  # the same schema rules as a write, before any work
            table_schema = self.read(path, record=False).schema
            resolve_schema(nullable(df.schema), table_schema, False, False, path)
        meta = self.lineage.commit_metadata({"operation": "upsert", **(metadata or {})})
        bounds = {k: v for k, v in (key_lower_bounds or {}).items() if v is not None}
        return self._committed(
            self._backend.upsert(df, path, keys, schema_evolution, meta, txn, bounds)
        )

    def changes(self, path: str, start_version: int) -> DataFrame | None:
        """Rows inserted, updated or deleted from ``start_version`` to the latest version.

        Delta's change data feed (``_change_type``: ``insert``, ``update_preimage``,
        ``update_postimage``, ``delete``; ``_commit_version``; ``_commit_timestamp``), read
        instead of comparing whole snapshots. Available on the native backend for tables
        created with ``delta.enableChangeDataFeed``; None otherwise (the caller then compares
        snapshots).

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        return self._backend.changes(path, start_version)

    def set_constraints(
        self, path: str, wanted: Mapping[str, str], *, drop_only: bool = False
    ) -> dict[str, list[str]] | None:
        """Make the table's Delta CHECK constraints exactly ``wanted`` (name -> Spark SQL).

        A writer that breaks one then fails, whoever it is. Native backend only (the
        expressions are Spark SQL); None on delta-rs.

        Args:
            path: the table.
            wanted: the constraints to have, by name.
            drop_only: only drop the constraints not wanted (or changed) - before a write
                whose rows follow the new rules; add the others after it.

        Returns:
            The constraint names ``added`` and ``dropped``, or None when not supported.
        """
        return self._backend.set_constraints(path, wanted, drop_only)

    # ----------------------------------------------------------------------------------------
    # Maintenance
    # ----------------------------------------------------------------------------------------

    def vacuum(self, path: str, retention_hours: int = 168, *, dry_run: bool = False) -> list[str]:
        """Delete data files no version within ``retention_hours`` references.

        Also removes staging folders left by crashed delta-rs writes.

        Returns:
            The files deleted (or that would be, with ``dry_run``).
        """
        return self._backend.vacuum(
            path, retention_hours, dry_run, self.lineage.commit_metadata({"operation": "vacuum"})
        )

    def compact(
        self, path: str, target_size_mb: int = 128, *, zorder_by: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Rewrite small files into files of about ``target_size_mb`` (no data change).

        Args:
            path: the table.
            target_size_mb: the size files are combined up to.
            zorder_by: cluster the rows by these columns (Z-order), so that filters on them
                skip more files.

        Returns:
            Metrics of the compaction (``numFilesAdded``, ``numFilesRemoved``...).
        """
        return self._backend.compact(
            path, target_size_mb, zorder_by, self.lineage.commit_metadata({"operation": "compact"})
        )


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
