"""Bronze -> silver -> gold on the two Delta backends, native delta-spark and delta-rs.

    .venv/bin/python bench/bench_backends.py [--transactions 1000000] [--repeat 2]
        [--warmup-runs 1]

Synthetic landing files are generated once (job ``generate-data``, outside the timings; credit
clients at the configured default). Then, in one SparkSession that has delta-spark's classes,
the ``bronze``, ``silver`` and ``gold --no-daily`` jobs run into a fresh lakehouse with
``delta.backend: native``, and again with ``delta.backend: delta-rs``, the backends taking turns
to go first; warm-up runs first (printed, not compared). Printed: each run's seconds per job,
the medians per backend and job, and the ratios native / delta-rs. The machine's load average
is printed at the start and end: on a shared machine the absolute numbers move with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from featurelake.core.config import DeltaSettings, SparkSettings
from featurelake.core.pipeline import load_job_module
from featurelake.core.runner import execute_job
from featurelake.core.session import build_spark_session
from featurelake.delta import native_delta_available

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("bronze", "silver", "gold")
BACKENDS = ("native", "delta-rs")


def _run_job(spark, job: str, argv: list[str]) -> float:
    module = load_job_module(job)
    started = time.perf_counter()
    outcome = execute_job(job, module.main, argv, module.add_arguments, spark)
    if outcome.code != 0:
        raise RuntimeError(f"{job} failed ({outcome.code}): {outcome.summary.get('error')}")
    return time.perf_counter() - started


def _common(lake: Path, landing: Path, backend: str) -> list[str]:
    return [
        "--conf-dir", str(ROOT / "conf"),
        "--conf", f"lakehouse.root={lake}",
        "--conf", f"lakehouse.landing={landing}",
        "--conf", f"delta.backend={backend}",
        "--conf", "logging.level=WARNING",
        "--log-format", "json",
    ]  # fmt: skip


def one_run(spark, work: Path, landing: Path, backend: str, label: str) -> dict[str, float]:
    """bronze, silver, gold into a fresh lakehouse; seconds per job."""
    lake = work / f"lake-{label}"
    shutil.rmtree(lake, ignore_errors=True)
    common = _common(lake, landing, backend)
    seconds = {}
    for job in JOBS:
        extra = ["--no-daily"] if job == "gold" else []
        seconds[job] = _run_job(spark, job, [*common, *extra])
    shutil.rmtree(lake, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--warmup-runs", type=int, default=1)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    os.environ.setdefault("FEATURELAKE_LOG_FORMAT", "json")
    spark = build_spark_session(
        "bench-backends",
        SparkSettings(master="local[*]", shuffle_partitions=8, log_level="ERROR"),
        DeltaSettings(),
    )
    if not native_delta_available(spark):
        raise SystemExit("delta-spark's jar could not be had: nothing to compare")
    work = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    landing = work / "landing"
    try:
        _run_job(
            spark,
            "generate-data",
            [*_common(work / "lake-gen", landing, "delta-rs"),
             "--conf", f"synthetic.transactions={args.transactions}",
             "--conf", "synthetic.end_date=2011-12-09"],
        )  # fmt: skip
        for i in range(args.warmup_runs):
            for backend in BACKENDS:
                took = one_run(spark, work, landing, backend, f"warm-{backend}-{i}")
                print(f"warm-up {backend:8s} {sum(took.values()):7.1f}s  {took}")
        runs: dict[str, list[dict[str, float]]] = {b: [] for b in BACKENDS}
        for i in range(args.repeat):
            order = BACKENDS if i % 2 == 0 else BACKENDS[::-1]
            for backend in order:
                took = one_run(spark, work, landing, backend, f"{backend}-{i}")
                runs[backend].append(took)
                rounded = {k: round(v, 1) for k, v in took.items()}
                print(f"run {i} {backend:8s} {sum(took.values()):7.1f}s  {rounded}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntransactions: {args.transactions:,}  repeats: {args.repeat}")
    medians = {
        b: {job: statistics.median(r[job] for r in runs[b]) for job in JOBS} for b in BACKENDS
    }
    for backend in BACKENDS:
        total = statistics.median(sum(r.values()) for r in runs[backend])
        per_job = "  ".join(f"{job} {medians[backend][job]:6.1f}s" for job in JOBS)
        print(f"median {backend:8s} total {total:7.1f}s  {per_job}")
    totals = {b: statistics.median(sum(r.values()) for r in runs[b]) for b in BACKENDS}
    print(
        f"ratio native/delta-rs: total {totals['native'] / totals['delta-rs']:.2f}x  "
        + "  ".join(
            f"{job} {medians['native'][job] / medians['delta-rs'][job]:.2f}x" for job in JOBS
        )
    )
    print(f"load average at end: {os.getloadavg()}")
    spark.stop()


if __name__ == "__main__":
    main()
