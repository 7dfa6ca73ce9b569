"""What a micro-batch reads from its query's checkpoint: the query id and the batch's time.

Both are what Spark itself recorded before the batch ran, so a batch replayed after a crash
gets the same values: its writes carry the same claims (query id, batch id), and its rules
judge "now" at the same instant (``not_future``), whatever the time of the replay.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from functools import lru_cache

__all__ = ["batch_time", "checkpoint_path", "query_id"]


def checkpoint_path(root: str, checkpoint_dir: str, query: str) -> str:
    """The checkpoint folder of ``query``: ``<root>/<checkpoint_dir>/<query>`` (absolute)."""
    return os.path.abspath(os.path.join(root.removeprefix("file:"), checkpoint_dir, query))


def _local(path: str) -> str:
    return path.removeprefix("file:")


@lru_cache(maxsize=64)
def query_id(checkpoint: str) -> str:
    """The id Spark gave the query of ``checkpoint`` when it first started (kept across restarts).

    Raises:
        FileNotFoundError: the query has not started (no ``metadata`` file yet).
    """
    with open(os.path.join(_local(checkpoint), "metadata"), encoding="utf-8") as handle:
        return str(json.loads(handle.readline())["id"])


def batch_time(checkpoint: str, batch_id: int) -> datetime:
    """The time Spark recorded for micro-batch ``batch_id`` (its offset log entry), in UTC.

    The current time when the entry cannot be read (a checkpoint on an object store).
    """
    try:
        with open(
            os.path.join(_local(checkpoint), "offsets", str(batch_id)), encoding="utf-8"
        ) as f:
            f.readline()  # the log format version
            millis = int(json.loads(f.readline())["batchTimestampMs"])
    except (OSError, ValueError, KeyError):
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
