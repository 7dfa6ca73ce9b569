"""One bronze batch, whatever its source: the claimed append and the ledger entries.

A batch is what one bronze commit of a source appends: the rows of some files, of some HTTP
pages or of one JDBC increment. Each of these is a :class:`BatchEntry`, listed in the bronze
commit's metadata (so a ledger a killed run left behind can be completed from the commit) and
then recorded in the ingest ledger by an append that claims the bronze version (so it lands
once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from featurelake.core.runner import JobContext
from featurelake.delta import AlreadyCommittedError, AppTransaction
from featurelake.lakehouse.bronze.parsing import with_lineage
from featurelake.lakehouse.bronze.schema import (
    BATCH_ID,
    ERROR_PREVIEW,
    INGESTED_FILES_SCHEMA,
    RESCUED_DATA,
    SOURCE_FILE,
)
from featurelake.lakehouse.sources import SourceSpec

log = logging.getLogger(__name__)


# The bronze commit's metadata key listing the batch's entries.
ENTRIES_META = "bronze_files"


# Up to this many entries per batch, rows per entry are counted while the batch is written (two
# aggregates per entry in one observation); a larger batch is read back once and grouped.
OBSERVED_ENTRIES_MAX = 64


_LEDGER_LOCK = threading.Lock()


@dataclass(frozen=True)
class BatchEntry:
    """One file, HTTP page or JDBC increment of a batch, as the ledger records it.

    Attributes:
        path: the file's path, the page's URL (``<url>#page=<n>``) or ``jdbc:<table>``; the
            bronze rows it gave have it in ``_source_file``.
        size: bytes of the file or page body; None for a JDBC increment.
        modified_at: the file's modification time, when the page was fetched, or when the
            JDBC increment was planned (UTC).
        sha256: hex checksum of the file or page body; None for a JDBC increment.
        status: ``ingested``, ``reingested``, ``skipped`` or ``failed``.
        cursor_from: a JDBC increment's lower cursor bound (exclusive; None on the first run).
        cursor_to: a JDBC increment's upper cursor bound (inclusive).
    """

    path: str
    size: int | None
    modified_at: datetime
    sha256: str | None
    status: str
    cursor_from: str | None = None
    cursor_to: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        """The entry as the bronze commit's metadata lists it (JSON values)."""
        meta: dict[str, Any] = {
            "path": self.path,
            "size": self.size,
            "modified_at": self.modified_at.isoformat(),
            "sha256": self.sha256,
            "status": self.status,
        }
        if self.cursor_to is not None:
            meta["cursor_from"] = self.cursor_from
            meta["cursor_to"] = self.cursor_to
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> BatchEntry:
        """The entry a bronze commit's metadata listed (see :meth:`to_metadata`)."""
        size = meta.get("size")
        return cls(
            path=meta["path"],
            size=int(size) if size is not None else None,
            modified_at=datetime.fromisoformat(meta["modified_at"]),
            sha256=meta.get("sha256"),
            status=meta["status"],
            cursor_from=meta.get("cursor_from"),
            cursor_to=meta.get("cursor_to"),
        )

    def ledger_row(
        self,
        source: str,
        batch_id: str,
        rows: int,
        at: datetime,
        *,
        status: str | None = None,
        error: str | None = None,
    ) -> tuple[Any, ...]:
        """The entry as a row of :data:`INGESTED_FILES_SCHEMA`."""
        if error is not None and len(error) > ERROR_PREVIEW:
            error = error[:ERROR_PREVIEW] + "..."
        return (
            source,
            self.path,
            self.size,
            self.modified_at,
            self.sha256,
            batch_id,
            rows,
            status or self.status,
            at,
            error,
            self.cursor_from,
            self.cursor_to,
        )


def bronze_claim_id(source: str) -> str:
    """The application id claimed by each bronze commit of ``source``."""
    return f"featurelake.bronze.{source}"


def ledger_claim_id(source: str) -> str:
    """The application id claimed by the ledger entries of ``source``'s bronze commits."""
    return f"featurelake.ledger.{source}"


def new_batch_id(source: str, now: datetime, run_id: str) -> str:
    """A batch id naming the source, the time and the run: ``<source>-<UTC time>-<run id>``."""
    return f"{source}-{now.strftime('%Y%m%dT%H%M%SZ')}-{run_id}"


def read_ledger(ctx: JobContext, ledger_path: str, source: str) -> list[dict[str, Any]]:
    """The ledger rows of one source (small: one row per file, page or increment)."""
    if not ctx.tables.exists(ledger_path):
        return []
    # Timestamps travel as epoch microseconds: collect() would render them in the driver's
    # local time zone.
    rows = (
        ctx.tables.read(ledger_path)
        .where(F.col("source") == source)
        .withColumns(
            {
                "modified_at": F.unix_micros("modified_at"),
                "ingested_at": F.unix_micros("ingested_at"),
            }
        )
        .collect()
    )
    return [
        {
            **row.asDict(),
            "modified_at": _from_micros(row["modified_at"]),
            "ingested_at": _from_micros(row["ingested_at"]),
        }
        for row in rows
    ]


def _from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value // 1_000_000, timezone.utc).replace(
        microsecond=value % 1_000_000
    )


def append_batch(
    ctx: JobContext,
    spec: SourceSpec,
    parsed: DataFrame,
    entries: Sequence[BatchEntry],
    *,
    batch_id: str,
    ingested_at: datetime,
    claim: AppTransaction,
    observe_up_to: int = OBSERVED_ENTRIES_MAX,
) -> tuple[int, dict[str, tuple[int, int]]]:
    """Append parsed rows to ``bronze/<source>`` in one commit carrying the claim and entries.

    Args:
        ctx: the job context.
        spec: the source.
        parsed: the declared columns, ``_rescued_data`` and ``_source_file`` (an entry's path).
        entries: what the rows come from, listed in the commit's metadata.
        batch_id: the batch id of every row.
        ingested_at: the batch's ingest time.
        claim: committed with the rows (:class:`~featurelake.delta.AppTransaction`).
        observe_up_to: count rows per entry while writing up to this many entries; read the
            batch back beyond.

    Returns:
        (the bronze version committed, entry path -> (rows, rows with ``_rescued_data``)).

    Raises:
        ConcurrentWriteError: the claim was lost; nothing was committed.
    """
    table = ctx.path("bronze", spec.name)
    bronze = parsed.transform(with_lineage, spec=spec, batch_id=batch_id, ingested_at=ingested_at)
    paths = [e.path for e in entries]
    observation = None
    if len(paths) <= observe_up_to:
        observation = Observation(f"bronze-{batch_id}")
        bronze = bronze.observe(observation, *per_entry_counts(paths))
    result = ctx.tables.write(
        bronze,
        table,
        mode="append",
        metadata={
            "source": spec.name,
            "batch_id": batch_id,
            ENTRIES_META: [e.to_metadata() for e in entries],
        },
        txn=claim,
    )
    counts = observed_counts(observation, paths) if observation is not None else {}
    if sum(c[0] for c in counts.values()) != result.rows_written:
        # many entries, or counts that do not add up: read the batch back
        counts = batch_counts(ctx, table, batch_id)
    return result.version, counts


def record_in_ledger(
    ctx: JobContext,
    source: str,
    ledger_path: str,
    entries: list[tuple[Any, ...]],
    batch_id: str,
    bronze_version: int | None,
    recovered: bool = False,
) -> None:
    """Append ledger entries; those of a bronze commit claim its version, so they land once.

    A concurrent run that recovered the same commit (it saw the bronze commit before this run
    wrote the ledger) has recorded these entries already: that is not an error.
    """
    txn = (
        AppTransaction(ledger_claim_id(source), bronze_version)
        if bronze_version is not None
        else None
    )
    metadata: dict[str, Any] = {"source": source, "batch_id": batch_id}
    if recovered:
        metadata["recovered"] = True
    try:
        with _LEDGER_LOCK:  # sources ingested concurrently share the ledger (and its creation)
            ctx.tables.append_rows(
                entries,
                INGESTED_FILES_SCHEMA,
                ledger_path,
                metadata=metadata,
                schema_evolution=True,
                txn=txn,
            )
    except AlreadyCommittedError:
        log.info(
            "ledger_already_recorded",
            extra={
                "fields": {"source": source, "batch_id": batch_id, "bronze_version": bronze_version}
            },
        )


def per_entry_counts(paths: list[str]) -> list[Column]:
    """Aggregates for an observation: rows and rescued rows of each entry, by position."""
    aggregates = []
    for i, path in enumerate(paths):
        here = F.col(SOURCE_FILE) == F.lit(path)
        aggregates.append(F.count_if(here).alias(f"rows_{i}"))
        aggregates.append(F.count_if(here & F.col(RESCUED_DATA).isNotNull()).alias(f"rescued_{i}"))
    return aggregates


def observed_counts(observation: Observation, paths: list[str]) -> dict[str, tuple[int, int]]:
    """Rows and rescued rows per entry, as measured while the batch was written."""
    measured = observation.get
    return {
        path: (int(measured[f"rows_{i}"]), int(measured[f"rescued_{i}"]))
        for i, path in enumerate(paths)
    }


def batch_counts(ctx: JobContext, table: str, batch_id: str) -> dict[str, tuple[int, int]]:
    """Rows and rescued rows per entry of one batch, read back from the committed table."""
    rows = (
        ctx.tables.read(table, record=False)
        .where(F.col(BATCH_ID) == batch_id)
        .groupBy(SOURCE_FILE)
        .agg(F.count(F.lit(1)).alias("rows"), F.count(F.col(RESCUED_DATA)).alias("rescued"))
        .collect()
    )
    return {r[SOURCE_FILE]: (int(r["rows"]), int(r["rescued"])) for r in rows}
