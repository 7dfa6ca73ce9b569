"""As-of customer features: expected values worked out by hand on tiny transaction frames."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from featurelake.lakehouse.feature_library import MissingColumnsError
from featurelake.lakehouse.feature_library.customers import (
    as_of_points,
    as_of_timestamps,
    build_customer_features,
    customer_feature_columns,
    invoice_activity,
    with_avg_basket,
    with_cancellation_rate,
    with_recency_days,
    with_rfm_scores,
    with_tenure_days,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

WINDOWS = (30, 90, 365)
SILVER = (
    "invoice_no string, stock_code string, description string, quantity int, "
    "invoice_ts timestamp, invoice_date date, unit_price double, customer_id string, "
    "country string, is_cancellation boolean, line_amount double"
)
FEATURES = (
    "customer_id string, as_of_ts timestamp, as_of_date date, recency_days int, frequency long, "
    "monetary double, r_score int, f_score int, m_score int, rfm_score int, tenure_days int, "
    "avg_basket_value double, avg_basket_size double, distinct_products long, "
    "cancellation_rate double, spend_30d double, spend_90d double, spend_365d double, "
    "orders_30d long, orders_90d long, orders_365d long, country string"
)


def ts(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def eod(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, 999999, tzinfo=timezone.utc)


def line(
    invoice: str,
    stock: str,
    qty: int,
    at: datetime,
    customer: str | None,
    country: str,
    price: float,
) -> tuple:
    """A silver transaction line (derived columns filled in as silver defines them)."""
    return (
        invoice,
        stock,
        f"item {stock}",
        qty,
        at,
        at.date(),
        price,
        customer,
        country,
        invoice.startswith("C"),
        qty * price,
    )


# Customer A (UK): three purchases (1004 split over two minutes), one cancellation, and a
# purchase after the as-of date. Customer B: only a cancelled order. Customer C: one invoice in
# Spain, one in EIRE (a tie). One line without a customer id.
LINES = [
    line("1001", "X", 2, ts(2011, 1, 1, 10), "A", "United Kingdom", 5.0),
    line("1001", "Y", 1, ts(2011, 1, 1, 10), "A", "United Kingdom", 3.0),
    line("1002", "X", 1, ts(2011, 3, 1, 9), "A", "United Kingdom", 5.0),
    line("C1003", "X", -1, ts(2011, 3, 5, 12), "A", "United Kingdom", 5.0),
    line("1004", "Z", 4, ts(2011, 3, 20, 8, 0), "A", "United Kingdom", 2.0),
    line("1004", "W", 1, ts(2011, 3, 20, 8, 1), "A", "United Kingdom", 10.0),
    line("1005", "X", 100, ts(2011, 4, 2, 10), "A", "United Kingdom", 1.0),
    line("C2001", "X", -2, ts(2011, 2, 10, 11), "B", "France", 5.0),
    line("3001", "Q", 1, ts(2011, 3, 30, 10), "C", "Spain", 7.0),
    line("3002", "Q", 1, ts(2011, 3, 31, 11), "C", "EIRE", 7.0),
    line("4001", "X", 3, ts(2011, 3, 15, 10), None, "United Kingdom", 5.0),
]
AS_OF = date(2011, 3, 31)


@pytest.fixture(scope="module")
def transactions(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(LINES, SILVER)


def _features(spark: SparkSession, transactions: DataFrame, points: DataFrame) -> DataFrame:
    return build_customer_features(transactions, points, windows=WINDOWS, rfm_quantiles=5)


@pytest.fixture(scope="module")
def features_at_march_31(spark: SparkSession, transactions: DataFrame) -> list:
    points = as_of_points(spark, AS_OF, AS_OF)
    return _features(spark, transactions, points).orderBy("customer_id").collect()


# ------------------------------------------------------------------ as-of points


def test_as_of_points_are_ends_of_days_at_the_cadence(spark: SparkSession) -> None:
    out = as_of_points(spark, date(2011, 1, 1), date(2011, 1, 7), cadence_days=3)
    expected = spark.createDataFrame(
        [(eod(d), d) for d in (date(2011, 1, 1), date(2011, 1, 4), date(2011, 1, 7))],
        "as_of_ts timestamp, as_of_date date",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_as_of_points_reject_an_end_before_the_start(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="before snapshot start"):
        as_of_points(spark, date(2011, 1, 2), date(2011, 1, 1))


# ------------------------------------------------------------------ invoice activity


def test_invoice_activity_splits_invoices_by_timestamp_and_flags_first_products(
    spark: SparkSession, transactions: DataFrame
) -> None:
    out = invoice_activity(
        transactions.where(F.col("customer_id").isin("A", "C") | F.col("customer_id").isNull())
    )
    expected = spark.createDataFrame(
        [
            ("A", "1001", ts(2011, 1, 1, 10), False, 1, Decimal("13.0"), 3, 2, "United Kingdom"),
            ("A", "1002", ts(2011, 3, 1, 9), False, 1, Decimal("5.0"), 1, 0, "United Kingdom"),
            ("A", "C1003", ts(2011, 3, 5, 12), True, 1, Decimal("-5.0"), -1, 0, "United Kingdom"),
            ("A", "1004", ts(2011, 3, 20, 8, 0), False, 1, Decimal("8.0"), 4, 1, "United Kingdom"),
            ("A", "1004", ts(2011, 3, 20, 8, 1), False, 0, Decimal("10.0"), 1, 1, "United Kingdom"),
            ("A", "1005", ts(2011, 4, 2, 10), False, 1, Decimal("100.0"), 100, 0, "United Kingdom"),
            ("C", "3001", ts(2011, 3, 30, 10), False, 1, Decimal("7.0"), 1, 1, "Spain"),
            ("C", "3002", ts(2011, 3, 31, 11), False, 1, Decimal("7.0"), 1, 0, "EIRE"),
        ],
        "customer_id string, invoice_no string, invoice_ts timestamp, is_cancellation boolean, "
        "starts_invoice int, amount decimal(38,6), quantity long, new_products long, "
        "country string",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_invoice_activity_names_missing_columns(transactions: DataFrame) -> None:
    with pytest.raises(MissingColumnsError, match=r"missing columns \['line_amount'\]"):
        invoice_activity(transactions.drop("line_amount"))


# ------------------------------------------------------------------ full features as of a date


def test_customer_features_as_of_a_date(
    spark: SparkSession, transactions: DataFrame, features_at_march_31: list
) -> None:
    t = eod(AS_OF)
    expected = spark.createDataFrame(
        [
            # A: purchases 1001, 1002, 1004; net 13 + 5 - 5 + 8 + 10 = 31; last purchase
            # 03-20 08:01 (11 days 16 h before t), first 01-01 10:00 (89 days); basket
            # 36 / 3 and 9 / 3; products X Y Z W; 1 of 4 invoices cancelled; 30 days = Mar 2..31
            # (C1003 and 1004, not 1002 on Mar 1); 90 days = Jan 1..Mar 31 (everything).
            (
                "A",
                t,
                AS_OF,
                11,
                3,
                31.0,
                3,
                5,
                5,
                13,
                89,
                12.0,
                3.0,
                4,
                0.25,
                13.0,
                31.0,
                31.0,
                1,
                3,
                3,
                "United Kingdom",
            ),
            # B: only a cancelled order: no purchase -> null recency, tenure, basket, scores.
            (
                "B",
                t,
                AS_OF,
                None,
                0,
                -10.0,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                0,
                1.0,
                0.0,
                -10.0,
                -10.0,
                0,
                0,
                0,
                "France",
            ),
            # C: two purchases, one per country: the tie goes to the alphabetically first.
            (
                "C",
                t,
                AS_OF,
                0,
                2,
                14.0,
                5,
                3,
                3,
                11,
                1,
                7.0,
                1.0,
                1,
                0.0,
                14.0,
                14.0,
                14.0,
                2,
                2,
                2,
                "EIRE",
            ),
        ],
        FEATURES,
    )
    actual = spark.createDataFrame(features_at_march_31, FEATURES)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_customer_features_have_the_contract_columns(
    spark: SparkSession, transactions: DataFrame
) -> None:
    out = _features(spark, transactions, as_of_points(spark, AS_OF, AS_OF))
    assert out.columns == list(customer_feature_columns(WINDOWS))
    contract = spark.createDataFrame([], FEATURES).schema
    assert [(f.name, f.dataType) for f in out.schema] == [(f.name, f.dataType) for f in contract]


def test_a_transaction_after_the_as_of_time_is_ignored(
    spark: SparkSession, transactions: DataFrame, features_at_march_31: list
) -> None:
    without_later = transactions.where(F.col("invoice_ts") <= F.lit(eod(AS_OF)))
    points = as_of_points(spark, AS_OF, AS_OF)
    expected = _features(spark, without_later, points).orderBy("customer_id").collect()
    assert features_at_march_31 == expected


def test_as_of_a_timestamp_sees_only_the_lines_up_to_it(
    spark: SparkSession, transactions: DataFrame
) -> None:
    # 08:00:30 is between the two lines of invoice 1004: its first line counts, W does not.
    t = ts(2011, 3, 20, 8, 0, 30)
    out = _features(spark, transactions.where("customer_id = 'A'"), as_of_timestamps(spark, [t]))
    row = out.select(
        "frequency", "monetary", "distinct_products", "recency_days", "orders_30d"
    ).first()
    assert row is not None
    assert tuple(row) == (3, 21.0, 3, 0, 2)


def test_snapshots_have_one_row_per_customer_seen_by_each_date(
    spark: SparkSession, transactions: DataFrame
) -> None:
    points = as_of_points(spark, date(2011, 1, 1), date(2011, 3, 31), cadence_days=45)
    out = _features(spark, transactions, points).select(
        "customer_id", "as_of_date", "frequency", "spend_30d", "orders_30d"
    )
    expected = spark.createDataFrame(
        [
            ("A", date(2011, 1, 1), 1, 13.0, 1),
            ("A", date(2011, 2, 15), 1, 0.0, 0),  # no purchase in the window: 0, not null
            ("B", date(2011, 2, 15), 0, -10.0, 0),  # B appears once it has a transaction
        ],
        "customer_id string, as_of_date date, frequency long, spend_30d double, orders_30d long",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_aggregation_rejects_non_positive_windows(
    spark: SparkSession, transactions: DataFrame
) -> None:
    with pytest.raises(ValueError, match="positive numbers of days"):
        build_customer_features(
            transactions, as_of_points(spark, AS_OF, AS_OF), windows=(0, 30), rfm_quantiles=5
        )


# ------------------------------------------------------------------ derived features


def test_recency_days_counts_whole_days_and_keeps_null(spark: SparkSession) -> None:
    schema = "id int, as_of_ts timestamp, last_purchase_ts timestamp"
    df = spark.createDataFrame(
        [
            (1, eod(date(2011, 1, 10)), ts(2011, 1, 3, 10)),  # 7 days 14 h
            (2, ts(2011, 1, 10, 9), ts(2011, 1, 9, 10)),  # 23 h -> 0
            (3, ts(2011, 1, 10, 9), ts(2011, 1, 9, 9)),  # exactly one day
            (4, ts(2011, 1, 10, 9), None),
        ],
        schema,
    )
    out = with_recency_days(df).select("id", "recency_days")
    expected = spark.createDataFrame(
        [(1, 7), (2, 0), (3, 1), (4, None)], "id int, recency_days int"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_tenure_days_counts_whole_days_since_first_purchase(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, eod(date(2011, 3, 31)), ts(2011, 1, 1, 10)), (2, eod(date(2011, 3, 31)), None)],
        "id int, as_of_ts timestamp, first_purchase_ts timestamp",
    )
    out = with_tenure_days(df).select("id", "tenure_days")
    expected = spark.createDataFrame([(1, 89), (2, None)], "id int, tenure_days int")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_avg_basket_is_per_purchase_and_null_without_one(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, 2, 15.0, 3), (2, 0, 0.0, 0)],
        "id int, frequency long, purchase_amount double, purchase_quantity long",
    )
    out = with_avg_basket(df).select("id", "avg_basket_value", "avg_basket_size")
    expected = spark.createDataFrame(
        [(1, 7.5, 1.5), (2, None, None)], "id int, avg_basket_value double, avg_basket_size double"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_cancellation_rate_handles_all_cancelled_and_no_invoice(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, 1, 4), (2, 2, 2), (3, 0, 0)], "id int, cancelled_invoices long, invoices long"
    )
    out = with_cancellation_rate(df).select("id", "cancellation_rate")
    expected = spark.createDataFrame(
        [(1, 0.25), (2, 1.0), (3, None)], "id int, cancellation_rate double"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


RFM_IN = "customer_id string, as_of_ts timestamp, recency_days int, frequency long, monetary double"
RFM_ROWS = [
    ("A", eod(AS_OF), 1, 5, 100.0),
    ("B", eod(AS_OF), 10, 1, 50.0),
    ("C", eod(AS_OF), 10, 1, 20.0),
    ("D", eod(AS_OF), 30, 2, -5.0),
    ("E", eod(AS_OF), 2, 3, 50.0),
    ("Z", eod(AS_OF), None, 0, -10.0),  # no purchase: unscored, not counted
    ("A", eod(date(2011, 1, 1)), 0, 1, 10.0),  # alone at another as-of point
]


def test_rfm_scores_are_quintiles_with_shared_scores_for_ties(spark: SparkSession) -> None:
    out = with_rfm_scores(spark.createDataFrame(RFM_ROWS, RFM_IN), 5).select(
        "customer_id", "as_of_ts", "r_score", "f_score", "m_score", "rfm_score"
    )
    # score = ceil(5 k / n), k = customers no better (ties included), n = 5 scored customers.
    # recency worst->best: D(k1) B,C(k3) E(k4) A(k5); frequency: B,C(k2) D(k3) E(k4) A(k5);
    # monetary: D(k1) C(k2) B,E(k4) A(k5). A alone on Jan 1: k = n = 1 -> 5.
    expected = spark.createDataFrame(
        [
            ("A", eod(AS_OF), 5, 5, 5, 15),
            ("B", eod(AS_OF), 3, 2, 4, 9),
            ("C", eod(AS_OF), 3, 2, 2, 7),
            ("D", eod(AS_OF), 1, 3, 1, 5),
            ("E", eod(AS_OF), 4, 4, 4, 12),
            ("Z", eod(AS_OF), None, None, None, None),
            ("A", eod(date(2011, 1, 1)), 5, 5, 5, 15),
        ],
        "customer_id string, as_of_ts timestamp, r_score int, f_score int, m_score int, "
        "rfm_score int",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_rfm_scores_follow_the_configured_number_of_quantiles(spark: SparkSession) -> None:
    df = spark.createDataFrame(RFM_ROWS[:5], RFM_IN)
    out = with_rfm_scores(df, 3).select("customer_id", "r_score")
    # ceil(3 k / 5): D k1 -> 1, B and C k3 -> 2, E k4 -> 3, A k5 -> 3.
    expected = spark.createDataFrame(
        [("A", 3), ("B", 2), ("C", 2), ("D", 1), ("E", 3)], "customer_id string, r_score int"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_rfm_scores_reject_zero_quantiles(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="quantiles must be >= 1"):
        with_rfm_scores(spark.createDataFrame(RFM_ROWS, RFM_IN), 0)
