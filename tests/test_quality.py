"""Expectations engine: each rule type, each severity, every broken rule listed, table checks."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from chispa import assert_df_equality
from featurelake.lakehouse.quality import (
    Expectation,
    TableCheck,
    evaluate_table_checks,
    rule_failure_aggregates,
    rule_failure_counts,
    rule_passes,
    table_check_aggregates,
    validate,
    with_rule_failures,
)
from pydantic import ValidationError

AS_OF = datetime(2011, 12, 10, 0, 0, tzinfo=timezone.utc)
SCHEMA = "k int, customer_id string, quantity int, country string, invoice_date date"
ROWS = [
    (1, "17850", 6, "United Kingdom", date(2011, 12, 9)),
    (2, None, 0, "France", date(2011, 12, 9)),
    (3, "12583", 200, "Narnia", date(2012, 1, 1)),
    (4, "X1", None, None, None),
]


def _failed(spark, rules, rows=ROWS, schema=SCHEMA):
    """k -> _failed_rules for every row (as a frame)."""
    df = spark.createDataFrame(rows, schema)
    return with_rule_failures(df, rules, as_of=AS_OF).select("k", "_failed_rules")


def _expected(spark, pairs):
    return spark.createDataFrame(pairs, "k int, _failed_rules array<string>")


def _assert(got, expected):
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_not_null(spark):
    got = _failed(spark, [Expectation(type="not_null", column="customer_id")])
    _assert(got, _expected(spark, [(1, []), (2, ["not_null:customer_id"]), (3, []), (4, [])]))


def test_range_inclusive_and_null_passes(spark):
    got = _failed(spark, [Expectation(type="range", column="quantity", min=1, max=200)])
    _assert(got, _expected(spark, [(1, []), (2, ["range:quantity"]), (3, []), (4, [])]))


def test_allowed_values(spark):
    rule = Expectation(type="allowed_values", column="country", values=["United Kingdom", "France"])
    got = _failed(spark, [rule])
    _assert(got, _expected(spark, [(1, []), (2, []), (3, ["allowed_values:country"]), (4, [])]))


def test_regex_matches_the_whole_value(spark):
    got = _failed(spark, [Expectation(type="regex", column="customer_id", pattern="[0-9]+")])
    _assert(got, _expected(spark, [(1, []), (2, []), (3, []), (4, ["regex:customer_id"])]))


def test_expression_must_be_true_null_fails(spark):
    rule = Expectation(type="expression", name="big_order", expr="quantity < 100")
    got = _failed(spark, [rule])
    _assert(got, _expected(spark, [(1, []), (2, []), (3, ["big_order"]), (4, ["big_order"])]))


def test_not_future_compares_with_as_of(spark):
    got = _failed(spark, [Expectation(type="not_future", column="invoice_date")])
    _assert(got, _expected(spark, [(1, []), (2, []), (3, ["not_future:invoice_date"]), (4, [])]))


def test_unique_flags_every_row_sharing_a_value(spark):
    rows = [
        (1, "a", 1, "x", None),
        (2, "a", 1, "x", None),
        (3, "b", 1, "x", None),
        (4, None, 1, "x", None),
        (5, None, 1, "x", None),
    ]
    got = _failed(spark, [Expectation(type="unique", column="customer_id")], rows)
    _assert(
        got,
        _expected(
            spark,
            [(1, ["unique:customer_id"]), (2, ["unique:customer_id"]), (3, []), (4, []), (5, [])],
        ),
    )


def test_a_row_breaking_two_rules_lists_both_in_declaration_order(spark):
    rules = [
        Expectation(type="not_null", column="customer_id"),
        Expectation(type="expression", name="positive_quantity", expr="quantity > 0"),
        Expectation(type="not_null", column="country"),
    ]
    got = _failed(spark, rules)
    _assert(
        got,
        _expected(
            spark,
            [
                (1, []),
                (2, ["not_null:customer_id", "positive_quantity"]),
                (3, []),
                (4, ["positive_quantity", "not_null:country"]),
            ],
        ),
    )


def test_severities_go_to_their_own_columns(spark):
    rules = [
        Expectation(type="not_null", column="customer_id", severity="drop"),
        Expectation(type="not_null", column="country", severity="warn"),
        Expectation(type="not_future", column="invoice_date", severity="fail"),
    ]
    df = spark.createDataFrame(ROWS, SCHEMA)
    got = with_rule_failures(df, rules, as_of=AS_OF).select(
        "k", "_failed_rules", "_warned_rules", "_fatal_rules"
    )
    expected = spark.createDataFrame(
        [
            (1, [], [], []),
            (2, ["not_null:customer_id"], [], []),
            (3, [], [], ["not_future:invoice_date"]),
            (4, [], ["not_null:country"], []),
        ],
        "k int, _failed_rules array<string>, _warned_rules array<string>, "
        "_fatal_rules array<string>",
    )
    _assert(got, expected)


def test_existing_failures_are_kept_first(spark):
    df = spark.createDataFrame(
        [(1, None, ["parse:quantity"]), (2, "x", [])],
        "k int, customer_id string, _failed_rules array<string>",
    )
    got = with_rule_failures(df, [Expectation(type="not_null", column="customer_id")]).select(
        "k", "_failed_rules"
    )
    _assert(got, _expected(spark, [(1, ["parse:quantity", "not_null:customer_id"]), (2, [])]))


def test_scope_limits_checks_and_unique_counts(spark):
    df = spark.createDataFrame(
        [(1, "a", True), (2, "a", False), (3, "b", True), (4, "b", True)],
        "k int, customer_id string, keep boolean",
    )
    got = with_rule_failures(
        df, [Expectation(type="unique", column="customer_id")], scope=df["keep"]
    ).select("k", "_failed_rules")
    _assert(
        got,
        _expected(
            spark, [(1, []), (2, []), (3, ["unique:customer_id"]), (4, ["unique:customer_id"])]
        ),
    )


def test_validate_splits_drop_failures_into_quarantine_and_keeps_warned_rows(spark):
    rules = [
        Expectation(type="not_null", column="customer_id"),
        Expectation(type="not_null", column="country", severity="warn"),
    ]
    result = validate(spark.createDataFrame(ROWS, SCHEMA), rules, as_of=AS_OF)
    assert_df_equality(
        result.clean.select("k"),
        spark.createDataFrame([(1,), (3,), (4,)], "k int"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    _assert(
        result.quarantine.select("k", "_failed_rules"),
        _expected(spark, [(2, ["not_null:customer_id"])]),
    )


def test_rule_failure_counts_counts_rows_per_rule_including_zero(spark):
    rules = [
        Expectation(type="not_null", column="customer_id"),
        Expectation(type="expression", name="positive_quantity", expr="quantity > 0"),
        Expectation(type="not_null", column="k"),
        Expectation(type="not_null", column="country", severity="warn"),
    ]
    annotated = with_rule_failures(spark.createDataFrame(ROWS, SCHEMA), rules, as_of=AS_OF)
    row = (
        rule_failure_counts(annotated, [(r.rule, r.severity) for r in rules]).collect()[0].asDict()
    )
    assert row == {
        "rows": 4,
        "drop|not_null:customer_id": 1,
        "drop|positive_quantity": 2,
        "drop|not_null:k": 0,
        "warn|not_null:country": 1,
    }


def test_rule_failure_aggregates_count_only_the_rows_a_condition_selects(spark):
    rules = [
        Expectation(type="expression", name="positive_quantity", expr="quantity > 0"),
        Expectation(type="not_null", column="country", severity="warn"),
    ]
    annotated = with_rule_failures(spark.createDataFrame(ROWS, SCHEMA), rules, as_of=AS_OF)
    # k=2 (quantity 0) and k=4 (no quantity) break positive_quantity; only k=4 has no country.
    # k >= 2 selects both; k >= 4 selects row 4 alone.
    at_least_2, at_least_4 = (
        annotated.agg(*rule_failure_aggregates([(r.rule, r.severity) for r in rules], where=cond))
        .collect()[0]
        .asDict()
        for cond in (annotated["k"] >= 2, annotated["k"] >= 4)
    )
    assert at_least_2 == {"drop|positive_quantity": 2, "warn|not_null:country": 1}
    assert at_least_4 == {"drop|positive_quantity": 1, "warn|not_null:country": 1}


def test_table_checks_min_rows_and_null_rate(spark):
    checks = [
        TableCheck(type="min_rows", value=5, severity="fail"),
        TableCheck(type="max_null_rate", column="customer_id", value=0.25, severity="warn"),
        TableCheck(type="max_null_rate", column="country", value=0.2, severity="warn"),
    ]
    measured = (
        spark.createDataFrame(ROWS, SCHEMA)
        .agg(*table_check_aggregates(checks))
        .collect()[0]
        .asDict()
    )
    outcomes = evaluate_table_checks(checks, measured)
    # 4 rows < 5; customer_id 1/4 null = 25% <= 25%; country 1/4 = 25% > 20%
    assert [(o.rule, o.severity, o.passed, o.failed_count) for o in outcomes] == [
        ("min_rows", "fail", False, 1),
        ("max_null_rate:customer_id", "warn", True, 0),
        ("max_null_rate:country", "warn", False, 1),
    ]


def test_expectation_declaration_errors_name_the_missing_field():
    with pytest.raises(ValidationError, match="regex rule needs pattern"):
        Expectation(type="regex", column="x")
    with pytest.raises(ValidationError, match="expression rule needs name"):
        Expectation(type="expression", expr="a > 0")
    with pytest.raises(ValidationError, match="needs min or max"):
        Expectation(type="range", column="x")
    with pytest.raises(ValidationError):
        Expectation(type="not_null", column="x", severity="panic")


def test_check_constraints_are_the_rules_in_spark_sql(spark):
    from featurelake.lakehouse.quality import check_constraint

    rules = [
        Expectation(type="not_null", column="id"),
        Expectation(type="range", column="age", min=18, max=99),
        Expectation(type="allowed_values", column="sex", values=("M", "F")),
        Expectation(type="regex", column="code", pattern=r"C?[0-9]{2}\d"),
        Expectation(type="expression", name="sane", expr="age > 20 OR sex = 'F'"),
        Expectation(type="unique", column="id"),
        Expectation(type="not_future", column="at"),
    ]
    sql = {r.rule: check_constraint(r) for r in rules}
    assert sql["unique:id"] is None and sql["not_future:at"] is None
    assert sql["range:age"] == ("fl_range_age", "`age` IS NULL OR (`age` >= 18 AND `age` <= 99)")
    # Each constraint accepts exactly the rows rule_passes accepts (worked out by hand).
    rows = spark.createDataFrame(
        [
            (1, 30, "M", "C123", True),
            (None, 10, "X", "C12", False),
            (2, None, None, None, True),
            (3, 19, "F", "C12a", False),
        ],
        "id int, age int, sex string, code string, ok boolean",
    )
    for rule in rules[:5]:
        name, predicate = sql[rule.rule]
        by_sql = [r[0] for r in rows.selectExpr(f"coalesce({predicate}, true)").collect()]
        by_rule = [r[0] for r in rows.select(rule_passes(rule)).collect()]
        assert by_sql == by_rule, rule.rule
