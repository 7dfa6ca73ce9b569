"""Batch scoring: native and pyfunc paths, Spark and scikit-learn models, quarantine."""

from __future__ import annotations

from datetime import date, datetime, timezone

import mlflow
import numpy as np
import pytest
from chispa import assert_df_equality
from featurelake.core.config import MlflowSettings
from featurelake.ml.scoring import (
    MissingColumnsError,
    check_input_columns,
    predict,
    resolve_model,
    split_scorable,
    with_prediction_metadata,
)
from featurelake.ml.tracking import configure_tracking
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.clustering import KMeans
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import functions as F

SCHEMA = "id long, x1 double, x2 double, label double"
# Two well-separated classes: label 1 when x1 + x2 > 1.
ROWS = [
    (i, float(a), float(b), float(a + b > 1))
    for i, (a, b) in enumerate(
        [
            (0.0, 0.1),
            (0.2, 0.1),
            (0.1, 0.3),
            (0.3, 0.2),
            (0.9, 0.8),
            (1.0, 0.7),
            (0.8, 0.9),
            (0.7, 1.0),
            (0.05, 0.05),
            (0.95, 0.95),
        ]
    )
]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{root}/mlflow.db",
            artifact_location=str(root / "artifacts"),
            experiment="scoring-tests",
        )
    )
    yield root
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def spark_model(spark, tracking):
    from mlflow.models import infer_signature

    train = spark.createDataFrame(ROWS, SCHEMA)
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=["x1", "x2"], outputCol="features"),
            LogisticRegression(labelCol="label", regParam=0.01),
        ]
    )
    fitted = pipeline.fit(train)
    example = train.select("x1", "x2").limit(3).toPandas()
    signature = infer_signature(example, fitted.transform(train).select("prediction").toPandas())
    with mlflow.start_run() as run:
        mlflow.set_tag("featurelake.kind", "classification")
        mlflow.spark.log_model(
            fitted,
            artifact_path="model",
            signature=signature,
            input_example=example,
            registered_model_name="scoring_lr",
            pip_requirements=["pyspark"],
        )
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("scoring_lr", "champion", "1")
    return fitted, run.info.run_id


@pytest.fixture(scope="module")
def sklearn_model(tracking):
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression as SkLogistic

    frame = pd.DataFrame(ROWS, columns=["id", "x1", "x2", "label"])
    model = SkLogistic().fit(frame[["x1", "x2"]], frame["label"])
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(frame[["x1", "x2"]], model.predict(frame[["x1", "x2"]])),
            registered_model_name="scoring_sklearn",
            pip_requirements=["scikit-learn"],
        )
    return model


def test_an_alias_resolves_to_a_version_its_run_and_signature(spark_model):
    _, run_id = spark_model
    model = resolve_model("models:/scoring_lr@champion")
    assert (model.name, model.version, model.run_id) == ("scoring_lr", "1", run_id)
    assert model.load_uri == "models:/scoring_lr/1"
    assert model.input_columns == ("x1", "x2")
    assert model.is_spark


def test_an_unknown_model_is_a_clear_error(tracking):
    with pytest.raises(ValueError, match="cannot load model models:/nope@champion"):
        resolve_model("models:/nope@champion")


def test_native_path_equals_a_direct_transform(spark, spark_model):
    fitted, _ = spark_model
    df = spark.createDataFrame(ROWS, SCHEMA).drop("label")
    scored, path = predict(spark, resolve_model("models:/scoring_lr@champion"), df, "auto")
    assert path == "native"
    from pyspark.ml.functions import vector_to_array

    direct = fitted.transform(df).select(
        "id",
        "x1",
        "x2",
        "prediction",
        vector_to_array("probability")[1].alias("probability"),
        F.lit(None).cast("int").alias("segment"),
    )
    assert_df_equality(
        scored, direct, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )


def test_pyfunc_path_with_a_spark_model_gives_the_same_predictions(spark, spark_model):
    model = resolve_model("models:/scoring_lr@champion")
    df = spark.createDataFrame(ROWS, SCHEMA).drop("label")
    native, _ = predict(spark, model, df, "native")
    pyfunc, path = predict(spark, model, df, "pyfunc")
    assert path == "pyfunc"
    assert_df_equality(
        pyfunc.select("id", "prediction"),
        native.select("id", "prediction"),
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )


def test_pyfunc_path_with_a_sklearn_model_gives_its_predictions(spark, sklearn_model):
    model = resolve_model("models:/scoring_sklearn/1")
    assert not model.is_spark
    df = spark.createDataFrame(ROWS, SCHEMA)
    scored, path = predict(spark, model, df, "auto")
    assert path == "pyfunc"
    expected = sklearn_model.predict(np.array([[r[1], r[2]] for r in ROWS]))
    got = {r["id"]: r["prediction"] for r in scored.collect()}
    assert [got[i] for i in range(len(ROWS))] == [float(v) for v in expected]
    # and the labels are the separable truth: x1 + x2 > 1
    assert [got[i] for i in range(len(ROWS))] == [r[3] for r in ROWS]


def test_native_path_on_a_non_spark_model_is_refused(spark, sklearn_model):
    model = resolve_model("models:/scoring_sklearn/1")
    with pytest.raises(ValueError, match="no Spark flavour"):
        predict(spark, model, spark.createDataFrame(ROWS, SCHEMA), "native")


def test_clustering_models_give_segments(spark, tracking):
    train = spark.createDataFrame(ROWS, SCHEMA)
    fitted = Pipeline(
        stages=[VectorAssembler(inputCols=["x1", "x2"], outputCol="features"), KMeans(k=2, seed=1)]
    ).fit(train)
    from mlflow.models import infer_signature

    with mlflow.start_run():
        mlflow.spark.log_model(
            fitted,
            artifact_path="model",
            pip_requirements=["pyspark"],
            signature=infer_signature(train.select("x1", "x2").toPandas()),
            registered_model_name="scoring_km",
        )
    scored, _ = predict(spark, resolve_model("models:/scoring_km/1"), train, "native")
    direct = {r["id"]: r["prediction"] for r in fitted.transform(train).collect()}
    assert {r["id"]: r["segment"] for r in scored.collect()} == direct


def test_missing_input_columns_are_named():
    class Frame:
        columns = ["id", "x1"]

    with pytest.raises(MissingColumnsError) as info:
        check_input_columns(Frame(), ["x1", "x2", "x3"], "models:/m@champion")
    assert str(info.value) == (
        "the input of models:/m@champion: missing columns ['x2', 'x3']; "
        "present columns: ['id', 'x1']"
    )


def test_rows_with_null_or_nan_features_go_to_quarantine_with_reasons(spark):
    df = spark.createDataFrame(
        [(1, 0.5, 0.5), (2, None, 0.1), (3, float("nan"), None)], "id long, x1 double, x2 double"
    )
    scorable, quarantined = split_scorable(df, ["x1", "x2"])
    assert [r["id"] for r in scorable.collect()] == [1]
    reasons = {r["id"]: r["_failed_rules"] for r in quarantined.collect()}
    assert reasons == {2: ["null_feature:x1"], 3: ["null_feature:x1", "null_feature:x2"]}


def test_prediction_metadata_columns(spark, spark_model):
    model = resolve_model("models:/scoring_lr@champion")
    scored = spark.createDataFrame(
        [(7, 1.0, 0.9, None)], "id long, prediction double, probability double, segment int"
    )
    out = with_prediction_metadata(
        scored,
        model,
        keys=["id"],
        batch_id="b1",
        scoring_date=F.lit(date(2024, 5, 1)),
        inference_ts=F.lit(datetime(2024, 5, 1, 8, tzinfo=timezone.utc)),
        feature_table_version=3,
    )
    row = out.collect()[0].asDict()
    assert row == {
        "id": 7,
        "prediction": 1.0,
        "probability": 0.9,
        "segment": None,
        "model_name": "scoring_lr",
        "model_version": "1",
        "run_id": model.run_id,
        "feature_table_version": 3,
        "batch_id": "b1",
        "inference_ts": datetime(2024, 5, 1, 8),
        "scoring_date": date(2024, 5, 1),
        "role": "champion",
    }
