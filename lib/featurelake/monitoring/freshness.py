"""Freshness: how old the newest data is, against its SLA.

* A **source**'s last arrival is the newest modification time of a file bronze ingested from it
  (``bronze/_ingested_files``; the ingestion time for pages and JDBC increments), against
  ``freshness.sources.<source>`` of conf/monitoring.yaml.
* A **feature view**'s latest event time in gold is the maximum of its event-time column in the
  source table, read from the Delta log's file statistics (no data file is read); its latest
  event time in the online store is the newest stored row of the view
  (:mod:`featurelake.monitoring.online`). Both against the view's ``freshness_sla``.

An age above the SLA is ``critical`` (stale); above ``freshness.warning_ratio`` of it, a
``warning``.

Example:
    >>> judge_age(timedelta(days=3), timedelta(days=1), 0.75).status
    'critical'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from pyspark.sql import functions as F

from featurelake.feature_store.definitions import FeatureView
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.results import CheckResult

__all__ = [
    "Age",
    "judge_age",
    "source_freshness",
    "view_freshness",
    "view_result",
]

LEDGER = ("bronze", "_ingested_files")
ARRIVED = ("ingested", "reingested")


@dataclass(frozen=True)
class Age:
    """An age judged against an SLA."""

    status: str
    detail: str


def _days(value: timedelta) -> str:
    return f"{value.total_seconds() / 86_400:.2f} days"


def judge_age(age: timedelta, sla: timedelta, warning_ratio: float) -> Age:
    """``critical`` (stale) beyond the SLA, ``warning`` beyond ``warning_ratio`` of it."""
    if age > sla:
        return Age("critical", f"stale: newest data is {_days(age)} old (SLA {_days(sla)})")
    if age > sla * warning_ratio:
        return Age("warning", f"{_days(age)} old, {age / sla:.0%} of the SLA {_days(sla)}")
    return Age("ok", f"{_days(age)} old (SLA {_days(sla)})")


def _utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):  # a date column: the end of that day
        return datetime.combine(value, time.max, timezone.utc)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _result(
    subject: str, latest: datetime | None, sla: timedelta, ctx: MonitorContext, **fields: object
) -> CheckResult:
    if latest is None:
        return CheckResult(
            "freshness",
            subject,
            "critical",
            metric="age_seconds",
            threshold=sla.total_seconds(),
            detail="stale: no data has arrived",
            **fields,  # type: ignore[arg-type]
        )
    age = max(ctx.now - _utc(latest), timedelta(0))
    judged = judge_age(age, sla, ctx.config.freshness.warning_ratio)
    return CheckResult(
        "freshness",
        subject,
        judged.status,
        metric="age_seconds",
        value=age.total_seconds(),
        threshold=sla.total_seconds(),
        detail=f"{judged.detail}; latest {_utc(latest).isoformat()}",
        **fields,  # type: ignore[arg-type]
    )


def source_freshness(ctx: MonitorContext) -> list[CheckResult]:
    """One result per source with an SLA: its last arrival against the SLA."""
    slas = ctx.config.freshness.sources
    if not slas:
        return []
    ledger = ctx.read_ops(LEDGER)
    latest: dict[str, datetime] = {}
    if ledger is not None:
        arrivals = (
            ledger.filter(F.col("status").isin(*ARRIVED) & F.col("source").isin(*slas))
            .groupBy("source")
            .agg(F.max(F.coalesce("modified_at", "ingested_at")).alias("latest"))
            .collect()
        )
        latest = {r["source"]: r["latest"] for r in arrivals if r["latest"] is not None}
    return [
        _result(f"source/{name}", latest.get(name), sla, ctx, table=f"bronze/{name}")
        for name, sla in sorted(slas.items())
    ]


def _latest_event_time(ctx: MonitorContext, view: FeatureView) -> tuple[datetime | None, int]:
    path = view.source.path(ctx.settings)
    version = ctx.tables.version(path)
    if view.event_timestamp_value is not None:
        return view.event_timestamp_value, version
    column = view.event_timestamp_column
    stats = ctx.tables.column_stats(path, [column], version)
    if stats is not None and column in stats:
        return stats[column].max, version
    row = ctx.tables.read(path, version=version, record=False).agg(F.max(column)).first()
    return (row[0] if row else None), version


def view_result(
    ctx: MonitorContext, view: FeatureView, where: str, latest: datetime | None, version: int | None
) -> CheckResult:
    """A view's freshness in ``where`` (``gold`` or ``online``) from its latest event time."""
    assert view.freshness_sla is not None
    return _result(
        f"view/{view.name}/{where}",
        latest,
        view.freshness_sla,
        ctx,
        table=str(view.source),
        table_version=version,
    )


def view_freshness(ctx: MonitorContext) -> list[CheckResult]:
    """One result per feature view with a ``freshness_sla``: its newest event time in gold."""
    results = []
    for _name, view in sorted(ctx.views.items()):
        if view.freshness_sla is None:
            continue
        if not ctx.tables.exists(view.source.path(ctx.settings)):
            if view.window is not None:
                continue  # a windowed view's table appears when the stream job first runs
            results.append(view_result(ctx, view, "gold", None, None))
            continue
        latest, version = _latest_event_time(ctx, view)
        results.append(view_result(ctx, view, "gold", latest, version))
    return results
