"""POST /predict on the real app: online features, registered MLflow models, A/B and shadow.

Two real models (logistic regression and GBT over the same inputs) are trained with Spark,
logged with their portable form and registered as one model's versions 1 and 2 (``champion``
and ``challenger``). Features of 10,000 entities are in a real SQLite online store; the app
is driven through FastAPI's TestClient (its lifespan runs, so the prediction log is flushed at
shutdown) and the Delta prediction log is read back with delta-rs.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from deltalake import DeltaTable
from fastapi.testclient import TestClient
from featurelake.core.config import MlflowSettings
from featurelake.feature_store.definitions import FeatureView
from featurelake.feature_store.online import (
    ServingConfig,
    SqliteOnlineStore,
    encode_entity_key,
)
from featurelake.feature_store.server import create_app
from featurelake.ml.online import OnlineModels, arm_for
from featurelake.ml.portable.pyfunc import log_spark_pipeline
from featurelake.ml.prediction_log import PredictionLog
from featurelake.ml.tracking import configure_tracking, store_uris
from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.feature import Imputer, VectorAssembler

KEYS = 10_000
SCORER = "scorer-key-000000001"
OTHER = "other-key-0000000002"


def _view(name: str, features: list[tuple[str, str]]) -> FeatureView:
    return FeatureView.model_validate(
        {
            "name": name,
            "entity": "client",
            "join_keys": ["id"],
            "source": {"layer": "gold", "table": "clients"},
            "event_timestamp_column": "ts",
            "features": [{"name": n, "dtype": t} for n, t in features],
        }
    )


@pytest.fixture(scope="module")
def registered(spark, tmp_path_factory):
    """Versions 1 (LR, champion) and 2 (GBT, challenger) of ``risk``; the MLflow client."""
    root = tmp_path_factory.mktemp("mlflow-predict")
    settings = MlflowSettings(
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        artifact_location=str(root / "artifacts"),
        experiment="predict-tests",
    )
    configure_tracking(settings)
    rng = np.random.default_rng(7)
    rows = [
        (float(a), int(b), int(a + b / 10 + rng.normal() > 1)) for a, b in rng.normal(size=(600, 2))
    ]
    rows = [(a, int(abs(b) * 10), y) for a, b, y in rows]
    train = spark.createDataFrame(rows, "x1 double, x2 int, label int")
    stages = [
        Imputer(inputCols=["x1", "x2"], outputCols=["x1i", "x2i"], strategy="median"),
        VectorAssembler(inputCols=["x1i", "x2i"], outputCol="features"),
    ]
    client = mlflow.MlflowClient(*store_uris(settings))
    client.create_registered_model("risk")
    for estimator in (LogisticRegression(labelCol="label"), GBTClassifier(labelCol="label")):
        model = Pipeline(stages=[*stages, estimator]).fit(train)
        with mlflow.start_run():
            info = log_spark_pipeline(model, train.select("x1", "x2").limit(5))
        client.create_model_version("risk", info.model_uri)
    client.set_registered_model_alias("risk", "champion", "1")
    client.set_registered_model_alias("risk", "challenger", "2")
    yield client
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def views():
    return {
        "client_a": _view("client_a", [("x1", "double")]),
        "client_b": _view("client_b", [("x2", "int")]),
    }


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("online") / "features.db"
    store = SqliteOnlineStore(path)
    rng = np.random.default_rng(11)
    x1, x2 = rng.normal(size=KEYS), rng.integers(0, 30, size=KEYS)
    ts = 1_700_000_000_000_000
    store.write_rows(
        "client_a",
        [(encode_entity_key([i]), ts, json.dumps({"x1": float(x1[i])})) for i in range(KEYS)],
    )
    # Entity 0 has no client_b row: its x2 is imputed (status incomplete).
    store.write_rows(
        "client_b",
        [(encode_entity_key([i]), ts, json.dumps({"x2": int(x2[i])})) for i in range(1, KEYS)],
    )
    store.close()
    return path


def _config(tmp_path, mode: str) -> ServingConfig:
    return ServingConfig.model_validate(
        {
            "server": {"audit_log": str(tmp_path / "audit.jsonl"), "max_entities": 1000},
            "models": {
                "risk": {
                    "features": ["client_a:*", "client_b:*"],
                    "traffic": {"mode": mode, "weights": {"champion": 80, "challenger": 20}},
                }
            },
            "access": {
                "roles": {
                    "scorer": {"views": ["client_a", "client_b"]},
                    "other": {"views": ["client_a"]},
                },
                "api_keys": [
                    {"id": "scorer", "role": "scorer", "key": SCORER},
                    {"id": "other", "role": "other", "key": OTHER},
                ],
            },
        }
    )


def _app(tmp_path, mode, registered, views, store_path):
    log = PredictionLog(str(tmp_path / "prediction_log"), flush_rows=500, flush_seconds=0.5)
    models = OnlineModels(registered, {"risk": 60.0})
    app = create_app(
        _config(tmp_path, mode),
        views,
        SqliteOnlineStore(store_path),
        models=models,
        prediction_log=log,
    )
    return app, log


def _logged(tmp_path):
    return DeltaTable(str(tmp_path / "prediction_log")).to_pyarrow_table().to_pandas()


def _predict(client, ids, key=SCORER):
    return client.post(
        "/predict",
        json={"model": "risk", "entities": [{"id": i} for i in ids]},
        headers={"X-API-Key": key},
    )


def test_split_routes_by_key_within_a_point_of_the_weights(tmp_path, registered, views, store_path):
    app, _ = _app(tmp_path, "split", registered, views, store_path)
    with TestClient(app) as client:
        arms: dict[int, str] = {}
        for start in range(0, KEYS, 500):
            response = _predict(client, range(start, start + 500))
            assert response.status_code == 200, response.text
            for result in response.json()["results"]:
                arms[result["entity"]["id"]] = result["arm"]
                assert (
                    result["model_version"] == {"champion": "1", "challenger": "2"}[result["arm"]]
                )
        again = _predict(client, range(0, 300)).json()["results"]
    share = sum(a == "challenger" for a in arms.values()) / KEYS
    assert abs(share - 0.20) <= 0.01, share
    assert all(r["arm"] == arms[r["entity"]["id"]] for r in again)  # same key, same arm
    # The arm is a function of the key alone, computed independently here.
    assert all(arms[i] == arm_for(encode_entity_key([i]), 0.2) for i in range(0, KEYS, 97))


def test_every_request_is_in_the_prediction_log(tmp_path, registered, views, store_path):
    app, log = _app(tmp_path, "split", registered, views, store_path)
    requests = 250
    with TestClient(app) as client:
        bodies = [_predict(client, [i]).json() for i in range(requests)]
    # The lifespan closed the log: everything waiting was written.
    logged = _logged(tmp_path)
    assert log.pending == 0 and len(logged) == requests
    assert sorted(logged["entity"].map(lambda e: json.loads(e)["id"])) == list(range(requests))
    first = logged.set_index(logged["entity"].map(lambda e: json.loads(e)["id"]))
    for body in bodies:
        result = body["results"][0]
        row = first.loc[result["entity"]["id"]]
        assert (row["arm"], row["model_version"], bool(row["served"])) == (
            result["arm"],
            result["model_version"],
            True,
        )
        assert row["probability"] == pytest.approx(result["probability"])
    assert json.loads(first.loc[5, "features"]).keys() == {"x1", "x2"}


def test_shadow_challenger_is_logged_and_never_returned(tmp_path, registered, views, store_path):
    app, _ = _app(tmp_path, "shadow", registered, views, store_path)
    with TestClient(app) as client:
        results = [
            r
            for s in range(0, 2000, 200)
            for r in _predict(client, range(s, s + 200)).json()["results"]
        ]
    assert {r["arm"] for r in results} == {"champion"}
    assert {r["model_version"] for r in results} == {"1"}
    logged = _logged(tmp_path)
    shadow = logged[~logged["served"]]
    assert len(logged) == 4000 and len(shadow) == 2000
    assert set(shadow["arm"]) == {"challenger"} and set(shadow["model_version"]) == {"2"}
    assert shadow["probability"].notna().sum() == 2000


def test_predictions_are_the_registered_models_own(tmp_path, registered, views, store_path):
    app, _ = _app(tmp_path, "split", registered, views, store_path)
    with TestClient(app) as client:
        results = _predict(client, [0, 1, 2, KEYS + 5]).json()["results"]
    statuses = [r["status"] for r in results]
    assert statuses == ["incomplete", "ok", "ok", "not_found"]
    assert results[3]["prediction"] is None and results[3]["probability"] is None
    store = SqliteOnlineStore(store_path)
    x1 = json.loads(store.read_records("client_a", [encode_entity_key([1])])[0].payload)["x1"]
    x2 = json.loads(store.read_records("client_b", [encode_entity_key([1])])[0].payload)["x2"]
    store.close()
    version = results[1]["model_version"]
    expected = mlflow.pyfunc.load_model(f"models:/risk/{version}").predict(
        __import__("pandas").DataFrame({"x1": [x1], "x2": [float(x2)]})
    )
    assert results[1]["probability"] == pytest.approx(float(expected["probability"][0]), abs=1e-12)


def test_predict_follows_the_roles_and_audit_of_features(tmp_path, registered, views, store_path):
    app, _ = _app(tmp_path, "split", registered, views, store_path)
    with TestClient(app) as client:
        assert _predict(client, [1], key="wrong-key-00000000").status_code == 401
        forbidden = _predict(client, [1], key=OTHER)
        unknown = client.post(
            "/predict",
            json={"model": "nope", "entities": [{"id": 1}]},
            headers={"X-API-Key": SCORER},
        )
        ok = _predict(client, [1])
    assert forbidden.status_code == 403 and "client_b" in forbidden.json()["detail"]
    assert unknown.status_code == 422
    assert ok.status_code == 200
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [a["status"] for a in audit] == [401, 403, 422, 200]
    assert audit[-1]["model"] == "risk" and audit[-1]["key_id"] == "scorer"
    assert audit[-1]["model_versions"] == [ok.json()["results"][0]["model_version"]]


def test_no_champion_is_a_503(tmp_path, registered, views, store_path):
    registered.create_registered_model("unpromoted")
    config = _config(tmp_path, "split").model_copy(
        update={
            "models": {
                "unpromoted": _config(tmp_path, "split").models["risk"],
            }
        }
    )
    app = create_app(
        config,
        views,
        SqliteOnlineStore(store_path),
        models=OnlineModels(registered, {"unpromoted": 0.0}),
    )
    with TestClient(app) as client:
        response = client.post(
            "/predict", json={"entities": [{"id": 1}]}, headers={"X-API-Key": SCORER}
        )
    assert response.status_code == 503
    assert "no champion" in response.json()["detail"]
