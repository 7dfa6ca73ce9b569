"""The online store: the latest feature values per entity, for low-latency lookups.

Two backends implement one :class:`OnlineStore` protocol:

* :class:`SqliteOnlineStore` - one SQLite file (the default; embedded, nothing to run). WAL mode,
  so the serving API reads while ``materialize`` writes; there must be one writer at a time.
* :class:`RedisOnlineStore` - a Redis server (``online_store.type: redis``), for several serving
  processes and writes straight from Spark executors.

What is stored, per (view, entity): the event time of the row (UTC microseconds) and the row's
feature values as one JSON object. Writes are *monotonic*: a row replaces the stored one only when
its event time is at least the stored event time, decided atomically inside the store (an SQLite
UPSERT with a ``WHERE`` guard; a Lua script in Redis), so an older value never replaces a newer
one, whatever order runs and partitions arrive in. With equal event times the later write wins (a
correction of the same as-of row).

The TTL is enforced on read (:func:`lookup_features`): a value older than the view's TTL comes back
null with status ``expired``; an entity the store does not hold comes back null with
``not_found``; a stored null is ``null_value``; anything else is ``ok``.

Example:
    >>> store = SqliteOnlineStore("/tmp/online.db")
    >>> store.write_rows("customer_rfm", [(encode_entity_key(["17850"]), 1_700_000_000_000_000,
    ...                                    '{"recency_days": 3}')])
    >>> lookup_features(store, view, [{"customer_id": "17850"}], ["recency_days"])
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from featurelake.core.config import Settings, load_yaml_file, parse_model
from featurelake.core.errors import TransientError, UserError
from featurelake.feature_store.auth import AccessConfig
from featurelake.feature_store.definitions import FeatureView

__all__ = [
    "EntityKeyError",
    "FeatureValue",
    "OnlineRecord",
    "OnlineStore",
    "OnlineStoreConfig",
    "OnlineStoreUnavailableError",
    "RedisOnlineStore",
    "ServerConfig",
    "ServingConfig",
    "SqliteOnlineStore",
    "Status",
    "encode_entity_key",
    "entity_key_from_mapping",
    "load_serving_config",
    "lookup_features",
    "open_online_store",
    "redact_url",
    "to_micros",
]

log = logging.getLogger(__name__)

Status = Literal["ok", "null_value", "expired", "not_found"]
#: One stored row: (encoded entity key, event time in UTC microseconds, JSON object of values).
Row = tuple[str, int, str]


class EntityKeyError(UserError):
    """An entity lacks a join key, or a key value has an unusable type."""


class OnlineStoreUnavailableError(TransientError):
    """The online store cannot be reached (down, not answering in time, still loading its
    data); the same call may succeed later."""


# --------------------------------------------------------------------------------------------
# Configuration (conf/serving.yaml)
# --------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnlineStoreConfig(_Frozen):
    """Where the online store lives.

    Args:
        type: ``sqlite`` (default) or ``redis``.
        sqlite_path: the SQLite file (created with its folder when absent); a relative path is
            under ``lakehouse.root``.
        redis_url: ``redis://host:port/db`` of the Redis server.
        key_prefix: prefix of every Redis key, so several deployments can share a server.
        write_batch_size: rows per write call (one SQLite transaction or one Lua script call).
    """

    type: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = "online/features.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "featurelake"
    write_batch_size: int = Field(default=1000, ge=1, le=100_000)


class ServerConfig(_Frozen):
    """The serving API's process settings.

    Args:
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes.
        audit_log: JSON-lines file every request is appended to; a relative path is under
            ``lakehouse.root``.
        max_entities: most entities one request may ask for.
        max_features: most feature references one request may name.
        max_body_bytes: largest request body accepted (HTTP 413 beyond it); counted while the
            body is read, so a chunked body without ``Content-Length`` is bounded too.
        retry_after_seconds: the ``Retry-After`` of a 503 answered while the online store
            cannot be reached.
        api_key_header: the header carrying the API key.
        expose_docs: serve the interactive docs and schema (``/docs``, ``/redoc``,
            ``/openapi.json``) to anyone who can reach the server.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    audit_log: str = "ops/serving_audit.jsonl"
    max_entities: int = Field(default=1000, ge=1)
    max_features: int = Field(default=200, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    api_key_header: str = "X-API-Key"
    expose_docs: bool = False


class ServingConfig(_Frozen):
    """Everything in ``conf/serving.yaml``: the store, the server, roles and API keys."""

    online_store: OnlineStoreConfig = Field(default_factory=OnlineStoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)


def load_serving_config(settings: Settings, path: str | Path | None = None) -> ServingConfig:
    """Load and validate ``<conf_dir>/serving.yaml`` (``${VAR:-default}`` interpolated).

    Relative ``online_store.sqlite_path`` and ``server.audit_log`` are resolved under
    ``settings.lakehouse.root``, so ``--conf lakehouse.root=...`` moves them with the tables.

    Args:
        settings: the validated settings (for the configuration directory).
        path: read this file instead.

    Returns:
        The :class:`ServingConfig`.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and key.
    """
    file = Path(path) if path is not None else settings.conf_path("serving.yaml")
    config = parse_model(ServingConfig, load_yaml_file(file), str(file))
    root = settings.lakehouse.root
    store = config.online_store.model_copy(
        update={"sqlite_path": os.path.join(root, config.online_store.sqlite_path)})
    server = config.server.model_copy(
        update={"audit_log": os.path.join(root, config.server.audit_log)})
    return config.model_copy(update={"online_store": store, "server": server})


# --------------------------------------------------------------------------------------------
# Keys, times and results
# --------------------------------------------------------------------------------------------


def _key_part(value: Any) -> str:
    # Keys are compared as text so that a long key 17850 and a JSON "17850" find the same row.
    if isinstance(value, bool) or value is None:
        raise EntityKeyError(f"join key values must be strings or integers, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise EntityKeyError(f"join key values must be strings or integers, got {value!r}")


def encode_entity_key(values: Sequence[Any]) -> str:
    """The store's key for one entity: its join key values, in join-key order, as text.

    Args:
        values: the join key values (strings or integers).

    Returns:
        A canonical string (a JSON array of the values as text).

    Raises:
        EntityKeyError: a value is null, boolean, fractional or of another type.
    """
    return json.dumps([_key_part(v) for v in values], separators=(",", ":"), ensure_ascii=False)


def entity_key_from_mapping(view: FeatureView, entity: Mapping[str, Any]) -> str:
    """The store key of ``entity`` (a mapping of join key to value) for ``view``.

    Raises:
        EntityKeyError: a join key of the view is missing or has an unusable value.
    """
    missing = [k for k in view.join_keys if k not in entity]
    if missing:
        raise EntityKeyError(
            f"entity {dict(entity)!r} lacks join key(s) {missing} of view {view.name!r} "
            f"(its join keys: {list(view.join_keys)})"
        )
    try:
        return encode_entity_key([entity[k] for k in view.join_keys])
    except EntityKeyError as exc:
        raise EntityKeyError(f"view {view.name!r}: {exc}") from None


def redact_url(url: str) -> str:
    """``url`` with its password, in the user part or a ``password=`` query parameter, shown as
    ``***``.

    Example:
        >>> redact_url("redis://app:s3cret@cache:6379/0")
        'redis://app:***@cache:6379/0'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    pairs = [f"{pair.partition('=')[0]}=***" if pair.partition("=")[0].lower() == "password"
             else pair for pair in parts.query.split("&")] if parts.query else []
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(pairs)))


def to_micros(value: datetime) -> int:
    """UTC microseconds since the epoch (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)


@dataclass(frozen=True)
class OnlineRecord:
    """What the store holds for one entity of one view."""

    event_ts_micros: int
    payload: str

    @property
    def event_timestamp(self) -> datetime:
        """The event time as an aware UTC datetime."""
        return _from_micros(self.event_ts_micros)


@dataclass(frozen=True)
class FeatureValue:
    """One served value with its provenance.

    Attributes:
        value: the feature value, or ``None`` (see ``status``).
        event_timestamp: the event time of the row the value comes from (``None`` if not found).
        staleness_seconds: seconds from the event time to the read time.
        status: ``ok``, ``null_value`` (the stored value is null), ``expired`` (older than the
            view's TTL; value withheld) or ``not_found`` (the store has no row for the entity).
    """

    value: Any
    event_timestamp: datetime | None
    staleness_seconds: float | None
    status: Status

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO-8601 UTC event time)."""
        return {
            "value": self.value,
            "event_timestamp": None if self.event_timestamp is None
            else self.event_timestamp.isoformat().replace("+00:00", "Z"),
            "staleness_seconds": self.staleness_seconds,
            "status": self.status,
        }


# --------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------


@runtime_checkable
class OnlineStore(Protocol):
    """A key-value store of the latest row per (view, entity).

    ``write_rows`` must be atomic per row and monotonic in event time; ``read_records`` returns
    one entry per key, in order (``None`` when absent). ``get_state``/``set_state`` keep the
    materialisation bookmark of each view beside the data. A store that cannot be reached
    raises :class:`OnlineStoreUnavailableError` (``ping`` answers False instead).
    """

    #: True when executors may write in parallel (the store is a network service).
    parallel_writes: bool

    def write_rows(self, view: str, rows: Sequence[Row]) -> int:
        """Write rows; return how many replaced or created a stored row (older ones are skipped)."""
        ...

    def read_records(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        """The stored record of each key, ``None`` where there is none."""
        ...

    def get_state(self, view: str) -> dict[str, Any] | None:
        """The view's materialisation bookmark, or ``None`` before the first run."""
        ...

    def set_state(self, view: str, state: Mapping[str, Any]) -> None:
        """Replace the view's materialisation bookmark."""
        ...

    def count(self, view: str) -> int:
        """How many entities the store holds for ``view``."""
        ...

    def ping(self) -> bool:
        """True when the store answers."""
        ...

    def describe(self) -> dict[str, Any]:
        """The store's type and location, without any secret (for operators)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------

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
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
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
            chunk = unique[start:start + _SQLITE_IN_CHUNK]
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
        row = self._conn().execute(
            "SELECT state FROM materialization_state WHERE view = ?", (view,)
        ).fetchone()
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
        row = self._conn().execute(
            "SELECT COUNT(*) FROM online_features WHERE view = ?", (view,)
        ).fetchone()
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


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

# KEYS: one hash per entity. ARGV: event_ts, payload, written_at for each key in turn.
# The compare and the write run inside one script, which Redis executes atomically.
_REDIS_MONOTONIC_WRITE = """
local written = 0
for i = 1, #KEYS do
  local base = (i - 1) * 3
  local incoming = tonumber(ARGV[base + 1])
  local current = redis.call('HGET', KEYS[i], 'ts')
  if (not current) or incoming >= tonumber(current) then
    redis.call('HSET', KEYS[i], 'ts', ARGV[base + 1], 'v', ARGV[base + 2], 'w', ARGV[base + 3])
    written = written + 1
  end
end
return written
"""


class RedisOnlineStore:
    """An online store in Redis: one hash per (view, entity) with fields ``ts`` and ``v``.

    Keys are ``<prefix>:<view>:<entity key>``; the bookmark of a view is the string
    ``<prefix>:_state:<view>``. Writes go through one Lua script per batch (atomic compare and
    set of every key in it); reads are one pipelined round trip per request. The store pickles
    to its URL and prefix, so Spark executors can write to it directly (a single Redis instance;
    Redis Cluster would need the keys of one script in one hash slot).

    A call that cannot reach the server raises :class:`OnlineStoreUnavailableError`; the
    connection pool reconnects on the next call, so the store works again once Redis is back.

    Args:
        url: ``redis://host:port/db``.
        key_prefix: prefix of every key.
        socket_timeout: seconds before a network call fails.
    """

    parallel_writes = True

    def __init__(
        self, url: str, key_prefix: str = "featurelake", socket_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.socket_timeout = socket_timeout
        self._client: Any = None
        self._script: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "key_prefix": self.key_prefix,
                "socket_timeout": self.socket_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def client(self) -> Any:
        """The redis-py client (thread-safe; a connection pool), created on first use."""
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
            )
            self._script = self._client.register_script(_REDIS_MONOTONIC_WRITE)
        return self._client

    def _key(self, view: str, entity_key: str) -> str:
        return f"{self.key_prefix}:{view}:{entity_key}"

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn redis-py's connection and timeout errors into OnlineStoreUnavailableError."""
        import redis

        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise OnlineStoreUnavailableError(
                f"Redis at {redact_url(self.url)} is unavailable: {exc}") from exc

    def write_rows(self, view: str, rows: Sequence[Row]) -> int:
        """Write rows with one atomic script call; older rows change nothing.

        Returns:
            The number of rows created or replaced.
        """
        if not rows:
            return 0
        _ = self.client
        now = time.time_ns() // 1000
        keys = [self._key(view, k) for k, _, _ in rows]
        args: list[Any] = []
        for _, ts, payload in rows:
            args.extend((ts, payload, now))
        with self._reachable():
            return int(self._script(keys=keys, args=args))

    def read_records(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        """The stored record of each key (``None`` when absent), in one pipelined round trip."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._key(view, key), "ts", "v")
        with self._reachable():
            found = pipe.execute()
        out: list[OnlineRecord | None] = []
        for ts, payload in found:
            out.append(None if ts is None else OnlineRecord(int(ts), payload.decode("utf-8")))
        return out

    def get_state(self, view: str) -> dict[str, Any] | None:
        """The view's materialisation bookmark, or ``None``."""
        with self._reachable():
            raw = self.client.get(f"{self.key_prefix}:_state:{view}")
        return None if raw is None else dict(json.loads(raw))

    def set_state(self, view: str, state: Mapping[str, Any]) -> None:
        """Replace the view's materialisation bookmark."""
        with self._reachable():
            self.client.set(f"{self.key_prefix}:_state:{view}",
                            json.dumps(dict(state), sort_keys=True, default=str))

    def count(self, view: str) -> int:
        """How many entities the store holds for ``view`` (a SCAN; for tests and reports)."""
        pattern = f"{self.key_prefix}:{view}:*"
        with self._reachable():
            return sum(1 for _ in self.client.scan_iter(match=pattern, count=1000))

    def ping(self) -> bool:
        """True when the server answers PING."""
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001 - any failure means not healthy
            return False

    def describe(self) -> dict[str, Any]:
        """``{"type": "redis", "url": ..., "key_prefix": ...}``, the URL's password hidden."""
        return {"type": "redis", "url": redact_url(self.url), "key_prefix": self.key_prefix}

    def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        # Shown in logs and job summaries: the password stays out.
        return f"RedisOnlineStore({redact_url(self.url)!r}, key_prefix={self.key_prefix!r})"


def open_online_store(config: OnlineStoreConfig) -> OnlineStore:
    """Open the configured store (``sqlite`` or ``redis``).

    Raises:
        ValueError: an unknown store type.
    """
    if config.type == "sqlite":
        return SqliteOnlineStore(config.sqlite_path)
    if config.type == "redis":
        return RedisOnlineStore(config.redis_url, config.key_prefix)
    raise UserError(f"unknown online store type {config.type!r}; expected sqlite or redis")


# --------------------------------------------------------------------------------------------
# Reading with TTL
# --------------------------------------------------------------------------------------------


def _resolve(
    record: OnlineRecord | None,
    names: Sequence[str],
    ttl: timedelta | None,
    now_micros: int,
) -> dict[str, FeatureValue]:
    if record is None:
        missing = FeatureValue(None, None, None, "not_found")
        return {n: missing for n in names}
    staleness = (now_micros - record.event_ts_micros) / 1_000_000
    event_ts = record.event_timestamp
    # Same boundary as point-in-time retrieval: usable while event_time > now - ttl.
    if ttl is not None and record.event_ts_micros <= now_micros - to_micros_delta(ttl):
        expired = FeatureValue(None, event_ts, staleness, "expired")
        return {n: expired for n in names}
    values = json.loads(record.payload)
    out = {}
    for name in names:
        value = values.get(name)
        status: Status = "ok" if value is not None else "null_value"
        out[name] = FeatureValue(value, event_ts, staleness, status)
    return out


def to_micros_delta(value: timedelta) -> int:
    """A duration in whole microseconds."""
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def lookup_features(
    store: OnlineStore,
    view: FeatureView,
    entities: Sequence[Mapping[str, Any]],
    features: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, FeatureValue]]:
    """Read features of one view for many entities, enforcing the view's TTL.

    A value whose event time is at or before ``now - ttl`` is withheld (status ``expired``) - the
    same boundary point-in-time retrieval uses.

    Args:
        store: the online store.
        view: the feature view (join keys, TTL).
        entities: one mapping of join key to value per entity.
        features: the feature names to return (default: all of the view's features).
        now: the read time (default: the current time).

    Returns:
        One ``{feature name: FeatureValue}`` per entity, in order.

    Raises:
        EntityKeyError: an entity lacks a join key or has an unusable key value.
        UnknownFeatureError: a feature is not in the view.
    """
    names = list(features) if features is not None else view.feature_names
    for name in names:
        view.feature(name)
    keys = [entity_key_from_mapping(view, e) for e in entities]
    records = store.read_records(view.name, keys)
    now_micros = to_micros(now) if now is not None else time.time_ns() // 1000
    return [_resolve(r, names, view.ttl, now_micros) for r in records]


def iter_batches(rows: Iterable[Row], size: int) -> Iterable[list[Row]]:
    """Group rows into lists of at most ``size``."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
