"""Alerts: once per status change, a cool-down against flapping, an outbox for dead receivers."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from alert_receiver import AlertReceiver
from featurelake.monitoring.alerts import (
    conditions,
    decide_alerts,
    deliver_pending,
    post_json,
    queue_alerts,
)
from featurelake.monitoring.config import AlertSettings, WebhookSink
from featurelake.monitoring.results import CheckResult

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)


def drift(status: str, window: str = "2026-12-05") -> CheckResult:
    return CheckResult("drift", "gold/credit_features:limit_bal", status, window=window)


def settings(url: str = "", **alerts) -> AlertSettings:
    sinks = [{"type": "jsonl", "path": "alerts.jsonl"}]
    if url:
        sinks.append(
            {
                "type": "webhook",
                "url": url,
                "timeout_seconds": 1,
                "retries": 1,
                "backoff_seconds": 0,
            }
        )
    return AlertSettings.model_validate({"sinks": sinks, **alerts})


def test_a_condition_is_its_worst_result_and_skipped_results_do_not_count():
    found = conditions([drift("ok", "d1"), drift("critical", "d2"), drift("skipped", "d3")])
    assert {k: r.status for k, r in found.items()} == {
        "drift|gold/credit_features:limit_bal": "critical"
    }


def test_a_change_alerts_once_and_an_unchanged_condition_does_not():
    key = "drift|gold/credit_features:limit_bal"
    first = decide_alerts(conditions([drift("critical")]), {}, [], settings(), now=NOW, run_id="r1")
    assert [(a.status, a.previous_status) for a in first] == [("critical", "ok")]
    again = decide_alerts(
        conditions([drift("critical")]),
        {key: "critical"},
        [(key, "critical", NOW)],
        settings(),
        now=NOW + timedelta(hours=1),
        run_id="r2",
    )
    assert again == []


def test_flapping_within_the_cooldown_alerts_once_per_status():
    key = "drift|gold/credit_features:limit_bal"
    recent = [(key, "critical", NOW), (key, "ok", NOW + timedelta(hours=1))]
    back = decide_alerts(
        conditions([drift("critical")]),
        {key: "ok"},
        recent,
        settings(cooldown="6h"),
        now=NOW + timedelta(hours=2),
        run_id="r3",
    )
    assert back == []
    later = decide_alerts(
        conditions([drift("critical")]),
        {key: "ok"},
        recent,
        settings(cooldown="6h"),
        now=NOW + timedelta(hours=7),
        run_id="r4",
    )
    assert [a.status for a in later] == ["critical"]


def test_repeat_after_raises_an_unchanged_critical_again():
    key = "drift|gold/credit_features:limit_bal"
    repeated = decide_alerts(
        conditions([drift("critical")]),
        {key: "critical"},
        [(key, "critical", NOW)],
        settings(repeat_after="1d"),
        now=NOW + timedelta(days=1, minutes=1),
        run_id="r5",
    )
    assert [(a.status, a.previous_status) for a in repeated] == [("critical", "critical")]


def test_a_resolved_condition_says_so():
    key = "drift|gold/credit_features:limit_bal"
    resolved = decide_alerts(
        conditions([drift("ok")]), {key: "critical"}, [], settings(), now=NOW, run_id="r6"
    )
    assert resolved[0].message.startswith("[RESOLVED] drift gold/credit_features:limit_bal")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_undelivered_alerts_wait_in_the_outbox_and_go_out_once_the_receiver_is_back(tmp_path):
    receiver = AlertReceiver(_free_port())
    config = settings(receiver.url)
    alerts = decide_alerts(conditions([drift("critical")]), {}, [], config, now=NOW, run_id="r1")
    queue_alerts(alerts, config, str(tmp_path / "outbox"))
    started = time.monotonic()
    down = deliver_pending(config, str(tmp_path / "outbox"), str(tmp_path))
    assert time.monotonic() - started < 5  # refused at once, one retry, no stall
    assert {d.sink: (d.delivered, d.pending) for d in down} == {"jsonl": (1, 0), "webhook": (0, 1)}
    receiver.start()
    try:
        up = deliver_pending(config, str(tmp_path / "outbox"), str(tmp_path))
        again = deliver_pending(config, str(tmp_path / "outbox"), str(tmp_path))
    finally:
        receiver.stop()
    assert {d.sink: (d.delivered, d.pending) for d in up} == {"jsonl": (0, 0), "webhook": (1, 0)}
    assert all(d.delivered == 0 for d in again)
    assert [b["alert_id"] for b in receiver.received] == [alerts[0].alert_id]
    assert receiver.received[0]["subject"] == "gold/credit_features:limit_bal"
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["alert_id"] for line in lines] == [alerts[0].alert_id]


def test_a_receiver_that_never_answers_costs_the_timeout_not_a_stall():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        sink = WebhookSink(
            type="webhook",
            url=f"http://127.0.0.1:{silent.getsockname()[1]}/",
            timeout_seconds=0.5,
            retries=1,
            backoff_seconds=0,
        )
        started = time.monotonic()
        error = post_json(sink, {"text": "hello"})
    assert error is not None and "timed out" in error
    assert time.monotonic() - started == pytest.approx(1.0, abs=0.6)
