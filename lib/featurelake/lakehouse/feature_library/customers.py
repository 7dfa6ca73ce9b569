"""Customer features of Online Retail transactions, computed **as of** a point in time.

A feature row describes customer c as of timestamp t and uses only transaction lines with
``invoice_ts <= t`` (lines after t are invisible). The same functions build one as-of point
(scoring, the latest snapshot) and thousands (the daily snapshot table): the as-of points are a
small DataFrame joined to the customers' invoices, so many dates cost one Spark job.

Definitions (a *purchase* is a non-cancelled invoice; a *cancellation* is an invoice whose
number starts with "C"; lines without a customer id are not attributable and are ignored):

* ``recency_days``: whole days from the last purchase to t: floor((t - last purchase ts) / 1 day).
  Null when the customer has no purchase by t.
* ``frequency``: distinct purchases (invoices) by t.
* ``monetary``: net spend, sum of ``line_amount`` over all lines by t, cancellations included
  (their amounts are negative), so a refund reduces monetary value. May be <= 0.
* ``r_score``, ``f_score``, ``m_score``: 1..q (q = ``rfm_quantiles``, 5 = best), among the
  customers with at least one purchase at the same t; null otherwise. score = ceil(q * k / n),
  where n is the number of scored customers and k the number whose value is no better than
  this customer's (ties included), i.e. q * cume_dist rounded up. Ties therefore share one score
  (the highest the tied group reaches). Better = smaller recency, larger frequency and monetary.
* ``rfm_score``: r_score + f_score + m_score (3..3q); null when unscored.
* ``tenure_days``: whole days from the first purchase to t; null without a purchase.
* ``avg_basket_value``: purchase spend (sum of ``line_amount`` on purchases) / frequency;
  ``avg_basket_size``: purchased quantity / frequency. Null without a purchase.
* ``distinct_products``: distinct stock codes bought on purchases by t (0 if none).
* ``cancellation_rate``: cancelled invoices / all invoices by t (1.0 if all were cancelled).
* ``spend_<w>d``: net spend (as monetary) of lines with t - w days < invoice_ts <= t;
  ``orders_<w>d``: purchases begun in that window. 0 (never null) when there is nothing.
* ``country``: the country of most of the customer's invoices by t (all invoices); ties go to
  the alphabetically first country.

An invoice whose lines carry several timestamps counts (for frequency and orders) from its
first line's timestamp; each line's amount counts from its own timestamp.

Snapshots use the end of each as-of date, ``as_of_ts = as_of_date 23:59:59.999999``, so they
contain exactly the lines with ``invoice_date <= as_of_date``, and a 30-day window covers the
30 calendar days ending on ``as_of_date``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StructField, StructType, TimestampType

from featurelake.core.session import local_frame
from featurelake.lakehouse.feature_library import require_columns

__all__ = [
    "ACTIVITY_COLUMNS",
    "aggregate_activity_as_of",
    "as_of_points",
    "as_of_timestamps",
    "as_utc",
    "build_customer_features",
    "customer_feature_columns",
    "end_of_day",
    "invoice_activity",
    "with_avg_basket",
    "with_cancellation_rate",
    "with_recency_days",
    "with_rfm_scores",
    "with_tenure_days",
]

_MICROS_PER_DAY = 86_400 * 1_000_000
# Money is summed as an exact decimal (line amounts rounded to 1e-6) and returned as double:
# a double sum depends on the order Spark adds partitions in, which would make reruns differ in
# the last bits and could flip ties in m_score.
_MONEY = "decimal(38,6)"
_LINE_MONEY = "decimal(24,6)"
_TRANSACTION_COLUMNS = (
    "invoice_no",
    "stock_code",
    "quantity",
    "invoice_ts",
    "customer_id",
    "country",
    "is_cancellation",
    "line_amount",
)

#: Columns of :func:`invoice_activity`.
ACTIVITY_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "invoice_no",
    "invoice_ts",
    "is_cancellation",
    "starts_invoice",
    "amount",
    "quantity",
    "new_products",
    "country",
)


def customer_feature_columns(windows: Sequence[int]) -> tuple[str, ...]:
    """Columns of ``gold/customer_features`` in contract order for the given windows (days)."""
    return (
        "customer_id",
        "as_of_ts",
        "as_of_date",
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "rfm_score",
        "tenure_days",
        "avg_basket_value",
        "avg_basket_size",
        "distinct_products",
        "cancellation_rate",
        *[f"spend_{w}d" for w in windows],
        *[f"orders_{w}d" for w in windows],
        "country",
    )


# --------------------------------------------------------------------------------------------
# As-of points
# --------------------------------------------------------------------------------------------


def end_of_day(day: Column) -> Column:
    """The last microsecond of ``day`` (a date column) as a timestamp: ``day 23:59:59.999999``."""
    return F.timestamp_micros(F.unix_micros(F.date_add(day, 1).cast("timestamp")) - F.lit(1))


_POINTS_SCHEMA = StructType([StructField("as_of_date", DateType(), False)])


def as_of_points(spark: SparkSession, start: date, end: date, cadence_days: int = 1) -> DataFrame:
    """As-of points for a snapshot range: one row per date, at the end of that date.

    Args:
        spark: the session that owns the result (no data is read).
        start: the first as-of date.
        end: the last as-of date (included when the cadence lands on it).
        cadence_days: days between consecutive points.

    Returns:
        Columns ``as_of_ts`` (timestamp, end of day) and ``as_of_date`` (date).

    Raises:
        ValueError: ``end`` is before ``start`` or ``cadence_days`` < 1.
    """
    if cadence_days < 1:
        raise ValueError(f"cadence_days must be >= 1, got {cadence_days}")
    if end < start:
        raise ValueError(f"snapshot end {end} is before snapshot start {start}")
    days = local_frame(spark, [(start,)], _POINTS_SCHEMA).select(
        F.explode(
            F.sequence(F.col("as_of_date"), F.lit(end), F.make_dt_interval(F.lit(cadence_days)))
        ).alias("as_of_date")
    )
    return days.select(end_of_day(F.col("as_of_date")).alias("as_of_ts"), "as_of_date")


def as_utc(moment: datetime) -> datetime:
    """``moment`` made time-zone aware: naive values are taken as UTC (the session time zone).

    PySpark would otherwise read a naive datetime in the Python process's local time zone.
    """
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


_TS_SCHEMA = StructType([StructField("as_of_ts", TimestampType(), False)])


def as_of_timestamps(spark: SparkSession, timestamps: Sequence[datetime]) -> DataFrame:
    """As-of points at arbitrary timestamps (e.g. a scoring time).

    Args:
        spark: the session that owns the result.
        timestamps: the as-of timestamps (naive values are taken as UTC).

    Returns:
        Columns ``as_of_ts`` and ``as_of_date`` (the date of ``as_of_ts``).

    Raises:
        ValueError: no timestamps.
    """
    if not timestamps:
        raise ValueError("at least one as-of timestamp is needed")
    points = local_frame(spark, [(as_utc(t),) for t in timestamps], _TS_SCHEMA)
    return points.select("as_of_ts", F.to_date("as_of_ts").alias("as_of_date"))


# --------------------------------------------------------------------------------------------
# Invoice activity: the customer's invoices, one row per (invoice, timestamp)
# --------------------------------------------------------------------------------------------


def invoice_activity(transactions: DataFrame) -> DataFrame:
    """Collapse transaction lines to one row per customer, invoice and line timestamp.

    Steps: drop lines without a customer (not attributable) → flag each stock code's first
    purchase line per customer → sum per invoice part → flag an invoice's first timestamp.

    Args:
        transactions: ``silver/transactions`` (docs/CONTRACTS.md).

    Returns:
        :data:`ACTIVITY_COLUMNS`: ``starts_invoice`` is 1 on the invoice's earliest timestamp
        (0 otherwise), ``amount`` the net line amount (exact ``decimal(38,6)``), ``quantity``
        the summed quantity,
        ``new_products`` the stock codes the customer bought for the first time (purchases
        only; ties between invoices at the same timestamp go to the smaller invoice number),
        ``country`` the alphabetically first country on the part's lines. Hash-partitioned by
        ``customer_id``.

    Raises:
        MissingColumnsError: a silver column is missing.
    """
    require_columns(transactions, _TRANSACTION_COLUMNS, "silver/transactions")
    # One shuffle by customer serves every later step (windows, part sums, the as-of grid).
    lines = (
        transactions.where(F.col("customer_id").isNotNull())
        .select(*_TRANSACTION_COLUMNS)
        .repartition("customer_id")
    )
    is_purchase_line = ~F.col("is_cancellation") & F.col("stock_code").isNotNull()
    first_buy = Window.partitionBy("customer_id", "stock_code", is_purchase_line).orderBy(
        "invoice_ts", "invoice_no"
    )
    lines = lines.withColumn(
        "is_new_product",
        F.when(is_purchase_line & (F.row_number().over(first_buy) == 1), 1).otherwise(0),
    )
    parts = lines.groupBy("customer_id", "invoice_no", "invoice_ts", "is_cancellation").agg(
        F.sum(F.col("line_amount").cast(_LINE_MONEY)).cast(_MONEY).alias("amount"),
        F.sum("quantity").cast("long").alias("quantity"),
        F.sum("is_new_product").cast("long").alias("new_products"),
        F.min("country").alias("country"),
    )
    # Flag the invoice's first timestamp on the (small) per-part frame, not on the lines.
    first_part = F.min("invoice_ts").over(Window.partitionBy("customer_id", "invoice_no"))
    return parts.withColumn(
        "starts_invoice", F.when(F.col("invoice_ts") == first_part, 1).otherwise(0)
    ).select(*ACTIVITY_COLUMNS)


# --------------------------------------------------------------------------------------------
# As-of aggregation
# --------------------------------------------------------------------------------------------


def aggregate_activity_as_of(
    activity: DataFrame, points: DataFrame, windows: Sequence[int]
) -> DataFrame:
    """Aggregate each customer's invoice activity up to every as-of point.

    Steps: join each invoice part to every point at or after it (points are few: broadcast)
    → sum per (customer, point, country) → roll countries up per (customer, point), keeping the
    country with most invoices (ties: alphabetically first). One pass for any number of points.

    Args:
        activity: :func:`invoice_activity` output.
        points: ``as_of_ts`` (timestamp) and ``as_of_date`` (date), e.g. :func:`as_of_points`.
        windows: trailing window lengths in days, e.g. ``[30, 90, 365]``.

    Returns:
        One row per customer with any invoice by the point: ``customer_id``, ``as_of_ts``,
        ``as_of_date``, ``first_purchase_ts``, ``last_purchase_ts``, ``frequency``, ``invoices``,
        ``cancelled_invoices``, ``monetary``, ``purchase_amount``, ``purchase_quantity``,
        ``distinct_products``, ``spend_<w>d``, ``orders_<w>d``, ``country``.

    Raises:
        MissingColumnsError: an input column is missing.
        ValueError: a window is not a positive number of days.
    """
    require_columns(activity, ACTIVITY_COLUMNS, "invoice activity")
    require_columns(points, ("as_of_ts", "as_of_date"), "as-of points")
    if any(int(w) <= 0 for w in windows):
        raise ValueError(f"windows must be positive numbers of days, got {list(windows)}")
    # invoice_activity's output is hash-partitioned by customer: the broadcast join keeps that,
    # so both aggregations below run without shuffling the (large) customer x point grid.
    grid = activity.join(
        F.broadcast(points.select("as_of_ts", "as_of_date")),
        F.col("invoice_ts") <= F.col("as_of_ts"),
        "inner",
    )
    purchase = ~F.col("is_cancellation")
    starts = F.col("starts_invoice") == 1
    keys = ["customer_id", "as_of_ts", "as_of_date"]
    zero_money = F.lit(0).cast(_MONEY)

    def count_if(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    def in_window(days: int) -> Column:
        return F.col("invoice_ts") > F.col("as_of_ts") - F.make_dt_interval(F.lit(int(days)))

    per_country = grid.groupBy(*keys, "country").agg(
        F.min(F.when(purchase, F.col("invoice_ts"))).alias("first_purchase_ts"),
        F.max(F.when(purchase, F.col("invoice_ts"))).alias("last_purchase_ts"),
        count_if(purchase & starts).alias("frequency"),
        count_if(starts).alias("invoices"),
        count_if(~purchase & starts).alias("cancelled_invoices"),
        F.sum("amount").alias("monetary"),
        F.sum(F.when(purchase, F.col("amount")).otherwise(zero_money)).alias("purchase_amount"),
        F.sum(F.when(purchase, F.col("quantity")).otherwise(0))
        .cast("long")
        .alias("purchase_quantity"),
        F.sum("new_products").cast("long").alias("distinct_products"),
        *[
            F.sum(F.when(in_window(w), F.col("amount")).otherwise(zero_money)).alias(f"spend_{w}d")
            for w in windows
        ],
        *[count_if(purchase & starts & in_window(w)).alias(f"orders_{w}d") for w in windows],
    )
    summed = [
        "frequency",
        "invoices",
        "cancelled_invoices",
        "monetary",
        "purchase_amount",
        "purchase_quantity",
        "distinct_products",
        *[f"spend_{w}d" for w in windows],
        *[f"orders_{w}d" for w in windows],
    ]
    money = {"monetary", "purchase_amount", *[f"spend_{w}d" for w in windows]}
    # min over (-invoices, country): most invoices first, then the alphabetically first country.
    top_country = F.min(
        F.when(
            F.col("country").isNotNull(),
            F.struct((-F.col("invoices")).alias("rank"), F.col("country").alias("country")),
        )
    )
    return per_country.groupBy(*keys).agg(
        F.min("first_purchase_ts").alias("first_purchase_ts"),
        F.max("last_purchase_ts").alias("last_purchase_ts"),
        *[
            F.sum(c).cast("double" if c in money else per_country.schema[c].dataType).alias(c)
            for c in summed
        ],
        top_country.getField("country").alias("country"),
    )


# --------------------------------------------------------------------------------------------
# Derived features (each from aggregated columns)
# --------------------------------------------------------------------------------------------


def _whole_days(later: Column, earlier: Column) -> Column:
    micros = F.unix_micros(later) - F.unix_micros(earlier)
    return F.floor(micros / F.lit(_MICROS_PER_DAY)).cast("int")


def with_recency_days(df: DataFrame, output: str = "recency_days") -> DataFrame:
    """Add whole days from ``last_purchase_ts`` to ``as_of_ts`` (null without a purchase).

    Args:
        df: a frame with ``as_of_ts`` and ``last_purchase_ts``.
        output: the new column (int).

    Returns:
        ``df`` with ``output``.
    """
    return df.withColumn(output, _whole_days(F.col("as_of_ts"), F.col("last_purchase_ts")))


def with_tenure_days(df: DataFrame, output: str = "tenure_days") -> DataFrame:
    """Add whole days from ``first_purchase_ts`` to ``as_of_ts`` (null without a purchase).

    Args:
        df: a frame with ``as_of_ts`` and ``first_purchase_ts``.
        output: the new column (int).

    Returns:
        ``df`` with ``output``.
    """
    return df.withColumn(output, _whole_days(F.col("as_of_ts"), F.col("first_purchase_ts")))


def with_avg_basket(df: DataFrame) -> DataFrame:
    """Add ``avg_basket_value`` and ``avg_basket_size`` per purchase (null without a purchase).

    Args:
        df: a frame with ``frequency``, ``purchase_amount`` and ``purchase_quantity``.

    Returns:
        ``df`` with ``avg_basket_value`` and ``avg_basket_size`` (double).
    """
    freq = F.col("frequency")
    return df.withColumn(
        "avg_basket_value", F.when(freq > 0, F.col("purchase_amount") / freq).cast("double")
    ).withColumn(
        "avg_basket_size", F.when(freq > 0, F.col("purchase_quantity") / freq).cast("double")
    )


def with_cancellation_rate(df: DataFrame, output: str = "cancellation_rate") -> DataFrame:
    """Add cancelled invoices / all invoices (null when there is no invoice at all).

    Args:
        df: a frame with ``cancelled_invoices`` and ``invoices``.
        output: the new column (double).

    Returns:
        ``df`` with ``output``.
    """
    total = F.col("invoices")
    return df.withColumn(
        output, F.when(total > 0, F.col("cancelled_invoices") / total).cast("double")
    )


_SCORED = "_rfm_scored"


def _quantile_score(value: str, ascending_is_better: bool, quantiles: int) -> Column:
    """ceil(q * k / n): k = scored customers at the same point no better than this one."""
    scored = F.col("frequency") > 0
    group = Window.partitionBy("as_of_ts", _SCORED)
    # Order from worst to best so that cume_dist counts the customers no better than this one.
    order = F.col(value).asc() if ascending_is_better else F.col(value).desc()
    ranked = group.orderBy(order)
    n = F.count(F.lit(1)).over(group)
    k = F.round(F.cume_dist().over(ranked) * n).cast("long")  # exact integer, ties included
    score = F.floor((F.lit(quantiles) * k + n - F.lit(1)) / n)  # integer ceil(q * k / n)
    return F.when(scored, score).cast("int")


def with_rfm_scores(df: DataFrame, quantiles: int) -> DataFrame:
    """Add ``r_score``, ``f_score``, ``m_score`` (1..quantiles, higher = better) and ``rfm_score``.

    Customers are scored against the others with a purchase at the same ``as_of_ts``;
    customers without a purchase (frequency 0) get null scores. Ties share a score (see the
    module docstring).

    Args:
        df: a frame with ``as_of_ts``, ``recency_days``, ``frequency`` and ``monetary``.
        quantiles: number of score levels (5 = quintiles).

    Returns:
        ``df`` with the four int score columns.

    Raises:
        ValueError: ``quantiles`` < 1.
    """
    if quantiles < 1:
        raise ValueError(f"quantiles must be >= 1, got {quantiles}")
    return (
        df.withColumn(_SCORED, F.col("frequency") > 0)  # one shuffle for the three windows
        .withColumn("r_score", _quantile_score("recency_days", False, quantiles))
        .withColumn("f_score", _quantile_score("frequency", True, quantiles))
        .withColumn("m_score", _quantile_score("monetary", True, quantiles))
        .withColumn(
            "rfm_score", (F.col("r_score") + F.col("f_score") + F.col("m_score")).cast("int")
        )
        .drop(_SCORED)
    )


def build_customer_features(
    transactions: DataFrame, points: DataFrame, *, windows: Sequence[int], rfm_quantiles: int
) -> DataFrame:
    """Customer features as of every point: the one code path for gold, training and scoring.

    Args:
        transactions: ``silver/transactions``.
        points: as-of points (:func:`as_of_points` or :func:`as_of_timestamps`).
        windows: trailing window lengths in days.
        rfm_quantiles: RFM score levels.

    Returns:
        :func:`customer_feature_columns` columns: one row per customer and point, for the
        customers with any invoice by that point.

    Raises:
        MissingColumnsError: an input column is missing.
        ValueError: invalid windows or quantiles.
    """
    return (
        aggregate_activity_as_of(invoice_activity(transactions), points, windows)
        .transform(with_recency_days)
        .transform(with_tenure_days)
        .transform(with_avg_basket)
        .transform(with_cancellation_rate)
        .transform(with_rfm_scores, rfm_quantiles)
        .select(*customer_feature_columns(windows))
    )
