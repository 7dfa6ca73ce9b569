"""Stress: two bronze runs in separate processes over the same new files, twenty rounds.

The issue's check: "Two concurrent bronze runs over the same new files (tables existing),
repeated 20 times: every line exactly once each time." The tables are created by one run in
this process; then each round lands new files (distinct invoice numbers) and starts two
``jobs/bronze.py`` processes at the same moment. Both must exit 0, bronze must hold every
landed line exactly once and the ingest ledger each file once.

Whether the two runs overlapped shows in their logs: a run that planned before the other
committed loses its claim (``bronze_claim_lost``), plans again and finds nothing new; a run
that planned after the other committed finds nothing new at once. The per-round table is
printed (``-s`` shows it).

Opt-in (about a minute per round on two shared cores: two Spark drivers start per round):

    ./test.sh -m stress -s tests/test_stress_concurrency.py
    FEATURELAKE_STRESS_ROUNDS=3 ./test.sh -m stress -s tests/test_stress_concurrency.py
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from featurelake.core.pipeline import load_job_module
from featurelake.core.runner import run_job
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]
BRONZE = load_job_module("bronze")
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ROUNDS = int(os.environ.get("FEATURELAKE_STRESS_ROUNDS", "20"))
FILES_PER_ROUND = 2
LINES_PER_FILE = 300
CHILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class ChildRun:
    """What one bronze process did, from its exit code and JSON log lines."""

    code: int
    backend: str | None
    claims_lost: int
    rows_ingested: int | None
    errors: list[str]


def _lines(first: int, n: int) -> list[str]:
    return [
        f'{first + i},85123A,"HEART, WHITE",{i % 7 + 1},2010-12-01 08:26:00,2.55,'
        f"{17850 + i % 3},United Kingdom"
        for i in range(n)
    ]


def _land(root: Path, name: str, first: int) -> list[str]:
    lines = _lines(first, LINES_PER_FILE)
    folder = root / "landing" / "online_retail"
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / name, "wt", encoding="utf-8") as handle:
        handle.write("\n".join([HEADER, *lines]) + "\n")
    return [str(first + i) for i in range(LINES_PER_FILE)]


def _args(root: Path) -> list[str]:
    return [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={root / 'lake'}",
        "--conf",
        f"lakehouse.landing={root / 'landing'}",
        "--conf",
        "spark.master=local[1]",
        "--source",
        "online_retail",
    ]


def _start_child(root: Path) -> subprocess.Popen[str]:
    # JSON log lines on stderr (by default they go to a file and the terminal gets a summary).
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "FEATURELAKE_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "bronze.py"), *_args(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> ChildRun:
    _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
    events = []
    other = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            events.append(event)
        elif "Stage " not in line:  # Spark's progress bar
            other.append(line)
    summary = next((e.get("fields", {}) for e in events if e.get("event") == "run_summary"), {})
    started = next((e.get("fields", {}) for e in events if e.get("event") == "job_started"), {})
    return ChildRun(
        code=child.returncode,
        backend=started.get("backend"),
        claims_lost=sum(1 for e in events if e.get("event") == "bronze_claim_lost"),
        rows_ingested=summary.get("online_retail.rows_ingested"),
        # What a failed run said: its error log lines and whatever it printed besides them.
        errors=[json.dumps(e)[:2000] for e in events if e.get("level") in ("ERROR", "CRITICAL")]
        + other[-40:],
    )


def _overlap(runs: list[ChildRun]) -> str:
    if any(run.claims_lost for run in runs):
        return "claim lost"
    if sorted(run.rows_ingested or 0 for run in runs)[0] == 0:
        return "one after the other"
    return "both ingested"


@pytest.mark.stress
def test_two_concurrent_bronze_processes_ingest_every_line_once_twenty_rounds(spark, tmp_path):
    lake = tmp_path / "lake"
    expected = _land(tmp_path, "seed.csv.gz", 100_000)
    assert (
        run_job(
            "bronze",
            BRONZE.main,
            argv=_args(tmp_path),
            add_arguments=BRONZE.add_arguments,
            spark=spark,
        )
        == 0
    )  # the tables exist
    landed = [str(tmp_path / "landing" / "online_retail" / "seed.csv.gz")]
    table = []
    started_all = time.monotonic()
    for round_ in range(ROUNDS):
        for k in range(FILES_PER_ROUND):
            name = f"r{round_:02d}{k}.csv.gz"
            expected += _land(tmp_path, name, 1_000_000 + round_ * 10_000 + k * 1_000)
            landed.append(str(tmp_path / "landing" / "online_retail" / name))
        started = time.monotonic()
        children = [_start_child(tmp_path), _start_child(tmp_path)]
        runs = [_finish(child) for child in children]
        seconds = time.monotonic() - started
        table.append(
            (
                round_,
                seconds,
                _overlap(runs),
                [r.claims_lost for r in runs],
                [r.rows_ingested for r in runs],
                [r.backend for r in runs],
            )
        )

        assert [r.code for r in runs] == [0, 0], f"round {round_}: " + "\n".join(
            line for r in runs if r.code for line in r.errors
        )
        bronze = spark.read.format("delta").load(str(lake / "bronze" / "online_retail"))
        per_invoice = {
            r["InvoiceNo"]: r["n"]
            for r in bronze.groupBy("InvoiceNo").agg(F.count("*").alias("n")).collect()
        }
        assert sorted(per_invoice) == sorted(expected), f"round {round_}: lines lost or foreign"
        twice = {k: n for k, n in per_invoice.items() if n != 1}
        assert not twice, f"round {round_}: lines ingested more than once: {list(twice)[:5]}"
        ledger = spark.read.format("delta").load(str(lake / "bronze" / "_ingested_files"))
        assert Counter(r["path"] for r in ledger.collect()) == Counter(landed), f"round {round_}"
        ingested = sum(r.rows_ingested or 0 for r in runs)
        assert ingested == FILES_PER_ROUND * LINES_PER_FILE, (round_, runs)

    total = time.monotonic() - started_all
    print(f"\n{ROUNDS} rounds in {total:.0f} s")
    print("round  seconds  overlap               claims lost  rows ingested  backends")
    for round_, seconds, overlap, lost, rows, backends in table:
        print(f"{round_:5d}  {seconds:7.1f}  {overlap:20s}  {lost!s:11s}  {rows!s:13s}  {backends}")
    print(dict(Counter(row[2] for row in table)))
