"""Opening the configured store, and looking feature values up with TTL and freshness."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from featurelake.core.errors import UserError
from featurelake.feature_store.definitions import FeatureView
from featurelake.feature_store.online.config import OnlineStoreConfig
from featurelake.feature_store.online.records import (
    FeatureValue,
    OnlineRecord,
    OnlineStore,
    Status,
    entity_key_from_mapping,
    to_micros,
    to_micros_delta,
)
from featurelake.feature_store.online.redis_store import RedisOnlineStore
from featurelake.feature_store.online.sqlite_store import SqliteOnlineStore


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
