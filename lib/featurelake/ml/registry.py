"""Model registry: register the best candidate as ``challenger``; promote it to ``champion``.

Promotion rule (:func:`decide_promotion`): the challenger becomes champion only when

1. its metric on the evaluation data is at least ``promotion.min_metric``, and
2. there is no champion, or the challenger beats the champion's metric **on the same evaluation
   data** by at least ``promotion.min_improvement``.

Both models are scored on the same rows by the caller (the promote job rebuilds the challenger's
held-out rows from the Delta versions its training run logged). Every decision - promoted or not,
and why - is logged (JSON log line), tagged on the challenger's model version
(``promotion.*``) and returned for the job to record.

Example:
    >>> version = register_challenger(client, "credit_default", model_uri, tags={...})
    >>> decision = promote(client, "credit_default", policy, evaluate=score_on_holdout)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from featurelake.ml.config import PromotionConfig

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PromotionDecision",
    "decide_promotion",
    "promote",
    "register_challenger",
]

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class PromotionDecision:
    """One promotion decision.

    Attributes:
        model: the registered model name.
        promoted: True when ``champion`` now points at the challenger.
        reason: why, in words.
        metric: the compared metric's name.
        challenger_version, challenger_metric: the challenger and its metric.
        champion_version, champion_metric: the champion before the decision (None when none).
        min_metric, min_improvement: the policy applied.
        decided_at: when (UTC, ISO 8601).
    """

    model: str
    promoted: bool
    reason: str
    metric: str
    challenger_version: str
    challenger_metric: float
    champion_version: str | None
    champion_metric: float | None
    min_metric: float
    min_improvement: float
    decided_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_promotion(
    *, challenger_metric: float, champion_metric: float | None, policy: PromotionConfig
) -> tuple[bool, str]:
    """Apply the promotion rule to two metrics measured on the same data.

    Args:
        challenger_metric: the challenger's metric.
        champion_metric: the current champion's metric, or None when there is no champion.
        policy: the absolute threshold and the required margin.

    Returns:
        (promote, reason).
    """
    name = policy.metric
    if challenger_metric < policy.min_metric:
        return False, (
            f"{name} {challenger_metric:.4f} is below the minimum {policy.min_metric:.4f}"
        )
    if champion_metric is None:
        return True, (
            f"{name} {challenger_metric:.4f} clears the minimum "
            f"{policy.min_metric:.4f} and there is no champion"
        )
    gain = challenger_metric - champion_metric
    # A challenger no better than the champion is not promoted, even with no margin asked:
    # a retraining on the same data would otherwise replace the champion by its own twin.
    if gain < policy.min_improvement or gain <= 0:
        return False, (
            f"{name} {challenger_metric:.4f} does not beat the champion's "
            f"{champion_metric:.4f} by the required {policy.min_improvement:.4f} "
            f"(difference {gain:+.4f})"
        )
    return True, (
        f"{name} {challenger_metric:.4f} clears the minimum {policy.min_metric:.4f} "
        f"and beats the champion's {champion_metric:.4f} by {gain:+.4f} "
        f"(required {policy.min_improvement:.4f})"
    )


def register_challenger(
    client: Any,
    name: str,
    model_uri: str,
    *,
    run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
) -> Any:
    """Register ``model_uri`` as a new version of ``name`` and point ``challenger`` at it.

    Args:
        client: an ``mlflow.MlflowClient``.
        name: the registered model name (created when absent).
        model_uri: the logged model (``models:/<model id>`` or ``runs:/<run>/model``).
        run_id: the training run (stored on the version).
        tags: tags for the new model version.
        description: the version's description.

    Returns:
        The new ``ModelVersion``.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name, model_uri, run_id=run_id, tags=dict(tags or {}), description=description
    )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info(
        "challenger_registered",
        extra={
            "fields": {
                "model": name,
                "version": version.version,
                "model_uri": model_uri,
                "run_id": run_id,
            }
        },
    )
    return version


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The model version behind ``alias``, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(
    client: Any,
    name: str,
    policy: PromotionConfig,
    evaluate: Callable[[str], float],
) -> PromotionDecision:
    """Decide whether the ``challenger`` of ``name`` becomes ``champion``, and apply it.

    Args:
        client: an ``mlflow.MlflowClient``.
        name: the registered model name.
        policy: the promotion rule.
        evaluate: scores a model URI (``models:/<name>/<version>``) on the evaluation data and
            returns ``policy.metric``; called for the challenger and the champion alike, so both
            are measured on the same rows.

    Returns:
        The decision (also logged and tagged on the challenger's version).

    Raises:
        LookupError: ``name`` has no ``challenger``.
    """
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise LookupError(f"registered model {name!r} has no {CHALLENGER!r} alias; train first")
    champion = alias_version(client, name, CHAMPION)
    challenger_metric = float(evaluate(f"models:/{name}/{challenger.version}"))
    if champion is not None and champion.version == challenger.version:
        decision = PromotionDecision(
            name,
            False,
            f"version {challenger.version} is already the champion",
            policy.metric,
            str(challenger.version),
            challenger_metric,
            str(champion.version),
            challenger_metric,
            policy.min_metric,
            policy.min_improvement,
            _now(),
        )
    else:
        champion_metric = (
            float(evaluate(f"models:/{name}/{champion.version}")) if champion is not None else None
        )
        promoted, reason = decide_promotion(
            challenger_metric=challenger_metric, champion_metric=champion_metric, policy=policy
        )
        decision = PromotionDecision(
            name,
            promoted,
            reason,
            policy.metric,
            str(challenger.version),
            challenger_metric,
            str(champion.version) if champion is not None else None,
            champion_metric,
            policy.min_metric,
            policy.min_improvement,
            _now(),
        )
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, challenger.version)
    for key, value in {
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": decision.reason,
        f"promotion.{policy.metric}": f"{challenger_metric:.6f}",
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.decided_at": decision.decided_at,
    }.items():
        client.set_model_version_tag(name, challenger.version, key, value)
    log.info("promotion_decision", extra={"fields": decision.as_dict()})
    return decision


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
