"""Typed model configurations (``conf/models/*.yaml``), validated before any training.

Two kinds of model are declared:

* ``classification`` - a binary classifier trained on a gold feature table joined with a label
  table on a key (for example ``gold/credit_features`` + ``gold/credit_labels`` on ``id``).
* ``segmentation`` - a clustering of the rows of a gold feature table (for example customers in
  ``gold/customer_features``).

Validation happens in two steps, both before any Spark job runs:

1. :func:`load_model_config` parses the YAML into the pydantic models below (unknown keys, wrong
   types, an empty grid, a missing label...) and checks what needs no data: parameter names
   against the Spark estimator, feature lists without duplicates, a k range that is a range.
2. :func:`check_columns` checks every referenced column against the schemas of the tables.

Every error is a :class:`~featurelake.core.config.ConfigError` naming the file and the key path.

Example:
    >>> config = load_model_config("conf/models/credit_default.yaml")
    >>> check_columns(config, "conf/models/credit_default.yaml",
    ...               {"features": features_df.schema, "labels": labels_df.schema})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pyspark.sql.types import NumericType, StringType, StructType

from featurelake.core.config import ConfigError, load_yaml_file, parse_model
from featurelake.monitoring.config import Duration

__all__ = [
    "AlgorithmConfig",
    "ClassificationConfig",
    "DriftTrigger",
    "ModelConfig",
    "NamingRule",
    "NewDataTrigger",
    "PerformanceTrigger",
    "PromotionConfig",
    "RetrainingConfig",
    "RetrainingTriggers",
    "ScheduleTrigger",
    "SearchConfig",
    "SegmentationConfig",
    "SelectionConfig",
    "SplitConfig",
    "TableRef",
    "check_against_catalog",
    "check_columns",
    "find_model_configs",
    "required_model_configs",
    "load_model_config",
    "named_features",
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


class ClassificationConfig(_Frozen):
    """A binary classifier trained on a gold feature table joined with its labels.

    Attributes:
        kind: ``classification``.
        name: the registered model name in MLflow.
        features: the feature table.
        labels: the label table (joined on its key to the feature table's key).
        label: the label column (values 0/1).
        numeric_features: numeric columns used as they are (nulls imputed with the median).
        categorical_features: columns indexed (unseen values kept) and one-hot encoded.
        algorithms: ``logistic_regression``, ``random_forest`` and/or ``gbt``.
        split: held-out split.
        search: hyperparameter search.
        class_weights: ``balanced`` weights each class by n / (2 * n_class); ``none`` does not.
        metric: the metric that picks the best candidate (from the search's validation data).
        threshold: probability of class 1 at or above which the prediction is 1.
        promotion: champion rule.
        selection: optional feature selection before the search.
        retraining: when ``retrain-check`` retrains the model (absent: every run).
    """

    kind: Literal["classification"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    features: TableRef
    labels: TableRef
    label: str = Field(min_length=1)
    numeric_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    algorithms: Annotated[
        dict[Algorithm, AlgorithmConfig],
        Field(min_length=1),
    ]
    split: SplitConfig = Field(default_factory=SplitConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    class_weights: Literal["balanced", "none"] = "balanced"
    metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    promotion: PromotionConfig
    selection: SelectionConfig | None = None
    retraining: RetrainingConfig | None = None

    @property
    def feature_columns(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    def with_features(self, features: Sequence[str]) -> ClassificationConfig:
        """This configuration narrowed to ``features`` (each list keeps its order)."""
        chosen = set(features)
        return self.model_copy(
            update={
                "numeric_features": [c for c in self.numeric_features if c in chosen],
                "categorical_features": [c for c in self.categorical_features if c in chosen],
            }
        )

    @model_validator(mode="after")
    def _has_features(self) -> ClassificationConfig:
        if not self.feature_columns:
            raise ValueError("declare at least one of numeric_features, categorical_features")
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


class SegmentationConfig(_Frozen):
    """A clustering of the rows of a gold feature table.

    Attributes:
        kind: ``segmentation``.
        name: the registered model name in MLflow.
        features: the feature table (its key identifies a row, e.g. a customer).
        as_of_column: the feature table's as-of timestamp, carried to the output.
        feature_columns: numeric columns clustered (nulls imputed with the median).
        log1p_columns: subset of ``feature_columns`` replaced by log(1 + max(x, 0)) first
            (heavy-tailed money and count features would otherwise make their own clusters).
        algorithm: ``kmeans``, ``bisecting_kmeans`` or ``gaussian_mixture``.
        k: the range of k searched by silhouette.
        max_iter: iterations of the clustering algorithm.
        seed: seeds the algorithm.
        output: the segments table, ``<layer>/<table>``.
        naming: rules that name segments from their profile.
        promotion: champion rule (metric ``silhouette``).
    """

    kind: Literal["segmentation"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    features: TableRef
    as_of_column: str = Field(min_length=1)
    feature_columns: Annotated[list[str], Field(min_length=1)]
    log1p_columns: list[str] = Field(default_factory=list)
    algorithm: Literal["kmeans", "bisecting_kmeans", "gaussian_mixture"] = "kmeans"
    k: KRange
    max_iter: int = Field(default=20, ge=1)
    seed: int = 42
    output: str = Field(pattern=r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+$")
    naming: NamingConfig = Field(default_factory=NamingConfig)
    promotion: PromotionConfig


ModelConfig = ClassificationConfig | SegmentationConfig
ModelConfigT = TypeVar("ModelConfigT", ClassificationConfig, SegmentationConfig)


def _estimator_class(algorithm: Algorithm) -> type:
    from pyspark.ml.classification import (
        GBTClassifier,
        LogisticRegression,
        RandomForestClassifier,
    )

    return {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gbt": GBTClassifier,
    }[algorithm]


# Columns the training code sets itself; a config may not override them.
_RESERVED_PARAMS = {
    "featuresCol",
    "labelCol",
    "weightCol",
    "predictionCol",
    "probabilityCol",
    "rawPredictionCol",
    "thresholds",
    "threshold",
    "seed",
}


def _param_names(cls: type) -> set[str]:
    from pyspark.ml.param import Param

    return {name for name in dir(cls) if isinstance(getattr(cls, name, None), Param)}


def _duplicates(values: list[str]) -> list[str]:
    from collections import Counter

    return sorted(value for value, count in Counter(values).items() if count > 1)


def _check_static(config: ModelConfig, source: str) -> None:
    """Checks that need no data: parameter names, duplicates, ranges, rule columns."""
    if isinstance(config, ClassificationConfig):
        dupes = _duplicates(config.feature_columns)
        if dupes:
            raise ConfigError(
                source,
                "numeric_features/categorical_features",
                f"columns listed more than once: {dupes}",
            )
        if config.label in config.feature_columns:
            raise ConfigError(source, "label", f"label {config.label!r} is also a feature")
        for algo, spec in config.algorithms.items():
            known = _param_names(_estimator_class(algo))
            for section, names in (("params", spec.params), ("grid", spec.grid)):
                for name in names:
                    if name in _RESERVED_PARAMS:
                        raise ConfigError(
                            source,
                            f"algorithms.{algo}.{section}.{name}",
                            "set by the training code; remove it",
                        )
                    if name not in known:
                        raise ConfigError(
                            source,
                            f"algorithms.{algo}.{section}.{name}",
                            f"not a parameter of {_estimator_class(algo).__name__} "
                            f"(known: {', '.join(sorted(known - _RESERVED_PARAMS))})",
                        )
        if config.promotion.metric == "silhouette":
            raise ConfigError(source, "promotion.metric", "silhouette is for segmentation")
        for key_path, listed in (
            ("selection.keep", config.selection.keep if config.selection else []),
            (
                "retraining.triggers.drift.features",
                (config.retraining.triggers.drift.features or [])
                if config.retraining and config.retraining.triggers.drift
                else [],
            ),
        ):
            dupes = _duplicates(listed)
            if dupes:
                raise ConfigError(source, key_path, f"columns listed more than once: {dupes}")
    else:
        dupes = _duplicates(config.feature_columns)
        if dupes:
            raise ConfigError(source, "feature_columns", f"columns listed more than once: {dupes}")
        if config.k.min > config.k.max:
            raise ConfigError(
                source, "k", f"min ({config.k.min}) is greater than max ({config.k.max})"
            )
        stray = [c for c in config.log1p_columns if c not in config.feature_columns]
        if stray:
            raise ConfigError(source, "log1p_columns", f"not in feature_columns: {stray}")
        for i, rule in enumerate(config.naming.rules):
            for side in ("above", "below"):
                for column in getattr(rule, side):
                    if column not in config.feature_columns:
                        raise ConfigError(
                            source,
                            f"naming.rules[{i}].{side}.{column}",
                            f"not one of feature_columns {config.feature_columns}",
                        )
        if config.promotion.metric != "silhouette":
            raise ConfigError(source, "promotion.metric", "segmentation is promoted on silhouette")
        if config.promotion.max_regression is not None:
            raise ConfigError(
                source,
                "promotion.max_regression",
                "applies to classifiers only (segmentation has no held-out labels)",
            )


def load_model_config(path: str | Path) -> ModelConfig:
    """Read and validate one model configuration file.

    Args:
        path: a YAML file in ``conf/models/``.

    Returns:
        A :class:`ClassificationConfig` or :class:`SegmentationConfig`.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and key.
    """
    source = str(path)
    data = load_yaml_file(path)
    kinds: dict[Any, type[ClassificationConfig] | type[SegmentationConfig]] = {
        "classification": ClassificationConfig,
        "segmentation": SegmentationConfig,
    }
    if "kind" not in data:
        raise ConfigError(source, "kind", "missing required key (classification or segmentation)")
    if data["kind"] not in kinds:
        raise ConfigError(source, "kind", f"{data['kind']!r} is not one of: {', '.join(kinds)}")
    config: ModelConfig = parse_model(kinds[data["kind"]], data, source)
    _check_static(config, source)
    return config


def _check_table(
    source: str,
    schema: StructType,
    columns: Mapping[str, str],
    table: str,
    numeric: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    types = {f.name: f.dataType for f in schema.fields}
    for key_path, column in columns.items():
        if column not in types:
            raise ConfigError(
                source,
                key_path,
                f"unknown column {column!r} in {table} (columns: {', '.join(schema.fieldNames())})",
            )
        if column in numeric and not isinstance(types[column], NumericType):
            raise ConfigError(
                source,
                key_path,
                f"column {column!r} in {table} is {types[column].simpleString()}, expected numeric",
            )


def named_features(config: ClassificationConfig) -> dict[str, str]:
    """The features a classifier's ``selection`` and ``retraining`` sections name, by key path."""
    named: dict[str, str] = {}
    if config.selection:
        named.update({f"selection.keep[{i}]": c for i, c in enumerate(config.selection.keep)})
    drift = config.retraining.triggers.drift if config.retraining else None
    if drift and drift.features:
        named.update(
            {f"retraining.triggers.drift.features[{i}]": c for i, c in enumerate(drift.features)}
        )
    return named


def _check_named_features(
    config: ClassificationConfig, source: str, table_columns: set[str] | None
) -> None:
    """Every feature ``selection``/``retraining`` name is a column of the table and a feature."""
    for key_path, column in named_features(config).items():
        if table_columns is not None and column not in table_columns:
            raise ConfigError(
                source,
                key_path,
                f"{config.features.table} has no column {column!r} "
                f"(columns: {', '.join(sorted(table_columns))})",
            )
        if column not in config.feature_columns:
            raise ConfigError(
                source,
                key_path,
                f"{column!r} is not one of this model's features "
                "(numeric_features, categorical_features)",
            )


def check_against_catalog(
    config: ModelConfig, source: str, catalog: Mapping[str, set[str]]
) -> None:
    """Check the columns a configuration names against the columns ``conf/`` declares.

    Run at start-up, before Spark: tables the catalog does not know are checked later, against
    their schemas (:func:`check_columns`).

    Args:
        config: a validated model configuration.
        source: the configuration file, for messages.
        catalog: ``<layer>/<table>`` -> the columns its declarations give it.

    Raises:
        ConfigError: a feature, label or named column is not a column of its table.
    """
    known = catalog.get(config.features.table)
    if isinstance(config, ClassificationConfig):
        listed = {
            **{f"numeric_features[{i}]": c for i, c in enumerate(config.numeric_features)},
            **{f"categorical_features[{i}]": c for i, c in enumerate(config.categorical_features)},
        }
    else:
        listed = {f"feature_columns[{i}]": c for i, c in enumerate(config.feature_columns)}
    if known is not None:
        for key_path, column in listed.items():
            if column not in known:
                raise ConfigError(
                    source,
                    key_path,
                    f"{config.features.table} has no column {column!r} "
                    f"(columns: {', '.join(sorted(known))})",
                )
    if isinstance(config, ClassificationConfig):
        labels = catalog.get(config.labels.table)
        if labels is not None and config.label not in labels:
            raise ConfigError(
                source, "label", f"{config.labels.table} has no column {config.label!r}"
            )
        _check_named_features(config, source, known)


def check_columns(config: ModelConfig, source: str, schemas: Mapping[str, StructType]) -> None:
    """Check every column the configuration names against the tables' schemas.

    Args:
        config: a validated model configuration.
        source: the configuration file, for messages.
        schemas: ``{"features": schema}`` plus ``{"labels": schema}`` for classifiers.

    Raises:
        ConfigError: a column is unknown or has the wrong type; names file, key and column.
    """
    if isinstance(config, ClassificationConfig):
        feature_cols: dict[str, str] = {"features.key": config.features.key}
        feature_cols.update(
            {f"numeric_features[{i}]": c for i, c in enumerate(config.numeric_features)}
        )
        feature_cols.update(
            {f"categorical_features[{i}]": c for i, c in enumerate(config.categorical_features)}
        )
        _check_table(
            source,
            schemas["features"],
            feature_cols,
            config.features.table,
            set(config.numeric_features),
        )
        _check_table(
            source,
            schemas["labels"],
            {"labels.key": config.labels.key, "label": config.label},
            config.labels.table,
            {config.label},
        )
        categorical_types = {f.name: f.dataType for f in schemas["features"].fields}
        for i, column in enumerate(config.categorical_features):
            dtype = categorical_types[column]
            if not isinstance(dtype, (StringType, NumericType)):
                raise ConfigError(
                    source,
                    f"categorical_features[{i}]",
                    f"column {column!r} is {dtype.simpleString()}; "
                    "expected string or numeric codes",
                )
        _check_named_features(config, source, set(schemas["features"].fieldNames()))
    else:
        columns = {"features.key": config.features.key, "as_of_column": config.as_of_column}
        columns.update({f"feature_columns[{i}]": c for i, c in enumerate(config.feature_columns)})
        _check_table(
            source, schemas["features"], columns, config.features.table, set(config.feature_columns)
        )


def describe(config: ModelConfig) -> dict[str, Any]:
    """The configuration as a flat-ish mapping, for logging as MLflow params."""
    return config.model_dump(mode="json")


def find_model_configs(
    models_dir: str | Path, files: list[str] | None, kind: type[ModelConfigT]
) -> list[tuple[str, ModelConfigT]]:
    """The model configs a job runs: the given files, or every config of ``kind`` in a folder.

    Args:
        models_dir: the folder searched when ``files`` is empty (``conf/models``).
        files: explicit configuration files, or None.
        kind: :class:`ClassificationConfig` or :class:`SegmentationConfig`.

    Returns:
        (file, config) pairs, in file-name order when searched.

    Raises:
        ConfigError: a file is invalid, or an explicit file declares another kind of model.
    """
    if files:
        loaded = [(str(f), load_model_config(f)) for f in files]
        for source, config in loaded:
            if not isinstance(config, kind):
                raise ConfigError(
                    source,
                    "kind",
                    f"expected a {kind.__name__} model here, got kind {config.kind!r}",
                )
        return loaded  # type: ignore[return-value]
    found = [(str(p), load_model_config(p)) for p in sorted(Path(models_dir).glob("*.yaml"))]
    return [(f, c) for f, c in found if isinstance(c, kind)]


def required_model_configs(
    models_dir: str | Path, files: list[str] | None, kind: type[ModelConfigT], label: str
) -> list[tuple[str, ModelConfigT]]:
    """:func:`find_model_configs`, and an error naming the folder when there is none.

    Args:
        models_dir, files, kind: as for :func:`find_model_configs`.
        label: the model kind as the configs spell it (``classification``, ``segmentation``).

    Raises:
        ConfigError: as :func:`find_model_configs`, or no config of ``kind`` was found.
    """
    configs = find_model_configs(models_dir, files, kind)
    if not configs:
        raise ConfigError(str(models_dir), "", f"no {label} model config (kind: {label}) found")
    return configs
