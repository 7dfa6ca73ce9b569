"""The monitor job end to end: real Spark, real Delta, a real webhook receiver, real Chromium.

One lake for the module: ``gold/credit_features`` built from the synthetic generator's credit
lines (version 0: the reference; version 1: a later batch generated with ``--shift
LIMIT_BAL=1.6``; version 2: a later batch without shift), and a bronze ingest ledger where one
source stopped arriving three days ago. Four monitor runs an hour apart:

1. drift on limit_bal and the stale source raise alerts;
2. nothing changed: nothing is sent again;
3. the receiver is down and limit_bal is back to normal: the run still succeeds, the alert
   waits in the outbox;
4. the receiver is back: the waiting alert is delivered.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from alert_receiver import AlertReceiver
from featurelake.core.config import SyntheticSettings
from featurelake.core.runner import execute_job
from featurelake.delta import DeltaTables
from featurelake.devtools.synthetic import credit_client_lines
from featurelake.jobs import load_job
from featurelake.lakehouse.bronze.schema import INGESTED_FILES_SCHEMA
from pyspark.sql import functions as F

CONF = Path(__file__).resolve().parents[1] / "conf"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AS_OF = datetime.now(timezone.utc).replace(microsecond=0)
MONITORED = ["limit_bal", "age", "sex", "education", "marriage"]


def _credit_features(spark, seed: int, shift: dict | None = None):
    """Credit feature columns parsed from the generator's lines (no dirt)."""
    settings = SyntheticSettings(
        seed=seed,
        credit_clients=3000,
        duplicate_rate=0,
        malformed_rate=0,
        out_of_range_code_rate=0,
    )
    lines = spark.range(0, 3000, 1, 1).transform(
        credit_client_lines, settings=settings, files=1, shift=shift
    )
    fields = F.split("value", ",")
    return lines.filter(~F.col("value").startswith("ID")).select(
        fields[0].cast("long").alias("id"),
        fields[1].cast("double").alias("limit_bal"),
        fields[2].cast("int").alias("sex"),
        fields[3].cast("int").alias("education"),
        fields[4].cast("int").alias("marriage"),
        fields[5].cast("int").alias("age"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(tmp: Path, webhook: str) -> Path:
    conf = tmp / "conf"
    shutil.copytree(CONF, conf)
    shipped = yaml.safe_load((CONF / "monitoring.yaml").read_text())
    monitoring = {
        "drift": shipped["drift"],
        "tables": [
            {
                "table": "gold/credit_features",
                "columns": MONITORED,
                "categorical": ["sex", "education", "marriage"],
                "reference": {"kind": "version", "version": 0},
            }
        ],
        "freshness": {"sources": {"online_retail": "1d", "customer_profiles": "7d"}},
        "alerts": {
            "cooldown": "6h",
            "sinks": [
                {"type": "jsonl", "path": "ops/monitoring/alerts.jsonl"},
                {
                    "type": "webhook",
                    "url": webhook,
                    "timeout_seconds": 1,
                    "retries": 1,
                    "backoff_seconds": 0.1,
                },
            ],
        },
    }
    (conf / "monitoring.yaml").write_text(yaml.safe_dump(monitoring))
    return conf


def _ledger(spark, root: Path) -> None:
    def row(source: str, modified: datetime) -> tuple:
        stamp = modified.replace(tzinfo=None)
        given = (source, f"/landing/{source}/f1", 10, stamp, "x", "b1", 10, "ingested", stamp)
        return given + (None,) * (len(INGESTED_FILES_SCHEMA) - len(given))  # error, cursors

    rows = [
        row("online_retail", AS_OF - timedelta(days=3)),
        row("customer_profiles", AS_OF - timedelta(hours=1)),
    ]
    frame = spark.createDataFrame(rows, INGESTED_FILES_SCHEMA)
    DeltaTables(spark).write(frame, str(root / "bronze" / "_ingested_files"))


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitor")
    root = tmp / "lake"
    receiver = AlertReceiver(_free_port())
    conf = _conf(tmp, receiver.url)
    tables = DeltaTables(spark)
    table = str(root / "gold" / "credit_features")
    tables.write(_credit_features(spark, seed=1), table)
    tables.write(_credit_features(spark, seed=2, shift={"LIMIT_BAL": 1.6}), table, "overwrite")
    _ledger(spark, root)
    job = load_job("monitor")

    def monitor(hours: int, *extra: str):
        argv = [
            "--conf-dir",
            str(conf),
            "--conf",
            f"lakehouse.root={root}",
            "--as-of",
            (AS_OF + timedelta(hours=hours)).isoformat(),
            *extra,
        ]
        started = time.monotonic()
        outcome = execute_job("monitor", job.main, argv, job.add_arguments, spark)
        return outcome, time.monotonic() - started

    receiver.start()
    try:
        first, _ = monitor(0)
        after_first = list(receiver.received)
        second, _ = monitor(1)
        after_second = list(receiver.received)
    finally:
        receiver.stop()
    tables.write(_credit_features(spark, seed=3), table, "overwrite")
    down, down_seconds = monitor(2)
    after_down = list(receiver.received)
    receiver.start()
    try:
        back, _ = monitor(3)
    finally:
        receiver.stop()
    results = tables.read(str(root / "ops" / "monitor_results")).collect()
    yield {
        "root": root,
        "conf": conf,
        "monitor": monitor,
        "outcomes": [first, second, down, back],
        "down_seconds": down_seconds,
        "received": [after_first, after_second, after_down, list(receiver.received)],
        "results": [r.asDict() for r in results],
    }


def _run_results(runs, index: int) -> list[dict]:
    checked = sorted({r["checked_at"] for r in runs["results"]})[index]
    return [r for r in runs["results"] if r["checked_at"] == checked]


def test_every_run_succeeds_without_failed_checks(runs):
    assert [o.code for o in runs["outcomes"]] == [0, 0, 0, 0]
    assert not [r for r in runs["results"] if r["status"] == "error"]


def test_the_shifted_feature_is_critical_and_no_other_feature_drifts(runs):
    drift = {r["column"]: r["status"] for r in _run_results(runs, 0) if r["check"] == "drift"}
    assert drift == {
        "limit_bal": "critical",
        "age": "ok",
        "sex": "ok",
        "education": "ok",
        "marriage": "ok",
    }


def test_a_source_that_stopped_arriving_is_stale(runs):
    freshness = {
        r["subject"]: (r["status"], r["detail"])
        for r in _run_results(runs, 0)
        if r["check"] == "freshness" and r["subject"].startswith("source/")
    }
    assert freshness["source/online_retail"][0] == "critical"
    assert freshness["source/online_retail"][1].startswith("stale: newest data is 3.00 days old")
    assert freshness["source/customer_profiles"][0] == "ok"


def test_each_condition_reaches_the_webhook_exactly_once(runs):
    first = runs["received"][0]
    bad = {
        (r["check"], r["subject"])
        for r in _run_results(runs, 0)
        if r["status"] in ("warning", "critical", "error")
    }
    assert ("drift", "gold/credit_features:limit_bal") in bad
    assert sorted((b["check"], b["subject"]) for b in first) == sorted(bad)
    assert runs["received"][1] == first  # the second run changed nothing, sent nothing


def test_a_dead_receiver_neither_fails_nor_stalls_the_run_and_gets_the_alert_later(runs):
    down = runs["outcomes"][2]
    assert down.code == 0
    assert down.summary["deliveries"]["webhook"] == {"delivered": 0, "pending": 1}
    assert runs["down_seconds"] < 120
    assert runs["received"][2] == runs["received"][1]
    late = runs["received"][3][len(runs["received"][2]) :]
    assert [(b["subject"], b["status"], b["previous_status"]) for b in late] == [
        ("gold/credit_features:limit_bal", "ok", "critical")
    ]
    assert runs["outcomes"][3].summary["deliveries"]["webhook"] == {"delivered": 1, "pending": 0}


def test_the_dashboard_renders_in_headless_chromium(runs, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found at {CHROMIUM} (Debian package 'chromium')")
    page = tmp_path / "dashboard.html"
    outcome, _ = runs["monitor"](4, "report", "--out", str(page))
    assert outcome.code == 0
    html = page.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    for text in (
        "featurelake monitoring",
        "Needs attention",
        "source/online_retail",
        "Drift by table and feature",
        "gold/credit_features",
        "limit_bal",
        "Recent alerts",
        "[RESOLVED] drift gold/credit_features:limit_bal",
    ):
        assert text in dom, text
    assert dom.count('aria-label="histogram of') == len(MONITORED)
    screenshot = tmp_path / "dashboard.png"
    subprocess.run(
        [*browser, "--window-size=1280,1800", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert screenshot.stat().st_size > 10_000
