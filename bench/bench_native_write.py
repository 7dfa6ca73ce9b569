"""Where a native Delta write's time goes, against plain Parquet: the statistics and the rest.

    .venv/bin/python bench/bench_native_write.py [--rows 5000000] [--repeat 3]

One session, bench_table_io.py's frame (cached first). Best of ``--repeat`` for: a plain Parquet
write; ``df.write.format("delta")``; the same with delta-spark's per-file statistics off
(``spark.databricks.delta.stats.collect=false``); ``DeltaTables.write`` on the native backend.
Then reads (sum and count) of the Parquet and Delta tables: ``load()``, ``versionAsOf`` and
``DeltaTables.read``. Needs delta-spark's jar.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from featurelake.core.config import DeltaSettings
from featurelake.delta import DeltaTables, native_delta_available
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_table_io import make_frame, rows_repeat_and_session  # noqa: E402


def best_of(repeat: int, run: Callable[[int], object]) -> float:
    """The shortest of ``repeat`` timed calls of ``run(i)``."""
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    args, spark = rows_repeat_and_session("bench-native-write", DeltaSettings(backend="native"))
    if not native_delta_available(spark):
        print("native Delta unavailable: delta-spark's jar could not be had (see the log)")
        return 1
    df = make_frame(spark, args.rows).repartition(8).cache()
    df.count()
    tables = DeltaTables(spark, backend="native")
    work = Path(tempfile.mkdtemp(prefix="bench-native-write-"))
    stats_key = "spark.databricks.delta.stats.collect"

    def without_stats(i: int) -> None:
        spark.conf.set(stats_key, "false")
        try:
            df.write.format("delta").save(str(work / f"nostats{i}"))
        finally:
            spark.conf.unset(stats_key)

    def total(frame) -> None:
        frame.agg(F.sum("amount"), F.count("*")).collect()

    try:
        writes = {
            "parquet": best_of(args.repeat, lambda i: df.write.parquet(str(work / f"p{i}"))),
            "delta, statistics on": best_of(
                args.repeat, lambda i: df.write.format("delta").save(str(work / f"d{i}"))
            ),
            "delta, statistics off": best_of(args.repeat, without_stats),
            "DeltaTables.write (native)": best_of(
                args.repeat, lambda i: tables.write(df, str(work / f"w{i}"))
            ),
        }
        delta = str(work / "d0")
        reads = {
            "parquet": best_of(args.repeat, lambda i: total(spark.read.parquet(str(work / "p0")))),
            "delta load()": best_of(
                args.repeat, lambda i: total(spark.read.format("delta").load(delta))
            ),
            "delta versionAsOf": best_of(
                args.repeat,
                lambda i: total(spark.read.format("delta").option("versionAsOf", 0).load(delta)),
            ),
            "DeltaTables.read": best_of(args.repeat, lambda i: total(tables.read(delta))),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"rows: {args.rows:,}  best of {args.repeat}")
    for name, seconds in writes.items():
        print(f"write {name:28s} {seconds:6.2f}s  {seconds / writes['parquet']:.2f}x Parquet")
    for name, seconds in reads.items():
        print(f"read  {name:28s} {seconds:6.2f}s  {seconds / reads['parquet']:.2f}x Parquet")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
