"""Values passed between the table facade and its backends."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

__all__ = [
    "AppTransaction",
    "ArrowRows",
    "ColumnStats",
    "Lineage",
    "ReplacePartitions",
    "StagedWrite",
    "WriteMode",
    "WriteRequest",
    "WriteResult",
]

WriteMode = Literal["append", "overwrite"]
ReplacePartitions = Literal["dynamic"] | Mapping[str, Any] | None


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
class ArrowRows:
    """Rows held on the driver, as an Arrow table of a Spark schema (``append_rows``)."""

    table: Any  # pyarrow.Table
    struct: StructType


@dataclass(frozen=True)
class WriteRequest:
    """One write, as the facade checked it (see ``DeltaTables.write`` for each field)."""

    data: DataFrame | ArrowRows
    path: str
    mode: WriteMode = "append"
    partition_by: Sequence[str] | None = None
    replace_partitions: ReplacePartitions = None
    schema_evolution: bool = False
    overwrite_schema: bool = False
    metadata: Mapping[str, Any] | None = None
    txn: AppTransaction | None = None
    properties: Mapping[str, str] | None = None
    constraints: Mapping[str, str] | None = None


@dataclass
class StagedWrite:
    """A write whose data is computed but not committed yet (``DeltaTables.stage``).

    Readers see nothing of it until ``DeltaTables.commit``; ``DeltaTables.abort`` discards it.

    Attributes:
        path: the table path.
        rows: rows in the staged data (from their Parquet footers, or counted).
        files: number of staged data files (or partitions of the computed rows).
        state: ``staged``, ``committed``, ``failed`` (the commit raised; ``abort`` still
            removes what was staged) or ``aborted``.
    """

    path: str
    rows: int
    files: int
    _commit: Callable[[], WriteResult] = field(repr=False)
    _abort: Callable[[], None] = field(repr=False)
    state: Literal["staged", "committed", "failed", "aborted"] = "staged"


# The reads of the table being built in this context (see Lineage.scope); None outside one.
_SCOPED_READS: ContextVar[dict[str, int] | None] = ContextVar("featurelake_reads", default=None)


@dataclass
class Lineage:
    """Commit metadata: who wrote, in which run, after reading which table versions.

    ``reads`` holds every version the job read. A job building several tables builds each
    inside :meth:`scope`: a commit made there records only the reads made there, so each
    table names the tables it came from, not everything the job read.
    """

    job: str = "interactive"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reads: dict[str, int] = field(default_factory=dict)

    def record_read(self, path: str, version: int) -> None:
        """Remember that ``path`` was read at ``version`` (job-wide and in the current scope)."""
        self.reads[path] = version
        scoped = _SCOPED_READS.get()
        if scoped is not None:
            scoped[path] = version

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Commits inside record only the reads made inside (one table's inputs)."""
        token = _SCOPED_READS.set({})
        try:
            yield
        finally:
            _SCOPED_READS.reset(token)

    def commit_metadata(self, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
        """``featurelake.*`` key/values for a commit's info: job, run id, reads and ``extra``."""
        scoped = _SCOPED_READS.get()
        reads = self.reads if scoped is None else scoped
        meta = {
            "featurelake.job": self.job,
            "featurelake.run_id": self.run_id,
            "featurelake.reads": json.dumps(reads, sort_keys=True),
        }
        for key, value in (extra or {}).items():
            meta[f"featurelake.{key}"] = value if isinstance(value, str) else json.dumps(value)
        return meta
