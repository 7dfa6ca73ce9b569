"""Train one classifier on the latest (or a pinned) version of its tables and register it.

The body of ``train-classifier``, and what ``retrain-check`` runs when a trigger fires:
read the feature and label tables (recording their Delta versions), check the configuration
against their schemas before anything is trained, train every candidate
(:func:`featurelake.ml.classification.train_classifier`), and register the best as the new
``challenger`` (the one it replaces retired; both moves in ``ops/model_promotions``).

Example:
    >>> summary = train_and_register(ctx, "conf/models/credit_default.yaml", config)
    >>> summary["challenger_version"]
    '4'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from featurelake.core.errors import DataError
from featurelake.ml.classification import label_coverage, prepare_training_frame, train_classifier
from featurelake.ml.config import ClassificationConfig, check_columns
from featurelake.ml.ledger import promotion_rows, record_promotions
from featurelake.ml.registry import replace_challenger
from featurelake.ml.tracking import configure_tracking, lineage_tags

__all__ = ["train_and_register"]

log = logging.getLogger(__name__)


def train_and_register(
    ctx: Any,
    source: str,
    config: ClassificationConfig,
    *,
    features_version: int | None = None,
    register: bool = True,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Train ``config`` and register its best candidate as the challenger.

    Args:
        ctx: the job context.
        source: the configuration file (for messages and the ``model_config`` tag).
        config: the validated configuration.
        features_version: read this Delta version of both tables (default: the config's pin,
            else the latest).
        register: register the best candidate (else only log the runs).
        tags: more MLflow tags for the training runs and the registered version.

    Returns:
        The run summary: run id, rows, table versions, each candidate's metrics, the selected
        features and the registered version.

    Raises:
        ConfigError: a column the configuration names is not in its table.
        DataError: duplicated keys, or no row has a label.
    """
    features_path = ctx.path(config.features.layer, config.features.name)
    labels_path = ctx.path(config.labels.layer, config.labels.name)
    features = ctx.tables.read(
        features_path,
        version=features_version if features_version is not None else config.features.version,
    )
    labels = ctx.tables.read(
        labels_path,
        version=features_version if features_version is not None else config.labels.version,
    )
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
    run_tags = {
        **lineage_tags(
            {
                "features": (features_path, reads[features_path]),
                "labels": (labels_path, reads[labels_path]),
            },
            model_config=source,
            job_run_id=ctx.run_id,
            feature_list=",".join(config.feature_columns),
            rows_without_label=str(coverage["rows_without_label"]),
        ),
        **(tags or {}),
    }
    target = configure_tracking(ctx.settings.mlflow)
    result = train_classifier(config, data, tags=run_tags, run_name=f"{config.name}-{ctx.run_id}")
    summary: dict[str, Any] = {
        "parent_run_id": result.parent_run_id,
        "train_rows": result.train_rows,
        "test_rows": result.test_rows,
        "rows_without_label": coverage["rows_without_label"],
        "features_version": reads[features_path],
        "labels_version": reads[labels_path],
        "best": result.best.algorithm,
        "selected_features": len(result.features),
        "candidates": {
            c.algorithm: {
                f"validation_{config.metric}": round(c.validation_metric, 4),
                **{k: round(v, 4) for k, v in c.test_metrics.as_metrics().items()},
            }
            for c in result.candidates
        },
    }
    if register:
        import mlflow

        client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
        best_metric = result.best.test_metrics.as_metrics()[config.metric]
        registration = replace_challenger(
            client,
            config.name,
            result.best.model_uri,
            run_id=result.best.run_id,
            tags={
                **run_tags,
                "featurelake.algorithm": result.best.algorithm,
                "featurelake.selected_features": ",".join(result.features),
                f"test_{config.metric}": f"{best_metric:.6f}",
            },
            description=f"{result.best.algorithm} from training run {result.parent_run_id}",
        )
        record_promotions(ctx, promotion_rows(ctx.run_id, transitions=registration.transitions))
        summary["challenger_version"] = str(registration.version.version)
    return summary
