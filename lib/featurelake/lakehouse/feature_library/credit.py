"""Credit-client features (UCI default of credit card clients, ``silver/credit_clients``).

Month numbering follows the silver contract: month 1 is the most recent month (September 2005)
and month 6 the oldest (April 2005); ``pay_status_k``, ``bill_amt_k`` and ``pay_amt_k`` refer
to month k.

Rules (each documented on its function):

* **age bin**: edges ``e0 < e1 < ... < en`` give labels ``"<e0"``, ``"e0-(e1-1)"``, ...,
  ``"en+"``; a null age has a null bin.
* **bill trend**: least-squares slope of ``bill_amt`` against a month index x that grows toward
  the most recent month (x = 6 - k for month k, so month 6 has x = 0 and month 1 has x = 5).
  A positive slope means bills rise toward the most recent month. Null if any bill is null.
* **pay ratio k**: ``pay_amt_k / bill_amt_k`` when the bill is positive; when the bill is zero
  or negative (nothing owed, or a credit balance) the ratio is a configured constant
  (``zero_bill_pay_ratio``, 1.0 = "fully paid"). Null when the bill or the payment is null.
  Not capped: overpaying gives a ratio above 1.
* **utilisation k**: ``bill_amt_k / limit_bal``; null when the limit is null or not positive.
  A negative bill (credit balance) gives a negative utilisation.
* **average utilisation**: mean of the non-null monthly utilisations; null when all are null.
* **delinquent months**: months with ``pay_status_k > 0`` (payment delayed k months);
  -2, -1 and 0 (no consumption, paid duly, revolving) are not delinquent. Null statuses are
  ignored; null when every status is null.
* **worst delay**: ``max(pay_status_k)`` floored at 0; null when every status is null.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.lakehouse.feature_library import require_columns

__all__ = [
    "CREDIT_FEATURE_COLUMNS",
    "CREDIT_LABEL_COLUMNS",
    "MONTHS",
    "age_bin_labels",
    "build_credit_features",
    "select_credit_features",
    "select_credit_labels",
    "with_age_bin",
    "with_avg_utilization",
    "with_bill_trend",
    "with_delinquent_months",
    "with_pay_ratios",
    "with_utilizations",
    "with_worst_delay",
]

#: The months of the silver schema, most recent first (a property of the data set, not a knob).
MONTHS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

PAY_STATUS = [f"pay_status_{k}" for k in MONTHS]
BILL_AMT = [f"bill_amt_{k}" for k in MONTHS]
PAY_AMT = [f"pay_amt_{k}" for k in MONTHS]
PAY_RATIO = [f"pay_ratio_{k}" for k in MONTHS]
UTILIZATION = [f"utilization_{k}" for k in MONTHS]

#: Columns of ``gold/credit_features`` in contract order (docs/CONTRACTS.md).
CREDIT_FEATURE_COLUMNS: tuple[str, ...] = (
    "id",
    "limit_bal",
    "age",
    "age_bin",
    "sex",
    "education",
    "marriage",
    "bill_trend",
    *PAY_RATIO,
    *UTILIZATION,
    "avg_utilization",
    "delinquent_months",
    "worst_delay",
    *PAY_STATUS,
    *BILL_AMT,
    *PAY_AMT,
)
#: Columns of ``gold/credit_labels``.
CREDIT_LABEL_COLUMNS: tuple[str, ...] = ("id", "default_next_month")

_SILVER_COLUMNS = (
    "id",
    "limit_bal",
    "sex",
    "education",
    "marriage",
    "age",
    *PAY_STATUS,
    *BILL_AMT,
    *PAY_AMT,
)


def age_bin_labels(edges: Sequence[int]) -> list[str]:
    """The labels of the bins that ``edges`` define, youngest first.

    Args:
        edges: strictly increasing integer ages; ``[18, 26]`` gives ``["<18", "18-25", "26+"]``.

    Returns:
        ``len(edges) + 1`` labels.

    Raises:
        ValueError: ``edges`` is empty or not strictly increasing.
    """
    edges = list(edges)
    if not edges:
        raise ValueError("age bin edges must not be empty")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"age bin edges must be strictly increasing, got {edges}")
    inner = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]}", *inner, f"{edges[-1]}+"]


def with_age_bin(
    df: DataFrame, edges: Sequence[int], age: str = "age", output: str = "age_bin"
) -> DataFrame:
    """Add the age bin label: ``[e_i, e_{i+1})`` is labelled ``"e_i-(e_{i+1}-1)"``.

    Ages below the first edge get ``"<e0"``, ages at or above the last edge ``"en+"``, a null
    age a null bin.

    Args:
        df: a frame with an integer ``age`` column.
        edges: strictly increasing bin edges (from conf).
        age: the age column.
        output: the new column.

    Returns:
        ``df`` with ``output`` (string).

    Raises:
        ValueError: invalid edges (see :func:`age_bin_labels`).
    """
    labels = age_bin_labels(edges)
    col = F.col(age)
    expr = F.when(col.isNull(), F.lit(None).cast("string"))
    for edge, label in zip(edges, labels, strict=False):
        expr = expr.when(col < edge, F.lit(label))
    return df.withColumn(output, expr.otherwise(F.lit(labels[-1])))


def _bill_trend(bills_most_recent_first: Sequence[Column]) -> Column:
    """Least-squares slope of the bills against x = n - k (x grows toward the recent month)."""
    n = len(bills_most_recent_first)
    xs = [n - k for k in range(1, n + 1)]
    x_mean = sum(xs) / n
    denominator = sum((x - x_mean) ** 2 for x in xs)
    # sum((x - x_mean) * (y - y_mean)) == sum((x - x_mean) * y) because sum(x - x_mean) == 0.
    pairs = zip(xs, bills_most_recent_first, strict=True)
    numerator = sum(((x - x_mean) * y for x, y in pairs), F.lit(0.0))
    return (numerator / F.lit(denominator)).cast("double")


def with_bill_trend(df: DataFrame, output: str = "bill_trend") -> DataFrame:
    """Add the least-squares slope of ``bill_amt_1..6`` per month (positive = rising bills).

    The month index is x = 6 - k for ``bill_amt_k``: the oldest month (6) has x = 0 and the most
    recent (1) has x = 5, so a positive slope means bills grow toward the most recent month.
    Null when any of the six bills is null.

    Args:
        df: a frame with ``bill_amt_1..bill_amt_6``.
        output: the new column (double).

    Returns:
        ``df`` with ``output``.
    """
    return df.withColumn(output, _bill_trend([F.col(c) for c in BILL_AMT]))


def with_pay_ratios(df: DataFrame, zero_bill_ratio: float) -> DataFrame:
    """Add ``pay_ratio_k = pay_amt_k / bill_amt_k`` for each month, defined for zero bills.

    A bill of zero or less (nothing owed, or a credit balance) gives ``zero_bill_ratio``
    whatever was paid; a null bill or payment gives null. Ratios are not capped.

    Args:
        df: a frame with ``bill_amt_1..6`` and ``pay_amt_1..6``.
        zero_bill_ratio: the ratio when the bill is <= 0 (from conf; 1.0 = fully paid).

    Returns:
        ``df`` with ``pay_ratio_1..pay_ratio_6`` (double).
    """
    for bill, pay, out in zip(BILL_AMT, PAY_AMT, PAY_RATIO, strict=True):
        b, p = F.col(bill), F.col(pay)
        ratio = (
            F.when(b.isNull() | p.isNull(), F.lit(None).cast("double"))
            .when(b <= 0, F.lit(float(zero_bill_ratio)))
            .otherwise(p / b)
        )
        df = df.withColumn(out, ratio.cast("double"))
    return df


def with_utilizations(df: DataFrame) -> DataFrame:
    """Add ``utilization_k = bill_amt_k / limit_bal`` for each month.

    Null when the limit is null or not positive (no meaningful utilisation) or the bill is null.
    A negative bill (credit balance) gives a negative utilisation.

    Args:
        df: a frame with ``limit_bal`` and ``bill_amt_1..6``.

    Returns:
        ``df`` with ``utilization_1..utilization_6`` (double).
    """
    limit = F.col("limit_bal")
    for bill, out in zip(BILL_AMT, UTILIZATION, strict=True):
        df = df.withColumn(out, F.when(limit > 0, F.col(bill) / limit).cast("double"))
    return df


def with_avg_utilization(df: DataFrame, output: str = "avg_utilization") -> DataFrame:
    """Add the mean of the non-null ``utilization_1..6``; null when all six are null.

    Args:
        df: a frame with ``utilization_1..6`` (see :func:`with_utilizations`).
        output: the new column (double).

    Returns:
        ``df`` with ``output``.
    """
    cols = [F.col(c) for c in UTILIZATION]
    total = sum((F.coalesce(c, F.lit(0.0)) for c in cols), F.lit(0.0))
    present = sum((c.isNotNull().cast("int") for c in cols), F.lit(0))
    return df.withColumn(output, F.when(present > 0, total / present).cast("double"))


def with_delinquent_months(df: DataFrame, output: str = "delinquent_months") -> DataFrame:
    """Add the number of months with ``pay_status_k > 0`` (a payment delay).

    Null statuses are ignored; the result is null only when all six statuses are null.

    Args:
        df: a frame with ``pay_status_1..6``.
        output: the new column (int).

    Returns:
        ``df`` with ``output``.
    """
    cols = [F.col(c) for c in PAY_STATUS]
    count = sum((F.when(c > 0, 1).otherwise(0) for c in cols), F.lit(0))
    any_known = F.greatest(*cols).isNotNull()
    return df.withColumn(output, F.when(any_known, count).cast("int"))


def with_worst_delay(df: DataFrame, output: str = "worst_delay") -> DataFrame:
    """Add ``max(pay_status_1..6)`` floored at 0 (0 = never late); null when all are null.

    Args:
        df: a frame with ``pay_status_1..6``.
        output: the new column (int).

    Returns:
        ``df`` with ``output``.
    """
    worst = F.greatest(*[F.col(c) for c in PAY_STATUS])  # greatest skips nulls
    return df.withColumn(output, F.when(worst.isNotNull(), F.greatest(worst, F.lit(0))).cast("int"))


def build_credit_features(
    clients: DataFrame, *, age_bin_edges: Sequence[int], zero_bill_pay_ratio: float
) -> DataFrame:
    """All credit features plus the silver columns they come from (label included).

    Args:
        clients: ``silver/credit_clients`` (docs/CONTRACTS.md).
        age_bin_edges: strictly increasing age bin edges.
        zero_bill_pay_ratio: the pay ratio of a month whose bill is <= 0.

    Returns:
        The silver columns plus ``age_bin``, ``bill_trend``, ``pay_ratio_1..6``,
        ``utilization_1..6``, ``avg_utilization``, ``delinquent_months``, ``worst_delay``.
        Use :func:`select_credit_features` / :func:`select_credit_labels` to split.

    Raises:
        MissingColumnsError: a silver column is missing.
        ValueError: invalid age bin edges.
    """
    require_columns(clients, _SILVER_COLUMNS, "silver/credit_clients")
    return (
        clients.transform(with_age_bin, age_bin_edges)
        .transform(with_bill_trend)
        .transform(with_pay_ratios, zero_bill_pay_ratio)
        .transform(with_utilizations)
        .transform(with_avg_utilization)
        .transform(with_delinquent_months)
        .transform(with_worst_delay)
    )


def select_credit_features(features: DataFrame) -> DataFrame:
    """The ``gold/credit_features`` columns, in contract order, without the label.

    Raises:
        MissingColumnsError: a feature column is missing (run :func:`build_credit_features`).
    """
    require_columns(features, CREDIT_FEATURE_COLUMNS, "credit features")
    return features.select(*CREDIT_FEATURE_COLUMNS)


def select_credit_labels(clients: DataFrame) -> DataFrame:
    """The ``gold/credit_labels`` columns: ``id`` and ``default_next_month``.

    Raises:
        MissingColumnsError: ``id`` or ``default_next_month`` is missing.
    """
    require_columns(clients, CREDIT_LABEL_COLUMNS, "silver/credit_clients")
    return clients.select(*CREDIT_LABEL_COLUMNS)
