"""The score job: same features as gold, same predictions as a direct transform, idempotent."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import mlflow
import pytest
from chispa import assert_df_equality
from featurelake.core.runner import execute_job
from featurelake.delta import DeltaTables
from featurelake.lakehouse.gold import GOLD_CONFIG_FILE, build_credit_gold, load_gold_config
from featurelake.ml.scoring import MissingColumnsError
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
FEATURES = ["limit_bal", "age", "bill_trend", "avg_utilization", "worst_delay"]


def _silver_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {
            "id": i + 1,
            "limit_bal": 10000.0 * (1 + i % 7),
            "sex": 1 + i % 2,
            "education": 1 + i % 4,
            "marriage": 1 + i % 3,
            "age": 22 + (i * 3) % 40,
            "default_next_month": int(i % 5 == 0),
        }
        for k in range(1, 7):
            row[f"pay_status_{k}"] = (i + k) % 4 - 1
            row[f"bill_amt_{k}"] = float(1000 * ((i + k) % 9) - 500 * (k == 3))
            row[f"pay_amt_{k}"] = float(100 * ((i * k) % 5))
        rows.append(row)
    return rows


def _silver_frame(spark, n: int = 60):
    from featurelake.lakehouse.feature_library.credit import build_credit_features  # noqa: F401 (contract)

    columns = [
        "id",
        "limit_bal",
        "sex",
        "education",
        "marriage",
        "age",
        *[f"pay_status_{k}" for k in range(1, 7)],
        *[f"bill_amt_{k}" for k in range(1, 7)],
        *[f"pay_amt_{k}" for k in range(1, 7)],
        "default_next_month",
    ]
    types = {
        "id": "long",
        "limit_bal": "double",
        "default_next_month": "int",
        **{c: "int" for c in ["sex", "education", "marriage", "age"]},
        **{f"pay_status_{k}": "int" for k in range(1, 7)},
        **{f"bill_amt_{k}": "double" for k in range(1, 7)},
        **{f"pay_amt_{k}": "double" for k in range(1, 7)},
    }
    schema = ", ".join(f"{c} {types[c]}" for c in columns)
    return spark.createDataFrame([[r[c] for c in columns] for r in _silver_rows(n)], schema)


@pytest.fixture(scope="module")
def scored_lake(spark, tmp_path_factory):
    """silver + gold credit tables and a registered Spark model at @champion."""
    lake = tmp_path_factory.mktemp("score-lake")
    tables = DeltaTables(spark)
    silver = _silver_frame(spark)
    tables.write(silver, str(lake / "silver" / "credit_clients"))
    features, labels = build_credit_gold(silver, load_gold_config(CONF / GOLD_CONFIG_FILE).credit)
    tables.write(features, str(lake / "gold" / "credit_features"))
    tables.write(labels, str(lake / "gold" / "credit_labels"))
    training = features.join(labels, "id").withColumn(
        "label", F.col("default_next_month").cast("double")
    )
    model = Pipeline(
        stages=[
            VectorAssembler(inputCols=FEATURES, outputCol="features", handleInvalid="keep"),
            LogisticRegression(regParam=0.1),
        ]
    ).fit(training)
    from featurelake.core.config import MlflowSettings
    from featurelake.ml.tracking import configure_tracking

    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{lake}/mlflow/mlflow.db",
            artifact_location=str(lake / "mlflow" / "artifacts"),
        )
    )
    from mlflow.models import infer_signature

    example = features.select(*FEATURES).limit(3).toPandas()
    with mlflow.start_run():
        mlflow.set_tag("featurelake.kind", "classification")
        mlflow.spark.log_model(
            model,
            artifact_path="model",
            signature=infer_signature(example),
            input_example=example,
            registered_model_name="score_test",
            pip_requirements=["pyspark"],
        )
    mlflow.MlflowClient().set_registered_model_alias("score_test", "champion", "1")
    return lake, model, features


def _score(spark, lake, *args):
    argv = [
        "--conf-dir",
        str(CONF),
        "--conf",
        f"lakehouse.root={lake}",
        "--model",
        "models:/score_test@champion",
        "--scoring-date",
        "2024-03-01",
        *args,
    ]
    from jobs_loader import load

    module = load("score")
    return execute_job("score", module.main, argv, module.add_arguments, spark)


def test_features_on_the_scoring_path_equal_the_gold_features(spark, scored_lake):
    lake, _, gold = scored_lake
    from featurelake.core.config import load_settings
    from featurelake.core.runner import JobContext
    from featurelake.ml.batch import ScoreOptions, build_features_for

    settings = load_settings(CONF, "local", [f"lakehouse.root={lake}"])
    ctx = JobContext(job="t", run_id="r", settings=settings, spark=spark, tables=DeltaTables(spark))
    from datetime import datetime, timezone

    built, _, _ = build_features_for(
        ctx,
        "gold/credit_features",
        ScoreOptions(model_uri="x", input="silver/credit_clients"),
        datetime.now(timezone.utc),
    )
    assert_df_equality(built, gold, ignore_row_order=True, ignore_nullable=True)


def test_predictions_equal_a_direct_transform_of_gold(spark, scored_lake):
    lake, model, gold = scored_lake
    outcome = _score(spark, lake, "--input", "silver/credit_clients")
    assert outcome.code == 0, outcome.summary
    predictions = DeltaTables(spark).read(str(lake / "predictions" / "score_test"))
    from pyspark.ml.functions import vector_to_array

    direct = (
        mlflow.spark.load_model("models:/score_test/1")
        .transform(gold)
        .select("id", "prediction", vector_to_array("probability")[1].alias("probability"))
    )
    assert_df_equality(
        predictions.select("id", "prediction", "probability"),
        direct,
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )
    row = predictions.first()
    assert (row["model_name"], row["model_version"]) == ("score_test", "1")
    assert row["scoring_date"] == date(2024, 3, 1)


def test_rerunning_the_same_batch_replaces_its_rows(spark, scored_lake):
    lake, *_ = scored_lake
    assert _score(spark, lake, "--input", "gold/credit_features").code == 0
    path = str(lake / "predictions" / "score_test")
    first = DeltaTables(spark).read(path).count()
    assert _score(spark, lake, "--input", "gold/credit_features").code == 0
    assert DeltaTables(spark).read(path).count() == first


def test_rows_whose_features_cannot_be_computed_go_to_quarantine(spark, scored_lake):
    lake, _, gold = scored_lake
    broken = gold.withColumn("age", F.when(F.col("id") == 3, F.lit(None)).otherwise(F.col("age")))
    DeltaTables(spark).write(broken, str(lake / "gold" / "credit_broken"))
    outcome = _score(spark, lake, "--input", "gold/credit_broken", "--output", "predictions/broken")
    assert outcome.code == 0, outcome.summary
    quarantine = DeltaTables(spark).read(str(lake / "predictions" / "broken_quarantine"))
    assert [(r["key"], r["_failed_rules"]) for r in quarantine.collect()] == [
        ("3", ["null_feature:age"])
    ]
    scored = DeltaTables(spark).read(str(lake / "predictions" / "broken"))
    assert scored.count() == gold.count() - 1


def test_missing_input_columns_are_named(spark, scored_lake):
    lake, _, gold = scored_lake
    DeltaTables(spark).write(gold.drop("bill_trend", "age"), str(lake / "gold" / "credit_thin"))
    outcome = _score(spark, lake, "--input", "gold/credit_thin", "--output", "predictions/thin")
    assert outcome.code == 2
    assert isinstance(outcome.error, MissingColumnsError)
    assert "missing columns ['age', 'bill_trend']" in str(outcome.error)


def test_raw_files_are_scored_through_the_bronze_silver_and_gold_code(spark, scored_lake, tmp_path):
    lake, model, gold = scored_lake
    header = [
        "ID",
        "LIMIT_BAL",
        "SEX",
        "EDUCATION",
        "MARRIAGE",
        "AGE",
        "PAY_0",
        *[f"PAY_{k}" for k in range(2, 7)],
        *[f"BILL_AMT{k}" for k in range(1, 7)],
        *[f"PAY_AMT{k}" for k in range(1, 7)],
        "default.payment.next.month",
    ]
    lines = [",".join(header)]
    for r in _silver_rows(60):
        values = [
            r["id"],
            r["limit_bal"],
            r["sex"],
            r["education"],
            r["marriage"],
            r["age"],
            *[r[f"pay_status_{k}"] for k in range(1, 7)],
            *[r[f"bill_amt_{k}"] for k in range(1, 7)],
            *[r[f"pay_amt_{k}"] for k in range(1, 7)],
            r["default_next_month"],
        ]
        lines.append(",".join(str(v) for v in values))
    raw = tmp_path / "clients.csv"
    raw.write_text("\n".join(lines) + "\n")
    outcome = _score(
        spark,
        lake,
        "--input",
        str(raw),
        "--source",
        "credit_clients",
        "--output",
        "predictions/from_raw",
    )
    assert outcome.code == 0, outcome.summary
    from_raw = DeltaTables(spark).read(str(lake / "predictions" / "from_raw"))
    direct = model.transform(gold).select("id", "prediction")
    assert_df_equality(
        from_raw.select("id", "prediction"),
        direct,
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )
