"""Train classifiers (LR, RF, GBT) on gold features; track in MLflow; register the challenger.

./spark-submit.sh train-classifier                          # every classification config
./spark-submit.sh train-classifier --model-config conf/models/credit_default.yaml
./spark-submit.sh train-classifier --features-version 3     # pin the feature table version
"""

import argparse
import logging

from featurelake.core.config import ConfigError
from featurelake.core.errors import DataError
from featurelake.core.runner import JobContext
from featurelake.ml.classification import label_coverage, prepare_training_frame, train_classifier
from featurelake.ml.config import ClassificationConfig, check_columns, find_model_configs
from featurelake.ml.registry import register_challenger
from featurelake.ml.tracking import configure_tracking, lineage_tags

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


def train_one(
    ctx: JobContext, source: str, config: ClassificationConfig, args: argparse.Namespace
) -> dict:
    features_path = ctx.path(config.features.layer, config.features.name)
    labels_path = ctx.path(config.labels.layer, config.labels.name)
    features_version = (
        args.features_version if args.features_version is not None else config.features.version
    )
    labels_version = (
        args.features_version if args.features_version is not None else config.labels.version
    )
    features = ctx.tables.read(features_path, version=features_version)
    labels = ctx.tables.read(labels_path, version=labels_version)
    check_columns(config, source, {"features": features.schema, "labels": labels.schema})

    key = config.features.key
    dupes = features.groupBy(key).count().filter("count > 1").count()
    label_dupes = labels.groupBy(config.labels.key).count().filter("count > 1").count()
    if dupes or label_dupes:
        raise DataError(
            f"{config.name}: keys must be unique: {dupes} duplicated {key} in "
            f"{features_path}, {label_dupes} in {labels_path}"
        )
    data = prepare_training_frame(features, labels, config)
    coverage = label_coverage(data, config.label)
    if coverage["rows"] == coverage["rows_without_label"]:
        raise DataError(f"{config.name}: no row of {features_path} has a label in {labels_path}")
    if coverage["rows_without_label"]:
        log.warning("rows_without_label", extra={"fields": {"model": config.name, **coverage}})

    reads = ctx.tables.lineage.reads
    tags = lineage_tags(
        {
            "features": (features_path, reads[features_path]),
            "labels": (labels_path, reads[labels_path]),
        },
        model_config=source,
        job_run_id=ctx.run_id,
        feature_list=",".join(config.feature_columns),
        rows_without_label=str(coverage["rows_without_label"]),
    )
    target = configure_tracking(ctx.settings.mlflow)
    result = train_classifier(config, data, tags=tags, run_name=f"{config.name}-{ctx.run_id}")
    summary = {
        "parent_run_id": result.parent_run_id,
        "train_rows": result.train_rows,
        "test_rows": result.test_rows,
        "rows_without_label": coverage["rows_without_label"],
        "features_version": reads[features_path],
        "labels_version": reads[labels_path],
        "best": result.best.algorithm,
        "candidates": {
            c.algorithm: {
                f"validation_{config.metric}": round(c.validation_metric, 4),
                **{k: round(v, 4) for k, v in c.test_metrics.as_metrics().items()},
            }
            for c in result.candidates
        },
    }
    if not args.no_register:
        import mlflow

        client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
        best_metric = result.best.test_metrics.as_metrics()[config.metric]
        version = register_challenger(
            client,
            config.name,
            result.best.model_uri,
            run_id=result.best.run_id,
            tags={
                **tags,
                "featurelake.algorithm": result.best.algorithm,
                f"test_{config.metric}": f"{best_metric:.6f}",
            },
            description=f"{result.best.algorithm} from training run {result.parent_run_id}",
        )
        summary["challenger_version"] = version.version
    return summary


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    configs = find_model_configs(
        ctx.settings.conf_path("models"), args.model_config, ClassificationConfig
    )
    if not configs:
        raise ConfigError(
            str(ctx.settings.conf_path("models")),
            "",
            "no classification model config (kind: classification) found",
        )
    for source, config in configs:
        ctx.summary[config.name] = train_one(ctx, source, config, args)
