"""A job killed at each commit point, then run again: every row exactly once, pairs in step.

Each case runs the job in a child process that dies (``os._exit``, as SIGKILL) just before
its Nth table commit - or runs to its end - then reruns it here and checks the tables. The
bronze job commits the batch, then its ledger entries; the silver job (one table) commits
the quality metrics, then the quarantine, then silver.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from featurelake.core.pipeline import load_job_module
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.lakehouse.silver import read_silver, read_silver_pair
from pyspark.sql import functions as F

pytestmark = pytest.mark.scenario  # about six minutes of child processes: opt-in

ROOT = Path(__file__).resolve().parents[1]
BRONZE = load_job_module("bronze")
SILVER = load_job_module("silver")
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
AS_OF = "2012-01-01T00:00:00"


def _lines(first: int, n: int) -> list[str]:
    """n distinct invoice lines; every fifth one has no customer (quarantined by silver)."""
    return [
        f"{first + i},85123A,HEART,{i % 7 + 1},2010-12-01 08:26:00,2.55,"
        f"{'' if i % 5 == 0 else 17850 + i % 3},United Kingdom"
        for i in range(n)
    ]


def _land(root: Path, name: str, lines: list[str]) -> None:
    folder = root / "landing" / "online_retail"
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / name, "wt", encoding="utf-8") as handle:
        handle.write("\n".join([HEADER, *lines]) + "\n")


def _args(root: Path, job: str) -> list[str]:
    args = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={root / 'lake'}",
        "--conf",
        f"lakehouse.landing={root / 'landing'}",
        "--conf",
        "spark.master=local[1]",
        "--conf",
        "spark.shuffle_partitions=2",
    ]
    if job == "bronze":
        return [*args, "--source", "online_retail"]
    return [*args, "--table", "transactions", "--as-of", AS_OF]


def _in_process(spark, root: Path, job: str) -> int:
    module = BRONZE if job == "bronze" else SILVER
    return run_job(
        job, module.main, argv=_args(root, job), add_arguments=module.add_arguments, spark=spark
    )


def _killed_at(root: Path, job: str, commit: int) -> int:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "crash_job.py"), str(commit), job, *_args(root, job)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode


# (commit the child dies before, what that point is)
BRONZE_POINTS = [
    (1, "before the bronze commit"),
    (2, "between bronze and ledger"),
    (3, "after both commits"),
]
SILVER_POINTS = [
    (1, "before the metrics"),
    (2, "between metrics and quarantine"),
    (3, "between quarantine and silver"),
    (4, "after every commit"),
]


@pytest.mark.parametrize(("commit", "point"), BRONZE_POINTS, ids=[p for _, p in BRONZE_POINTS])
def test_bronze_killed_at_a_commit_point_then_rerun_holds_every_line_once(
    spark, tmp_path, commit, point
):
    _land(tmp_path, "a.csv.gz", _lines(500000, 30))
    assert _in_process(spark, tmp_path, "bronze") == 0  # the tables exist
    _land(tmp_path, "b.csv.gz", _lines(600000, 20))
    code = _killed_at(tmp_path, "bronze", commit)
    assert code == (0 if commit == 3 else 137), point
    assert _in_process(spark, tmp_path, "bronze") == 0
    tables = DeltaTables(spark)
    bronze = tables.read(str(tmp_path / "lake" / "bronze" / "online_retail"), record=False)
    invoices = [r["InvoiceNo"] for r in bronze.collect()]
    assert sorted(invoices) == sorted(
        [str(500000 + i) for i in range(30)] + [str(600000 + i) for i in range(20)]
    )
    ledger = tables.read(str(tmp_path / "lake" / "bronze" / "_ingested_files"), record=False)
    rows = {Path(r["path"]).name: (r["rows"], r["status"]) for r in ledger.collect()}
    assert ledger.count() == 2
    assert rows == {"a.csv.gz": (30, "ingested"), "b.csv.gz": (20, "ingested")}


def _reconciles(spark, lake: Path) -> tuple[str | None, int]:
    """Check bronze (at the pair's version) = silver + quarantine; return (run, bronze v)."""
    tables = DeltaTables(spark)
    pair = read_silver_pair(
        tables,
        str(lake / "silver" / "transactions"),
        str(lake / "silver" / "transactions_quarantine"),
    )
    bronze = tables.read(str(lake / "bronze" / "online_retail"), version=pair.bronze_version)
    # The generated lines hold no duplicate: every bronze row is clean or quarantined.
    assert bronze.count() == pair.silver.count() + pair.quarantine.count()
    assert pair.quarantine.where(F.col("_run_id") != pair.run_id).count() == 0
    read_silver(
        tables,
        str(lake / "silver" / "transactions"),
        str(lake / "silver" / "transactions_quarantine"),
    )  # gold's read: no error
    metrics = tables.read(str(lake / "ops" / "quality_metrics"), record=False)
    assert (
        metrics.where((F.col("table") == "transactions") & (F.col("run_id") == pair.run_id)).count()
        > 0
    )
    return pair.run_id, pair.bronze_version


@pytest.mark.parametrize(("commit", "point"), SILVER_POINTS, ids=[p for _, p in SILVER_POINTS])
def test_silver_killed_at_a_commit_point_keeps_its_pair_in_step_and_reruns_clean(
    spark, tmp_path, commit, point
):
    lake = tmp_path / "lake"
    _land(tmp_path, "a.csv.gz", _lines(500000, 30))
    assert _in_process(spark, tmp_path, "bronze") == 0
    assert _in_process(spark, tmp_path, "silver") == 0
    first_run, first_bronze = _reconciles(spark, lake)
    _land(tmp_path, "b.csv.gz", _lines(600000, 20))
    assert _in_process(spark, tmp_path, "bronze") == 0
    code = _killed_at(tmp_path, "silver", commit)
    assert code == (0 if commit == 4 else 137), point
    run, bronze_version = _reconciles(spark, lake)  # readers see a pair in step
    if commit < 4:
        assert (run, bronze_version) == (first_run, first_bronze)  # the killed run unpublished
    assert _in_process(spark, tmp_path, "silver") == 0
    run, bronze_version = _reconciles(spark, lake)
    assert bronze_version == DeltaTables(spark).version(str(lake / "bronze" / "online_retail"))
    silver = DeltaTables(spark).read(str(lake / "silver" / "transactions"), record=False)
    assert silver.count() == 24 + 16  # four in five lines have a customer
