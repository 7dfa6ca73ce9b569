"""Deterministic synthetic raw data with the real datasets' layouts and realistic dirt.

Every value is a pure function of ``(seed, row id, salt)`` through ``xxhash64``, so the data is
built by Spark in parallel from ``spark.range`` at any scale, and the same seed (and settings)
gives byte-identical files. Each transformation takes the ``spark.range(0, n, 1, files)`` frame
and returns one string column ``value``: the file lines, including a header line at the start
of every partition (= every output file) for CSV layouts.

Dirt, at the rates of :class:`~featurelake.core.config.SyntheticSettings`:

* online retail: missing CustomerID and cancellations (``C`` invoice, negative quantities) per
  invoice; zero or negative prices, duplicated lines, malformed lines (a field missing, an extra
  field, an unparseable quantity or date) and invoice dates decades in the future per line;
  descriptions with commas and quotes (properly CSV-quoted).
* credit clients: out-of-range codes (EDUCATION 0/5/6, MARRIAGE 0), duplicated and malformed
  lines.

The credit default label follows a documented relationship with the clients' traits
(:data:`CREDIT_CONCEPTS`, :func:`credit_client_lines`), so a classifier can learn it; a batch
dated on or after ``concept_drift_from`` follows a changed one (concept drift).
* customer profiles (JSON lines): missing emails, duplicated and truncated (invalid JSON) lines.

Example:
    >>> ids = spark.range(0, 1_000_000, 1, 2)
    >>> ids.transform(online_retail_lines, settings=cfg, files=2).write.text(out, "gzip")
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.core.config import SyntheticSettings

__all__ = [
    "CREDIT_CLIENT_COLUMNS",
    "CREDIT_CONCEPTS",
    "CreditConcept",
    "CUSTOMER_PROFILE_COLUMNS",
    "FIRST_CUSTOMER_ID",
    "FIRST_INVOICE_NO",
    "ONLINE_RETAIL_COLUMNS",
    "credit_client_lines",
    "customer_profile_lines",
    "online_retail_lines",
    "uniform",
]

ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
CREDIT_CLIENT_COLUMNS = (
    ("ID", "LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0")
    + tuple(f"PAY_{k}" for k in range(2, 7))
    + tuple(f"BILL_AMT{k}" for k in range(1, 7))
    + tuple(f"PAY_AMT{k}" for k in range(1, 7))
    + ("default.payment.next.month",)
)
CUSTOMER_PROFILE_COLUMNS = (
    "customer_id",
    "name",
    "email",
    "phone",
    "birth_date",
    "country",
    "signup_date",
)

# The real data's numbering, so synthetic ids look familiar next to the real ones.
FIRST_INVOICE_NO = 536365
FIRST_CUSTOMER_ID = 12346
_HOME_COUNTRY = "United Kingdom"
_HOME_SHARE = 0.9
_COUNTRIES = (
    "Germany",
    "France",
    "EIRE",
    "Spain",
    "Netherlands",
    "Belgium",
    "Switzerland",
    "Portugal",
    "Australia",
    "Norway",
    "Italy",
    "Channel Islands",
)
_ADJECTIVES = (
    "WHITE",
    "RED",
    "VINTAGE",
    "REGENCY",
    "JUMBO",
    "PINK",
    "BLUE",
    "HEART",
    "RETROSPOT",
    "GLASS",
    "WOODEN",
    "PAPER",
    "SET OF 4",
    "SMALL",
    "LARGE",
    "PARTY",
)
_THINGS = (
    "HANGING T-LIGHT HOLDER",
    "LANTERN",
    "CAKE CASES",
    "LUNCH BAG",
    "TEACUP AND SAUCER",
    "BUNTING",
    "ALARM CLOCK",
    "WATER BOTTLE",
    "STORAGE JAR",
    "DOORMAT",
    "CANDLE",
    "PHOTO FRAME",
    "MUG",
    "TINS",
    "NAPKINS",
    "CARD",
)
_FIRST_NAMES = (
    "Olivia",
    "Jack",
    "Amelia",
    "Harry",
    "Isla",
    "Oliver",
    "Emily",
    "Charlie",
    "Ava",
    "George",
    "Sophie",
    "Noah",
    "Mia",
    "Leo",
    "Grace",
    "Oscar",
    "Chloé",
    "Seán",
    "Zoë",
    "Mohammed",
)
_LAST_NAMES = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "O'Brien",
    "Evans",
    "Thomas",
    "Roberts",
    "Müller",
    "Dubois",
    "García",
    "Khan",
)
_SECONDS_PER_DAY = 86_400
_FUTURE_YEARS_S = 50 * 365 * _SECONDS_PER_DAY
_TWO_POW_53 = 2**53


def uniform(seed: int, key: Column | str, salt: str) -> Column:
    """A pseudo-random double in [0, 1) that depends only on ``(seed, key, salt)``.

    Args:
        seed: the generator's seed.
        key: the column the draw belongs to (a line, an invoice, a customer...): a column name
            (preferred: one JVM call builds the draw) or any Column.
        salt: names the draw, so that different draws for one key are independent; letters,
            digits and ``_``.
    """
    if not re.fullmatch(r"\w+", salt):
        raise ValueError(f"salt must be letters, digits or '_': {salt!r}")
    # The low 53 bits (= the hash mod 2^53), scaled by 2^-53: every value is exact in a double.
    # A mask and a product generate less code than pmod and a division, same values.
    if isinstance(key, str):
        # One SQL expression instead of a dozen Column calls (each a round trip to the JVM);
        # the literals have the same types as F.lit's (INT or BIGINT seed, STRING salt).
        return F.expr(
            f"CAST(xxhash64({int(seed)}, `{key}`, '{salt}') & {_TWO_POW_53 - 1}L "
            f"AS DOUBLE) * {1.0 / _TWO_POW_53!r}D"
        )
    hashed = F.xxhash64(F.lit(seed), key, F.lit(salt))
    low_bits = hashed.bitwiseAND(F.lit(_TWO_POW_53 - 1))
    return low_bits.cast("double") * F.lit(1.0 / _TWO_POW_53)


_SEPARATOR = "\u001f"  # ASCII unit separator: in none of the option texts


def _string_array(options: tuple[str, ...]) -> Column:
    """A constant array of strings, built with a few JVM calls (one literal, split once by the
    optimizer's constant folding) instead of one call per element."""
    if any(_SEPARATOR in o for o in options):
        raise ValueError(f"option texts must not contain {_SEPARATOR!r}: {options}")
    return F.split(F.lit(_SEPARATOR.join(options)), _SEPARATOR)


def _pick(options: tuple[str, ...], index: Column) -> Column:
    return F.element_at(_string_array(options), (index % len(options) + 1).cast("int"))


def _below(u: Column, n: int) -> Column:
    """floor(u * n) as a long: an index in [0, n)."""
    return F.floor(u * F.lit(n)).cast("long")


def _csv_quote(value: Column) -> Column:
    """RFC 4180 quoting: fields with a comma, quote or line break are quoted, quotes doubled."""
    needs = value.rlike('[,"\\r\\n]')
    return F.when(
        needs, F.concat(F.lit('"'), F.regexp_replace(value, '"', '""'), F.lit('"'))
    ).otherwise(value)


def _quote_csv_text(value: str) -> str:
    """RFC 4180 quoting of one field: quoted when it holds a comma, quote or line break."""
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


# Product descriptions, CSV-quoted, computed once here: a product's description is an adjective
# (product % 16), a thing ((product // 16) % 16), so product % 256, and a suffix for multiples of
# 13 or 17. Row expressions look the text up instead of building and quoting it per line.
_DESCRIPTION_SUFFIXES = (", ASSORTED", ' 7" SIZE', "")
_DESCRIPTIONS = tuple(
    _quote_csv_text(f"{_ADJECTIVES[base % 16]} {_THINGS[base // 16]}{suffix}")
    for base in range(len(_ADJECTIVES) * len(_THINGS))
    for suffix in _DESCRIPTION_SUFFIXES
)


def _product_description(product: Column) -> Column:
    """The product's CSV-ready description (see ``_DESCRIPTIONS``)."""
    suffix = F.when(product % 13 == 0, F.lit(0)).when(product % 17 == 0, F.lit(1)).otherwise(2)
    index = (product % (len(_ADJECTIVES) * len(_THINGS))) * len(_DESCRIPTION_SUFFIXES) + suffix
    return _pick(_DESCRIPTIONS, index)


def _format_cents(cents: Column) -> Column:
    """An amount in cents as decimal text with two places: ``-345`` -> ``-3.45``."""
    magnitude = F.abs(cents)
    return F.concat(
        F.when(cents < 0, F.lit("-")).otherwise(F.lit("")),
        F.floor(magnitude / 100).cast("string"),
        F.lit("."),
        F.lpad((magnitude % 100).cast("string"), 2, "0"),
    )


def _epoch(day: str) -> int:
    return int(
        datetime.combine(date.fromisoformat(day), datetime.min.time(), timezone.utc).timestamp()
    )


def _emit(
    ids: DataFrame, line: Column, duplicate: Column, header: str | None, files: int, total: int
) -> DataFrame:
    """One row per output line: the header first in each partition, duplicated lines twice.

    ``spark.range(0, total, 1, files)`` puts ids ``[i * total // files, (i+1) * total // files)``
    in partition ``i``; the header goes before the partition's first id.
    """
    parts = []
    if header is not None:
        first = F.expr(f"(CAST(spark_partition_id() AS BIGINT) * {total}) div {files}")
        parts.append(
            F.when(F.col("id") == first, F.array(F.lit(header))).otherwise(
                F.array().cast("array<string>")
            )
        )
    parts.append(F.array(line))
    parts.append(F.when(duplicate, F.array(line)).otherwise(F.array().cast("array<string>")))
    return ids.select(F.explode(F.concat(*parts)).alias("value"))


def _customer_country(seed: int, customer: Column | str) -> Column:
    u = uniform(seed, customer, "country")
    return F.when(u < _HOME_SHARE, F.lit(_HOME_COUNTRY)).otherwise(
        _pick(_COUNTRIES, _below(uniform(seed, customer, "country_pick"), len(_COUNTRIES)))
    )


def online_retail_lines(ids: DataFrame, *, settings: SyntheticSettings, files: int) -> DataFrame:
    """Online Retail CSV lines (header per file) for line ids ``0 .. settings.transactions-1``.

    Invoices group ``lines_per_invoice`` consecutive lines and advance in time from
    ``end_date - history_days`` to ``end_date``; customers, products and quantities are skewed
    draws (a few customers and products are frequent).

    Args:
        ids: ``spark.range(0, settings.transactions, 1, files)``.
        settings: scale, seed and dirt rates.
        files: the number of partitions of ``ids`` (one output file each).

    Returns:
        One string column ``value``.
    """
    s, total = settings.seed, settings.transactions
    invoices = max(1, -(-total // settings.lines_per_invoice))
    start = _epoch(settings.end_date) - settings.history_days * _SECONDS_PER_DAY
    invoice = F.col("invoice")
    # Three projections: draws, then numbers, then text. Later stages refer to columns instead
    # of repeating expression trees, which keeps the generated per-row method (about 6 KB of
    # bytecode) under HotSpot's 8 KB limit for JIT compilation: a larger one runs interpreted.
    staged = ids.withColumn("invoice", F.expr(f"id div {settings.lines_per_invoice}"))

    # Invoice-level draws (time, customer, cancellation, missing customer) and line-level ones.
    u_customer = uniform(s, "invoice", "customer")
    day = F.floor(invoice.cast("double") / invoices * settings.history_days).cast("long")
    staged = staged.select(
        "id",
        "invoice",
        (
            F.lit(start)
            + day * _SECONDS_PER_DAY
            + F.lit(8 * 3600)
            + _below(uniform(s, "invoice", "time"), 10 * 60) * 60
        ).alias("seconds"),
        _below(u_customer * u_customer, settings.customers).alias("customer"),
        (uniform(s, "invoice", "missing_customer") < settings.missing_customer_rate).alias(
            "missing"
        ),
        (uniform(s, "invoice", "cancel") < settings.cancellation_rate).alias("cancelled"),
        _below(F.pow(uniform(s, "id", "product"), 2), settings.products).alias("product"),
        (uniform(s, "id", "bad_price") < settings.bad_price_rate).alias("bad_price"),
        (uniform(s, "id", "future") < settings.future_date_rate).alias("future"),
        (uniform(s, "id", "malformed") < settings.malformed_rate).alias("malformed"),
    )
    seconds, customer, missing = F.col("seconds"), F.col("customer"), F.col("missing")
    cancelled, product, bad_price = F.col("cancelled"), F.col("product"), F.col("bad_price")

    # Numbers: signed quantity and price (in cents), the final time, the malformation kind.
    quantity = F.lit(1) + _below(F.pow(uniform(s, "id", "quantity"), 3), 48)
    u_price = uniform(s, "product", "price")
    cents = F.round(F.round(F.lit(0.19) + u_price * u_price * F.lit(15.0), 2) * 100).cast("long")
    staged = staged.select(
        "id",
        "invoice",
        "product",
        "cancelled",
        "missing",
        "customer",
        F.when(cancelled, -quantity).otherwise(quantity).alias("quantity"),
        F.when(
            F.col("future"),
            seconds
            + F.lit(_FUTURE_YEARS_S)
            + _below(uniform(s, "id", "future_days"), 365) * _SECONDS_PER_DAY,
        )
        .otherwise(seconds)
        .alias("seconds"),
        F.when(bad_price & (uniform(s, "id", "bad_price_kind") < 0.5), F.lit(0))
        .when(bad_price, -cents)
        .otherwise(cents)
        .alias("cents"),
        _customer_country(s, F.when(missing, -invoice - 1).otherwise(customer)).alias("country"),
        F.when(F.col("malformed"), _below(uniform(s, "id", "malformed_kind"), 4)).alias(
            "malformed_kind"
        ),
        (uniform(s, "id", "duplicate") < settings.duplicate_rate).alias("duplicate"),
    )

    # Text. Malformed lines: the last field missing (kind 0), an extra field (1), an
    # unparseable quantity (2) or date (3); concat_ws skips nulls, so one expression writes
    # every kind.
    kind = F.col("malformed_kind")
    invoice_no = (invoice + F.lit(FIRST_INVOICE_NO)).cast("string")
    quantity_text = F.col("quantity").cast("string")
    fields = [
        F.when(cancelled, F.concat(F.lit("C"), invoice_no)).otherwise(invoice_no),
        F.concat(
            (product + F.lit(10_000)).cast("string"),
            F.when(product % 7 == 0, F.lit("B")).otherwise(F.lit("")),
        ),
        _product_description(product),
        F.when(kind == 2, F.concat(quantity_text, F.lit("x"))).otherwise(quantity_text),
        F.when(kind == 3, F.lit("2011-13-45 25:61:00")).otherwise(
            F.date_format(F.timestamp_seconds(F.col("seconds")), "yyyy-MM-dd HH:mm:ss")
        ),
        _format_cents(F.col("cents")),
        F.when(missing, F.lit("")).otherwise((customer + F.lit(FIRST_CUSTOMER_ID)).cast("string")),
        F.when(kind == 0, F.lit(None).cast("string")).otherwise(F.col("country")),
        F.when(kind == 1, F.lit("EXTRA")),
    ]
    staged = staged.select("id", F.concat_ws(",", *fields).alias("line"), "duplicate")
    return _emit(
        staged, F.col("line"), F.col("duplicate"), ",".join(ONLINE_RETAIL_COLUMNS), files, total
    )


@dataclass(frozen=True)
class CreditConcept:
    """How a synthetic client's default depends on its traits.

    ``P(default) = 1 / (1 + exp(-z))`` with
    ``z = intercept + late_months * L + utilization * (U - 0.5) + thrift * (T - 0.5)
    + youth * (40 - AGE) / 15 + limit * ln(LIMIT_BAL / 100000)``, where

    * ``L`` (0..6): months with a late payment (``PAY_x`` > 0; gold ``delinquent_months``);
    * ``U`` in [0, 1): the client's utilisation level; each month's bill is
      ``LIMIT_BAL * U * (0.7 .. 1.3)`` (gold ``utilization_k``, ``avg_utilization``);
    * ``T`` in [0, 1): thrift, the share of a bill the client tends to repay; each month's
      payment is ``bill * (0.02 + 0.4 * (0.7 T + 0.3 noise))`` (gold ``pay_ratio_k``);
    * ``AGE`` and ``LIMIT_BAL`` as written.

    Every trait is visible, with noise, in the written columns; the label is drawn from the
    probability, so no model ranks perfectly (the baseline's Bayes ROC AUC is about 0.85).
    """

    intercept: float
    late_months: float
    utilization: float
    thrift: float
    youth: float
    limit: float


#: ``baseline``: late payments dominate, high utilisation and low repayment add risk (about
#: 20% default). ``drifted`` (a batch dated on or after ``concept_drift_from``): late payments
#: matter little; utilisation, youth and a high limit drive defaults (a model of the baseline
#: ranks these clients at a ROC AUC near 0.6).
CREDIT_CONCEPTS: dict[str, CreditConcept] = {
    "baseline": CreditConcept(
        intercept=-3.0, late_months=1.0, utilization=2.0, thrift=-1.8, youth=0.0, limit=-0.4
    ),
    "drifted": CreditConcept(
        intercept=-2.4, late_months=0.3, utilization=4.0, thrift=0.0, youth=1.2, limit=0.4
    ),
}


def credit_client_lines(
    ids: DataFrame,
    *,
    settings: SyntheticSettings,
    files: int,
    shift: Mapping[str, float] | None = None,
) -> DataFrame:
    """Credit-clients CSV lines (header per file) for ``settings.credit_clients`` clients.

    Client IDs run from ``settings.credit_first_id``. Each client's hidden traits (risk,
    utilisation, thrift) drive what is written (late payments, bills, payments) and the
    default label through :data:`CREDIT_CONCEPTS` - ``settings.credit_concept`` picks the
    relationship: ``drifted`` when the batch's ``end_date`` is on or after
    ``concept_drift_from``, else ``baseline``.

    Args:
        ids: ``spark.range(0, settings.credit_clients, 1, files)``.
        settings: scale, seed, first ID, concept and dirt rates.
        files: the number of partitions of ``ids``.
        shift: injected drift: raw column name (``LIMIT_BAL``, ``AGE``, ``BILL_AMT1``...) ->
            factor its values are multiplied by (rounded down), so that a later batch has one
            feature's distribution moved and the rest unchanged.

    Returns:
        One string column ``value``.

    Raises:
        ValueError: ``shift`` names a column that is not a numeric credit-client column.
    """
    shifted = dict(shift or {})
    allowed = CREDIT_CLIENT_COLUMNS[1:-1]
    unknown = sorted(set(shifted) - set(allowed))
    if unknown:
        raise ValueError(f"cannot shift {unknown}: not among {list(allowed)}")
    s, total = settings.seed, settings.credit_clients
    concept = CREDIT_CONCEPTS[settings.credit_concept]
    client = F.col("id") + settings.credit_first_id
    u = {
        name: uniform(s, "client", name)
        for name in (
            "limit",
            "sex",
            "education",
            "marriage",
            "age",
            "risk",
            "default",
            "out_of_range",
            "oor_kind",
            "oor_pick",
        )
    }
    education = (
        F.when(u["education"] < 0.35, F.lit(1))
        .when(u["education"] < 0.82, F.lit(2))
        .when(u["education"] < 0.98, F.lit(3))
        .otherwise(F.lit(4))
    )
    marriage = (
        F.when(u["marriage"] < 0.45, F.lit(1))
        .when(u["marriage"] < 0.98, F.lit(2))
        .otherwise(F.lit(3))
    )
    out_of_range = u["out_of_range"] < settings.out_of_range_code_rate
    odd_education = out_of_range & (u["oor_kind"] < 0.5)
    # Each stage is its own projection: later expressions refer to columns, keeping the
    # generated code small.
    staged = ids.withColumn("client", client).select(
        "id",
        "client",
        ((F.lit(1) + _below(u["limit"] * u["limit"], 80)) * 10_000).alias("limit_bal"),
        F.when(u["sex"] < 0.6, F.lit(2)).otherwise(F.lit(1)).alias("sex"),
        F.when(
            odd_education,
            F.element_at(
                F.array(F.lit(0), F.lit(5), F.lit(6)), (_below(u["oor_pick"], 3) + 1).cast("int")
            ),
        )
        .otherwise(education)
        .alias("education"),
        F.when(out_of_range & ~odd_education, F.lit(0)).otherwise(marriage).alias("marriage"),
        (F.lit(21) + _below(F.pow(u["age"], 1.5), 55)).alias("age"),
        # The chance of a late payment in any month: 3% to 53%, most clients near the bottom.
        (F.lit(0.03) + F.lit(0.5) * F.pow(u["risk"], 2)).alias("risk"),
        uniform(s, "client", "util").alias("util"),
        uniform(s, "client", "thrift").alias("thrift"),
        u["default"].alias("u_default"),
    )
    client, limit_bal = F.col("client"), F.col("limit_bal")
    months = range(1, 7)
    month_columns = {}
    for month in months:
        late = uniform(s, "client", f"late{month}") < F.col("risk")
        month_columns[f"late{month}"] = late.cast("int")
        month_columns[f"pay{month}"] = F.when(
            late, F.lit(1) + _below(uniform(s, "client", f"delay{month}"), 3)
        ).otherwise(F.lit(-2) + _below(uniform(s, "client", f"status{month}"), 3))
        u_bill = uniform(s, "client", f"bill{month}")
        month_columns[f"bill{month}"] = F.when(
            uniform(s, "client", f"refund{month}") < 0.02, -_below(u_bill, 2000)
        ).otherwise(F.floor(limit_bal * F.col("util") * (F.lit(0.7) + F.lit(0.6) * u_bill)))
    staged = staged.withColumns(month_columns)
    # A month's payment settles part of the previous month's bill (month 6: its own): a share
    # set mostly by the client's thrift.
    staged = staged.withColumns(
        {
            f"paid{month}": F.floor(
                F.greatest(F.col(f"bill{min(month + 1, 6)}"), F.lit(0))
                * (
                    F.lit(0.02)
                    + F.lit(0.4)
                    * (
                        F.lit(0.7) * F.col("thrift")
                        + F.lit(0.3) * uniform(s, "client", f"paid{month}")
                    )
                )
            )
            for month in months
        }
    )
    late_months = sum((F.col(f"late{m}") for m in months[1:]), F.col("late1"))
    z = (
        F.lit(concept.intercept)
        + F.lit(concept.late_months) * late_months
        + F.lit(concept.utilization) * (F.col("util") - F.lit(0.5))
        + F.lit(concept.thrift) * (F.col("thrift") - F.lit(0.5))
        + F.lit(concept.youth) * (F.lit(40.0) - F.col("age")) / F.lit(15.0)
        + F.lit(concept.limit) * F.log(limit_bal / F.lit(100_000.0))
    )
    default = F.col("u_default") < F.lit(1.0) / (F.lit(1.0) + F.exp(-z))
    fields = (
        [client, limit_bal, F.col("sex"), F.col("education"), F.col("marriage"), F.col("age")]
        + [F.col(f"pay{m}") for m in months]
        + [F.col(f"bill{m}") for m in months]
        + [F.col(f"paid{m}") for m in months]
        + [default.cast("int")]
    )
    fields = [
        F.floor(f * shifted[name]) if name in shifted else f
        for name, f in zip(CREDIT_CLIENT_COLUMNS, fields, strict=True)
    ]
    texts = [f.cast("long").cast("string") for f in fields]
    staged = staged.select(
        "id",
        "client",
        F.concat_ws(",", *texts).alias("line"),
        F.concat_ws(",", *texts[:-1]).alias("short_line"),
        F.concat_ws(",", texts[0], F.lit("abc"), *texts[2:]).alias("bad_number_line"),
    )
    malformed = uniform(s, "client", "malformed") < settings.malformed_rate
    broken = F.when(uniform(s, "client", "malformed_kind") < 0.5, F.col("short_line")).otherwise(
        F.col("bad_number_line")
    )
    line = F.when(malformed, broken).otherwise(F.col("line"))
    duplicate = uniform(s, "client", "duplicate") < settings.duplicate_rate
    return _emit(staged, line, duplicate, ",".join(CREDIT_CLIENT_COLUMNS), files, total)


def customer_profile_lines(ids: DataFrame, *, settings: SyntheticSettings, files: int) -> DataFrame:
    """Customer-profile JSON lines for customers ``0 .. settings.customers-1``.

    Customer ids and countries match :func:`online_retail_lines`. Names, emails, phones and
    birth dates are personal data for silver to pseudonymise.

    Args:
        ids: ``spark.range(0, settings.customers, 1, files)``.
        settings: scale, seed and dirt rates.
        files: the number of partitions of ``ids``.

    Returns:
        One string column ``value`` (one JSON object per line, keys in a fixed order).
    """
    s, total = settings.seed, settings.customers
    customer = F.col("id")
    first = _pick(_FIRST_NAMES, _below(uniform(s, "id", "first"), len(_FIRST_NAMES)))
    last = _pick(_LAST_NAMES, _below(uniform(s, "id", "last"), len(_LAST_NAMES)))
    customer_id = (customer + F.lit(FIRST_CUSTOMER_ID)).cast("string")
    local_part = F.regexp_replace(F.lower(F.concat(first, F.lit("."), last)), "[^a-z.]", "")
    email = F.concat(local_part, customer_id, F.lit("@example.com"))
    email = F.when(
        uniform(s, "id", "no_email") < settings.missing_customer_rate / 4, F.lit(None)
    ).otherwise(email)
    phone = F.concat(
        F.lit("+44 7"), F.lpad(_below(uniform(s, "id", "phone"), 10**9).cast("string"), 9, "0")
    )
    birth = F.date_add(
        F.lit("1940-01-01").cast("date"), _below(uniform(s, "id", "birth"), 63 * 365).cast("int")
    )
    signup = F.date_sub(
        F.lit(settings.end_date).cast("date"),
        (F.lit(settings.history_days) + _below(uniform(s, "id", "signup"), 4 * 365)).cast("int"),
    )
    record = F.struct(
        customer_id.alias("customer_id"),
        F.concat_ws(" ", first, last).alias("name"),
        email.alias("email"),
        phone.alias("phone"),
        F.date_format(birth, "yyyy-MM-dd").alias("birth_date"),
        _customer_country(s, "id").alias("country"),
        F.date_format(signup, "yyyy-MM-dd").alias("signup_date"),
    )
    line = F.to_json(record)
    malformed = uniform(s, "id", "malformed") < settings.malformed_rate
    line = F.when(malformed, F.substring(line, 1, 40)).otherwise(line)
    duplicate = uniform(s, "id", "duplicate") < settings.duplicate_rate
    return _emit(ids, line, duplicate, None, files, total)
