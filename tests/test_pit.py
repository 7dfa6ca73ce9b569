"""Point-in-time join on hand-built timelines; expected values worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from chispa import assert_df_equality
from featurelake.feature_store.definitions import (
    Feature,
    FeatureView,
    FeatureViewError,
    SourceTable,
)
from featurelake.feature_store.offline import MissingColumnsError, as_of_join, get_training_set
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

D = datetime(2024, 1, 1)  # day 0
US = timedelta(microseconds=1)

ENTITY = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("ts", TimestampType()),
        StructField("label", LongType()),
    ]
)
FEATURES = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("event_ts", TimestampType()),
        StructField("created_ts", TimestampType()),
        StructField("x", DoubleType()),
        StructField("y", DoubleType()),
    ]
)
OUT = StructType([*ENTITY.fields, StructField("x", DoubleType())])


def day(n: float) -> datetime:
    return D + timedelta(days=n)


def entities(spark, rows):
    return spark.createDataFrame(rows, ENTITY)


def features(spark, rows):
    return spark.createDataFrame(rows, FEATURES)


def join(entity_df, feature_df, **kwargs):
    options = dict(
        join_keys=["customer_id"],
        entity_timestamp_column="ts",
        event_timestamp_column="event_ts",
        feature_columns=["x"],
        created_timestamp_column="created_ts",
    )
    options.update(kwargs)
    return as_of_join(entity_df, feature_df, **options)


# A timeline for customer "a": x = 1 at day 1, 5 at day 5, 10 at day 10 (created on time).
def timeline(spark):
    return features(
        spark,
        [
            ("a", day(1), day(1), 1.0, 0.0),
            ("a", day(5), day(5), 5.0, 0.0),
            ("a", day(10), day(10), 10.0, 0.0),
        ],
    )


def test_value_at_exactly_t_is_used_and_value_after_t_is_not(spark):
    ents = entities(spark, [("a", day(5), 1), ("a", day(10) - US, 2)])
    expected = spark.createDataFrame([("a", day(5), 1, 5.0), ("a", day(10) - US, 2, 5.0)], OUT)
    assert_df_equality(join(ents, timeline(spark)), expected, ignore_row_order=True)


def test_ttl_lower_bound_is_exclusive(spark):
    # ttl 3 days: the day-1 value is usable for t in [day 1, day 4); at day 4 it has expired.
    ents = entities(spark, [("a", day(4) - US, 1), ("a", day(4), 2)])
    expected = spark.createDataFrame([("a", day(4) - US, 1, 1.0), ("a", day(4), 2, None)], OUT)
    result = join(ents, timeline(spark), ttl=timedelta(days=3))
    assert_df_equality(result, expected, ignore_row_order=True)


def test_ttl_spanning_buckets_finds_value_from_previous_bucket(spark):
    # ttl 7 days; buckets of 7 days from 1970: the day-5 value must reach t = day 11.9.
    ents = entities(spark, [("a", day(9.5), 1), ("a", day(11.9), 2), ("a", day(17.5), 3)])
    expected = spark.createDataFrame(
        [("a", day(9.5), 1, 5.0), ("a", day(11.9), 2, 10.0), ("a", day(17.5), 3, None)], OUT
    )
    result = join(ents, timeline(spark), ttl=timedelta(days=7))
    assert_df_equality(result, expected, ignore_row_order=True)


def test_without_ttl_any_older_value_is_used(spark):
    ents = entities(spark, [("a", day(400), 1)])
    expected = spark.createDataFrame([("a", day(400), 1, 10.0)], OUT)
    assert_df_equality(join(ents, timeline(spark)), expected, ignore_row_order=True)


def test_tie_on_event_time_goes_to_latest_created(spark):
    feats = features(
        spark,
        [
            ("a", day(1), day(3), 3.0, 0.0),
            ("a", day(1), day(2), 2.0, 0.0),
            ("a", day(1), None, 9.0, 0.0),  # unknown created time ranks lowest
        ],
    )
    ents = entities(spark, [("a", day(4), 1)])
    expected = spark.createDataFrame([("a", day(4), 1, 3.0)], OUT)
    assert_df_equality(join(ents, feats), expected, ignore_row_order=True)


def test_full_tie_goes_to_greatest_values_in_declaration_order_whatever_is_requested(spark):
    # Same event and created time: compare (x, y); (2, 0) beats (1, 9), so y = 0 even when
    # only y is requested.
    feats = features(
        spark,
        [
            ("a", day(1), day(1), 1.0, 9.0),
            ("a", day(1), day(1), 2.0, 0.0),
        ],
    )
    ents = entities(spark, [("a", day(2), 1)])
    expected = spark.createDataFrame(
        [("a", day(2), 1, 0.0)], StructType([*ENTITY.fields, StructField("y", DoubleType())])
    )
    result = join(ents, feats, feature_columns=["y"], tie_break_columns=["x", "y"])
    assert_df_equality(result, expected, ignore_row_order=True)


def test_late_arriving_value_is_filtered_out_at_entity_time(spark):
    # The day-2 value was only written on day 8: at t = day 5 the day-1 value is what was known.
    feats = features(
        spark,
        [
            ("a", day(1), day(1), 1.0, 0.0),
            ("a", day(2), day(8), 2.0, 0.0),
        ],
    )
    ents = entities(spark, [("a", day(5), 1), ("a", day(8), 2)])
    expected = spark.createDataFrame([("a", day(5), 1, 1.0), ("a", day(8), 2, 2.0)], OUT)
    result = join(ents, feats, known_at="entity_time")
    assert_df_equality(result, expected, ignore_row_order=True)


def test_late_arriving_value_leaks_without_the_filter(spark):
    feats = features(
        spark,
        [
            ("a", day(1), day(1), 1.0, 0.0),
            ("a", day(2), day(8), 2.0, 0.0),
        ],
    )
    ents = entities(spark, [("a", day(5), 1)])
    expected = spark.createDataFrame([("a", day(5), 1, 2.0)], OUT)
    assert_df_equality(join(ents, feats), expected, ignore_row_order=True)


def test_fixed_known_time_cutoff(spark):
    feats = features(
        spark,
        [
            ("a", day(1), day(1), 1.0, 0.0),
            ("a", day(2), day(8), 2.0, 0.0),
        ],
    )
    ents = entities(spark, [("a", day(20), 1)])
    expected = spark.createDataFrame([("a", day(20), 1, 1.0)], OUT)
    assert_df_equality(join(ents, feats, known_at=day(7)), expected, ignore_row_order=True)


def test_unknown_entity_and_row_before_first_value_get_nulls(spark):
    ents = entities(spark, [("zzz", day(5), 1), ("a", day(1) - US, 2), (None, day(5), 3)])
    expected = spark.createDataFrame(
        [("zzz", day(5), 1, None), ("a", day(1) - US, 2, None), (None, day(5), 3, None)], OUT
    )
    assert_df_equality(join(ents, timeline(spark)), expected, ignore_row_order=True)


def test_duplicate_entity_rows_are_all_kept(spark):
    ents = entities(spark, [("a", day(6), 1), ("a", day(6), 1), ("a", day(6), 1)])
    expected = spark.createDataFrame([("a", day(6), 1, 5.0)] * 3, OUT)
    assert_df_equality(join(ents, timeline(spark)), expected, ignore_row_order=True)


def test_event_timestamp_of_the_chosen_row_can_be_returned(spark):
    ents = entities(spark, [("a", day(7), 1)])
    result = join(ents, timeline(spark), event_timestamp_output="x_event_ts")
    assert [tuple(r) for r in result.collect()] == [("a", day(7), 1, 5.0, day(5))]


def test_several_views_in_one_call(spark):
    source = SourceTable(layer="gold", table="daily")
    fast = FeatureView(
        name="fast",
        entity="customer",
        join_keys=["customer_id"],
        source=source,
        event_timestamp_column="event_ts",
        ttl="2d",
        features=[Feature(name="x", dtype="double")],
    )
    slow = FeatureView(
        name="slow",
        entity="customer",
        join_keys=["customer_id"],
        source=SourceTable(layer="gold", table="weekly"),
        event_timestamp_column="event_ts",
        features=[Feature(name="z", dtype="long")],
    )
    weekly = spark.createDataFrame(
        [("a", day(0), 100), ("b", day(3), 300)],
        "customer_id string, event_ts timestamp, z long",
    )
    daily = timeline(spark).drop("created_ts")
    ents = entities(spark, [("a", day(5.5), 1), ("a", day(8), 2), ("b", day(2), 3)])
    result = get_training_set(
        ents,
        ["fast:x", "slow:z"],
        views={"fast": fast, "slow": slow},
        sources={"gold/daily": daily, "gold/weekly": weekly},
        entity_timestamp_column="ts",
    )
    expected = spark.createDataFrame(
        [("a", day(5.5), 1, 5.0, 100), ("a", day(8), 2, None, 100), ("b", day(2), 3, None, None)],
        StructType([*OUT.fields, StructField("z", LongType())]),
    )
    assert_df_equality(result, expected, ignore_row_order=True)


def test_join_uses_every_key_column(spark):
    schema = "store string, sku string, event_ts timestamp, created_ts timestamp, x double"
    feats = spark.createDataFrame(
        [("s1", "k1", day(1), day(1), 1.0), ("s1", "k2", day(1), day(1), 2.0)], schema
    )
    ents = spark.createDataFrame([("s1", "k2", day(2))], "store string, sku string, ts timestamp")
    result = join(ents, feats, join_keys=["store", "sku"])
    assert [tuple(r) for r in result.collect()] == [("s1", "k2", day(2), 2.0)]


def test_missing_entity_columns_are_named(spark):
    ents = spark.createDataFrame([("a",)], "customer_id string")
    with pytest.raises(MissingColumnsError, match=r"entity rows: missing columns \['ts'\]"):
        join(ents, timeline(spark))


def test_key_types_must_match(spark):
    ents = spark.createDataFrame([(1, day(1), 1)], "customer_id long, ts timestamp, label long")
    with pytest.raises(FeatureViewError, match="customer_id \\(bigint vs string\\)"):
        join(ents, timeline(spark))


def test_known_time_filter_needs_created_column(spark):
    ents = entities(spark, [("a", day(5), 1)])
    with pytest.raises(FeatureViewError, match="created timestamp column"):
        join(ents, timeline(spark), created_timestamp_column=None, known_at="entity_time")


def _view(name, table, feature, created=None):
    return FeatureView(
        name=name,
        entity="customer",
        join_keys=["customer_id"],
        source=SourceTable(layer="gold", table=table),
        event_timestamp_column="event_ts",
        created_timestamp_column=created,
        features=[Feature(name=feature, dtype="double")],
    )


def test_same_feature_name_from_two_views_needs_full_feature_names(spark):
    views = {"v1": _view("v1", "t", "x"), "v2": _view("v2", "t", "x")}
    ents = entities(spark, [("a", day(5), 1)])
    with pytest.raises(FeatureViewError, match="full_feature_names=True"):
        get_training_set(
            ents, ["v1:x", "v2:x"], views=views, sources={}, entity_timestamp_column="ts"
        )


def test_known_time_filter_names_views_without_created_timestamps(spark):
    views = {"v1": _view("v1", "t", "x", created="created_ts"), "v2": _view("v2", "t", "y")}
    ents = entities(spark, [("a", day(5), 1)])
    with pytest.raises(FeatureViewError, match=r"views \['v2'\] declare no created_timestamp"):
        get_training_set(
            ents,
            ["v1:x", "v2:y"],
            views=views,
            sources={},
            entity_timestamp_column="ts",
            known_at="entity_time",
        )
