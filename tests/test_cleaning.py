"""Cleaning steps and strict parsers: hand-worked values on tiny inline frames."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from featurelake.lakehouse.cleaning import (
    ColumnSpec,
    apply_cleaning,
    collapse_whitespace,
    normalize_codes,
    parse_boolean,
    parse_date,
    parse_double,
    parse_int,
    parse_long,
    parse_timestamp,
    strip_zero_decimal,
    trim_to_null,
    with_derived_columns,
    with_parsed_columns,
)
from pydantic import ValidationError
from pyspark.sql import functions as F


def _check(spark, rows, out_type, fn):
    df = spark.createDataFrame(rows, f"v string, e {out_type}")
    got = df.select("v", fn(F.col("v")).cast(out_type).alias("x"))
    expected = df.select("v", F.col("e").alias("x"))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_trim_to_null_trims_and_nulls_blanks(spark):
    _check(
        spark,
        [("  a b ", "a b"), ("", None), ("   ", None), (None, None), ("x", "x")],
        "string",
        trim_to_null,
    )


def test_collapse_whitespace(spark):
    _check(
        spark,
        [
            ("RED  HEART\tT-LIGHT", "RED HEART T-LIGHT"),
            ("one", "one"),
            ("one two", "one two"),  # a single space stays
            (None, None),
            ("", ""),
            # each whitespace character of the class alone, and runs mixing them
            ("a\tb", "a b"),
            ("a\nb", "a b"),
            ("a\x0bb", "a b"),  # vertical tab
            ("a\fb", "a b"),
            ("a\rb", "a b"),
            ("a \r\n b", "a b"),
            ("   ", " "),
            (" lead and trail ", " lead and trail "),
            ("\u00a0nbsp", "\u00a0nbsp"),  # not ASCII whitespace: the regex leaves it
        ],
        "string",
        collapse_whitespace,
    )


def test_strip_zero_decimal_only_drops_zero_fractions(spark):
    _check(
        spark,
        [
            ("17850.0", "17850"),
            ("17850", "17850"),
            ("17850.00", "17850"),
            ("17850.5", "17850.5"),
            ("A1.0", "A1.0"),
            (None, None),
        ],
        "string",
        strip_zero_decimal,
    )


def test_apply_cleaning_runs_steps_in_order(spark):
    _check(
        spark,
        [("  c536379 ", "C536379"), ("  ", None)],
        "string",
        lambda c: apply_cleaning(c, ["trim", "upper"]),
    )


def test_apply_cleaning_rejects_unknown_step(spark):
    with pytest.raises(ValueError, match="unknown cleaning step 'shout'.*known steps"):
        apply_cleaning(F.col("v"), ["trim", "shout"])


def test_normalize_codes_maps_listed_values_only(spark):
    df = spark.createDataFrame(
        [(0, 4), (5, 4), (6, 4), (1, 1), (4, 4), (None, None)], "v int, e int"
    )
    got = df.select("v", normalize_codes(F.col("v"), {0: 4, 5: 4, 6: 4}).alias("x"))
    assert_df_equality(
        got, df.select("v", F.col("e").alias("x")), ignore_row_order=True, ignore_nullable=True
    )


def test_parse_int_is_strict(spark):
    _check(
        spark,
        [
            ("6", 6),
            ("-12", -12),
            ("+3", 3),
            ("6.0", None),
            ("abc", None),
            ("1e3", None),
            ("99999999999", None),
            (None, None),
        ],
        "int",
        parse_int,
    )


def test_parse_long_accepts_large_values(spark):
    _check(spark, [("99999999999", 99999999999), ("7.5", None)], "long", parse_long)


def test_parse_double_rejects_numbers_a_double_cannot_hold(spark):
    # 1e400 would become Infinity and 1e-400 zero: another value, so not a parse.
    got = {
        r["v"]: r["x"]
        for r in spark.createDataFrame(
            [
                ("1e400",),
                ("-1e400",),
                ("1e-400",),
                ("1.7976931348623157e308",),
                ("-0",),
                ("0e400",),
                ("0.000",),
                ("4.9e-324",),
                ("2e308",),
            ],
            "v string",
        )
        .select("v", parse_double(F.col("v")).alias("x"))
        .collect()
    }
    assert got["1e400"] is None and got["-1e400"] is None and got["2e308"] is None
    assert got["1e-400"] is None
    assert got["1.7976931348623157e308"] == 1.7976931348623157e308
    assert got["4.9e-324"] == 5e-324  # the smallest subnormal: a value, not zero
    assert got["0e400"] == 0.0 and got["0.000"] == 0.0
    assert got["-0"] == 0.0 and str(got["-0"]) == "-0.0"


def test_parse_double_accepts_decimals_and_exponents_only(spark):
    _check(
        spark,
        [
            ("2.55", 2.55),
            ("-11062.06", -11062.06),
            ("1.00E+05", 100000.0),
            (".5", 0.5),
            ("NaN", None),
            ("Infinity", None),
            ("abc", None),
            ("1,5", None),
            (None, None),
        ],
        "double",
        parse_double,
    )


def test_numbers_followed_by_a_line_end_are_not_numbers(spark):
    # Java's $ matches before a final line terminator and the casts drop it: "12\n" was 12
    # while "\n12" was null (found by tests/test_fuzz_cleaning.py).
    rows = spark.createDataFrame([("12\n",), ("12\r\n",), ("2.5\r",), ("1e5\n",)], "v string")
    got = rows.select(
        parse_int(F.col("v")).alias("i"),
        parse_long(F.col("v")).alias("l"),
        parse_double(F.col("v")).alias("d"),
    ).collect()
    assert [tuple(r) for r in got] == [(None, None, None)] * 4


def test_strip_zero_decimal_leaves_a_value_with_a_line_end_as_it_is(spark):
    _check(spark, [("17850.0\n", "17850.0\n"), ("17850.0", "17850")], "string", strip_zero_decimal)


def test_parse_boolean(spark):
    _check(
        spark,
        [
            ("true", True),
            ("Y", True),
            ("1", True),
            ("no", False),
            ("F", False),
            ("maybe", None),
            (None, None),
        ],
        "boolean",
        parse_boolean,
    )


def test_parse_date_rejects_impossible_dates(spark):
    _check(
        spark,
        [
            ("2011-12-09", date(2011, 12, 9)),
            ("2011-02-30", None),
            ("2011-13-01", None),
            ("09/12/2011", None),
        ],
        "date",
        lambda c: parse_date(c, "yyyy-MM-dd"),
    )


def test_years_outside_1_to_9999_are_not_dates_or_timestamps(spark):
    # Spark reads yyyy as a proleptic year: year 0 is 1 BC, "-2010" is 2011 BC; no Python
    # datetime holds them (found by tests/test_fuzz_cleaning.py).
    texts = [
        "0000-01-01 00:00:00",
        "-2010-12-01 08:26:00",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59",
    ]
    df = spark.createDataFrame([(t, t.rsplit(" ", 1)[0]) for t in texts], "ts string, d string")
    got = df.select(
        F.unix_micros(parse_timestamp(F.col("ts"), "yyyy-MM-dd HH:mm:ss")).alias("micros"),
        F.unix_date(parse_date(F.col("d"), "yyyy-MM-dd")).alias("days"),
    ).collect()
    # 0001-01-01 is 719162 days before 1970-01-01; 9999-12-31 is 2932896 days after it.
    assert [tuple(r) for r in got] == [
        (None, None),
        (None, None),
        (-719162 * 86400 * 10**6, -719162),
        ((2932896 * 86400 + 23 * 3600 + 59 * 60 + 59) * 10**6, 2932896),
    ]


def test_parse_timestamp_with_pattern(spark):
    _check(
        spark,
        [
            ("2010-12-01 08:26:00", datetime(2010, 12, 1, 8, 26)),
            ("2010-12-01 25:00:00", None),
            ("yesterday", None),
        ],
        "timestamp",
        lambda c: parse_timestamp(c, "yyyy-MM-dd HH:mm:ss"),
    )


def test_with_parsed_columns_records_every_parse_failure(spark):
    bronze = spark.createDataFrame(
        [(" 6 ", "2.55", " 17850.0 "), ("abc", "x", ""), ("", "1.0", None)],
        "qty string, price string, cust string",
    )
    specs = [
        ColumnSpec(name="quantity", source="qty", type="int"),
        ColumnSpec(name="unit_price", source="price", type="double"),
        ColumnSpec(
            name="customer_id", source="cust", type="string", clean=["trim", "strip_zero_decimal"]
        ),
    ]
    got = bronze.transform(with_parsed_columns, specs).select(
        "quantity", "unit_price", "customer_id", "_parse_errors"
    )
    expected = spark.createDataFrame(
        [
            (6, 2.55, "17850", []),
            (None, None, None, ["parse:quantity", "parse:unit_price"]),
            (None, 1.0, None, []),
        ],  # blank is missing, not unparseable: not_null rules judge it
        "quantity int, unit_price double, customer_id string, _parse_errors array<string>",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_with_parsed_columns_reads_a_raw_struct_with_dotted_names(spark):
    bronze = spark.createDataFrame([("1",), ("0",)], "`default.payment.next.month` string")
    raw = bronze.select(F.struct(*[F.col(f"`{c}`") for c in bronze.columns]).alias("_raw"))
    spec = ColumnSpec(name="default_next_month", source="default.payment.next.month", type="int")
    got = raw.transform(with_parsed_columns, [spec], raw="_raw").select("default_next_month")
    expected = spark.createDataFrame([(1,), (0,)], "default_next_month int")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_with_parsed_columns_normalizes_after_parsing(spark):
    bronze = spark.createDataFrame([("0",), ("5",), ("2",), ("x",)], "EDUCATION string")
    spec = ColumnSpec(
        name="education", source="EDUCATION", type="int", normalize={0: 4, 5: 4, 6: 4}
    )
    got = bronze.transform(with_parsed_columns, [spec]).select("education", "_parse_errors")
    expected = spark.createDataFrame(
        [(4, []), (4, []), (2, []), (None, ["parse:education"])],
        "education int, _parse_errors array<string>",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_with_derived_columns_in_declaration_order(spark):
    df = spark.createDataFrame(
        [("C536379", -2, 2.5), ("536365", 6, 3.39)],
        "invoice_no string, quantity int, unit_price double",
    )
    specs = [
        ColumnSpec(name="is_cancellation", expr="startswith(invoice_no, 'C')", type="boolean"),
        ColumnSpec(name="line_amount", expr="quantity * unit_price", type="double"),
        ColumnSpec(name="refund", expr="is_cancellation AND line_amount < 0", type="boolean"),
    ]
    got = df.transform(with_derived_columns, specs)
    expected = spark.createDataFrame(
        [("C536379", -2, 2.5, True, -5.0, True), ("536365", 6, 3.39, False, 20.34, False)],
        "invoice_no string, quantity int, unit_price double, is_cancellation boolean, "
        "line_amount double, refund boolean",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_derived_column_reads_the_value_an_earlier_one_replaced(spark):
    df = spark.createDataFrame([(-2, 2.5), (6, 1.5)], "quantity int, unit_price double")
    specs = [
        ColumnSpec(name="quantity", expr="abs(quantity)", type="int"),
        ColumnSpec(name="price_cents", expr="unit_price * 100", type="int"),
        ColumnSpec(name="line_amount", expr="QUANTITY * unit_price", type="double"),
        ColumnSpec(name="Price_Cents", expr="unit_price * 10", type="int"),
    ]
    got = df.transform(with_derived_columns, specs)
    # by hand: |-2| * 2.5 = 5.0 (not -5.0), 6 * 1.5 = 9.0; the last declaration replaces
    # price_cents (Spark's names are case-insensitive) as it would one at a time
    expected = spark.createDataFrame(
        [(2, 2.5, 25, 5.0), (6, 1.5, 15, 9.0)],
        "quantity int, unit_price double, Price_Cents int, line_amount double",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_column_spec_needs_exactly_one_of_source_and_expr():
    with pytest.raises(ValidationError, match="exactly one of source or expr"):
        ColumnSpec(name="x", type="int")
    with pytest.raises(ValidationError, match="exactly one of source or expr"):
        ColumnSpec(name="x", type="int", source="X", expr="1")


def test_column_spec_timestamp_needs_format():
    with pytest.raises(ValidationError, match="needs format"):
        ColumnSpec(name="ts", source="InvoiceDate", type="timestamp")
