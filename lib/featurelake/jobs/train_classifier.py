"""Train classifiers (LR, RF, GBT) on gold features; track in MLflow; register the challenger.

./spark-submit.sh train-classifier                          # every classification config
./spark-submit.sh train-classifier --model-config conf/models/credit_default.yaml
./spark-submit.sh train-classifier --features-version 3     # pin the feature table version

Trains whatever the retraining triggers say; ``retrain-check`` trains only when one fires
(docs/RETRAINING.md).
"""

import argparse
import logging

from featurelake.core.runner import JobContext
from featurelake.ml.config import ClassificationConfig, required_model_configs
from featurelake.ml.training import train_and_register

log = logging.getLogger("featurelake.jobs.train_classifier")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        action="append",
        default=None,
        metavar="FILE",
        help="a conf/models/*.yaml file (repeatable; default: every "
        "classification config in conf/models)",
    )
    parser.add_argument(
        "--features-version",
        type=int,
        default=None,
        help="train on this Delta version of the feature and label tables",
    )
    parser.add_argument(
        "--no-register",
        action="store_true",
        help="train and log only; do not register a challenger",
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    configs = required_model_configs(
        ctx.settings.conf_path("models"), args.model_config, ClassificationConfig, "classification"
    )
    for source, config in configs:
        ctx.summary[config.name] = train_and_register(
            ctx,
            source,
            config,
            features_version=args.features_version,
            register=not args.no_register,
        )
