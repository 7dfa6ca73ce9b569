"""Feature view declarations: validation, YAML loading with file/key errors, references."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from featurelake.core.config import ConfigError, load_settings
from featurelake.feature_store.definitions import (
    Feature,
    FeatureRef,
    FeatureView,
    FeatureViewError,
    SourceTable,
    UnknownFeatureError,
    load_feature_views,
    load_feature_views_from,
    parse_duration,
    parse_feature_ref,
    resolve_feature_refs,
)
from pydantic import ValidationError


def make_view(**overrides):
    fields = dict(
        name="rfm",
        entity="customer",
        join_keys=["customer_id"],
        source=SourceTable(layer="gold", table="customer_features_daily"),
        event_timestamp_column="as_of_ts",
        ttl="30d",
        features=[
            Feature(name="recency_days", dtype="int"),
            Feature(name="monetary", dtype="double", pii=False, tags=["spend"]),
        ],
    )
    fields.update(overrides)
    return FeatureView(**fields)


VIEW_YAML = """
feature_views:
  - name: rfm
    entity: customer
    join_keys: [customer_id]
    source: {layer: gold, table: customer_features_daily}
    event_timestamp_column: as_of_ts
    ttl: %s
    features:
      - {name: recency_days, dtype: int}
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (45, timedelta(seconds=45)),
    ],
)
def test_durations_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30 days", "d30", "", "0d", "-1d", True])
def test_bad_durations_are_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_view_parses_ttl_and_is_frozen():
    view = make_view()
    assert view.ttl == timedelta(days=30)
    with pytest.raises(ValidationError):
        view.name = "other"


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        Feature("x", "int")  # type: ignore[misc]


def test_unknown_key_is_rejected():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make_view(ttl_days=3)


def test_repeated_feature_names_are_rejected():
    with pytest.raises(ValidationError, match="feature names repeat"):
        make_view(features=[Feature(name="a", dtype="int"), Feature(name="a", dtype="long")])


def test_feature_that_is_a_join_key_is_rejected():
    with pytest.raises(ValidationError, match="also join keys or timestamp columns"):
        make_view(features=[Feature(name="customer_id", dtype="string")])


def test_bad_dtype_is_rejected():
    with pytest.raises(ValidationError, match="dtype"):
        Feature(name="x", dtype="decimal")


def test_non_identifier_name_is_rejected():
    with pytest.raises(ValidationError, match="must be an identifier"):
        make_view(name="rfm view")


def test_naive_snapshot_time_is_utc():
    view = make_view(event_timestamp_value="2005-10-01T00:00:00")
    assert view.event_timestamp_value == datetime(2005, 10, 1, tzinfo=timezone.utc)
    assert "as_of_ts" not in view.source_columns()


def test_definition_hash_changes_with_the_definition_only():
    assert make_view().definition_hash() == make_view().definition_hash()
    assert make_view().definition_hash() != make_view(ttl="31d").definition_hash()


def test_definition_round_trips_through_json():
    view = make_view(freshness_sla="1d", event_timestamp_value=datetime(2020, 1, 1))
    again = FeatureView.model_validate(view.definition())
    assert again == view and again.definition_hash() == view.definition_hash()


def test_yaml_error_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(VIEW_YAML % "thirty days", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_feature_views_from([path])
    assert info.value.source == str(path)
    assert info.value.key == "feature_views.0.ttl"
    assert "expected a duration" in str(info.value)


def test_unknown_layer_names_file_and_key(tmp_path):
    path = tmp_path / "views.yaml"
    path.write_text((VIEW_YAML % "3d").replace("layer: gold", "layer: platinum"), encoding="utf-8")
    expected = r"views.yaml: feature_views.0.source.layer: unknown layer"
    with pytest.raises(ConfigError, match=expected):
        load_feature_views_from([path], layers=["bronze", "silver", "gold"])


def test_view_declared_twice_names_both_files(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(VIEW_YAML % "3d", encoding="utf-8")
    second.write_text(VIEW_YAML % "3d", encoding="utf-8")
    expected = r"b.yaml: feature_views.0.name: .* already declared in .*a.yaml"
    with pytest.raises(ConfigError, match=expected):
        load_feature_views_from([first, second])


def test_project_declarations_load():
    views = load_feature_views(load_settings("conf"))
    assert {"customer_rfm", "customer_activity", "credit_profile"} <= set(views)
    daily = SourceTable(layer="gold", table="customer_features_daily")
    assert views["customer_rfm"].source == daily
    assert views["credit_profile"].feature("age").pii


def test_feature_references_parse():
    assert parse_feature_ref("rfm:recency_days") == FeatureRef("rfm", "recency_days")
    assert parse_feature_ref("rfm:*") == FeatureRef("rfm", "*")


@pytest.mark.parametrize("text", ["rfm", "rfm:a:b", ":x", "rfm:", "r fm:x"])
def test_malformed_references_are_rejected(text):
    with pytest.raises(FeatureViewError, match="view:feature"):
        parse_feature_ref(text)


def test_references_resolve_grouped_by_view_without_repeats():
    views = {"rfm": make_view()}
    resolved = resolve_feature_refs(["rfm:monetary", "rfm:*", "rfm:monetary"], views)
    assert resolved == {"rfm": ["monetary", "recency_days"]}


def test_unknown_view_and_feature_list_what_exists():
    views = {"rfm": make_view()}
    with pytest.raises(UnknownFeatureError, match=r"declared views: \['rfm'\]"):
        resolve_feature_refs(["rmf:monetary"], views)
    with pytest.raises(UnknownFeatureError, match=r"its features: \['recency_days', 'monetary'\]"):
        resolve_feature_refs(["rfm:money"], views)
