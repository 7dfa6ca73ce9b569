"""Credit-client feature functions: expected values worked out by hand."""

from __future__ import annotations

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from featurelake.lakehouse.feature_library import MissingColumnsError
from featurelake.lakehouse.feature_library.credit import (
    CREDIT_FEATURE_COLUMNS,
    age_bin_labels,
    build_credit_features,
    select_credit_features,
    select_credit_labels,
    with_age_bin,
    with_avg_utilization,
    with_bill_trend,
    with_delinquent_months,
    with_pay_ratios,
    with_utilizations,
    with_worst_delay,
)
from pyspark.sql import DataFrame, SparkSession

MONTHS = range(1, 7)


def _cols(prefix: str, kind: str) -> str:
    return ", ".join(f"{prefix}_{k} {kind}" for k in MONTHS)


def _frame(spark: SparkSession, rows: list[tuple], schema: str) -> DataFrame:
    return spark.createDataFrame(rows, schema)


# ------------------------------------------------------------------ age bins


def test_age_bin_labels_follow_edges() -> None:
    assert age_bin_labels([18, 26, 36]) == ["<18", "18-25", "26-35", "36+"]


def test_age_bin_labels_reject_unsorted_edges() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        age_bin_labels([26, 18])


def test_with_age_bin_assigns_bins_at_edges_and_keeps_null(spark: SparkSession) -> None:
    df = _frame(
        spark,
        [(1, 17), (2, 18), (3, 25), (4, 26), (5, 35), (6, 36), (7, 79), (8, None)],
        "id long, age int",
    )
    expected = _frame(
        spark,
        [
            (1, 17, "<18"),
            (2, 18, "18-25"),
            (3, 25, "18-25"),
            (4, 26, "26-35"),
            (5, 35, "26-35"),
            (6, 36, "36+"),
            (7, 79, "36+"),
            (8, None, None),
        ],
        "id long, age int, age_bin string",
    )
    assert_df_equality(
        with_age_bin(df, [18, 26, 36]), expected, ignore_row_order=True, ignore_nullable=True
    )


# ------------------------------------------------------------------ bill trend

BILL_SCHEMA = f"id long, {_cols('bill_amt', 'double')}"


def _trend(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return with_bill_trend(_frame(spark, rows, BILL_SCHEMA)).select("id", "bill_trend")


def test_bill_trend_is_positive_when_bills_rise_toward_the_recent_month(
    spark: SparkSession,
) -> None:
    # bill_amt_1 is the most recent month: 6, 5, ..., 1 rises by 1 per month toward it.
    out = _trend(spark, [(1, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0), (2, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)])
    expected = _frame(spark, [(1, 1.0), (2, -1.0)], "id long, bill_trend double")
    assert_approx_df_equality(out, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_bill_trend_is_zero_for_flat_bills(spark: SparkSession) -> None:
    out = _trend(spark, [(1, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0)])
    expected = _frame(spark, [(1, 0.0)], "id long, bill_trend double")
    assert_approx_df_equality(out, expected, 1e-9, ignore_nullable=True)


def test_bill_trend_is_least_squares_slope_of_a_single_spike(spark: SparkSession) -> None:
    # x = 5 for month 1, mean x = 2.5, sum (x - 2.5)^2 = 17.5: slope = 2.5 * 10 / 17.5.
    out = _trend(spark, [(1, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0)])
    expected = _frame(spark, [(1, 25.0 / 17.5)], "id long, bill_trend double")
    assert_approx_df_equality(out, expected, 1e-9, ignore_nullable=True)


def test_bill_trend_is_null_when_a_bill_is_null(spark: SparkSession) -> None:
    out = _trend(spark, [(1, 1.0, None, 3.0, 4.0, 5.0, 6.0)])
    expected = _frame(spark, [(1, None)], "id long, bill_trend double")
    assert_df_equality(out, expected, ignore_nullable=True)


# ------------------------------------------------------------------ pay ratios

PAY_SCHEMA = f"id long, {_cols('bill_amt', 'double')}, {_cols('pay_amt', 'double')}"
RATIO_SCHEMA = f"id long, {_cols('pay_ratio', 'double')}"
# month:        1      2     3      4      5     6
BILLS = (100.0, 0.0, -20.0, 200.0, None, 100.0)
PAYS = (50.0, 30.0, 0.0, 300.0, 10.0, None)


def _ratios(spark: SparkSession, zero_bill_ratio: float) -> DataFrame:
    df = _frame(spark, [(1, *BILLS, *PAYS)], PAY_SCHEMA)
    return with_pay_ratios(df, zero_bill_ratio).select("id", *[f"pay_ratio_{k}" for k in MONTHS])


def test_pay_ratios_cover_positive_zero_negative_and_null_bills(spark: SparkSession) -> None:
    # 50/100; zero bill -> 1.0; negative bill -> 1.0; 300/200 (not capped); null bill; null pay.
    expected = _frame(spark, [(1, 0.5, 1.0, 1.0, 1.5, None, None)], RATIO_SCHEMA)
    assert_df_equality(_ratios(spark, 1.0), expected, ignore_nullable=True)


def test_pay_ratio_for_zero_bills_comes_from_config(spark: SparkSession) -> None:
    expected = _frame(spark, [(1, 0.5, 0.0, 0.0, 1.5, None, None)], RATIO_SCHEMA)
    assert_df_equality(_ratios(spark, 0.0), expected, ignore_nullable=True)


# ------------------------------------------------------------------ utilisation

UTIL_IN = f"id long, limit_bal double, {_cols('bill_amt', 'double')}"
UTIL_OUT = f"id long, {_cols('utilization', 'double')}"


def test_utilizations_divide_bills_by_limit(spark: SparkSession) -> None:
    df = _frame(spark, [(1, 1000.0, 500.0, 0.0, -100.0, 1000.0, None, 2000.0)], UTIL_IN)
    out = with_utilizations(df).select("id", *[f"utilization_{k}" for k in MONTHS])
    expected = _frame(spark, [(1, 0.5, 0.0, -0.1, 1.0, None, 2.0)], UTIL_OUT)
    assert_approx_df_equality(out, expected, 1e-12, ignore_nullable=True)


def test_utilizations_are_null_for_zero_or_null_limit(spark: SparkSession) -> None:
    df = _frame(
        spark,
        [(1, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0), (2, None, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0)],
        UTIL_IN,
    )
    out = with_utilizations(df).select("id", *[f"utilization_{k}" for k in MONTHS])
    expected = _frame(spark, [(1, *[None] * 6), (2, *[None] * 6)], UTIL_OUT)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_avg_utilization_averages_non_null_months(spark: SparkSession) -> None:
    df = _frame(spark, [(1, 0.5, 0.0, -0.1, 1.0, None, 2.0), (2, *[None] * 6)], UTIL_OUT)
    out = with_avg_utilization(df).select("id", "avg_utilization")
    # (0.5 + 0 - 0.1 + 1 + 2) / 5 non-null months; all null -> null.
    expected = _frame(spark, [(1, 0.68), (2, None)], "id long, avg_utilization double")
    assert_approx_df_equality(out, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


# ------------------------------------------------------------------ delinquency

STATUS_SCHEMA = f"id long, {_cols('pay_status', 'int')}"
STATUS_ROWS = [
    (1, -2, -1, 0, 1, 2, 0),  # two late months, worst 2
    (2, -1, -2, -1, -1, -2, -2),  # never late: 0 months, worst floored at 0
    (3, None, 3, None, -1, None, None),  # nulls ignored
    (4, None, None, None, None, None, None),  # nothing known
]


def test_delinquent_months_counts_positive_statuses(spark: SparkSession) -> None:
    out = with_delinquent_months(_frame(spark, STATUS_ROWS, STATUS_SCHEMA)).select(
        "id", "delinquent_months"
    )
    expected = _frame(spark, [(1, 2), (2, 0), (3, 1), (4, None)], "id long, delinquent_months int")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_worst_delay_is_max_status_floored_at_zero(spark: SparkSession) -> None:
    out = with_worst_delay(_frame(spark, STATUS_ROWS, STATUS_SCHEMA)).select("id", "worst_delay")
    expected = _frame(spark, [(1, 2), (2, 0), (3, 3), (4, None)], "id long, worst_delay int")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


# ------------------------------------------------------------------ assembly and label split

SILVER_SCHEMA = (
    "id long, limit_bal double, sex int, education int, marriage int, age int, "
    f"{_cols('pay_status', 'int')}, {_cols('bill_amt', 'double')}, {_cols('pay_amt', 'double')}, "
    "default_next_month int"
)


def _silver(spark: SparkSession) -> DataFrame:
    return _frame(
        spark,
        [
            (
                7,
                1000.0,
                2,
                1,
                1,
                30,
                1,
                0,
                0,
                0,
                0,
                0,
                600.0,
                500.0,
                400.0,
                300.0,
                200.0,
                100.0,
                300.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                1,
            )
        ],
        SILVER_SCHEMA,
    )


def test_build_credit_features_computes_every_feature(spark: SparkSession) -> None:
    out = build_credit_features(_silver(spark), age_bin_edges=[18, 26, 36], zero_bill_pay_ratio=1.0)
    row = select_credit_features(out).first()
    assert row is not None
    assert (row["age_bin"], row["delinquent_months"], row["worst_delay"]) == ("26-35", 1, 1)
    assert row["bill_trend"] == pytest.approx(100.0)  # rises 100 per month toward month 1
    assert row["pay_ratio_1"] == pytest.approx(0.5) and row["pay_ratio_2"] == pytest.approx(0.0)
    assert row["utilization_1"] == pytest.approx(0.6)
    assert row["avg_utilization"] == pytest.approx(0.35)  # (0.6+0.5+0.4+0.3+0.2+0.1)/6


def test_credit_features_keep_the_label_apart(spark: SparkSession) -> None:
    out = build_credit_features(_silver(spark), age_bin_edges=[18], zero_bill_pay_ratio=1.0)
    features = select_credit_features(out)
    assert features.columns == list(CREDIT_FEATURE_COLUMNS)
    assert "default_next_month" not in features.columns
    expected = _frame(spark, [(7, 1)], "id long, default_next_month int")
    assert_df_equality(select_credit_labels(_silver(spark)), expected, ignore_nullable=True)


def test_build_credit_features_names_missing_columns(spark: SparkSession) -> None:
    df = _silver(spark).drop("bill_amt_3", "limit_bal")
    with pytest.raises(MissingColumnsError, match=r"missing columns \['limit_bal', 'bill_amt_3'\]"):
        build_credit_features(df, age_bin_edges=[18], zero_bill_pay_ratio=1.0)
