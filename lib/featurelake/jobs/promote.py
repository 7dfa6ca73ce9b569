"""Promote each model's challenger to champion when it clears the rule; roll back one step.

    ./spark-submit.sh promote                                   # every model in conf/models
    ./spark-submit.sh promote --model-config conf/models/credit_default.yaml
    ./spark-submit.sh promote --rollback credit_default         # previous champion back

Both models are scored on the same rows: for a classifier the most recent labelled window
(rows new since the champion's training data, on the challenger's held-out side, rebuilt from
the Delta versions both training runs logged), and with ``promotion.max_regression`` also the
champion's own held-out rows; for segmentation the challenger's feature rows
(docs/RETRAINING.md). Each decision and every alias move is logged, tagged on the model
version and appended to ``ops/model_promotions``.
"""

import argparse
import logging

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.ml.config import (
    ClassificationConfig,
    ModelConfig,
    SegmentationConfig,
    find_model_configs,
    load_model_config,
)
from featurelake.ml.promotion import promote_model, rollback_model
from featurelake.ml.tracking import configure_tracking

log = logging.getLogger("featurelake.jobs.promote")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        action="append",
        default=None,
        metavar="FILE",
        help="a conf/models/*.yaml file (repeatable; default: every model config)",
    )
    parser.add_argument(
        "--rollback",
        default=None,
        metavar="MODEL",
        help="make the registered model's previous champion the champion again and retire "
        "the current one (no promotion runs)",
    )
    parser.add_argument(
        "--reason",
        default="rolled back by hand",
        help="with --rollback: why (recorded on the retired version)",
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    import mlflow

    target = configure_tracking(ctx.settings.mlflow)
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    if args.rollback:
        if args.model_config:
            raise UserError("--rollback names the model itself; drop --model-config")
        ctx.summary[args.rollback] = rollback_model(ctx, client, args.rollback, args.reason)
        return
    models_dir = ctx.settings.conf_path("models")
    configs: list[tuple[str, ModelConfig]] = (
        [
            *find_model_configs(models_dir, None, ClassificationConfig),
            *find_model_configs(models_dir, None, SegmentationConfig),
        ]
        if not args.model_config
        else [(f, load_model_config(f)) for f in args.model_config]
    )
    for _source, config in configs:
        ctx.summary[config.name] = promote_model(ctx, client, config)
