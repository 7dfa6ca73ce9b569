"""What an online store holds and the protocol every store implements: entity keys, records,
feature values, and the errors of a lookup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from featurelake.core.errors import TransientError, UserError
from featurelake.feature_store.definitions import FeatureView

Status = Literal["ok", "null_value", "expired", "not_found"]


#: One stored row: (encoded entity key, event time in UTC microseconds, JSON object of values).
Row = tuple[str, int, str]


class EntityKeyError(UserError):
    """An entity lacks a join key, or a key value has an unusable type."""


class OnlineStoreUnavailableError(TransientError):
    """The online store cannot be reached (down, not answering in time, still loading its
    data); the same call may succeed later."""


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
    pairs = (
        [
            f"{pair.partition('=')[0]}=***"
            if pair.partition("=")[0].lower() == "password"
            else pair
            for pair in parts.query.split("&")
        ]
        if parts.query
        else []
    )
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
            "event_timestamp": None
            if self.event_timestamp is None
            else self.event_timestamp.isoformat().replace("+00:00", "Z"),
            "staleness_seconds": self.staleness_seconds,
            "status": self.status,
        }


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


def to_micros_delta(value: timedelta) -> int:
    """A duration in whole microseconds."""
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


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
