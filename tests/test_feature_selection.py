"""Feature importance and selection: hand-worked decisions, Spark statistics, a trained model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import mlflow
import pytest
from featurelake.core.config import MlflowSettings
from featurelake.ml.classification import prepare_training_frame, train_classifier
from featurelake.ml.config import ClassificationConfig
from featurelake.ml.importance import (
    IMPORTANCE_ARTIFACT,
    aggregate_importances,
    read_importances,
    slot_feature,
)
from featurelake.ml.selection import (
    choose_important,
    choose_uncorrelated,
    choose_univariate,
    cramers_v,
    select_features,
)
from featurelake.ml.tracking import configure_tracking
from pyspark.sql import functions as F

# --------------------------------------------------------------------------------------------
# Importances per feature
# --------------------------------------------------------------------------------------------


def test_one_hot_slots_sum_into_their_feature() -> None:
    slots = ["limit_bal__imputed", "age_bin__onehot_20-34", "age_bin__onehot_35+", "age__imputed"]
    importances = aggregate_importances(
        [0.5, -0.2, 0.1, 0.2], slots, ["limit_bal", "age", "age_bin"], "standardized_coefficient"
    )
    # |0.5| ; |-0.2| + |0.1| = 0.3 ; |0.2| - of a total of 1.0
    assert [(i.feature, round(i.importance, 6), round(i.share, 6)) for i in importances] == [
        ("limit_bal", 0.5, 0.5),
        ("age_bin", 0.3, 0.3),
        ("age", 0.2, 0.2),
    ]


def test_a_slot_belongs_to_the_longest_matching_feature() -> None:
    assert slot_feature("pay_status_1__imputed", ["pay_status_1", "pay_status_10"]) == (
        "pay_status_1"
    )
    assert slot_feature("pay_status_10__imputed", ["pay_status_1", "pay_status_10"]) == (
        "pay_status_10"
    )
    with pytest.raises(ValueError, match="belongs to none"):
        slot_feature("other__imputed", ["pay_status_1"])


# --------------------------------------------------------------------------------------------
# Selection decisions (plain Python, hand-worked)
# --------------------------------------------------------------------------------------------


def test_cramers_v_of_a_two_by_two_table() -> None:
    # a: 40 rows, 30 positive; b: 60 rows, 10 positive. p = 0.4.
    # chi2 / n = (40 * (0.75 - 0.4)^2 + 60 * (1/6 - 0.4)^2) / (100 * 0.4 * 0.6) = 8.1667 / 24
    expected = math.sqrt((40 * 0.35**2 + 60 * (1 / 6 - 0.4) ** 2) / 24)
    assert cramers_v({"a": (40, 30), "b": (60, 10)}) == pytest.approx(expected)
    assert cramers_v({"a": (40, 0), "b": (60, 0)}) == 0.0  # one label value


def test_univariate_drops_weak_features_then_keeps_the_best_n() -> None:
    scores = {"a": 0.30, "b": 0.005, "c": 0.20, "d": 0.25, "e": 0.001}
    kept, dropped = choose_univariate(["a", "b", "c", "d", "e"], scores, ["e"], 0.01, 2)
    # b is below min_score; e is kept whatever its score and takes one of the two places;
    # of a, c, d the best one is a
    assert kept == ["a", "e"]
    assert set(dropped) == {"b", "c", "d"}
    assert dropped["d"].startswith("univariate rank 3 (score 0.2500)")


def test_correlation_drops_the_weaker_of_each_redundant_pair() -> None:
    scores = {"bill_1": 0.02, "bill_2": 0.01, "bill_3": 0.03, "age": 0.05}
    correlations = {
        ("bill_1", "bill_2"): 0.97,
        ("bill_1", "bill_3"): 0.93,
        ("bill_2", "bill_3"): 0.95,
        ("age", "bill_1"): 0.10,
    }
    kept, dropped = choose_uncorrelated(
        ["age", "bill_1", "bill_2", "bill_3"], correlations, scores, [], 0.9
    )
    # 0.97: bill_2 (0.01) goes; 0.95 involves bill_2, already gone; 0.93: bill_1 (0.02 < 0.03)
    assert kept == ["age", "bill_3"]
    assert dropped["bill_2"].startswith("|r| = 0.9700 > max_abs 0.9000 with bill_1")
    assert "with bill_3" in dropped["bill_1"]


def test_correlation_never_drops_a_kept_feature() -> None:
    kept, dropped = choose_uncorrelated(
        ["x", "y"], {("x", "y"): -0.99}, {"x": 0.5, "y": 0.1}, ["y"], 0.9
    )
    assert kept == ["y"] and "x" in dropped


def test_importance_threshold() -> None:
    kept, dropped = choose_important(["a", "b", "c"], {"a": 0.7, "b": 0.004}, ["c"], 0.01)
    assert kept == ["a", "c"] and list(dropped) == ["b"]


# --------------------------------------------------------------------------------------------
# Selection on Spark, and the selected list in the trained model
# --------------------------------------------------------------------------------------------


def _config(**selection: object) -> ClassificationConfig:
    return ClassificationConfig.model_validate(
        {
            "kind": "classification",
            "name": "selected",
            "features": {"table": "gold/credit_features", "key": "id"},
            "labels": {"table": "gold/credit_labels", "key": "id"},
            "label": "y",
            "numeric_features": ["signal", "signal_copy", "noise"],
            "categorical_features": ["group", "flat"],
            "split": {"test_fraction": 0.25, "seed": 5},
            "search": {"method": "train_validation_split"},
            "algorithms": {
                "logistic_regression": {"params": {"maxIter": 10}, "grid": {"regParam": [0.01]}}
            },
            "promotion": {"metric": "roc_auc", "min_metric": 0.5},
            "selection": selection,
        }
    )


def _frames(spark):
    # y = 1 when signal > 0.5; signal_copy = 2 * signal + 1 (|r| = 1); noise and flat carry
    # nothing; group follows y for 90% of the rows.
    base = spark.range(0, 600).select(
        F.col("id"),
        ((F.col("id") * 37 % 600) / 600.0).alias("signal"),
        ((F.col("id") * 11 % 7) / 7.0).alias("noise"),
    )
    features = base.select(
        "id",
        "signal",
        (F.col("signal") * 2 + 1).alias("signal_copy"),
        "noise",
        F.when((F.col("signal") > 0.5) != (F.col("id") % 10 == 0), "hi")
        .otherwise("lo")
        .alias("group"),
        F.lit("same").alias("flat"),
    )
    labels = base.select("id", (F.col("signal") > 0.5).cast("int").alias("y"))
    return features, labels


def test_selection_on_training_rows_drops_noise_and_the_redundant_copy(spark) -> None:
    features, labels = _frames(spark)
    config = _config(univariate={"min_score": 0.05}, correlation={"max_abs": 0.95})
    train = prepare_training_frame(features, labels, config).filter("_split = 'train'")
    result = select_features(config, train)
    assert result.selected == ["signal", "group"]
    assert result.dropped["noise"].startswith("univariate score")
    assert result.dropped["flat"].startswith("univariate score 0.0000")
    # the copy scores exactly as the original (|r| is unchanged by 2x + 1): the later one goes
    assert result.dropped["signal_copy"].startswith("|r| = 1.0000")
    assert result.steps == ["univariate", "correlation"]


def test_importance_step_keeps_what_the_forest_uses(spark) -> None:
    features, labels = _frames(spark)
    config = _config(importance={"min_importance": 0.05, "num_trees": 10, "max_depth": 3})
    train = prepare_training_frame(features, labels, config).filter("_split = 'train'")
    result = select_features(config, train)
    assert "noise" in result.dropped and "flat" in result.dropped
    assert sum(result.importances.values()) == pytest.approx(1.0)


def test_the_model_takes_the_selected_features_and_logs_list_and_importances(
    spark, tmp_path: Path
) -> None:
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    target = configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
            artifact_location=str(tmp_path / "artifacts"),
            experiment="selection-tests",
        )
    )
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    features, labels = _frames(spark)
    config = _config(univariate={"min_score": 0.05}, correlation={"max_abs": 0.95})
    result = train_classifier(config, prepare_training_frame(features, labels, config))
    assert result.features == ["signal", "group"]
    best = result.best
    info = mlflow.models.get_model_info(best.model_uri)
    # scoring reads its input columns from the signature: the selected ones
    assert info.signature.inputs.input_names() == ["signal", "group"]
    chosen = json.loads(
        Path(
            client.download_artifacts(result.parent_run_id, "feature_selection.json", tmp_path)
        ).read_text()
    )
    assert chosen["selected"] == ["signal", "group"] and "noise" in chosen["dropped"]
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["featurelake.selected_features"] == "signal,group"
    artifacts = {a.path for a in client.list_artifacts(best.run_id)}
    assert {IMPORTANCE_ARTIFACT, "feature_importance.png"} <= artifacts
    logged = read_importances(client, best.run_id)
    assert [i.feature for i in logged] == [i.feature for i in best.importances]
    assert logged[0].feature == "signal" and logged[0].kind == "standardized_coefficient"
    # a row whose dropped feature is null is still scored: the model never reads it
    model = mlflow.spark.load_model(best.model_uri)
    row = spark.createDataFrame(
        [(1, 0.9, None, None, "hi", None)],
        "id long, signal double, signal_copy double, noise double, group string, flat string",
    )
    assert model.transform(row).select("prediction").first()[0] in (0.0, 1.0)
