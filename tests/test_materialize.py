"""Materialisation into the online store: latest per entity, cut-off, incremental runs, monotonic.

Every test builds a small real Delta source table, materialises it into a real SQLite file or a
real redis-server, and reads the store back; expected values are worked out by hand.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from featurelake.core.config import LakehouseSettings, Settings
from featurelake.delta import DeltaTables
from featurelake.feature_store.definitions import Feature, FeatureView, SourceTable
from featurelake.feature_store.materialize import materialize_view
from featurelake.feature_store.online import (
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    encode_entity_key,
)
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from redis_server import redis_url  # noqa: F401 - pytest fixture

PROJECT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
SCHEMA = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("as_of_ts", TimestampType()),
        StructField("recency_days", IntegerType()),
        StructField("monetary", DoubleType()),
    ]
)
VIEW = FeatureView(
    name="rfm",
    entity="customer",
    join_keys=["customer_id"],
    source=SourceTable(layer="gold", table="rfm_daily"),
    event_timestamp_column="as_of_ts",
    ttl="3d",
    features=[Feature(name="recency_days", dtype="int"), Feature(name="monetary", dtype="double")],
)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(lakehouse=LakehouseSettings(root=str(tmp_path / "lake")))


@pytest.fixture
def tables(spark: SparkSession) -> DeltaTables:
    return DeltaTables(spark, "delta-rs")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OnlineStore:
    if request.param == "sqlite":
        made: OnlineStore = SqliteOnlineStore(tmp_path / "online.db")
    else:
        made = RedisOnlineStore(request.getfixturevalue("redis_url"), f"m{uuid.uuid4().hex[:8]}")
    yield made
    made.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> OnlineStore:
    made = SqliteOnlineStore(tmp_path / "online.db")
    yield made
    made.close()


def write(
    spark: SparkSession,
    tables: DeltaTables,
    settings: Settings,
    rows: list[tuple],
    mode: str = "append",
) -> None:
    tables.write(spark.createDataFrame(rows, SCHEMA), VIEW.source.path(settings), mode=mode)


def stored(store: OnlineStore, customer: str, view: str = "rfm") -> tuple[datetime, dict] | None:
    (record,) = store.read_records(view, [encode_entity_key([customer])])
    return None if record is None else (record.event_timestamp, json.loads(record.payload))


def test_full_run_stores_the_latest_row_per_entity(spark, tables, settings, sqlite_store) -> None:
    store = sqlite_store
    write(
        spark,
        tables,
        settings,
        [
            ("a", day(0), 10, 1.0),
            ("a", day(2), 8, 3.0),
            ("a", day(1), 9, 2.0),
            ("b", day(1), 4, 5.5),
        ],
    )

    result = materialize_view(tables, settings, VIEW, store)

    assert (result.mode, result.entities_offered, result.entities_written) == ("full", 2, 2)
    assert stored(store, "a") == (day(2), {"recency_days": 8, "monetary": 3.0})
    assert stored(store, "b") == (day(1), {"recency_days": 4, "monetary": 5.5})


def test_up_to_stores_the_latest_row_at_or_before_the_cut_off(
    spark, tables, settings, sqlite_store
) -> None:
    write(
        spark,
        tables,
        settings,
        [
            ("a", day(0), 10, 1.0),
            ("a", day(1), 9, 2.0),
            ("a", day(2), 8, 3.0),
            ("b", day(3), 1, 1.0),
        ],
    )

    materialize_view(tables, settings, VIEW, sqlite_store, up_to=day(1))

    assert stored(sqlite_store, "a") == (day(1), {"recency_days": 9, "monetary": 2.0})
    assert stored(sqlite_store, "b") is None


def test_incremental_run_offers_only_changed_entities(spark, tables, settings, store) -> None:
    write(
        spark,
        tables,
        settings,
        [("a", day(0), 10, 1.0), ("b", day(0), 5, 2.0), ("c", day(0), 7, 3.0)],
    )
    materialize_view(tables, settings, VIEW, store)
    write(spark, tables, settings, [("b", day(1), 4, 2.5)])

    result = materialize_view(tables, settings, VIEW, store)

    assert (result.mode, result.previous_version, result.entities_offered) == ("incremental", 0, 1)
    assert stored(store, "b") == (day(1), {"recency_days": 4, "monetary": 2.5})
    assert stored(store, "a") == (day(0), {"recency_days": 10, "monetary": 1.0})


def test_run_without_source_changes_is_up_to_date(spark, tables, settings, sqlite_store) -> None:
    write(spark, tables, settings, [("a", day(0), 10, 1.0)])
    materialize_view(tables, settings, VIEW, sqlite_store)

    result = materialize_view(tables, settings, VIEW, sqlite_store)

    assert (result.mode, result.entities_offered) == ("up_to_date", 0)


def test_late_arriving_older_row_does_not_replace_the_stored_one(
    spark, tables, settings, store
) -> None:
    write(spark, tables, settings, [("a", day(5), 1, 9.0)])
    materialize_view(tables, settings, VIEW, store)
    write(spark, tables, settings, [("a", day(3), 3, 7.0)])

    result = materialize_view(tables, settings, VIEW, store)

    counts = (result.entities_offered, result.entities_written, result.entities_kept_newer)
    assert counts == (1, 0, 1)
    assert stored(store, "a") == (day(5), {"recency_days": 1, "monetary": 9.0})


def test_corrected_row_with_the_same_event_time_replaces_the_stored_one(
    spark, tables, settings, sqlite_store
) -> None:
    write(spark, tables, settings, [("a", day(1), 2, 10.0), ("b", day(1), 3, 1.0)])
    materialize_view(tables, settings, VIEW, sqlite_store)
    write(
        spark, tables, settings, [("a", day(1), 2, 12.0), ("b", day(1), 3, 1.0)], mode="overwrite"
    )

    result = materialize_view(tables, settings, VIEW, sqlite_store)

    assert (result.mode, result.entities_offered) == ("incremental", 1)
    assert stored(sqlite_store, "a") == (day(1), {"recency_days": 2, "monetary": 12.0})


def test_later_cut_off_on_the_same_version_loads_the_rows_in_between(
    spark, tables, settings, sqlite_store
) -> None:
    write(
        spark,
        tables,
        settings,
        [("a", day(0), 10, 1.0), ("a", day(2), 8, 3.0), ("b", day(0), 5, 1.0)],
    )
    materialize_view(tables, settings, VIEW, sqlite_store, up_to=day(1))

    result = materialize_view(tables, settings, VIEW, sqlite_store, up_to=day(3))

    assert (result.mode, result.entities_offered) == ("incremental", 1)
    assert stored(sqlite_store, "a") == (day(2), {"recency_days": 8, "monetary": 3.0})


def test_tie_on_event_time_is_broken_by_feature_values_in_declaration_order(
    spark, tables, settings, sqlite_store
) -> None:
    # Same entity and event time: recency_days is compared first (7 > 6), nulls lowest.
    write(
        spark,
        tables,
        settings,
        [("a", day(0), 6, 99.0), ("a", day(0), 7, 1.0), ("a", day(0), None, 500.0)],
    )

    materialize_view(tables, settings, VIEW, sqlite_store)

    assert stored(sqlite_store, "a") == (day(0), {"recency_days": 7, "monetary": 1.0})


def test_nulls_and_nan_are_stored_as_json_null(spark, tables, settings, sqlite_store) -> None:
    write(spark, tables, settings, [("a", day(0), None, float("nan"))])

    materialize_view(tables, settings, VIEW, sqlite_store)

    assert stored(sqlite_store, "a") == (day(0), {"recency_days": None, "monetary": None})


def test_rows_without_key_are_counted_not_stored(spark, tables, settings, sqlite_store) -> None:
    write(
        spark,
        tables,
        settings,
        [(None, day(0), 1, 1.0), ("a", None, 1, 1.0), ("b", day(0), 2, 2.0)],
    )

    result = materialize_view(tables, settings, VIEW, sqlite_store)

    assert (result.rows_without_key, result.entities_offered) == (2, 1)
    assert sqlite_store.count("rfm") == 1


def test_changed_view_definition_triggers_a_full_run(spark, tables, settings, sqlite_store) -> None:
    write(spark, tables, settings, [("a", day(0), 10, 1.0), ("b", day(0), 5, 2.0)])
    materialize_view(tables, settings, VIEW, sqlite_store)
    fewer = VIEW.model_copy(update={"features": VIEW.features[:1]})

    result = materialize_view(tables, settings, fewer, sqlite_store)

    assert (result.mode, result.entities_offered, result.entities_written) == ("full", 2, 2)
    assert stored(sqlite_store, "a") == (day(0), {"recency_days": 10})


def _load_job(name: str):
    from featurelake.core.pipeline import load_job_module

    return load_job_module(name)


def test_materialize_job_loads_views_from_conf_and_reports_counts(spark, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "env" / "local.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "base.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "features").mkdir()
    (conf / "features" / "rfm.yaml").write_text(
        json.dumps({"feature_views": [VIEW.definition() | {"ttl": "3d"}]}), encoding="utf-8"
    )
    (conf / "serving.yaml").write_text(
        "online_store: {type: sqlite, sqlite_path: online/f.db}\n", encoding="utf-8"
    )
    root = tmp_path / "lake"
    settings = Settings(lakehouse=LakehouseSettings(root=str(root)))
    tables = DeltaTables(spark, "delta-rs")
    write(spark, tables, settings, [("a", day(0), 10, 1.0), ("a", day(1), 9, 2.0)])
    job = _load_job("materialize")

    code = job.run_materialize(
        [
            "--conf-dir",
            str(conf),
            "--conf",
            f"lakehouse.root={root}",
            "--view",
            "rfm",
            "--up-to",
            "2024-03-01T12:00:00Z",
        ],
        spark=spark,
    )

    assert code == 0
    store = SqliteOnlineStore(root / "online" / "f.db")
    assert stored(store, "a") == (day(0), {"recency_days": 10, "monetary": 1.0})
    assert store.get_state("rfm")["up_to"] == "2024-03-01T12:00:00+00:00"
    store.close()


def test_materialize_job_rejects_an_unknown_view(spark, tmp_path: Path) -> None:
    job = _load_job("materialize")

    code = job.run_materialize(
        [
            "--conf-dir",
            str(PROJECT / "conf"),
            "--conf",
            f"lakehouse.root={tmp_path}",
            "--view",
            "nope",
        ],
        spark=spark,
    )

    assert code == 2
