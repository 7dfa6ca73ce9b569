"""Classification: split, weights, evaluation, and training jobs against a real sqlite MLflow.

The module fixture writes tiny gold-like Delta tables, trains the same config twice (same table
version and seed) and promotes; the tests read what MLflow and Delta recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import yaml
from chispa import assert_df_equality
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.ml.classification import (
    balanced_weights,
    evaluate_binary,
    with_class_weight,
    with_hash_split,
)
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from sklearn.metrics import roc_auc_score

PROJECT = Path(__file__).resolve().parents[1]
JOBS = PROJECT / "jobs"

FEATURE_SCHEMA = StructType(
    [
        StructField("id", LongType()),
        StructField("limit_bal", DoubleType()),
        StructField("age", IntegerType()),
        StructField("age_bin", StringType()),
    ]
)
LABEL_SCHEMA = StructType(
    [StructField("id", LongType()), StructField("default_next_month", IntegerType())]
)


def load_job(name: str):
    from featurelake.core.pipeline import load_job_module

    return load_job_module(name)


def client_rows(ids: range) -> tuple[list[tuple], list[tuple]]:
    """Deterministic clients: older clients with low limits default, plus a little noise."""
    features, labels = [], []
    for i in ids:
        age = 20 + (i * 7) % 50
        limit = 1000.0 * ((i * 13) % 40 + 1)
        age_bin = "20-34" if age < 35 else ("35-49" if age < 50 else "50+")
        default = int((age >= 45 and limit < 25000) != (i % 11 == 0))
        features.append((i, None if i % 17 == 0 else limit, age, age_bin))
        labels.append((i, default))
    return features, labels


TINY_CONFIG = {
    "kind": "classification",
    "name": "tiny_credit",
    "features": {"table": "gold/credit_features", "key": "id"},
    "labels": {"table": "gold/credit_labels", "key": "id"},
    "label": "default_next_month",
    "numeric_features": ["limit_bal", "age"],
    "categorical_features": ["age_bin"],
    "split": {"test_fraction": 0.25, "seed": 7},
    "search": {"method": "train_validation_split", "train_ratio": 0.75, "parallelism": 1},
    "algorithms": {"logistic_regression": {"params": {"maxIter": 8}, "grid": {"regParam": [0.01]}}},
    "promotion": {"metric": "roc_auc", "min_metric": 0.6, "min_improvement": 0.01},
}


def job_argv(root: Path, config: Path) -> list[str]:
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


@pytest.fixture(scope="module")
def trained(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict:
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    root = tmp_path_factory.mktemp("lake")
    tables = DeltaTables(spark)
    features, labels = client_rows(range(1, 241))
    tables.write(spark.createDataFrame(features, FEATURE_SCHEMA), f"{root}/gold/credit_features")
    tables.write(spark.createDataFrame(labels, LABEL_SCHEMA), f"{root}/gold/credit_labels")
    config = root / "tiny_credit.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG), encoding="utf-8")
    job = load_job("train-classifier")
    codes = [
        run_job(
            "train-classifier",
            job.main,
            argv=job_argv(root, config),
            add_arguments=job.add_arguments,
            spark=spark,
        )
        for _ in range(2)
    ]
    assert codes == [0, 0]
    promote = load_job("promote")
    assert (
        run_job(
            "promote",
            promote.main,
            argv=job_argv(root, config),
            add_arguments=promote.add_arguments,
            spark=spark,
        )
        == 0
    )
    tracking = f"sqlite:///{root}/mlflow/mlflow.db"
    client = mlflow.MlflowClient(tracking, tracking)
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id], order_by=["attribute.start_time ASC"])
    parents = [
        r
        for r in runs
        if r.data.tags.get("featurelake.kind") == "classification"
        and "mlflow.parentRunId" not in r.data.tags
    ]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return {
        "root": root,
        "config": config,
        "client": client,
        "parents": parents,
        "children": children,
        "tracking": tracking,
    }


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


def test_hash_split_ignores_row_order_and_partitioning(spark: SparkSession) -> None:
    df = spark.range(0, 500).withColumnRenamed("id", "key")
    one = df.coalesce(1).transform(with_hash_split, "key", 0.2, 3)
    many = df.repartition(7).orderBy(F.rand(1)).transform(with_hash_split, "key", 0.2, 3)
    assert_df_equality(one, many, ignore_row_order=True)
    share = one.filter("_split = 'test'").count() / 500
    assert 0.14 < share < 0.26


def test_balanced_weights_give_each_class_equal_total_weight() -> None:
    # 8 rows: 6 negatives, 2 positives -> 8 / (2 * 6) and 8 / (2 * 2)
    assert balanced_weights({0: 6, 1: 2}) == {0: 8 / 12, 1: 2.0}


def test_class_weight_column(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, 0), (2, 1), (3, None)], "id int, y int")
    out = df.transform(with_class_weight, "y", {0: 0.5, 1: 3.0})
    assert [r["_weight"] for r in out.orderBy("id").collect()] == [0.5, 3.0, 1.0]


def test_evaluate_binary_matches_sklearn_and_hand_counts(spark: SparkSession) -> None:
    rows = [
        (1, 0.9, 1.0),
        (1, 0.8, 1.0),
        (0, 0.7, 1.0),
        (1, 0.4, 0.0),
        (0, 0.3, 0.0),
        (0, 0.2, 0.0),
        (0, 0.6, 1.0),
        (1, 0.65, 1.0),
    ]
    schema = StructType(
        [
            StructField("y", IntegerType()),
            StructField("probability", VectorUDT()),
            StructField("prediction", DoubleType()),
        ]
    )
    df = spark.createDataFrame(
        [(y, Vectors.dense([1 - p, p]), pred) for y, p, pred in rows], schema
    )
    metrics = evaluate_binary(df, "y")
    expected_auc = roc_auc_score([r[0] for r in rows], [r[1] for r in rows])
    assert metrics.roc_auc == pytest.approx(expected_auc)
    # predicted 1: rows 1,2,3,7,8 -> tp 3 (1,2,8), fp 2 (3,7); predicted 0: fn 1 (4), tn 2
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (3, 2, 1, 2)
    assert metrics.precision == pytest.approx(3 / 5)
    assert metrics.recall == pytest.approx(3 / 4)
    assert metrics.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert metrics.accuracy == pytest.approx(5 / 8)
    assert metrics.roc_curve[0] == (1.0, 0.0, 0.0) and metrics.roc_curve[-1][1:] == (1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Jobs against a real sqlite MLflow
# --------------------------------------------------------------------------------------------


def test_bad_config_fails_before_any_training(spark: SparkSession, tmp_path: Path) -> None:
    tables = DeltaTables(spark)
    features, labels = client_rows(range(1, 21))
    tables.write(
        spark.createDataFrame(features, FEATURE_SCHEMA), f"{tmp_path}/gold/credit_features"
    )
    tables.write(spark.createDataFrame(labels, LABEL_SCHEMA), f"{tmp_path}/gold/credit_labels")
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump({**TINY_CONFIG, "numeric_features": ["limit_bal", "agee"]}), encoding="utf-8"
    )
    job = load_job("train-classifier")
    code = run_job(
        "train-classifier",
        job.main,
        argv=job_argv(tmp_path, config),
        add_arguments=job.add_arguments,
        spark=spark,
    )
    assert code == 2
    assert not (tmp_path / "mlflow").exists()  # MLflow was never touched: nothing trained


def test_one_nested_run_per_candidate_with_metrics_and_artifacts(trained: dict) -> None:
    parent = trained["parents"][0]
    children = [
        c for c in trained["children"] if c.data.tags["mlflow.parentRunId"] == parent.info.run_id
    ]
    assert [c.data.tags["featurelake.algorithm"] for c in children] == ["logistic_regression"]
    child = children[0]
    for name in (
        "roc_auc",
        "pr_auc",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "tp",
        "fp",
        "tn",
        "fn",
    ):
        assert f"test_{name}" in child.data.metrics
    artifacts = {a.path for a in trained["client"].list_artifacts(child.info.run_id)}
    assert {"roc_curve.png", "confusion_matrix.json", "roc_curve.json"} <= artifacts
    assert parent.data.tags["featurelake.best_algorithm"] == "logistic_regression"


def test_runs_record_table_versions_features_and_code_version(trained: dict) -> None:
    root = trained["root"]
    for run in (trained["parents"][0], trained["children"][0]):
        tags = run.data.tags
        assert tags["featurelake.features.path"] == str(root / "gold" / "credit_features")
        assert tags["featurelake.features.version"] == "0"
        assert tags["featurelake.labels.version"] == "0"
        assert tags["featurelake.feature_list"] == "limit_bal,age,age_bin"
        assert tags["featurelake.code_version"]


def test_challenger_is_a_spark_model_with_signature(trained: dict, spark: SparkSession) -> None:
    mlflow.set_tracking_uri(trained["tracking"])
    mlflow.set_registry_uri(trained["tracking"])
    # the second training's challenger, promoted: the alias moved from challenger to champion
    uri = "models:/tiny_credit@champion"
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.input_names() == ["limit_bal", "age", "age_bin"]
    assert "spark" in info.flavors
    model = mlflow.spark.load_model(uri)
    scored = model.transform(
        spark.createDataFrame([(999, 5000.0, 60, "unseen-bin")], FEATURE_SCHEMA)
    )
    row = scored.select("probability", "prediction").first()
    assert row["prediction"] in (0.0, 1.0) and len(row["probability"]) == 2


def test_same_table_version_and_seed_give_identical_metrics(trained: dict) -> None:
    first, second = trained["children"][0], trained["children"][1]
    assert first.data.metrics == second.data.metrics
    assert (
        trained["parents"][0].data.params["train_fingerprint"]
        == trained["parents"][1].data.params["train_fingerprint"]
    )


def test_promotion_decisions_are_logged(trained: dict, spark: SparkSession) -> None:
    client = trained["client"]
    # Two trainings registered versions 1 and 2; 2 was the challenger and there was no champion.
    assert str(client.get_model_version_by_alias("tiny_credit", "champion").version) == "2"
    tags = client.get_model_version("tiny_credit", "2").tags
    assert tags["promotion.decision"] == "promoted"
    # Version 1 is the same model: it cannot beat the champion by the 0.01 margin.
    client.set_registered_model_alias("tiny_credit", "challenger", "1")
    promote = load_job("promote")
    assert (
        run_job(
            "promote",
            promote.main,
            argv=job_argv(trained["root"], trained["config"]),
            add_arguments=promote.add_arguments,
            spark=spark,
        )
        == 0
    )
    assert str(client.get_model_version_by_alias("tiny_credit", "champion").version) == "2"
    rejected = client.get_model_version("tiny_credit", "1").tags
    assert rejected["promotion.decision"] == "rejected"
    assert "does not beat the champion" in rejected["promotion.reason"]
    log = DeltaTables(spark).read(f"{trained['root']}/ops/model_promotions")
    # decisions only; registrations and retirements are rows of their own
    log = log.filter(F.col("action").isin("promoted", "rejected"))
    decisions = [
        (r["challenger_version"], r["promoted"], r["champion_version"])
        for r in log.orderBy("decided_at", "challenger_version").collect()
    ]
    assert decisions == [("2", True, None), ("1", False, "2")]


def test_training_rows_rebuild_exactly_from_the_logged_delta_version(
    trained: dict, spark: SparkSession
) -> None:
    root, parent = trained["root"], trained["parents"][0]
    tables = DeltaTables(spark)
    more_features, more_labels = client_rows(range(241, 301))  # the table moves on: version 1
    tables.write(
        spark.createDataFrame(more_features, FEATURE_SCHEMA), f"{root}/gold/credit_features"
    )
    tables.write(spark.createDataFrame(more_labels, LABEL_SCHEMA), f"{root}/gold/credit_labels")

    def training_rows(version: int | None) -> tuple[int, str]:
        tags = parent.data.tags
        f = tables.read(tags["featurelake.features.path"], version=version)
        y = tables.read(tags["featurelake.labels.path"], version=version)
        f.join(y, "id").createOrReplaceTempView("rebuild_rows")
        # The split rule written out independently: bucket = xxhash64(id as text, seed) mod 10000;
        # the first 25% of buckets are held out.
        row = spark.sql(
            "SELECT count(*) AS n, sum(cast(pmod(xxhash64(id, limit_bal, age, age_bin, "
            "default_next_month), 2147483647) AS bigint)) AS fp FROM rebuild_rows "
            "WHERE pmod(xxhash64(cast(id AS string), 7), 10000) >= 2500"
        ).first()
        return int(row["n"]), str(row["fp"])

    logged_version = int(parent.data.tags["featurelake.features.version"])
    assert training_rows(logged_version) == (
        int(parent.data.params["train_rows"]),
        parent.data.params["train_fingerprint"],
    )
    assert training_rows(None)[0] > int(parent.data.params["train_rows"])


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


def silver_credit_clients(spark: SparkSession, csv: Path):
    """The UCI file typed as silver/credit_clients (docs/CONTRACTS.md), for the gold functions.

    Like silver, rows whose values do not parse (two clients have AGE "nan") are left out -
    silver quarantines them.
    """
    raw = spark.read.option("header", True).option("inferSchema", False).csv(str(csv))
    raw = raw.select(
        *[F.col(f"`{c}`").try_cast("double").alias(c.replace(".", "_")) for c in raw.columns]
    )
    raw = raw.dropna()
    month = {1: "PAY_0", 2: "PAY_2", 3: "PAY_3", 4: "PAY_4", 5: "PAY_5", 6: "PAY_6"}
    education = F.col("EDUCATION").cast("int")
    marriage = F.col("MARRIAGE").cast("int")
    return raw.select(
        F.col("ID").cast("long").alias("id"),
        F.col("LIMIT_BAL").cast("double").alias("limit_bal"),
        F.col("SEX").cast("int").alias("sex"),
        F.when(education.isin(0, 5, 6), 4).otherwise(education).alias("education"),
        F.when(marriage == 0, 3).otherwise(marriage).alias("marriage"),
        F.col("AGE").cast("int").alias("age"),
        *[F.col(month[k]).cast("int").alias(f"pay_status_{k}") for k in range(1, 7)],
        *[F.col(f"BILL_AMT{k}").cast("double").alias(f"bill_amt_{k}") for k in range(1, 7)],
        *[F.col(f"PAY_AMT{k}").cast("double").alias(f"pay_amt_{k}") for k in range(1, 7)],
        F.col("default_payment_next_month").cast("int").alias("default_next_month"),
    )


@pytest.mark.realdata
@pytest.mark.slow  # the full 30k-client search; opt-in: ./test.sh -m slow
def test_credit_default_champion_reaches_published_auc(
    spark: SparkSession, shared_data: Path, tmp_path: Path
) -> None:
    from featurelake.lakehouse.gold import build_credit_gold, load_gold_config

    gold_config = load_gold_config(PROJECT / "conf" / "features_gold.yaml")
    clients = silver_credit_clients(spark, shared_data / "uci_credit_card.csv.gz")
    features, labels = build_credit_gold(clients, gold_config.credit)
    tables = DeltaTables(spark)
    tables.write(features, f"{tmp_path}/gold/credit_features")
    tables.write(labels, f"{tmp_path}/gold/credit_labels")
    config = PROJECT / "conf" / "models" / "credit_default.yaml"
    for name in ("train-classifier", "promote"):
        job = load_job(name)
        assert (
            run_job(
                name,
                job.main,
                argv=job_argv(tmp_path, config),
                add_arguments=job.add_arguments,
                spark=spark,
            )
            == 0
        )
    tracking = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    client = mlflow.MlflowClient(tracking, tracking)
    champion = client.get_model_version_by_alias("credit_default", "champion")
    parent = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id],
        "tags.`featurelake.kind` = 'classification'",
    )[0]
    candidates = json.loads(
        Path(
            client.download_artifacts(parent.info.run_id, "candidates.json", str(tmp_path))
        ).read_text()
    )["candidates"]
    for c in candidates:
        print(
            json.dumps(
                {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in c.items()
                    if k not in ("model_uri",)
                }
            )
        )
    champion_auc = float(
        client.get_model_version("credit_default", champion.version).tags["promotion.roc_auc"]
    )
    print(f"champion version {champion.version}: held-out ROC AUC {champion_auc:.4f}")
    assert champion_auc >= 0.76
