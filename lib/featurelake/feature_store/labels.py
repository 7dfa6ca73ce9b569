"""Churn labels, built point in time from ``silver/transactions``.

For an entity row (customer ``c``, time ``t``) and a horizon of ``N`` days:

* ``churned = 1`` when ``c`` has **no** purchase in ``(t, t + N days]`` and ``0`` when it has
  at least one. A purchase is a transaction line of ``c`` with ``is_cancellation = false``
  (its ``invoice_ts`` is the purchase time); cancellations and lines without a customer never
  count. The window excludes ``t`` itself, so a purchase at exactly ``t`` belongs to the
  features side (event time <= t), never to the label.
* The label needs the whole window observed. The data end is the latest ``invoice_ts`` in the
  transactions (or an explicit ``data_end``). When ``t + N days > data_end`` and no purchase
  was seen in the part that is observed, the outcome is unknown: ``churned`` is **null** and
  ``label_status = "censored"`` - never silently 1. (A purchase seen in the observed part
  proves ``churned = 0``, so such a row stays ``observed``.) Drop censored rows with
  :func:`observed_labels` before training; keep them to see how many there are.
* ``label_status = "observed"`` otherwise (``"no_timestamp"``, label null, when ``t`` is
  null). Every entity row is kept, duplicates included.

The join is a range join bounded by the horizon: purchases are bucketed by
``floor(invoice_ts / N days)`` and each entity row looks in the two buckets its window can
touch, on ``customer_id`` (an equi-join) - no cross product.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.core.errors import UserError, require_columns

__all__ = ["CENSORED", "NO_TIMESTAMP", "OBSERVED", "observed_labels", "with_churn_label"]

OBSERVED = "observed"
CENSORED = "censored"
NO_TIMESTAMP = "no_timestamp"
_DAY_US = 86_400 * 1_000_000
_ROW = "__fl_label_row"
_T = "__fl_label_t"
_BUCKET = "__fl_label_bucket"
_FIRST = "__fl_next_purchase"
_END = "__fl_data_end"


def _micros(column: Column) -> Column:
    return F.unix_micros(column.cast("timestamp"))


def _floor_div(column: Column, width: int) -> Column:
    return ((column - F.pmod(column, F.lit(width))) / F.lit(width)).cast("long")


def with_churn_label(
    entity_df: DataFrame,
    transactions: DataFrame,
    *,
    horizon_days: int,
    entity_timestamp_column: str = "event_timestamp",
    customer_column: str = "customer_id",
    label_column: str = "churned",
    status_column: str = "label_status",
    data_end: datetime | None = None,
) -> DataFrame:
    """Add a churn label (no purchase in the ``horizon_days`` after ``t``) to each entity row.

    Args:
        entity_df: rows with ``customer_column`` and ``entity_timestamp_column`` (timestamp).
        transactions: ``silver/transactions`` (``customer_id``, ``invoice_ts``,
            ``is_cancellation``).
        horizon_days: N, the length of the window after ``t``.
        entity_timestamp_column: the time ``t`` of each entity row.
        customer_column: the entity rows' customer id column (string, as in silver).
        label_column: name of the label column (int: 1 churned, 0 not, null censored).
        status_column: name of the status column (``observed`` or ``censored``).
        data_end: the end of the observed data; default the latest ``invoice_ts``.

    Returns:
        ``entity_df`` with the label and status columns; every row kept.

    Raises:
        ValueError: ``horizon_days`` is not positive or output columns exist already.
        MissingColumnsError: a needed column is missing.
    """
    if horizon_days <= 0:
        raise UserError(f"horizon_days must be positive, got {horizon_days}")
    for name, df, columns in (
        ("entity rows", entity_df, [customer_column, entity_timestamp_column]),
        ("transactions", transactions, ["customer_id", "invoice_ts", "is_cancellation"]),
    ):
        require_columns(df.columns, columns, name)
    clash = [c for c in (label_column, status_column) if c in entity_df.columns]
    if clash:
        raise UserError(f"entity rows already have columns {clash}")
    width = horizon_days * _DAY_US

    # Purchases: one row per (customer, purchase time); cancellations and anonymous lines out.
    purchases = (
        transactions.where(
            ~F.col("is_cancellation")
            & F.col("customer_id").isNotNull()
            & F.col("invoice_ts").isNotNull()
        )
        .select(F.col("customer_id").alias("__fl_c"), _micros(F.col("invoice_ts")).alias("__fl_p"))
        .distinct()
        .withColumn(_BUCKET + "_r", _floor_div(F.col("__fl_p"), width))
    )
    if data_end is None:
        end = transactions.agg(F.max(_micros(F.col("invoice_ts"))).alias(_END))
    else:
        aware = data_end if data_end.tzinfo else data_end.replace(tzinfo=timezone.utc)
        delta = aware - datetime(1970, 1, 1, tzinfo=timezone.utc)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        end = entity_df.sparkSession.range(1).select(F.lit(micros).cast("long").alias(_END))

    # Entity rows: an id per row (duplicates stay apart), copied into the two buckets the
    # window (t, t + N] can touch, then left-joined to the purchases in the window and
    # collapsed back to one row per id (one plan branch, so the ids are computed once).
    bucket = _floor_div(F.col(_T), width)
    probes = (
        entity_df.withColumn(_ROW, F.monotonically_increasing_id())
        .select(
            _ROW,
            F.col(customer_column).alias("__fl_key"),
            _micros(F.col(entity_timestamp_column)).alias(_T),
            F.struct(*[F.col(f"`{c}`") for c in entity_df.columns]).alias("__fl_entity"),
        )
        .withColumn(_BUCKET, F.explode(F.array(bucket, bucket + 1)))
    )
    found = (
        probes.join(
            purchases,
            (F.col("__fl_key") == F.col("__fl_c"))
            & (F.col(_BUCKET) == F.col(_BUCKET + "_r"))
            & (F.col("__fl_p") > F.col(_T))
            & (F.col("__fl_p") <= F.col(_T) + F.lit(width)),
            "left",
        )
        .groupBy(_ROW)
        .agg(
            F.first("__fl_entity").alias("__fl_entity"),
            F.first(_T).alias(_T),
            F.min("__fl_p").alias(_FIRST),
        )
    )
    labelled = found.crossJoin(F.broadcast(end))
    observed_window = (F.col(_T) + F.lit(width)) <= F.col(_END)
    label = (
        F.when(F.col(_T).isNull(), F.lit(None))
        .when(F.col(_FIRST).isNotNull(), F.lit(0))
        .when(observed_window, F.lit(1))
        .otherwise(F.lit(None))
        .cast("int")
    )
    status = (
        F.when(F.col(_T).isNull(), F.lit(NO_TIMESTAMP))
        .when(label.isNull(), F.lit(CENSORED))
        .otherwise(F.lit(OBSERVED))
    )
    return labelled.select(
        *[F.col(f"__fl_entity.`{c}`").alias(c) for c in entity_df.columns],
        label.alias(label_column),
        status.alias(status_column),
    )


def observed_labels(labelled: DataFrame, status_column: str = "label_status") -> DataFrame:
    """Only the rows whose label window was fully observed (drops ``censored`` rows)."""
    return labelled.where(F.col(status_column) == OBSERVED)
