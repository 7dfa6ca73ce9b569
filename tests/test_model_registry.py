"""Model registry: the promotion rule by hand, and aliases/tags in a real sqlite registry."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from featurelake.core.config import MlflowSettings
from featurelake.ml.config import PromotionConfig
from featurelake.ml.registry import (
    decide_promotion,
    promote,
    register_challenger,
    replace_challenger,
    rollback,
)
from featurelake.ml.tracking import configure_tracking

POLICY = PromotionConfig(metric="roc_auc", min_metric=0.76, min_improvement=0.01)


def test_below_the_absolute_threshold_is_never_promoted() -> None:
    promoted, reason = decide_promotion(challenger_metric=0.75, champion_metric=None, policy=POLICY)
    assert not promoted
    assert reason == "roc_auc 0.7500 is below the minimum 0.7600"


def test_first_model_above_threshold_is_promoted() -> None:
    promoted, reason = decide_promotion(challenger_metric=0.77, champion_metric=None, policy=POLICY)
    assert promoted and "there is no champion" in reason


def test_a_gain_below_the_margin_is_rejected() -> None:
    promoted, reason = decide_promotion(
        challenger_metric=0.785, champion_metric=0.78, policy=POLICY
    )
    assert not promoted
    assert (
        "does not beat the champion's 0.7800 by the required 0.0100 (difference +0.0050)" in reason
    )


def test_a_gain_at_the_margin_is_promoted() -> None:
    promoted, _ = decide_promotion(challenger_metric=0.80, champion_metric=0.79, policy=POLICY)
    assert promoted


def test_an_equal_challenger_is_not_promoted_even_without_a_margin() -> None:
    # A retraining on unchanged data gives the champion's twin: promoting it changes nothing
    # but the version number.
    no_margin = PromotionConfig(metric="silhouette", min_metric=0.2, min_improvement=0.0)
    promoted, reason = decide_promotion(
        challenger_metric=0.61, champion_metric=0.61, policy=no_margin
    )
    assert not promoted and "(difference +0.0000)" in reason
    assert decide_promotion(challenger_metric=0.62, champion_metric=0.61, policy=no_margin)[0]


def test_a_regression_on_the_champions_held_out_rows_beyond_the_bound_is_rejected() -> None:
    policy = PromotionConfig(
        metric="roc_auc", min_metric=0.7, min_improvement=0.01, max_regression=0.02
    )
    # +0.05 on the recent rows, but 0.84 - 0.81 = 0.03 lost on the champion's held-out rows
    promoted, reason = decide_promotion(
        challenger_metric=0.80,
        champion_metric=0.75,
        policy=policy,
        challenger_holdout=0.81,
        champion_holdout=0.84,
    )
    assert not promoted and "a regression of 0.0300 beyond the allowed 0.0200" in reason
    promoted, reason = decide_promotion(
        challenger_metric=0.80,
        champion_metric=0.75,
        policy=policy,
        challenger_holdout=0.825,
        champion_holdout=0.84,
    )
    assert promoted and "regression +0.0150, allowed 0.0200" in reason


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    # One database for the module (creating one costs seconds); each test uses its own model.
    root = tmp_path_factory.mktemp("registry")
    target = configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{root}/mlflow.db",
            artifact_location=str(root / "artifacts"),
            experiment="registry-tests",
        )
    )
    return mlflow.MlflowClient(target.tracking_uri, target.registry_uri)


def _register(client, tmp_path: Path, name: str) -> str:
    # A registered version needs a source; an empty folder stands in for the model files
    # (what is tested here is the registry's bookkeeping, scored through ``evaluate``).
    source = tmp_path / f"model-{len(list(tmp_path.glob('model-*')))}"
    source.mkdir()
    return str(register_challenger(client, name, source.as_uri()).version)


def test_registering_moves_the_challenger_alias(client, tmp_path: Path) -> None:
    first = _register(client, tmp_path, "registered")
    second = _register(client, tmp_path, "registered")
    assert (first, second) == ("1", "2")
    assert str(client.get_model_version_by_alias("registered", "challenger").version) == "2"


def test_promote_scores_both_models_and_moves_champion_only_past_the_margin(
    client, tmp_path: Path
) -> None:
    scores = {"models:/m/1": 0.78, "models:/m/2": 0.785, "models:/m/3": 0.80}
    asked: list[str] = []

    def evaluate(uri: str) -> float:
        asked.append(uri)
        return scores[uri]

    _register(client, tmp_path, "m")
    first = promote(client, "m", POLICY, evaluate)
    assert first.promoted and first.champion_version is None
    _register(client, tmp_path, "m")
    second = promote(client, "m", POLICY, evaluate)
    assert not second.promoted and second.champion_version == "1"
    _register(client, tmp_path, "m")
    third = promote(client, "m", POLICY, evaluate)
    assert third.promoted and third.champion_metric == 0.78
    assert asked == ["models:/m/1", "models:/m/2", "models:/m/1", "models:/m/3", "models:/m/1"]
    assert str(client.get_model_version_by_alias("m", "champion").version) == "3"
    tags = client.get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.champion_version"] == "1"


def test_promote_without_a_challenger_is_an_error(client) -> None:
    with pytest.raises(LookupError, match="has no 'challenger' alias"):
        promote(client, "nothing", POLICY, lambda uri: 1.0)


def _aliases(client, name: str) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def test_lifecycle_keeps_the_previous_champion_for_one_step_rollback(client, tmp_path: Path):
    scores = {"models:/life/1": 0.78, "models:/life/2": 0.80, "models:/life/3": 0.82}
    _register(client, tmp_path, "life")
    first = promote(client, "life", POLICY, scores.__getitem__)
    assert [(t.action, t.version, t.alias) for t in first.transitions] == [
        ("promoted", "1", "champion")
    ]
    _register(client, tmp_path, "life")
    promote(client, "life", POLICY, scores.__getitem__)
    assert _aliases(client, "life") == {"champion": "2", "previous": "1"}
    _register(client, tmp_path, "life")
    third = promote(client, "life", POLICY, scores.__getitem__)
    # 3 is champion, 2 previous; 1 (the previous before) is retired, with why and when
    assert _aliases(client, "life") == {"champion": "3", "previous": "2"}
    assert [(t.action, t.version) for t in third.transitions] == [
        ("promoted", "3"),
        ("retired", "1"),
        ("previous", "2"),
    ]
    retired = client.get_model_version("life", "1").tags
    assert retired["lifecycle.stage"] == "retired"
    assert retired["lifecycle.retired_reason"].startswith("superseded: version 2")
    assert client.get_model_version("life", "3").tags["lifecycle.stage"] == "production"
    assert client.get_model_version("life", "2").tags["lifecycle.stage"] == "previous"

    moves = rollback(client, "life", "alerts from production")
    assert _aliases(client, "life") == {"champion": "2"}
    assert [(t.action, t.version, t.alias) for t in moves] == [
        ("rolled_back", "2", "champion"),
        ("retired", "3", None),
    ]
    assert (
        "alerts from production"
        in client.get_model_version("life", "3").tags["lifecycle.retired_reason"]
    )
    with pytest.raises(LookupError, match="no 'previous' alias"):
        rollback(client, "life", "again")


def test_a_challenger_replaced_before_promotion_is_retired(client, tmp_path: Path):
    _register(client, tmp_path, "replaced")
    source = tmp_path / "model-next"
    source.mkdir()
    registration = replace_challenger(client, "replaced", source.as_uri())
    assert [(t.action, t.version) for t in registration.transitions] == [
        ("registered", "2"),
        ("retired", "1"),
    ]
    assert client.get_model_version("replaced", "1").tags["lifecycle.stage"] == "retired"
    assert _aliases(client, "replaced") == {"challenger": "2"}


def test_configuring_tracking_leaves_the_environment_for_child_processes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job started from this process (spark-submit from a test, a notebook, a scheduler) must
    # read its own configuration, not the store this process was pointed at.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere/registry.db")
    target = configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
            artifact_location=str(tmp_path / "artifacts"),
            experiment="environment-test",
        )
    )
    assert mlflow.get_tracking_uri() == target.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:////elsewhere/registry.db"
