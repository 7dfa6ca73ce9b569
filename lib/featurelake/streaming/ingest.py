"""The micro-batch body of a source's ingest query: raw events -> silver, quarantine, late.

For micro-batch ``n`` of a query, :class:`EventIngest`

1. parses the raw lines with the bronze parser and validates them with
   :func:`~featurelake.lakehouse.silver.build_silver` and the source's silver declaration -
   the very code the batch silver job runs, its ``not_future`` rules judged at the batch's
   recorded time and its ``in_reference`` rules against the reference tables' latest versions
   (kept in Spark's cache between batches while their Delta version is unchanged:
   :class:`ReferenceCache`);
2. classifies every event once - its outcome (clean, quarantined, duplicate) and, for a clean
   one, whether it is late - into a persisted frame, and counts the outcomes and the greatest
   on-time event time in the same single action; silver, quarantine and late events are then
   projections of that frame (no rule is judged twice);
3. splits the clean events at the watermark: the greatest event time of the on-time events of
   batches ``< n`` minus the source's ``watermark`` (Spark's own definition; none before the
   first event). An event at or before it is late;
4. appends the quarantined rows (with the rules they broke) to ``<table>_quarantine``, the late
   events to ``<table>_late`` (with the watermark they missed) and the on-time events to
   ``silver/<table>`` - each commit claiming (``featurelake.stream.<query id>``, ``n``), so
   a batch replayed after a crash commits nothing twice; an empty quarantine or late table is
   not committed to. The silver commit comes last and records the running greatest event
   time: a restarted query reads the watermark of batch ``n`` back from the silver table's
   history.

Every raw event lands in exactly one place: silver, quarantine, late, or (an exact repeat of
another event of the same micro-batch) counted as a duplicate. The progress record of a batch
says how long each step took (``sink_phase_seconds``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.concurrency import run_concurrently
from featurelake.core.config import Settings
from featurelake.core.runner import JobContext
from featurelake.core.session import run_constant
from featurelake.delta import DeltaTables
from featurelake.delta.errors import AlreadyCommittedError, TableNotFoundError
from featurelake.delta.model import AppTransaction, Lineage
from featurelake.lakehouse.silver import OUTCOME, SilverTableSpec, build_silver
from featurelake.lakehouse.silver.job import missing_reference
from featurelake.lakehouse.sources import SourceSpec
from featurelake.streaming.checkpoints import batch_time, query_id
from featurelake.streaming.events import as_bronze_rows, is_late, late_events, on_time_events
from featurelake.streaming.progress import ProgressBoard

__all__ = ["EventIngest", "LATE_COLUMNS", "Phases", "ReferenceCache", "stream_claim"]

log = logging.getLogger(__name__)

#: Columns a late event carries besides its silver columns.
LATE_COLUMNS = ("_watermark", "_run_id")

_BATCH_KEY = "stream_batch"
_QUERY_KEY = "stream_query"
_MAX_EVENT_KEY = "stream_max_event_time"


def stream_claim(checkpoint: str, batch_id: int) -> AppTransaction:
    """The claim every write of micro-batch ``batch_id`` of the query at ``checkpoint`` carries."""
    return AppTransaction(f"featurelake.stream.{query_id(checkpoint)}", batch_id)


class ReferenceCache:
    """The tables of a declaration's ``in_reference`` rules, kept between micro-batches.

    Each batch asks each table's log for its latest version (a listing of ``_delta_log``, no
    Spark job). While that is the version held, the batch joins the held rows (the rules' key
    columns, in Spark's cache); when it changed, that version is read and cached instead and
    the old one released - so a customer added to ``silver/customers`` mid-stream is known
    from the next micro-batch on. (Reading the table every batch cost a file listing and scan
    planning each time, and scanning its files twice: once per pass of the rules.)

    Args:
        settings: where the tables are (``lakehouse``).
        spec: the silver declaration whose rules read them.
    """

    def __init__(self, settings: Settings, spec: SilverTableSpec) -> None:
        self.settings = settings
        self.spec = spec
        self._keys = {
            name: sorted({str(e.key) for e in spec.expectations if str(e.reference) == name})
            for name in spec.references
        }
        self._held: dict[str, tuple[int, DataFrame]] = {}
        #: versions read so far (a table whose version changed is read again)
        self.reads = 0

    def current(self, tables: DeltaTables) -> dict[str, DataFrame]:
        """``<layer>/<table>`` -> the table's rules' key columns at its latest version.

        Raises:
            DataError: a reference table does not exist.
        """
        frames = {}
        for name, keys in self._keys.items():
            layer, table = name.split("/")
            path = self.settings.lakehouse.table_path(layer, table)
            try:
                version = tables.version(path)
                held = self._held.get(name)
                if held is None or held[0] != version:
                    rows = tables.read(path, version=version)
                    cached = rows.select(*[F.col(f"`{k}`") for k in keys]).persist()
                    if held is not None:
                        held[1].unpersist()
                    self._held[name] = held = (version, cached)
                    self.reads += 1
                    log.info(
                        "stream_reference_cached",
                        extra={"fields": {"table": path, "version": version}},
                    )
            except TableNotFoundError as exc:
                raise missing_reference(self.spec, name, path) from exc
            frames[name] = held[1]
        return frames

    def release(self) -> None:
        """Drop the cached rows."""
        for _, rows in self._held.values():
            rows.unpersist()
        self._held.clear()


class Phases:
    """Seconds spent in each step of a micro-batch, in order (``sink_phase_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        """The step ``name`` ended now: it took the time since the previous one ended."""
        now = time.monotonic()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 3)
        self._last = now


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
        self.references = ReferenceCache(ctx.settings, spec)

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

    def close(self) -> None:
        """Release what the sink keeps between micro-batches (the cached reference tables)."""
        self.references.release()

    def __call__(self, lines: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        phases = Phases()
        tables = self._tables_for(lines)
        claim = stream_claim(self.checkpoint, batch_id)
        received_at = batch_time(self.checkpoint, batch_id)
        latest_before = self.latest_before(tables, batch_id)
        watermark = latest_before - self.lateness if latest_before else None
        references = self.references.current(tables)
        phases.done("prepare")
        plan = build_silver(
            as_bronze_rows(
                lines, spec=self.source, batch_id=f"stream-{batch_id}", ingested_at=received_at
            ),
            self.spec,
            as_of=received_at,
            run_id=self.ctx.run_id,
            quarantined_at=received_at,
            pii_key=self.pii_key,
            references=references,
        )
        phases.done("plan")
        # Every event once, with its outcome: the rules, the reference joins and the dedup
        # window run here, in the one action below; the writes read the cached rows.
        classified = plan.classified.persist()
        try:
            event_time = F.col(f"`{self.event_time}`")
            clean = F.col(OUTCOME) == "clean"
            # The flag in a projection: the watermark is a run constant, which an aggregate
            # function may not hold.
            flags = classified.select(
                F.col(OUTCOME).alias("outcome"),
                (clean & is_late(self.event_time, watermark)).alias("late"),
                F.when(clean, event_time).alias("event_time"),
            )
            on_time = (F.col("outcome") == "clean") & ~F.col("late")
            stats = flags.agg(
                F.count(F.lit(1)).alias("events"),
                F.count(F.when(F.col("outcome") == "quarantined", True)).alias("quarantined"),
                F.count(F.when(F.col("outcome") == "duplicate", True)).alias("duplicates"),
                F.count(F.when(F.col("late"), True)).alias("late"),
                F.max(F.when(on_time, F.col("event_time"))).alias("latest"),
            ).first()
            assert stats is not None
            phases.done("classify")
            batch_latest = _utc(stats["latest"])
            latest = max((t for t in (latest_before, batch_latest) if t), default=None)
            silver, quarantine = plan.split(classified)
            # Quarantine and late events first (at once: two tables, each commit mostly
            # delta-spark's fixed cost), silver (which the views read) last; an empty
            # quarantine or late table is not committed to.
            side: dict[str, Callable[[], int]] = {}
            if stats["quarantined"]:
                side["quarantine"] = functools.partial(
                    self._append, tables, quarantine, self.quarantine_path, claim
                )
            if watermark is not None and stats["late"]:
                late = late_events(silver, self.event_time, watermark).select(
                    *[F.col(f"`{c}`") for c in silver.columns],
                    run_constant(watermark).alias("_watermark"),
                    F.lit(self.ctx.run_id).alias("_run_id"),
                )
                side["late"] = functools.partial(self._append, tables, late, self.late_path, claim)
            done = run_concurrently(list(side.values()), max_workers=2)
            committed = dict(zip(side, done, strict=True))
            quarantined, late_rows = committed.get("quarantine", 0), committed.get("late", 0)
            if side:
                phases.done("_and_".join(side) + "_commit")
            meta = {
                _QUERY_KEY: query_id(self.checkpoint),
                _BATCH_KEY: str(batch_id),
                _MAX_EVENT_KEY: latest.isoformat() if latest else "",
            }
            on_time_rows = on_time_events(silver, self.event_time, watermark).coalesce(1)
            written = self._append(tables, on_time_rows, self.silver_path, claim, **meta)
            phases.done("silver_commit")
        finally:
            classified.unpersist()
        self._max_after[batch_id] = latest
        self._max_after.pop(batch_id - 2, None)
        now = datetime.now(timezone.utc)
        self.board.update(
            self.query_name,
            {
                "batch_id": batch_id,
                "input_rows": int(stats["events"]),
                "silver_rows": written,
                "quarantined_rows": quarantined,
                "late_rows": late_rows,
                "duplicate_rows": int(stats["duplicates"]),
                "watermark_timestamp_seconds": watermark.timestamp() if watermark else None,
                "end_to_end_lag_seconds": round((now - batch_latest).total_seconds(), 3)
                if batch_latest
                else None,
                "sink_seconds": round(time.monotonic() - started, 3),
                "sink_phase_seconds": phases.seconds,
            },
            log_event="stream_ingest_batch",
        )


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
