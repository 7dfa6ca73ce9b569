"""The micro-batch body of a windowed view's query: updated windows -> online store and gold.

Spark's stateful aggregation (:func:`~featurelake.feature_store.windows.window_aggregates`
with the view's watermark, update mode) hands each micro-batch the windows whose values
changed in it, with their values so far. :class:`WindowedViewSink`

1. for an online view, picks each entity's latest row by the materialisation rule
   (:func:`~featurelake.feature_store.materialize.latest_per_entity`: latest event, then the
   window ending first - the trailing window) and upserts it into the online store, which
   keeps a row only if it is not older than the stored one. This comes first: the online store
   is what serving reads, and the MERGE below takes seconds. A batch replayed after a crash
   writes the same values again: no harm;
2. MERGEs the windows into ``gold/<view table>`` on (join keys, window bounds), the commit
   claiming (``featurelake.stream.<query id>``, batch id): a batch replayed after a crash is
   skipped.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.runner import JobContext
from featurelake.delta import DeltaTables
from featurelake.delta.errors import AlreadyCommittedError
from featurelake.delta.model import Lineage
from featurelake.feature_store.definitions import WINDOW_START, FeatureView
from featurelake.feature_store.materialize import (
    latest_per_entity,
    push_to_online_store,
    with_online_payload,
)
from featurelake.feature_store.online import OnlineStore
from featurelake.feature_store.windows import window_keys
from featurelake.streaming.ingest import Phases, stream_claim
from featurelake.streaming.progress import ProgressBoard

__all__ = ["WindowedViewSink"]

log = logging.getLogger(__name__)


class WindowedViewSink:
    """``foreachBatch`` body of a windowed view's query.

    Args:
        ctx: the stream job's context.
        view: the windowed feature view.
        store: the online store (None: gold only).
        checkpoint: the query's checkpoint folder.
        board: where the batch's figures go.
        query_name: the query's name on the board.
        batch_size: rows per online store write.
    """

    def __init__(
        self,
        ctx: JobContext,
        view: FeatureView,
        store: OnlineStore | None,
        checkpoint: str,
        board: ProgressBoard,
        query_name: str,
        batch_size: int = 1000,
    ) -> None:
        self.ctx = ctx
        self.view = view
        self.store = store
        self.checkpoint = checkpoint
        self.board = board
        self.query_name = query_name
        self.batch_size = batch_size
        self.path = view.source.path(ctx.settings)
        self._tables: DeltaTables | None = None

    def _tables_for(self, batch: DataFrame) -> DeltaTables:
        # The query's own (cloned) session: the MERGE's claim is a session setting.
        if self._tables is None:
            self._tables = DeltaTables.for_settings(
                batch.sparkSession,
                self.ctx.settings.delta,
                Lineage(job=self.ctx.job, run_id=self.ctx.run_id),
            )
        return self._tables

    def __call__(self, windows: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        phases = Phases()
        tables = self._tables_for(windows)
        claim = stream_claim(self.checkpoint, batch_id)
        windows = windows.persist()
        try:
            stats = windows.agg(
                F.count(F.lit(1)).alias("rows"),
                F.max(F.col(f"`{self.view.event_timestamp_column}`")).alias("latest"),
                F.unix_micros(F.min(F.col(WINDOW_START))).alias("first_window"),
            ).first()
            assert stats is not None
            phases.done("aggregate")
            online = 0
            visible: datetime | None = None
            if self.store is not None and self.view.online and stats["rows"]:
                latest = windows.transform(with_online_payload, self.view).transform(
                    latest_per_entity, self.view
                )
                _, online, _ = push_to_online_store(latest, self.view, self.store, self.batch_size)
                visible = datetime.now(timezone.utc)
                phases.done("online_write")
            merged = 0
            if stats["rows"]:
                try:
                    merged = tables.upsert(
                        windows,
                        self.path,
                        window_keys(self.view),
                        txn=claim,
                        metadata={"stream_view": self.view.name, "stream_batch": str(batch_id)},
                        keys_unique=True,  # one row per key and window: an aggregation's output
                        # Gold holds every past window: the MERGE reads only the files that
                        # can hold this batch's windows, not the whole table.
                        key_lower_bounds={WINDOW_START: _from_micros(stats["first_window"])},
                    ).rows_written
                except AlreadyCommittedError:
                    log.info(
                        "stream_batch_already_committed",
                        extra={"fields": {"table": self.path, "batch_id": batch_id}},
                    )
                phases.done("gold_merge")
        finally:
            windows.unpersist()
        newest = stats["latest"]
        if newest is not None and newest.tzinfo is None:
            newest = newest.replace(tzinfo=timezone.utc)
        # When the batch's values became visible: in the online store when written there.
        visible = visible or datetime.now(timezone.utc)
        self.board.update(
            self.query_name,
            {
                "batch_id": batch_id,
                "windows_updated": int(stats["rows"]),
                "gold_rows_merged": merged,
                "online_rows_written": online,
                "visible_lag_seconds": round((visible - newest).total_seconds(), 3)
                if newest
                else None,
                "sink_seconds": round(time.monotonic() - started, 3),
                "sink_phase_seconds": phases.seconds,
            },
            log_event="stream_view_batch",
        )


def _from_micros(micros: int | None) -> datetime | None:
    """A UTC instant from microseconds since the epoch (exact, unlike a float timestamp)."""
    if micros is None:
        return None
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
