"""The prediction log: every online prediction appended to a Delta table, off the request path.

:class:`PredictionLog` queues rows in memory (a request only appends to a list under a lock) and a
background thread writes them to the Delta table (``ops/prediction_log`` by default) in batches
with delta-rs - no Spark in the serving process. A batch is written when ``flush_rows`` rows wait,
and at least every ``flush_seconds``; :meth:`PredictionLog.close` (the app's shutdown) writes what
is left, so a clean shutdown loses nothing. A failed write keeps its rows for the next attempt;
only beyond ``max_pending`` waiting rows are the oldest dropped (and counted).

Each row: ``request_id``, ``logged_at`` (UTC), ``model``, ``model_version``, ``arm``
(``champion``/``challenger``), ``mode`` (``split``/``shadow``/``champion``), ``served`` (false for a
shadow prediction), ``entity`` and ``features`` (JSON text), ``status``, ``prediction``,
``probability``, ``latency_ms`` (the request's model and lookup time), ``key_id`` and ``role``.
Several server processes may append to the same table: Delta commits are atomic and appends do
not conflict.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PREDICTION_LOG_COLUMNS", "PredictionLog"]

log = logging.getLogger(__name__)

PREDICTION_LOG_COLUMNS = (
    ("request_id", "string"),
    ("logged_at", "timestamp"),
    ("model", "string"),
    ("model_version", "string"),
    ("arm", "string"),
    ("mode", "string"),
    ("served", "bool"),
    ("entity", "string"),
    ("features", "string"),
    ("status", "string"),
    ("prediction", "double"),
    ("probability", "double"),
    ("latency_ms", "double"),
    ("key_id", "string"),
    ("role", "string"),
)


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "bool": pa.bool_(),
        "double": pa.float64(),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in PREDICTION_LOG_COLUMNS])


class PredictionLog:
    """Batched, background appends of prediction rows to a Delta table.

    Args:
        table: the Delta table's path (created on the first write).
        flush_rows: write once this many rows wait.
        flush_seconds: write at least this often while rows wait.
        max_pending: most rows held while writes fail; beyond it the oldest are dropped.
    """

    def __init__(
        self,
        table: str,
        *,
        flush_rows: int = 1000,
        flush_seconds: float = 2.0,
        max_pending: int = 1_000_000,
    ) -> None:
        self.table = table
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self.failed_writes = 0
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue rows (the request path: no I/O)."""
        with self._lock:
            self._pending.extend(dict(r) for r in rows)
            overflow = len(self._pending) - self.max_pending
            if overflow > 0:
                del self._pending[:overflow]
                self.dropped += overflow
            if len(self._pending) >= self.flush_rows:
                self._wake.notify()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closed and len(self._pending) < self.flush_rows:
                    self._wake.wait(timeout=self.flush_seconds)
                if self._closed:
                    return
            self.flush()

    def flush(self) -> int:
        """Write every waiting row now, in one Delta commit.

        Returns:
            Rows written (0 when none waited or the write failed; failed rows stay queued).
        """
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - keep serving; the rows are retried
                self.failed_writes += 1
                log.warning(
                    "prediction_log_write_failed",
                    extra={"fields": {"table": self.table, "rows": len(batch), "error": str(exc)}},
                )
                with self._lock:
                    self._pending[:0] = batch
                return 0
            self.written += len(batch)
            return len(batch)

    def _write(self, batch: Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        schema = _arrow_schema()
        columns = {name: [row.get(name) for row in batch] for name in schema.names}
        write_deltalake(self.table, pa.table(columns, schema=schema), mode="append")

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the background thread and write what is left (tries until ``timeout_s``)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.2)
        if self.pending:
            log.error(
                "prediction_log_not_flushed",
                extra={"fields": {"table": self.table, "rows": self.pending}},
            )
