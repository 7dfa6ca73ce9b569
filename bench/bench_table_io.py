"""Write the same DataFrame as Delta (this project's table I/O) and as plain Spark Parquet.

    .venv/bin/python bench/bench_table_io.py [--rows 5000000] [--repeat 3]

Prints write seconds for each, the Delta/Parquet ratio (target <= 1.1x), the commit overhead,
and read-back seconds (full scan with a sum, so every column is decoded).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from featurelake.config import SparkSettings
from featurelake.session import build_spark_session
from featurelake.delta import DeltaTables
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spark = build_spark_session(
        "bench-table-io", SparkSettings(master="local[*]", shuffle_partitions=8)
    )
    # Materialise the input once so both writers time only the write.
    df = make_frame(spark, args.rows).repartition(8).cache()
    df.count()
    tables = DeltaTables(spark, backend="auto")
    work = Path(tempfile.mkdtemp(prefix="bench-table-io-"))
    parquet_times, delta_times, read_parquet, read_delta = [], [], [], []
    try:
        for i in range(args.repeat):
            # Alternate the order so neither writer always runs on a warmer JVM.
            for kind in ("parquet", "delta") if i % 2 == 0 else ("delta", "parquet"):
                target = str(work / f"{kind}-{i}")
                started = time.perf_counter()
                if kind == "parquet":
                    df.write.parquet(target)
                    parquet_times.append(time.perf_counter() - started)
                else:
                    tables.write(df, target)
                    delta_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            spark.read.parquet(str(work / f"parquet-{i}")).agg(
                F.sum("amount"), F.count("*")
            ).collect()
            read_parquet.append(time.perf_counter() - started)
            started = time.perf_counter()
            tables.read(str(work / f"delta-{i}")).agg(F.sum("amount"), F.count("*")).collect()
            read_delta.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_p, best_d = min(parquet_times), min(delta_times)
    print(f"rows: {args.rows:,}  backend: {tables.backend}  repeats: {args.repeat}")
    print(f"write parquet  best {best_p:6.2f}s  all {[round(t, 2) for t in parquet_times]}")
    print(f"write delta    best {best_d:6.2f}s  all {[round(t, 2) for t in delta_times]}")
    print(
        f"write ratio delta/parquet: {best_d / best_p:.3f}x (target <= 1.1x); "
        f"commit overhead ~{best_d - best_p:+.2f}s"
    )
    print(
        f"read  parquet  best {min(read_parquet):6.2f}s   delta best {min(read_delta):6.2f}s   "
        f"ratio {min(read_delta) / min(read_parquet):.3f}x"
    )
    print(f"write throughput delta: {args.rows / best_d:,.0f} rows/s")
    spark.stop()


if __name__ == "__main__":
    main()
