"""The pipeline on a real Spark standalone cluster (one master, two workers on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from deltalake import DeltaTable
from spark_cluster import standalone_cluster

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.cluster


# Every stage that writes a table; the monitoring stages only read them (their own tests run
# them in local mode), and leaving them out keeps this test to a few minutes.
STAGES = (
    "generate-data",
    "bronze",
    "silver",
    "gold",
    "features-apply",
    "train-segmentation",
    "retrain-check",
    "promote",
    "score",
    "materialize",
)


def test_the_pipeline_runs_through_spark_submit_on_a_standalone_cluster(tmp_path):
    lake = tmp_path / "lake"
    with standalone_cluster(tmp_path / "cluster", workers=2, cores=1, memory="1g") as master:
        result = subprocess.run(
            [
                str(ROOT / "spark-submit.sh"),
                "full-pipeline",
                "--only",
                *STAGES,
                "--master",
                master,
                "--env",
                "cluster",
                "--conf",
                f"lakehouse.root={lake}",
                "--conf",
                "spark.shuffle_partitions=4",
                "--conf",
                "synthetic.transactions=4000",
                "--conf",
                "synthetic.customers=200",
                "--conf",
                "synthetic.credit_clients=1000",
                "--conf",
                "silver.pii_key_env=FL_TEST_KEY",
            ],
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=1500,
            # JSON lines on the console: the assertions below read the job_started events.
            env={**os.environ, "FL_TEST_KEY": "cluster-test-key", "FEATURELAKE_LOG_FORMAT": "json"},
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    started = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"job_started"' in line
    ]
    assert started and all(e["fields"]["master"] == master for e in started)
    # the library and configuration were shipped to the executors
    assert (ROOT / "build" / "featurelake-lib.zip").is_file()
    # every stage, training and scoring included, ran on the cluster
    for stage in STAGES:
        assert f"{stage:<22}succeeded" in result.stdout, stage
    for table in (
        "bronze/online_retail",
        "silver/transactions",
        "gold/customer_features",
        "gold/credit_features",
        "features/_registry",
        "gold/customer_segments",
        "predictions/customer_segments",
        "ops/pipeline_runs",
    ):
        assert DeltaTable(str(lake / table)).to_pyarrow_table().num_rows > 0, table
    bronze = DeltaTable(str(lake / "bronze" / "online_retail")).to_pyarrow_table().num_rows
    silver = DeltaTable(str(lake / "silver" / "transactions")).to_pyarrow_table().num_rows
    quarantined = (
        DeltaTable(str(lake / "silver" / "transactions_quarantine")).to_pyarrow_table().num_rows
    )
    assert silver + quarantined <= bronze and silver > 0
    assert (lake / "online" / "features.db").is_file()
