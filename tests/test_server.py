"""The serving API over real HTTP (uvicorn on 127.0.0.1, httpx): auth, roles, PII grants,
error codes, values and statuses, audit lines, metrics, a bounded load run, the serve job."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from featurelake.feature_store.auth import AccessConfig, ApiKeyConfig, RoleConfig
from featurelake.feature_store.definitions import Feature, FeatureView, SourceTable
from featurelake.feature_store.online import (
    OnlineStore,
    RedisOnlineStore,
    ServerConfig,
    ServingConfig,
    SqliteOnlineStore,
    encode_entity_key,
    to_micros,
)
from featurelake.feature_store.server import create_app, running_server
from prometheus_client.parser import text_string_to_metric_families
from redis_server import free_port, redis_url, running_redis_server  # noqa: F401 - fixture

PROJECT = Path(__file__).resolve().parents[1]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
FRESH = NOW - timedelta(hours=1)
OLD = NOW - timedelta(days=10)

VIEWS = {
    "customer_rfm": FeatureView(
        name="customer_rfm",
        entity="customer",
        join_keys=["customer_id"],
        source=SourceTable(layer="gold", table="customer_features_daily"),
        event_timestamp_column="as_of_ts",
        ttl="3d",
        features=[
            Feature(name="recency_days", dtype="int"),
            Feature(name="monetary", dtype="double"),
        ],
    ),
    "credit_profile": FeatureView(
        name="credit_profile",
        entity="credit_client",
        join_keys=["id"],
        source=SourceTable(layer="gold", table="credit_features"),
        event_timestamp_column="snapshot_ts",
        features=[
            Feature(name="limit_bal", dtype="double"),
            Feature(name="age", dtype="int", pii=True),
        ],
    ),
}
KEYS = {
    "analyst": "analyst-secret-key-0001",
    "support": "support-secret-key-0002",
    "scoring": "scoring-secret-key-0003",
    "operator": "operator-secret-key-0004",
}
ACCESS = AccessConfig(
    roles={
        "analyst": RoleConfig(views=("customer_rfm",)),
        "credit_support": RoleConfig(views=("credit_profile",)),
        "credit_scoring": RoleConfig(views=("credit_profile",), pii_grants=("credit_profile:age",)),
        "operator": RoleConfig(health_details=True),
    },
    api_keys=(
        ApiKeyConfig(id="analyst-test", role="analyst", key=KEYS["analyst"]),
        ApiKeyConfig(id="support-test", role="credit_support", key=KEYS["support"]),
        ApiKeyConfig(id="scoring-test", role="credit_scoring", key=KEYS["scoring"]),
        ApiKeyConfig(id="operator-test", role="operator", key=KEYS["operator"]),
    ),
)


def stored_row(key: object, at: datetime, **values: object) -> tuple[str, int, str]:
    return encode_entity_key([key]), to_micros(at), json.dumps(values)


def fill(store: OnlineStore) -> None:
    store.write_rows(
        "customer_rfm",
        [
            stored_row("c1", FRESH, recency_days=3, monetary=12.5),
            stored_row("c2", FRESH, recency_days=None, monetary=1.0),
            stored_row("c_old", OLD, recency_days=40, monetary=2.0),
        ]
        + [stored_row(f"load{i}", FRESH, recency_days=i, monetary=i / 2) for i in range(100)],
    )
    store.write_rows("credit_profile", [stored_row(7, FRESH, limit_bal=50000.0, age=41)])


@contextmanager
def serving(tmp: Path, store: OnlineStore, **server_settings: Any) -> Iterator[dict]:
    """Fill ``store`` and serve it; the base URL, a client, the audit log and ``tmp``."""
    fill(store)
    config = ServingConfig(
        server=ServerConfig(audit_log=str(tmp / "audit.jsonl"), max_entities=50, **server_settings),
        access=ACCESS,
    )
    app = create_app(config, VIEWS, store)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield {"url": url, "client": client, "audit": tmp / "audit.jsonl", "tmp": tmp}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("serving")
    with serving(tmp, SqliteOnlineStore(tmp / "online.db")) as running:
        yield running


@pytest.fixture(scope="module")
def redis_backed_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("serving-redis")
    store = RedisOnlineStore(redis_url, key_prefix=f"s{uuid.uuid4().hex[:8]}")
    with serving(tmp, store) as running:
        yield running


def post(server: dict, body: object, key: str | None = "analyst") -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": KEYS.get(key, key)}
    return server["client"].post("/features", json=body, headers=headers)


def audit_line(server: dict, response: httpx.Response) -> dict:
    return audit_line_of(server, response.headers["x-request-id"])


def audit_line_of(server: dict, request_id: str) -> dict:
    # The line is written once the response has been sent (it records status and latency), so
    # the client may get the response a moment before the line lands: wait up to 5 s.
    deadline = time.monotonic() + 5
    while True:
        lines = server["audit"].read_text(encoding="utf-8").splitlines()
        matches = [json.loads(line) for line in lines if f'"request_id":"{request_id}"' in line]
        if matches or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(matches) == 1, f"expected one audit line for {request_id}, found {len(matches)}"
    return matches[0]


RFM = {"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:recency_days"]}


# -- values and statuses ----------------------------------------------------------------------


def test_values_come_with_event_time_staleness_and_status(server: dict) -> None:
    response = post(
        server,
        {
            "entities": [{"customer_id": "c1"}],
            "features": ["customer_rfm:recency_days", "customer_rfm:monetary"],
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["features"] == ["customer_rfm:recency_days", "customer_rfm:monetary"]
    (result,) = body["results"]
    assert result["entity"] == {"customer_id": "c1"}
    value = result["values"]["customer_rfm:recency_days"]
    assert (value["value"], value["status"]) == (3, "ok")
    assert value["event_timestamp"] == FRESH.isoformat().replace("+00:00", "Z")
    # FRESH was fixed (an hour back) when the module was imported, possibly long before this
    # test runs in a full suite: staleness is the time since FRESH, measured around the call.
    age = (datetime.now(timezone.utc) - FRESH).total_seconds()
    assert 3600 <= value["staleness_seconds"] <= age + 1
    assert result["values"]["customer_rfm:monetary"]["value"] == 12.5


def test_unknown_entity_gets_null_values_with_not_found(server: dict) -> None:
    response = post(
        server,
        {
            "entities": [{"customer_id": "nobody"}, {"customer_id": "c1"}],
            "features": ["customer_rfm:recency_days"],
        },
    )

    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first["values"]["customer_rfm:recency_days"] == {
        "value": None,
        "event_timestamp": None,
        "staleness_seconds": None,
        "status": "not_found",
    }
    assert second["values"]["customer_rfm:recency_days"]["value"] == 3


def test_value_older_than_ttl_is_null_with_expired(server: dict) -> None:
    response = post(
        server, {"entities": [{"customer_id": "c_old"}], "features": ["customer_rfm:recency_days"]}
    )

    value = response.json()["results"][0]["values"]["customer_rfm:recency_days"]
    assert (value["value"], value["status"]) == (None, "expired")
    assert value["event_timestamp"] == OLD.isoformat().replace("+00:00", "Z")


def test_stored_null_is_reported_as_null_value(server: dict) -> None:
    response = post(
        server, {"entities": [{"customer_id": "c2"}], "features": ["customer_rfm:recency_days"]}
    )

    value = response.json()["results"][0]["values"]["customer_rfm:recency_days"]
    assert value["status"] == "null_value"


def test_wildcard_reference_expands_to_every_feature(server: dict) -> None:
    response = post(server, {"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:*"]})

    assert response.json()["features"] == ["customer_rfm:recency_days", "customer_rfm:monetary"]


def test_integer_key_is_accepted_for_an_integer_join_key(server: dict) -> None:
    response = post(
        server, {"entities": [{"id": 7}], "features": ["credit_profile:limit_bal"]}, key="support"
    )

    assert response.json()["results"][0]["values"]["credit_profile:limit_bal"]["value"] == 50000.0


# -- authentication and authorisation -----------------------------------------------------------


def test_no_key_is_401(server: dict) -> None:
    response = post(server, RFM, key=None)

    assert response.status_code == 401
    assert "missing API key" in response.json()["detail"]


def test_unknown_key_is_401(server: dict) -> None:
    response = post(server, RFM, key="not-a-configured-key-at-all")

    assert response.status_code == 401
    assert "unknown API key" in response.json()["detail"]


def test_no_key_is_401_even_for_a_malformed_body(server: dict) -> None:
    response = server["client"].post("/features", content=b"{not json")

    assert response.status_code == 401


def test_view_outside_the_role_is_403(server: dict) -> None:
    response = post(server, {"entities": [{"id": 7}], "features": ["credit_profile:limit_bal"]})

    assert response.status_code == 403
    assert "may not read view(s) ['credit_profile']" in response.json()["detail"]


def test_pii_feature_without_a_grant_is_403(server: dict) -> None:
    response = post(
        server, {"entities": [{"id": 7}], "features": ["credit_profile:age"]}, key="support"
    )

    assert response.status_code == 403
    assert "no grant for PII feature(s) ['credit_profile:age']" in response.json()["detail"]


def test_wildcard_including_pii_needs_the_grant(server: dict) -> None:
    response = post(
        server, {"entities": [{"id": 7}], "features": ["credit_profile:*"]}, key="support"
    )

    assert response.status_code == 403


def test_pii_feature_with_a_grant_is_served(server: dict) -> None:
    response = post(
        server, {"entities": [{"id": 7}], "features": ["credit_profile:age"]}, key="scoring"
    )

    assert response.status_code == 200
    assert response.json()["results"][0]["values"]["credit_profile:age"]["value"] == 41


# -- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"entities": [{"customer_id": "c1"}]}, "features: Field required"),
        (
            {"entities": [], "features": ["customer_rfm:monetary"]},
            "entities: List should have at least 1",
        ),
        (
            {"entities": [{"customer_id": 1.5}], "features": ["customer_rfm:monetary"]},
            "entities.0.customer_id",
        ),
        (
            {"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:monetary"], "x": 1},
            "x: Extra inputs are not permitted",
        ),
        ({"entities": [{"customer_id": "c1"}], "features": ["monetary"]}, "must be 'view:feature'"),
        (
            {"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:nope"]},
            "view 'customer_rfm' has no feature 'nope'",
        ),
        (
            {"entities": [{"customer_id": "c1"}], "features": ["nope:x"]},
            "unknown feature view 'nope'",
        ),
        (
            {"entities": [{"cust": "c1"}], "features": ["customer_rfm:monetary"]},
            "missing join key(s) ['customer_id']; unknown key(s) ['cust']",
        ),
        (
            {"entities": [{"customer_id": "c"}] * 51, "features": ["customer_rfm:monetary"]},
            "51 entities; at most 50 per request",
        ),
    ],
)
def test_malformed_request_is_422_with_a_clear_message(
    server: dict, body: dict, message: str
) -> None:
    response = post(server, body)

    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "location", "problem"),
    [
        (
            rb'{"entities": [{"customer_id": "\ud800"}], "features": ["customer_rfm:monetary"]}',
            "body.entities.0.customer_id",
            "a lone UTF-16 surrogate (U+D800) at character 0",
        ),
        (
            rb'{"entities": [{"customer_id": "c\udc00"}], "features": ["customer_rfm:monetary"]}',
            "body.entities.0.customer_id",
            "a lone UTF-16 surrogate (U+DC00) at character 1",
        ),
        (
            rb'{"entities": [{"\ud800": "c1"}], "features": ["customer_rfm:monetary"]}',
            "body.entities.0.",
            "a lone UTF-16 surrogate (U+D800) at character 0",
        ),
        (
            rb'{"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:\ud800"]}',
            "body.features.0",
            "a lone UTF-16 surrogate (U+D800) at character 13",
        ),
    ],
)
def test_lone_surrogate_is_422_saying_where(
    server: dict, body: bytes, location: str, problem: str
) -> None:
    response = server["client"].post(
        "/features",
        content=body,
        headers={"X-API-Key": KEYS["analyst"], "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    (reported,) = response.json()["problems"]
    assert reported["location"].startswith(location)
    assert problem in reported["problem"]
    assert "not valid Unicode" in reported["problem"]


def test_surrogate_pair_is_one_character_and_served(server: dict) -> None:
    body = rb'{"entities": [{"customer_id": "\ud83d\ude00"}], "features": ["customer_rfm:*"]}'

    response = server["client"].post(
        "/features",
        content=body,
        headers={"X-API-Key": KEYS["analyst"], "Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert response.json()["results"][0]["entity"] == {"customer_id": "\U0001f600"}


def test_body_that_is_not_json_is_422(server: dict) -> None:
    response = server["client"].post(
        "/features",
        content=b"{not json",
        headers={"X-API-Key": KEYS["analyst"], "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert "JSON decode error" in response.json()["detail"]


# -- request size ------------------------------------------------------------------------------

MiB = 1024 * 1024


def raw_exchange(server: dict, head: list[str], body: bytes = b"") -> tuple[int, dict, dict]:
    """Send a request's bytes as given over a fresh connection and read until the server closes
    it (10 s at most); the status, headers and JSON body of the answer."""
    url = urlsplit(server["url"])
    request = "\r\n".join(head + [f"Host: {url.netloc}", "", ""]).encode("latin-1") + body
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    header_block, _, payload = received.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(payload)


def test_body_declared_over_the_limit_is_413_before_it_is_sent(server: dict) -> None:
    status, headers, body = raw_exchange(
        server,
        [
            "POST /features HTTP/1.1",
            f"X-API-Key: {KEYS['analyst']}",
            "Content-Type: application/json",
            f"Content-Length: {100 * MiB}",
        ],
    )

    assert status == 413
    assert body["detail"] == f"the request body is over the limit of {MiB} bytes"
    assert headers["connection"] == "close"


def test_body_declared_over_the_limit_without_a_key_is_401_and_never_read(server: dict) -> None:
    status, headers, _ = raw_exchange(
        server,
        [
            "POST /features HTTP/1.1",
            "Content-Type: application/json",
            f"Content-Length: {100 * MiB}",
        ],
    )

    assert status == 401
    assert headers["connection"] == "close"


def test_chunked_body_over_the_limit_is_413_once_the_limit_is_passed(server: dict) -> None:
    # 16 chunks of 64 KiB fill the 1 MiB limit; one more byte passes it. The body is never
    # terminated, so only a server that counts while it reads can answer.
    chunks = b"10000\r\n" + b" " * 65536 + b"\r\n"
    status, _, body = raw_exchange(
        server,
        [
            "POST /features HTTP/1.1",
            f"X-API-Key: {KEYS['analyst']}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
        chunks * 16 + b"1\r\n ",
    )

    assert status == 413
    assert body["error"] == "payload_too_large"


def test_chunked_body_within_the_limit_is_served(server: dict) -> None:
    padded = json.dumps(RFM).encode() + b" " * (MiB - 200)

    response = server["client"].post(
        "/features",
        content=iter([padded[: MiB // 2], padded[MiB // 2 :]]),
        headers={"X-API-Key": KEYS["analyst"], "Content-Type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 200
    assert response.json()["results"][0]["values"]["customer_rfm:recency_days"]["value"] == 3


def test_body_over_the_limit_is_audited_as_413(server: dict) -> None:
    _, headers, _ = raw_exchange(
        server,
        ["POST /features HTTP/1.1", f"X-API-Key: {KEYS['analyst']}", f"Content-Length: {2 * MiB}"],
    )

    line = audit_line_of(server, headers["x-request-id"])
    assert (line["key_id"], line["status"], line["error"]) == (
        "analyst-test",
        413,
        f"request body over {MiB} bytes",
    )


# -- echoed input --------------------------------------------------------------------------------


def test_long_feature_reference_is_cut_in_the_answer_and_the_audit_line(server: dict) -> None:
    reference = "customer_rfm:" + "x" * 900_000  # 900,013 characters, within the body limit

    response = post(server, {"entities": [{"customer_id": "c1"}], "features": [reference]})

    # The message quotes the reference: 36 + 900,000 + 45 = 900,081 characters.
    message_start = "view 'customer_rfm' has no feature 'xxx"
    assert response.status_code == 422
    assert len(response.content) < 2000
    detail = response.json()["detail"]
    assert detail.startswith(message_start)
    assert detail.endswith("x...[899057 more characters]")  # 1024 kept
    line = audit_line(server, response)
    assert line["features"] == ["customer_rfm:" + "x" * 243 + "...[899757 more characters]"]
    assert line["error"].startswith(message_start)
    assert line["error"].endswith("x...[899825 more characters]")  # 256 kept


def test_many_feature_references_are_capped_in_the_audit_line(server: dict) -> None:
    response = post(
        server, {"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:monetary"] * 5000}
    )

    assert "5000 feature references; at most 200 per request" in response.json()["detail"]
    line = audit_line(server, response)
    assert line["features"] == ["customer_rfm:monetary"] * 200 + ["...[4800 more items]"]


def test_invalid_body_lists_a_bounded_number_of_cut_problems(server: dict) -> None:
    long_key = "k" * 100_000
    entities = [{long_key: 1.5}] + [{"customer_id": 1.5}] * 999

    response = post(server, {"entities": entities, "features": ["customer_rfm:monetary"]})

    assert response.status_code == 422
    body = response.json()
    # A float fails both members of str | int: two problems per entity, 2000 in all.
    assert len(body["problems"]) == 20
    # "body.entities.0." + the key + ".str": 16 + 100,000 + 4 = 100,020 characters, 256 kept.
    assert body["problems"][0]["location"] == (
        "body.entities.0." + "k" * 240 + "...[99764 more characters]"
    )
    assert "; and 1980 more problem(s)" in body["detail"]
    assert len(response.content) < 16_000


# -- audit and metrics --------------------------------------------------------------------------


def test_successful_request_is_audited_with_who_what_and_outcome(server: dict) -> None:
    response = post(
        server,
        {
            "entities": [{"customer_id": "c1"}, {"customer_id": "c2"}],
            "features": ["customer_rfm:monetary"],
        },
    )

    line = audit_line(server, response)
    assert {
        k: line[k]
        for k in (
            "key_id",
            "role",
            "views",
            "features",
            "entities",
            "status",
            "outcome",
            "path",
            "method",
        )
    } == {
        "key_id": "analyst-test",
        "role": "analyst",
        "views": ["customer_rfm"],
        "features": ["customer_rfm:monetary"],
        "entities": 2,
        "status": 200,
        "outcome": "ok",
        "path": "/features",
        "method": "POST",
    }
    written = datetime.fromisoformat(line["time"])
    assert abs(written - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_refused_request_is_audited_with_the_reason(server: dict) -> None:
    response = post(
        server, {"entities": [{"id": 7}], "features": ["credit_profile:age"]}, key="support"
    )

    line = audit_line(server, response)
    assert (line["key_id"], line["status"], line["outcome"]) == ("support-test", 403, "error")
    assert "credit_profile:age" in line["error"]


def test_unauthenticated_request_is_audited_without_identity(server: dict) -> None:
    response = post(server, RFM, key="not-a-configured-key-at-all")

    line = audit_line(server, response)
    assert (line["key_id"], line["role"], line["status"]) == (None, None, 401)


def test_audit_log_never_contains_a_secret(server: dict) -> None:
    post(server, RFM)
    post(server, RFM, key="not-a-configured-key-at-all")

    text = server["audit"].read_text(encoding="utf-8")
    assert all(secret not in text for secret in KEYS.values())
    assert "not-a-configured-key-at-all" not in text


def metric_values(server: dict) -> dict[tuple[str, tuple], float]:
    text = server["client"].get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_lookups_and_staleness(server: dict) -> None:
    before = metric_values(server)
    post(
        server,
        {
            "entities": [
                {"customer_id": "c1"},
                {"customer_id": "nobody"},
                {"customer_id": "c_old"},
            ],
            "features": ["customer_rfm:monetary"],
        },
    )
    post(server, RFM, key=None)

    after = metric_values(server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("featurelake_serving_requests_total", path="/features", status="200") == 1
    assert delta("featurelake_serving_requests_total", path="/features", status="401") == 1
    assert delta("featurelake_online_lookups_total", view="customer_rfm", result="hit") == 1
    assert delta("featurelake_online_lookups_total", view="customer_rfm", result="miss") == 1
    assert delta("featurelake_online_lookups_total", view="customer_rfm", result="expired") == 1
    assert delta("featurelake_online_staleness_seconds_count", view="customer_rfm") == 2
    assert delta("featurelake_serving_request_duration_seconds_count", path="/features") == 2


# -- health and docs ----------------------------------------------------------------------------


def test_health_needs_no_key_and_reports_status_and_views_only(server: dict) -> None:
    response = server["client"].get("/health")

    assert response.status_code == 200
    assert set(response.json()) == {"status", "views"}
    assert response.json()["status"] == "ok"
    assert set(response.json()["views"]) == {"customer_rfm", "credit_profile"}
    assert str(server["tmp"]) not in response.text


def test_health_details_need_a_key(server: dict) -> None:
    response = server["client"].get("/health/details")

    assert response.status_code == 401


def test_health_details_are_refused_to_a_role_without_them(server: dict) -> None:
    response = server["client"].get("/health/details", headers={"X-API-Key": KEYS["analyst"]})

    assert response.status_code == 403
    assert "health_details" in response.json()["detail"]


def test_health_details_name_the_store_for_a_role_granted_them(server: dict) -> None:
    response = server["client"].get("/health/details", headers={"X-API-Key": KEYS["operator"]})

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["store"] == {"type": "sqlite", "path": str(server["tmp"] / "online.db")}
    assert response.json()["worker_pid"] == os.getpid()  # the in-process server
    assert audit_line(server, response)["key_id"] == "operator-test"


def test_health_never_shows_the_redis_password(tmp_path: Path) -> None:
    password = "redis-pass-5f3a9c"
    with (
        running_redis_server(tmp_path / "redis", password=password) as url,
        serving(tmp_path, RedisOnlineStore(url, key_prefix="health")) as server,
    ):
        public = server["client"].get("/health")
        details = server["client"].get("/health/details", headers={"X-API-Key": KEYS["operator"]})
        port = urlsplit(url).port

    assert (public.status_code, details.status_code) == (200, 200)
    assert password not in public.text + details.text
    assert details.json()["store"] == {
        "type": "redis",
        "url": f"redis://:***@127.0.0.1:{port}/0",
        "key_prefix": "health",
    }


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_are_not_served_by_default(server: dict, path: str) -> None:
    assert server["client"].get(path).status_code == 404


def test_docs_are_served_with_expose_docs(tmp_path: Path) -> None:
    with serving(tmp_path, SqliteOnlineStore(tmp_path / "online.db"), expose_docs=True) as server:
        codes = [server["client"].get(p).status_code for p in ("/docs", "/redoc", "/openapi.json")]

    assert codes == [200, 200, 200]


def test_redis_backed_server_serves_the_same_answers(redis_backed_server: dict) -> None:
    response = post(
        redis_backed_server,
        {
            "entities": [{"customer_id": "c1"}, {"customer_id": "x"}, {"customer_id": "c_old"}],
            "features": ["customer_rfm:recency_days"],
        },
    )

    results = response.json()["results"]
    statuses = [r["values"]["customer_rfm:recency_days"]["status"] for r in results]
    assert statuses == ["ok", "not_found", "expired"]


def test_redis_outage_is_503_with_retry_after_and_serving_resumes_when_it_is_back(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    config = ServingConfig(
        server=ServerConfig(audit_log=str(tmp_path / "audit.jsonl"), retry_after_seconds=7),
        access=ACCESS,
    )
    app = create_app(config, VIEWS, RedisOnlineStore(url, key_prefix="outage"))
    # The test writes through a store of its own, so only the server's requests can reconnect
    # the server's connection pool.
    writer = RedisOnlineStore(url, key_prefix="outage")
    with (
        running_server(app) as base,
        httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEYS["analyst"]}) as client,
    ):
        with running_redis_server(tmp_path / "up", port=port):
            fill(writer)
            before = client.post("/features", json=RFM)
        down = client.post("/features", json=RFM)
        health_down = client.get("/health")
        with running_redis_server(tmp_path / "back", port=port):
            fill(writer)  # the server keeps nothing on disk: it comes back empty
            writer.close()
            after = client.post("/features", json=RFM)
            health_after = client.get("/health")

    assert before.status_code == 200
    assert down.status_code == 503
    assert down.headers["retry-after"] == "7"
    assert down.content == (
        b'{"error":"store_unavailable","detail":"the online store cannot be reached; retry later"}'
    )
    assert (health_down.status_code, health_down.json()) == (503, {"status": "unavailable"})
    assert after.status_code == 200
    assert after.json()["results"][0]["values"]["customer_rfm:recency_days"]["value"] == 3
    assert health_after.status_code == 200


# -- bounded load run ---------------------------------------------------------------------------


def load_run(server: dict, requests: int, clients: int = 4) -> dict[str, float]:
    """Send ``requests`` single-entity lookups from ``clients`` threads; return latency stats."""

    def worker(count: int, offset: int) -> list[tuple[int, float]]:
        out = []
        with httpx.Client(
            base_url=server["url"], timeout=10, headers={"X-API-Key": KEYS["analyst"]}
        ) as client:
            for i in range(count):
                body = {
                    "entities": [{"customer_id": f"load{(offset + i) % 100}"}],
                    "features": ["customer_rfm:recency_days", "customer_rfm:monetary"],
                }
                started = time.perf_counter()
                response = client.post("/features", json=body)
                elapsed = time.perf_counter() - started
                ok = (
                    response.status_code == 200
                    and response.json()["results"][0]["values"]["customer_rfm:monetary"]["status"]
                    == "ok"
                )
                out.append((200 if ok else response.status_code, elapsed))
        return out

    per_client = requests // clients
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [
            r
            for part in pool.map(
                worker, [per_client] * clients, [i * per_client for i in range(clients)]
            )
            for r in part
        ]
    wall = time.perf_counter() - started
    latencies = sorted(e for _, e in results)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(results),
        "errors": sum(1 for s, _ in results if s != 200),
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "req_per_s": len(results) / wall,
    }


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_bounded_load_run_has_zero_errors(
    backend: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    server = request.getfixturevalue("server" if backend == "sqlite" else "redis_backed_server")

    stats = load_run(server, 2000)

    with capsys.disabled():
        print(
            f"\n[load {backend}] {stats['requests']} requests, {stats['errors']} errors, "
            f"p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms, "
            f"{stats['req_per_s']:.0f} req/s"
        )
    assert (stats["requests"], stats["errors"]) == (2000, 0)


# -- the serve job ------------------------------------------------------------------------------


@contextmanager
def serve_job(tmp_path: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``jobs/serve.py`` on the project's configuration, answering ``/health``; SIGTERM at exit.

    The process's exit code is in ``returncode`` afterwards.
    """
    env = dict(os.environ, FEATURELAKE_ROOT=str(tmp_path / "lake"))
    process = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT / "jobs" / "serve.py"),
            "--conf-dir",
            str(PROJECT / "conf"),
            "--conf",
            f"lakehouse.root={tmp_path / 'lake'}",
            "--port",
            str(port),
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "serve did not start within 60 s"
                time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_job_starts_from_conf_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with serve_job(tmp_path, port) as process:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        refused = httpx.post(f"http://127.0.0.1:{port}/features", json=RFM, timeout=5)

    assert health.status_code == 200
    assert refused.status_code == 401
    # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it.
    assert process.returncode in (0, -signal.SIGTERM)
    assert (tmp_path / "lake" / "ops" / "serving_audit.jsonl").is_file()


def test_serve_job_workers_each_accept_a_share_of_new_connections(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/health/details"
    admin = {"X-API-Key": "demo-admin-key-00004"}
    clients = 64
    opened_together = threading.Barrier(clients)

    def which_worker(_: int) -> int:
        with httpx.Client(timeout=10) as client:  # one connection of a pool opened at once
            opened_together.wait()
            return int(client.get(url, headers=admin).json()["worker_pid"])

    with serve_job(tmp_path, port, "--workers", "2") as process:
        with ThreadPoolExecutor(clients) as pool:
            per_worker = Counter(pool.map(which_worker, range(clients)))

    assert len(per_worker) == 2 and process.pid not in per_worker, per_worker
    # Placed by a hash of each connection's ports, 64 connections split 32/32 on average; fewer
    # than 16 on one worker is 4 standard deviations out (p < 1e-4).
    assert min(per_worker.values()) >= 16, per_worker
    assert process.returncode == 0, process.stderr.read().decode()[-2000:]


def test_serve_job_says_so_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                str(PROJECT / "jobs" / "serve.py"),
                "--conf-dir",
                str(PROJECT / "conf"),
                "--conf",
                f"lakehouse.root={tmp_path / 'lake'}",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            cwd=tmp_path,
            env=dict(os.environ, FEATURELAKE_ROOT=str(tmp_path / "lake")),
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


# -- access configuration -----------------------------------------------------------------------


def test_project_serving_conf_validates_against_the_declared_views() -> None:
    from featurelake.core.config import load_settings
    from featurelake.feature_store.auth import Authorizer
    from featurelake.feature_store.definitions import load_feature_views
    from featurelake.feature_store.online import load_serving_config

    settings = load_settings(PROJECT / "conf", "local")
    config = load_serving_config(settings)

    authorizer = Authorizer(config.access, load_feature_views(settings))
    assert config.online_store.sqlite_path.startswith(settings.lakehouse.root)
    assert authorizer.readable_views("analyst")


def test_api_key_with_an_unknown_role_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown role 'ghost'"):
        AccessConfig(roles={}, api_keys=(ApiKeyConfig(id="k", role="ghost", key="x" * 20),))


def test_short_api_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        ApiKeyConfig(id="k", role="r", key="short")


def test_grant_on_a_feature_that_is_not_pii_is_rejected() -> None:
    from featurelake.feature_store.auth import Authorizer

    access = AccessConfig(
        roles={"r": RoleConfig(views=("credit_profile",), pii_grants=("credit_profile:limit_bal",))}
    )

    with pytest.raises(ValueError, match="not PII"):
        Authorizer(access, VIEWS)


def test_role_listing_an_undeclared_view_is_rejected() -> None:
    from featurelake.feature_store.auth import Authorizer

    with pytest.raises(ValueError, match="undeclared view"):
        Authorizer(AccessConfig(roles={"r": RoleConfig(views=("nope",))}), VIEWS)


def test_serving_conf_error_names_the_file_and_key(tmp_path: Path) -> None:
    from featurelake.core.config import ConfigError, Settings
    from featurelake.feature_store.online import load_serving_config

    bad = tmp_path / "serving.yaml"
    bad.write_text("online_store: {type: memcached}\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"serving.yaml: online_store.type"):
        load_serving_config(Settings(), bad)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "server: {max_body_bytes: 10}",
            "server.max_body_bytes: Input should be greater than or equal to 1024",
        ),
        (
            "server: {max_body_bytes: 1073741824}",
            "server.max_body_bytes: Input should be less than or equal to 67108864",
        ),
        (
            "server: {retry_after_seconds: 0}",
            "server.retry_after_seconds: Input should be greater than or equal to 1",
        ),
        ("server: {expose_docs: maybe}", "server.expose_docs: Input should be a valid boolean"),
        (
            "access: {roles: {ops: {health_details: maybe}}}",
            "access.roles.ops.health_details: Input should be a valid boolean",
        ),
    ],
)
def test_invalid_serving_setting_names_the_file_and_key(
    tmp_path: Path, text: str, problem: str
) -> None:
    from featurelake.core.config import ConfigError, Settings
    from featurelake.feature_store.online import load_serving_config

    bad = tmp_path / "serving.yaml"
    bad.write_text(text + "\n", encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_serving_config(Settings(), bad)
    assert str(raised.value).startswith(f"{bad}: {problem}")
