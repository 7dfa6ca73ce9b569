"""The micro-batch body of a source's ingest query: raw events -> silver, quarantine, late.

For micro-batch ``n`` of a query, :class:`EventIngest`

1. parses the raw lines with the bronze parser and validates them with
   :func:`~featurelake.lakehouse.silver.build_silver` and the source's silver declaration -
   the very code the batch silver job runs, its ``not_future`` rules judged at the batch's
   recorded time and its ``in_reference`` rules against the reference tables' latest versions;
2. splits the clean events at the watermark: the greatest event time of the on-time events of
   batches ``< n`` minus the source's ``watermark`` (Spark's own definition; none before the
   first event). An event at or before it is late;
3. appends the quarantined rows (with the rules they broke) to ``<table>_quarantine``, the late
   events to ``<table>_late`` (with the watermark they missed) and the on-time events to
   ``silver/<table>`` - each commit claiming (``featurelake.stream.<query id>``, ``n``), so
   a batch replayed after a crash commits nothing twice. The silver commit comes last and
   records the running greatest event time: a restarted query reads the watermark of batch
   ``n`` back from the silver table's history.

Every raw event lands in exactly one place: silver, quarantine, late, or (an exact repeat of
another event of the same micro-batch) counted as a duplicate.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.runner import JobContext
from featurelake.core.session import run_constant
from featurelake.delta import DeltaTables
from featurelake.delta.errors import AlreadyCommittedError
from featurelake.delta.model import AppTransaction, Lineage
from featurelake.lakehouse.silver import SilverTableSpec, build_silver
from featurelake.lakehouse.silver.job import read_references
from featurelake.lakehouse.sources import SourceSpec
from featurelake.streaming.checkpoints import batch_time, query_id
from featurelake.streaming.events import as_bronze_rows, late_events, on_time_events
from featurelake.streaming.progress import ProgressBoard

__all__ = ["EventIngest", "LATE_COLUMNS", "stream_claim"]

log = logging.getLogger(__name__)

#: Columns a late event carries besides its silver columns.
LATE_COLUMNS = ("_watermark", "_run_id")

_BATCH_KEY = "stream_batch"
_QUERY_KEY = "stream_query"
_MAX_EVENT_KEY = "stream_max_event_time"


def stream_claim(checkpoint: str, batch_id: int) -> AppTransaction:
    """The claim every write of micro-batch ``batch_id`` of the query at ``checkpoint`` carries."""
    return AppTransaction(f"featurelake.stream.{query_id(checkpoint)}", batch_id)


class EventIngest:
    """``foreachBatch`` body of a streaming source's ingest query.

    Args:
        ctx: the stream job's context (settings, run id, lineage).
        source: the streaming source declaration.
        spec: the silver table declaration fed by ``source``.
        checkpoint: the query's checkpoint folder (query id, batch times).
        pii_key: the HMAC key when ``spec`` hashes PII columns.
        board: where the batch's figures go.
        query_name: the query's name on the board.
    """

    def __init__(
        self,
        ctx: JobContext,
        source: SourceSpec,
        spec: SilverTableSpec,
        checkpoint: str,
        pii_key: bytes | None,
        board: ProgressBoard,
        query_name: str,
    ) -> None:
        assert source.stream is not None
        self.ctx = ctx
        self.source = source
        self.spec = spec
        self.checkpoint = checkpoint
        self.pii_key = pii_key
        self.board = board
        self.query_name = query_name
        self.event_time = source.stream.event_time
        self.lateness = source.stream.watermark
        self.silver_path = ctx.path("silver", spec.name)
        self.quarantine_path = ctx.path("silver", spec.quarantine_name)
        self.late_path = ctx.path("silver", spec.late_name)
        # batch id -> greatest on-time event time after it (None: no event yet)
        self._max_after: dict[int, datetime | None] = {}
        self._tables: DeltaTables | None = None

    def _tables_for(self, batch: DataFrame) -> DeltaTables:
        # The query's own (cloned) session: settings a write makes for itself stay in it.
        if self._tables is None:
            self._tables = DeltaTables.for_settings(
                batch.sparkSession,
                self.ctx.settings.delta,
                Lineage(job=self.ctx.job, run_id=self.ctx.run_id),
            )
        return self._tables

    def latest_before(self, tables: DeltaTables, batch_id: int) -> datetime | None:
        """The greatest on-time event time of batches ``< batch_id`` (None before any event).

        Remembered from the previous batch; after a restart, read from the silver table's
        history (each of this query's commits records it).
        """
        if batch_id - 1 in self._max_after:
            return self._max_after[batch_id - 1]
        if not tables.exists(self.silver_path):
            return None
        wanted = query_id(self.checkpoint)
        best: tuple[int, str] | None = None
        for entry in tables.history(self.silver_path, limit=100):
            if entry.get(f"featurelake.{_QUERY_KEY}") != wanted:
                continue
            batch = int(entry[f"featurelake.{_BATCH_KEY}"])
            if batch < batch_id and (best is None or batch > best[0]):
                best = (batch, str(entry.get(f"featurelake.{_MAX_EVENT_KEY}") or ""))
        return datetime.fromisoformat(best[1]) if best and best[1] else None

    def _append(
        self, tables: DeltaTables, df: DataFrame, path: str, claim: AppTransaction, **meta: str
    ) -> int:
        """Append with the batch's claim; 0 rows when the claim was made before (a replay)."""
        try:
            return tables.write(df, path, "append", txn=claim, metadata=meta).rows_written
        except AlreadyCommittedError:
            log.info(
                "stream_batch_already_committed",
                extra={"fields": {"table": path, "batch_id": claim.version}},
            )
            return 0

    def __call__(self, lines: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        tables = self._tables_for(lines)
        claim = stream_claim(self.checkpoint, batch_id)
        received_at = batch_time(self.checkpoint, batch_id)
        latest_before = self.latest_before(tables, batch_id)
        watermark = latest_before - self.lateness if latest_before else None
        lines = lines.persist()
        clean: DataFrame | None = None
        try:
            rows_in = lines.count()
            bronze = as_bronze_rows(
                lines,
                spec=self.source,
                batch_id=f"stream-{batch_id}",
                ingested_at=received_at,
            )
            plan = build_silver(
                bronze,
                self.spec,
                as_of=received_at,
                run_id=self.ctx.run_id,
                quarantined_at=received_at,
                pii_key=self.pii_key,
                references=read_references(tables, self.ctx.settings, self.spec),
            )
            clean = plan.silver.persist()
            late = late_events(clean, self.event_time, watermark).select(
                *[F.col(f"`{c}`") for c in clean.columns],
                run_constant(watermark or received_at).alias("_watermark"),
                F.lit(self.ctx.run_id).alias("_run_id"),
            )
            on_time = on_time_events(clean, self.event_time, watermark)
            stats = on_time.agg(F.max(F.col(f"`{self.event_time}`")).alias("latest")).first()
            batch_latest = _utc(stats["latest"]) if stats else None
            latest = max((t for t in (latest_before, batch_latest) if t), default=None)
            # Quarantine and late events first, silver (which the views read) last; an empty
            # quarantine or late table is not committed to.
            quarantined = late_rows = 0
            if not plan.quarantine.isEmpty():
                quarantined = self._append(tables, plan.quarantine, self.quarantine_path, claim)
            if watermark is not None and not late.isEmpty():
                late_rows = self._append(tables, late, self.late_path, claim)
            meta = {
                _QUERY_KEY: query_id(self.checkpoint),
                _BATCH_KEY: str(batch_id),
                _MAX_EVENT_KEY: latest.isoformat() if latest else "",
            }
            written = self._append(tables, on_time.coalesce(1), self.silver_path, claim, **meta)
        finally:
            if clean is not None:
                clean.unpersist()
            lines.unpersist()
        self._max_after[batch_id] = latest
        self._max_after.pop(batch_id - 2, None)
        now = datetime.now(timezone.utc)
        self.board.update(
            self.query_name,
            {
                "batch_id": batch_id,
                "input_rows": rows_in,
                "silver_rows": written,
                "quarantined_rows": quarantined,
                "late_rows": late_rows,
                "duplicate_rows": max(rows_in - written - quarantined - late_rows, 0),
                "watermark_timestamp_seconds": watermark.timestamp() if watermark else None,
                "end_to_end_lag_seconds": round((now - batch_latest).total_seconds(), 3)
                if batch_latest
                else None,
                "sink_seconds": round(time.monotonic() - started, 3),
            },
            log_event="stream_ingest_batch",
        )


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
