"""The serving API's /dashboard: the monitoring page for roles with ``dashboard: true``."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
from featurelake.feature_store.auth import AccessConfig, ApiKeyConfig, RoleConfig
from featurelake.feature_store.online import SqliteOnlineStore
from featurelake.feature_store.online.config import ServerConfig, ServingConfig
from featurelake.feature_store.server import create_app, running_server
from featurelake.monitoring.dashboard import render_dashboard
from featurelake.monitoring.report import DashboardData

KEYS = {"monitor": "monitor-secret-key-0001", "analyst": "analyst-secret-key-0002"}
ACCESS = AccessConfig(
    roles={"monitor": RoleConfig(dashboard=True), "analyst": RoleConfig()},
    api_keys=(
        ApiKeyConfig(id="monitor-test", role="monitor", key=KEYS["monitor"]),
        ApiKeyConfig(id="analyst-test", role="analyst", key=KEYS["analyst"]),
    ),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard-serving")
    page = tmp / "dashboard.html"
    page.write_text(render_dashboard(DashboardData(datetime(2026, 12, 6, tzinfo=timezone.utc))))
    config = ServingConfig(server=ServerConfig(audit_log=str(tmp / "audit.jsonl")), access=ACCESS)
    app = create_app(config, {}, SqliteOnlineStore(tmp / "online.db"), str(page))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def test_the_monitor_role_gets_the_page(served):
    answer = served.get("/dashboard", headers={"X-API-Key": KEYS["monitor"]})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "<title>featurelake monitoring</title>" in answer.text


def test_a_role_without_the_grant_is_refused(served):
    answer = served.get("/dashboard", headers={"X-API-Key": KEYS["analyst"]})
    assert answer.status_code == 403
    assert "dashboard: true" in answer.json()["detail"]


def test_no_key_is_unauthorised(served):
    assert served.get("/dashboard").status_code == 401
