"""Model configurations: parsed, checked against table schemas, rejected before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from featurelake.core.config import ConfigError
from featurelake.ml.config import (
    ClassificationConfig,
    SegmentationConfig,
    check_columns,
    find_model_configs,
    load_model_config,
)
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

FEATURES = StructType(
    [
        StructField("id", LongType()),
        StructField("limit_bal", DoubleType()),
        StructField("age", IntegerType()),
        StructField("age_bin", StringType()),
    ]
)
LABELS = StructType(
    [StructField("id", LongType()), StructField("default_next_month", IntegerType())]
)
CUSTOMERS = StructType(
    [
        StructField("customer_id", StringType()),
        StructField("as_of_ts", TimestampType()),
        StructField("recency_days", IntegerType()),
        StructField("monetary", DoubleType()),
    ]
)


def classifier(**overrides: object) -> dict:
    config = {
        "kind": "classification",
        "name": "m",
        "features": {"table": "gold/credit_features", "key": "id"},
        "labels": {"table": "gold/credit_labels", "key": "id"},
        "label": "default_next_month",
        "numeric_features": ["limit_bal", "age"],
        "categorical_features": ["age_bin"],
        "algorithms": {
            "logistic_regression": {"params": {"maxIter": 5}, "grid": {"regParam": [0.0, 0.1]}}
        },
        "promotion": {"metric": "roc_auc", "min_metric": 0.7},
    }
    config.update(overrides)
    return config


def segmenter(**overrides: object) -> dict:
    config = {
        "kind": "segmentation",
        "name": "s",
        "features": {"table": "gold/customer_features", "key": "customer_id"},
        "as_of_column": "as_of_ts",
        "feature_columns": ["recency_days", "monetary"],
        "k": {"min": 2, "max": 4},
        "output": "gold/customer_segments",
        "naming": {"rules": [{"name": "high-value", "above": {"monetary": 2.0}}]},
        "promotion": {"metric": "silhouette", "min_metric": 0.1},
    }
    config.update(overrides)
    return config


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_shipped_configs_are_valid() -> None:
    found = find_model_configs(PROJECT / "conf" / "models", None, ClassificationConfig)
    segs = find_model_configs(PROJECT / "conf" / "models", None, SegmentationConfig)
    assert [c.name for _, c in found] == ["credit_default"]
    assert [c.name for _, c in segs] == ["customer_segments"]


def test_valid_classifier_passes_schema_check(tmp_path: Path) -> None:
    path = write(tmp_path, classifier())
    config = load_model_config(path)
    check_columns(config, str(path), {"features": FEATURES, "labels": LABELS})
    assert config.feature_columns == ["limit_bal", "age", "age_bin"]


def test_unknown_feature_column_names_file_key_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(numeric_features=["limit_bal", "agee"]))
    config = load_model_config(path)
    with pytest.raises(ConfigError) as info:
        check_columns(config, str(path), {"features": FEATURES, "labels": LABELS})
    message = str(info.value)
    assert str(path) in message
    assert "numeric_features[1]" in message
    assert "'agee'" in message and "gold/credit_features" in message


def test_label_missing_from_label_table_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(label="defaulted"))
    config = load_model_config(path)
    with pytest.raises(
        ConfigError, match=r"label: unknown column 'defaulted' in gold/credit_labels"
    ):
        check_columns(config, str(path), {"features": FEATURES, "labels": LABELS})


def test_missing_label_key_is_an_error(tmp_path: Path) -> None:
    data = classifier()
    del data["label"]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"model\.yaml: label: missing required key") as info:
        load_model_config(path)
    assert str(path) in str(info.value)


def test_empty_grid_values_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(algorithms={"gbt": {"grid": {"maxDepth": []}}}))
    with pytest.raises(ConfigError, match=r"algorithms\.gbt\.grid\.maxDepth"):
        load_model_config(path)


def test_empty_grid_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(algorithms={"gbt": {"grid": {}}}))
    with pytest.raises(ConfigError, match=r"algorithms\.gbt\.grid"):
        load_model_config(path)


def test_no_algorithm_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(algorithms={}))
    with pytest.raises(ConfigError, match=r"algorithms"):
        load_model_config(path)


def test_unknown_estimator_parameter_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(algorithms={"random_forest": {"grid": {"numTree": [10]}}}))
    with pytest.raises(
        ConfigError,
        match=r"algorithms\.random_forest\.grid\.numTree: not a "
        r"parameter of RandomForestClassifier",
    ):
        load_model_config(path)


def test_string_feature_declared_numeric_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, classifier(numeric_features=["age_bin"], categorical_features=[]))
    config = load_model_config(path)
    with pytest.raises(ConfigError, match=r"numeric_features\[0\].*is string, expected numeric"):
        check_columns(config, str(path), {"features": FEATURES, "labels": LABELS})


def test_segmentation_k_range_must_be_a_range(tmp_path: Path) -> None:
    path = write(tmp_path, segmenter(k={"min": 5, "max": 3}))
    with pytest.raises(ConfigError, match=r": k: min \(5\) is greater than max \(3\)"):
        load_model_config(path)


def test_segmentation_rule_on_unknown_feature_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, segmenter(naming={"rules": [{"name": "x", "below": {"tenure": 0.5}}]}))
    with pytest.raises(ConfigError, match=r"naming\.rules\[0\]\.below\.tenure"):
        load_model_config(path)


def test_segmentation_unknown_column_against_schema(tmp_path: Path) -> None:
    path = write(tmp_path, segmenter(feature_columns=["monetary", "frequency"]))
    config = load_model_config(path)
    with pytest.raises(ConfigError, match=r"feature_columns\[1\]: unknown column 'frequency'"):
        check_columns(config, str(path), {"features": CUSTOMERS})
