"""The sections a model configuration is built from (``conf/models/*.yaml``).

Tables, split, search, candidate algorithms and promotion; a classifier's retraining triggers
and feature selection; a segmentation's k range and naming rules. The whole configurations
(:class:`~featurelake.ml.config.ClassificationConfig`,
:class:`~featurelake.ml.config.SegmentationConfig`), their loading and their checks are in
:mod:`featurelake.ml.config`, which re-exports these names.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurelake.monitoring.config import Duration

__all__ = [
    "Algorithm",
    "AlgorithmConfig",
    "CorrelationSelection",
    "DriftTrigger",
    "GridValue",
    "ImportanceSelection",
    "KRange",
    "NamingConfig",
    "NamingRule",
    "NewDataTrigger",
    "NonEmptyValues",
    "PerformanceTrigger",
    "PromotionConfig",
    "RetrainingConfig",
    "RetrainingTriggers",
    "ScheduleTrigger",
    "SearchConfig",
    "SelectionConfig",
    "SplitConfig",
    "TableRef",
    "UnivariateSelection",
]

GridValue = float | int | str | bool
Algorithm = Literal["logistic_regression", "random_forest", "gbt"]
NonEmptyValues = Annotated[list[GridValue], Field(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableRef(_Frozen):
    """A Delta table in the lakehouse, optionally pinned to a version.

    Attributes:
        table: ``<layer>/<table>``, e.g. ``gold/credit_features``.
        version: the Delta version to read; ``None`` reads the latest.
        key: the entity key column.
    """

    table: str = Field(pattern=r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+$")
    version: int | None = Field(default=None, ge=0)
    key: str = Field(min_length=1)

    @property
    def layer(self) -> str:
        return self.table.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.table.split("/", 1)[1]


class SplitConfig(_Frozen):
    """Deterministic held-out split by a hash of the key: same key + seed, same side.

    Attributes:
        test_fraction: share of keys held out for evaluation.
        seed: seeds the split hash, the fold hash and every estimator.
    """

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 42


class SearchConfig(_Frozen):
    """Hyperparameter search.

    Attributes:
        method: ``cross_validation`` (folds from a hash of the key, so they do not depend on
            partitioning) or ``train_validation_split``.
        folds: number of folds for cross-validation.
        train_ratio: training share for train-validation split.
        parallelism: models fitted in parallel during the search.
    """

    method: Literal["cross_validation", "train_validation_split"] = "cross_validation"
    folds: int = Field(default=3, ge=2)
    train_ratio: float = Field(default=0.75, gt=0.0, lt=1.0)
    parallelism: int = Field(default=1, ge=1)


class AlgorithmConfig(_Frozen):
    """One candidate algorithm: fixed Spark ML parameters plus a non-empty search grid.

    Attributes:
        params: fixed estimator parameters (Spark ML names, e.g. ``maxIter``).
        grid: parameter name -> the values to search; at least one parameter, no empty list.
    """

    params: dict[str, GridValue] = Field(default_factory=dict)
    grid: Annotated[dict[str, NonEmptyValues], Field(min_length=1)]


class PromotionConfig(_Frozen):
    """When a challenger may become champion.

    Attributes:
        metric: the metric compared (``roc_auc``/``pr_auc`` for classifiers, ``silhouette``
            for segmentation).
        min_metric: the challenger must reach at least this value.
        min_improvement: and beat the current champion by at least this much on the same data
            (for classifiers: the most recent labelled window, docs/RETRAINING.md).
        max_regression: classifiers: and score at most this much below the champion on the
            champion's own held-out rows (null: not checked).
        recent_min_rows: classifiers: the recent window needs this many labelled rows; with
            fewer, both models are compared on the challenger's held-out rows instead.
    """

    metric: Literal["roc_auc", "pr_auc", "f1", "silhouette"]
    min_metric: float
    min_improvement: float = Field(default=0.0, ge=0.0, le=1.0)
    max_regression: float | None = Field(default=None, ge=0.0, le=1.0)
    recent_min_rows: int = Field(default=100, ge=1)


class DriftTrigger(_Frozen):
    """Retrain when a top feature drifted from the champion's training rows.

    Read from ``ops/drift_metrics`` (the ``monitor`` job's comparison of the feature table with
    its ``champion`` reference).

    Attributes:
        metric: the drift metric compared (``psi``, ``js`` or ``ks``).
        threshold: fires when the metric reaches this on any of the watched features
            (``psi`` in (0, 10]; ``js`` and ``ks`` in (0, 1]).
        top_features: the champion's N most important features are watched.
        features: watch these features instead of the most important ones.
    """

    metric: Literal["psi", "js", "ks"] = "psi"
    threshold: float = Field(gt=0.0, le=10.0)
    top_features: int = Field(default=5, ge=1, le=1000)
    features: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _bounded_distance(self) -> DriftTrigger:
        if self.metric in ("js", "ks") and self.threshold > 1.0:
            raise ValueError(f"threshold of {self.metric} must be in (0, 1], got {self.threshold}")
        return self


class PerformanceTrigger(_Frozen):
    """Retrain when the champion's promotion metric dropped on labelled scoring batches.

    Read from ``ops/monitor_results`` (the ``monitor`` job's ``performance`` check), only
    for batches the champion itself scored.

    Attributes:
        max_relative_drop: fires when (promoted value - batch value) / promoted value reaches
            this, on the mean of the latest ``batches``; in (0, 1).
        batches: the latest labelled batches averaged.
    """

    max_relative_drop: float = Field(gt=0.0, lt=1.0)
    batches: int = Field(default=1, ge=1, le=1000)


class ScheduleTrigger(_Frozen):
    """Retrain when the champion is older than ``max_age`` (``30d``, ``12h``...)."""

    max_age: Duration


class NewDataTrigger(_Frozen):
    """Retrain when enough labelled rows arrived since the champion's training data.

    New rows are those of the feature and label tables (joined) that are not in the Delta
    versions the champion's training run logged - added or changed.

    Attributes:
        min_rows: fires at this many new labelled rows.
        min_fraction: fires at this share of the champion's training rows, in (0, 100].
    """

    min_rows: int | None = Field(default=None, ge=1)
    min_fraction: float | None = Field(default=None, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _some_bound(self) -> NewDataTrigger:
        if self.min_rows is None and self.min_fraction is None:
            raise ValueError("give min_rows, min_fraction or both")
        return self


class RetrainingTriggers(_Frozen):
    """The triggers of a model; a trigger left out is never evaluated."""

    drift: DriftTrigger | None = None
    performance: PerformanceTrigger | None = None
    schedule: ScheduleTrigger | None = None
    new_data: NewDataTrigger | None = None


class RetrainingConfig(_Frozen):
    """When ``retrain-check`` retrains a classifier (docs/RETRAINING.md).

    Attributes:
        triggers: at least one of ``drift``, ``performance``, ``schedule``, ``new_data``.
        shadow: while a challenger waits for promotion, ``score`` also scores it, as
            ``role = shadow`` rows of the predictions table.
    """

    triggers: RetrainingTriggers
    shadow: bool = True

    @model_validator(mode="after")
    def _some_trigger(self) -> RetrainingConfig:
        if not any(getattr(self.triggers, n) for n in RetrainingTriggers.model_fields):
            raise ValueError(
                "declare at least one trigger: " + ", ".join(RetrainingTriggers.model_fields)
            )
        return self


class UnivariateSelection(_Frozen):
    """Keep features associated with the label on the training rows.

    The score is |Pearson correlation| with the label for a numeric feature, Cramer's V for a
    categorical one (both in [0, 1]).

    Attributes:
        min_score: drop features scoring below this, in [0, 1).
        max_features: then keep at most this many, best first (features under ``keep``
            take their places first).
    """

    min_score: float = Field(default=0.0, ge=0.0, lt=1.0)
    max_features: int | None = Field(default=None, ge=1)


class CorrelationSelection(_Frozen):
    """Of two numeric features correlated beyond ``max_abs``, drop the one scoring lower.

    Attributes:
        max_abs: |Pearson correlation| above which a pair is redundant, in (0, 1).
    """

    max_abs: float = Field(gt=0.0, lt=1.0)


class ImportanceSelection(_Frozen):
    """Drop features whose share of a quick random forest's importance is below a threshold.

    Attributes:
        min_importance: share of the total importance (one-hot columns summed per feature),
            in (0, 1).
        num_trees, max_depth: the forest fitted on the training rows.
    """

    min_importance: float = Field(gt=0.0, lt=1.0)
    num_trees: int = Field(default=40, ge=1, le=1000)
    max_depth: int = Field(default=6, ge=1, le=30)


class SelectionConfig(_Frozen):
    """Feature selection before the search, on the training rows only (docs/RETRAINING.md).

    Steps run in this order, each on what the previous kept: ``univariate``, ``correlation``,
    ``importance``. ``keep`` lists features no step drops.
    """

    univariate: UnivariateSelection | None = None
    correlation: CorrelationSelection | None = None
    importance: ImportanceSelection | None = None
    keep: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_step(self) -> SelectionConfig:
        if not (self.univariate or self.correlation or self.importance):
            raise ValueError("declare at least one step: univariate, correlation, importance")
        return self


class KRange(_Frozen):
    """The k values tried (inclusive); the one with the best silhouette wins."""

    min: int = Field(ge=2)
    max: int = Field(ge=2)


class NamingRule(_Frozen):
    """A segment gets ``name`` when every condition holds for its profile.

    A condition compares the segment's mean of a feature with the mean over all rows:
    ``above: 1.5`` means "segment mean >= 1.5 x overall mean", ``below: 0.5`` means
    "segment mean <= 0.5 x overall mean". A condition on a feature whose overall mean is not
    positive never holds (a ratio to it means nothing).
    """

    name: str = Field(min_length=1)
    above: dict[str, float] = Field(default_factory=dict)
    below: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_condition(self) -> NamingRule:
        if not self.above and not self.below:
            raise ValueError("a naming rule needs at least one condition (above or below)")
        return self


class NamingConfig(_Frozen):
    """Readable segment names: the first matching rule names a segment, else ``default``.

    When several segments get the same name, the larger keeps it and the others get ``-2``,
    ``-3``... in order of decreasing size.
    """

    rules: list[NamingRule] = Field(default_factory=list)
    default: str = "regular"
