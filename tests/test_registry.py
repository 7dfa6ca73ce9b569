"""Registry (a real Delta table), the features and training-set jobs, end to end on tmp tables."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from featurelake.core.config import load_settings
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.feature_store.api import FeatureStore
from featurelake.feature_store.definitions import UnknownFeatureError
from featurelake.feature_store.offline import FeatureViewError

PROJECT = Path(__file__).resolve().parents[1]
D = datetime(2024, 1, 1)

VIEWS = """
feature_views:
  - name: spend
    entity: customer
    join_keys: [customer_id]
    source: {layer: gold, table: daily}
    event_timestamp_column: as_of_ts
    ttl: 2d
    owner: growth
    tags: [money]
    description: How much a customer spends
    features:
      - {name: spend_30d, dtype: double, description: Spend in 30 days, tags: [window]}
  - name: orders
    entity: customer
    join_keys: [customer_id]
    source: {layer: gold, table: daily}
    event_timestamp_column: as_of_ts
    ttl: %s
    owner: ops
    description: Order counts
    features:
      - {name: orders_30d, dtype: long, description: Invoices in 30 days, owner: fulfilment}
"""


def write_conf(root: Path, ttl: str = "2d", views: str | None = None) -> Path:
    conf = root / "conf"
    if not conf.exists():
        shutil.copytree(PROJECT / "conf" / "env", conf / "env")
        shutil.copy(PROJECT / "conf" / "base.yaml", conf / "base.yaml")
        (conf / "features").mkdir()
    (conf / "features" / "views.yaml").write_text(views or VIEWS % ttl, encoding="utf-8")
    return conf


@pytest.fixture()
def lake(spark, tmp_path):
    """A conf dir with two views over gold/daily, and that table (Delta version 0)."""
    conf = write_conf(tmp_path)
    settings = load_settings(conf, "local", [f"lakehouse.root={tmp_path / 'lake'}"])
    daily = spark.createDataFrame(
        [("c1", D, 10.0, 1), ("c2", D, 20.0, 2)],
        "customer_id string, as_of_ts timestamp, spend_30d double, orders_30d long",
    )
    DeltaTables(spark).write(daily, settings.lakehouse.table_path("gold", "daily"), "overwrite")
    return tmp_path, conf, settings


def store_for(spark, conf, root):
    return FeatureStore(spark, load_settings(conf, "local", [f"lakehouse.root={root / 'lake'}"]))


def test_apply_records_versions_hashes_and_lineage(spark, lake):
    root, conf, settings = lake
    store = store_for(spark, conf, root)
    result = store.apply(applied_by="alice", run_id="r1")
    assert (result.added, result.changed, result.deleted) == (["orders", "spend"], [], [])
    entries = {e.view_name: e for e in store.list()}
    assert entries["spend"].version == 1 and entries["spend"].status == "active"
    assert entries["spend"].applied_by == "alice" and entries["spend"].run_id == "r1"
    assert entries["spend"].source_table == "gold/daily" and entries["spend"].source_version == 0
    assert entries["spend"].definition_hash == store.views()["spend"].definition_hash()
    assert entries["spend"].view == store.views()["spend"]


def test_apply_is_idempotent(spark, lake):
    root, conf, _ = lake
    store = store_for(spark, conf, root)
    first = store.apply(applied_by="alice")
    again = store.apply(applied_by="bob")
    assert again.changes == 0 and again.unchanged == ["orders", "spend"]
    assert again.registry_version == first.registry_version
    assert len(store.registry.history()) == 2


def test_changed_view_gets_a_new_version_and_removed_view_is_marked_deleted(spark, lake):
    root, conf, _ = lake
    store_for(spark, conf, root).apply(applied_by="alice")
    write_conf(root, ttl="5d")
    changed = store_for(spark, conf, root).apply(applied_by="bob")
    assert (changed.changed, changed.unchanged) == (["orders"], ["spend"])
    only_spend = VIEWS.split("  - name: orders")[0]
    write_conf(root, views=only_spend)
    store = store_for(spark, conf, root)
    removed = store.apply(applied_by="carol")
    assert removed.deleted == ["orders"]
    history = [(e.version, e.status, e.applied_by) for e in store.registry.history("orders")]
    assert history == [(1, "active", "alice"), (2, "active", "bob"), (3, "deleted", "carol")]
    assert [e.view_name for e in store.list()] == ["spend"]
    with pytest.raises(UnknownFeatureError, match="registered: \\['spend'\\]"):
        store.describe("orders")


def test_search_by_text_tag_and_owner(spark, lake):
    root, conf, _ = lake
    store = store_for(spark, conf, root)
    store.apply(applied_by="alice")
    assert [h.view_name for h in store.search("SPENDS")] == ["spend"]
    assert [(h.view_name, h.features) for h in store.search("invoices")] == [
        ("orders", ["orders_30d"])
    ]
    assert [h.view_name for h in store.search(tag="window")] == ["spend"]
    assert [(h.view_name, h.features) for h in store.search(owner="fulfilment")] == [
        ("orders", ["orders_30d"])
    ]
    assert store.search("spend", owner="ops") == []


def test_apply_rejects_a_view_that_does_not_match_its_source(spark, lake):
    root, conf, _ = lake
    write_conf(root, views=VIEWS.replace("dtype: long", "dtype: string") % "2d")
    with pytest.raises(FeatureViewError, match="orders_30d is bigint, declared string"):
        store_for(spark, conf, root).apply(applied_by="alice")


def test_features_job_apply_list_describe(spark, lake, capsys):
    root, conf, _ = lake
    common = ["--conf-dir", str(conf), "--conf", f"lakehouse.root={root / 'lake'}"]
    from featurelake.jobs.features import add_arguments, main

    assert (
        run_job("features", main, ["apply", "--applied-by", "ci", *common], add_arguments, spark)
        == 0
    )
    capsys.readouterr()
    assert run_job("features", main, ["list", *common], add_arguments, spark) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(v["name"], v["version"], v["applied_by"]) for v in listed] == [
        ("orders", 1, "ci"),
        ("spend", 1, "ci"),
    ]
    assert run_job("features", main, ["describe", "spend", *common], add_arguments, spark) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["features"][0]["owner"] == "growth"
    assert run_job("features", main, ["describe", "nope", *common], add_arguments, spark) == 2


def test_training_set_job_keeps_every_row_and_records_lineage(spark, lake, tmp_path):
    root, conf, settings = lake
    common = ["--conf-dir", str(conf), "--conf", f"lakehouse.root={root / 'lake'}"]
    store_for(spark, conf, root).apply(applied_by="ci")
    entities = spark.createDataFrame(
        [("c1", D), ("c1", D), ("c9", D), ("c2", datetime(2023, 12, 31))],
        "customer_id string, ts timestamp",
    )
    entity_file = str(tmp_path / "entities.parquet")
    entities.write.parquet(entity_file)
    from featurelake.jobs.training_set import add_arguments, main

    code = run_job(
        "training-set",
        main,
        [
            "--entity-file",
            entity_file,
            "--timestamp-column",
            "ts",
            "--features",
            "spend:spend_30d,orders:orders_30d",
            "--output",
            "demo",
            *common,
        ],
        add_arguments,
        spark,
    )
    assert code == 0
    tables = DeltaTables(spark)
    path = settings.lakehouse.table_path("features", "demo")
    rows = sorted((tuple(r) for r in tables.read(path).collect()), key=str)
    assert rows == sorted(
        [
            ("c1", D, 10.0, 1),
            ("c1", D, 10.0, 1),
            ("c9", D, None, None),
            ("c2", datetime(2023, 12, 31), None, None),
        ],
        key=str,
    )
    lineage = json.loads(tables.history(path, limit=1)[0]["featurelake.training_set"])
    assert lineage["sources"] == {"gold/daily": 0}
    assert lineage["views"]["spend"]["registry_version"] == 1
    assert lineage["features"] == ["spend:spend_30d", "orders:orders_30d"]
