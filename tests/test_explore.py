"""Notebook helpers: drift and segment profiles against hand-computed values."""

from __future__ import annotations

import math

import pytest
from featurelake.devtools.explore import describe_features, feature_drift, segment_profile


def test_psi_of_identical_snapshots_is_zero(spark):
    df = spark.createDataFrame([(float(v),) for v in range(100)], "x double")
    _, psi = feature_drift(df, df, "x", bins=4)
    assert psi == pytest.approx(0.0)


def test_psi_matches_a_hand_computation(spark):
    # before: 0..99 -> quartile edges near 24, 49, 74: four bins of 25% each.
    before = spark.createDataFrame([(float(v),) for v in range(100)], "x double")
    # after: 50 rows in the lowest bin, 50 in the highest.
    after = spark.createDataFrame([(0.0,)] * 50 + [(99.0,)] * 50, "x double")
    table, psi = feature_drift(before, after, "x", bins=4)
    assert list(table["before"]) == [0.25, 0.25, 0.25, 0.25]
    assert list(table["after"]) == [0.5, 0.0, 0.0, 0.5]
    term_full = (0.5 - 0.25) * math.log(0.5 / 0.25)
    term_empty = (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    assert psi == pytest.approx(2 * term_full + 2 * term_empty)


def test_segment_profile_sizes_shares_and_means(spark):
    segments = spark.createDataFrame(
        [("a", 0, "high-value"), ("b", 0, "high-value"), ("c", 1, "new")],
        "cid string, segment_id int, segment_name string",
    )
    features = spark.createDataFrame(
        [("a", 10.0), ("b", 30.0), ("c", 5.0), ("d", 99.0)], "cid string, monetary double"
    )
    profile = segment_profile(segments, features, "cid", ["monetary"])
    assert profile[["segment_id", "segment_name", "size"]].values.tolist() == [
        [0, "high-value", 2],
        [1, "new", 1],
    ]
    assert profile["share"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert profile["monetary"].tolist() == [20.0, 5.0]


def test_describe_features_rows_are_columns(spark):
    df = spark.createDataFrame([(1.0, 10.0), (3.0, 30.0)], "a double, b double")
    stats = describe_features(df, ["a", "b"])
    assert stats.loc["a", "mean"] == 2.0 and stats.loc["b", "max"] == 30.0
    assert stats.loc["b", "count"] == 2
