"""Monitor features and models: profiles, drift, freshness, model quality, alerts, dashboard.

./spark-submit.sh monitor                              # every check in conf/monitoring.yaml
./spark-submit.sh monitor --checks freshness tables   # only these groups (the gold stage)
./spark-submit.sh monitor --as-of 2026-12-06T08:00:00Z
./spark-submit.sh monitor report                       # rewrite the dashboard only
./spark-submit.sh monitor report --out /tmp/dashboard.html

Results go to ops/monitor_results (profiles: ops/profile_metrics, drift: ops/drift_metrics);
a condition whose status changes raises one alert to the sinks of conf/monitoring.yaml. A
failing check is recorded as an ``error`` result and the job still succeeds, so monitoring
never stops the pipeline; docs/MONITORING.md has the details.
"""

import argparse
import logging
from datetime import datetime, timezone

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext, instant_argument
from featurelake.feature_store.definitions import load_feature_views
from featurelake.monitoring.alerts import conditions
from featurelake.monitoring.config import load_monitoring_config
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.report import write_dashboard
from featurelake.monitoring.run import CHECKS, run_monitor

log = logging.getLogger("featurelake.jobs.monitor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=["run", "report"],
        default="run",
        help="run: the checks, alerts and dashboard (default); report: the dashboard only",
    )
    parser.add_argument(
        "--checks",
        nargs="+",
        choices=CHECKS,
        default=list(CHECKS),
        help="groups of checks to run (default: all)",
    )
    parser.add_argument(
        "--as-of",
        type=instant_argument,
        default=None,
        help="the time checks are made at (UTC unless given; default: now)",
    )
    parser.add_argument("--out", default=None, help="report: the HTML file to write")


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    if args.out and args.action != "report":
        raise UserError("--out applies to 'monitor report' only")
    monitor = MonitorContext(
        spark=ctx.spark,
        tables=ctx.tables,
        settings=ctx.settings,
        config=load_monitoring_config(ctx.settings),
        views=load_feature_views(ctx.settings),
        run_id=ctx.run_id,
        now=args.as_of or datetime.now(timezone.utc),
    )
    if args.action == "report":
        ctx.summary["dashboard"] = write_dashboard(monitor, args.out)
        return
    outcome = run_monitor(monitor, args.checks)
    ctx.summary["results"] = outcome.counts()
    ctx.summary["alerts"] = len(outcome.alerts)
    ctx.summary["deliveries"] = {
        d.sink: {"delivered": d.delivered, "pending": d.pending} for d in outcome.deliveries
    }
    ctx.summary["dashboard"] = outcome.dashboard
    for result in conditions(outcome.results).values():  # one line per condition, not window
        if result.status in ("warning", "critical", "error"):
            log.warning(
                "monitor_condition",
                extra={
                    "fields": {
                        "check": result.check,
                        "subject": result.subject,
                        "status": result.status,
                        "detail": result.detail,
                    }
                },
            )
