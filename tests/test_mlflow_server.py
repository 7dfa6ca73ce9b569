"""Against a real `mlflow server` on 127.0.0.1: track, log, register and load a Spark model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import mlflow
import pytest
import yaml
from featurelake.core.config import MlflowSettings
from featurelake.ml.config import load_model_config
from featurelake.ml.registry import register_challenger
from featurelake.ml.segmentation import train_segmentation
from featurelake.ml.tracking import configure_tracking
from pyspark.sql import SparkSession

MLFLOW = Path(sys.executable).with_name("mlflow")
STARTUP_SECONDS = 180  # a busy 2-core machine is slow to import the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not MLFLOW.exists():
        pytest.skip(f"no mlflow executable beside {sys.executable}")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    process = subprocess.Popen(
        [
            str(MLFLOW),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/server.db",
            "--artifacts-destination",
            (root / "artifacts").as_uri(),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with {process.returncode}: "
                    f"{(root / 'server.log').read_text(errors='replace')[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {STARTUP_SECONDS}s")
            time.sleep(1)
        yield {"url": url, "root": root}
    finally:
        # The server runs in its own session: stop its whole process group (it forks workers).
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def test_train_register_and_load_through_a_real_server(
    server: dict, spark: SparkSession, tmp_path: Path
) -> None:
    target = configure_tracking(
        MlflowSettings(tracking_uri=server["url"], experiment="server-test")
    )
    assert target.tracking_uri == server["url"]
    assert target.artifact_location.startswith("mlflow-artifacts:")  # the server decides
    path = tmp_path / "seg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "segmentation",
                "name": "server_segments",
                "features": {"table": "gold/customer_features", "key": "customer_id"},
                "as_of_column": "as_of_ts",
                "feature_columns": ["x", "y"],
                "k": {"min": 2, "max": 2},
                "max_iter": 5,
                "output": "gold/customer_segments",
                "promotion": {"metric": "silhouette", "min_metric": 0.1},
            }
        ),
        encoding="utf-8",
    )
    config = load_model_config(path)
    as_of = datetime(2024, 1, 1)
    features = spark.createDataFrame(
        [(f"a{i}", as_of, float(i), 1.0) for i in range(5)]
        + [(f"b{i}", as_of, 100.0 + i, 50.0) for i in range(5)],
        "customer_id string, as_of_ts timestamp, x double, y double",
    )
    result = train_segmentation(config, features, tags={"featurelake.test": "server"})
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    version = register_challenger(client, config.name, result.model_uri, run_id=result.run_id)

    run = client.get_run(result.run_id)
    assert run.data.metrics["silhouette_k2"] == pytest.approx(result.silhouette)
    loaded = mlflow.spark.load_model("models:/server_segments@challenger")
    predictions = loaded.transform(features).select("customer_id", "prediction").collect()
    by_group = {}
    for row in predictions:
        by_group.setdefault(row["customer_id"][0], set()).add(row["prediction"])
    assert len(by_group["a"]) == 1 and len(by_group["b"]) == 1 and by_group["a"] != by_group["b"]
    assert str(version.version) == "1"
    # Artifacts went through the server to its --artifacts-destination.
    stored = [p.name for p in (server["root"] / "artifacts").rglob("*")]
    assert "segment_profiles.json" in stored and "MLmodel" in stored
