"""Model monitoring: each scoring batch's predictions, and its quality once labels arrive.

For each model of ``models`` in conf/monitoring.yaml (classifiers):

1. **The champion's validation predictions** are the reference: the champion scored on its
   own held-out rows, rebuilt from the Delta versions its training run logged (as ``promote``
   does). Their profile and metrics (ROC AUC, average precision, expected calibration error,
   Brier score, and the metric the champion was promoted with, from its ``promotion.*`` tag)
   are computed once per champion version and kept (``ops/monitor_references``,
   ``ops/profile_metrics``).
2. **Prediction drift**: every batch of ``predictions/<model>`` scored within the lookback
   (one window per ``batch_id``) is profiled in one pass and its ``probability`` and
   ``prediction`` compared with the reference.
3. **Performance**: where labels exist for a batch's entities (a label table joined on the key,
   or churn labels whose horizon has passed), the batch's ROC AUC, average precision,
   calibration error and Brier score are computed in one aggregation over all batches; the
   promotion metric's drop below the champion's promoted value, and the calibration error's
   rise over the champion's, are judged against ``performance`` and ``calibration``.

Scores are grouped into 1,001 bins (probability rounded to 1/1000) before the metrics are
taken: each metric is exact for scores with three decimals and within about 0.001 otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.config import Settings
from featurelake.core.errors import UserError
from featurelake.monitoring import stats
from featurelake.monitoring.config import LabelSource, ModelMonitorConfig, Threshold
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.drift import judge
from featurelake.monitoring.profile import WindowSpec
from featurelake.monitoring.references import (
    Reference,
    ReferenceUnavailable,
    champion_run,
    classifier_split_rows,
    table_name_of,
)
from featurelake.monitoring.results import (
    REFERENCE_SCHEMA,
    REFERENCES_TABLE,
    CheckResult,
    to_json,
)
from featurelake.monitoring.tables import (
    ColumnKinds,
    drift_results,
    profile_and_compare,
    reference_profiles,
)

__all__ = [
    "SCORE_BINS",
    "ChampionReference",
    "binned_scores",
    "judge_performance",
    "model_config",
    "model_trained_on",
    "monitor_models",
    "quality",
]

log = logging.getLogger(__name__)

#: Probabilities are rounded to 1/SCORE_BINS before the quality metrics are taken.
SCORE_BINS = 1000
_KINDS = ColumnKinds(numeric=("probability",), categorical=("prediction",))
_LABEL = "_fl_label"


def model_config(settings: Settings, name: str) -> Any:
    """The conf/models declaration whose ``name`` is ``name``.

    Raises:
        UserError: no model has that name.
    """
    from featurelake.ml.config import load_model_config

    for file in sorted(settings.conf_path("models").glob("*.yaml")):
        config = load_model_config(file)
        if config.name == name:
            return config
    raise UserError(f"no model called {name!r} in {settings.conf_path('models')}")


def model_trained_on(settings: Settings, table: str) -> str:
    """The one model whose feature table is ``table``.

    Raises:
        UserError: none or several.
    """
    from featurelake.ml.config import load_model_config

    names = [
        c.name
        for c in (load_model_config(f) for f in sorted(settings.conf_path("models").glob("*.yaml")))
        if c.features.table == table
    ]
    if len(names) != 1:
        raise UserError(f"models training on {table}: {names}; name the reference's model")
    return names[0]


def binned_scores(df: DataFrame, group: str, probability: str, label: str) -> DataFrame:
    """Per group and rounded probability: positives, negatives, sum of p, sum of (p - y)^2."""
    p = F.col(probability).cast("double")
    y = F.col(label).cast("double")
    return (
        df.filter(p.isNotNull() & y.isNotNull())
        .groupBy(F.col(group).alias("_group"), F.round(p * SCORE_BINS).cast("int").alias("_bin"))
        .agg(
            F.sum((y == 1).cast("long")).alias("positives"),
            F.sum((y == 0).cast("long")).alias("negatives"),
            F.sum(p).alias("sum_p"),
            F.sum((p - y) * (p - y)).alias("sum_se"),
        )
    )


def _collect_scores(df: DataFrame) -> dict[str, stats.BinnedScores]:
    grouped: dict[str, list[Any]] = {}
    for row in df.collect():
        grouped.setdefault(str(row["_group"]), []).append(row)
    out = {}
    for group, rows in grouped.items():
        rows.sort(key=lambda r: r["_bin"])
        out[group] = stats.BinnedScores(
            score=tuple(r["_bin"] / SCORE_BINS for r in rows),
            positives=tuple(int(r["positives"]) for r in rows),
            negatives=tuple(int(r["negatives"]) for r in rows),
            sum_probability=tuple(float(r["sum_p"]) for r in rows),
            sum_squared_error=tuple(float(r["sum_se"]) for r in rows),
        )
    return out


def quality(scores: stats.BinnedScores) -> dict[str, float]:
    """ROC AUC, average precision, calibration error and Brier score (the defined ones)."""
    values = {
        "roc_auc": stats.roc_auc(scores),
        "pr_auc": stats.average_precision(scores),
        "ece": stats.expected_calibration_error(scores),
        "brier": stats.brier_score(scores),
    }
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class ChampionReference:
    """The champion's validation predictions: their reference and their metrics."""

    reference: Reference
    metrics: dict[str, float]
    promotion_metric: str


def _stored_metrics(ctx: MonitorContext, reference_id: str) -> dict[str, float] | None:
    stored = ctx.read_ops(REFERENCES_TABLE)
    if stored is None:
        return None
    row = stored.filter(F.col("reference_id") == reference_id).select("metrics").first()
    return None if row is None else {k: float(v) for k, v in json.loads(row[0]).items()}


def _validation_predictions(ctx: MonitorContext, name: str, version: Any, run: Any) -> DataFrame:
    import mlflow
    from pyspark.ml.functions import vector_to_array

    config = model_config(ctx.settings, name)
    _rows, prepared, _versions = classifier_split_rows(ctx.tables, config, run, "test")
    model = mlflow.spark.load_model(f"models:/{name}/{version.version}")
    return model.transform(prepared).select(
        vector_to_array(F.col("probability"))[1].alias("probability"),
        F.col("prediction").cast("string").alias("prediction"),
        F.col(config.label).alias(_LABEL),
        F.lit("validation").alias("_group"),
    )


def champion_reference(ctx: MonitorContext, name: str) -> ChampionReference:
    """The champion's validation reference (computed once per champion version).

    Raises:
        ReferenceUnavailable: the model has no champion.
    """
    import mlflow

    from featurelake.ml.tracking import configure_tracking

    target = configure_tracking(ctx.settings.mlflow)
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    version, run = champion_run(client, name)
    config = model_config(ctx.settings, name)
    metric = config.promotion.metric
    reference_id = f"champion_validation:{name}@{version.version}"
    table = f"predictions/{name}"
    metrics = _stored_metrics(ctx, reference_id)
    predictions = _validation_predictions(ctx, name, version, run)
    reference = Reference(
        id=reference_id,
        kind="champion_validation",
        rows=predictions,
        table=table,
        model=name,
        model_version=str(version.version),
    )
    if metrics is None:
        predictions = predictions.cache()
        metrics = quality(
            _collect_scores(binned_scores(predictions, "_group", "probability", _LABEL))[
                "validation"
            ]
        )
        promoted = version.tags.get(f"promotion.{metric}")
        metrics["promoted"] = float(promoted) if promoted else metrics.get(metric, float("nan"))
        metrics["rows"] = float(predictions.count())
        reference_profiles(ctx, table, reference, _KINDS)
        predictions.unpersist()
        ctx.append(
            REFERENCES_TABLE,
            [
                {
                    "reference_id": reference_id,
                    "kind": "champion_validation",
                    "table": table,
                    "table_version": None,
                    "model": name,
                    "model_version": str(version.version),
                    "versions": to_json(
                        {
                            table_name_of(k, ctx.settings.lakehouse.root): v
                            for k, v in _logged_versions(run).items()
                        }
                    ),
                    "rows": int(metrics["rows"]),
                    "metrics": to_json(metrics),
                    "created_at": ctx.now,
                    "run_id": ctx.run_id,
                }
            ],
            REFERENCE_SCHEMA,
        )
    return ChampionReference(reference, metrics, metric)


def _logged_versions(run: Any) -> dict[str, int]:
    tags = run.data.tags
    return {
        tags[f"featurelake.{role}.path"]: int(tags[f"featurelake.{role}.version"])
        for role in ("features", "labels")
        if f"featurelake.{role}.path" in tags
    }


def _labelled(
    ctx: MonitorContext, predictions: DataFrame, key: str, labels: LabelSource
) -> DataFrame:
    """The predictions of entities whose label has arrived, with the label as ``_fl_label``."""
    if labels.table is not None:
        assert labels.label is not None  # LabelSource requires it with a table
        table = ctx.tables.read(ctx.path(labels.table))
        return predictions.join(
            table.select(F.col(labels.key or key).alias(key), F.col(labels.label).alias(_LABEL)),
            on=key,
            how="inner",
        ).filter(F.col(_LABEL).isNotNull())
    from featurelake.feature_store.labels import OBSERVED, with_churn_label

    assert labels.churn_horizon_days is not None
    transactions = ctx.tables.read(ctx.path("silver/transactions"))
    labelled = with_churn_label(
        predictions,
        transactions,
        horizon_days=labels.churn_horizon_days,
        entity_timestamp_column="inference_ts",
        customer_column=key,
        label_column=_LABEL,
        status_column="_fl_label_status",
    )
    return labelled.filter(F.col("_fl_label_status") == OBSERVED)


def judge_performance(
    name: str,
    metric: str,
    champion_metrics: Mapping[str, float],
    batches: Mapping[str, stats.BinnedScores],
    watch: ModelMonitorConfig,
    common: Mapping[str, Any],
) -> list[CheckResult]:
    """Performance and calibration results of labelled scoring batches (plain Python).

    Args:
        name: the model.
        metric: the metric the champion was promoted on (``roc_auc``, ``pr_auc``).
        champion_metrics: the champion's validation metrics: ``promoted`` (the promotion
            metric's value it was promoted with) and ``ece``.
        batches: labelled scores per batch id.
        watch: the model's monitoring declaration (thresholds, ``min_labels``).
        common: fields every result carries (table, versions, reference id).

    Returns:
        Per batch with enough labels, one ``performance`` result (``critical`` is a degraded
        model) and one ``calibration`` result; a ``skipped`` one for a batch with too few.
    """
    promoted = champion_metrics.get("promoted")
    base_ece = champion_metrics.get("ece")
    fields: dict[str, Any] = dict(common)
    results = []
    for batch, scores in sorted(batches.items()):
        if scores.rows < watch.min_labels:
            results.append(
                CheckResult(
                    "performance",
                    f"model/{name}:{metric}",
                    "skipped",
                    window=batch,
                    detail=f"{scores.rows} labelled rows < min_labels {watch.min_labels}",
                    **fields,
                )
            )
            continue
        values = quality(scores)
        shown = ", ".join(f"{k}={v:.4f}" for k, v in values.items())
        if metric in values and promoted is not None:
            drop = promoted - values[metric]
            status = judge("drop", drop, watch.performance)
            word = {"ok": "holds", "warning": "slipping", "critical": "degraded"}[status]
            results.append(
                CheckResult(
                    "performance",
                    f"model/{name}:{metric}",
                    status,
                    metric=metric,
                    value=values[metric],
                    threshold=_reached(watch.performance, status, promoted),
                    detail=f"{word}: {metric} {values[metric]:.4f} vs promoted "
                    f"{promoted:.4f} (drop {drop:+.4f}); {shown}",
                    window=batch,
                    **fields,
                )
            )
        if "ece" in values and base_ece is not None:
            rise = values["ece"] - base_ece
            status = judge("rise", rise, watch.calibration)
            results.append(
                CheckResult(
                    "calibration",
                    f"model/{name}:ece",
                    status,
                    metric="ece",
                    value=values["ece"],
                    threshold=_reached(watch.calibration, status, -base_ece),
                    detail=f"calibration error {values['ece']:.4f} vs the champion's "
                    f"{base_ece:.4f} (rise {rise:+.4f})",
                    window=batch,
                    **fields,
                )
            )
    return results


def _reached(threshold: Threshold, status: str, base: float) -> float | None:
    """The metric value at which ``status`` was reached: ``base`` - the drop threshold."""
    limit = threshold.critical if status == "critical" else threshold.warning
    return None if limit is None else abs(base - limit)


def monitor_model(ctx: MonitorContext, name: str, watch: ModelMonitorConfig) -> list[CheckResult]:
    """Prediction drift and performance of one model's recent scoring batches."""
    path = ctx.path(f"predictions/{name}")
    table = f"predictions/{name}"
    if not ctx.tables.exists(path):
        return [
            CheckResult(
                "prediction_drift",
                table,
                "skipped",
                detail="no predictions yet",
                table=table,
                model=name,
            )
        ]
    try:
        champion = champion_reference(ctx, name)
    except ReferenceUnavailable as exc:
        return [
            CheckResult(
                "prediction_drift", table, "skipped", detail=str(exc), table=table, model=name
            )
        ]
    version = ctx.tables.version(path)
    predictions = ctx.tables.read(path, version=version).withColumn(
        "prediction", F.col("prediction").cast("string")
    )
    if "role" in predictions.columns:
        # A waiting challenger's shadow predictions are not the champion's.
        predictions = predictions.filter(F.coalesce(F.col("role"), F.lit("champion")) != "shadow")
    stats_ = ctx.tables.column_stats(path, ["scoring_date"], version)
    latest = stats_["scoring_date"].max if stats_ else None
    since = None
    if latest is not None:
        since = (
            datetime.combine(latest, time.min, timezone.utc) - watch.lookback + timedelta(days=1)
        )
    recent = (
        predictions
        if since is None
        else predictions.filter(F.col("scoring_date") >= F.lit(since.date()))
    )
    references = reference_profiles(ctx, table, champion.reference, _KINDS)
    comparison = profile_and_compare(
        ctx,
        recent,
        table=table,
        table_version=version,
        kinds=_KINDS,
        window=WindowSpec(column="inference_ts", by="batch_id"),
        slices=(),
        reference=champion.reference,
        references=references,
        thresholds=ctx.config.drift.thresholds.merged(watch.prediction_drift),
        model=(name, champion.reference.model_version),
    )
    results = drift_results(
        comparison.drifts,
        check="prediction_drift",
        table=table,
        table_version=version,
        reference=champion.reference,
        model=(name, champion.reference.model_version),
    )
    if watch.labels is not None:
        key = model_config(ctx.settings, name).features.key
        labelled = _labelled(ctx, recent, key, watch.labels)
        batches = _collect_scores(binned_scores(labelled, "batch_id", "probability", _LABEL))
        results += judge_performance(
            name,
            champion.promotion_metric,
            champion.metrics,
            batches,
            watch,
            {
                "table": table,
                "table_version": version,
                "model": name,
                "model_version": champion.reference.model_version,
                "reference_id": champion.reference.id,
            },
        )
    return results


def monitor_models(ctx: MonitorContext) -> list[CheckResult]:
    """:func:`monitor_model` for every model of ``models`` in conf/monitoring.yaml."""
    results: list[CheckResult] = []
    for name, watch in sorted(ctx.config.models.items()):
        results += monitor_model(ctx, name, watch)
    return results
