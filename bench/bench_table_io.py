"""Write the same DataFrame as native Delta, as delta-rs-committed Delta and as plain Parquet.

    .venv/bin/python bench/bench_table_io.py [--rows 5000000] [--repeat 3]

All three in one session, alternating their order each repeat. Prints write seconds for
each, each Delta/Parquet ratio (target for native Delta <= 1.1x), the commit overhead, and
read-back seconds (a full scan with a sum, so every column is decoded). Native Delta is
skipped, with the reason, when delta-spark's jar cannot be had.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from featurelake.core.config import DeltaSettings, SparkSettings
from featurelake.core.session import build_spark_session
from featurelake.delta import DeltaTables, native_delta_available
from pyspark.sql import functions as F


def make_frame(spark, rows: int):
    """A customer-transaction-like frame: long, int, double, decimal, string, date, timestamp."""
    return (
        spark.range(rows)
        .withColumn("customer_id", (F.col("id") % 100_000).cast("int"))
        .withColumn("amount", (F.rand(7) * 500).cast("double"))
        .withColumn("price", (F.rand(11) * 100).cast("decimal(12,2)"))
        .withColumn(
            "country",
            F.element_at(
                F.array(*[F.lit(c) for c in ["UK", "France", "Germany", "Spain", "EIRE"]]),
                (F.col("id") % 5 + 1).cast("int"),
            ),
        )
        .withColumn("is_return", F.col("id") % 17 == 0)
        .withColumn("ts", F.timestamp_seconds(F.lit(1_290_000_000) + F.col("id") % 31_536_000))
        .withColumn("day", F.to_date("ts"))
    )


def rows_repeat_and_session(app: str, delta: DeltaSettings) -> tuple[argparse.Namespace, Any]:
    """``--rows`` and ``--repeat`` from the command line, and the benchmark's session."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spark = build_spark_session(app, SparkSettings(master="local[*]", shuffle_partitions=8), delta)
    return args, spark


def main() -> None:
    args, spark = rows_repeat_and_session("bench-table-io", DeltaSettings())
    # Materialise the input once so every writer times only the write.
    df = make_frame(spark, args.rows).repartition(8).cache()
    df.count()
    writers = {"delta-rs": DeltaTables(spark, backend="delta-rs")}
    if native_delta_available(spark):
        writers = {"native": DeltaTables(spark, backend="native"), **writers}
    else:
        print("native Delta skipped: delta-spark's jar could not be had (see the log line above)")
    kinds = ["parquet", *writers]
    work = Path(tempfile.mkdtemp(prefix="bench-table-io-"))
    writes: dict[str, list[float]] = {k: [] for k in kinds}
    reads: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for i in range(args.repeat):
            # Rotate the order so no writer always runs on a warmer JVM.
            order = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]
            for kind in order:
                target = str(work / f"{kind}-{i}")
                started = time.perf_counter()
                if kind == "parquet":
                    df.write.parquet(target)
                else:
                    writers[kind].write(df, target)
                writes[kind].append(time.perf_counter() - started)
            for kind in order:
                target = str(work / f"{kind}-{i}")
                started = time.perf_counter()
                frame = (
                    spark.read.parquet(target) if kind == "parquet" else writers[kind].read(target)
                )
                frame.agg(F.sum("amount"), F.count("*")).collect()
                reads[kind].append(time.perf_counter() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: min(v) for k, v in writes.items()}
    print(f"rows: {args.rows:,}  repeats: {args.repeat}")
    for kind in kinds:
        print(
            f"write {kind:9s} best {best[kind]:6.2f}s  all {[round(t, 2) for t in writes[kind]]}"
            f"  read best {min(reads[kind]):6.2f}s  {args.rows / best[kind]:,.0f} rows/s"
        )
    for kind in writers:
        target = " (target <= 1.1x)" if kind == "native" else ""
        print(
            f"write ratio {kind}/parquet: {best[kind] / best['parquet']:.3f}x{target}; "
            f"commit overhead ~{best[kind] - best['parquet']:+.2f}s; read ratio "
            f"{min(reads[kind]) / min(reads['parquet']):.3f}x"
        )
    spark.stop()


if __name__ == "__main__":
    main()
