"""Retraining: the ``retraining`` config section, the trigger rules, bad configs stopping early."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from featurelake.core.config import ConfigError
from featurelake.core.runner import execute_job
from featurelake.core.validation import validate_configuration
from featurelake.delta import DeltaTables
from featurelake.jobs import load_job
from featurelake.ml.config import (
    DriftTrigger,
    NewDataTrigger,
    PerformanceTrigger,
    ScheduleTrigger,
    load_model_config,
)
from featurelake.ml.retraining import (
    BatchScore,
    TriggerOutcome,
    check_drift,
    check_new_data,
    check_performance,
    check_schedule,
    decide,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def classifier(**overrides: object) -> dict:
    config = {
        "kind": "classification",
        "name": "m",
        "features": {"table": "gold/credit_features", "key": "id"},
        "labels": {"table": "gold/credit_labels", "key": "id"},
        "label": "default_next_month",
        "numeric_features": ["limit_bal", "age"],
        "categorical_features": ["education"],
        "algorithms": {
            "logistic_regression": {"params": {"maxIter": 5}, "grid": {"regParam": [0.0]}}
        },
        "promotion": {"metric": "roc_auc", "min_metric": 0.7},
        "retraining": {"triggers": {"schedule": {"max_age": "30d"}}},
    }
    config.update(overrides)
    return config


def write(folder: Path, data: dict, name: str = "model.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The retraining section: bad configurations name the file and the key
# --------------------------------------------------------------------------------------------


def test_shipped_credit_model_declares_every_trigger() -> None:
    config = load_model_config(CONF / "models" / "credit_default.yaml")
    triggers = config.retraining.triggers
    assert triggers.drift and triggers.performance and triggers.schedule and triggers.new_data
    assert triggers.schedule.max_age == timedelta(days=30)


def test_unknown_trigger_names_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        classifier(retraining={"triggers": {"accuracy_drop": {"max_relative_drop": 0.1}}}),
    )
    with pytest.raises(ConfigError) as caught:
        load_model_config(path)
    assert caught.value.source == str(path)
    assert caught.value.key == "retraining.triggers.accuracy_drop"
    assert "(allowed: drift, new_data, performance, schedule)" in str(caught.value)


@pytest.mark.parametrize(
    ("triggers", "key"),
    [
        ({"performance": {"max_relative_drop": 1.5}}, "retraining.triggers.performance"),
        ({"drift": {"threshold": -0.1}}, "retraining.triggers.drift.threshold"),
        ({"drift": {"metric": "js", "threshold": 2.0}}, "retraining.triggers.drift"),
        ({"new_data": {"min_fraction": 0}}, "retraining.triggers.new_data.min_fraction"),
        ({"schedule": {"max_age": "-3d"}}, "retraining.triggers.schedule.max_age"),
    ],
)
def test_threshold_out_of_range_names_file_and_key(
    tmp_path: Path, triggers: dict, key: str
) -> None:
    path = write(tmp_path, classifier(retraining={"triggers": triggers}))
    with pytest.raises(ConfigError) as caught:
        load_model_config(path)
    assert caught.value.source == str(path)
    assert caught.value.key.startswith(key)


def test_a_retraining_section_without_triggers_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(retraining={"triggers": {}}))
    with pytest.raises(ConfigError, match="declare at least one trigger"):
        load_model_config(path)


def _conf_with(tmp_path: Path, model: dict) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    for extra in (conf / "models").glob("*.yaml"):
        extra.unlink()
    (conf / "monitoring.yaml").unlink()
    write(conf / "models", model, "credit_default.yaml")
    return conf


def test_a_watched_feature_not_in_the_table_stops_the_configuration_check(
    tmp_path: Path,
) -> None:
    model = classifier(
        retraining={"triggers": {"drift": {"threshold": 0.2, "features": ["age", "agee"]}}}
    )
    conf = _conf_with(tmp_path, model)
    with pytest.raises(ConfigError) as caught:
        validate_configuration(conf, None, [f"lakehouse.root={tmp_path / 'lake'}"])
    assert caught.value.source == str(conf / "models" / "credit_default.yaml")
    assert caught.value.key == "retraining.triggers.drift.features[1]"
    assert "gold/credit_features has no column 'agee'" in str(caught.value)


def test_a_watched_column_that_is_not_a_model_feature_is_an_error(tmp_path: Path) -> None:
    model = classifier(selection={"univariate": {"min_score": 0.01}, "keep": ["marriage"]})
    conf = _conf_with(tmp_path, model)
    with pytest.raises(ConfigError) as caught:
        validate_configuration(conf, None, [f"lakehouse.root={tmp_path / 'lake'}"])
    assert caught.value.key == "selection.keep[0]"
    assert "not one of this model's features" in str(caught.value)


@pytest.mark.parametrize(
    ("retraining", "key"),
    [
        ({"triggers": {"drift_of_doom": {"threshold": 0.2}}}, "retraining.triggers.drift_of_doom"),
        ({"triggers": {"performance": {"max_relative_drop": 2}}}, "retraining.triggers"),
        (
            {"triggers": {"drift": {"threshold": 0.2, "features": ["limit_ball"]}}},
            "retraining.triggers.drift.features[0]",
        ),
    ],
)
def test_retrain_check_with_a_bad_config_stops_before_training(
    spark, tmp_path: Path, retraining: dict, key: str
) -> None:
    conf = _conf_with(tmp_path, classifier(retraining=retraining))
    root = tmp_path / "lake"
    job = load_job("retrain-check")
    outcome = execute_job(
        "retrain-check",
        job.main,
        ["--conf-dir", str(conf), "--conf", f"lakehouse.root={root}"],
        job.add_arguments,
        spark,
    )
    assert outcome.code == 2
    assert f"{conf / 'models' / 'credit_default.yaml'}: {key}" in outcome.summary["error"]
    assert not (root / "mlflow").exists()  # MLflow never touched: nothing trained
    assert not (root / "ops" / "retraining_decisions").exists()


def test_an_explicit_config_naming_a_feature_missing_from_the_table_stops_the_job(
    spark, tmp_path: Path
) -> None:
    # A file outside conf/models is checked against the table's schema, before MLflow.
    root = tmp_path / "lake"
    tables = DeltaTables(spark)
    tables.write(
        spark.createDataFrame(
            [(1, 1.0, 30, 2)], "id long, limit_bal double, age int, education int"
        ),
        str(root / "gold" / "credit_features"),
    )
    tables.write(
        spark.createDataFrame([(1, 0)], "id long, default_next_month int"),
        str(root / "gold" / "credit_labels"),
    )
    model = classifier(
        retraining={"triggers": {"drift": {"threshold": 0.2, "features": ["utilization_9"]}}}
    )
    path = write(tmp_path, model)
    job = load_job("retrain-check")
    outcome = execute_job(
        "retrain-check",
        job.main,
        ["--conf", f"lakehouse.root={root}", "--model-config", str(path)],
        job.add_arguments,
        spark,
    )
    assert outcome.code == 2
    assert f"{path}: retraining.triggers.drift.features[0]" in outcome.summary["error"]
    assert "has no column 'utilization_9'" in outcome.summary["error"]
    assert not (root / "mlflow").exists()  # MLflow never touched: nothing trained
    assert not (root / "ops" / "retraining_decisions").exists()


# --------------------------------------------------------------------------------------------
# Trigger rules (plain Python, hand-worked values)
# --------------------------------------------------------------------------------------------


def test_drift_fires_on_a_watched_feature_only() -> None:
    spec = DriftTrigger(threshold=0.25)
    values = {"limit_bal": 0.31, "age": 0.02, "sex": 0.9}
    fired = check_drift(values, ["limit_bal", "age"], spec, watched_how="top 2", reference="v1")
    assert fired.fired and fired.value == 0.31 and "limit_bal" in fired.reason
    # sex drifted more, but it is not watched
    quiet = check_drift(values, ["age"], spec, watched_how="top 1", reference="v1")
    assert not quiet.fired and quiet.value == 0.02


def test_drift_without_measurements_does_not_fire_and_says_so() -> None:
    outcome = check_drift({}, ["age"], DriftTrigger(threshold=0.2), watched_how="x", reference="v")
    assert not outcome.fired and "monitor job" in outcome.reason


def test_performance_fires_on_the_relative_drop_of_the_latest_batches() -> None:
    spec = PerformanceTrigger(max_relative_drop=0.1, batches=2)
    batches = [
        BatchScore("old", 0.50, T0),  # not among the latest two
        BatchScore("b2", 0.72, T0 + timedelta(days=1)),
        BatchScore("b3", 0.68, T0 + timedelta(days=2)),
    ]
    # mean of the latest two = 0.70; (0.80 - 0.70) / 0.80 = 0.125 >= 0.1
    outcome = check_performance(batches, 0.80, "roc_auc", spec, champion_version="1")
    assert outcome.fired and outcome.value == pytest.approx(0.125)
    # (0.75 - 0.70) / 0.75 = 0.0667 < 0.1
    holds = check_performance(batches, 0.75, "roc_auc", spec, champion_version="1")
    assert not holds.fired and holds.value == pytest.approx(0.05 / 0.75)


def test_performance_needs_enough_batches() -> None:
    spec = PerformanceTrigger(max_relative_drop=0.1, batches=2)
    outcome = check_performance(
        [BatchScore("b", 0.1, T0)], 0.8, "roc_auc", spec, champion_version="3"
    )
    assert not outcome.fired and "2 needed" in outcome.reason


def test_schedule_fires_at_max_age() -> None:
    spec = ScheduleTrigger(max_age="30d")
    assert check_schedule(T0, T0 + timedelta(days=30), spec).fired
    young = check_schedule(T0, T0 + timedelta(days=29, hours=12), spec)
    assert not young.fired and young.value == pytest.approx(29.5)


def test_new_data_fires_on_rows_or_fraction() -> None:
    both = NewDataTrigger(min_rows=500, min_fraction=0.5)
    # 400 rows: fewer than 500, but 400 >= 0.5 * 600
    assert check_new_data(400, 600, both, since="v").fired
    # 400 rows: fewer than 500 and than 0.5 * 1000
    quiet = check_new_data(400, 1000, both, since="v")
    assert not quiet.fired and "fewer than min_rows 500 and min_fraction 0.5" in quiet.reason


def test_decide_retrains_when_any_trigger_fires() -> None:
    keep = [TriggerOutcome("schedule", False, "young"), TriggerOutcome("drift", False, "calm")]
    assert decide(keep) == (False, "no trigger fired: schedule: young; drift: calm")
    retrain, reason = decide([*keep, TriggerOutcome("performance", True, "dropped")])
    assert retrain and reason == "performance: dropped"
