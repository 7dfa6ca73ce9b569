"""Segmentation: profiles, names, algorithms, and the train-segmentation job on real MLflow."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import mlflow
import pytest
import yaml
from chispa import assert_df_equality
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.ml.config import NamingConfig, NamingRule, load_model_config
from featurelake.ml.segmentation import (
    build_segmentation_pipeline,
    name_segments,
    segment_profiles,
)
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

PROJECT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2024, 1, 31, 23, 59, 59)

SCHEMA = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("as_of_ts", TimestampType()),
        StructField("recency_days", IntegerType()),
        StructField("frequency", LongType()),
        StructField("monetary", DoubleType()),
        StructField("tenure_days", IntegerType()),
    ]
)

TINY_CONFIG = {
    "kind": "segmentation",
    "name": "tiny_segments",
    "features": {"table": "gold/customer_features", "key": "customer_id"},
    "as_of_column": "as_of_ts",
    "feature_columns": ["recency_days", "frequency", "monetary", "tenure_days"],
    "log1p_columns": ["frequency", "monetary"],
    "k": {"min": 2, "max": 4},
    "max_iter": 20,
    "seed": 3,
    "output": "gold/customer_segments",
    "naming": {
        "rules": [
            {"name": "high-value", "above": {"monetary": 2.0}},
            {"name": "new", "below": {"tenure_days": 0.5}},
            {"name": "at-risk", "above": {"recency_days": 1.5}},
        ],
        "default": "regular",
    },
    "promotion": {"metric": "silhouette", "min_metric": 0.2},
}


def customers() -> list[tuple]:
    """Three obvious groups of 8: big recent spenders, lapsed small buyers, newcomers."""
    rows = []
    for i in range(8):
        rows.append((f"hv{i}", AS_OF, 5 + i, 30 + i, 5000.0 + 100 * i, 300 + i))
        rows.append((f"ar{i}", AS_OF, 200 + 5 * i, 2 + i % 3, 100.0 + 10 * i, 310 + i))
        rows.append((f"nw{i}", AS_OF, 3 + i % 4, 1 + i % 2, 50.0 + 5 * i, 10 + i))
    # A customer with a missing feature still gets a segment (median imputation).
    rows.append(("nw_missing", AS_OF, None, 1, 60.0, 12))
    return rows


def argv(root: Path, config: Path) -> list[str]:
    return [
        "--conf-dir",
        str(PROJECT / "conf"),
        "--model-config",
        str(config),
        "--conf",
        f"lakehouse.root={root}",
        "--conf",
        f"mlflow.tracking_uri=sqlite:///{root}/mlflow/mlflow.db",
        "--conf",
        f"mlflow.artifact_location={root}/mlflow/artifacts",
        "--conf",
        "mlflow.experiment=tests",
    ]


def run_segmentation_job(spark: SparkSession, root: Path, config: Path) -> int:
    from featurelake.core.pipeline import load_job_module

    job = load_job_module("train-segmentation")
    return run_job(
        "train-segmentation",
        job.main,
        argv=argv(root, config),
        add_arguments=job.add_arguments,
        spark=spark,
    )


@pytest.fixture(scope="module")
def segmented(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("seglake")
    DeltaTables(spark).write(
        spark.createDataFrame(customers(), SCHEMA), f"{root}/gold/customer_features"
    )
    config = root / "tiny_segments.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG), encoding="utf-8")
    assert run_segmentation_job(spark, root, config) == 0
    from featurelake.core.pipeline import load_job_module

    promote = load_job_module("promote")
    assert (
        run_job(
            "promote",
            promote.main,
            argv=argv(root, config),
            add_arguments=promote.add_arguments,
            spark=spark,
        )
        == 0
    )
    tracking = f"sqlite:///{root}/mlflow/mlflow.db"
    client = mlflow.MlflowClient(tracking, tracking)
    run = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id],
        "tags.`featurelake.kind` = 'segmentation'",
    )[0]
    return {
        "root": root,
        "client": client,
        "run": run,
        "segments": DeltaTables(spark).read(f"{root}/gold/customer_segments"),
    }


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


NAMING = NamingConfig(
    rules=[
        NamingRule(name="high-value", above={"monetary": 2.0}),
        NamingRule(name="new", below={"tenure_days": 0.5}),
    ],
    default="regular",
)


def test_first_matching_rule_names_a_segment() -> None:
    overall = {"monetary": 100.0, "tenure_days": 200.0}
    profiles = [
        {"segment_id": 0, "size": 10, "monetary": 250.0, "tenure_days": 50.0},  # both: first wins
        {"segment_id": 1, "size": 30, "monetary": 90.0, "tenure_days": 90.0},  # new
        {"segment_id": 2, "size": 60, "monetary": 80.0, "tenure_days": 300.0},  # neither
    ]
    assert name_segments(profiles, overall, NAMING) == {0: "high-value", 1: "new", 2: "regular"}


def test_repeated_names_are_numbered_by_decreasing_size() -> None:
    overall = {"monetary": 100.0, "tenure_days": 200.0}
    profiles = [
        {"segment_id": 0, "size": 5, "monetary": 90.0, "tenure_days": 300.0},
        {"segment_id": 1, "size": 50, "monetary": 95.0, "tenure_days": 250.0},
    ]
    assert name_segments(profiles, overall, NAMING) == {1: "regular", 0: "regular-2"}


def test_ratio_to_a_non_positive_mean_never_holds() -> None:
    overall = {"monetary": -5.0, "tenure_days": 200.0}
    profiles = [{"segment_id": 0, "size": 5, "monetary": 500.0, "tenure_days": 300.0}]
    assert name_segments(profiles, overall, NAMING) == {0: "regular"}


def test_segment_profiles_are_sizes_and_means(spark: SparkSession) -> None:
    assigned = spark.createDataFrame(
        [(0, 1.0, 10.0), (0, 3.0, None), (1, 5.0, 7.0)],
        "prediction int, recency_days double, monetary double",
    )
    expected = spark.createDataFrame(
        [(0, 2, 2.0, 10.0), (1, 1, 5.0, 7.0)],
        "segment_id int, size long, recency_days double, monetary double",
    )
    assert_df_equality(
        segment_profiles(assigned, ["recency_days", "monetary"]),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def fit_tiny(spark: SparkSession, tmp_path: Path, algorithm: str):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, "algorithm": algorithm}), encoding="utf-8")
    config = load_model_config(path)
    df = spark.createDataFrame(customers()[:-1], SCHEMA)
    model = build_segmentation_pipeline(config, 3).fit(df)
    return model, model.transform(df)


def test_bisecting_kmeans_is_selectable(spark: SparkSession, tmp_path: Path) -> None:
    model, out = fit_tiny(spark, tmp_path, "bisecting_kmeans")
    assert type(model.stages[-1]).__name__ == "BisectingKMeansModel"
    groups = out.groupBy(F.substring("customer_id", 1, 2).alias("group")).agg(
        F.countDistinct("prediction").alias("segments")
    )
    # Each obvious group lands in one segment, and the three groups in three segments.
    assert {r["segments"] for r in groups.collect()} == {1}
    assert out.select("prediction").distinct().count() == 3


def test_gaussian_mixture_is_selectable(spark: SparkSession, tmp_path: Path) -> None:
    model, out = fit_tiny(spark, tmp_path, "gaussian_mixture")
    assert type(model.stages[-1]).__name__ == "GaussianMixtureModel"
    assert {r["prediction"] for r in out.select("prediction").distinct().collect()} <= {0, 1, 2}


# --------------------------------------------------------------------------------------------
# The job against a real sqlite MLflow
# --------------------------------------------------------------------------------------------


def test_k_is_chosen_by_silhouette_and_logged_per_k(segmented: dict) -> None:
    metrics = segmented["run"].data.metrics
    silhouettes = {k: metrics[f"silhouette_k{k}"] for k in (2, 3, 4)}
    assert segmented["run"].data.params["chosen_k"] == "3"
    assert max(silhouettes, key=silhouettes.get) == 3
    assert metrics["chosen_silhouette"] == silhouettes[3]


def test_every_customer_gets_exactly_one_named_segment(segmented: dict) -> None:
    rows = segmented["segments"].collect()
    assert sorted(r["customer_id"] for r in rows) == sorted(c[0] for c in customers())
    name_of = {r["customer_id"]: r["segment_name"] for r in rows}
    assert {name_of[f"hv{i}"] for i in range(8)} == {"high-value"}
    assert {name_of[f"ar{i}"] for i in range(8)} == {"at-risk"}
    assert {name_of[f"nw{i}"] for i in range(8)} | {name_of["nw_missing"]} == {"new"}


def test_segments_table_carries_model_version_and_as_of(segmented: dict) -> None:
    df = segmented["segments"]
    assert df.columns == ["customer_id", "segment_id", "segment_name", "model_version", "as_of_ts"]
    values = df.select("model_version", "as_of_ts").distinct().collect()
    assert [(r["model_version"], r["as_of_ts"]) for r in values] == [("1", AS_OF)]
    client = segmented["client"]
    version = client.get_model_version("tiny_segments", "1")  # promoted: no longer challenger
    names = json.loads(version.tags["featurelake.segment_names"])
    by_id = {
        str(r["segment_id"]): r["segment_name"]
        for r in df.select("segment_id", "segment_name").distinct().collect()
    }
    assert names == by_id


def test_challenger_is_promoted_on_its_silhouette(segmented: dict) -> None:
    client, run = segmented["client"], segmented["run"]
    assert str(client.get_model_version_by_alias("tiny_segments", "champion").version) == "1"
    tags = client.get_model_version("tiny_segments", "1").tags
    assert tags["promotion.decision"] == "promoted"
    # Scored again by the promote job on the logged feature version: the same silhouette.
    assert float(tags["promotion.silhouette"]) == pytest.approx(
        run.data.metrics["chosen_silhouette"], abs=1e-6
    )


def test_profiles_and_plot_are_logged(segmented: dict, tmp_path: Path) -> None:
    client, run = segmented["client"], segmented["run"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"segment_profiles.json", "segment_profiles.csv", "segments.png"} <= artifacts
    profiles = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "segment_profiles.json", str(tmp_path))
        ).read_text()
    )["segments"]
    assert sorted(p["size"] for p in profiles) == [8, 8, 9]


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


def silver_transactions(spark: SparkSession, csv: Path):
    """The Online Retail file typed as silver/transactions (docs/CONTRACTS.md)."""
    raw = spark.read.option("header", True).csv(str(csv))
    quantity = F.col("Quantity").cast("int")
    price = F.col("UnitPrice").cast("double")
    ts = F.to_timestamp("InvoiceDate", "yyyy-MM-dd HH:mm:ss")
    customer = F.regexp_replace(F.trim("CustomerID"), r"\.0$", "")
    return raw.select(
        F.col("InvoiceNo").alias("invoice_no"),
        F.col("StockCode").alias("stock_code"),
        F.col("Description").alias("description"),
        quantity.alias("quantity"),
        ts.alias("invoice_ts"),
        F.to_date(ts).alias("invoice_date"),
        price.alias("unit_price"),
        F.when(customer == "", None).otherwise(customer).alias("customer_id"),
        F.col("Country").alias("country"),
        F.col("InvoiceNo").startswith("C").alias("is_cancellation"),
        (quantity * price).alias("line_amount"),
    )


@pytest.mark.realdata
def test_online_retail_customers_each_get_one_segment(
    spark: SparkSession, shared_data: Path, tmp_path: Path
) -> None:
    from featurelake.lakehouse.feature_library.customers import as_of_timestamps
    from featurelake.lakehouse.gold import build_customer_gold, load_gold_config

    gold_config = load_gold_config(PROJECT / "conf" / "features_gold.yaml")
    transactions = silver_transactions(spark, shared_data / "online_retail.csv.gz")
    points = as_of_timestamps(spark, [datetime(2011, 12, 9, 23, 59, 59)])
    features = build_customer_gold(transactions, points, gold_config.customers)
    tables = DeltaTables(spark)
    tables.write(features, f"{tmp_path}/gold/customer_features")
    config = PROJECT / "conf" / "models" / "customer_segments.yaml"
    assert run_segmentation_job(spark, tmp_path, config) == 0
    tracking = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    client = mlflow.MlflowClient(tracking, tracking)
    run = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id],
        "tags.`featurelake.kind` = 'segmentation'",
    )[0]
    k = int(run.data.params["chosen_k"])
    print(
        f"online retail: chosen k={k}, silhouette={run.data.metrics['chosen_silhouette']:.4f}, "
        + ", ".join(f"k={j}: {run.data.metrics[f'silhouette_k{j}']:.4f}" for j in range(3, 7))
    )
    segments = tables.read(f"{tmp_path}/gold/customer_segments")
    sizes = segments.groupBy("segment_name").count().orderBy("segment_name").collect()
    print("segments: " + ", ".join(f"{r['segment_name']}={r['count']}" for r in sizes))
    customers_in = tables.read(f"{tmp_path}/gold/customer_features").select("customer_id")
    assert segments.count() == customers_in.count()
    assert segments.select("customer_id").distinct().count() == customers_in.count()
    assert customers_in.subtract(segments.select("customer_id")).count() == 0


def test_training_pipeline_trains_both_kinds_and_promotes(
    spark: SparkSession, tmp_path: Path
) -> None:
    import shutil

    from featurelake.core.pipeline import load_job_module

    conf = tmp_path / "conf"
    # The shipped models (and the monitoring declarations that name them) are replaced by
    # two tiny ones.
    shutil.copytree(
        PROJECT / "conf", conf, ignore=shutil.ignore_patterns("models", "monitoring.yaml")
    )
    (conf / "models").mkdir()
    (conf / "models" / "segments.yaml").write_text(yaml.safe_dump(TINY_CONFIG), encoding="utf-8")
    classifier = {
        "kind": "classification",
        "name": "tiny_credit",
        "features": {"table": "gold/credit_features", "key": "id"},
        "labels": {"table": "gold/credit_labels", "key": "id"},
        "label": "default_next_month",
        "numeric_features": ["limit_bal"],
        "search": {"method": "train_validation_split"},
        "algorithms": {
            "logistic_regression": {"params": {"maxIter": 5}, "grid": {"regParam": [0.0]}}
        },
        "promotion": {"metric": "roc_auc", "min_metric": 0.9},
    }
    (conf / "models" / "credit.yaml").write_text(yaml.safe_dump(classifier), encoding="utf-8")
    tables = DeltaTables(spark)
    tables.write(spark.createDataFrame(customers(), SCHEMA), f"{tmp_path}/gold/customer_features")
    # The label is 1 exactly when limit_bal > 50: a separable problem, so the challenger clears 0.9.
    tables.write(
        spark.createDataFrame([(i, float(i)) for i in range(100)], "id long, limit_bal double"),
        f"{tmp_path}/gold/credit_features",
    )
    tables.write(
        spark.createDataFrame(
            [(i, int(i > 50)) for i in range(100)], "id long, default_next_month int"
        ),
        f"{tmp_path}/gold/credit_labels",
    )
    job = load_job_module("training-pipeline")
    args = argv(tmp_path, conf / "unused.yaml")[2:]  # the pipeline takes every config in conf
    args = [a for a in args if a not in ("--model-config", str(conf / "unused.yaml"))]
    assert (
        run_job(
            "training-pipeline",
            job.main,
            argv=["--conf-dir", str(conf), *args],
            add_arguments=job.add_arguments,
            spark=spark,
        )
        == 0
    )
    tracking = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    client = mlflow.MlflowClient(tracking, tracking)
    for name in ("tiny_segments", "tiny_credit"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert tables.read(f"{tmp_path}/gold/customer_segments").count() == len(customers())
