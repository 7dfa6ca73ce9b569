"""Promote each model's challenger to champion when it clears the threshold and the margin.

    ./spark-submit.sh promote                                   # every model in conf/models
    ./spark-submit.sh promote --model-config conf/models/credit_default.yaml

Both models are scored on the same data: the challenger's evaluation rows rebuilt from the Delta
versions its training run logged (classifiers: the held-out split; segmentation: every row).
Each decision is logged, tagged on the model version and appended to ``ops/model_promotions``.
"""

import argparse
import logging
from datetime import datetime

from featurelake.core.runner import JobContext
from featurelake.core.session import local_frame
from featurelake.ml.classification import evaluate_binary, holdout, prepare_training_frame
from featurelake.ml.config import (
    ClassificationConfig,
    ModelConfig,
    SegmentationConfig,
    find_model_configs,
)
from featurelake.ml.registry import CHALLENGER, alias_version, promote
from featurelake.ml.segmentation import silhouette
from featurelake.ml.tracking import configure_tracking

log = logging.getLogger("featurelake.jobs.promote")

PROMOTIONS_TABLE = ("ops", "model_promotions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        action="append",
        default=None,
        metavar="FILE",
        help="a conf/models/*.yaml file (repeatable; default: every model config)",
    )


def _evaluation_data(ctx: JobContext, config: ModelConfig, run: object):
    """The rows the challenger was evaluated on, from the table versions its run logged."""
    tags = run.data.tags  # type: ignore[attr-defined]
    features = ctx.tables.read(
        tags["featurelake.features.path"], version=int(tags["featurelake.features.version"])
    )
    if isinstance(config, SegmentationConfig):
        return features
    labels = ctx.tables.read(
        tags["featurelake.labels.path"], version=int(tags["featurelake.labels.version"])
    )
    params = run.data.params  # type: ignore[attr-defined]
    # The split the run used (it may predate a config change).
    logged = config.model_copy(
        update={
            "split": config.split.model_copy(
                update={
                    "test_fraction": float(params["split.test_fraction"]),
                    "seed": int(params["split.seed"]),
                }
            )
        }
    )
    return holdout(prepare_training_frame(features, labels, logged), config.label).cache()


def promote_one(ctx: JobContext, client, config: ModelConfig) -> dict:
    import mlflow

    challenger = alias_version(client, config.name, CHALLENGER)
    if challenger is None:
        log.info(
            "promotion_skipped",
            extra={"fields": {"model": config.name, "reason": "no challenger registered"}},
        )
        return {"decision": "skipped", "reason": "no challenger registered"}
    # The parent training run carries the lineage tags for classifiers; the version's run is
    # the candidate's nested run, which carries the same tags.
    run = client.get_run(challenger.run_id)
    if isinstance(config, ClassificationConfig) and "split.seed" not in run.data.params:
        run = client.get_run(run.data.tags["mlflow.parentRunId"])
    data = _evaluation_data(ctx, config, run)
    metric = config.promotion.metric

    def evaluate(model_uri: str) -> float:
        model = mlflow.spark.load_model(model_uri)
        if isinstance(config, SegmentationConfig):
            return silhouette(model.transform(data))
        return float(getattr(evaluate_binary(model.transform(data), config.label), metric))

    decision = promote(client, config.name, config.promotion, evaluate)
    with mlflow.start_run(run_name=f"promote-{config.name}-{ctx.run_id}"):
        mlflow.set_tags(
            {
                "featurelake.model": config.name,
                "featurelake.job_run_id": ctx.run_id,
                "featurelake.kind": "promotion",
                "featurelake.decision": "promoted" if decision.promoted else "rejected",
            }
        )
        mlflow.log_params(
            {
                "challenger_version": decision.challenger_version,
                "champion_version": decision.champion_version or "none",
                "min_metric": decision.min_metric,
                "min_improvement": decision.min_improvement,
                "metric": metric,
            }
        )
        mlflow.log_metrics(
            {
                f"challenger_{metric}": decision.challenger_metric,
                **(
                    {f"champion_{metric}": decision.champion_metric}
                    if decision.champion_metric is not None
                    else {}
                ),
            }
        )
        mlflow.log_dict(decision.as_dict(), "decision.json")
    record = {
        **decision.as_dict(),
        "decided_at": datetime.fromisoformat(decision.decided_at),
        "job_run_id": ctx.run_id,
    }
    ctx.tables.write(
        local_frame(ctx.spark, [record], _PROMOTION_SCHEMA),
        ctx.path(*PROMOTIONS_TABLE),
        mode="append",
    )
    return {
        "decision": "promoted" if decision.promoted else "rejected",
        "reason": decision.reason,
        "challenger_version": decision.challenger_version,
        f"challenger_{metric}": round(decision.challenger_metric, 4),
        "champion_version": decision.champion_version,
    }


_PROMOTION_SCHEMA = (
    "model string, promoted boolean, reason string, metric string, challenger_version string, "
    "challenger_metric double, champion_version string, champion_metric double, "
    "min_metric double, min_improvement double, decided_at timestamp, job_run_id string"
)


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    import mlflow

    target = configure_tracking(ctx.settings.mlflow)
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    models_dir = ctx.settings.conf_path("models")
    configs: list[tuple[str, ModelConfig]] = (
        [
            *find_model_configs(models_dir, args.model_config, ClassificationConfig),
            *find_model_configs(models_dir, args.model_config, SegmentationConfig),
        ]
        if not args.model_config
        else _explicit(args.model_config)
    )
    for _source, config in configs:
        ctx.summary[config.name] = promote_one(ctx, client, config)


def _explicit(files: list[str]) -> list:
    from featurelake.ml.config import load_model_config

    return [(f, load_model_config(f)) for f in files]
