"""The Redis online store: many writers (each Spark task writes its partition), monotonic
writes in one Lua call per batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from featurelake.feature_store.online.records import (
    OnlineRecord,
    OnlineStoreUnavailableError,
    Row,
    redact_url,
)

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
        return {
            "url": self.url,
            "key_prefix": self.key_prefix,
            "socket_timeout": self.socket_timeout,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def client(self) -> Any:
        """The redis-py client (thread-safe; a connection pool), created on first use."""
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.socket_timeout,
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
                f"Redis at {redact_url(self.url)} is unavailable: {exc}"
            ) from exc

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
            self.client.set(
                f"{self.key_prefix}:_state:{view}",
                json.dumps(dict(state), sort_keys=True, default=str),
            )

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
