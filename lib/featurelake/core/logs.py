"""Job logging, configured once at the entry point: a JSON-lines file, and the terminal.

Every event goes to ``<lakehouse.root>/ops/logs/<job>-<run_id>.log`` (JSON lines); the
terminal gets short human lines (warnings and errors; ``--verbose`` adds the events and
third-party warnings) or, with ``--log-format json``, the JSON lines themselves.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, job, run_id, event, logger and fields.

    The log message is the event name; structured values go in ``extra={"fields": {...}}``.
    """

    def __init__(self, job: str, run_id: str) -> None:
        super().__init__()
        self.job = job
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "job": self.job,
            "run_id": self.run_id,
            "event": record.getMessage(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = getattr(record, "fields", None)
        return f"{base} {json.dumps(fields, default=str)}" if fields else base


class _HumanFormatter(logging.Formatter):
    """``featurelake <job>: warning: <event> (key=value, ...)``: one short line per record."""

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = job

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        detail = ", ".join(f"{k}={v}" for k, v in fields.items())
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        text = f"featurelake {self.job}: {level}{record.getMessage()}"
        if detail:
            text += f" ({detail})"
        if len(text) > _HUMAN_WIDTH:
            text = text[: _HUMAN_WIDTH - 3] + "..."
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return text


# A terminal line: the rest of a long record is in the log file.
_HUMAN_WIDTH = 240
# Libraries whose INFO and WARNING lines (MLflow's, Spark's Python side...) the terminal shows
# only with --verbose; the log file always has them.
_THIRD_PARTY = ("mlflow", "alembic", "urllib3", "py4j", "pyspark", "git", "matplotlib", "httpx")


def configure_logging(
    job: str,
    run_id: str,
    level: str = "INFO",
    fmt: str = "json",
    *,
    log_dir: str | None = None,
    console: str = "json",
    verbose: bool = False,
) -> str | None:
    """Configure featurelake's logs for a job; call once per process (or per pipeline stage).

    Args:
        job: the job name (in every record).
        run_id: the run id (in every record).
        level: featurelake's level (``INFO``: every event).
        fmt: the log file's format, ``json`` lines or ``text``.
        log_dir: a local folder for the log file ``<job>-<run_id>.log`` (every event, third
            parties' warnings included); None for no file.
        console: ``human`` (warnings and errors as short lines; the job's own progress is
            written by the runner) or ``json`` (every event as a JSON line on stderr).
        verbose: the terminal also shows INFO events and third-party warnings.

    Returns:
        The log file's path, or None.
    """
    featurelake = logging.getLogger("featurelake")
    handlers: list[logging.Handler] = []
    path = None
    if log_dir is not None:
        os.makedirs(log_dir, exist_ok=True)
        path = os.path.join(log_dir, f"{job}-{run_id}.log")
        to_file = logging.FileHandler(path, encoding="utf-8")
        to_file.setFormatter(
            JsonFormatter(job, run_id)
            if fmt == "json"
            else _TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
        handlers.append(to_file)
    to_console = logging.StreamHandler(sys.stderr)
    if console == "json" or log_dir is None:
        to_console.setFormatter(
            JsonFormatter(job, run_id)
            if fmt == "json" or console == "json"
            else _TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    else:
        to_console.setFormatter(_HumanFormatter(job))
        to_console.setLevel(logging.INFO if verbose else logging.WARNING)
    handlers.append(to_console)
    featurelake.handlers[:] = handlers
    featurelake.setLevel(level)
    featurelake.propagate = False
    # Third parties log through the root logger: to the file, and to the terminal only when
    # asked for; Python warnings (MLflow's among them) become records of the same loggers.
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "featurelake", False):
            root.removeHandler(handler)
    for handler in handlers:
        if handler is to_console and not verbose and console != "json":
            continue
        shared = _Shared(handler)
        root.addHandler(shared)
    for name in _THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    # MLflow sets up its own logger when first imported (after this): it reads this variable.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # py4j chatters at INFO on every call
    return path


class _Shared(logging.Handler):
    """featurelake's handler, lent to the root logger for third-party records."""

    featurelake = True

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(target.level)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)
