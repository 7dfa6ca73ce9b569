"""Binary classification: Spark ML pipelines, hyperparameter search, held-out evaluation.

The flow (:func:`train_classifier`), given a frame built by :func:`prepare_training_frame`:

1. split: a hash of the key puts each entity on the ``train`` or ``test`` side (the same entities
   every run with the same seed, whatever the partitioning) - :func:`with_hash_split`;
2. class weights from the training rows (``balanced``: n / (2 * n_class)) -
   :func:`with_class_weight`;
3. optional feature selection on the training rows (:mod:`featurelake.ml.selection`); the
   chosen list is logged and is the models' input (their signature), so scoring uses it;
4. feature preprocessing fitted once on the training rows (median imputation of numeric
   columns; string index with unseen values kept + one-hot encoding of categorical columns;
   assembly into one vector);
5. per candidate algorithm, one nested MLflow run: the estimator (after a scaler for logistic
   regression) searched over its grid by cross-validation (folds from a second hash of the key)
   or train-validation split; the best is refit on all training rows, joined with the
   preprocessing into one PipelineModel (raw columns in, ``probability``/``prediction`` out),
   evaluated on the held-out rows and logged with its signature, an input example and its
   feature importances (a table and a plot, :mod:`featurelake.ml.importance`);
6. the candidate with the best validation metric is the run's best.

Example:
    >>> data = prepare_training_frame(features_df, labels_df, config)
    >>> result = train_classifier(config, data, tags={"featurelake.features.version": "3"})
    >>> result.best.test_metrics["roc_auc"]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    StandardScaler,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.ml.config import (
    Algorithm,
    AlgorithmConfig,
    ClassificationConfig,
    _estimator_class,
)
from featurelake.ml.evaluation import (
    BinaryMetrics,
    evaluate_binary,
    roc_figure,
)
from featurelake.ml.importance import (
    IMPORTANCE_ARTIFACT,
    IMPORTANCE_PLOT,
    FeatureImportance,
    importance_figure,
    importance_rows,
    model_importances,
    vector_slots,
)
from featurelake.ml.selection import select_features
from featurelake.ml.training_frame import (
    FOLD_COL,
    SPLIT_COL,
    WEIGHT_COL,
    balanced_weights,
    holdout,
    label_coverage,
    prepare_training_frame,
    with_class_weight,
    with_hash_fold,
    with_hash_split,
)

__all__ = [
    "BinaryMetrics",
    "CandidateResult",
    "ClassificationResult",
    "build_estimator_pipeline",
    "build_preprocessing",
    "evaluate_binary",
    "fingerprint",
    "holdout",
    "label_coverage",
    "prepare_training_frame",
    "train_classifier",
    "with_class_weight",
    "with_hash_fold",
    "with_hash_split",
]

log = logging.getLogger(__name__)

FEATURES_COL = "_features"
RAW_FEATURES_COL = "_features_raw"
_EVALUATOR_METRIC: dict[str, Literal["areaUnderROC", "areaUnderPR"]] = {
    "roc_auc": "areaUnderROC",
    "pr_auc": "areaUnderPR",
}


# --------------------------------------------------------------------------------------------
# Pure transformations
# --------------------------------------------------------------------------------------------


def fingerprint(columns: Sequence[str]) -> Column:
    """An order-independent checksum of rows: the sum of a per-row hash (an aggregate)."""
    row_hash = F.pmod(F.xxhash64(*[F.col(c) for c in columns]), F.lit(2_147_483_647))
    return F.sum(row_hash.cast("long"))


def build_preprocessing(config: ClassificationConfig) -> Pipeline:
    """The feature stages shared by every candidate: raw columns -> one feature vector.

    Stages: median imputation of numeric features; string indexing (alphabetical; unseen and
    null values kept in an extra bucket) and one-hot encoding of categorical features; assembly
    into ``_features_raw``.

    Args:
        config: the model configuration.

    Returns:
        An unfitted Pipeline.
    """
    stages: list[Any] = []
    inputs: list[str] = []
    if config.numeric_features:
        imputed = [f"{c}__imputed" for c in config.numeric_features]
        stages.append(
            Imputer(inputCols=list(config.numeric_features), outputCols=imputed, strategy="median")
        )
        inputs += imputed
    if config.categorical_features:
        indexed = [f"{c}__index" for c in config.categorical_features]
        encoded = [f"{c}__onehot" for c in config.categorical_features]
        stages.append(
            StringIndexer(
                inputCols=list(config.categorical_features),
                outputCols=indexed,
                handleInvalid="keep",
                stringOrderType="alphabetAsc",
            )
        )
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"))
        inputs += encoded
    stages.append(VectorAssembler(inputCols=inputs, outputCol=RAW_FEATURES_COL))
    return Pipeline(stages=stages)


def build_estimator_pipeline(
    config: ClassificationConfig, algorithm: Algorithm, *, use_weights: bool
) -> tuple[Pipeline, Any]:
    """The per-candidate stages on top of :func:`build_preprocessing`'s vector.

    Logistic regression gets a standard scaler first (trees do not need one).

    Args:
        config: the model configuration.
        algorithm: ``logistic_regression``, ``random_forest`` or ``gbt``.
        use_weights: read row weights from ``_weight``.

    Returns:
        (pipeline, estimator): the estimator so the search grid can name its parameters.
    """
    estimator = _make_estimator(config, algorithm, config.algorithms[algorithm], use_weights)
    if algorithm == "logistic_regression":
        scaler = StandardScaler(
            inputCol=RAW_FEATURES_COL, outputCol=FEATURES_COL, withStd=True, withMean=False
        )
        return Pipeline(stages=[scaler, estimator]), estimator
    estimator.setFeaturesCol(RAW_FEATURES_COL)
    return Pipeline(stages=[estimator]), estimator


def _make_estimator(
    config: ClassificationConfig, algorithm: Algorithm, spec: AlgorithmConfig, use_weights: bool
) -> Any:
    cls = _estimator_class(algorithm)
    t = config.threshold
    kwargs: dict[str, Any] = {
        "featuresCol": FEATURES_COL,
        "labelCol": config.label,
        **spec.params,
    }
    if use_weights:
        kwargs["weightCol"] = WEIGHT_COL
    estimator = cls(**kwargs)
    # Not every constructor takes these (GBTClassifier has no ``thresholds`` argument), but
    # every estimator has the params. argmax(p_i / t_i) with t = [1-t, t] predicts 1 exactly
    # when P(1) > t.
    estimator._set(thresholds=[1.0 - t, t])  # noqa: SLF001 - the typed setter for any Param
    if estimator.hasParam("seed"):
        estimator._set(seed=config.split.seed)  # noqa: SLF001
    return estimator


def _grid(estimator: Any, spec: AlgorithmConfig) -> list[dict[Any, Any]]:
    builder = ParamGridBuilder()
    for name, values in spec.grid.items():
        param = estimator.getParam(name)
        builder.addGrid(param, [param.typeConverter(v) for v in values])
    return builder.build()


# --------------------------------------------------------------------------------------------
# Training with MLflow tracking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateResult:
    """One trained candidate.

    Attributes:
        algorithm: the algorithm key.
        run_id: its nested MLflow run.
        model_uri: the logged model (``models:/<model id>``).
        validation_metric: the search's best metric (cross-validation mean or validation split).
        best_params: the grid values chosen.
        test_metrics: held-out metrics.
        importances: per feature, largest first.
    """

    algorithm: str
    run_id: str
    model_uri: str
    validation_metric: float
    best_params: dict[str, Any]
    test_metrics: BinaryMetrics
    importances: list[FeatureImportance]


@dataclass(frozen=True)
class ClassificationResult:
    """A training run: the parent run, every candidate and the best one.

    Attributes:
        features: the models' input features (after selection, when configured).
        dropped: the features selection dropped, with the reason.
    """

    parent_run_id: str
    candidates: list[CandidateResult]
    best: CandidateResult
    train_rows: int
    test_rows: int
    features: list[str]
    dropped: dict[str, str]


def _search(
    config: ClassificationConfig, pipeline: Pipeline, estimator: Any, spec: AlgorithmConfig
) -> Any:
    evaluator = BinaryClassificationEvaluator(
        labelCol=config.label,
        rawPredictionCol="probability",
        metricName=_EVALUATOR_METRIC[config.metric],
    )
    grid = _grid(estimator, spec)
    if config.search.method == "cross_validation":
        return CrossValidator(
            estimator=pipeline,
            estimatorParamMaps=grid,
            evaluator=evaluator,
            numFolds=config.search.folds,
            foldCol=FOLD_COL,
            parallelism=config.search.parallelism,
            seed=config.split.seed,
        )
    return TrainValidationSplit(
        estimator=pipeline,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        trainRatio=config.search.train_ratio,
        parallelism=config.search.parallelism,
        seed=config.split.seed,
    )


def _search_metrics(model: Any) -> list[float]:
    return list(model.avgMetrics if hasattr(model, "avgMetrics") else model.validationMetrics)


def _train_candidate(
    config: ClassificationConfig,
    algorithm: Algorithm,
    preprocessing: PipelineModel,
    train: DataFrame,
    test: DataFrame,
    use_weights: bool,
    tags: Mapping[str, str],
    slots: list[str],
) -> CandidateResult:
    import mlflow

    from featurelake.ml.portable.pyfunc import log_spark_pipeline
    from featurelake.ml.tracking import pip_requirements

    spec = config.algorithms[algorithm]
    pipeline, estimator = build_estimator_pipeline(config, algorithm, use_weights=use_weights)
    search = _search(config, pipeline, estimator, spec)
    with mlflow.start_run(run_name=algorithm, nested=True) as run:
        mlflow.set_tags({**tags, "featurelake.algorithm": algorithm})
        mlflow.log_params(
            {
                "algorithm": algorithm,
                **{f"param.{k}": v for k, v in spec.params.items()},
                "grid": json.dumps(spec.grid, sort_keys=True),
                "search.method": config.search.method,
            }
        )
        fitted = search.fit(train)
        metrics = _search_metrics(fitted)
        grid = fitted.getEstimatorParamMaps()
        best_index = max(range(len(metrics)), key=lambda i: metrics[i])
        best_params = {p.name: v for p, v in grid[best_index].items()}
        for i, (params, value) in enumerate(zip(grid, metrics, strict=True)):
            mlflow.log_metric(f"search_{config.metric}", value, step=i)
            log.info(
                "search_point",
                extra={
                    "fields": {
                        "algorithm": algorithm,
                        "params": {p.name: v for p, v in params.items()},
                        config.metric: float(value),
                    }
                },
            )
        mlflow.log_params({f"best.{k}": v for k, v in best_params.items()})
        # One model from raw columns to prediction: what scoring loads.
        model = PipelineModel(stages=[*preprocessing.stages, *fitted.bestModel.stages])
        held_out = evaluate_binary(model.transform(test), config.label)
        mlflow.log_metric(f"validation_{config.metric}", metrics[best_index])
        mlflow.log_metrics({f"test_{k}": v for k, v in held_out.as_metrics().items()})
        mlflow.log_dict(
            {
                "labels": [0, 1],
                "rows_actual_cols_predicted": [
                    [held_out.tn, held_out.fp],
                    [held_out.fn, held_out.tp],
                ],
            },
            "confusion_matrix.json",
        )
        mlflow.log_dict(
            {"points": [{"threshold": t, "fpr": x, "tpr": y} for t, x, y in held_out.roc_curve]},
            "roc_curve.json",
        )
        mlflow.log_figure(roc_figure({algorithm: held_out.roc_curve}), "roc_curve.png")
        importances = model_importances(fitted.bestModel.stages[-1], slots, config.feature_columns)
        mlflow.log_table(importance_rows(importances), IMPORTANCE_ARTIFACT)
        mlflow.log_figure(
            importance_figure(importances, f"{algorithm}: feature importance"), IMPORTANCE_PLOT
        )
        # Spark flavour for native scoring, numpy pyfunc for spark_udf and serving.
        example = test.select(*config.feature_columns).limit(5)
        info = log_spark_pipeline(model, example, pip_requirements=pip_requirements())
    log.info(
        "candidate_trained",
        extra={
            "fields": {
                "algorithm": algorithm,
                "run_id": run.info.run_id,
                "best_params": best_params,
                f"validation_{config.metric}": float(metrics[best_index]),
                **held_out.as_metrics(),
                "top_features": [i.feature for i in importances[:5]],
            }
        },
    )
    return CandidateResult(
        algorithm,
        run.info.run_id,
        info.model_uri,
        float(metrics[best_index]),
        best_params,
        held_out,
        importances,
    )


def train_classifier(
    config: ClassificationConfig,
    data: DataFrame,
    *,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> ClassificationResult:
    """Train every configured candidate under one parent MLflow run; pick the best.

    Call after :func:`featurelake.ml.tracking.configure_tracking`. Rows without a label are not
    used (count them before, with :func:`label_coverage`).

    Args:
        config: the validated model configuration.
        data: the output of :func:`prepare_training_frame`.
        tags: MLflow tags for the parent and every candidate run (table paths and versions,
            code version...).
        run_name: the parent run's name.

    Returns:
        The parent run id, every candidate's result and the best one (by validation metric).

    Raises:
        ValueError: the training rows do not hold both classes, or the label is not 0/1.
    """
    import mlflow

    tags = dict(tags or {})
    labelled = data.filter(F.col(config.label).isNotNull())
    train = labelled.filter(F.col(SPLIT_COL) == "train")
    test = labelled.filter(F.col(SPLIT_COL) == "test")
    class_counts = {int(r[0]): int(r[1]) for r in train.groupBy(config.label).count().collect()}
    bad = sorted(set(class_counts) - {0, 1})
    if bad:
        raise ValueError(f"label {config.label!r} must be 0/1; found values {bad}")
    use_weights = config.class_weights == "balanced"
    weights = balanced_weights(class_counts) if use_weights else {0: 1.0, 1: 1.0}
    train = train.transform(with_class_weight, config.label, weights).cache()
    test = test.cache()
    declared = config
    # Selection sees the training rows only; the models then take the chosen features alone.
    selection = select_features(config, train, use_weights=use_weights)
    config = config.with_features(selection.selected)
    # Medians and category indexes come from the training rows only (never the held-out ones);
    # fitted once, so the search fits only the estimators, on a cached vector.
    preprocessing = build_preprocessing(config).fit(train)
    vectors = (
        preprocessing.transform(train)
        .select(RAW_FEATURES_COL, config.label, WEIGHT_COL, FOLD_COL)
        .cache()
    )
    slots = vector_slots(vectors.schema[RAW_FEATURES_COL])
    columns = [config.features.key, *declared.feature_columns, config.label]
    stats = {}
    for side, frame in (("train", train), ("test", test)):
        row = frame.agg(F.count(F.lit(1)).alias("rows"), fingerprint(columns).alias("fp")).first()
        assert row is not None
        stats[side] = (int(row["rows"]), str(row["fp"]))
    if stats["test"][0] == 0:
        raise ValueError("the held-out split is empty; lower split.test_fraction or add rows")
    try:
        with mlflow.start_run(run_name=run_name or f"{config.name}-training") as parent:
            mlflow.set_tags(
                {**tags, "featurelake.model": config.name, "featurelake.kind": "classification"}
            )
            mlflow.set_tag("featurelake.selected_features", ",".join(selection.selected))
            mlflow.log_params(
                {
                    "label": config.label,
                    "numeric_features": ",".join(declared.numeric_features),
                    "categorical_features": ",".join(declared.categorical_features),
                    "selection": ",".join(selection.steps) or "none",
                    "selected_features_count": len(selection.selected),
                    "split.test_fraction": config.split.test_fraction,
                    "split.seed": config.split.seed,
                    "split.key": config.features.key,
                    "search.method": config.search.method,
                    "search.folds": config.search.folds,
                    "search.parallelism": config.search.parallelism,
                    "class_weights": config.class_weights,
                    "threshold": config.threshold,
                    "metric": config.metric,
                    "class_weight.0": weights.get(0, 1.0),
                    "class_weight.1": weights.get(1, 1.0),
                    "train_rows": stats["train"][0],
                    "train_fingerprint": stats["train"][1],
                    "test_rows": stats["test"][0],
                    "test_fingerprint": stats["test"][1],
                }
            )
            mlflow.log_dict(declared.model_dump(mode="json"), "model_config.json")
            mlflow.log_dict(selection.as_dict(), "feature_selection.json")
            candidate_tags = {**tags, "featurelake.selected_features": ",".join(selection.selected)}
            candidates = [
                _train_candidate(
                    config, algo, preprocessing, vectors, test, use_weights, candidate_tags, slots
                )
                for algo in config.algorithms
            ]
            best = max(candidates, key=lambda c: c.validation_metric)
            mlflow.set_tags(
                {
                    "featurelake.best_algorithm": best.algorithm,
                    "featurelake.best_run_id": best.run_id,
                    "featurelake.best_model_uri": best.model_uri,
                }
            )
            mlflow.log_metrics(
                {f"best_test_{k}": v for k, v in best.test_metrics.as_metrics().items()}
            )
            mlflow.log_dict(
                {
                    "candidates": [
                        {
                            "algorithm": c.algorithm,
                            "run_id": c.run_id,
                            "model_uri": c.model_uri,
                            f"validation_{config.metric}": c.validation_metric,
                            "best_params": c.best_params,
                            **{f"test_{k}": v for k, v in c.test_metrics.as_metrics().items()},
                            "top_features": [i.feature for i in c.importances[:10]],
                        }
                        for c in candidates
                    ]
                },
                "candidates.json",
            )
            mlflow.log_figure(
                roc_figure({c.algorithm: c.test_metrics.roc_curve for c in candidates}),
                "roc_curves.png",
            )
    finally:
        vectors.unpersist()
        train.unpersist()
        test.unpersist()
    return ClassificationResult(
        parent.info.run_id,
        candidates,
        best,
        stats["train"][0],
        stats["test"][0],
        list(selection.selected),
        dict(selection.dropped),
    )
