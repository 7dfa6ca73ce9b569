"""Model registry and lifecycle: ``challenger``, ``champion``, ``previous``; promotion; rollback.

Lifecycle (every version carries ``lifecycle.stage``):

* a new version is the ``challenger`` (stage ``staging``); the challenger it replaces, unless
  it is the champion or the previous one, is retired;
* promotion moves ``champion`` (``production``) to the challenger, the old champion to
  ``previous`` (kept for a one-step rollback), and retires the version that was ``previous``;
* :func:`rollback` moves ``champion`` back to ``previous`` and retires the rolled-back version;
* a retired version is tagged ``lifecycle.stage = retired`` with ``lifecycle.retired_at`` and
  ``lifecycle.retired_reason``.

Every move is a :class:`Transition`; jobs record them in ``ops/model_promotions``.

Promotion rule (:func:`decide_promotion`): the challenger becomes champion only when

1. its metric on the evaluation rows is at least ``promotion.min_metric``, and
2. there is no champion, or the challenger beats the champion's metric **on the same evaluation
   rows** by at least ``promotion.min_improvement`` (and is strictly better), and
3. with ``promotion.max_regression``, the challenger scores at most that much below the
   champion on the champion's own held-out rows.

The caller chooses the rows (the promote job: for classifiers the most recent labelled window,
rebuilt from the Delta versions both training runs logged). Every decision - promoted or not,
and why - is logged (JSON log line), tagged on the challenger's model version
(``promotion.*``) and returned for the job to record.

Example:
    >>> version = register_challenger(client, "credit_default", model_uri, tags={...})
    >>> decision = promote(client, "credit_default", policy, evaluate=score_on_recent_rows)
    >>> rollback(client, "credit_default", "the new model misbehaves in production")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from featurelake.ml.config import PromotionConfig

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "PromotionDecision",
    "Registration",
    "Transition",
    "alias_version",
    "apply_promotion",
    "decide_promotion",
    "promote",
    "register_challenger",
    "replace_challenger",
    "retire",
    "rollback",
    "training_run",
]

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
#: The version tag naming its lifecycle stage, and the stage of each alias.
STAGE_TAG = "lifecycle.stage"
STAGES = {CHALLENGER: "staging", CHAMPION: "production", PREVIOUS: "previous"}
RETIRED = "retired"


@dataclass(frozen=True)
class Transition:
    """One move of a model version in its lifecycle.

    Attributes:
        model: the registered model name.
        action: ``registered`` (new challenger), ``promoted`` (to champion), ``previous`` (the
            old champion kept for rollback), ``rolled_back`` (previous back to champion) or
            ``retired``.
        version: the version moved.
        alias: the alias it holds afterwards (None when retired).
        reason: why, in words.
        at: when (UTC, ISO 8601).
    """

    model: str
    action: str
    version: str
    alias: str | None
    reason: str
    at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Registration:
    """A new challenger and the transitions its registration made."""

    version: Any
    transitions: list[Transition]


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
        evaluation: the rows both models were measured on, in words.
        evaluation_rows: how many.
        challenger_holdout_metric, champion_holdout_metric: both on the champion's held-out
            rows (when ``max_regression`` is set and there is a champion).
        max_regression: the policy's bound (None: not checked).
        transitions: the lifecycle moves the decision made (none when rejected).
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
    evaluation: str = ""
    evaluation_rows: int | None = None
    challenger_holdout_metric: float | None = None
    champion_holdout_metric: float | None = None
    max_regression: float | None = None
    transitions: list[Transition] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("transitions")
        return fields


def decide_promotion(
    *,
    challenger_metric: float,
    champion_metric: float | None,
    policy: PromotionConfig,
    challenger_holdout: float | None = None,
    champion_holdout: float | None = None,
) -> tuple[bool, str]:
    """Apply the promotion rule to metrics measured on the same data.

    Args:
        challenger_metric: the challenger's metric on the evaluation rows.
        champion_metric: the current champion's on the same rows, or None when there is none.
        policy: the absolute threshold, the required margin and the allowed regression.
        challenger_holdout, champion_holdout: both models on the champion's own held-out rows
            (checked against ``policy.max_regression`` when both are given and it is set).

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
    reason = (
        f"{name} {challenger_metric:.4f} clears the minimum {policy.min_metric:.4f} "
        f"and beats the champion's {champion_metric:.4f} by {gain:+.4f} "
        f"(required {policy.min_improvement:.4f})"
    )
    bound = policy.max_regression
    if bound is None or challenger_holdout is None or champion_holdout is None:
        return True, reason
    regression = champion_holdout - challenger_holdout
    # A small tolerance: a bound met exactly on paper must not fail on a rounding error.
    if regression > bound + 1e-12:
        return False, (
            f"{reason}, but on the champion's held-out rows it scores {challenger_holdout:.4f} "
            f"against the champion's {champion_holdout:.4f}: a regression of "
            f"{regression:.4f} beyond the allowed {bound:.4f}"
        )
    return True, (
        f"{reason}; on the champion's held-out rows {challenger_holdout:.4f} against "
        f"{champion_holdout:.4f} (regression {regression:+.4f}, allowed {bound:.4f})"
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

    The same as :func:`replace_challenger`, returning only the new ``ModelVersion``.
    """
    return replace_challenger(
        client, name, model_uri, run_id=run_id, tags=tags, description=description
    ).version


def replace_challenger(
    client: Any,
    name: str,
    model_uri: str,
    *,
    run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
) -> Registration:
    """Register a new version as ``challenger``; retire the challenger it replaces.

    A replaced challenger that is also the champion or the previous champion keeps that role.

    Args:
        client: an ``mlflow.MlflowClient``.
        name: the registered model name (created when absent).
        model_uri: the logged model (``models:/<model id>`` or ``runs:/<run>/model``).
        run_id: the training run (stored on the version).
        tags: tags for the new model version.
        description: the version's description.

    Returns:
        The new ``ModelVersion`` and the transitions (registered; the replaced one retired).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    replaced = alias_version(client, name, CHALLENGER)
    # A tracking server takes a logged model's URI only with the model's id beside it.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        name,
        model_uri,
        run_id=run_id,
        tags=dict(tags or {}),
        description=description,
        model_id=model_id,
    )
    number = str(version.version)
    _move_alias(client, name, CHALLENGER, number)
    transitions = [Transition(name, "registered", number, CHALLENGER, "a new training run", _now())]
    if replaced is not None and not _holds(client, name, str(replaced.version), CHAMPION, PREVIOUS):
        transitions.append(
            retire(
                client,
                name,
                str(replaced.version),
                f"replaced as challenger by version {number} before it was promoted",
            )
        )
    log.info(
        "challenger_registered",
        extra={
            "fields": {
                "model": name,
                "version": number,
                "model_uri": model_uri,
                "run_id": run_id,
                "retired": [t.version for t in transitions if t.action == "retired"],
            }
        },
    )
    return Registration(version, transitions)


def _holds(client: Any, name: str, version: str, *aliases: str) -> bool:
    """Whether ``version`` is what any of ``aliases`` points at."""
    for alias in aliases:
        current = alias_version(client, name, alias)
        if current is not None and str(current.version) == version:
            return True
    return False


def _move_alias(client: Any, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, STAGE_TAG, STAGES[alias])


def retire(client: Any, name: str, version: str, reason: str) -> Transition:
    """Tag ``version`` retired, with why and when.

    Returns:
        The ``retired`` transition.
    """
    at = _now()
    for key, value in {
        STAGE_TAG: RETIRED,
        "lifecycle.retired_at": at,
        "lifecycle.retired_reason": reason,
    }.items():
        client.set_model_version_tag(name, version, key, value)
    log.info(
        "version_retired", extra={"fields": {"model": name, "version": version, "reason": reason}}
    )
    return Transition(name, "retired", version, None, reason, at)


def apply_promotion(client: Any, name: str, version: str, reason: str) -> list[Transition]:
    """Make ``version`` the champion; the old champion becomes ``previous``.

    The version that was ``previous`` is retired (a rollback goes one step back), and the
    ``challenger`` alias is removed when it pointed at ``version``.

    Returns:
        The transitions made, in order.
    """
    champion = alias_version(client, name, CHAMPION)
    previous = alias_version(client, name, PREVIOUS)
    challenger = alias_version(client, name, CHALLENGER)
    _move_alias(client, name, CHAMPION, version)
    transitions = [Transition(name, "promoted", version, CHAMPION, reason, _now())]
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    if champion is not None and str(champion.version) != version:
        old = str(champion.version)
        if previous is not None and str(previous.version) not in (version, old):
            transitions.append(
                retire(
                    client,
                    name,
                    str(previous.version),
                    f"superseded: version {old} became the previous champion when "
                    f"version {version} was promoted",
                )
            )
        _move_alias(client, name, PREVIOUS, old)
        transitions.append(
            Transition(
                name,
                "previous",
                old,
                PREVIOUS,
                f"replaced as champion by version {version}; kept for rollback",
                _now(),
            )
        )
    elif previous is not None and str(previous.version) == version:
        client.delete_registered_model_alias(name, PREVIOUS)
    return transitions


def rollback(client: Any, name: str, reason: str) -> list[Transition]:
    """Restore the previous champion in one step; retire the champion it replaces.

    Args:
        client: an ``mlflow.MlflowClient``.
        name: the registered model name.
        reason: why (recorded on the retired version and the transitions).

    Returns:
        The transitions: ``rolled_back`` (previous -> champion) and ``retired``.

    Raises:
        LookupError: the model has no champion or no previous champion.
    """
    champion = alias_version(client, name, CHAMPION)
    previous = alias_version(client, name, PREVIOUS)
    if champion is None or previous is None:
        missing = CHAMPION if champion is None else PREVIOUS
        raise LookupError(
            f"registered model {name!r} has no {missing!r} alias: nothing to roll back to"
        )
    restored, current = str(previous.version), str(champion.version)
    _move_alias(client, name, CHAMPION, restored)
    client.delete_registered_model_alias(name, PREVIOUS)
    transitions = [
        Transition(
            name,
            "rolled_back",
            restored,
            CHAMPION,
            f"rollback from version {current}: {reason}",
            _now(),
        ),
        retire(client, name, current, f"rolled back to version {restored}: {reason}"),
    ]
    log.info(
        "rolled_back",
        extra={"fields": {"model": name, "champion": restored, "retired": current}},
    )
    return transitions


def training_run(client: Any, version: Any) -> Any:
    """The MLflow run with a version's lineage tags and split parameters.

    A classifier's registered version belongs to a candidate's nested run; the split
    parameters are on its parent run (tags are on both).
    """
    run = client.get_run(version.run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    if "split.seed" not in run.data.params and parent:
        run = client.get_run(parent)
    return run


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
    *,
    evaluate_holdout: Callable[[str], float] | None = None,
    evaluation: str = "",
    evaluation_rows: int | None = None,
) -> PromotionDecision:
    """Decide whether the ``challenger`` of ``name`` becomes ``champion``, and apply it.

    Args:
        client: an ``mlflow.MlflowClient``.
        name: the registered model name.
        policy: the promotion rule.
        evaluate: scores a model URI (``models:/<name>/<version>``) on the evaluation rows and
            returns ``policy.metric``; called for the challenger and the champion alike, so both
            are measured on the same rows.
        evaluate_holdout: the same on the champion's held-out rows (for
            ``policy.max_regression``; called only when there is a champion).
        evaluation, evaluation_rows: which rows ``evaluate`` uses, for the record.

    Returns:
        The decision (also logged and tagged on the challenger's version) with the lifecycle
        transitions it made.

    Raises:
        LookupError: ``name`` has no ``challenger``.
    """
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise LookupError(f"registered model {name!r} has no {CHALLENGER!r} alias; train first")
    champion = alias_version(client, name, CHAMPION)
    challenger_uri = f"models:/{name}/{challenger.version}"
    challenger_metric = float(evaluate(challenger_uri))
    common: dict[str, Any] = {
        "metric": policy.metric,
        "challenger_version": str(challenger.version),
        "challenger_metric": challenger_metric,
        "min_metric": policy.min_metric,
        "min_improvement": policy.min_improvement,
        "evaluation": evaluation,
        "evaluation_rows": evaluation_rows,
        "max_regression": policy.max_regression,
    }
    if champion is not None and champion.version == challenger.version:
        decision = PromotionDecision(
            model=name,
            promoted=False,
            reason=f"version {challenger.version} is already the champion",
            champion_version=str(champion.version),
            champion_metric=challenger_metric,
            decided_at=_now(),
            **common,
        )
    else:
        champion_metric = challenger_holdout = champion_holdout = None
        if champion is not None:
            champion_uri = f"models:/{name}/{champion.version}"
            champion_metric = float(evaluate(champion_uri))
            if evaluate_holdout is not None and policy.max_regression is not None:
                challenger_holdout = float(evaluate_holdout(challenger_uri))
                champion_holdout = float(evaluate_holdout(champion_uri))
        promoted, reason = decide_promotion(
            challenger_metric=challenger_metric,
            champion_metric=champion_metric,
            policy=policy,
            challenger_holdout=challenger_holdout,
            champion_holdout=champion_holdout,
        )
        if evaluation:
            reason = f"{reason} [evaluated on {evaluation}]"
        transitions = (
            apply_promotion(client, name, str(challenger.version), reason) if promoted else []
        )
        decision = PromotionDecision(
            model=name,
            promoted=promoted,
            reason=reason,
            champion_version=str(champion.version) if champion is not None else None,
            champion_metric=champion_metric,
            decided_at=_now(),
            challenger_holdout_metric=challenger_holdout,
            champion_holdout_metric=champion_holdout,
            transitions=transitions,
            **common,
        )
    for key, value in {
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": decision.reason,
        f"promotion.{policy.metric}": f"{challenger_metric:.6f}",
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.decided_at": decision.decided_at,
        "promotion.evaluation": evaluation or "evaluation rows",
    }.items():
        client.set_model_version_tag(name, challenger.version, key, value[:5000])
    log.info("promotion_decision", extra={"fields": decision.as_dict()})
    return decision


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
