"""JSON-lines logging for jobs, configured once at the entry point."""

from __future__ import annotations

import json
import logging
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


def configure_logging(job: str, run_id: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send featurelake's logs to stderr as JSON lines (or text); call once per process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(job, run_id))
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("featurelake")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # py4j chatters at INFO on every call; keep it to warnings.
    logging.getLogger("py4j").setLevel(logging.WARNING)
