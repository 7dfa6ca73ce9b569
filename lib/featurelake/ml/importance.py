"""Feature importances of a trained classifier, per declared feature, as a table and a plot.

The model's estimator sees one assembled vector: a slot per numeric feature and a block of
one-hot slots per categorical one. An importance per *feature* is the sum over its slots of

* a tree model's ``featureImportances`` (random forest, GBT: each split's gain, normalised), or
* the absolute coefficient of logistic regression, whose inputs are standardised first (the
  scaler divides each slot by its standard deviation), so a coefficient is the change of the
  log-odds per standard deviation: a *standardised coefficient*.

Each feature's ``share`` is its importance over the total, so models of different kinds compare
on one scale. The slot names come from the assembler's metadata (``<feature>__imputed``,
``<feature>__onehot_<value>``).

Example:
    >>> slots = vector_slots(vectors.schema["_features_raw"])
    >>> importances = model_importances(model.stages[-1], slots, config.feature_columns)
    >>> importances[0].feature, importances[0].share
    ('delinquent_months', 0.41)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql.types import StructField

__all__ = [
    "IMPORTANCE_ARTIFACT",
    "IMPORTANCE_PLOT",
    "FeatureImportance",
    "aggregate_importances",
    "importance_figure",
    "importance_rows",
    "model_importances",
    "read_importances",
    "slot_feature",
    "vector_slots",
]

#: The importance table logged with every candidate run (MLflow table JSON).
IMPORTANCE_ARTIFACT = "feature_importance.json"
IMPORTANCE_PLOT = "feature_importance.png"


@dataclass(frozen=True)
class FeatureImportance:
    """One feature's importance in one model.

    Attributes:
        feature: the declared feature (column of the feature table).
        importance: the sum over its slots (tree importance, or |standardised coefficient|).
        share: ``importance`` over the sum for all features (0 when every one is 0).
        kind: ``tree`` or ``standardized_coefficient``.
    """

    feature: str
    importance: float
    share: float
    kind: str


def vector_slots(field: StructField) -> list[str]:
    """The slot names of an assembled vector column, in slot order, from its ML metadata.

    Raises:
        ValueError: the column carries no slot names (not an assembler's output).
    """
    attrs = field.metadata.get("ml_attr", {}).get("attrs", {})
    slots = {int(a["idx"]): str(a["name"]) for group in attrs.values() for a in group}
    if not slots:
        raise ValueError(f"column {field.name!r} has no ML attribute metadata (slot names)")
    return [slots[i] for i in range(len(slots))]


def slot_feature(slot: str, features: Sequence[str]) -> str:
    """The declared feature a slot belongs to: the one whose ``<feature>__`` starts it.

    Raises:
        ValueError: no feature owns the slot.
    """
    owners = [f for f in features if slot.startswith(f"{f}__")]
    if not owners:
        raise ValueError(f"slot {slot!r} belongs to none of the features {list(features)}")
    return max(owners, key=len)


def aggregate_importances(
    values: Sequence[float], slots: Sequence[str], features: Sequence[str], kind: str
) -> list[FeatureImportance]:
    """Per-feature importances from per-slot values (absolute values summed), largest first.

    Args:
        values: one value per slot (tree importances or coefficients).
        slots: the slot names, as :func:`vector_slots` gives them.
        features: the declared features (every one gets a row, 0 when it has no slot).
        kind: ``tree`` or ``standardized_coefficient``.

    Returns:
        One :class:`FeatureImportance` per feature, by decreasing importance then name.
    """
    if len(values) != len(slots):
        raise ValueError(f"{len(values)} values for {len(slots)} slots")
    totals = dict.fromkeys(features, 0.0)
    for slot, value in zip(slots, values, strict=True):
        totals[slot_feature(slot, features)] += abs(float(value))
    whole = sum(totals.values())
    rows = [
        FeatureImportance(f, v, v / whole if whole > 0 else 0.0, kind) for f, v in totals.items()
    ]
    return sorted(rows, key=lambda r: (-r.importance, r.feature))


def model_importances(
    estimator_model: Any, slots: Sequence[str], features: Sequence[str]
) -> list[FeatureImportance]:
    """Importances of a fitted Spark classifier (tree ensemble or logistic regression).

    Raises:
        TypeError: the model has neither ``featureImportances`` nor ``coefficients``.
    """
    if hasattr(estimator_model, "featureImportances"):
        values = estimator_model.featureImportances.toArray().tolist()
        return aggregate_importances(values, slots, features, "tree")
    if hasattr(estimator_model, "coefficients"):
        values = estimator_model.coefficients.toArray().tolist()
        return aggregate_importances(values, slots, features, "standardized_coefficient")
    raise TypeError(f"no importances for {type(estimator_model).__name__}")


def importance_rows(importances: Sequence[FeatureImportance]) -> dict[str, list[Any]]:
    """The importance table as columns (for ``mlflow.log_table``)."""
    return {
        "feature": [i.feature for i in importances],
        "importance": [i.importance for i in importances],
        "share": [i.share for i in importances],
        "kind": [i.kind for i in importances],
        "rank": list(range(1, len(importances) + 1)),
    }


def importance_figure(importances: Sequence[FeatureImportance], title: str) -> Any:
    """A horizontal bar chart of the shares, largest at the top."""
    # A bare Figure with the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(importances)[:30]
    fig = Figure(figsize=(6, 0.25 * len(shown) + 1.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([i.feature for i in reversed(shown)], [i.share for i in reversed(shown)])
    ax.set_xlabel("share of importance")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def read_importances(client: Any, run_id: str) -> list[FeatureImportance] | None:
    """The importance table a candidate run logged, largest first; None when it has none."""
    import json
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, IMPORTANCE_ARTIFACT, folder)
        except (MlflowException, OSError):
            return None
        with open(path, encoding="utf-8") as handle:
            table: Mapping[str, Any] = json.load(handle)
    columns = list(table["columns"])
    rows = [dict(zip(columns, values, strict=True)) for values in table["data"]]
    found = [
        FeatureImportance(r["feature"], float(r["importance"]), float(r["share"]), r["kind"])
        for r in rows
    ]
    return sorted(found, key=lambda r: (-r.importance, r.feature))
