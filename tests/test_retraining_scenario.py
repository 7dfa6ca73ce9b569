"""The retraining loop end to end over three periods of synthetic credit clients, by seed.

Each period's clients come from the generator (seeds 1, 2, 3; new client IDs each period) and
go through the bronze parser, the silver rules and the gold functions into the gold tables,
which are rebuilt from every period so far, as the gold job does. The jobs run as the pipeline
runs them (``retrain-check``, ``promote``, ``score``, ``monitor``), in one lake:

1. period 1 (baseline relationship): no champion, so ``retrain-check`` trains version 1;
   ``promote`` makes it the champion.
2. period 2 (the generator's concept drift from 2026-02-01): the champion scores the new
   clients' raw file; ``monitor`` judges the batch degraded; ``retrain-check`` fires on
   performance and trains version 2, which waits as challenger and is scored in shadow;
   ``promote`` compares both on the recent window and promotes version 2.
3. period 3 (same drifted relationship): the next batch is scored by version 2; the monitor
   finds it holding; ``retrain-check`` retrains nothing and records why, trigger by trigger.

Then ``promote --rollback`` restores version 1. Small data (2,500 + 2,500 + 1,500 clients) and
one logistic regression keep it quick.
"""

from __future__ import annotations

import gzip
import shutil
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pytest
import yaml
from featurelake.core.config import SyntheticSettings
from featurelake.core.runner import execute_job
from featurelake.core.validation import validate_configuration
from featurelake.delta import DeltaTables
from featurelake.devtools.synthetic import credit_client_lines
from featurelake.jobs import load_job
from featurelake.lakehouse import gold
from featurelake.ml.batch import raw_to_silver
from pyspark.sql import functions as F

pytestmark = pytest.mark.scenario  # three periods of jobs in one lake (about three minutes): opt-in

CONF = Path(__file__).resolve().parents[1] / "conf"
DRIFT_FROM = "2026-02-01"
# (seed, clients, first client id, the batch's end date)
PERIODS = {
    1: (1, 2500, 1, "2026-01-15"),
    2: (2, 2500, 2501, "2026-02-15"),
    3: (3, 1500, 5001, "2026-03-15"),
}
MODEL = {
    "kind": "classification",
    "name": "credit_default",
    "features": {"table": "gold/credit_features", "key": "id"},
    "labels": {"table": "gold/credit_labels", "key": "id"},
    "label": "default_next_month",
    "numeric_features": [
        "limit_bal",
        "age",
        "avg_utilization",
        "delinquent_months",
        "worst_delay",
        "pay_ratio_1",
        "pay_ratio_2",
        "utilization_1",
    ],
    "categorical_features": ["education"],
    "split": {"test_fraction": 0.2, "seed": 11},
    "search": {"method": "train_validation_split", "train_ratio": 0.75},
    "algorithms": {
        "logistic_regression": {"params": {"maxIter": 30}, "grid": {"regParam": [0.01]}}
    },
    "promotion": {
        "metric": "roc_auc",
        "min_metric": 0.7,
        "min_improvement": 0.02,
        "recent_min_rows": 200,
        "max_regression": 0.1,
    },
    "retraining": {
        "triggers": {
            "drift": {"metric": "psi", "threshold": 0.25, "top_features": 3},
            "performance": {"max_relative_drop": 0.1},
            "schedule": {"max_age": "30d"},
            "new_data": {"min_fraction": 2.0},
        },
    },
}
MONITORING = {
    "tables": [
        {
            "table": "gold/credit_features",
            "columns": ["delinquent_months", "avg_utilization", "limit_bal", "age"],
            "reference": {"kind": "champion", "model": "credit_default"},
        }
    ],
    "models": {
        "credit_default": {
            "labels": {"table": "gold/credit_labels", "key": "id", "label": "default_next_month"},
            "min_labels": 100,
            "performance": {"warning": 0.03, "critical": 0.08},
        }
    },
    "alerts": {"sinks": [{"type": "jsonl", "path": "ops/monitoring/alerts.jsonl"}]},
}


def _conf(tmp: Path) -> Path:
    conf = tmp / "conf"
    shutil.copytree(CONF, conf)
    for extra in (conf / "models").glob("*.yaml"):
        extra.unlink()
    (conf / "models" / "credit_default.yaml").write_text(yaml.safe_dump(MODEL))
    (conf / "monitoring.yaml").write_text(yaml.safe_dump(MONITORING))
    return conf


def _landing_file(spark, landing: Path, period: int) -> Path:
    """The period's raw credit-client file, as the generator writes it (no dirt)."""
    seed, clients, first_id, end_date = PERIODS[period]
    settings = SyntheticSettings(
        seed=seed,
        credit_clients=clients,
        credit_first_id=first_id,
        end_date=end_date,
        concept_drift_from=DRIFT_FROM,
        duplicate_rate=0,
        malformed_rate=0,
        out_of_range_code_rate=0,
    )
    lines = spark.range(0, clients, 1, 1).transform(credit_client_lines, settings=settings, files=1)
    path = landing / f"credit_clients-period{period}.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(f"{r.value}\n" for r in lines.collect())
    return path


def _rebuild_gold(spark, settings, root: Path, files: list[Path]) -> None:
    """Gold from every period's raw file so far, through the bronze, silver and gold code."""
    clients = raw_to_silver(
        spark,
        settings,
        "credit_clients",
        [str(f) for f in files],
        as_of=datetime.now(timezone.utc),
        run_id="scenario",
    )
    config = gold.load_gold_config(settings.conf_path(gold.GOLD_CONFIG_FILE))
    features, labels = gold.build_credit_gold(clients, config.credit)
    tables = DeltaTables(spark)
    tables.write(features, str(root / "gold" / "credit_features"), "overwrite")
    tables.write(labels, str(root / "gold" / "credit_labels"), "overwrite")


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retraining")
    root, conf, landing = tmp / "lake", _conf(tmp), tmp / "landing"
    tracking = f"sqlite:///{root}/mlflow/mlflow.db"
    common = [
        "--conf-dir",
        str(conf),
        "--conf",
        f"lakehouse.root={root}",
        "--conf",
        f"mlflow.tracking_uri={tracking}",
        "--conf",
        f"mlflow.artifact_location={root}/mlflow/artifacts",
    ]
    settings = validate_configuration(conf, None, [f"lakehouse.root={root}"])
    outcomes: dict[str, object] = {}

    def run(label: str, job_name: str, *args: str):
        job = load_job(job_name)
        # the label is the run id: the rows each job writes say which step wrote them
        argv = [*common, "--run-id", label, *args]
        outcome = execute_job(job_name, job.main, argv, job.add_arguments, spark)
        assert outcome.code == 0, (label, outcome.summary.get("error"))
        outcomes[label] = outcome.summary
        return outcome.summary

    def score(label: str, file: Path):
        return run(
            label, "score", "--model-config", "credit_default", "--input", str(file),
            "--source", "credit_clients",
        )  # fmt: skip

    files: list[Path] = []
    client = mlflow.MlflowClient(tracking, tracking)
    aliases: dict[str, dict[str, str]] = {}

    def snapshot(label: str) -> None:
        found = client.get_registered_model("credit_default").aliases
        aliases[label] = {a: str(v) for a, v in found.items()}

    # Period 1: baseline; the first model.
    files.append(_landing_file(spark, landing, 1))
    _rebuild_gold(spark, settings, root, files)
    run("p1.retrain-check", "retrain-check")
    run("p1.promote", "promote")
    snapshot("p1")
    # Period 2: concept drift; the champion scores the new clients and degrades.
    files.append(_landing_file(spark, landing, 2))
    _rebuild_gold(spark, settings, root, files)
    score("p2.score", files[1])
    run("p2.monitor", "monitor", "--checks", "models")  # the degradation; drift in period 3
    run("p2.retrain-check", "retrain-check")
    snapshot("p2.waiting")
    score("p2.shadow", files[1])
    run("p2.promote", "promote")
    snapshot("p2")
    # Period 3: the drifted relationship holds; the next batch, nothing to retrain.
    files.append(_landing_file(spark, landing, 3))
    _rebuild_gold(spark, settings, root, files)
    score("p3.score", files[2])
    run("p3.monitor", "monitor", "--checks", "tables", "models")
    run("p3.retrain-check", "retrain-check")
    snapshot("p3")
    # Rollback.
    run("rollback", "promote", "--rollback", "credit_default", "--reason", "scenario test")
    snapshot("rollback")

    tables = DeltaTables(spark)

    def rows(table: str) -> list[dict]:
        return [r.asDict() for r in tables.read(str(root / table)).collect()]

    yield {
        "root": root,
        "client": client,
        "outcomes": outcomes,
        "aliases": aliases,
        "decisions": rows("ops/retraining_decisions"),
        "promotions": rows("ops/model_promotions"),
        "results": rows("ops/monitor_results"),
        "predictions": tables.read(str(root / "predictions" / "credit_default")),
    }


def _decisions(scenario, label: str) -> dict[str, dict]:
    return {d["trigger"]: d for d in scenario["decisions"] if d["job_run_id"] == label}


def _moves(scenario, label: str) -> set[tuple]:
    return {
        (p["action"], p["version"], p["alias"])
        for p in scenario["promotions"]
        if p["job_run_id"] == label
    }


def test_period_1_trains_the_first_model_and_promotes_it(scenario):
    decisions = _decisions(scenario, "p1.retrain-check")
    assert set(decisions) == {"no_champion"}
    assert decisions["no_champion"]["fired"] and decisions["no_champion"]["decision"] == "retrain"
    assert scenario["aliases"]["p1"] == {"champion": "1"}
    promoted = scenario["outcomes"]["p1.promote"]["credit_default"]
    assert promoted["decision"] == "promoted"
    assert "no champion yet" in promoted["evaluation"]


def test_period_2_degradation_is_flagged_by_monitoring(scenario):
    batch = scenario["outcomes"]["p2.score"]["score"]["credit_default"]["batch_id"]
    performance = [
        r
        for r in scenario["results"]
        if r["check"] == "performance" and r["window"] == batch and r["status"] != "skipped"
    ]
    assert performance and performance[0]["status"] == "critical"
    assert performance[0]["detail"].startswith("degraded:")


def test_period_2_retrain_check_fires_on_performance_and_says_why_for_each_trigger(scenario):
    decisions = _decisions(scenario, "p2.retrain-check")
    assert set(decisions) == {"drift", "performance", "schedule", "new_data"}
    fired = {t for t, d in decisions.items() if d["fired"]}
    assert fired == {"performance"}
    assert all(d["decision"] == "retrain" and d["reason"] for d in decisions.values())
    assert decisions["performance"]["value"] >= 0.1  # relative drop of ROC AUC
    assert decisions["performance"]["challenger_version"] == "2"
    run = scenario["client"].get_run(decisions["performance"]["training_run_id"])
    assert run.data.tags["featurelake.retraining.decision"] == "retrain"
    assert run.data.tags["featurelake.retraining.triggers"] == "performance"
    assert run.data.tags["featurelake.retraining.trigger.new_data"].startswith("not fired:")


def test_the_waiting_challenger_is_scored_in_shadow(scenario):
    assert scenario["aliases"]["p2.waiting"] == {"champion": "1", "challenger": "2"}
    batch = scenario["outcomes"]["p2.shadow"]["score"]["credit_default"]["batch_id"]
    roles = {
        (r["role"], r["model_version"]): r["count"]
        for r in scenario["predictions"]
        .filter(F.col("batch_id") == batch)
        .groupBy("role", "model_version")
        .count()
        .collect()
    }
    assert roles == {("champion", "1"): 2500, ("shadow", "2"): 2500}


def test_period_2_challenger_wins_on_the_recent_window_and_is_promoted(scenario):
    promoted = scenario["outcomes"]["p2.promote"]["credit_default"]
    assert promoted["decision"] == "promoted", promoted["reason"]
    assert promoted["evaluation"].startswith("the recent window:")
    assert scenario["aliases"]["p2"] == {"champion": "2", "previous": "1"}
    decision = next(
        p for p in scenario["promotions"] if p["action"] == "promoted" and p["version"] == "2"
    )
    assert decision["challenger_metric"] - decision["champion_metric"] >= 0.02
    assert decision["champion_holdout_metric"] - decision["challenger_holdout_metric"] <= 0.1
    # the recent window: period 2's clients on the challenger's held-out side only
    assert 300 <= decision["evaluation_rows"] <= 700


def test_the_next_scoring_batch_uses_the_new_version(scenario):
    batch = scenario["outcomes"]["p3.score"]["score"]["credit_default"]["batch_id"]
    versions = {
        (r["role"], r["model_version"])
        for r in scenario["predictions"].filter(F.col("batch_id") == batch).collect()
    }
    assert versions == {("champion", "2")}


def test_period_3_retrains_nothing_and_the_decision_table_says_why(scenario):
    decisions = _decisions(scenario, "p3.retrain-check")
    assert set(decisions) == {"drift", "performance", "schedule", "new_data"}
    assert not any(d["fired"] for d in decisions.values())
    assert {d["decision"] for d in decisions.values()} == {"keep"}
    assert decisions["performance"]["reason"].endswith("below 0.1000")
    assert "within max_age" in decisions["schedule"]["reason"]
    assert "fewer than min_fraction" in decisions["new_data"]["reason"]
    # the feature table against version 2's training rows (the monitor's champion reference)
    assert decisions["drift"]["reason"].startswith("largest psi")
    assert "against champion version 2's training rows" in decisions["drift"]["reason"]
    assert all(d["training_run_id"] is None for d in decisions.values())
    versions = scenario["client"].search_model_versions("name = 'credit_default'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_rollback_restores_period_1s_model_and_retires_the_other(scenario):
    assert scenario["aliases"]["rollback"] == {"champion": "1"}
    tags = scenario["client"].get_model_version("credit_default", "2").tags
    assert tags["lifecycle.stage"] == "retired"
    assert "scenario test" in tags["lifecycle.retired_reason"]
    assert tags["lifecycle.retired_at"]
    assert _moves(scenario, "p1.retrain-check") == {("registered", "1", "challenger")}
    assert _moves(scenario, "p1.promote") == {("promoted", "1", "champion")}
    assert _moves(scenario, "p2.retrain-check") == {("registered", "2", "challenger")}
    assert _moves(scenario, "p2.promote") == {
        ("promoted", "2", "champion"),
        ("previous", "1", "previous"),
    }
    assert _moves(scenario, "rollback") == {
        ("rolled_back", "1", "champion"),
        ("retired", "2", None),
    }
