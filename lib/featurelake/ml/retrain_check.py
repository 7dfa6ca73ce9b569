"""The ``retrain-check`` job's body: gather each trigger's evidence, decide, train, record.

For each classifier (docs/RETRAINING.md):

1. **Evidence.** The champion (alias ``champion``) and its training run; the latest drift of
   the feature table against the champion's training rows (``ops/drift_metrics``, written by
   ``monitor``) on the champion's most important features (its run's importance table); the
   ``performance`` results of the latest monitor run (``ops/monitor_results``) for batches the
   champion itself scored (``predictions/<model>``, ``role`` champion); the champion version's
   age; and the labelled rows of the feature and label tables not in the Delta versions the
   champion's run logged.
2. **Decision.** :mod:`featurelake.ml.retraining` judges each trigger; any that fires means
   retraining - unless a challenger trained on exactly the current table versions already
   waits for promotion. A model without a champion is trained; a model without a
   ``retraining`` section is trained on every check (as ``train-classifier`` does).
3. **Training** on the latest data (:func:`featurelake.ml.training.train_and_register`): the
   decision and every trigger's outcome are tags of the training runs and of the new version.
4. **Record.** One row of ``ops/retraining_decisions`` per model and trigger evaluated; the
   champion's version is tagged with the latest decision when nothing is retrained.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.ml.classification import prepare_training_frame
from featurelake.ml.config import ClassificationConfig, check_columns
from featurelake.ml.importance import read_importances
from featurelake.ml.lineage import describe_versions, logged_frame, new_rows, row_columns
from featurelake.ml.registry import CHALLENGER, CHAMPION, alias_version, training_run
from featurelake.ml.retraining import (
    BatchScore,
    TriggerOutcome,
    check_drift,
    check_new_data,
    check_performance,
    check_schedule,
    decide,
)
from featurelake.ml.training import train_and_register

__all__ = [
    "RETRAINING_SCHEMA",
    "RETRAINING_TABLE",
    "check_model",
    "check_tables",
    "current_versions",
]

log = logging.getLogger(__name__)

RETRAINING_TABLE = ("ops", "retraining_decisions")
RETRAINING_SCHEMA = (
    "model string, trigger string, fired boolean, value double, threshold double, "
    "reason string, decision string, decision_reason string, champion_version string, "
    "challenger_version string, training_run_id string, features_version long, "
    "labels_version long, checked_at timestamp, job_run_id string"
)
_DRIFT_TABLE = ("ops", "drift_metrics")
_RESULTS_TABLE = ("ops", "monitor_results")
_TAG_LIMIT = 5000


def _read_ops(ctx: Any, table: tuple[str, str]) -> DataFrame | None:
    path = ctx.path(*table)
    return ctx.tables.read(path, record=False) if ctx.tables.exists(path) else None


def current_versions(ctx: Any, config: ClassificationConfig) -> dict[str, int]:
    """The latest Delta version of the feature and the label table (``role`` -> version)."""
    return {
        "features": ctx.tables.version(ctx.path(config.features.layer, config.features.name)),
        "labels": ctx.tables.version(ctx.path(config.labels.layer, config.labels.name)),
    }


def _logged_versions(run: Any) -> dict[str, int]:
    tags = run.data.tags
    return {role: int(tags[f"featurelake.{role}.version"]) for role in ("features", "labels")}


def _drift_outcome(
    ctx: Any, client: Any, config: ClassificationConfig, champion: Any
) -> TriggerOutcome:
    assert config.retraining is not None and config.retraining.triggers.drift is not None
    spec = config.retraining.triggers.drift
    if spec.features:
        watched, how = list(spec.features), f"declared features: {', '.join(spec.features)}"
    else:
        ranked = read_importances(client, champion.run_id)
        if ranked:
            watched = [i.feature for i in ranked[: spec.top_features]]
            how = f"the champion's top {len(watched)} features by importance: {', '.join(watched)}"
        else:
            watched = list(config.feature_columns)
            how = "every feature (the champion's run logged no importances)"
    prefix = f"champion:{config.name}@{champion.version}:"
    reference = f"champion version {champion.version}'s training rows"
    drift = _read_ops(ctx, _DRIFT_TABLE)
    values: dict[str, float] = {}
    if drift is not None:
        rows = drift.filter(
            (F.col("table") == config.features.table)
            & (F.col("metric") == spec.metric)
            & (F.col("slice") == "all")
            & F.col("reference_id").startswith(prefix)
            & F.col("value").isNotNull()
        )
        latest = rows.agg(F.max("computed_at")).first()
        if latest is not None and latest[0] is not None:
            for r in (
                rows.filter(F.col("computed_at") == F.lit(latest[0]))
                .groupBy("column")
                .agg(F.max("value").alias("value"))
                .collect()
            ):
                values[r["column"]] = float(r["value"])
    return check_drift(values, watched, spec, watched_how=how, reference=reference)


def _performance_outcome(ctx: Any, config: ClassificationConfig, champion: Any) -> TriggerOutcome:
    assert config.retraining is not None and config.retraining.triggers.performance is not None
    spec = config.retraining.triggers.performance
    metric = config.promotion.metric
    promoted_tag = champion.tags.get(f"promotion.{metric}")
    promoted = float(promoted_tag) if promoted_tag else None
    version = str(champion.version)
    batches: list[BatchScore] = []
    results = _read_ops(ctx, _RESULTS_TABLE)
    predictions_path = ctx.path("predictions", config.name)
    if results is not None and ctx.tables.exists(predictions_path):
        judged = results.filter(
            (F.col("check") == "performance")
            & (F.col("model") == config.name)
            & F.col("status").isin("ok", "warning", "critical")
            & F.col("value").isNotNull()
        )
        latest_run = judged.agg(F.max("checked_at")).first()
        if latest_run is not None and latest_run[0] is not None:
            predictions = ctx.tables.read(predictions_path, record=False)
            role = (
                F.coalesce(F.col("role"), F.lit("champion"))
                if "role" in predictions.columns
                else F.lit("champion")
            )
            # Batches the champion itself scored (not a shadow, not an earlier version).
            own = (
                predictions.filter((F.col("model_version") == version) & (role == "champion"))
                .groupBy("batch_id")
                .agg(F.max("inference_ts").alias("scored_at"))
            )
            rows = (
                judged.filter(F.col("checked_at") == F.lit(latest_run[0]))
                .select(F.col("window").alias("batch_id"), "value")
                .join(own, on="batch_id", how="inner")
                .collect()
            )
            batches = [BatchScore(r["batch_id"], float(r["value"]), r["scored_at"]) for r in rows]
    return check_performance(batches, promoted, metric, spec, champion_version=version)


def _new_data_outcome(ctx: Any, config: ClassificationConfig, champion_run: Any) -> TriggerOutcome:
    assert config.retraining is not None and config.retraining.triggers.new_data is not None
    spec = config.retraining.triggers.new_data
    champion_data = logged_frame(ctx.tables, config, champion_run)
    features = ctx.tables.read(ctx.path(config.features.layer, config.features.name))
    labels = ctx.tables.read(ctx.path(config.labels.layer, config.labels.name))
    current = prepare_training_frame(features, labels, config).filter(
        F.col(config.label).isNotNull()
    )
    added = new_rows(
        current, champion_data.labelled(), row_columns(config), config.features.key
    ).count()
    trained_rows = int(champion_run.data.params.get("train_rows", 0))
    since = describe_versions(champion_data.versions, ctx.settings.lakehouse.root)
    return check_new_data(added, trained_rows, spec, since=since)


def _outcomes(
    ctx: Any, client: Any, source: str, config: ClassificationConfig, champion: Any, now: datetime
) -> list[TriggerOutcome]:
    if config.retraining is None:
        return [
            TriggerOutcome(
                "unconditional",
                True,
                f"{source} declares no retraining section: the model is trained on every check",
            )
        ]
    if champion is None:
        return [TriggerOutcome("no_champion", True, f"{config.name} has no champion yet")]
    triggers = config.retraining.triggers
    champion_run = training_run(client, champion)
    outcomes = []
    if triggers.drift is not None:
        outcomes.append(_drift_outcome(ctx, client, config, champion))
    if triggers.performance is not None:
        outcomes.append(_performance_outcome(ctx, config, champion))
    if triggers.schedule is not None:
        registered = datetime.fromtimestamp(champion.creation_timestamp / 1000, timezone.utc)
        outcomes.append(check_schedule(registered, now, triggers.schedule))
    if triggers.new_data is not None:
        outcomes.append(_new_data_outcome(ctx, config, champion_run))
    return outcomes


def _waiting_challenger(
    client: Any, config: ClassificationConfig, champion: Any, versions: dict[str, int]
) -> Any | None:
    """A challenger (not the champion) trained on exactly the current table versions."""
    challenger = alias_version(client, config.name, CHALLENGER)
    if challenger is None or (champion is not None and challenger.version == champion.version):
        return None
    return challenger if _logged_versions(training_run(client, challenger)) == versions else None


def _decision_tags(
    decision_reason: str, outcomes: list[TriggerOutcome], check_run_id: str
) -> dict[str, str]:
    tags = {
        "featurelake.retraining.decision": "retrain",
        "featurelake.retraining.reason": decision_reason[:_TAG_LIMIT],
        "featurelake.retraining.triggers": ",".join(o.trigger for o in outcomes if o.fired),
        "featurelake.retraining.check_run_id": check_run_id,
    }
    for o in outcomes:
        state = "fired" if o.fired else "not fired"
        tags[f"featurelake.retraining.trigger.{o.trigger}"] = f"{state}: {o.reason}"[:_TAG_LIMIT]
    return tags


def check_tables(ctx: Any, source: str, config: ClassificationConfig) -> None:
    """Check the configuration against its tables' schemas (no data is read).

    Raises:
        ConfigError: a column it names is not in its table (file and key in the message).
    """
    check_columns(
        config,
        source,
        {
            "features": ctx.tables.read(
                ctx.path(config.features.layer, config.features.name), record=False
            ).schema,
            "labels": ctx.tables.read(
                ctx.path(config.labels.layer, config.labels.name), record=False
            ).schema,
        },
    )


def check_model(
    ctx: Any,
    client: Any,
    source: str,
    config: ClassificationConfig,
    now: datetime,
    *,
    train: bool = True,
) -> dict[str, Any]:
    """Evaluate one model's triggers, retrain it when they say so, record the decision.

    Args:
        ctx: the job context.
        client: an ``mlflow.MlflowClient``.
        source: the model's configuration file.
        config: its validated configuration.
        now: the time the check is made at (ages are measured to it).
        train: False evaluates and records only (``--dry-run``).

    Returns:
        The decision for the run summary.
    """
    champion = alias_version(client, config.name, CHAMPION)
    versions = current_versions(ctx, config)
    outcomes = _outcomes(ctx, client, source, config, champion, now)
    retrain, reason = decide(outcomes)
    decision = "retrain" if retrain else "keep"
    waiting = (
        _waiting_challenger(client, config, champion, versions)
        if retrain and config.retraining is not None
        else None
    )
    if waiting is not None:
        decision = "wait"
        reason = (
            f"challenger version {waiting.version} was already trained on the current data "
            f"(features@{versions['features']}, labels@{versions['labels']}) and waits for "
            f"promotion; triggers: {reason}"
        )
    elif retrain and not train:
        decision = "retrain (dry run)"
    summary: dict[str, Any] = {
        "decision": decision,
        "reason": reason,
        "triggers": {o.trigger: {"fired": o.fired, "value": o.value} for o in outcomes},
    }
    training: dict[str, Any] = {}
    error: str | None = None
    try:
        if decision == "retrain":
            training = train_and_register(
                ctx,
                source,
                config,
                tags=_decision_tags(reason, outcomes, ctx.run_id),
            )
            summary["training"] = training
        elif champion is not None:
            for key, value in {
                "retraining.last_decision": decision,
                "retraining.last_reason": reason[:_TAG_LIMIT],
                "retraining.last_checked_at": now.isoformat(timespec="seconds"),
            }.items():
                client.set_model_version_tag(config.name, champion.version, key, value)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        final = decision if error is None else "retrain failed"
        final_reason = reason if error is None else f"{reason}; training failed: {error}"
        rows = [
            {
                "model": config.name,
                "trigger": o.trigger,
                "fired": o.fired,
                "value": o.value,
                "threshold": o.threshold,
                "reason": o.reason,
                "decision": final,
                "decision_reason": final_reason,
                "champion_version": str(champion.version) if champion is not None else None,
                "challenger_version": training.get("challenger_version"),
                "training_run_id": training.get("parent_run_id"),
                "features_version": versions["features"],
                "labels_version": versions["labels"],
                "checked_at": now,
                "job_run_id": ctx.run_id,
            }
            for o in outcomes
        ]
        ctx.tables.append_rows(rows, RETRAINING_SCHEMA, ctx.path(*RETRAINING_TABLE))
    log.info(
        "retraining_decision",
        extra={
            "fields": {
                "model": config.name,
                "decision": decision,
                "reason": reason,
                "fired": [o.trigger for o in outcomes if o.fired],
            }
        },
    )
    return summary
