"""POST /predict under load: latency, arm split, stable routing, shadow and the prediction log.

    .venv/bin/python bench/bench_predict.py [--keys 10000] [--clients 8] [--workers 1]

1. Trains two real classifiers with Spark on synthetic rows (logistic regression and GBT over
   the same three inputs, one of them categorical), logs them with featurelake's portable form
   and registers them as versions 1 (``champion``) and 2 (``challenger``) of ``bench_risk``
   in a throw-away MLflow store; writes the features of ``--keys`` entities to a SQLite online
   store (two views).
2. ``split`` mode (weights champion 90 / challenger 10): starts the real ``serve`` job
   (jobs/serve.py, uvicorn, ``--workers`` processes) and sends one single-entity request per
   key from ``--clients`` keep-alive clients, then asks 1,000 keys again; stops the server with
   SIGTERM (a clean shutdown) and reads the Delta prediction log back.
3. ``shadow`` mode: the same with the first 2,000 keys.

Prints p50/p99 latency and requests/s, the challenger's share (target: within 1 point of
10%), how many repeated keys changed arm (target 0), errors (target 0), whether any shadow
prediction was returned (target: none) and the prediction log's row counts against the
requests (targets: split - one row per request; shadow - two).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
sys.path.insert(0, str(PROJECT / "bench"))

from bench_online import percentiles  # noqa: E402
from redis_server import free_port  # noqa: E402

API_KEY = "bench-predict-key-0123"
VIEWS = """
feature_views:
  - name: risk_a
    entity: client
    join_keys: [id]
    source: {layer: gold, table: risk}
    event_timestamp_column: ts
    features:
      - {name: x1, dtype: double}
      - {name: band, dtype: string}
  - name: risk_b
    entity: client
    join_keys: [id]
    source: {layer: gold, table: risk}
    event_timestamp_column: ts
    features:
      - {name: x2, dtype: int}
"""
SERVING = """
online_store: {type: sqlite, sqlite_path: online/features.db}
server:
  audit_log: ops/audit.jsonl
  workers: 1
models:
  bench_risk:
    features: ["risk_a:*", "risk_b:*"]
    traffic:
      mode: ${FEATURELAKE_TRAFFIC_MODE:-split}
      weights: {champion: 90, challenger: 10}
prediction_log: {table: ops/prediction_log, flush_rows: 2000, flush_seconds: 1}
access:
  roles:
    scorer: {views: [risk_a, risk_b]}
  api_keys:
    - {id: scorer, role: scorer, key: API_KEY_HERE}
""".replace("API_KEY_HERE", API_KEY)


def prepare(root: Path, keys: int) -> Path:
    """Conf directory, registered models and the online store under ``root``."""
    import mlflow
    import numpy as np
    from featurelake.core.config import MlflowSettings, SparkSettings
    from featurelake.core.session import build_spark_session
    from featurelake.feature_store.online import SqliteOnlineStore, encode_entity_key
    from featurelake.ml.portable.pyfunc import log_spark_pipeline
    from featurelake.ml.tracking import configure_tracking
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier, LogisticRegression
    from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler

    conf = root / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "features").mkdir()
    (conf / "base.yaml").write_text(
        f"mlflow: {{tracking_uri: 'sqlite:///{root}/mlflow/mlflow.db'}}\n", encoding="utf-8"
    )
    (conf / "env" / "local.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "features" / "risk.yaml").write_text(VIEWS, encoding="utf-8")
    (conf / "serving.yaml").write_text(SERVING, encoding="utf-8")

    spark = build_spark_session("bench-predict", SparkSettings(master="local[2]"))
    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{root}/mlflow/mlflow.db",
            artifact_location=str(root / "mlflow" / "artifacts"),
            experiment="bench",
        )
    )
    rng = np.random.default_rng(3)
    bands = ["a", "b", "c"]
    rows = []
    for _ in range(3000):
        x1, x2, band = float(rng.normal()), int(rng.integers(0, 30)), bands[rng.integers(0, 3)]
        rows.append((x1, x2, band, int(x1 + x2 / 15 + (band == "b") + rng.normal() > 1.5)))
    train = spark.createDataFrame(rows, "x1 double, x2 int, band string, label int")
    stages = [
        Imputer(inputCols=["x1", "x2"], outputCols=["x1i", "x2i"], strategy="median"),
        StringIndexer(inputCol="band", outputCol="band_i", handleInvalid="keep"),
        OneHotEncoder(inputCol="band_i", outputCol="band_v", handleInvalid="keep"),
        VectorAssembler(inputCols=["x1i", "x2i", "band_v"], outputCol="features"),
    ]
    client = mlflow.MlflowClient()
    client.create_registered_model("bench_risk")
    for estimator in (
        LogisticRegression(labelCol="label"),
        GBTClassifier(labelCol="label", maxIter=30),
    ):
        model = Pipeline(stages=[*stages, estimator]).fit(train)
        with mlflow.start_run():
            info = log_spark_pipeline(model, train.select("x1", "x2", "band").limit(5))
        client.create_model_version("bench_risk", info.model_uri)
    client.set_registered_model_alias("bench_risk", "champion", "1")
    client.set_registered_model_alias("bench_risk", "challenger", "2")
    spark.stop()

    store = SqliteOnlineStore(root / "lake" / "online" / "features.db")
    now = int(time.time() * 1e6)
    x1, x2 = rng.normal(size=keys), rng.integers(0, 30, size=keys)
    store.write_rows(
        "risk_a",
        [
            (encode_entity_key([i]), now, json.dumps({"x1": float(x1[i]), "band": bands[i % 3]}))
            for i in range(keys)
        ],
    )
    store.write_rows(
        "risk_b",
        [(encode_entity_key([i]), now, json.dumps({"x2": int(x2[i])})) for i in range(keys)],
    )
    store.close()
    return conf


def start_serve(conf: Path, root: Path, mode: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FEATURELAKE_TRAFFIC_MODE": mode, "FEATURELAKE_LOG_FORMAT": "json"}
    command = [
        sys.executable,
        str(PROJECT / "jobs" / "serve.py"),
        "--conf-dir",
        str(conf),
        "--conf",
        f"lakehouse.root={root / 'lake'}",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.stderr.read().decode()}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("serve did not start within 120 s")


def drive(url: str, ids: list[int], clients: int) -> tuple[dict[int, dict], list[float], int]:
    """One single-entity request per id; the answers by id, latencies, errors."""

    def worker(part: list[int]) -> tuple[dict[int, dict], list[float], int]:
        answers, latencies, errors = {}, [], 0
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": API_KEY}) as client:
            for i in part:
                started = time.perf_counter()
                try:
                    response = client.post("/predict", json={"entities": [{"id": i}]})
                    ok = response.status_code == 200
                    if ok:
                        answers[i] = response.json()["results"][0]
                        ok = answers[i]["status"] == "ok" and answers[i]["probability"] is not None
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1
        return answers, latencies, errors

    parts = [ids[c::clients] for c in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, parts))
    answers = {k: v for a, _, _ in results for k, v in a.items()}
    return answers, [x for _, lat, _ in results for x in lat], sum(e for _, _, e in results)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def logged(root: Path) -> list[dict]:
    from deltalake import DeltaTable

    path = root / "lake" / "ops" / "prediction_log"
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    conf = prepare(root, args.keys)
    ids = list(range(args.keys))
    random.Random(5).shuffle(ids)

    process, url = start_serve(conf, root, "split", args.workers)
    started = time.perf_counter()
    answers, latencies, errors = drive(url, ids, args.clients)
    wall = time.perf_counter() - started
    again, _, again_errors = drive(url, ids[:1000], args.clients)
    stop(process)
    rows = logged(root)
    share = sum(a["arm"] == "challenger" for a in answers.values()) / max(len(answers), 1)
    changed = sum(again[i]["arm"] != answers[i]["arm"] for i in again if i in answers)
    p50, p99 = percentiles(latencies)
    requests = len(ids) + 1000
    print(
        f"split: {len(ids):,} requests from {args.clients} clients, {args.workers} worker(s): "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {len(ids) / wall:,.0f} req/s, "
        f"errors {errors + again_errors}"
    )
    print(
        f"split: challenger share {share:.2%} (configured 10%, |gap| {abs(share - 0.10):.2%}); "
        f"{changed} of 1,000 repeated keys changed arm; "
        f"prediction log rows {len(rows):,} for {requests:,} requests"
    )

    shutil.rmtree(root / "lake" / "ops" / "prediction_log")
    process, url = start_serve(conf, root, "shadow", args.workers)
    shadow_ids = ids[:2000]
    answers, latencies, errors = drive(url, shadow_ids, args.clients)
    stop(process)
    rows = logged(root)
    returned = sum(a["arm"] != "champion" or a["model_version"] != "1" for a in answers.values())
    unserved = [r for r in rows if not r["served"]]
    p50, p99 = percentiles(latencies)
    print(
        f"shadow: {len(shadow_ids):,} requests: p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors "
        f"{errors}; answers not from the champion: {returned}; prediction log rows "
        f"{len(rows):,} ({len(unserved):,} shadow, all challenger v2: "
        f"{all(r['arm'] == 'challenger' and r['model_version'] == '2' for r in unserved)})"
    )
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
