"""A local paginated JSON API for the HTTP source tests, with faults injected on request.

    api = PagedApi(records, page_size=20, style="page", faults={3: ["429", "500"]})
    with serving(api) as base_url:
        ...  # GET {base_url}/orders?page=3&per_page=20 answers 429, then 500, then the page

Pagination styles as the ``http_json`` sources declare them: ``page`` (``?page=N&per_page=S``),
``offset`` (``?offset=K&limit=S``), ``cursor`` (``?cursor=C``; the next cursor in
``meta.next_cursor``) and ``next_link`` (the next URL in ``links.next``). Records are in
``data``.

Faults are scripted per page: the Nth request of a page gets the Nth fault of its list, later
requests the page itself. ``"429"`` (with ``Retry-After: 0``), ``"500"``, ``"503"``,
``"slow"`` (the answer waits ``slow_s`` seconds), ``"malformed"`` (a truncated JSON body, HTTP
200), ``"reset"`` (the connection closed without an answer), or ``"always-503"`` (every
request of that page).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["PagedApi", "serving"]


class PagedApi:
    """Records served in pages, faults injected as scripted; counts requests per page."""

    def __init__(
        self,
        records: Sequence[Any],
        *,
        page_size: int,
        style: str = "page",
        faults: Mapping[int, Sequence[str]] | None = None,
        slow_s: float = 1.0,
        token: str | None = None,
    ) -> None:
        self.records = list(records)
        self.page_size = page_size
        self.style = style
        self.faults = {page: list(kinds) for page, kinds in (faults or {}).items()}
        self.slow_s = slow_s
        self.token = token
        self.requests: Counter[int] = Counter()
        self.lock = threading.Lock()

    @property
    def pages(self) -> int:
        """Pages holding records (a ``page``/``offset`` client asks for one more, empty)."""
        return max(1, -(-len(self.records) // self.page_size))

    def page_number(self, query: Mapping[str, list[str]]) -> int:
        """The 1-based page a request asks for."""
        if self.style == "page":
            return int(query.get("page", ["1"])[0])
        if self.style == "offset":
            return int(query.get("offset", ["0"])[0]) // self.page_size + 1
        if self.style == "cursor":
            cursor = query.get("cursor", [""])[0]
            return int(cursor.removeprefix("after-")) + 1 if cursor else 1
        return int(query.get("p", ["1"])[0])

    def body(self, page: int) -> bytes:
        """The page's JSON body."""
        start = (page - 1) * self.page_size
        document: dict[str, Any] = {"data": self.records[start : start + self.page_size]}
        has_next = page < self.pages
        if self.style == "cursor":
            document["meta"] = {"next_cursor": f"after-{page}" if has_next else None}
        if self.style == "next_link":
            document["links"] = {"next": f"/orders?p={page + 1}" if has_next else None}
        return json.dumps(document).encode()

    def fault(self, page: int) -> str | None:
        """The fault for this request of ``page`` (and count the request)."""
        with self.lock:
            self.requests[page] += 1
            kinds = self.faults.get(page, [])
            if "always-503" in kinds:
                return "503"
            index = self.requests[page] - 1
            return kinds[index] if index < len(kinds) else None


def _handler(api: PagedApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _send(self, status: int, body: bytes, headers: Mapping[str, str] = {}) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout): nothing to answer

        def do_GET(self) -> None:  # noqa: N802 - the http.server hook
            if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
                self._send(401, b'{"error": "unauthorized"}')
                return
            page = api.page_number(parse_qs(urlsplit(self.path).query))
            fault = api.fault(page)
            if fault == "429":
                self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
            elif fault in ("500", "503"):
                self._send(int(fault), b"<html>upstream failed</html>")
            elif fault == "reset":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            elif fault == "slow":
                time.sleep(api.slow_s)
                self._send(200, api.body(page))
            elif fault == "malformed":
                self._send(200, api.body(page)[:-7])
            else:
                self._send(200, api.body(page))

    return Handler


@contextmanager
def serving(api: PagedApi) -> Iterator[str]:
    """Serve ``api`` on 127.0.0.1 (a free port) in a thread; yields ``http://127.0.0.1:P/orders``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/orders"
    finally:
        server.shutdown()
        server.server_close()
