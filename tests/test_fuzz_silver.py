"""Properties of :func:`build_silver` for ``silver/transactions`` on hostile bronze rows.

Each example is a bronze batch of 20-40 rows: invoice lines that are clean, lines with one to
three hostile values (NaN, +-Infinity, 1e309, numbers whose product overflows, -0, digits of
other scripts, whitespace and line ends, year 0000 or a signed year, 29 February of a common
year, hour 24, month 13, a time zone, invoices after the run's as-of time, NUL, empty and
missing values), rescued lines (some holding U+FFFD), and exact or whitespace-only copies of
earlier lines ingested in another batch. Silver and its quarantine are computed in one Spark
action, with the counts observed on the way (``observe=True``).

Properties, for every example:

* every bronze row is counted once: rows in = silver + quarantined + duplicates, by the
  observed counts and by the rows that came out (each bronze row, tagged by its
  ``_source_file``, is in silver, in the quarantine or removed as a duplicate - never two);
* a row that must be quarantined is: rescued, a present value that Python's reference does
  not parse (``tests/fuzz_references.py``), a required value missing, a line amount that is
  not finite, an invoice after the as-of time;
* rows with identical raw values leave at most one row in silver;
* no silver row holds a NaN or infinite double, or U+FFFD.

Bronze rows that are not rescued hold no U+FFFD here: such a row (valid UTF-8 spelling
U+FFFD) still reaches silver - see the expected failure below.

Examples per property (``FEATURELAKE_FUZZ_EXAMPLES`` overrides; see ``tests/fuzzing.py``):

* bronze batches: 30
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from featurelake.lakehouse.silver import build_silver, load_table_specs
from fuzz_references import (
    reference_double,
    reference_integer,
    reference_timestamp_micros,
    reference_trim_to_null,
)
from fuzzing import fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st
from pyspark.sql import functions as F
from pyspark.sql import types as T

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_table_specs(ROOT / "conf" / "tables")["transactions"]
COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
AS_OF = datetime(2012, 1, 1)
AS_OF_MICROS = int(AS_OF.replace(tzinfo=timezone.utc).timestamp()) * 10**6
RUN_AT = datetime(2024, 1, 3, 12, 0)
INGESTS = [(datetime(2024, 1, 1, 10, 0), "b1"), (datetime(2024, 1, 2, 10, 0), "b2")]
SILVER_STRINGS = ["invoice_no", "stock_code", "description", "customer_id", "country"]
BRONZE_SCHEMA = T.StructType(
    [T.StructField(c, T.StringType()) for c in [*COLUMNS, "_rescued_data", "_source_file"]]
    + [T.StructField("_ingested_at", T.TimestampType()), T.StructField("_batch_id", T.StringType())]
)

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

HOSTILE = [
    None,
    "",
    "  ",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1e309",
    "-1e309",
    "1e308",
    "1.7976931348623157e308",
    "4.9e-324",
    "1e-400",
    "-0",
    "-0.0",
    "+3",
    "١٢٣",
    "１２",
    "12\n",
    " 7 ",
    "7\t",
    "0x10",
    "6.0",
    "9" * 30,
    "-5",
    "0",
    "2010-13-01 00:00:00",
    "0000-01-01 00:00:00",
    "-2010-12-01 08:26:00",
    "2011-02-29 00:00:00",
    "2012-02-29 00:00:00",
    "2010-12-01 24:00:00",
    "2099-01-01 00:00:00",
    "2010-12-01 08:26:00+01:00",
    "2010-12-01T08:26:00",
    "9999-12-31 23:59:59",
    "0001-01-01 00:00:00",
    "\x00",
    "\u2028",
    "C",
    "C536379",
    "A563185",
    "17850.5",
    "17850.0",
    " 17850.00 ",
    "WHITE  HANGING\tHEART",
    "\ufeff",
    "United\u00a0Kingdom",
]
safe_text = st.text(alphabet=st.characters(exclude_characters="\ufffd", codec="utf-8"), max_size=8)


@st.composite
def clean_values(draw: st.DrawFn) -> list[str]:
    cancelled = draw(st.integers(0, 5)) == 0
    quantity = draw(st.integers(1, 100))
    moment = draw(st.datetimes(datetime(2010, 12, 1), datetime(2011, 12, 9)))
    return [
        ("C" if cancelled else "") + str(draw(st.integers(536365, 581587))),
        draw(st.sampled_from(["85123A", "71053", "22633", "D", "POST"])),
        draw(st.sampled_from(["WHITE HANGING HEART", "LANTERN", " HAND  WARMER ", "Discount"])),
        str(-quantity if cancelled else quantity),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        str(draw(st.decimals(min_value="0.01", max_value="999.99", places=2))),
        draw(st.sampled_from(["17850", "17850.0", "14527", "12346"])),
        draw(st.sampled_from(["United Kingdom", "France", "EIRE"])),
    ]


@st.composite
def bronze_values(draw: st.DrawFn) -> tuple[list[str | None], str | None]:
    """The raw business values of a row and its ``_rescued_data``."""
    values: list[str | None] = list(draw(clean_values()))
    for column in draw(st.lists(st.integers(0, len(COLUMNS) - 1), max_size=3)):
        values[column] = draw(st.one_of(st.sampled_from(HOSTILE), safe_text))
    rescued = None
    if draw(st.integers(0, 7)) == 0:
        rescued = draw(
            st.sampled_from(
                [",".join(v or "" for v in values) + ",EXTRA", "Espa\ufffda,1", '1,"open', "\ufffd"]
            )
        )
    return values, rescued


@st.composite
def bronze_batches(draw: st.DrawFn) -> list[tuple]:
    originals = draw(st.lists(bronze_values(), min_size=15, max_size=30))
    copies = []
    for index in draw(st.lists(st.integers(0, len(originals) - 1), max_size=10)):
        values, rescued = originals[index]
        if draw(st.booleans()) and values[2] is not None:  # the same line, spaced differently
            values = [*values[:2], f"  {values[2]} ", *values[3:]]
        copies.append((values, rescued))
    rows = []
    for tag, (values, rescued) in enumerate(originals + copies):
        ingested_at, batch = draw(st.sampled_from(INGESTS))
        rows.append((*values, rescued, f"f{tag}.csv", ingested_at, batch))
    return rows


# --------------------------------------------------------------------------------------------
# Reference: rows that must be quarantined, by rules worked out in Python
# --------------------------------------------------------------------------------------------


def must_be_quarantined(row: tuple) -> bool:
    invoice, stock, _, quantity, date, price, customer, country = (
        reference_trim_to_null(v) for v in row[: len(COLUMNS)]
    )
    rescued = row[len(COLUMNS)]
    if rescued is not None:
        return True  # malformed_line
    if None in (invoice, stock, quantity, date, price, customer, country):
        return True  # not_null
    parsed_quantity = reference_integer(quantity, 32)
    parsed_price = reference_double(price)
    micros = reference_timestamp_micros(date)
    if parsed_quantity is None or parsed_price is None or micros is None:
        return True  # parse:<column>
    if not math.isfinite(parsed_quantity * parsed_price):
        return True  # finite:line_amount
    return micros > AS_OF_MICROS  # not_future


# --------------------------------------------------------------------------------------------
# Property
# --------------------------------------------------------------------------------------------


def _silver_and_quarantine(spark, rows):
    bronze = spark.createDataFrame(rows, BRONZE_SCHEMA)
    plan = build_silver(
        bronze, SPEC, as_of=AS_OF, run_id="fuzz", quarantined_at=RUN_AT, pii_key=None, observe=True
    )
    silver = plan.silver.select(
        F.lit("silver").alias("table"),
        "_source_file",
        "unit_price",
        "line_amount",
        F.array(*SILVER_STRINGS).alias("strings"),
    )
    quarantine = plan.quarantine.select(
        F.lit("quarantine").alias("table"),
        "_source_file",
        F.lit(None).cast("double").alias("unit_price"),
        F.lit(None).cast("double").alias("line_amount"),
        F.lit(None).cast("array<string>").alias("strings"),
    )
    out = silver.unionByName(quarantine).collect()  # one action; it also fills the counts
    return out, plan.counts(SPEC)


@fuzz_settings(30)
@given(rows=bronze_batches())
def test_every_bronze_row_has_one_outcome_and_silver_holds_only_finite_clean_text(spark, rows):
    out, counts = _silver_and_quarantine(spark, rows)

    tables = {r["_source_file"]: r["table"] for r in out}
    assert len(tables) == len(out), "a bronze row came out twice"
    silver = [r for r in out if r["table"] == "silver"]
    quarantined = {r["_source_file"] for r in out if r["table"] == "quarantine"}
    removed = {row[len(COLUMNS) + 1] for row in rows} - set(tables)
    assert counts.rows_in == len(rows)
    assert (counts.rows_out, counts.rows_quarantined, counts.rows_deduplicated) == (
        len(silver),
        len(quarantined),
        len(removed),
    )
    assert counts.reconciles
    # Shown with --hypothesis-show-statistics: the examples reach every outcome.
    for outcome, n in (
        ("silver", len(silver)),
        ("quarantined", len(quarantined)),
        ("duplicates", len(removed)),
    ):
        event(f"{outcome}: {'some' if n else 'none'}")

    must = {row[len(COLUMNS) + 1] for row in rows if must_be_quarantined(row)}
    assert must <= quarantined, must - quarantined

    by_raw_values = Counter(
        tuple(row[: len(COLUMNS)]) for row in rows if tables.get(row[len(COLUMNS) + 1]) == "silver"
    )
    assert max(by_raw_values.values(), default=0) <= 1

    for row in silver:
        assert math.isfinite(row["unit_price"]) and math.isfinite(row["line_amount"]), row
        assert not any("\ufffd" in (text or "") for text in row["strings"]), row


# --------------------------------------------------------------------------------------------
# Defects this suite found outside the parsing code, each fixed
# --------------------------------------------------------------------------------------------


def _one_row_outcome(spark, values):
    row = (*values, None, "f0.csv", *INGESTS[0])
    out, _ = _silver_and_quarantine(spark, [row])
    return out[0]["table"]


def test_a_row_holding_u_fffd_outside_a_rescued_line_is_quarantined(spark):
    values = [
        "536365",
        "85123A",
        "HEART",
        "6",
        "2010-12-01 08:26:00",
        "2.55",
        "17850",
        "Espa\ufffda",
    ]
    assert _one_row_outcome(spark, values) == "quarantine"


def test_a_regex_rule_rejects_a_value_ending_in_a_line_end(spark):
    values = [
        "536365",
        "85123A",
        "HEART",
        "6",
        "2010-12-01 08:26:00",
        "2.55",
        "17850\n",
        "United Kingdom",
    ]
    assert _one_row_outcome(spark, values) == "quarantine"
