"""Retraining triggers: whether a model's champion should be retrained, and why (plain Python).

Each trigger of a model's ``retraining.triggers`` is judged from numbers the caller gathered
(:mod:`featurelake.ml.retrain_check` reads them from the monitoring tables, the registry and
the Delta log) and gives a :class:`TriggerOutcome`: fired or not, the value, the threshold and
the reason in words. The model is retrained when any trigger fires (:func:`decide`).

* ``drift``: the largest drift metric (``psi`` by default) among the watched features - the
  champion's ``top_features`` most important ones, or a declared list - reaches ``threshold``;
* ``performance``: the mean promotion metric of the latest labelled batches the champion
  scored has dropped by ``max_relative_drop`` of the value it was promoted with;
* ``schedule``: the champion is older than ``max_age``;
* ``new_data``: the labelled rows added or changed since the champion's training data reach
  ``min_rows`` or ``min_fraction`` of its training rows.

Example:
    >>> check_schedule(trained_at, now, ScheduleTrigger(max_age="30d"))
    TriggerOutcome(trigger='schedule', fired=False, reason='the champion is 3.0 days old ...')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from featurelake.ml.config import DriftTrigger, NewDataTrigger, PerformanceTrigger, ScheduleTrigger

__all__ = [
    "BatchScore",
    "TriggerOutcome",
    "check_drift",
    "check_new_data",
    "check_performance",
    "check_schedule",
    "decide",
]


@dataclass(frozen=True)
class TriggerOutcome:
    """One trigger's judgement: a row of ``ops/retraining_decisions``.

    Attributes:
        trigger: ``drift``, ``performance``, ``schedule``, ``new_data``, or ``no_champion`` /
            ``unconditional`` (no champion yet; no retraining policy).
        fired: whether it asks for retraining.
        reason: why, in words.
        value: the measured value (drift metric, relative drop, age in days, new rows).
        threshold: what it was compared with.
    """

    trigger: str
    fired: bool
    reason: str
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class BatchScore:
    """A labelled scoring batch the monitor judged: its metric and when it was scored."""

    batch_id: str
    value: float
    scored_at: datetime


def check_drift(
    values: Mapping[str, float],
    watched: Sequence[str],
    spec: DriftTrigger,
    *,
    watched_how: str,
    reference: str,
) -> TriggerOutcome:
    """Judge drift of the watched features.

    Args:
        values: feature -> the drift metric's latest value against the champion's training
            rows (the worst window).
        watched: the features that count.
        spec: the trigger.
        watched_how: how ``watched`` was chosen, in words.
        reference: the reference compared against, in words.
    """
    measured = {f: values[f] for f in watched if f in values}
    if not measured:
        return TriggerOutcome(
            "drift",
            False,
            f"no {spec.metric} measured for the watched features ({watched_how}) against "
            f"{reference} yet: the monitor job writes them to ops/drift_metrics",
            None,
            spec.threshold,
        )
    feature = max(measured, key=lambda f: (measured[f], f))
    worst = measured[feature]
    unmeasured = [f for f in watched if f not in measured]
    note = f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""
    if worst >= spec.threshold:
        return TriggerOutcome(
            "drift",
            True,
            f"{spec.metric} {worst:.4f} on {feature} reaches {spec.threshold:.4f} "
            f"({watched_how}; against {reference}){note}",
            worst,
            spec.threshold,
        )
    return TriggerOutcome(
        "drift",
        False,
        f"largest {spec.metric} {worst:.4f} ({feature}) is below {spec.threshold:.4f} "
        f"({watched_how}; against {reference}){note}",
        worst,
        spec.threshold,
    )


def check_performance(
    batches: Sequence[BatchScore],
    promoted: float | None,
    metric: str,
    spec: PerformanceTrigger,
    *,
    champion_version: str,
) -> TriggerOutcome:
    """Judge the champion's metric on its latest labelled scoring batches.

    Args:
        batches: the batches scored by the champion and judged by the monitor.
        promoted: the metric's value the champion was promoted with (None: unknown).
        metric: the promotion metric (``roc_auc``...).
        spec: the trigger.
        champion_version: for the reason.
    """
    threshold = spec.max_relative_drop
    if promoted is None or promoted <= 0:
        return TriggerOutcome(
            "performance",
            False,
            f"champion version {champion_version} has no promoted {metric} to compare with",
            None,
            threshold,
        )
    if len(batches) < spec.batches:
        return TriggerOutcome(
            "performance",
            False,
            f"{len(batches)} labelled batch(es) scored by champion version {champion_version} "
            f"judged by the monitor; {spec.batches} needed",
            None,
            threshold,
        )
    latest = sorted(batches, key=lambda b: (b.scored_at, b.batch_id), reverse=True)[: spec.batches]
    mean = sum(b.value for b in latest) / len(latest)
    drop = (promoted - mean) / promoted
    shown = ", ".join(f"{b.batch_id}: {b.value:.4f}" for b in latest)
    words = (
        f"{metric} {mean:.4f} on the latest {len(latest)} labelled batch(es) ({shown}) against "
        f"{promoted:.4f} at promotion: a relative drop of {drop:.4f}"
    )
    if drop >= threshold:
        return TriggerOutcome(
            "performance", True, f"{words} reaches {threshold:.4f}", drop, threshold
        )
    return TriggerOutcome("performance", False, f"{words}, below {threshold:.4f}", drop, threshold)


def check_schedule(trained_at: datetime, now: datetime, spec: ScheduleTrigger) -> TriggerOutcome:
    """Judge the champion's age (since its version was registered)."""
    age = now - trained_at
    days, limit = age.total_seconds() / 86_400, spec.max_age.total_seconds() / 86_400
    if age >= spec.max_age:
        return TriggerOutcome(
            "schedule",
            True,
            f"the champion is {days:.2f} days old; max_age is {limit:.2f} days",
            days,
            limit,
        )
    return TriggerOutcome(
        "schedule",
        False,
        f"the champion is {days:.2f} days old, within max_age {limit:.2f} days",
        days,
        limit,
    )


def check_new_data(
    new_rows: int, champion_rows: int, spec: NewDataTrigger, *, since: str
) -> TriggerOutcome:
    """Judge the labelled rows added or changed since the champion's training data.

    Args:
        new_rows: labelled rows not in the champion's logged table versions.
        champion_rows: the champion's training rows.
        spec: the trigger.
        since: the champion's table versions, in words.
    """
    bounds = []
    if spec.min_rows is not None:
        bounds.append((new_rows >= spec.min_rows, f"min_rows {spec.min_rows}"))
    if spec.min_fraction is not None:
        needed = spec.min_fraction * champion_rows
        bounds.append(
            (
                champion_rows > 0 and new_rows >= needed,
                f"min_fraction {spec.min_fraction:g} of its {champion_rows} training rows "
                f"({needed:.0f})",
            )
        )
    reached = [text for ok, text in bounds if ok]
    words = f"{new_rows} labelled rows added or changed since the champion's data ({since})"
    threshold = float(spec.min_rows) if spec.min_rows is not None else None
    if reached:
        return TriggerOutcome(
            "new_data", True, f"{words} reach {' and '.join(reached)}", new_rows, threshold
        )
    return TriggerOutcome(
        "new_data",
        False,
        f"{words}, fewer than {' and '.join(text for _, text in bounds)}",
        new_rows,
        threshold,
    )


def decide(outcomes: Sequence[TriggerOutcome]) -> tuple[bool, str]:
    """Retrain when any trigger fired; the reason names them (or why none did)."""
    fired = [o for o in outcomes if o.fired]
    if fired:
        return True, "; ".join(f"{o.trigger}: {o.reason}" for o in fired)
    if not outcomes:
        return False, "no trigger declared"
    return False, "no trigger fired: " + "; ".join(f"{o.trigger}: {o.reason}" for o in outcomes)
