"""Scoring throughput: the pyfunc UDF path, the native path and a direct transform.

    .venv/bin/python bench/bench_scoring.py [--rows 1000000]

Trains a small Spark ML classifier (assembler + logistic regression) on synthetic credit-like
features, logs it to a throw-away MLflow store, then scores ``--rows`` rows three ways, each
written to a Parquet sink so all the work happens:

* ``direct``  - ``mlflow.spark.load_model(uri).transform(df)``, the baseline;
* ``native``  - featurelake's scoring ``predict(..., path="auto")`` (the job's default);
* ``pyfunc``  - ``mlflow.pyfunc.spark_udf`` (``predict(..., path="pyfunc")``).

Prints rows/s and each path's ratio to the direct transform (target: default >= 0.8x).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-pyfunc", action="store_true")
    args = parser.parse_args()

    import mlflow
    from featurelake.core.config import MlflowSettings, SparkSettings
    from featurelake.core.session import build_spark_session
    from featurelake.ml.scoring import predict, resolve_model
    from featurelake.ml.tracking import configure_tracking
    from mlflow.models import infer_signature
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    spark = build_spark_session("bench-scoring", SparkSettings(master="local[*]"))
    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{work}/mlflow.db",
            artifact_location=str(work / "artifacts"),
            experiment="bench",
        )
    )
    names = [f"x{i}" for i in range(8)]
    frame = spark.range(args.rows).select(
        "id", *[(F.rand(i) * (i + 1)).alias(n) for i, n in enumerate(names)]
    )
    frame = frame.withColumn("label", (F.col("x1") + F.col("x2") > 2.5).cast("double"))
    data = frame.repartition(8).cache()
    data.count()
    model = Pipeline(
        stages=[
            VectorAssembler(inputCols=names, outputCol="features"),
            LogisticRegression(maxIter=20),
        ]
    ).fit(data.limit(50_000))
    example = data.select(*names).limit(5).toPandas()
    with mlflow.start_run():
        mlflow.spark.log_model(
            model,
            artifact_path="model",
            registered_model_name="bench_lr",
            signature=infer_signature(example),
            pip_requirements=["pyspark"],
        )
    resolved = resolve_model("models:/bench_lr/1")
    features = data.drop("label")

    def timed(name: str, build) -> float:
        started = time.perf_counter()
        build().write.mode("overwrite").parquet(str(work / name))
        seconds = time.perf_counter() - started
        print(f"{name:<7} {seconds:8.2f}s  {args.rows / seconds:12,.0f} rows/s", flush=True)
        return seconds

    results = {}
    results["direct"] = timed(
        "direct",
        lambda: (
            mlflow.spark.load_model(resolved.load_uri)
            .transform(features)
            .select("id", "prediction", "probability")
        ),
    )
    results["native"] = timed(
        "native",
        lambda: predict(spark, resolved, features, "auto")[0].select(
            "id", "prediction", "probability"
        ),
    )
    if not args.skip_pyfunc:
        results["pyfunc"] = timed(
            "pyfunc",
            lambda: predict(spark, resolved, features, "pyfunc")[0].select("id", "prediction"),
        )
    print(f"rows: {args.rows:,}")
    for name, seconds in results.items():
        print(
            f"{name:<7} {seconds:8.2f}s  {args.rows / seconds:12,.0f} rows/s  "
            f"ratio to direct: {results['direct'] / seconds:.2f}x"
        )
    print("target: the job's default path (native) >= 0.8x the direct transform")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
