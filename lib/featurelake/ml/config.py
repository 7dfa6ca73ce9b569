"""Typed model configurations (``conf/models/*.yaml``), validated before any training.

Two kinds of model are declared:

* ``classification`` - a binary classifier trained on a gold feature table joined with a label
  table on a key (for example ``gold/credit_features`` + ``gold/credit_labels`` on ``id``).
* ``segmentation`` - a clustering of the rows of a gold feature table (for example customers in
  ``gold/customer_features``).

Validation happens in two steps, both before any Spark job runs:

1. :func:`load_model_config` parses the YAML into the pydantic models below and their sections
   (:mod:`featurelake.ml.config_sections`; unknown keys, wrong types, an empty grid, a missing
   label...) and checks what needs no data: parameter names against the Spark estimator,
   feature lists without duplicates, a k range that is a range.
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

from pydantic import Field, model_validator
from pyspark.sql.types import NumericType, StringType, StructType

from featurelake.core.config import ConfigError, load_yaml_file, parse_model
from featurelake.ml.config_sections import (
    Algorithm,
    AlgorithmConfig,
    DriftTrigger,
    KRange,
    NamingConfig,
    NamingRule,
    NewDataTrigger,
    PerformanceTrigger,
    PromotionConfig,
    RetrainingConfig,
    RetrainingTriggers,
    ScheduleTrigger,
    SearchConfig,
    SelectionConfig,
    SplitConfig,
    TableRef,
    _Frozen,
)

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
