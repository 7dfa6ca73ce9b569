"""Start, watch and stop the queries of a ``stream`` run.

:func:`plan_stream` picks what a run streams (sources, their silver tables, the windowed views
over them) and checks it; :func:`run_stream` starts the queries - with ``available_now``
each ingest query processes what its source holds and stops, then each view query does the
same over the silver table; otherwise all run with a processing-time trigger until one fails
or the job is asked to stop (SIGTERM or SIGINT: each query finishes the micro-batch it is in,
then stops).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.streaming import StreamingQuery

from featurelake.core.config import ConfigError
from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.delta.native_support import first_line
from featurelake.feature_store.definitions import FeatureView, load_feature_views
from featurelake.feature_store.online import OnlineStore, load_serving_config, open_online_store
from featurelake.feature_store.windows import window_aggregates
from featurelake.lakehouse.bronze.parsing import bronze_schema
from featurelake.lakehouse.pii import load_pii_key
from featurelake.lakehouse.silver import SilverTableSpec, build_silver, load_table_specs
from featurelake.lakehouse.sources import SourceSpec, load_sources
from featurelake.streaming.checkpoints import checkpoint_path
from featurelake.streaming.events import read_event_lines
from featurelake.streaming.ingest import EventIngest
from featurelake.streaming.progress import ProgressBoard, QueryProgressListener
from featurelake.streaming.views import WindowedViewSink

__all__ = ["StreamRunOptions", "StreamPlan", "plan_stream", "run_stream"]

log = logging.getLogger(__name__)

# A Delta stream source admits whole commits up to this many files per micro-batch; the
# ingest writes one file a commit, so a view's batches never split an ingest batch (what keeps
# its watermark at or behind the ingest's - module docstring of featurelake.streaming.ingest).
_DELTA_FILES_PER_TRIGGER = 100_000


@dataclass(frozen=True)
class StreamRunOptions:
    """What a ``stream`` run does (the job's command-line options).

    Attributes:
        sources: streaming sources to ingest (empty: every declared one).
        views: windowed views to keep up to date (empty: every view over those sources).
        transport: ``kafka`` or ``files``; None: each source's declared transport.
        available_now: process what is there, then stop.
        trigger_seconds: micro-batch interval of a continuous run (None: the setting).
        online: write the online store.
        timeout_seconds: a continuous run stops after this long (None: until stopped).
    """

    sources: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    transport: str | None = None
    available_now: bool = False
    trigger_seconds: float | None = None
    online: bool = True
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class StreamPlan:
    """The sources, silver tables and views of a run."""

    sources: list[SourceSpec]
    tables: dict[str, SilverTableSpec]  # source name -> its silver table
    views: list[FeatureView] = field(default_factory=list)


def plan_stream(ctx: JobContext, options: StreamRunOptions) -> StreamPlan:
    """The run's sources, their silver tables and the windowed views over them.

    Raises:
        UserError: an unknown or non-streaming source or view named, nothing to stream.
        ConfigError: a source without exactly one silver table, or a view whose watermark is
            shorter than its source's.
    """
    declared = load_sources(ctx.settings)
    streaming = {n: s for n, s in declared.items() if s.is_streaming}
    unknown = [n for n in options.sources if n not in streaming]
    if unknown:
        raise UserError(f"unknown streaming source(s) {unknown}; declared: {sorted(streaming)}")
    sources = [streaming[n] for n in (options.sources or sorted(streaming))]
    if not sources:
        raise UserError("no streaming source is declared (a stream: section in conf/sources/)")
    tables_dir = ctx.settings.conf_path(ctx.settings.silver.tables_dir)
    specs = load_table_specs(tables_dir)
    tables: dict[str, SilverTableSpec] = {}
    for source in sources:
        feeding = [s for s in specs.values() if s.source == source.name]
        if len(feeding) != 1:
            raise ConfigError(
                str(tables_dir),
                "source",
                f"streaming source {source.name} needs exactly one silver table declaring "
                f"source: {source.name}; found {[s.name for s in feeding]}",
            )
        tables[source.name] = feeding[0]
    by_table = {f"silver/{spec.name}": name for name, spec in tables.items()}
    views = load_feature_views(ctx.settings)
    windowed = {n: v for n, v in views.items() if v.window is not None}
    unknown = [n for n in options.views if n not in windowed]
    if unknown:
        raise UserError(f"unknown windowed view(s) {unknown}; declared: {sorted(windowed)}")
    chosen = [windowed[n] for n in options.views] if options.views else list(windowed.values())
    chosen = [v for v in chosen if v.window and str(v.window.events) in by_table]
    for view in chosen:
        assert view.window is not None
        source = declared[by_table[str(view.window.events)]]
        assert source.stream is not None
        if view.window.watermark < source.stream.watermark:
            raise ConfigError(
                str(ctx.settings.conf_path(ctx.settings.feature_store.definitions_dir)),
                f"{view.name}.window.watermark",
                f"{view.window.watermark} is shorter than the watermark of source "
                f"{source.name} ({source.stream.watermark}): its windows would close before "
                "events the source still accepts",
            )
    return StreamPlan(sources, tables, chosen)


@contextmanager
def _stop_requested() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (main thread only)."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, _: Any) -> None:
        log.info("stream_stop_requested", extra={"fields": {"signal": signal.Signals(signum).name}})
        requested.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_between_batches(query: StreamingQuery, wait_seconds: float = 120.0) -> None:
    """Stop ``query`` once its current micro-batch (if any) has finished."""
    deadline = time.monotonic() + wait_seconds
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


def _empty_silver(ctx: JobContext, source: SourceSpec, spec: SilverTableSpec) -> DataFrame:
    """No rows, in the silver schema of ``spec`` (what build_silver makes of nothing)."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    bronze = ctx.spark.createDataFrame([], bronze_schema(source))
    references = {
        str(e.reference): ctx.spark.createDataFrame([], f"`{e.key}` string")
        for e in spec.expectations
        if e.reference
    }
    # Only the schema is used: any key hashes nothing here.
    plan = build_silver(
        bronze,
        spec,
        as_of=now,
        run_id=ctx.run_id,
        quarantined_at=now,
        pii_key=b"schema-only",
        references=references,
    )
    return plan.silver


def run_stream(ctx: JobContext, options: StreamRunOptions) -> dict[str, Any]:
    """Run the queries of :func:`plan_stream`; their last figures by query name.

    Raises:
        UserError: the native Delta backend is not active (the views read silver as a Delta
            stream), or a name is unknown.
        StreamingQueryException: a query failed (the others are stopped first).
    """
    if ctx.tables.backend != "native":
        raise UserError(
            "the stream job needs the native Delta backend (delta-spark): its views read the "
            "silver table as a Delta stream; delta-rs is active (docs/DELTA.md says why)"
        )
    plan = plan_stream(ctx, options)
    settings = ctx.settings
    # For the run's session (the queries clone it as they start):
    # * shuffle partitions: taken by queries starting without a checkpoint (a restarted query
    #   keeps its own);
    # * delta-spark rebuilds a table's state (a stage of snapshotPartitions tasks) before every
    #   commit carrying a claim - up to four a micro-batch: the stream's small tables take the
    #   stream's small number too (a claimed append of 1,000 rows on two busy cores: 6.4-9.0 s
    #   with 8 tasks, 3.1-4.8 s with 2);
    # * a view's stateful query would run an extra micro-batch without new data whenever its
    #   watermark moves, only to drop expired windows from its state: in update mode it outputs
    #   nothing, yet each held up the next batch with data (0.5-2.5 s of sink time alone at
    #   1,000 events/s on two busy cores). The next batch with data drops them instead.
    streaming_conf = {
        "spark.sql.shuffle.partitions": str(settings.streaming.shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": str(settings.streaming.shuffle_partitions),
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
    }
    batch_conf = {key: ctx.spark.conf.get(key, None) for key in streaming_conf}
    for key, value in streaming_conf.items():
        ctx.spark.conf.set(key, value)
    root = settings.lakehouse.root
    board = ProgressBoard(os.path.join(root, settings.streaming.progress_file))
    listener = QueryProgressListener(board)
    ctx.spark.streams.addListener(listener)
    serving = load_serving_config(settings)
    store: OnlineStore | None = open_online_store(serving.online_store) if options.online else None
    key_file = settings.silver.pii_key_file
    if key_file and not os.path.isabs(key_file):
        key_file = os.path.join(root, key_file)

    sinks: list[EventIngest] = []
    started: list[StreamingQuery] = []

    def started_query(writer: Any) -> StreamingQuery:
        query = writer.start()
        started.append(query)
        return query

    def trigger(writer: Any) -> Any:
        if options.available_now:
            return writer.trigger(availableNow=True)
        seconds = settings.streaming.trigger_seconds
        if options.trigger_seconds is not None:
            seconds = options.trigger_seconds
        return writer.trigger(processingTime=f"{seconds} seconds")

    def start_ingest(source: SourceSpec) -> StreamingQuery:
        assert source.stream is not None
        spec = plan.tables[source.name]
        transport = options.transport or source.stream.transport
        name = f"{source.name}-{transport}"
        checkpoint = checkpoint_path(root, settings.streaming.checkpoint_dir, name)
        pii = load_pii_key(settings.silver.pii_key_env, key_file) if spec.pii else None
        silver = ctx.path("silver", spec.name)
        if not ctx.tables.exists(silver):  # the views' Delta stream needs the table
            ctx.tables.write(_empty_silver(ctx, source, spec), silver, "append")
        sink = EventIngest(ctx, source, spec, checkpoint, pii, board, name)
        sinks.append(sink)
        lines = read_event_lines(ctx.spark, source, transport, settings.lakehouse.landing)
        writer = (
            lines.writeStream.queryName(name)
            .foreachBatch(sink)
            .option("checkpointLocation", checkpoint)
        )
        return started_query(trigger(writer))

    def start_view(view: FeatureView) -> StreamingQuery:
        assert view.window is not None
        checkpoint = checkpoint_path(root, settings.streaming.checkpoint_dir, view.name)
        events = (
            ctx.spark.readStream.format("delta")
            .option("maxFilesPerTrigger", str(_DELTA_FILES_PER_TRIGGER))
            .load(view.window.events.path(settings))
        )
        sink = WindowedViewSink(
            ctx, view, store, checkpoint, board, view.name, serving.online_store.write_batch_size
        )
        writer = (
            events.transform(window_aggregates, view, watermark=True)
            .writeStream.queryName(view.name)
            .outputMode("update")
            .foreachBatch(sink)
            .option("checkpointLocation", checkpoint)
        )
        return started_query(trigger(writer))

    log.info(
        "stream_plan",
        extra={
            "fields": {
                "sources": [s.name for s in plan.sources],
                "tables": {k: v.name for k, v in plan.tables.items()},
                "views": [v.name for v in plan.views],
                "available_now": options.available_now,
                "online_store": repr(store) if store else None,
            }
        },
    )
    try:
        with _stop_requested() as stop:
            if options.available_now:
                # The ingest queries first, together; then the views over what they wrote.
                _await_all([start_ingest(s) for s in plan.sources], stop)
                if not stop.is_set():
                    _await_all([start_view(v) for v in plan.views], stop)
            else:
                queries = [start_ingest(s) for s in plan.sources]
                queries += [start_view(v) for v in plan.views]
                _watch(ctx, queries, stop, options.timeout_seconds)
    finally:
        for query in list(ctx.spark.streams.active):
            query.stop()
        listener.catch_up(started)
        ctx.spark.streams.removeListener(listener)
        for sink in sinks:
            sink.close()
        for key, previous in batch_conf.items():
            if previous is None:
                ctx.spark.conf.unset(key)
            else:
                ctx.spark.conf.set(key, previous)
        if store is not None:
            store.close()
    return board.snapshot()


def _await_all(queries: Sequence[StreamingQuery], stop: threading.Event) -> None:
    """Wait for available-now queries to finish (or stop them between batches when asked)."""
    for query in queries:
        while not query.awaitTermination(1):
            if stop.is_set():
                for running in queries:
                    _stop_between_batches(running)


def _watch(
    ctx: JobContext,
    queries: Sequence[StreamingQuery],
    stop: threading.Event,
    timeout_seconds: float | None,
) -> None:
    """Wait until a query fails, a stop is requested or the timeout passes; stop them all."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        if ctx.spark.streams.awaitAnyTermination(1):
            break
    # A query that failed on its own fails the job. One stopped here may end with an error
    # raised by the interruption itself (an idle query interrupted while asking its source
    # for offsets): its batches are all committed, so that is logged, not raised.
    failed = [q for q in queries if not q.isActive and q.exception() is not None]
    for query in queries:
        if query.isActive:
            _stop_between_batches(query)
    for query in queries:
        error = query.exception()
        if error is not None and query not in failed:
            log.warning(
                "stream_query_stop_error",
                extra={"fields": {"query": query.name, "error": first_line(error)}},
            )
    if failed:
        raise failed[0].exception()  # type: ignore[misc]
