"""Feature metadata: what each gold column means and where it comes from.

Every gold write stores one row per column in ``gold/_feature_metadata`` (table, Delta version,
feature, type, description, source columns, preprocessing config as JSON), and the same
information in the commit's metadata. The type is read from the written frame's schema, and a
column without a description (or a description without a column) is an error, so the metadata
cannot drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

from featurelake.core.errors import DataError
from featurelake.lakehouse.feature_library.credit import BILL_AMT, MONTHS, PAY_AMT, PAY_STATUS

__all__ = [
    "FEATURE_METADATA_SCHEMA",
    "FeatureSpec",
    "MetadataMismatchError",
    "credit_feature_specs",
    "credit_label_specs",
    "customer_feature_specs",
    "describe_columns",
    "feature_metadata_rows",
]


class MetadataMismatchError(DataError, ValueError):
    """The described features and the frame's columns differ."""


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """One gold column: its name, meaning and the silver columns it is computed from.

    Raises:
        ValueError: an empty name or description.
    """

    name: str
    description: str
    source_columns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.description:
            raise ValueError(f"a feature needs a name and a description, got {self!r}")


#: Schema of ``gold/_feature_metadata`` (docs/CONTRACTS.md).
FEATURE_METADATA_SCHEMA = StructType(
    [
        StructField("table", StringType(), False),
        StructField("delta_version", LongType(), False),
        StructField("feature", StringType(), False),
        StructField("type", StringType(), False),
        StructField("description", StringType(), False),
        StructField("source_columns", ArrayType(StringType()), False),
        StructField("preprocessing", StringType(), False),
    ]
)


def _spec(name: str, description: str, *sources: str) -> FeatureSpec:
    return FeatureSpec(name=name, description=description, source_columns=tuple(sources))


def credit_feature_specs() -> list[FeatureSpec]:
    """Descriptions of the ``gold/credit_features`` columns."""
    specs = [
        _spec("id", "client id (key)", "id"),
        _spec("limit_bal", "credit limit (NT dollars)", "limit_bal"),
        _spec("age", "age in years", "age"),
        _spec(
            "age_bin", "age band from credit.age_bin_edges: '<e0', 'e0-(e1-1)', ..., 'en+'", "age"
        ),
        _spec("sex", "sex code (1 male, 2 female)", "sex"),
        _spec("education", "education code (4 = other, 0/5/6 normalised in silver)", "education"),
        _spec("marriage", "marital status code (3 = other, 0 normalised in silver)", "marriage"),
        _spec(
            "bill_trend",
            "least-squares slope of bill_amt per month; x = 6 - k so positive "
            "means bills rise toward the most recent month; null if any bill is null",
            *BILL_AMT,
        ),
    ]
    specs += [
        _spec(
            f"pay_ratio_{k}",
            f"pay_amt_{k} / bill_amt_{k}; credit.zero_bill_pay_ratio when the "
            "bill is <= 0; null when either is null; not capped",
            f"pay_amt_{k}",
            f"bill_amt_{k}",
        )
        for k in MONTHS
    ]
    specs += [
        _spec(
            f"utilization_{k}",
            f"bill_amt_{k} / limit_bal; null when the limit is not positive",
            f"bill_amt_{k}",
            "limit_bal",
        )
        for k in MONTHS
    ]
    specs += [
        _spec("avg_utilization", "mean of the non-null utilization_1..6", *BILL_AMT, "limit_bal"),
        _spec("delinquent_months", "months with pay_status > 0 (payment delayed)", *PAY_STATUS),
        _spec("worst_delay", "max pay_status floored at 0 (months of delay)", *PAY_STATUS),
    ]
    specs += [
        _spec(c, f"repayment status of month {k} (1 = most recent)", c)
        for k, c in zip(MONTHS, PAY_STATUS, strict=True)
    ]
    specs += [
        _spec(c, f"bill amount of month {k} (1 = most recent)", c)
        for k, c in zip(MONTHS, BILL_AMT, strict=True)
    ]
    specs += [
        _spec(c, f"amount paid in month {k} (1 = most recent)", c)
        for k, c in zip(MONTHS, PAY_AMT, strict=True)
    ]
    return specs


def credit_label_specs() -> list[FeatureSpec]:
    """Descriptions of the ``gold/credit_labels`` columns."""
    return [
        _spec("id", "client id (key)", "id"),
        _spec(
            "default_next_month",
            "label: 1 if the client defaulted in October 2005",
            "default_next_month",
        ),
    ]


def customer_feature_specs(windows: Sequence[int]) -> list[FeatureSpec]:
    """Descriptions of the ``gold/customer_features(_daily)`` columns for the given windows."""
    tx = ("invoice_no", "invoice_ts", "customer_id", "is_cancellation")
    amount = (*tx, "line_amount")
    score = (
        "1..q among customers with a purchase at as_of_ts (5 = best); ceil(q * cume_dist); "
        "ties share a score; null without a purchase"
    )
    return [
        _spec("customer_id", "customer id (key)", "customer_id"),
        _spec(
            "as_of_ts",
            "features use only lines with invoice_ts <= as_of_ts (snapshots: end of as_of_date)",
            "invoice_ts",
        ),
        _spec("as_of_date", "date of as_of_ts (partition of the daily table)", "invoice_ts"),
        _spec("recency_days", "whole days since the last non-cancelled invoice; null if none", *tx),
        _spec("frequency", "distinct non-cancelled invoices", *tx),
        _spec(
            "monetary", "net spend: sum of line_amount, cancellations (negative) included", *amount
        ),
        _spec("r_score", f"recency score: {score}", *tx),
        _spec("f_score", f"frequency score: {score}", *tx),
        _spec("m_score", f"monetary score: {score}", *amount),
        _spec("rfm_score", "r_score + f_score + m_score", *amount),
        _spec("tenure_days", "whole days since the first non-cancelled invoice; null if none", *tx),
        _spec("avg_basket_value", "spend on non-cancelled invoices / their number", *amount),
        _spec(
            "avg_basket_size", "quantity on non-cancelled invoices / their number", *tx, "quantity"
        ),
        _spec(
            "distinct_products",
            "distinct stock codes bought on non-cancelled invoices",
            *tx,
            "stock_code",
        ),
        _spec("cancellation_rate", "cancelled invoices / all invoices", *tx),
        *[
            _spec(
                f"spend_{w}d",
                f"net spend with as_of_ts - {w} days < invoice_ts <= as_of_ts; 0 when none",
                *amount,
            )
            for w in windows
        ],
        *[
            _spec(
                f"orders_{w}d",
                f"non-cancelled invoices begun in the trailing {w} days; 0 when none",
                *tx,
            )
            for w in windows
        ],
        _spec(
            "country",
            "country of most of the customer's invoices; ties: alphabetically first",
            "customer_id",
            "invoice_no",
            "country",
        ),
    ]


def describe_columns(df: DataFrame, specs: Sequence[FeatureSpec]) -> list[dict[str, Any]]:
    """One record per column of ``df``: feature, type (from the schema), description, sources.

    Args:
        df: the frame about to be written (only its schema is used).
        specs: the descriptions of its columns.

    Returns:
        Records in column order with keys feature, type, description, source_columns.

    Raises:
        MetadataMismatchError: a column has no spec or a spec has no column.
    """
    by_name = {s.name: s for s in specs}
    columns = [f.name for f in df.schema.fields]
    undescribed = [c for c in columns if c not in by_name]
    absent = [n for n in by_name if n not in columns]
    if undescribed or absent:
        raise MetadataMismatchError(
            f"feature metadata does not match the frame: columns without a description "
            f"{undescribed}; described but absent {absent}; columns: {columns}"
        )
    return [
        {
            "feature": f.name,
            "type": f.dataType.simpleString(),
            "description": by_name[f.name].description,
            "source_columns": list(by_name[f.name].source_columns),
        }
        for f in df.schema.fields
    ]


def feature_metadata_rows(
    *,
    table: str,
    delta_version: int,
    records: Sequence[Mapping[str, Any]],
    preprocessing: Mapping[str, Any],
) -> list[tuple[Any, ...]]:
    """The ``gold/_feature_metadata`` rows describing one version of one gold table.

    Args:
        table: the gold table, e.g. ``"gold/credit_features"``.
        delta_version: the Delta version these rows describe.
        records: :func:`describe_columns` output.
        preprocessing: the preprocessing configuration used (stored as sorted JSON).

    Returns:
        Tuples in :data:`FEATURE_METADATA_SCHEMA` order.
    """
    config = json.dumps(preprocessing, sort_keys=True, default=str)
    return [
        (
            table,
            int(delta_version),
            r["feature"],
            r["type"],
            r["description"],
            list(r["source_columns"]),
            config,
        )
        for r in records
    ]
