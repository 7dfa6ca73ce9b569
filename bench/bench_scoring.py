"""Scoring throughput and agreement: the pyfunc UDF (numpy, no JVM) against native Spark.

    .venv/bin/python bench/bench_scoring.py [--rows 1000000] [--algorithm gbt]

Trains the credit classifier's pipeline (the training code's own preprocessing: median
imputation, string indexing and one-hot encoding of categorical columns, assembly; then the
estimator) on synthetic credit-like rows with nulls, logs it with featurelake's two flavours to
a throw-away MLflow store, then scores ``--rows`` rows, each path written to a Parquet sink so
all the work happens:

* ``direct``  - ``mlflow.spark.load_model(uri).transform(df)``, the baseline;
* ``native``  - featurelake's scoring ``predict(..., path="native")`` (the job's default);
* ``pyfunc``  - ``mlflow.pyfunc.spark_udf`` over the same registered version
  (``predict(..., path="pyfunc")``): Python workers evaluate the pipeline with numpy.

Then, in the same run, joins the native and pyfunc outputs on the row id and counts rows whose
prediction differs and the largest probability difference (targets: 0 rows, <= 1e-9), and prints
each path's rows/s and ratio to the native path (target: pyfunc >= 0.8x native).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

NUMERIC = [f"x{i}" for i in range(12)] + ["months"]
CATEGORICAL = ["band", "status"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--algorithm", default="gbt", choices=["logistic_regression", "random_forest", "gbt"]
    )
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()

    import mlflow
    from featurelake.core.config import MlflowSettings, SparkSettings
    from featurelake.core.session import build_spark_session
    from featurelake.ml.classification import (
        build_estimator_pipeline,
        build_preprocessing,
        with_class_weight,
    )
    from featurelake.ml.config import ClassificationConfig
    from featurelake.ml.portable.pyfunc import log_spark_pipeline
    from featurelake.ml.scoring import predict, resolve_model
    from featurelake.ml.tracking import configure_tracking
    from pyspark.ml import PipelineModel

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    spark = build_spark_session("bench-scoring", SparkSettings(master=args.master))
    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{work}/mlflow.db",
            artifact_location=str(work / "artifacts"),
            experiment="bench",
        )
    )
    numeric = [
        F.when(F.rand(100 + i) < 0.02, F.lit(None)).otherwise(F.randn(i) * (i + 1)).alias(n)
        for i, n in enumerate(NUMERIC[:-1])
    ]
    frame = spark.range(args.rows).select(
        "id",
        *numeric,
        (F.rand(50) * 7).cast("int").alias("months"),
        F.element_at(F.array(*[F.lit(b) for b in "abcde"]), (F.rand(51) * 5).cast("int") + 1).alias(
            "band"
        ),
        ((F.rand(52) * 6).cast("int") - 2).alias("status"),
    )
    signal = (
        F.coalesce(F.col("x1"), F.lit(0.0))
        + F.col("months") / 3
        + (F.col("band") == "c").cast("double")
    )
    frame = frame.withColumn("label", (signal + F.randn(53) > 2.0).cast("int"))
    data = frame.repartition(8).cache()
    data.count()

    config = ClassificationConfig(
        kind="classification",
        name="bench_scoring",
        features={"table": "gold/bench", "key": "id"},
        labels={"table": "gold/bench_labels", "key": "id"},
        label="label",
        numeric_features=NUMERIC,
        categorical_features=CATEGORICAL,
        algorithms={
            args.algorithm: {
                "params": {
                    "logistic_regression": {"maxIter": 30},
                    "random_forest": {"numTrees": 60, "maxDepth": 8},
                    "gbt": {"maxIter": 30, "maxDepth": 4},
                }[args.algorithm],
                # One grid point (the search is not run here; the estimator is fitted directly).
                "grid": {"regParam": [0.01]}
                if args.algorithm == "logistic_regression"
                else {"maxDepth": [8 if args.algorithm == "random_forest" else 4]},
            }
        },
        promotion={"metric": "roc_auc", "min_metric": 0.5},
    )
    train = data.limit(50_000).transform(with_class_weight, "label", {0: 1.0, 1: 2.0})
    preprocessing = build_preprocessing(config).fit(train)
    pipeline, _ = build_estimator_pipeline(config, args.algorithm, use_weights=True)
    fitted = pipeline.fit(preprocessing.transform(train))
    model = PipelineModel(stages=[*preprocessing.stages, *fitted.stages])
    inputs = [*NUMERIC, *CATEGORICAL]
    with mlflow.start_run():
        info = log_spark_pipeline(model, data.select(*inputs).limit(5))
    mlflow.register_model(info.model_uri, "bench_scoring")
    resolved = resolve_model("models:/bench_scoring/1")
    features = data.drop("label")
    columns = ["id", "prediction", "probability"]

    def timed(name: str, build) -> float:
        started = time.perf_counter()
        build().write.mode("overwrite").parquet(str(work / name))
        seconds = time.perf_counter() - started
        print(f"{name:<7} {seconds:8.2f}s  {args.rows / seconds:12,.0f} rows/s", flush=True)
        return seconds

    results = {
        "direct": timed(
            "direct",
            lambda: (
                mlflow.spark.load_model(resolved.load_uri)
                .transform(features)
                .select("id", "prediction", "probability")
            ),
        ),
        "native": timed(
            "native", lambda: predict(spark, resolved, features, "native")[0].select(*columns)
        ),
        "pyfunc": timed(
            "pyfunc", lambda: predict(spark, resolved, features, "pyfunc")[0].select(*columns)
        ),
    }
    native = spark.read.parquet(str(work / "native"))
    pyfunc = spark.read.parquet(str(work / "pyfunc")).select(
        "id", F.col("prediction").alias("p_prediction"), F.col("probability").alias("p_prob")
    )
    check = (
        native.join(pyfunc, "id", "full_outer")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum((~F.col("prediction").eqNullSafe(F.col("p_prediction"))).cast("long")).alias(
                "mismatched"
            ),
            F.max(F.abs(F.col("probability") - F.col("p_prob"))).alias("max_gap"),
            F.sum(F.col("p_prob").isNull().cast("long")).alias("null_probabilities"),
        )
        .first()
    )
    print(f"rows: {args.rows:,}  algorithm: {args.algorithm}")
    for name, seconds in results.items():
        print(
            f"{name:<7} {seconds:8.2f}s  {args.rows / seconds:12,.0f} rows/s  "
            f"ratio to native: {results['native'] / seconds:.2f}x"
        )
    print(
        f"agreement: {check['rows']:,} rows joined, {check['mismatched']} predictions differ, "
        f"max |probability difference| {check['max_gap']:.3g}, "
        f"{check['null_probabilities']} pyfunc probabilities null"
    )
    print("targets: pyfunc >= 0.8x native; 0 predictions differ; probabilities within 1e-9")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
