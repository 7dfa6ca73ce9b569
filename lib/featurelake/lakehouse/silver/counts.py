"""Silver's counts: what one run measured, the rules that stop it, the quality metrics rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurelake.lakehouse.cleaning import (
    quoted,
)
from featurelake.lakehouse.quality import (
    FATAL_RULES,
    CheckOutcome,
    evaluate_table_checks,
)
from featurelake.lakehouse.silver.spec import LINEAGE_COLUMNS, TOTAL_RULE, SilverTableSpec

if TYPE_CHECKING:
    from featurelake.lakehouse.silver.transform import SilverPlan


@dataclass(frozen=True)
class SilverCounts:
    """What one silver build measured.

    Attributes:
        rows_in: bronze rows classified.
        rows_out: clean rows (the silver table).
        rows_quarantined: rows sent to quarantine.
        rows_deduplicated: duplicates removed.
        rule_failures: rows breaking each rule, by (rule, severity).
        checks: the table checks' outcomes.
    """

    rows_in: int
    rows_out: int
    rows_quarantined: int
    rows_deduplicated: int
    rule_failures: dict[tuple[str, str], int]
    checks: tuple[CheckOutcome, ...]

    @property
    def reconciles(self) -> bool:
        """bronze rows = silver rows + quarantined + duplicates removed."""
        return self.rows_in == self.rows_out + self.rows_quarantined + self.rows_deduplicated


def summarize_counts(measured: Mapping[str, Any], spec: SilverTableSpec) -> SilverCounts:
    """Turn the measured values of one silver build into :class:`SilverCounts`.

    Args:
        measured: ``rows`` (bronze rows classified), ``passed`` (rows that broke no row rule),
            ``kept`` (of those, the latest record of each key), ``clean`` (of those, the rows
            that broke no ``unique`` rule), ``<severity>|<rule>`` per rule and the table checks'
            ``nulls:<column>``.
        spec: the table declaration.
    """
    rows, passed = int(measured["rows"]), int(measured["passed"])
    kept, clean = int(measured["kept"]), int(measured["clean"])
    checks = {k: v for k, v in measured.items() if k.startswith("nulls:")}
    checks["rows"] = clean
    return SilverCounts(
        rows_in=rows,
        rows_out=clean,
        rows_quarantined=(rows - passed) + (kept - clean),
        rows_deduplicated=passed - kept,
        rule_failures={(rule, sev): int(measured[f"{sev}|{rule}"]) for rule, sev in spec.rules},
        checks=tuple(evaluate_table_checks(spec.checks, checks)),
    )


def fatal_failures(counts: SilverCounts) -> list[tuple[str, int, str]]:
    """The ``fail`` rules and table checks that were broken: (rule, count, detail)."""
    broken = [
        (rule, n, "") for (rule, sev), n in counts.rule_failures.items() if sev == "fail" and n > 0
    ]
    broken += [
        (c.rule, c.failed_count, c.detail)
        for c in counts.checks
        if c.severity == "fail" and not c.passed
    ]
    return broken


def fatal_examples(
    plan: SilverPlan, spec: SilverTableSpec, rule: str, limit: int = 3
) -> DataFrame | None:
    """A query for a few offending values of a ``fail`` row rule (None for a table check)."""
    by_rule = {e.rule: e for e in spec.expectations}
    if rule not in by_rule:
        return None
    expectation = by_rule[rule]
    pii = {p.column for p in spec.pii}
    if expectation.column and expectation.column not in pii:
        shown = quoted(expectation.column).cast("string")
    else:  # an expression, or a PII column: show lineage only, never personal data
        shown = F.concat_ws(" ", *[quoted(c).cast("string") for c in LINEAGE_COLUMNS[:2]])
    return (
        plan.classified.filter(F.array_contains(F.col(FATAL_RULES), rule))
        .select(shown.alias("example"))
        .limit(limit)
    )


def quality_metric_rows(
    spec: SilverTableSpec, counts: SilverCounts, *, run_id: str, measured_at: datetime
) -> list[dict[str, Any]]:
    """Rows for ``ops/quality_metrics``: a ``_total`` row, then one per rule and table check.

    Every row repeats the table's totals (rows_in, rows_out, rows_quarantined,
    rows_deduplicated); ``failed_count`` is the rule's own count (for ``_total``: quarantined).
    """
    base = {
        "run_id": run_id,
        "table": spec.name,
        "rows_in": counts.rows_in,
        "rows_out": counts.rows_out,
        "rows_quarantined": counts.rows_quarantined,
        "rows_deduplicated": counts.rows_deduplicated,
        "measured_at": measured_at,
    }
    rows = [{**base, "rule": TOTAL_RULE, "severity": None, "failed_count": counts.rows_quarantined}]
    for (rule, severity), n in counts.rule_failures.items():
        rows.append({**base, "rule": rule, "severity": severity, "failed_count": n})
    for check in counts.checks:
        rows.append(
            {
                **base,
                "rule": check.rule,
                "severity": check.severity,
                "failed_count": check.failed_count,
            }
        )
    return rows


METRICS_TABLE = "quality_metrics"


METRICS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("table", T.StringType()),
        T.StructField("rule", T.StringType()),
        T.StructField("severity", T.StringType()),
        T.StructField("rows_in", T.LongType()),
        T.StructField("rows_out", T.LongType()),
        T.StructField("rows_quarantined", T.LongType()),
        T.StructField("rows_deduplicated", T.LongType()),
        T.StructField("failed_count", T.LongType()),
        T.StructField("measured_at", T.TimestampType()),
    ]
)
