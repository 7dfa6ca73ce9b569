"""The monitoring tables under ``ops/``: their schemas and the rows a run writes to them.

One row of ``ops/profile_metrics`` per table x version x window x slice x column (and role:
the current rows, or a reference's); one row of ``ops/drift_metrics`` per table x version x
window x slice x column x metric; one row of ``ops/monitor_results`` per check x subject (x
window) per run; ``ops/monitor_references`` one row per reference ever resolved;
``ops/monitor_alerts`` one row per alert raised. Columns and meanings: docs/CONTRACTS.md.

A rerun over the same table version replaces that version's profile and drift rows
(``DeltaTables.replace_rows``); results and alerts are appended, one set per run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from featurelake.monitoring.drift import ColumnDrift
from featurelake.monitoring.profile import ColumnProfile

__all__ = [
    "ALERTS_TABLE",
    "ALERT_SCHEMA",
    "DRIFT_SCHEMA",
    "DRIFT_TABLE",
    "PROFILE_SCHEMA",
    "PROFILE_TABLE",
    "REFERENCES_TABLE",
    "REFERENCE_SCHEMA",
    "RESULTS_TABLE",
    "RESULT_SCHEMA",
    "CheckResult",
    "drift_rows",
    "profile_rows",
    "result_row",
]

PROFILE_TABLE = ("ops", "profile_metrics")
DRIFT_TABLE = ("ops", "drift_metrics")
RESULTS_TABLE = ("ops", "monitor_results")
REFERENCES_TABLE = ("ops", "monitor_references")
ALERTS_TABLE = ("ops", "monitor_alerts")

PROFILE_SCHEMA = (
    "run_id string, profiled_at timestamp, role string, reference_id string, "
    "table string, table_version long, window string, window_start timestamp, "
    "window_end timestamp, slice string, column string, kind string, rows long, "
    "null_count long, null_rate double, distinct_estimate long, min double, max double, "
    "mean double, stddev double, quantile_probs array<double>, quantile_values array<double>, "
    "bin_edges array<double>, bin_labels array<string>, bin_counts array<long>, "
    "top_values array<string>, top_counts array<long>, cdf_points array<double>, "
    "cdf_ranks array<double>, sketch binary"
)
DRIFT_SCHEMA = (
    "run_id string, computed_at timestamp, table string, table_version long, window string, "
    "slice string, column string, kind string, metric string, value double, warning double, "
    "critical double, status string, reference_id string, reference_kind string, "
    "reference_slice string, current_rows long, reference_rows long, model string, "
    "model_version string"
)
RESULT_SCHEMA = (
    "run_id string, checked_at timestamp, check string, subject string, status string, "
    "metric string, value double, threshold double, detail string, table string, "
    "table_version long, window string, slice string, column string, model string, "
    "model_version string, reference_id string"
)
REFERENCE_SCHEMA = (
    "reference_id string, kind string, table string, table_version long, model string, "
    "model_version string, versions string, rows long, metrics string, created_at timestamp, "
    "run_id string"
)
ALERT_SCHEMA = (
    "alert_id string, dedupe_key string, check string, subject string, status string, "
    "previous_status string, metric string, value double, threshold double, detail string, "
    "message string, table string, table_version long, window string, model string, "
    "model_version string, raised_at timestamp, run_id string"
)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: a row of ``ops/monitor_results``.

    Attributes:
        check: ``drift``, ``freshness``, ``prediction_drift``, ``performance``,
            ``calibration`` or ``profile``.
        subject: what was checked (``gold/credit_features:education``,
            ``source/online_retail``, ``model/credit_default:roc_auc``...); with ``check``
            it names the condition alerts are about.
        status: ``ok``, ``warning``, ``critical``, ``skipped`` or ``error``.
        metric, value, threshold: the deciding metric, its value and the threshold it
            reached (the warning threshold when ``ok``).
        detail: in words (``stale: no new file for 3.2 days (SLA 1 day)``).
    """

    check: str
    subject: str
    status: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    table: str | None = None
    table_version: int | None = None
    window: str | None = None
    slice: str | None = None
    column: str | None = None
    model: str | None = None
    model_version: str | None = None
    reference_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def result_row(result: CheckResult, run_id: str, checked_at: datetime) -> dict[str, Any]:
    """The ``ops/monitor_results`` row of ``result``."""
    row = {k: getattr(result, k) for k in _RESULT_FIELDS}
    row.update({"run_id": run_id, "checked_at": checked_at})
    return row


_RESULT_FIELDS = (
    "check",
    "subject",
    "status",
    "metric",
    "value",
    "threshold",
    "detail",
    "table",
    "table_version",
    "window",
    "slice",
    "column",
    "model",
    "model_version",
    "reference_id",
)


def _top(profile: ColumnProfile, k: int) -> tuple[list[str], list[int]]:
    ordered = sorted(profile.value_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [v for v, _ in ordered], [c for _, c in ordered]


def profile_rows(
    profiles: Sequence[ColumnProfile],
    *,
    run_id: str,
    profiled_at: datetime,
    role: str,
    table: str,
    table_version: int | None,
    reference_id: str | None,
    bins: Mapping[tuple[str, str, str], tuple[Sequence[float], Sequence[str], Sequence[int]]],
    top_k: int,
) -> list[dict[str, Any]]:
    """``ops/profile_metrics`` rows.

    Args:
        profiles: the profiles.
        run_id, profiled_at: the run.
        role: ``current`` or ``reference``.
        table, table_version: the monitored table and the version profiled (reference rows:
            the monitored table they serve, the version of the rows they describe).
        reference_id: the reference (current rows: the one their bins are on).
        bins: (window, slice, column) -> (edges, labels, counts) of the histogram stored.
        top_k: categorical values stored.
    """
    rows = []
    for p in profiles:
        edges, labels, counts = bins.get((p.window, p.slice, p.column), ((), (), ()))
        top_values, top_counts = _top(p, top_k)
        rows.append(
            {
                "run_id": run_id,
                "profiled_at": profiled_at,
                "role": role,
                "reference_id": reference_id,
                "table": table,
                "table_version": table_version,
                "window": p.window,
                "window_start": p.window_start,
                "window_end": p.window_end,
                "slice": p.slice,
                "column": p.column,
                "kind": p.kind,
                "rows": p.rows,
                "null_count": p.null_count,
                "null_rate": p.null_rate,
                "distinct_estimate": p.distinct,
                "min": p.min,
                "max": p.max,
                "mean": p.mean,
                "stddev": p.stddev,
                "quantile_probs": list(p.quantile_probs),
                "quantile_values": list(p.quantile_values),
                "bin_edges": list(edges),
                "bin_labels": list(labels),
                "bin_counts": list(counts),
                "top_values": top_values if p.kind == "categorical" else [],
                "top_counts": top_counts if p.kind == "categorical" else [],
                "cdf_points": list(p.cdf_points),
                "cdf_ranks": list(p.cdf_ranks),
                "sketch": p.sketch,
            }
        )
    return rows


def drift_rows(
    drifts: Sequence[ColumnDrift],
    *,
    run_id: str,
    computed_at: datetime,
    table: str,
    table_version: int | None,
    reference_id: str,
    reference_kind: str,
    model: str | None = None,
    model_version: str | None = None,
) -> list[dict[str, Any]]:
    """``ops/drift_metrics`` rows: one per compared column and metric (skipped columns have
    none; their reason is in ``ops/monitor_results``)."""
    rows = []
    for drift in drifts:
        for m in drift.metrics:
            rows.append(
                {
                    "run_id": run_id,
                    "computed_at": computed_at,
                    "table": table,
                    "table_version": table_version,
                    "window": drift.window,
                    "slice": drift.slice,
                    "column": drift.column,
                    "kind": drift.kind,
                    "metric": m.metric,
                    "value": m.value,
                    "warning": m.warning,
                    "critical": m.critical,
                    "status": m.status,
                    "reference_id": reference_id,
                    "reference_kind": reference_kind,
                    "reference_slice": drift.reference_slice,
                    "current_rows": drift.current_rows,
                    "reference_rows": drift.reference_rows,
                    "model": model,
                    "model_version": model_version,
                }
            )
    return rows


def to_json(value: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON (the references' ``versions`` and ``metrics`` columns)."""
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=str)
