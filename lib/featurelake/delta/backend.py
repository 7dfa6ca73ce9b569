"""What a table backend does: the operations :class:`featurelake.delta.DeltaTables` delegates.

Two implementations: :mod:`featurelake.delta.native` (delta-spark, ``format("delta")``) and
:mod:`featurelake.delta.rs` (Spark writes Parquet, delta-rs commits). The facade checks the
arguments, records lineage and counts; a backend only reads and commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from pyspark.sql import DataFrame

from featurelake.delta.model import (
    AppTransaction,
    ArrowRows,
    ColumnStats,
    StagedWrite,
    WriteRequest,
    WriteResult,
)

__all__ = ["TableBackend"]


class TableBackend(Protocol):
    """One way of reading and committing Delta tables."""

    name: str

    def exists(self, path: str) -> bool:
        """True when ``path`` holds a Delta table."""

    def version(self, path: str) -> int:
        """The latest version, from the log alone (no Spark job)."""

    def history(self, path: str, limit: int | None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp (ms), operation, ``featurelake.*`` keys."""

    def transaction_version(self, path: str, app_id: str) -> int | None:
        """The latest version committed for ``app_id``; None when none."""

    def read(
        self, path: str, version: int | None, timestamp: datetime | None
    ) -> tuple[DataFrame, int, int]:
        """(rows, version read, row count from the log or -1 when unknown)."""

    def row_count(self, path: str, version: int | None) -> int:
        """Rows of a version from the log's file statistics; -1 when a file has none."""

    def column_stats(
        self, path: str, columns: Sequence[str], version: int | None
    ) -> dict[str, ColumnStats] | None:
        """Per-column min/max/null count from the log; None when not available."""

    def stage(self, request: WriteRequest) -> StagedWrite:
        """Compute the write's data without committing it."""

    def write(self, request: WriteRequest) -> WriteResult:
        """Write and commit in one; on a conflict nothing of the write is left behind."""

    def replace_rows(
        self,
        rows: ArrowRows,
        path: str,
        where: Mapping[str, Sequence[Any]],
        metadata: Mapping[str, str],
    ) -> WriteResult:
        """Replace the rows matching ``where`` (column IN values, AND-ed) by ``rows`` at once."""

    def upsert(
        self,
        df: DataFrame,
        path: str,
        keys: Sequence[str],
        schema_evolution: bool,
        metadata: Mapping[str, str],
        txn: AppTransaction | None = None,
        lower_bounds: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """MERGE ``df`` into the existing table on ``keys`` (with ``txn``'s claim, if any).

        ``lower_bounds`` (key column -> the least value in ``df``) may limit which of the
        table's files are read; it never changes the result.
        """

    def partition_columns(self, path: str) -> list[str]:
        """The table's partition columns."""

    def vacuum(
        self, path: str, retention_hours: int, dry_run: bool, metadata: Mapping[str, str]
    ) -> list[str]:
        """Delete unreferenced files older than the retention; the files (to be) deleted."""

    def changes(self, path: str, start_version: int) -> DataFrame | None:
        """Rows changed since ``start_version`` (Delta's change data feed); None if unknown."""

    def set_constraints(
        self, path: str, wanted: Mapping[str, str], drop_only: bool
    ) -> dict[str, list[str]] | None:
        """Make the table's CHECK constraints ``wanted``; None when not supported."""

    def compact(
        self,
        path: str,
        target_size_mb: int,
        zorder_by: Sequence[str],
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        """Rewrite small files (optionally Z-ordered); the operation's metrics."""
