"""Progress of the streaming queries: logged, kept in a file, exported by the serving API.

:class:`ProgressBoard` holds the latest figures of every query of a ``stream`` run: Spark's
own progress (input rows/s, batch duration, watermark, rows in state, rows its state dropped
behind the watermark) from a :class:`StreamingQueryListener`, and what the micro-batch bodies
measured themselves (end-to-end lag, rows quarantined, late events). Each update is one JSON
log line (``stream_progress``) and rewrites ``streaming.progress_file`` atomically; the
serving API reads that file on every scrape of ``/metrics`` (:func:`stream_metric_families`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

__all__ = [
    "ProgressBoard",
    "QueryProgressListener",
    "progress_fields",
    "read_progress_file",
    "stream_metric_families",
]

log = logging.getLogger(__name__)

#: figure -> (Prometheus metric name, help text); each labelled by query.
_GAUGES = {
    "input_rows_per_second": (
        "featurelake_stream_input_rows_per_second",
        "Rows per second arriving at the query's source (last micro-batch)",
    ),
    "processed_rows_per_second": (
        "featurelake_stream_processed_rows_per_second",
        "Rows per second the query processed (last micro-batch)",
    ),
    "batch_duration_seconds": (
        "featurelake_stream_batch_duration_seconds",
        "Duration of the last micro-batch",
    ),
    "input_rows": ("featurelake_stream_batch_input_rows", "Rows in the last micro-batch"),
    "batch_id": ("featurelake_stream_batch_id", "Id of the last micro-batch"),
    "watermark_timestamp_seconds": (
        "featurelake_stream_watermark_timestamp_seconds",
        "Event-time watermark (Unix seconds)",
    ),
    "state_rows": ("featurelake_stream_state_rows", "Rows the query keeps in state (open windows)"),
    "state_rows_dropped_by_watermark": (
        "featurelake_stream_state_rows_dropped_by_watermark",
        "Rows the stateful operator dropped behind the watermark (last micro-batch)",
    ),
    "end_to_end_lag_seconds": (
        "featurelake_stream_end_to_end_lag_seconds",
        "Batch end minus the latest event time it processed",
    ),
    "quarantined_rows": (
        "featurelake_stream_quarantined_rows",
        "Rows quarantined in the last micro-batch",
    ),
    "late_rows": (
        "featurelake_stream_late_rows",
        "Events behind the watermark in the last micro-batch",
    ),
    "late_rows_total": (
        "featurelake_stream_late_rows_total",
        "Events behind the watermark since the run started",
    ),
    "updated_at_seconds": (
        "featurelake_stream_progress_timestamp_seconds",
        "When the query last reported progress (Unix seconds)",
    ),
}


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def progress_fields(progress: Any) -> dict[str, Any]:
    """The figures of one :class:`StreamingQueryProgress` the board keeps."""
    durations = dict(progress.durationMs or {})
    event_time = dict(progress.eventTime or {})
    operators = list(progress.stateOperators or [])
    finished = _seconds(progress.timestamp)
    if finished is not None:
        finished += durations.get("triggerExecution", 0) / 1000
    latest_event = _seconds(event_time.get("max"))
    fields: dict[str, Any] = {
        "query": progress.name,
        "batch_id": progress.batchId,
        "input_rows": progress.numInputRows,
        "input_rows_per_second": round(float(progress.inputRowsPerSecond or 0.0), 3),
        "processed_rows_per_second": round(float(progress.processedRowsPerSecond or 0.0), 3),
        "batch_duration_seconds": durations.get("triggerExecution", 0) / 1000,
        "watermark_timestamp_seconds": _seconds(event_time.get("watermark")),
        "state_rows": sum(int(o.numRowsTotal) for o in operators),
        "state_rows_dropped_by_watermark": sum(int(o.numRowsDroppedByWatermark) for o in operators),
    }
    if latest_event is not None and finished is not None and progress.numInputRows:
        fields["end_to_end_lag_seconds"] = round(finished - latest_event, 3)
    return fields


class ProgressBoard:
    """The latest figures per query; every update logged and written to ``path``.

    Args:
        path: the progress file (JSON: query name -> figures); None keeps it in memory only.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._queries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(
        self, query: str, fields: Mapping[str, Any], *, log_event: str | None = None
    ) -> None:
        """Merge ``fields`` into ``query``'s figures; log them and rewrite the file."""
        with self._lock:
            current = self._queries.setdefault(query, {"query": query})
            current.update({k: v for k, v in fields.items() if v is not None})
            if "late_rows" in fields:
                current["late_rows_total"] = current.get("late_rows_total", 0) + int(
                    fields["late_rows"] or 0
                )
            current["updated_at_seconds"] = round(time.time(), 3)
            snapshot = {name: dict(values) for name, values in self._queries.items()}
        if log_event:
            log.info(log_event, extra={"fields": dict(fields, query=query)})
        if self.path:
            _write_atomically(self.path, snapshot)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of every query's figures."""
        with self._lock:
            return {name: dict(values) for name, values in self._queries.items()}


def _write_atomically(path: str, data: Mapping[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True, default=str)
    os.replace(temporary, path)


class QueryProgressListener(StreamingQueryListener):
    """Puts Spark's progress of every query of the session on a :class:`ProgressBoard`."""

    def __init__(self, board: ProgressBoard) -> None:
        self.board = board
        self._lock = threading.Lock()
        self._delivered: dict[str, int] = {}  # query id -> last batch whose progress arrived

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's callback names
        log.info(
            "stream_query_started", extra={"fields": {"query": event.name, "id": str(event.id)}}
        )

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        self._record(event.progress)

    def _record(self, progress: Any) -> None:
        with self._lock:
            key = str(progress.id)
            if self._delivered.get(key, -1) >= progress.batchId:
                return
            self._delivered[key] = progress.batchId
        fields = progress_fields(progress)
        self.board.update(str(fields.pop("query")), fields, log_event="stream_progress")

    def catch_up(self, queries: Iterable[Any]) -> None:
        """Record the last progress of each of ``queries`` that Spark has not delivered yet.

        Spark delivers progress events on its own thread, after the micro-batch: a query
        that has just stopped (the last batch of an available-now run) may have its last
        figures still on the way when the run ends.
        """
        for query in queries:
            try:
                progress = query.lastProgress
                if progress is not None:
                    self._record(progress)
            except Exception as exc:  # noqa: BLE001 - figures only: never hide the run's outcome
                log.warning("stream_progress_unavailable", extra={"fields": {"error": str(exc)}})

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        fields = {"id": str(event.id), "error": event.exception}
        level = logging.ERROR if event.exception else logging.INFO
        log.log(level, "stream_query_terminated", extra={"fields": fields})


def read_progress_file(path: str) -> dict[str, dict[str, Any]]:
    """The figures a ``stream`` run last wrote to ``path``; empty when there is no such file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stream_metric_families(path: str) -> Iterator[Any]:
    """Prometheus gauge families of the progress file (one sample per query and figure)."""
    from prometheus_client.core import GaugeMetricFamily

    queries = read_progress_file(path)
    for key, (name, help_text) in _GAUGES.items():
        family = GaugeMetricFamily(name, help_text, labels=["query"])
        for query, figures in sorted(queries.items()):
            value = figures.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                family.add_metric([query], float(value))
        yield family
