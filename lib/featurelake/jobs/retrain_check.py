"""Evaluate each classifier's retraining triggers; retrain those that fire; record why.

    ./spark-submit.sh retrain-check                             # every classification config
    ./spark-submit.sh retrain-check --model-config conf/models/credit_default.yaml
    ./spark-submit.sh retrain-check --dry-run                   # decide and record, no training
    ./spark-submit.sh retrain-check --as-of 2026-12-06T08:00:00Z

Triggers (``retraining.triggers`` of conf/models/<name>.yaml): drift of the champion's top
features, performance degradation on labelled scoring batches, the champion's age, new data
since the champion's logged Delta versions. One row per model and trigger in
``ops/retraining_decisions``; a retrained model's runs and version carry the decision as tags
(docs/RETRAINING.md).
"""

import argparse
import logging
from datetime import datetime, timezone

from featurelake.core.runner import JobContext, instant_argument
from featurelake.ml.config import ClassificationConfig, required_model_configs
from featurelake.ml.retrain_check import check_model, check_tables
from featurelake.ml.tracking import configure_tracking

log = logging.getLogger("featurelake.jobs.retrain_check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        action="append",
        default=None,
        metavar="FILE",
        help="a conf/models/*.yaml file (repeatable; default: every classification config)",
    )
    parser.add_argument(
        "--as-of",
        type=instant_argument,
        default=None,
        help="the time the check is made at (UTC unless given; default: now)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="evaluate and record the decisions; train nothing",
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    import mlflow

    configs = required_model_configs(
        ctx.settings.conf_path("models"), args.model_config, ClassificationConfig, "classification"
    )
    # Every configuration against its tables before MLflow is touched or a trigger evaluated.
    for source, config in configs:
        check_tables(ctx, source, config)
    target = configure_tracking(ctx.settings.mlflow)
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    now = args.as_of or datetime.now(timezone.utc)
    for source, config in configs:
        ctx.summary[config.name] = check_model(
            ctx, client, source, config, now, train=not args.dry_run
        )
