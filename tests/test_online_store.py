"""Online stores (SQLite file, real redis-server): monotonic writes, TTL on read, statuses."""

from __future__ import annotations

import json
import pickle
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from featurelake.feature_store.definitions import Feature, FeatureView, SourceTable
from featurelake.feature_store.online import (
    EntityKeyError,
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    encode_entity_key,
    lookup_features,
    to_micros,
)
from redis_server import redis_url  # noqa: F401 - pytest fixture

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
VIEW = FeatureView(
    name="customer_rfm",
    entity="customer",
    join_keys=["customer_id"],
    source=SourceTable(layer="gold", table="customer_features_daily"),
    event_timestamp_column="as_of_ts",
    ttl="3d",
    features=[Feature(name="recency_days", dtype="int"), Feature(name="monetary", dtype="double")],
)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path) -> OnlineStore:
    if request.param == "sqlite":
        made: OnlineStore = SqliteOnlineStore(tmp_path / "online.db")
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisOnlineStore(url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
    yield made
    made.close()


def row(customer: str, at: datetime, **values: object) -> tuple[str, int, str]:
    return encode_entity_key([customer]), to_micros(at), json.dumps(values)


def read_one(store: OnlineStore, customer: str, now: datetime) -> dict:
    (result,) = lookup_features(store, VIEW, [{"customer_id": customer}], now=now)
    return {name: value.as_dict() for name, value in result.items()}


def test_written_row_is_read_back_with_event_time_and_staleness(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=12.5)])

    got = read_one(store, "c1", now=T0 + timedelta(hours=2))

    assert got["recency_days"] == {
        "value": 3,
        "event_timestamp": "2024-03-01T12:00:00Z",
        "staleness_seconds": 7200.0,
        "status": "ok",
    }
    assert got["monetary"]["value"] == 12.5


def test_older_row_never_replaces_a_newer_one(store: OnlineStore) -> None:
    assert store.write_rows("customer_rfm", [row("c1", T0, recency_days=1, monetary=1.0)]) == 1

    written = store.write_rows(
        "customer_rfm", [row("c1", T0 - timedelta(days=1), recency_days=9, monetary=9.0)]
    )

    assert written == 0
    assert read_one(store, "c1", now=T0)["recency_days"]["value"] == 1


def test_newer_row_replaces_an_older_one(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=1, monetary=1.0)])

    written = store.write_rows(
        "customer_rfm", [row("c1", T0 + timedelta(days=1), recency_days=0, monetary=2.0)]
    )

    assert written == 1
    got = read_one(store, "c1", now=T0 + timedelta(days=1))
    assert (got["recency_days"]["value"], got["monetary"]["value"]) == (0, 2.0)


def test_same_event_time_is_replaced_by_the_later_write(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=1, monetary=1.0)])
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=1, monetary=1.5)])

    assert read_one(store, "c1", now=T0)["monetary"]["value"] == 1.5


def test_older_row_later_in_the_same_batch_is_skipped(store: OnlineStore) -> None:
    written = store.write_rows(
        "customer_rfm",
        [
            row("c1", T0, recency_days=1, monetary=1.0),
            row("c1", T0 - timedelta(hours=1), recency_days=7, monetary=7.0),
            row("c2", T0, recency_days=2, monetary=2.0),
        ],
    )

    assert written == 2
    assert read_one(store, "c1", now=T0)["recency_days"]["value"] == 1


def test_concurrent_writers_leave_the_newest_value(store: OnlineStore) -> None:
    # Eight threads write the same key with shuffled event times; whatever the interleaving,
    # the stored row must be the one with the largest event time.
    hours = list(range(200))
    random.Random(7).shuffle(hours)
    slices = [hours[i::8] for i in range(8)]

    def writer(part: list[int]) -> None:
        for h in part:
            store.write_rows(
                "customer_rfm",
                [row("c1", T0 + timedelta(hours=h), recency_days=h, monetary=float(h))],
            )

    threads = [threading.Thread(target=writer, args=(part,)) for part in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    got = read_one(store, "c1", now=T0 + timedelta(hours=199))
    assert got["recency_days"]["value"] == 199
    assert got["recency_days"]["event_timestamp"] == "2024-03-09T19:00:00Z"


def test_value_at_exactly_ttl_age_comes_back_expired(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=1.0)])

    got = read_one(store, "c1", now=T0 + timedelta(days=3))

    assert got["recency_days"] == {
        "value": None,
        "event_timestamp": "2024-03-01T12:00:00Z",
        "staleness_seconds": 259200.0,
        "status": "expired",
    }


def test_value_just_inside_ttl_is_served(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=1.0)])

    got = read_one(store, "c1", now=T0 + timedelta(days=3) - timedelta(microseconds=1))

    assert (got["recency_days"]["value"], got["recency_days"]["status"]) == (3, "ok")


def test_unknown_entity_comes_back_null_not_found(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=1.0)])

    got = read_one(store, "nobody", now=T0)

    assert got["monetary"] == {
        "value": None,
        "event_timestamp": None,
        "staleness_seconds": None,
        "status": "not_found",
    }


def test_stored_null_comes_back_as_null_value(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=None, monetary=1.0)])

    assert read_one(store, "c1", now=T0)["recency_days"]["status"] == "null_value"


def test_lookup_keeps_entity_order_and_duplicates(store: OnlineStore) -> None:
    store.write_rows(
        "customer_rfm",
        [row("a", T0, recency_days=1, monetary=1.0), row("b", T0, recency_days=2, monetary=2.0)],
    )

    results = lookup_features(
        store,
        VIEW,
        [{"customer_id": "b"}, {"customer_id": "x"}, {"customer_id": "b"}, {"customer_id": "a"}],
        ["recency_days"],
        now=T0,
    )

    assert [r["recency_days"].value for r in results] == [2, None, 2, 1]


def test_views_do_not_share_keys(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=1, monetary=1.0)])

    assert store.read_records("other_view", [encode_entity_key(["c1"])]) == [None]


def test_integer_and_string_keys_address_the_same_entity() -> None:
    assert encode_entity_key([17850]) == encode_entity_key(["17850"])


def test_entity_without_join_key_is_rejected(store: OnlineStore) -> None:
    with pytest.raises(EntityKeyError, match="lacks join key"):
        lookup_features(store, VIEW, [{"id": 1}], now=T0)


def test_materialisation_bookmark_round_trips(store: OnlineStore) -> None:
    assert store.get_state("customer_rfm") is None

    store.set_state("customer_rfm", {"source_version": 4, "up_to": None})

    assert store.get_state("customer_rfm") == {"source_version": 4, "up_to": None}


def test_count_counts_entities_of_one_view(store: OnlineStore) -> None:
    store.write_rows("customer_rfm", [row(c, T0, recency_days=1, monetary=1.0) for c in "abc"])
    store.write_rows("other", [row("a", T0, recency_days=1, monetary=1.0)])

    assert store.count("customer_rfm") == 3


def test_redis_store_survives_pickling_for_executors(redis_url: str) -> None:  # noqa: F811
    store = RedisOnlineStore(redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
    store.ping()

    copy = pickle.loads(pickle.dumps(store))
    copy.write_rows("customer_rfm", [row("c1", T0, recency_days=5, monetary=1.0)])

    assert read_one(store, "c1", now=T0)["recency_days"]["value"] == 5
    store.close()
    copy.close()


# -- the Python API (notebooks) -----------------------------------------------------------------


def _conf_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "features").mkdir()
    (conf / "base.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "env" / "local.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "features" / "rfm.yaml").write_text(
        json.dumps({"feature_views": [VIEW.definition() | {"ttl": "3d"}]}), encoding="utf-8"
    )
    (conf / "serving.yaml").write_text(
        json.dumps(
            {
                "online_store": {"type": "sqlite", "sqlite_path": "online/f.db"},
                "access": {
                    "roles": {"analyst": {"views": ["customer_rfm"]}, "nobody": {"views": []}}
                },
            }
        ),
        encoding="utf-8",
    )
    return conf


def test_get_online_features_reads_the_configured_store(tmp_path) -> None:
    from featurelake.core.config import load_settings
    from featurelake.feature_store.online_api import get_online_features

    settings = load_settings(_conf_dir(tmp_path), "local", [f"lakehouse.root={tmp_path / 'lake'}"])
    store = SqliteOnlineStore(tmp_path / "lake" / "online" / "f.db")
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=12.5)])
    store.close()

    records = get_online_features(
        [{"customer_id": "c1"}, {"customer_id": "zz"}],
        ["customer_rfm:monetary"],
        settings=settings,
        now=T0 + timedelta(hours=1),
    )

    assert records == [
        {
            "entity": {"customer_id": "c1"},
            "values": {
                "customer_rfm:monetary": {
                    "value": 12.5,
                    "event_timestamp": "2024-03-01T12:00:00Z",
                    "staleness_seconds": 3600.0,
                    "status": "ok",
                }
            },
        },
        {
            "entity": {"customer_id": "zz"},
            "values": {
                "customer_rfm:monetary": {
                    "value": None,
                    "event_timestamp": None,
                    "staleness_seconds": None,
                    "status": "not_found",
                }
            },
        },
    ]


def test_get_online_features_as_pandas_has_one_row_per_entity(tmp_path) -> None:
    from featurelake.core.config import load_settings
    from featurelake.feature_store.online_api import get_online_features

    settings = load_settings(_conf_dir(tmp_path), "local", [f"lakehouse.root={tmp_path / 'lake'}"])
    store = SqliteOnlineStore(tmp_path / "lake" / "online" / "f.db")
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=12.5)])
    store.close()

    frame = get_online_features(
        [{"customer_id": "c1"}], ["customer_rfm:*"], settings=settings, now=T0, as_pandas=True
    )

    assert frame.to_dict("records") == [
        {"customer_id": "c1", "customer_rfm:recency_days": 3, "customer_rfm:monetary": 12.5}
    ]


def test_get_online_features_applies_a_role_when_given(tmp_path) -> None:
    from featurelake.core.config import load_settings
    from featurelake.feature_store.auth import AuthorizationError
    from featurelake.feature_store.online_api import get_online_features

    settings = load_settings(_conf_dir(tmp_path), "local", [f"lakehouse.root={tmp_path / 'lake'}"])

    with pytest.raises(AuthorizationError, match="may not read view"):
        get_online_features(
            [{"customer_id": "c1"}], ["customer_rfm:monetary"], settings=settings, role="nobody"
        )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://app:s3cret-pw@cache.internal:6380/2", "redis://app:***@cache.internal:6380/2"),
        ("redis://:s3cret-pw@cache.internal:6379/0", "redis://:***@cache.internal:6379/0"),
        (
            "rediss://cache.internal:6379/0?password=s3cret-pw&socket_timeout=1",
            "rediss://cache.internal:6379/0?password=***&socket_timeout=1",
        ),
        ("redis://cache.internal:6379/0", "redis://cache.internal:6379/0"),
    ],
)
def test_redis_store_shows_its_url_without_the_password(url: str, shown: str) -> None:
    store = RedisOnlineStore(url, key_prefix="fl")

    assert store.describe() == {"type": "redis", "url": shown, "key_prefix": "fl"}
    assert "s3cret" not in repr(store)


def test_get_online_features_keeps_its_service_until_a_configuration_file_changes_within_a_second(
    tmp_path,
) -> None:
    from featurelake.core.config import load_settings
    from featurelake.feature_store.online_api import _cached_service, get_online_features

    conf = _conf_dir(tmp_path)
    settings = load_settings(conf, "local", [f"lakehouse.root={tmp_path / 'lake'}"])
    store = SqliteOnlineStore(tmp_path / "lake" / "online" / "f.db")
    store.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=12.5)])
    store.close()
    first = _cached_service(settings)
    assert _cached_service(settings) is first  # no YAML read, no store opened again

    # The store moves: serving.yaml changes, so the next call reads the new one.
    serving = conf / "serving.yaml"
    serving.write_text(serving.read_text().replace("online/f.db", "online/g.db"))
    moved = SqliteOnlineStore(tmp_path / "lake" / "online" / "g.db")
    moved.write_rows("customer_rfm", [row("c1", T0, recency_days=3, monetary=99.0)])
    moved.close()

    # The files are looked at once a second at most: the change is seen after that.
    assert _cached_service(settings) is first
    time.sleep(1.1)
    records = get_online_features(
        [{"customer_id": "c1"}], ["customer_rfm:monetary"], settings=settings, now=T0
    )
    assert _cached_service(settings) is not first
    assert records[0]["values"]["customer_rfm:monetary"]["value"] == 99.0
