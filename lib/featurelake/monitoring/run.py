"""One monitor run: every declared check, its results recorded, alerts raised and delivered.

:func:`run_monitor` is what the ``monitor`` job does: freshness of sources and feature views,
profiles and drift of the declared tables, what the online store holds, the watched models'
predictions and performance; then one row per result appended to ``ops/monitor_results``,
the alerts of conditions whose status changed (:mod:`featurelake.monitoring.alerts`) recorded
in ``ops/monitor_alerts`` and delivered, and the dashboard rewritten.

A check that fails to run (a table that cannot be read, a model that cannot be loaded) becomes
a result with status ``error`` and its reason, logged with its traceback; the other checks go
on, and the run succeeds: monitoring never stops the pipeline it watches.

Example:
    >>> outcome = run_monitor(ctx, checks=("freshness", "tables"))
    >>> [r.subject for r in outcome.results if r.status == "critical"]
    ['gold/credit_features:limit_bal']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial

from pyspark.sql import functions as F

from featurelake.monitoring.alerts import (
    CONDITION_ORDER,
    Alert,
    Delivery,
    conditions,
    cooldown_horizon,
    decide_alerts,
    deliver_pending,
    queue_alerts,
)
from featurelake.monitoring.config import under_root
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.freshness import source_freshness, view_freshness
from featurelake.monitoring.models import monitor_model
from featurelake.monitoring.online import monitor_online
from featurelake.monitoring.results import (
    ALERT_SCHEMA,
    ALERTS_TABLE,
    RESULT_SCHEMA,
    RESULTS_TABLE,
    CheckResult,
    result_row,
)
from featurelake.monitoring.tables import monitor_table

__all__ = ["CHECKS", "MonitorOutcome", "previous_statuses", "run_checks", "run_monitor"]

log = logging.getLogger(__name__)

#: The groups of checks a run can be limited to (``monitor --checks``).
CHECKS = ("freshness", "tables", "online", "models")


@dataclass
class MonitorOutcome:
    """What a monitor run found and did."""

    results: list[CheckResult]
    alerts: list[Alert] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    dashboard: str | None = None

    def counts(self) -> dict[str, int]:
        """Results per status."""
        found: dict[str, int] = {}
        for result in self.results:
            found[result.status] = found.get(result.status, 0) + 1
        return found


def _guarded(check: str, subject: str, run: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """The results of ``run``; one ``error`` result when it raises."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a failed run
        log.exception("check_failed", extra={"fields": {"check": check, "subject": subject}})
        return [CheckResult(check, subject, "error", detail=f"{type(exc).__name__}: {exc}")]


def run_checks(ctx: MonitorContext, checks: Sequence[str] = CHECKS) -> list[CheckResult]:
    """Run the declared checks of the groups in ``checks``; their results in order."""
    results: list[CheckResult] = []
    if "freshness" in checks:
        results += _guarded("freshness", "sources", lambda: source_freshness(ctx))
        results += _guarded("freshness", "views", lambda: view_freshness(ctx))
    if "tables" in checks:
        for table in ctx.config.tables:
            results += _guarded("profile", table.table, partial(monitor_table, ctx, table))
    if "online" in checks:
        results += _guarded("profile", "online", lambda: monitor_online(ctx))
    if "models" in checks:
        for name, watch in sorted(ctx.config.models.items()):
            results += _guarded(
                "prediction_drift",
                f"predictions/{name}",
                partial(monitor_model, ctx, name, watch),
            )
    return results


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def previous_statuses(ctx: MonitorContext) -> dict[str, str]:
    """Each condition's worst status in the latest earlier run that checked it."""
    stored = ctx.read_ops(RESULTS_TABLE)
    if stored is None:
        return {}
    earlier = stored.filter(
        (F.col("run_id") != ctx.run_id)
        & (F.col("checked_at") < F.lit(ctx.now))
        & F.col("status").isin(*CONDITION_ORDER)
    )
    latest = earlier.groupBy("check", "subject").agg(F.max("checked_at").alias("_latest"))
    rank = F.array_position(F.array(*[F.lit(s) for s in CONDITION_ORDER]), F.col("status"))
    rows = (
        earlier.join(latest, ["check", "subject"])
        .filter(F.col("checked_at") == F.col("_latest"))
        .groupBy("check", "subject")
        .agg(F.max(rank).alias("_rank"))
        .collect()
    )
    return {f"{r['check']}|{r['subject']}": CONDITION_ORDER[int(r["_rank"]) - 1] for r in rows}


def _recent_alerts(ctx: MonitorContext) -> list[tuple[str, str, datetime]]:
    stored = ctx.read_ops(ALERTS_TABLE)
    if stored is None:
        return []
    since = cooldown_horizon(ctx.config.alerts, ctx.now)
    rows = (
        stored.filter((F.col("raised_at") >= F.lit(since)) & (F.col("run_id") != ctx.run_id))
        .select("dedupe_key", "status", "raised_at")
        .collect()
    )
    return [(r["dedupe_key"], r["status"], _utc(r["raised_at"])) for r in rows]


def raise_alerts(ctx: MonitorContext, results: Sequence[CheckResult]) -> list[Alert]:
    """Decide this run's alerts from its results, record them and put them in the outbox."""
    settings = ctx.config.alerts
    alerts = decide_alerts(
        conditions(results),
        previous_statuses(ctx),
        _recent_alerts(ctx),
        settings,
        now=ctx.now,
        run_id=ctx.run_id,
    )
    if alerts:
        ctx.append(ALERTS_TABLE, [asdict(a) for a in alerts], ALERT_SCHEMA)
        queue_alerts(alerts, settings, under_root(ctx.settings, settings.outbox))
    return alerts


def run_monitor(ctx: MonitorContext, checks: Sequence[str] = CHECKS) -> MonitorOutcome:
    """Run the checks, record the results, raise and deliver alerts, rewrite the dashboard.

    Args:
        ctx: the run.
        checks: the groups of checks to run (:data:`CHECKS`).

    Returns:
        The results, the alerts raised, each sink's delivery and the dashboard's path.
    """
    from featurelake.monitoring.report import write_dashboard

    results = run_checks(ctx, checks)
    ctx.append(RESULTS_TABLE, [result_row(r, ctx.run_id, ctx.now) for r in results], RESULT_SCHEMA)
    alerts = raise_alerts(ctx, results)
    settings = ctx.config.alerts
    deliveries = deliver_pending(
        settings, under_root(ctx.settings, settings.outbox), ctx.settings.lakehouse.root
    )
    dashboard = write_dashboard(ctx)
    return MonitorOutcome(results, alerts, deliveries, dashboard)
