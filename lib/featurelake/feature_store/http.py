"""The serving app's HTTP layer: request limits, authentication, audit lines and metrics.

Every request passes :class:`ServingMiddleware`: it bounds the body, authenticates the protected
paths, times the request, and records it in the audit log (:class:`AuditLog`, every field cut
to a bounded length) and in the Prometheus metrics (:class:`ServingMetrics`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from featurelake.feature_store.auth import (
    AuthenticationError,
    Authorizer,
    Principal,
)

# ASGI's types, as Starlette names them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROTECTED = ("/features", "/predict", "/health/details", "/dashboard")


_KNOWN_PATHS = ("/features", "/predict", "/health", "/health/details", "/metrics", "/dashboard")


_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


_STALENESS_BUCKETS = (
    60,
    300,
    900,
    3600,
    6 * 3600,
    86400,
    3 * 86400,
    7 * 86400,
    30 * 86400,
    365 * 86400,
)


# A body may carry up to server.max_body_bytes of text that error answers and audit lines would
# otherwise repeat: each piece of it is cut to MAX_ECHO_CHARS, a whole error message to
# _MAX_DETAIL_CHARS, and a 422 lists at most _MAX_PROBLEMS problems.
MAX_ECHO_CHARS = 256


def _json_bytes(content: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(content)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which JSON allows
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class FastJSONResponse(JSONResponse):
    """A JSON answer encoded by orjson (several times faster than ``json.dumps``)."""

    def render(self, content: Any) -> bytes:
        return _json_bytes(content)


def clip_text(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how many were cut.

    Lone surrogates (which JSON allows as ``"\\ud800"``) are escaped, so the result always
    encodes as UTF-8.

    Example:
        >>> clip_text("abcdef", 2)
        'ab...[4 more characters]'
    """
    if len(text) > limit:
        text = f"{text[:limit]}...[{len(text) - limit} more characters]"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class AuditLog:
    """Appends one JSON line per request to a file (created with its folder).

    Each line is written with a single ``write`` on a file opened for appending, so lines from
    several threads (or processes) never interleave. Every string in a line is cut to
    ``max_chars`` and every list to ``max_items`` (each with a marker saying how much was left
    out), so a line stays small whatever the request held.

    Args:
        path: the JSON-lines file.
        max_chars: most characters of any one string.
        max_items: most items of any one list (the server passes ``server.max_features``, so
            the features of a request that was served are recorded in full).
    """

    def __init__(
        self, path: str | Path, *, max_chars: int = MAX_ECHO_CHARS, max_items: int = 200
    ) -> None:
        self.path = Path(path)
        self.max_chars = max_chars
        self.max_items = max_items
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def _text(self, value: Any) -> str:
        if isinstance(value, str) and len(value) <= self.max_chars and value.isascii():
            return value  # nothing to cut or escape (the common case: no copy)
        return clip_text(str(value), self.max_chars)

    def _bounded(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, dict):
            return {
                self._text(k): self._bounded(v) for k, v in list(value.items())[: self.max_items]
            }
        if isinstance(value, (list, tuple)):
            kept = [self._bounded(v) for v in value[: self.max_items]]
            if len(value) > self.max_items:
                kept.append(f"...[{len(value) - self.max_items} more items]")
            return kept
        return self._text(value)

    def write(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one line, its strings and lists cut to the bounds."""
        line = _json_bytes(self._bounded(entry)).decode("utf-8") + "\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


class _StreamProgressCollector:
    """The ``stream`` job's latest progress, read from its file at every scrape."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Any:
        from featurelake.streaming.progress import stream_metric_families

        return stream_metric_families(self.path)


class ServingMetrics:
    """The server's Prometheus metrics, in a registry of its own (one per app).

    Args:
        stream_progress: the ``stream`` job's progress file; its figures are exported as
            ``featurelake_stream_*`` gauges (None: not exported).
    """

    def __init__(self, stream_progress: str | None = None) -> None:
        self.registry = CollectorRegistry()
        if stream_progress:
            self.registry.register(_StreamProgressCollector(stream_progress))
        self.requests = Counter(
            "featurelake_serving_requests",
            "HTTP requests by path and status code",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "featurelake_serving_request_duration_seconds",
            "HTTP request latency",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lookups = Counter(
            "featurelake_online_lookups",
            "Entity lookups per view by result (hit, miss, expired)",
            ["view", "result"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "featurelake_predictions",
            "Online predictions by model, arm and whether they were returned (not shadow)",
            ["model", "arm", "served"],
            registry=self.registry,
        )
        self.staleness = Histogram(
            "featurelake_online_staleness_seconds",
            "Age of served rows (read time minus event time) per view",
            ["view"],
            buckets=_STALENESS_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in an ASGI scope."""
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


async def _read_body_within(scope: Scope, receive: Receive, limit: int) -> Receive | None:
    """Read the request body, refusing it as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before any of the body is read; a
    body without one (chunked) is counted as it arrives, so at most ``limit`` bytes are held.

    Returns:
        A ``receive`` that hands the app the body read, or ``None`` when the body is too large.
    """
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    replay: list[Message] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away mid-body
            replay.append(message)
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            replay.append({"type": "http.request", "body": b"".join(chunks), "more_body": False})
            break

    async def receive_read_body() -> Message:
        if replay:
            return replay.pop()
        return await receive()

    return receive_read_body


class ServingMiddleware:
    """Times every request, authenticates protected paths, bounds the body, then records
    metrics and audit.

    Authentication happens here, before the body is read, so a caller without a valid key
    gets 401 whatever it sent; then the body is read up to ``max_body_bytes`` (413 beyond).
    What the endpoint learns (views, features, entity count, error) it leaves in
    ``scope["state"]`` for the audit line.
    """

    def __init__(
        self,
        app: ASGIApp,
        authorizer: Authorizer,
        header: str,
        audit: AuditLog,
        metrics: ServingMetrics,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.authorizer = authorizer
        self.header_name = header
        self.header = header.lower().encode("latin-1")
        self.audit = audit
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        request_id = uuid.uuid4().hex[:16]
        state["request_id"] = request_id
        path = scope.get("path", "")
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            if path in _PROTECTED:
                presented = _header(scope, self.header)
                try:
                    state["principal"] = self.authorizer.authenticate(presented)
                except AuthenticationError as exc:
                    state["error"] = str(exc)
                    # The body is not read; closing keeps uvicorn from reading it anyway.
                    response = JSONResponse(
                        {
                            "error": "unauthorized",
                            "detail": f"{exc}; send it in the {self.header_name} header",
                        },
                        status_code=401,
                        headers={"WWW-Authenticate": "ApiKey", "Connection": "close"},
                    )
                    await response(scope, receive, send_wrapper)
                    return
            receive_body = await _read_body_within(scope, receive, self.max_body_bytes)
            if receive_body is None:
                state["error"] = f"request body over {self.max_body_bytes} bytes"
                # Connection: close makes uvicorn drop the connection after the answer instead
                # of reading (and discarding) the rest of the body to keep the connection alive.
                response = JSONResponse(
                    {
                        "error": "payload_too_large",
                        "detail": f"the request body is over the limit of {self.max_body_bytes} "
                        "bytes",
                    },
                    status_code=413,
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive_body, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            label = path if path in _KNOWN_PATHS else "other"
            self.metrics.requests.labels(label, str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(elapsed)
            if path not in ("/metrics", "/health"):
                principal: Principal | None = state.get("principal")
                self.audit.write(
                    {
                        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": path,
                        "client": (scope.get("client") or ("", 0))[0],
                        "key_id": principal.key_id if principal else None,
                        "role": principal.role if principal else None,
                        "model": state.get("model"),
                        "model_versions": state.get("model_versions"),
                        "views": state.get("views"),
                        "features": state.get("features"),
                        "entities": state.get("entities"),
                        "status": status["code"],
                        "outcome": "ok" if status["code"] < 400 else "error",
                        "error": state.get("error"),
                        "duration_ms": round(elapsed * 1000, 3),
                    }
                )
