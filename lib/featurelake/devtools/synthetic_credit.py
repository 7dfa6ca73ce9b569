"""The synthetic credit clients: the layout, the default concepts and the line generator.

The default label follows a documented relationship with the clients' traits
(:data:`CREDIT_CONCEPTS`); a batch dated on or after ``concept_drift_from`` follows a changed
one (concept drift). :mod:`featurelake.devtools.synthetic` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.config import SyntheticSettings
from featurelake.devtools.synthetic_primitives import _below, _emit, uniform

__all__ = [
    "CREDIT_CLIENT_COLUMNS",
    "CREDIT_CONCEPTS",
    "CreditConcept",
    "credit_client_lines",
]

CREDIT_CLIENT_COLUMNS = (
    ("ID", "LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0")
    + tuple(f"PAY_{k}" for k in range(2, 7))
    + tuple(f"BILL_AMT{k}" for k in range(1, 7))
    + tuple(f"PAY_AMT{k}" for k in range(1, 7))
    + ("default.payment.next.month",)
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
