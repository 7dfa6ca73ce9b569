"""The whole pipeline: data, bronze, silver, gold, features, models, scoring, online store.

./spark-submit.sh full-pipeline                  # every stage in conf/pipeline.yaml
./spark-submit.sh full-pipeline --from silver    # resume from a failed stage
./spark-submit.sh full-pipeline --only bronze silver
"""

import argparse
import logging
import sys
from pathlib import Path

from pyspark.sql import Row
from pyspark.sql.types import (
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from featurelake.core.errors import DataError
from featurelake.core.logs import configure_logging
from featurelake.core.pipeline import (
    StageResult,
    format_summary,
    load_pipeline,
    plan_stages,
    run_pipeline,
)
from featurelake.core.runner import JobContext

log = logging.getLogger("featurelake.jobs.full_pipeline")

RUN_LOG_SCHEMA = StructType(
    [
        StructField("run_id", StringType()),
        StructField("stage", StringType()),
        StructField("status", StringType()),
        StructField("attempt", IntegerType()),
        StructField("started_at", TimestampType()),
        StructField("ended_at", TimestampType()),
        StructField("rows_written", LongType()),
        StructField("error", StringType()),
    ]
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="start_from",
        default=None,
        metavar="STAGE",
        help="resume: run STAGE and every stage after it",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="STAGE",
        help="run only these stages (in dependency order)",
    )
    parser.add_argument("--list", action="store_true", help="print the stages and exit")


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    spec = load_pipeline(ctx.settings)
    stages = plan_stages(spec, args.start_from, args.only)
    if args.list:
        for name in stages:
            stage = spec.stages[name]
            deps = ", ".join(stage.depends_on) or "-"
            sys.stdout.write(f"{name:<22} job={stage.job:<20} after: {deps}\n")
        return
    layer, _, table = spec.run_log_table.partition("/")
    run_log = ctx.path(layer, table)

    def record(result: StageResult, run_id: str) -> None:
        row = Row(
            run_id=run_id,
            stage=result.stage,
            status=result.status,
            attempt=result.attempts,
            started_at=result.started,
            ended_at=result.ended,
            rows_written=sum(result.rows_written.values()),
            error=result.error,
        )
        ctx.tables.append_rows([row], RUN_LOG_SCHEMA, run_log)

    common = ["--env", ctx.settings.env, "--conf-dir", ctx.settings.conf_dir]
    for override in args.conf:
        common += ["--conf", override]
    results = run_pipeline(
        spec,
        stages,
        common_args=common,
        spark=ctx.spark,
        record=record,
        run_id=ctx.run_id,
    )
    # Stages configure logging for themselves; take it back for the pipeline's own lines.
    configure_logging(ctx.job, ctx.run_id, **ctx.logging)
    root = Path(ctx.settings.lakehouse.root).resolve()
    locations = {
        "tables": f"{root}/<layer>/<table>  (bronze, silver, gold, features, predictions, ops)",
        "run log": f"{run_log}  (run_id = {ctx.run_id})",
        "mlflow": f"{ctx.settings.mlflow.tracking_uri}  "
        f"(browse: .venv/bin/mlflow ui --backend-store-uri "
        f"{ctx.settings.mlflow.tracking_uri})",
    }
    predictions = sorted(
        {
            table
            for r in results
            for table in r.rows_written
            if "/predictions/" in table and not table.endswith("_quarantine")
        }
    )
    if predictions:
        locations["predictions"] = ", ".join(predictions)
    try:
        from featurelake.feature_store.online import load_serving_config, redact_url

        store = load_serving_config(ctx.settings).online_store
        locations["online store"] = (
            store.sqlite_path
            if store.type == "sqlite"
            else f"{redact_url(store.redis_url)} (prefix {store.key_prefix})"
        )
    except Exception as exc:  # noqa: BLE001 - the summary must not hide the run's outcome
        locations["online store"] = f"(serving configuration not readable: {exc})"
    sys.stdout.write("\n" + format_summary(results, locations) + "\n")
    ctx.summary["stages"] = {r.stage: r.status for r in results}
    failed = [r for r in results if r.status != "succeeded"]
    if failed:
        raise DataError(f"stage {failed[-1].stage!r} failed: {failed[-1].error}")
