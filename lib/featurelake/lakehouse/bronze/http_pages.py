"""Fetching the pages of a paginated JSON API on the driver: pagination, retries with backoff,
a rate limit and timeouts (plain Python, the standard library's HTTP client).

A page is asked for until it answers with a JSON body holding the records array: HTTP 429 and
5xx answers, timeouts, lost connections and bodies that are not such JSON are retried, waiting
``retry.backoff_s`` doubled at each attempt up to ``retry.max_backoff_s`` (or what a
``Retry-After`` header asks for, within the same cap). Other 4xx answers are not retried: the
request itself is wrong (a bad token, a missing resource). A page still unavailable after
``retry.attempts`` requests fails the run (:class:`PageUnavailableError`); a page whose body is
still not JSON is kept whole as a rescued row when the pagination can go on without it (``page``
and ``offset`` styles), and fails the run otherwise (its next cursor or link is unknown).

Secret header values come from environment variables and are sent, never logged; URLs carry no
credentials (the declaration may not put any there), so they are logged and kept as lineage.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from featurelake.core.errors import DataError, TransientError, UserError
from featurelake.lakehouse.connectors import HttpJsonOptions

__all__ = [
    "FetchStats",
    "FetchedPage",
    "PageUnavailableError",
    "fetch_pages",
    "request_headers",
    "with_query",
]

log = logging.getLogger(__name__)

# Statuses worth asking again: too many requests, and the server's own failures.
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


class PageUnavailableError(TransientError):
    """A page did not answer usefully within the retries; nothing of the run was committed."""


@dataclass(frozen=True)
class FetchedPage:
    """One page as it was received.

    Attributes:
        number: 1 for the first page of the run, then 2, 3...
        url: the URL requested.
        body: the body's bytes.
        fetched_at: when the answer arrived (UTC).
        attempts: requests made for it.
        records: records found in it; None when the body is not JSON with the records array
            (the page is then kept whole as one rescued row).
    """

    number: int
    url: str
    body: bytes
    fetched_at: datetime
    attempts: int
    records: int | None

    @property
    def path(self) -> str:
        """The page's lineage: its URL and number (``<url>#page=<n>``)."""
        return f"{self.url}#page={self.number}"

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the body."""
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class FetchStats:
    """What fetching cost: requests sent and how many of them were retries."""

    requests: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)


def request_headers(source: str, options: HttpJsonOptions) -> tuple[dict[str, str], list[str]]:
    """The headers of every request, secret ones read from the environment.

    Returns:
        (the headers, the secret values among them: never to be shown).

    Raises:
        UserError: a variable named in ``headers_env`` is not set.
    """
    headers = {"Accept": "application/json", "User-Agent": "featurelake", **options.headers}
    secrets = []
    for header, variable in options.headers_env.items():
        value = os.environ.get(variable)
        if not value:
            raise UserError(
                f"source {source}: environment variable {variable} "
                f"(http_json.headers_env.{header}) is not set"
            )
        headers[header] = value
        secrets.append(value)
    return headers, secrets


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` set in its query string (replacing parameters of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def value_at(document: Any, dotted: str) -> Any:
    """The value at a dotted path of a JSON document (``links.next``); None when absent."""
    current = document
    for key in [k for k in dotted.split(".") if k]:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


class _PageClient:
    """GET with the rate limit, the timeout and the retries of one source."""

    def __init__(
        self,
        source: str,
        options: HttpJsonOptions,
        headers: Mapping[str, str],
        stats: FetchStats,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.source = source
        self.options = options
        self.headers = dict(headers)
        self.stats = stats
        self.sleep = sleep
        self.clock = clock
        self._next_start = 0.0

    def _pace(self) -> None:
        """Wait until the rate limit allows the next request."""
        rate = self.options.requests_per_second
        if rate is None:
            return
        now = self.clock()
        if now < self._next_start:
            self.sleep(self._next_start - now)
            now = self._next_start
        self._next_start = now + 1.0 / rate

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        retry = self.options.retry
        wait = retry_after if retry_after is not None else retry.backoff_s * 2 ** (attempt - 1)
        return min(wait, retry.max_backoff_s)

    def get(self, url: str, number: int) -> tuple[FetchedPage, Any]:
        """The page at ``url`` and its parsed JSON (None when the body is not usable JSON).

        Raises:
            PageUnavailableError: no usable answer within the attempts.
            UserError: a 4xx answer other than 429 (not retried).
        """
        attempts = self.options.retry.attempts
        last_problem = ""
        body: bytes | None = None
        for attempt in range(1, attempts + 1):
            self._pace()
            self.stats.requests += 1
            self.stats.retries += attempt > 1
            retry_after = None
            body = None
            request = urllib.request.Request(url, headers=self.headers)  # http(s): validated
            try:
                with urllib.request.urlopen(request, timeout=self.options.timeout_s) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code not in _RETRY_STATUSES:
                    raise UserError(
                        f"source {self.source}: page {number} ({url}) answered HTTP {exc.code} "
                        f"{exc.reason}; not retried (check http_json.url, params and "
                        "headers_env)"
                    ) from None
                kind, last_problem = f"http_{exc.code}", f"HTTP {exc.code} {exc.reason}"
                retry_after = _retry_after(exc.headers.get("Retry-After"))
            except TimeoutError:
                kind, last_problem = "timeout", f"no answer within {self.options.timeout_s:g} s"
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                kind, last_problem = "connection", f"{type(exc).__name__}: {reason}"
            if body is not None:
                fetched_at = datetime.now(timezone.utc)
                document, records = _records_in(body, self.options.records)
                if records is not None:
                    page = FetchedPage(number, url, body, fetched_at, attempt, records)
                    return page, document
                kind, last_problem = "malformed", _not_usable(body, self.options.records)
                if attempt == attempts:
                    return FetchedPage(number, url, body, fetched_at, attempt, None), None
            self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1
            if attempt < attempts:
                wait = self._backoff(attempt, retry_after)
                log.warning(
                    "http_retry",
                    extra={
                        "fields": {
                            "source": self.source,
                            "page": number,
                            "url": url,
                            "attempt": attempt,
                            "problem": last_problem,
                            "wait_s": round(wait, 3),
                        }
                    },
                )
                self.sleep(wait)
        raise PageUnavailableError(
            f"source {self.source}: page {number} ({url}) still unavailable after {attempts} "
            f"attempt(s) (last: {last_problem}); nothing of this run was committed"
        )


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (an HTTP date is not honoured: None)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _records_in(body: bytes, records_path: str) -> tuple[Any, int | None]:
    """(the parsed body, records in it) or (None, None) when it is not JSON with the array."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    records = value_at(document, records_path) if records_path else document
    if not isinstance(records, list):
        return None, None
    return document, len(records)


def _not_usable(body: bytes, records_path: str) -> str:
    where = f"an array at {records_path!r}" if records_path else "an array"
    return f"body is not JSON with {where} ({len(body)} bytes)"


def fetch_pages(
    source: str,
    options: HttpJsonOptions,
    headers: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[FetchedPage], FetchStats]:
    """Every page of the API, in order, following the declared pagination.

    Args:
        source: the source name (for messages).
        options: the source's ``http_json`` section.
        headers: the request headers (:func:`request_headers`).
        sleep: waits (tests may pass a recorder).
        clock: a monotonic clock in seconds.

    Returns:
        (the pages, what fetching cost).

    Raises:
        PageUnavailableError: a page stayed unavailable after the retries.
        UserError: a page answered 4xx (not 429).
        DataError: a page without usable JSON where its next cursor or link is needed; a next
            link to another host; more than ``pagination.max_pages`` pages.
    """
    stats = FetchStats()
    client = _PageClient(source, options, headers, stats, sleep, clock)
    pages = [page for page in _follow(source, options, client)]
    return pages, stats


def _follow(source: str, options: HttpJsonOptions, client: _PageClient) -> Iterator[FetchedPage]:
    pagination = options.pagination
    base = with_query(options.url, options.params) if options.params else options.url
    url, position, cursor = base, pagination.first, None
    home = urlsplit(options.url)[:2]
    for number in range(1, pagination.max_pages + 1):
        params: dict[str, str] = {}
        if pagination.size_param and pagination.size:
            params[pagination.size_param] = str(pagination.size)
        if pagination.style in ("page", "offset") and pagination.param:
            params[pagination.param] = str(position)
        if pagination.style == "cursor" and pagination.param and cursor is not None:
            params[pagination.param] = cursor
        request_url = with_query(url, params) if params else url
        page, document = client.get(request_url, number)
        yield page
        if pagination.style in ("page", "offset"):
            found = page.records
            if found is not None and (
                found == 0 or (pagination.size is not None and found < pagination.size)
            ):
                return
            if pagination.style == "page":
                position += 1
            elif found is not None:
                position += found
            elif pagination.size is not None:
                position += pagination.size
            else:
                raise DataError(
                    f"source {source}: page {number} ({request_url}) is not usable JSON, so "
                    "the next offset is unknown (declare pagination.size); nothing was committed"
                )
            continue
        if document is None:
            raise DataError(
                f"source {source}: page {number} ({request_url}) is still not usable JSON after "
                f"{page.attempts} attempt(s), so its next {pagination.style} is unknown; "
                "nothing was committed"
            )
        path = pagination.cursor_path if pagination.style == "cursor" else pagination.next_path
        following = value_at(document, path or "")
        if following is None or following == "":
            return
        if pagination.style == "cursor":
            cursor = str(following)
            continue
        url = urljoin(request_url, str(following))
        if urlsplit(url)[:2] != home:
            raise DataError(
                f"source {source}: page {number} links to {url}, outside {home[0]}://{home[1]}; "
                "not followed (credentials would be sent there); nothing was committed"
            )
    raise DataError(
        f"source {source}: more than {pagination.max_pages} pages (pagination.max_pages); "
        "nothing was committed"
    )
