"""The SQLite online store: one file, one writer; for a laptop or a single serving host."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featurelake.feature_store.online.records import OnlineRecord, Row

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view        TEXT    NOT NULL,
    entity_key  TEXT    NOT NULL,
    event_ts    INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    written_at  INTEGER NOT NULL,
    PRIMARY KEY (view, entity_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS materialization_state (
    view        TEXT PRIMARY KEY,
    state       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);
"""


# The WHERE guard makes the event-time comparison part of the one statement that writes the
# row, so no reader or other writer can slip in between the compare and the write.
_SQLITE_UPSERT = """
INSERT INTO online_features (view, entity_key, event_ts, payload, written_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE SET
    event_ts = excluded.event_ts, payload = excluded.payload, written_at = excluded.written_at
WHERE excluded.event_ts >= online_features.event_ts
"""


# SQLite's default limit on bound parameters is 999 (older builds); stay well below it.
_SQLITE_IN_CHUNK = 500


class SqliteOnlineStore:
    """An online store in one SQLite file.

    Connections are per thread (the serving API answers from a thread pool); the file is in WAL
    mode so reads never wait for the writer. SQLite allows one writer at a time, so
    materialisation streams rows to the driver and writes from there.

    Args:
        path: the database file; it and its folder are created when absent.
        busy_timeout_ms: how long a statement waits for a lock held by another connection.
    """

    parallel_writes = False

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SQLITE_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def write_rows(self, view: str, rows: Sequence[Row]) -> int:
        """Upsert ``rows`` in one transaction; rows older than the stored ones change nothing.

        Returns:
            The number of rows created or replaced.
        """
        if not rows:
            return 0
        conn = self._conn()
        now = time.time_ns() // 1000
        before = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_SQLITE_UPSERT, ((view, k, ts, p, now) for k, ts, p in rows))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return conn.total_changes - before

    def read_records(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        """The stored record of each key (``None`` when absent), in the order of ``keys``."""
        conn = self._conn()
        found: dict[str, OnlineRecord] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _SQLITE_IN_CHUNK):
            chunk = unique[start : start + _SQLITE_IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            cursor = conn.execute(
                f"SELECT entity_key, event_ts, payload FROM online_features "  # noqa: S608
                f"WHERE view = ? AND entity_key IN ({marks})",
                (view, *chunk),
            )
            for key, ts, payload in cursor:
                found[key] = OnlineRecord(int(ts), payload)
        return [found.get(k) for k in keys]

    def get_state(self, view: str) -> dict[str, Any] | None:
        """The view's materialisation bookmark, or ``None``."""
        row = (
            self._conn()
            .execute("SELECT state FROM materialization_state WHERE view = ?", (view,))
            .fetchone()
        )
        return None if row is None else dict(json.loads(row[0]))

    def set_state(self, view: str, state: Mapping[str, Any]) -> None:
        """Replace the view's materialisation bookmark."""
        self._conn().execute(
            "INSERT INTO materialization_state (view, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (view) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at",
            (view, json.dumps(dict(state), sort_keys=True, default=str), time.time_ns() // 1000),
        )

    def count(self, view: str) -> int:
        """How many entities the store holds for ``view``."""
        row = (
            self._conn()
            .execute("SELECT COUNT(*) FROM online_features WHERE view = ?", (view,))
            .fetchone()
        )
        return int(row[0])

    def ping(self) -> bool:
        """True when the file can be queried."""
        try:
            self._conn().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def describe(self) -> dict[str, Any]:
        """``{"type": "sqlite", "path": ...}``."""
        return {"type": "sqlite", "path": self.path}

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({self.path!r})"
