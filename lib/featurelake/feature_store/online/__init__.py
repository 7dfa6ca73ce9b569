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

from featurelake.feature_store.online.config import (
    OnlineStoreConfig,
    ServerConfig,
    ServingConfig,
    load_serving_config,
)
from featurelake.feature_store.online.lookup import (
    lookup_features,
    open_online_store,
)
from featurelake.feature_store.online.records import (
    EntityKeyError,
    FeatureValue,
    OnlineRecord,
    OnlineStore,
    OnlineStoreUnavailableError,
    Row,
    Status,
    encode_entity_key,
    entity_key_from_mapping,
    iter_batches,
    redact_url,
    to_micros,
    to_micros_delta,
)
from featurelake.feature_store.online.redis_store import (
    RedisOnlineStore,
)
from featurelake.feature_store.online.sqlite_store import (
    SqliteOnlineStore,
)

__all__ = [
    "EntityKeyError",
    "FeatureValue",
    "OnlineRecord",
    "OnlineStore",
    "OnlineStoreConfig",
    "OnlineStoreUnavailableError",
    "RedisOnlineStore",
    "Row",
    "ServerConfig",
    "ServingConfig",
    "SqliteOnlineStore",
    "Status",
    "encode_entity_key",
    "entity_key_from_mapping",
    "iter_batches",
    "load_serving_config",
    "lookup_features",
    "open_online_store",
    "redact_url",
    "to_micros",
    "to_micros_delta",
]
