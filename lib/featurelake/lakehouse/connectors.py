"""Where a database table or an HTTP API is, and how bronze reads it: the ``jdbc`` and
``http_json`` sections of a source declaration (``conf/sources/<name>.yaml``).

Credentials are never written in a declaration: a JDBC source names the environment variables
holding its user and password, an HTTP source the variables holding secret header values. URLs
may not carry credentials (``user:password@``, ``password=``), so that a URL can be logged and
kept as lineage.

Example (``format: jdbc``)::

    jdbc:
      url: jdbc:postgresql://db.internal:5432/shop
      table: public.orders
      user_env: SHOP_DB_USER
      password_env: SHOP_DB_PASSWORD
      cursor: updated_at                 # a declared column; each run reads rows past it
      partitioning: {column: order_id, num_partitions: 8}

Example (``format: http_json``)::

    http_json:
      url: https://api.example.com/v1/orders
      records: data                      # where the array of records is in each page
      pagination: {style: page, param: page, size_param: per_page, size: 100}
      headers_env: {Authorization: ORDERS_API_AUTHORIZATION}
      requests_per_second: 5
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "JDBC_DRIVERS",
    "POSTGRESQL_DRIVER_PACKAGE",
    "HttpJsonOptions",
    "HttpRetry",
    "JdbcOptions",
    "JdbcPartitioning",
    "Pagination",
    "secrets_in_declaration",
]

# The JDBC driver (class, Maven coordinates) of each URL scheme known without a declaration.
# Only drivers tested here are listed; any other needs jdbc.driver and jdbc.driver_package.
POSTGRESQL_DRIVER_PACKAGE = "org.postgresql:postgresql:42.7.4"
JDBC_DRIVERS = {"postgresql": ("org.postgresql.Driver", POSTGRESQL_DRIVER_PACKAGE)}

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]*"
_COORDINATE = r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.+-]+$"
# Header and query parameter names that carry credentials: only from the environment.
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
_SECRET_PARAM = re.compile(r"(pass(word)?|secret|token|api_?key|access_?key|signature)", re.I)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _credential_free(url: str) -> str:
    """``url`` unless it holds credentials (userinfo or a password-like parameter)."""
    if "@" in urlsplit(url.removeprefix("jdbc:")).netloc:
        raise ValueError("must not contain credentials (user@ or user:password@)")
    # query parameters (?a=1&b=2) and the ;key=value properties some JDBC URLs carry
    for name in re.findall(r"[?&;]([^=?&;/]+)=", url):
        if name.lower() in ("user", "password") or _SECRET_PARAM.search(name):
            raise ValueError(
                f"must not contain credentials (parameter {name!r}): name environment "
                "variables in user_env/password_env or headers_env instead"
            )
    return url


def secrets_in_declaration(data: Any) -> list[str]:
    """Credentials written where they must not be (URLs, plain headers, properties).

    A declaration holding one is refused; the texts returned here are what the refusal must
    not repeat (a validation error quotes the value it refuses).

    Args:
        data: the parsed YAML of a source declaration.

    Returns:
        The secret substrings found (userinfo, values of password-like parameters, values of
        credential headers and of ``user``/``password`` properties).
    """
    found: list[str] = []
    for section in ("jdbc", "http_json"):
        options = data.get(section) if isinstance(data, Mapping) else None
        if not isinstance(options, Mapping):
            continue
        url = options.get("url")
        if isinstance(url, str):
            userinfo = urlsplit(url.removeprefix("jdbc:")).netloc.rpartition("@")[0]
            found += [userinfo] if userinfo else []
            found += [
                value
                for name, value in re.findall(r"[?&;]([^=?&;/]+)=([^&;#]*)", url)
                if name.lower() in ("user", "password") or _SECRET_PARAM.search(name)
            ]
        for key, is_secret in (
            ("properties", lambda k: k.lower() in ("user", "password")),
            ("headers", lambda k: k.lower() in _SECRET_HEADERS),
            ("params", lambda k: bool(_SECRET_PARAM.search(k))),
        ):
            values = options.get(key)
            if isinstance(values, Mapping):
                found += [str(v) for k, v in values.items() if is_secret(str(k))]
    return [s for s in found if s]


class JdbcPartitioning(_Frozen):
    """Read a large increment with ``num_partitions`` parallel queries, split on an integer column.

    Attributes:
        column: an integer column of the table (need not be declared).
        num_partitions: how many queries (Spark tasks) read the increment.
        lower_bound: the smallest value expected; with ``upper_bound``, the range split into
            ``num_partitions`` strides. Both unset: each run takes the increment's min and max.
        upper_bound: the largest value expected. Values outside the bounds are still read
            (by the first and last partition).
    """

    column: str = Field(pattern=f"^{_IDENTIFIER}$")
    num_partitions: int = Field(ge=1, le=1000)
    lower_bound: int | None = None
    upper_bound: int | None = None

    @model_validator(mode="after")
    def _bounds_together(self) -> JdbcPartitioning:
        if (self.lower_bound is None) != (self.upper_bound is None):
            raise ValueError("lower_bound and upper_bound go together (or neither)")
        if self.lower_bound is not None and self.upper_bound is not None:
            if self.lower_bound >= self.upper_bound:
                raise ValueError("lower_bound must be below upper_bound")
        return self


class JdbcOptions(_Frozen):
    """A database table read incrementally by a cursor column.

    Attributes:
        url: the JDBC URL (``jdbc:postgresql://host:5432/db``), without credentials.
        table: the table, optionally schema-qualified (``public.orders``).
        user_env: the environment variable holding the user name.
        password_env: the environment variable holding the password (unset: none is sent).
        cursor: a declared column whose value grows with every insert and update
            (``updated_at``, an increasing id). A run reads the rows with a cursor above the
            last committed high-water mark and up to the maximum it finds when it starts.
        partitioning: parallel reads of a large increment.
        fetch_size: rows fetched per round trip (the driver streams the result).
        driver: the driver class; known for ``jdbc:postgresql`` URLs.
        driver_package: the driver's Maven coordinates (``group:artifact:version``), fetched
            like delta-spark's jar; known for ``jdbc:postgresql`` URLs.
        properties: other JDBC connection properties (``sslmode``, ``connectTimeout``...);
            never ``user`` or ``password``.
    """

    url: str = Field(pattern=r"^jdbc:[a-z0-9]+:")
    table: str = Field(pattern=f"^{_IDENTIFIER}(\\.{_IDENTIFIER}){{0,2}}$")
    user_env: str = Field(pattern=_ENV_NAME)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    cursor: str = Field(min_length=1)
    partitioning: JdbcPartitioning | None = None
    fetch_size: int = Field(default=10_000, ge=1)
    driver: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.$]*$")
    driver_package: str | None = Field(default=None, pattern=_COORDINATE)
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: str) -> str:
        return _credential_free(url)

    @field_validator("properties")
    @classmethod
    def _no_credentials_in_properties(cls, properties: dict[str, str]) -> dict[str, str]:
        secret = sorted(k for k in properties if k.lower() in ("user", "password"))
        if secret:
            raise ValueError(f"{secret} come from user_env and password_env, not properties")
        return properties

    @model_validator(mode="after")
    def _driver_known_or_declared(self) -> JdbcOptions:
        if (self.driver is None or self.driver_package is None) and self.scheme not in JDBC_DRIVERS:
            raise ValueError(
                f"driver and driver_package are required for jdbc:{self.scheme} URLs "
                f"(known without them: {', '.join(f'jdbc:{s}' for s in sorted(JDBC_DRIVERS))})"
            )
        return self

    @property
    def scheme(self) -> str:
        """The URL's database kind: ``postgresql`` for ``jdbc:postgresql://...``."""
        return self.url.split(":", 2)[1]

    @property
    def driver_class(self) -> str:
        """The driver class: declared, or known from the URL scheme."""
        return self.driver or JDBC_DRIVERS[self.scheme][0]

    @property
    def driver_coordinates(self) -> str:
        """The driver jar's Maven coordinates: declared, or known from the URL scheme."""
        return self.driver_package or JDBC_DRIVERS[self.scheme][1]


class Pagination(_Frozen):
    """How the pages of an HTTP API follow each other.

    Styles:
        * ``page``: ``param`` carries the page number, from ``start`` (default 1);
        * ``offset``: ``param`` carries the offset of the first record, from ``start``
          (default 0), advanced by the records received;
        * ``cursor``: ``param`` carries the cursor found in the previous page at ``cursor_path``;
        * ``next_link``: the next page's URL is in the previous page at ``next_path``
          (relative URLs are resolved against the page's).

    ``page`` and ``offset`` stop at a page with no records, or with fewer than ``size`` when
    ``size`` is set; ``cursor`` and ``next_link`` stop at a page without a next cursor or link.

    Attributes:
        style: one of the above.
        param: the query parameter of ``page``, ``offset`` and ``cursor`` styles.
        start: the first page number or offset.
        size_param: the query parameter asking for ``size`` records per page.
        size: records per page asked for (and expected on every page but the last).
        cursor_path: dotted path of the next cursor in a page (``meta.next_cursor``).
        next_path: dotted path of the next page's URL in a page (``links.next``).
        max_pages: a run fetching more pages than this fails (a pagination loop).
    """

    style: Literal["page", "offset", "cursor", "next_link"]
    param: str | None = Field(default=None, min_length=1)
    start: int | None = Field(default=None, ge=0)
    size_param: str | None = Field(default=None, min_length=1)
    size: int | None = Field(default=None, ge=1)
    cursor_path: str | None = Field(default=None, min_length=1)
    next_path: str | None = Field(default=None, min_length=1)
    max_pages: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _style_needs(self) -> Pagination:
        needs = {
            "page": ["param"],
            "offset": ["param"],
            "cursor": ["param", "cursor_path"],
            "next_link": ["next_path"],
        }[self.style]
        missing = [key for key in needs if getattr(self, key) is None]
        if missing:
            raise ValueError(f"style {self.style!r} needs {', '.join(missing)}")
        if (self.size_param is None) != (self.size is None):
            raise ValueError("size_param and size go together (or neither)")
        return self

    @property
    def first(self) -> int:
        """The first page number (``page``) or offset (``offset``)."""
        if self.start is not None:
            return self.start
        return 1 if self.style == "page" else 0


class HttpRetry(_Frozen):
    """Retries of a page that failed: HTTP 429 and 5xx, timeouts, lost connections, bodies
    that are not JSON. The wait doubles from ``backoff_s`` up to ``max_backoff_s``; a
    ``Retry-After`` header (seconds) is honoured up to ``max_backoff_s``.

    Attributes:
        attempts: requests per page before giving up (1 = no retry).
        backoff_s: the wait after the first failure.
        max_backoff_s: the longest wait.
    """

    attempts: int = Field(default=5, ge=1, le=100)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)


class HttpJsonOptions(_Frozen):
    """A paginated JSON API.

    Attributes:
        url: the first page's URL (``http`` or ``https``), without credentials.
        params: query parameters added to every request.
        headers: plain request headers (never credentials: use ``headers_env``).
        headers_env: header name -> environment variable holding its value (a token).
        records: dotted path of the array of records in a page; empty: the page is the array.
        pagination: how pages follow each other.
        timeout_s: seconds to wait for the server to connect or send (per read).
        requests_per_second: at most this many requests a second (retries included).
        retry: how failed requests are retried.
    """

    url: str = Field(pattern=r"^https?://[^/\s]+")
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict)
    records: str = ""
    pagination: Pagination
    timeout_s: float = Field(default=30.0, gt=0)
    requests_per_second: float | None = Field(default=None, gt=0)
    retry: HttpRetry = Field(default_factory=HttpRetry)

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: str) -> str:
        return _credential_free(url)

    @field_validator("params")
    @classmethod
    def _no_credentials_in_params(cls, params: dict[str, str]) -> dict[str, str]:
        secret = sorted(k for k in params if _SECRET_PARAM.search(k))
        if secret:
            raise ValueError(
                f"{secret} look like credentials: URLs are logged and kept as lineage; send "
                "credentials in a header named in headers_env"
            )
        return params

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        secret = sorted(k for k in headers if k.lower() in _SECRET_HEADERS)
        if secret:
            raise ValueError(f"{secret} carry credentials: name them in headers_env instead")
        return headers

    @field_validator("headers_env")
    @classmethod
    def _variable_names(cls, headers_env: dict[str, str]) -> dict[str, str]:
        bad = sorted(v for v in headers_env.values() if not re.match(_ENV_NAME, v))
        if bad:
            raise ValueError(f"values must be environment variable names, got {bad}")
        return headers_env
