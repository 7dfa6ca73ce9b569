"""What a person at the terminal sees: one line per stage, a progress bar for long Spark work.

The JSON log (every event, for machines) goes to a file under the lakehouse
(:func:`featurelake.core.logs.configure_logging`); the terminal gets plain lines. A
:class:`SparkProgress` draws a one-line bar of the running Spark stages' tasks while a job or
pipeline stage runs, only when stderr is a terminal, and erases it before the next line.

Example:
    >>> with SparkProgress(spark, "silver"):
    ...     run_silver(ctx)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

__all__ = ["SparkProgress", "rows_per_second", "say"]

_BAR = 24
# A bar only for work that lasts: shorter stages leave no trace on the screen.
_SHOW_AFTER_S = 1.5
_REFRESH_S = 0.5


def say(text: str, stream: TextIO | None = None) -> None:
    """Write one line for the person at the terminal (stderr)."""
    out = stream or sys.stderr
    out.write(text + "\n")
    out.flush()


def rows_per_second(rows_written: Mapping[str, int], seconds: float) -> str:
    """``"12,345 rows (3,456 rows/s)"`` for what a stage wrote; empty when it wrote nothing.

    The rate is left out for a few rows or an instant: it would say nothing about speed.
    """
    rows = sum(v for v in rows_written.values() if v > 0)
    if rows <= 0:
        return ""
    # a rate of a few rows says nothing about speed
    rate = f" ({rows / seconds:,.0f} rows/s)" if seconds >= 1 and rows >= 10_000 else ""
    return f"{rows:,} rows{rate}"


class SparkProgress:
    """A one-line progress bar of the Spark stages running in a session, on a terminal only.

    Args:
        spark: the session whose status tracker is polled.
        label: shown before the bar (the stage or job name).
        stream: where to draw (default stderr); nothing is drawn unless it is a terminal.
    """

    def __init__(self, spark: Any, label: str, stream: TextIO | None = None) -> None:
        self.spark = spark
        self.label = label
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    @property
    def enabled(self) -> bool:
        """True when the stream is a terminal (and the environment does not ask for none)."""
        isatty = getattr(self.stream, "isatty", lambda: False)
        return bool(isatty()) and os.environ.get("FEATURELAKE_PROGRESS", "1") != "0"

    def __enter__(self) -> SparkProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True, name="progress")
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._erase()

    def _run(self) -> None:
        started = time.monotonic()
        tracker = self.spark.sparkContext.statusTracker()
        while not self._stop.wait(_REFRESH_S):
            if time.monotonic() - started < _SHOW_AFTER_S:
                continue
            try:
                stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            except Exception:  # noqa: BLE001 - a stopping session: stop drawing
                return
            stages = [s for s in stages if s is not None]
            if not stages:
                continue
            total = sum(s.numTasks for s in stages)
            done = sum(s.numCompletedTasks for s in stages)
            active = sum(s.numActiveTasks for s in stages)
            filled = int(_BAR * done / total) if total else 0
            bar = "#" * filled + "-" * (_BAR - filled)
            elapsed = time.monotonic() - started
            self._draw(
                f"  {self.label}: [{bar}] {done}/{total} tasks, {active} running, {elapsed:.0f}s"
            )

    def _draw(self, text: str) -> None:
        width = 100
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
            self._drawn = False
