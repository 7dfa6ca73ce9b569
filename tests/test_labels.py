"""Churn labels on a hand-built purchase timeline; expected labels worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from chispa import assert_df_equality
from featurelake.feature_store.labels import observed_labels, with_churn_label
from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

D = datetime(2011, 1, 1)
US = timedelta(microseconds=1)
ENTITY = StructType([StructField("customer_id", StringType()), StructField("ts", TimestampType())])
OUT = StructType(
    [
        *ENTITY.fields,
        StructField("churned", IntegerType()),
        StructField("label_status", StringType()),
    ]
)


def same(result, expected):
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def day(n: float) -> datetime:
    return D + timedelta(days=n)


@pytest.fixture(scope="module")
def transactions(spark):
    # c1 buys on day 10, cancels on day 20; zz buys on day 100 (the data end); an anonymous
    # line on day 50 never counts.
    return spark.createDataFrame(
        [
            ("c1", day(10), False),
            ("c1", day(20), True),
            ("zz", day(100), False),
            (None, day(50), False),
        ],
        "customer_id string, invoice_ts timestamp, is_cancellation boolean",
    )


def label(spark, transactions, rows, **kwargs):
    entity_df = spark.createDataFrame(rows, ENTITY)
    return with_churn_label(
        entity_df, transactions, horizon_days=7, entity_timestamp_column="ts", **kwargs
    )


def test_purchase_inside_the_window_means_not_churned_and_its_edges(spark, transactions):
    # Window (t, t + 7d]: t = day 3 includes day 10; t = day 3 - 1us ends just before it.
    rows = [("c1", day(3)), ("c1", day(3) - US)]
    expected = spark.createDataFrame(
        [("c1", day(3), 0, "observed"), ("c1", day(3) - US, 1, "observed")], OUT
    )
    same(label(spark, transactions, rows), expected)


def test_purchase_at_exactly_t_is_not_in_the_label_window(spark, transactions):
    expected = spark.createDataFrame([("c1", day(10), 1, "observed")], OUT)
    result = label(spark, transactions, [("c1", day(10))])
    same(result, expected)


def test_cancellations_are_not_purchases(spark, transactions):
    expected = spark.createDataFrame([("c1", day(15), 1, "observed")], OUT)
    result = label(spark, transactions, [("c1", day(15))])
    same(result, expected)


def test_window_past_the_data_end_is_censored_not_churned(spark, transactions):
    # Data end = day 100. t = day 93: window ends exactly at the end, observed. t = day 93.5:
    # half a day unobserved and no purchase seen, so unknown. zz bought on day 100: proven 0.
    rows = [("c1", day(93)), ("c1", day(93.5)), ("zz", day(95))]
    expected = spark.createDataFrame(
        [
            ("c1", day(93), 1, "observed"),
            ("c1", day(93.5), None, "censored"),
            ("zz", day(95), 0, "observed"),
        ],
        OUT,
    )
    same(label(spark, transactions, rows), expected)


def test_explicit_data_end(spark, transactions):
    expected = spark.createDataFrame([("c1", day(40), None, "censored")], OUT)
    result = label(spark, transactions, [("c1", day(40))], data_end=day(45))
    same(result, expected)


def test_every_entity_row_is_kept_and_observed_labels_drops_censored(spark, transactions):
    rows = [("c1", day(3)), ("c1", day(3)), ("nobody", day(30)), ("c1", day(99))]
    result = label(spark, transactions, rows)
    expected = spark.createDataFrame(
        [
            ("c1", day(3), 0, "observed"),
            ("c1", day(3), 0, "observed"),
            ("nobody", day(30), 1, "observed"),
        ],
        OUT,
    )
    assert result.count() == 4
    same(observed_labels(result), expected)


def test_horizon_must_be_positive(spark, transactions):
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        with_churn_label(
            spark.createDataFrame([("c1", day(3))], ENTITY),
            transactions,
            horizon_days=0,
            entity_timestamp_column="ts",
        )
