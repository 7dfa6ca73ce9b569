"""The ``promote`` job's body: the evaluation rows, the decision and its record; rollback.

A classifier's challenger is compared with the champion on **the most recent labelled
window**: the labelled rows of the feature and label tables, at the Delta versions the
challenger's training run logged, that are not in the versions the champion's run logged
(added or changed since), restricted to the challenger's held-out side of its split - rows
neither model trained on. Both models score the same rows. A window smaller than
``promotion.recent_min_rows`` (a retraining without new data) gives way to the challenger's
whole held-out split. With ``promotion.max_regression``, both are also scored on the
champion's own held-out rows (rebuilt from its logged versions and split), where the challenger
may not be worse by more than that.

Segmentation models are compared on the challenger's feature rows (silhouette), as before.

Example:
    >>> summary = promote_model(ctx, client, config)
    >>> summary["decision"], summary["evaluation"]
    ('promoted', 'the recent window: 412 labelled rows ...')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from featurelake.core.errors import UserError
from featurelake.ml.config import ClassificationConfig, ModelConfig, SegmentationConfig
from featurelake.ml.ledger import promotion_rows, record_promotions
from featurelake.ml.lineage import describe_versions, logged_frame, new_rows, row_columns
from featurelake.ml.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    promote,
    rollback,
    training_run,
)

__all__ = ["EvaluationRows", "comparison_rows", "promote_model", "rollback_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationRows:
    """Rows both models are scored on, and what they are.

    Attributes:
        rows: the rows (cached by the caller).
        description: in words, for the decision's record.
        count: how many.
    """

    rows: DataFrame
    description: str
    count: int


def comparison_rows(
    ctx: Any, config: ClassificationConfig, challenger_run: Any, champion_run: Any | None
) -> EvaluationRows:
    """The rows a challenger and a champion are compared on (see the module docstring).

    Args:
        ctx: the job context (table I/O, settings).
        config: the model configuration.
        challenger_run, champion_run: the runs with lineage tags and split params (no
            champion: the challenger's held-out rows).
    """
    root = ctx.settings.lakehouse.root
    challenger = logged_frame(ctx.tables, config, challenger_run)
    held_out = challenger.side("test")
    if champion_run is None:
        rows = held_out.cache()
        count = rows.count()
        return EvaluationRows(
            rows,
            f"the challenger's held-out rows ({count}; no champion yet)",
            count,
        )
    champion = logged_frame(ctx.tables, config, champion_run)
    recent = new_rows(
        held_out, champion.labelled(), row_columns(config), config.features.key
    ).cache()
    count = recent.count()
    since = describe_versions(champion.versions, root)
    now = describe_versions(challenger.versions, root)
    if count >= config.promotion.recent_min_rows:
        return EvaluationRows(
            recent,
            f"the recent window: {count} labelled rows of {now} not in the champion's data "
            f"({since}), on the challenger's held-out side",
            count,
        )
    recent.unpersist()
    rows = held_out.cache()
    total = rows.count()
    return EvaluationRows(
        rows,
        f"the challenger's held-out rows ({total}): the recent window since the champion's "
        f"data ({since}) has {count} labelled rows, fewer than recent_min_rows "
        f"{config.promotion.recent_min_rows}",
        total,
    )


def promote_model(ctx: Any, client: Any, config: ModelConfig) -> dict[str, Any]:
    """Decide on the challenger of one model, apply it and record it.

    Returns:
        The decision for the run summary (``skipped`` when there is no challenger).
    """
    import mlflow

    from featurelake.ml.evaluation import evaluate_binary
    from featurelake.ml.segmentation import silhouette

    challenger = alias_version(client, config.name, CHALLENGER)
    if challenger is None:
        log.info(
            "promotion_skipped",
            extra={"fields": {"model": config.name, "reason": "no challenger waiting"}},
        )
        return {"decision": "skipped", "reason": "no challenger waiting"}
    champion = alias_version(client, config.name, CHAMPION)
    challenger_run = training_run(client, challenger)
    metric = config.promotion.metric
    cached: list[DataFrame] = []
    holdout_rows: DataFrame | None = None
    if isinstance(config, SegmentationConfig):
        tags = challenger_run.data.tags
        data = ctx.tables.read(
            tags["featurelake.features.path"], version=int(tags["featurelake.features.version"])
        )
        evaluation = EvaluationRows(data, "the challenger's feature rows", 0)
    else:
        champion_run = (
            training_run(client, champion)
            if champion is not None and champion.version != challenger.version
            else None
        )
        evaluation = comparison_rows(ctx, config, challenger_run, champion_run)
        cached.append(evaluation.rows)
        if champion_run is not None and config.promotion.max_regression is not None:
            holdout_rows = logged_frame(ctx.tables, config, champion_run).side("test").cache()
            cached.append(holdout_rows)

    def score(data: DataFrame, model_uri: str) -> float:
        model = mlflow.spark.load_model(model_uri)
        if isinstance(config, SegmentationConfig):
            return silhouette(model.transform(data))
        return float(getattr(evaluate_binary(model.transform(data), config.label), metric))

    try:
        decision = promote(
            client,
            config.name,
            config.promotion,
            lambda uri: score(evaluation.rows, uri),
            evaluate_holdout=(
                (lambda uri: score(holdout_rows, uri)) if holdout_rows is not None else None
            ),
            evaluation=evaluation.description,
            evaluation_rows=evaluation.count or None,
        )
    finally:
        for frame in cached:
            frame.unpersist()
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
                "max_regression": decision.max_regression,
                "metric": metric,
                "evaluation_rows": decision.evaluation_rows,
            }
        )
        mlflow.log_metrics(
            {
                k: v
                for k, v in {
                    f"challenger_{metric}": decision.challenger_metric,
                    f"champion_{metric}": decision.champion_metric,
                    f"challenger_holdout_{metric}": decision.challenger_holdout_metric,
                    f"champion_holdout_{metric}": decision.champion_holdout_metric,
                }.items()
                if v is not None
            }
        )
        mlflow.log_dict(
            {**decision.as_dict(), "transitions": [t.as_dict() for t in decision.transitions]},
            "decision.json",
        )
    record_promotions(ctx, promotion_rows(ctx.run_id, decision))
    return {
        "decision": "promoted" if decision.promoted else "rejected",
        "reason": decision.reason,
        "challenger_version": decision.challenger_version,
        f"challenger_{metric}": round(decision.challenger_metric, 4),
        "champion_version": decision.champion_version,
        "evaluation": decision.evaluation,
        "transitions": [f"{t.action}:{t.version}" for t in decision.transitions],
    }


def rollback_model(ctx: Any, client: Any, name: str, reason: str) -> dict[str, Any]:
    """Restore a model's previous champion, retire the current one, record both.

    Raises:
        UserError: the model has no champion or no previous champion.
    """
    try:
        transitions = rollback(client, name, reason)
    except LookupError as exc:
        raise UserError(str(exc)) from None
    record_promotions(ctx, promotion_rows(ctx.run_id, transitions=transitions))
    return {
        "decision": "rolled_back",
        "champion_version": transitions[0].version,
        "retired_version": transitions[1].version,
        "reason": reason,
    }
