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

The credit-client generator is in :mod:`featurelake.devtools.synthetic_credit`, the draws every
generator uses in :mod:`featurelake.devtools.synthetic_primitives`; their public names are
re-exported here.

Example:
    >>> ids = spark.range(0, 1_000_000, 1, 2)
    >>> ids.transform(online_retail_lines, settings=cfg, files=2).write.text(out, "gzip")
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.core.config import SyntheticSettings
from featurelake.devtools.synthetic_credit import (
    CREDIT_CLIENT_COLUMNS,
    CREDIT_CONCEPTS,
    CreditConcept,
    credit_client_lines,
)
from featurelake.devtools.synthetic_primitives import _below, _emit, _pick, uniform

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
