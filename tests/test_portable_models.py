"""The numpy form of a fitted Spark pipeline scores every row exactly as Spark does.

Each algorithm a model configuration can choose (logistic regression, random forest, GBT;
k-means, bisecting k-means, Gaussian mixture) is fitted with the training code's own pipeline
builders, then applied natively by Spark and by :class:`PortablePipeline`; predictions must be
equal on every row and probabilities within 1e-9. The rows hold nulls in integer and double
columns, a null category and categories never seen in training.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from featurelake.core.config import MlflowSettings
from featurelake.ml.classification import (
    build_estimator_pipeline,
    build_preprocessing,
    with_class_weight,
)
from featurelake.ml.config import ClassificationConfig, SegmentationConfig
from featurelake.ml.portable.convert import UnsupportedStageError, pipeline_spec
from featurelake.ml.portable.evaluate import PortablePipeline
from featurelake.ml.portable.pyfunc import log_spark_pipeline
from featurelake.ml.scoring import predict, resolve_model
from featurelake.ml.segmentation import build_segmentation_pipeline
from featurelake.ml.tracking import configure_tracking
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

SCHEMA = "id long, x1 double, x2 int, x3 double, c1 string, c2 int, label int"
INPUTS = ["x1", "x2", "x3", "c1", "c2"]
ALGORITHM_PARAMS = {
    "logistic_regression": {"params": {"maxIter": 20}, "grid": {"regParam": [0.01]}},
    "random_forest": {"params": {"numTrees": 15, "maxDepth": 6}, "grid": {"maxDepth": [6]}},
    "gbt": {"params": {"maxIter": 8, "maxDepth": 3}, "grid": {"maxDepth": [3]}},
}


def _rows(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=n), rng.integers(0, 50, size=n), rng.exponential(100, size=n)
    c1, c2 = rng.choice(["a", "b", "c"], size=n), rng.integers(-2, 4, size=n)
    noise = rng.normal(scale=0.5, size=n)
    return [
        (
            i,
            None if i % 17 == 0 else float(x1[i]),
            None if i % 13 == 0 else int(x2[i]),  # an integer median may be x.5: truncated
            None if i % 23 == 0 else float(x3[i]),
            None if i % 19 == 0 else str(c1[i]),
            int(c2[i]),
            int(x1[i] + x2[i] / 25 + (c1[i] == "b") + noise[i] > 1.5),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def training(spark):
    return spark.createDataFrame(_rows(1500, 1), SCHEMA).cache()


@pytest.fixture(scope="module")
def scoring(spark):
    unseen = [
        (90_001, 0.5, None, 1.0, "never-seen", 7, 0),  # unseen category and code
        (90_002, None, None, None, None, -9, 0),  # every feature null
        (90_003, -1e9, 10**6, -5.0, "a", 0, 1),  # far outside the training range
    ]
    return spark.createDataFrame(_rows(400, 2) + unseen, SCHEMA).cache()


def _classifier(training, algorithm: str) -> PipelineModel:
    config = ClassificationConfig(
        kind="classification",
        name="portable_test",
        features={"table": "gold/f", "key": "id"},
        labels={"table": "gold/l", "key": "id"},
        label="label",
        numeric_features=["x1", "x2", "x3"],
        categorical_features=["c1", "c2"],
        algorithms={algorithm: ALGORITHM_PARAMS[algorithm]},
        threshold=0.4,
        promotion={"metric": "roc_auc", "min_metric": 0.5},
    )
    train = training.transform(with_class_weight, "label", {0: 1.0, 1: 2.5})
    preprocessing = build_preprocessing(config).fit(train)
    pipeline, _ = build_estimator_pipeline(config, algorithm, use_weights=True)
    fitted = pipeline.fit(preprocessing.transform(train))
    return PipelineModel(stages=[*preprocessing.stages, *fitted.stages])


def _segmenter(training, algorithm: str) -> PipelineModel:
    config = SegmentationConfig(
        kind="segmentation",
        name="portable_segments",
        features={"table": "gold/f", "key": "id"},
        as_of_column="as_of",
        feature_columns=["x1", "x2", "x3"],
        log1p_columns=["x3"],
        algorithm=algorithm,
        k={"min": 4, "max": 4},
        output="gold/segments",
        promotion={"metric": "silhouette", "min_metric": 0.0},
    )
    return build_segmentation_pipeline(config, 4).fit(training)


def _native(model: PipelineModel, frame, probability: bool) -> pd.DataFrame:
    out = model.transform(frame)
    p = vector_to_array("probability")[1] if probability else F.lit(None).cast("double")
    return out.select("id", "prediction", p.alias("probability")).toPandas().set_index("id")


def _portable(model: PipelineModel, frame) -> pd.DataFrame:
    spec = pipeline_spec(model, frame.select(*INPUTS).schema)
    # The specification survives JSON, as it is stored beside the model.
    pipeline = PortablePipeline(json.loads(json.dumps(spec)))
    rows = frame.select("id", *INPUTS).toPandas().set_index("id")
    return pipeline.predict(rows)


def _assert_same(native: pd.DataFrame, portable: pd.DataFrame, probability: bool) -> None:
    portable = portable.loc[native.index]
    mismatched = native.index[native["prediction"].to_numpy() != portable["prediction"].to_numpy()]
    assert list(mismatched) == [], f"predictions differ for ids {list(mismatched)[:10]}"
    if probability:
        gap = np.abs(native["probability"].to_numpy() - portable["probability"].to_numpy())
        assert gap.max() <= 1e-9, f"probabilities differ by up to {gap.max()}"
    else:
        assert portable["probability"].isna().all()


@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest", "gbt"])
def test_classifier_scores_like_spark_on_every_row(training, scoring, algorithm):
    model = _classifier(training, algorithm)
    _assert_same(_native(model, scoring, True), _portable(model, scoring), probability=True)


@pytest.mark.parametrize("algorithm", ["kmeans", "bisecting_kmeans", "gaussian_mixture"])
def test_segmentation_assigns_the_segments_spark_assigns(training, scoring, algorithm):
    model = _segmenter(training, algorithm)
    native = _native(model, scoring, False)
    assert native["prediction"].nunique() > 1
    _assert_same(native, _portable(model, scoring), probability=False)


def test_a_stage_it_cannot_reproduce_is_named(training):
    model = PipelineModel(stages=[SQLTransformer(statement="SELECT *, x1 * 2 AS y FROM __THIS__")])
    with pytest.raises(UnsupportedStageError, match="SQLTransformer"):
        pipeline_spec(model, training.select(*INPUTS).schema)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-portable")
    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{root}/mlflow.db",
            artifact_location=str(root / "artifacts"),
            experiment="portable-tests",
        )
    )
    yield root
    mlflow.set_tracking_uri(None)


def test_spark_udf_over_the_registered_model_returns_what_native_scoring_does(
    spark, tracking, training, scoring
):
    model = _classifier(training, "gbt")
    with mlflow.start_run():
        info = log_spark_pipeline(model, scoring.select(*INPUTS).limit(5))
    version = mlflow.register_model(info.model_uri, "portable_gbt")
    resolved = resolve_model(f"models:/portable_gbt/{version.version}")
    assert resolved.is_spark and resolved.is_portable
    columns = ["id", "prediction", "probability"]
    native, native_path = predict(spark, resolved, scoring, path="native")
    pyfunc, pyfunc_path = predict(spark, resolved, scoring, path="pyfunc")
    assert (native_path, pyfunc_path) == ("native", "pyfunc")
    a = native.select(*columns).toPandas().set_index("id").sort_index()
    b = pyfunc.select(*columns).toPandas().set_index("id").sort_index()
    assert len(a) == scoring.count() and b["probability"].notna().all()
    _assert_same(a, b, probability=True)
    # The plain-Python loader: no Spark needed to score.
    loaded = mlflow.pyfunc.load_model(resolved.load_uri)
    rows = scoring.select("id", *INPUTS).toPandas().set_index("id")
    _assert_same(a, loaded.predict(rows).set_index(rows.index), probability=True)
