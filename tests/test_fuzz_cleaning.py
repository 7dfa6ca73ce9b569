"""Properties of the strict parsers and cleaning steps, against references written in Python.

Each example is a batch of strings parsed by one Spark action; every result must equal
what an independent reference makes of the same string (Python's ``int``, ``float``,
``decimal.Decimal`` and ``datetime`` behind an ASCII-only grammar), and a double is never NaN
or infinite. The inputs lean on the edges: NaN, +-Infinity, 1e308 and 1e309, -0, underflow,
integers just past 32 and 64 bits, a leading ``+``, whitespace and line ends around the digits,
digits of other scripts (``١٢٣``, fullwidth ``１２``) that are not numbers here, years 0000,
0001, 9999 and signed years, 29 February, hour 24, month 13, time zones after the time.

Examples per property (``FEATURELAKE_FUZZ_EXAMPLES`` overrides; see ``tests/fuzzing.py``):

* integers and decimals (int, long, double): 40 batches of 50-100 strings
* booleans: 15 batches of 30-60 strings
* dates and timestamps: 40 batches of 50-100 timestamps and 20-40 dates
* cleaning steps and code normalisation: 20 batches of 30-60 strings
* ``with_parsed_columns`` + ``with_derived_columns``: 25 batches of 25-50 raw rows
"""

from __future__ import annotations

import math

from featurelake.lakehouse.cleaning import (
    PARSE_ERRORS,
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
from fuzz_references import (
    FALSE_WORDS,
    TRUE_WORDS,
    reference_boolean,
    reference_collapse_whitespace,
    reference_days,
    reference_double,
    reference_integer,
    reference_strip_zero_decimal,
    reference_timestamp_micros,
    reference_trim_to_null,
    same_double,
)
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from pyspark.sql import functions as F

TS_FORMAT = "yyyy-MM-dd HH:mm:ss"
DATE_FORMAT = "yyyy-MM-dd"

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

# Digits of other scripts: Arabic-Indic, Extended Arabic-Indic, Devanagari, fullwidth, bold.
OTHER_DIGITS = "\u0661\u0662\u0663\u06f1\u06f2\u0967\u0968\uff11\uff12\U0001d7d9"
WHITESPACE = " \t\n\r\x0b\f\u00a0\u2028\u2029\u0085\u3000\ufeff"
EDGE_NUMBERS = [
    "NaN",
    "nan",
    "-NaN",
    "Infinity",
    "-Infinity",
    "+Infinity",
    "inf",
    "-inf",
    "Inf",
    "1e308",
    "1e309",
    "-1e309",
    "1.7976931348623157e308",
    "1.7976931348623158e308",
    "1.7976931348623159e308",
    "4.9e-324",
    "2.4703282292062328e-324",
    "2.4703282292062327e-324",
    "1e-324",
    "1e-400",
    "0e400",
    "-0",
    "-0.0",
    "+0",
    "-.0",
    "0.",
    ".5",
    "5.",
    "+.5",
    "1e",
    "1e+",
    ".e1",
    ".",
    "+",
    "-",
    "",
    "e5",
    "1.2.3",
    "1,5",
    "0x10",
    "0X1p3",
    "1d",
    "1f",
    "1L",
    "1_000",
    "١٢٣",
    "١.٥",
    "１２",
    "٣e٢",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "0" * 40 + "7",
    "9" * 400,
    "0." + "0" * 330 + "1",
    "1" + "0" * 308,
    "1" + "0" * 309,
    "12\n",
    "12\r\n",
    "12\r",
    "\n12",
    "2.5\n",
    "2.5\r",
    " 12",
    "12 ",
    "\t12",
    "12\u2028",
    "1e5\n",
]
BOUNDARIES = [2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]


@st.composite
def decorated(draw: st.DrawFn, core: st.SearchStrategy[str]) -> str:
    prefix = draw(st.sampled_from(["", "", "", "+", "-", "0", "00", " ", "\ufeff", "\u0661"]))
    suffix = draw(
        st.sampled_from(
            ["", "", "", " ", "\n", "\r\n", "\r", ".0", "e0", "e999", "\x00", "\u2028", "\u0662"]
        )
    )
    return prefix + draw(core) + suffix


integer_text = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.builds(lambda n, d: str(n + d), st.sampled_from(BOUNDARIES), st.integers(-2, 2)),
)
decimal_text = st.one_of(
    st.floats().map(repr),
    st.floats().map(lambda x: f"{x:.17e}" if math.isfinite(x) else str(x)),
    st.decimals().map(str),
    st.from_regex(r"[+-]?[0-9]{0,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)
number_text = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    integer_text,
    decimal_text,
    decorated(st.one_of(integer_text, decimal_text)),
    st.text(alphabet="0123456789+-.eE" + WHITESPACE + OTHER_DIGITS, max_size=12),
    st.text(max_size=8),
)
boolean_text = st.one_of(
    st.sampled_from(sorted(TRUE_WORDS | FALSE_WORDS)).flatmap(
        lambda word: st.sampled_from(
            [
                word,
                word.upper(),
                word.title(),
                f" {word}",
                f"{word}\n",
                f"{word}\x00",
                word + "\u0301",
            ]
        )
    ),
    st.sampled_from(
        [
            "TRUE",
            "tRuE",
            "oui",
            "2",
            "-1",
            "on",
            "off",
            "yes!",
            "\u0661",
            "ye",
            "\u0130",
            "tru\u0435",
            "\uff54\uff52\uff55\uff45",
            "",
        ]
    ),
    st.text(alphabet="tTrRuUeEfFaAlLsSyYnNoO01 \u0131\u0130", max_size=6),
)


@st.composite
def timestamp_text(draw: st.DrawFn) -> str:
    year = draw(
        st.one_of(
            st.sampled_from(
                [
                    0,
                    1,
                    2,
                    99,
                    999,
                    1000,
                    1582,
                    1900,
                    1970,
                    2000,
                    2010,
                    2011,
                    2012,
                    2100,
                    9999,
                    10000,
                    99999,
                ]
            ),
            st.integers(0, 12000),
        )
    )
    month = draw(st.integers(0, 14))
    day = draw(st.one_of(st.sampled_from([28, 29, 30, 31]), st.integers(0, 33)))
    hour = draw(st.one_of(st.sampled_from([0, 23, 24]), st.integers(0, 25)))
    minute, second = draw(st.integers(0, 61)), draw(st.integers(0, 61))
    width = draw(st.sampled_from([4, 4, 4, 4, 1, 5]))
    sign = draw(st.sampled_from(["", "", "", "", "-", "+"]))
    separator = draw(st.sampled_from([" ", " ", " ", "T", "  ", "\t"]))
    text = (
        f"{sign}{year:0{width}d}-{month:02d}-{day:02d}{separator}"
        f"{hour:02d}:{minute:02d}:{second:02d}"
    )
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("-0", "-")  # a one-digit month or day
    suffix = draw(
        st.sampled_from(
            [
                "",
                "",
                "",
                "",
                "Z",
                "+01:00",
                "-0530",
                " UTC",
                "+00:00",
                ".5",
                ".000000",
                "\n",
                " ",
                "\x00",
            ]
        )
    )
    text += suffix
    if draw(st.integers(0, 19)) == 0:  # digits of another script
        text = text.translate(
            str.maketrans(
                "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
            )
        )
    return text


date_text = st.one_of(
    timestamp_text().map(lambda t: t[: len(t) - 9] if len(t) > 9 else t),
    timestamp_text().map(lambda t: t.split(" ")[0]),
)
cleaning_text = st.one_of(
    st.text(alphabet=" \t\n\r\x0b\f\u00a0\u2028\u3000\x1c\x85ab1.0+-", max_size=14),
    st.builds(
        lambda n, zeros, pad: f"{pad}{n}.{'0' * zeros}{pad}",
        st.integers(-(10**20), 10**20),
        st.integers(0, 3),
        st.sampled_from(["", " ", "\n"]),
    ),
    st.text(max_size=10),
)


def batches(values: st.SearchStrategy[str], size: int) -> st.SearchStrategy[list[str | None]]:
    """Between ``size`` and twice as many values, about one in five null.

    A Spark action costs the same for 20 values as for 100, so the pure parsers get large
    batches and fewer examples.
    """
    return st.lists(
        st.one_of(st.none(), values, values, values, values), min_size=size, max_size=2 * size
    )


def _frame(spark, values):
    return spark.createDataFrame(list(enumerate(values)), "i int, v string")


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@fuzz_settings(40)
@given(values=batches(number_text, 50))
def test_integer_and_decimal_parsers_agree_with_python(spark, values):
    v = F.col("v")
    rows = (
        _frame(spark, values)
        .select(
            "i",
            parse_int(v).alias("int"),
            parse_long(v).alias("long"),
            parse_double(v).alias("double"),
        )
        .collect()
    )
    for row in rows:
        text = values[row["i"]]
        assert row["int"] == reference_integer(text, 32), text
        assert row["long"] == reference_integer(text, 64), text
        assert same_double(row["double"], reference_double(text)), (text, row["double"])
        assert row["double"] is None or math.isfinite(row["double"]), text


@fuzz_settings(15)
@given(values=batches(boolean_text, 30))
def test_boolean_parser_agrees_with_python(spark, values):
    rows = _frame(spark, values).select("i", parse_boolean(F.col("v")).alias("b")).collect()
    for row in rows:
        assert row["b"] == reference_boolean(values[row["i"]]), values[row["i"]]


@fuzz_settings(40)
@given(stamps=batches(timestamp_text(), 50), dates=st.lists(date_text, min_size=20, max_size=40))
def test_timestamp_and_date_parsers_agree_with_python(spark, stamps, dates):
    values = [*stamps, *dates]
    rows = (
        _frame(spark, values)
        .select(
            "i",
            F.unix_micros(parse_timestamp(F.col("v"), TS_FORMAT)).alias("micros"),
            F.unix_date(parse_date(F.col("v"), DATE_FORMAT)).alias("days"),
        )
        .collect()
    )
    for row in rows:
        text = values[row["i"]]
        assert row["micros"] == reference_timestamp_micros(text), text
        assert row["days"] == reference_days(text), text


@fuzz_settings(20)
@given(
    values=batches(cleaning_text, 30),
    codes=st.lists(st.one_of(st.none(), st.integers(-3, 9)), min_size=20, max_size=20),
    mapping=st.dictionaries(st.integers(-3, 9), st.integers(-3, 9), max_size=4),
)
def test_cleaning_steps_agree_with_python(spark, values, codes, mapping):
    v = F.col("v")
    df = spark.createDataFrame(
        [(i, text, codes[i % len(codes)]) for i, text in enumerate(values)],
        "i int, v string, code int",
    )
    rows = df.select(
        "i",
        "code",
        trim_to_null(v).alias("trimmed"),
        collapse_whitespace(v).alias("collapsed"),
        strip_zero_decimal(v).alias("stripped"),
        apply_cleaning(v, ["trim", "collapse_whitespace"]).alias("both"),
        normalize_codes(F.col("code"), mapping).alias("normalised"),
    ).collect()
    for row in rows:
        text = values[row["i"]]
        assert row["trimmed"] == reference_trim_to_null(text), text
        assert row["collapsed"] == reference_collapse_whitespace(text), text
        assert row["stripped"] == reference_strip_zero_decimal(text), text
        assert row["both"] == reference_collapse_whitespace(reference_trim_to_null(text)), text
        code = row["code"]
        assert row["normalised"] == (None if code is None else mapping.get(code, code))


PARSED = [
    ColumnSpec(name="quantity", source="q", type="int"),
    ColumnSpec(name="count", source="n", type="long"),
    ColumnSpec(name="price", source="p", type="double"),
    ColumnSpec(name="flag", source="b", type="boolean"),
    ColumnSpec(name="at", source="t", type="timestamp", format=TS_FORMAT),
    ColumnSpec(name="label", source="s", type="string", clean=("trim", "collapse_whitespace")),
    ColumnSpec(name="amount", expr="quantity * price", type="double"),
]
raw_row = st.tuples(
    st.one_of(st.none(), number_text),
    st.one_of(st.none(), number_text),
    st.one_of(st.none(), number_text),
    st.one_of(st.none(), boolean_text),
    st.one_of(st.none(), timestamp_text()),
    st.one_of(st.none(), cleaning_text),
)


@fuzz_settings(25)
@given(raw=st.lists(raw_row, min_size=25, max_size=50))
def test_a_present_value_that_does_not_parse_is_flagged_never_silently_null(spark, raw):
    df = spark.createDataFrame(
        [(i, *r) for i, r in enumerate(raw)],
        "i int, q string, n string, p string, b string, t string, s string",
    )
    out = df.transform(with_parsed_columns, PARSED).transform(with_derived_columns, PARSED)
    rows = out.select(
        "i",
        "quantity",
        "count",
        "price",
        "flag",
        F.unix_micros("at").alias("at"),
        "label",
        "amount",
        PARSE_ERRORS,
    ).collect()
    for row in rows:
        q, n, p, b, t, s = (reference_trim_to_null(x) for x in raw[row["i"]])
        expected = {
            "quantity": reference_integer(q, 32),
            "count": reference_integer(n, 64),
            "price": reference_double(p),
            "flag": reference_boolean(b),
            "at": reference_timestamp_micros(t),
        }
        present = {"quantity": q, "count": n, "price": p, "flag": b, "at": t}
        for name, value in expected.items():
            assert row[name] == value, (name, present[name])
        assert row["label"] == reference_collapse_whitespace(s)
        flagged = {
            f"parse:{name}"
            for name in expected
            if present[name] is not None and expected[name] is None
        }
        assert sorted(row[PARSE_ERRORS]) == sorted(flagged), raw[row["i"]]
        if expected["quantity"] is not None and expected["price"] is not None:
            assert same_double(row["amount"], expected["quantity"] * expected["price"])
        else:
            assert row["amount"] is None
