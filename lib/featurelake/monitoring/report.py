"""The dashboard's data, read from the ``ops/`` monitoring tables, and the page written.

:func:`dashboard_data` reads what the page shows, all small: each condition's results of its
latest run (``ops/monitor_results``), the drift metrics of each table's latest profiled
version and window (``ops/drift_metrics``), the histograms of that window beside the
reference's on the same bins (``ops/profile_metrics``), the models' performance per scoring
batch over time and the recent alerts. :func:`write_dashboard` renders it
(:mod:`featurelake.monitoring.dashboard`) into ``report.path`` under the lakehouse root.

Example:
    >>> path = write_dashboard(ctx)      # <root>/ops/monitoring/dashboard.html
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from featurelake.monitoring.config import under_root
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.profile import ALL
from featurelake.monitoring.results import ALERTS_TABLE, DRIFT_TABLE, PROFILE_TABLE, RESULTS_TABLE

__all__ = ["DashboardData", "Histogram", "dashboard_data", "write_dashboard"]


@dataclass(frozen=True)
class Histogram:
    """A column's current histogram beside its reference's, on the reference's bins."""

    table: str
    column: str
    kind: str
    window: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]


@dataclass
class DashboardData:
    """Everything the page shows (plain rows as dictionaries)."""

    generated_at: datetime
    latest: list[dict[str, Any]] = field(default_factory=list)
    drift_metrics: list[dict[str, Any]] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)
    performance: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _latest_per(df: DataFrame, keys: list[str], order: str) -> DataFrame:
    """The rows carrying the largest ``order`` value per ``keys`` (all of them on ties)."""
    top = F.max(order).over(Window.partitionBy(*keys))
    return df.withColumn("_top", top).filter(F.col(order) == F.col("_top")).drop("_top")


def _rows(df: DataFrame) -> list[dict[str, Any]]:
    return [r.asDict() for r in df.collect()]


def _latest_results(ctx: MonitorContext) -> list[dict[str, Any]]:
    """Each condition's results of its latest run.

    A table's drift results older than its latest profile are left out: the table was checked
    again without them (its reference or columns were taken out of the configuration).
    """
    stored = ctx.read_ops(RESULTS_TABLE)
    if stored is None:
        return []
    latest = _latest_per(stored, ["check", "subject"], "checked_at")
    rows = _rows(latest.orderBy("check", "subject"))
    profiled = {r["subject"]: r["checked_at"] for r in rows if r["check"] == "profile"}
    return [
        r
        for r in rows
        if r["check"] not in ("drift", "prediction_drift")
        or r["table"] not in profiled
        or r["checked_at"] >= profiled[r["table"]]
    ]


def _latest_windows(profiles: DataFrame) -> DataFrame:
    """Current overall profiles of each table's latest version and latest window."""
    current = profiles.filter((F.col("role") == "current") & (F.col("slice") == ALL))
    return _latest_per(_latest_per(current, ["table"], "table_version"), ["table"], "window")


def _drift_metrics(ctx: MonitorContext) -> list[dict[str, Any]]:
    stored = ctx.read_ops(DRIFT_TABLE)
    if stored is None:
        return []
    overall = stored.filter(F.col("slice") == ALL)
    latest = _latest_per(_latest_per(overall, ["table"], "table_version"), ["table"], "window")
    return _rows(latest.orderBy("table", "column", "metric"))


def _histograms(ctx: MonitorContext) -> list[Histogram]:
    stored = ctx.read_ops(PROFILE_TABLE)
    if stored is None:
        return []
    current = _latest_windows(stored).filter(F.col("reference_id").isNotNull())
    reference = stored.filter((F.col("role") == "reference") & (F.col("slice") == ALL)).select(
        "reference_id", "column", F.col("bin_counts").alias("reference_counts")
    )
    joined = current.join(reference, ["reference_id", "column"], "left").orderBy("table", "column")
    found = []
    for r in joined.collect():
        counts = tuple(r["bin_counts"] or ())
        ref = tuple(r["reference_counts"] or ())
        if not counts or len(ref) != len(counts):
            continue  # the reference's bins differ (a column compared on another reference)
        found.append(
            Histogram(
                table=r["table"],
                column=r["column"],
                kind=r["kind"],
                window=r["window"],
                edges=tuple(r["bin_edges"] or ()),
                labels=tuple(r["bin_labels"] or ()),
                reference=ref,
                current=counts,
            )
        )
    return found


def _performance(ctx: MonitorContext) -> list[dict[str, Any]]:
    stored = ctx.read_ops(RESULTS_TABLE)
    if stored is None:
        return []
    measured = stored.filter(
        F.col("check").isin("performance", "calibration") & F.col("value").isNotNull()
    )
    latest = _latest_per(measured, ["check", "subject", "window"], "checked_at")
    return _rows(latest.orderBy("subject", "window"))


def _alerts(ctx: MonitorContext, limit: int) -> list[dict[str, Any]]:
    stored = ctx.read_ops(ALERTS_TABLE)
    if stored is None:
        return []
    return _rows(stored.orderBy(F.desc("raised_at")).limit(limit))


def dashboard_data(ctx: MonitorContext) -> DashboardData:
    """Read everything the dashboard shows from the ``ops/`` tables."""
    return DashboardData(
        generated_at=ctx.now,
        latest=_latest_results(ctx),
        drift_metrics=_drift_metrics(ctx),
        histograms=_histograms(ctx),
        performance=_performance(ctx),
        alerts=_alerts(ctx, limit=ctx.config.report.history_runs * 5),
    )


def write_dashboard(ctx: MonitorContext, path: str | None = None) -> str:
    """Render the dashboard into ``path`` (default: ``report.path`` under the lakehouse root).

    The file is replaced in one rename, so a server never sends half a page.

    Returns:
        The path written.
    """
    from featurelake.monitoring.dashboard import render_dashboard

    target = Path(path or under_root(ctx.settings, ctx.config.report.path))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(render_dashboard(dashboard_data(ctx)), encoding="utf-8")
    os.replace(temporary, target)
    return str(target)
