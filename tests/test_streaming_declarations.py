"""Streaming declarations, the in_reference rule, window aggregates and the progress export."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from chispa import assert_df_equality
from featurelake.feature_store.definitions import FeatureView, load_feature_views_from
from featurelake.feature_store.http import ServingMetrics
from featurelake.feature_store.windows import window_aggregates
from featurelake.lakehouse.quality import (
    Expectation,
    MissingReferenceError,
    with_reference_flags,
    with_rule_failures,
)
from featurelake.lakehouse.sources import load_source_file, required_jvm_packages
from featurelake.streaming.events import late_events, on_time_events
from pydantic import ValidationError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _view(**window: object) -> FeatureView:
    return FeatureView.model_validate(
        {
            "name": "spend",
            "entity": "customer",
            "join_keys": ["customer_id"],
            "source": {"layer": "gold", "table": "spend"},
            "event_timestamp_column": "last_ts",
            "window": {
                "events": {"layer": "silver", "table": "orders"},
                "event_time": "ts",
                "size": "1h",
                "watermark": "10m",
                **window,
            },
            "features": [
                {
                    "name": "spend",
                    "dtype": "double",
                    "aggregation": {"function": "sum", "column": "amount"},
                },
                {"name": "orders", "dtype": "long", "aggregation": {"function": "count"}},
            ],
        }
    )


def test_the_shipped_streaming_declarations_load() -> None:
    source = load_source_file(PROJECT_ROOT / "conf" / "sources" / "order_events.yaml")
    assert source.is_streaming and source.stream is not None
    assert source.stream.watermark == timedelta(minutes=10)
    assert any("spark-sql-kafka" in c for c in required_jvm_packages([source]))
    views = load_feature_views_from([PROJECT_ROOT / "conf" / "features" / "customer_orders.yaml"])
    assert views["customer_orders_1h"].window.slide == timedelta(minutes=5)  # type: ignore[union-attr]
    assert views["customer_orders_24h"].window.tumbling  # type: ignore[union-attr]


def test_a_slide_must_divide_the_window() -> None:
    with pytest.raises(ValidationError, match="must divide"):
        _view(slide="7m")


def test_a_windowed_view_needs_an_aggregation_for_every_feature() -> None:
    data = _view().model_dump(mode="json")
    data["features"].append({"name": "plain", "dtype": "double"})
    with pytest.raises(ValidationError, match="need an aggregation"):
        FeatureView.model_validate(data)


def test_tumbling_windows_sum_and_count_their_events(spark) -> None:
    events = spark.createDataFrame(
        [
            ("a", 1.0, datetime(2026, 1, 1, 9, 10)),
            ("a", 2.0, datetime(2026, 1, 1, 9, 50)),
            ("a", 4.0, datetime(2026, 1, 1, 10, 0)),
            ("b", 8.0, datetime(2026, 1, 1, 9, 59, 59)),
            (None, 16.0, datetime(2026, 1, 1, 9, 0)),
        ],
        "customer_id string, amount double, ts timestamp",
    )
    expected = spark.createDataFrame(
        [
            (
                "a",
                datetime(2026, 1, 1, 9),
                datetime(2026, 1, 1, 10),
                3.0,
                2,
                datetime(2026, 1, 1, 9, 50),
            ),
            (
                "a",
                datetime(2026, 1, 1, 10),
                datetime(2026, 1, 1, 11),
                4.0,
                1,
                datetime(2026, 1, 1, 10),
            ),
            (
                "b",
                datetime(2026, 1, 1, 9),
                datetime(2026, 1, 1, 10),
                8.0,
                1,
                datetime(2026, 1, 1, 9, 59, 59),
            ),
        ],
        "customer_id string, window_start timestamp, window_end timestamp, spend double, "
        "orders long, last_ts timestamp",
    )
    assert_df_equality(
        events.transform(window_aggregates, _view()),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_in_reference_fails_unknown_keys_and_passes_nulls(spark) -> None:
    rows = spark.createDataFrame([("1",), ("2",), (None,)], "customer_id string")
    known = spark.createDataFrame([(1,)], "id int")
    rule = Expectation(
        type="in_reference",
        column="customer_id",
        reference="silver/customers",
        key="id",
        name="known_customer",
    )
    checked = rows.transform(with_reference_flags, [rule], {"silver/customers": known})
    result = checked.transform(with_rule_failures, [rule])
    failed = {r["customer_id"]: list(r["_failed_rules"]) for r in result.collect()}
    assert failed == {"1": [], "2": ["known_customer"], None: []}


def test_in_reference_without_its_table_is_refused(spark) -> None:
    rule = Expectation(type="in_reference", column="c", reference="silver/x", key="k")
    with pytest.raises(MissingReferenceError, match="silver/x"):
        with_reference_flags(spark.createDataFrame([("1",)], "c string"), [rule], {})


def test_an_event_at_the_watermark_is_late(spark) -> None:
    watermark = datetime(2026, 1, 1, 10, 0)
    events = spark.createDataFrame(
        [
            ("at", watermark),
            ("before", watermark - timedelta(seconds=1)),
            ("after", watermark + timedelta(seconds=1)),
        ],
        "id string, ts timestamp",
    )
    assert sorted(r["id"] for r in late_events(events, "ts", watermark).collect()) == [
        "at",
        "before",
    ]
    assert [r["id"] for r in on_time_events(events, "ts", watermark).collect()] == ["after"]
    assert late_events(events, "ts", None).count() == 0


def test_metrics_export_the_stream_progress_file(tmp_path: Path) -> None:
    path = tmp_path / "stream_progress.json"
    metrics = ServingMetrics(str(path))
    assert b"featurelake_stream_state_rows{" not in metrics.render()  # no file yet
    path.write_text(
        json.dumps(
            {
                "customer_orders_1h": {
                    "state_rows": 12,
                    "input_rows_per_second": 950.5,
                    "end_to_end_lag_seconds": 2.25,
                }
            }
        )
    )
    text = metrics.render().decode()
    assert 'featurelake_stream_state_rows{query="customer_orders_1h"} 12.0' in text
    assert 'featurelake_stream_input_rows_per_second{query="customer_orders_1h"} 950.5' in text
    assert 'featurelake_stream_end_to_end_lag_seconds{query="customer_orders_1h"} 2.25' in text
