"""Point-in-time retrieval at scale: as_of_join's two methods vs a naive key join baseline.

    .venv/bin/python bench/bench_pit.py [--entity-rows 100000 1000000] [--entities 10000]
        [--days 90] [--ttl-days 7] [--methods sort_merge range_join] [--no-baseline]

Each of ``--methods`` (as_of_join's ``sort_merge``, the default without a known-time filter,
and ``range_join``) is timed, and the results of the methods are compared by an
order-independent checksum of (row, f1, f2, f3) - they must be equal.

Feature rows: ``entities`` x ``days`` daily rows x 3 features, written once to Parquet and read
back (so the timing includes the scan). Entity rows: random entities (1% unknown) at random
times over the same days. Each run computes the full result (``noop`` sink, nothing
collected) and prints seconds, rows/s, and peak memory.

Peak memory is the high-water mark of the resident set (VmHWM) of the driver JVM - in local
mode the executors run inside it, so this is all of Spark's memory - plus the Python
driver's peak RSS. The JVM's mark is since it started (it includes generating the data), so
it is an upper bound for one retrieval; the JVM heap cap is --driver-memory.

The baseline is the textbook method (Feast's Spark offline store has the same shape): join
entity rows and feature rows on the keys, filter to the TTL window, keep row_number() = 1
per entity row ordered by event time, left-join back. It compares every entity row with every
feature row of its key (here ``days`` rows) before filtering.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from featurelake.core.config import SparkSettings
from featurelake.core.session import build_spark_session
from featurelake.feature_store.offline import as_of_join
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

START_SECONDS = 1_704_067_200  # 2024-01-01T00:00:00Z


def feature_rows(spark: SparkSession, entities: int, days: int) -> DataFrame:
    """``entities`` x ``days`` daily rows with three features."""
    return spark.range(entities * days).select(
        (F.col("id") % entities).alias("entity_id"),
        F.timestamp_seconds(
            F.lit(START_SECONDS) + (F.col("id") / entities).cast("long") * 86400
        ).alias("event_ts"),
        F.rand(1).alias("f1"),
        (F.rand(2) * 1000).cast("long").alias("f2"),
        F.rand(3).alias("f3"),
    )


def entity_rows(spark: SparkSession, rows: int, entities: int, days: int) -> DataFrame:
    """Random entities (1% unknown ids) at random microsecond times over ``days`` days."""
    return spark.range(rows).select(
        F.col("id").alias("row"),
        (F.rand(4) * entities * 1.01).cast("long").alias("entity_id"),
        F.timestamp_micros(
            F.lit(START_SECONDS * 1_000_000) + (F.rand(5) * days * 86_400_000_000).cast("long")
        ).alias("ts"),
    )


def baseline_join(entity_df: DataFrame, feature_df: DataFrame, ttl: timedelta) -> DataFrame:
    """Key join, TTL filter, row_number() = 1, left join back (ties not made deterministic)."""
    ids = entity_df.withColumn("_rid", F.monotonically_increasing_id())
    window = F.expr(f"INTERVAL {int(ttl.total_seconds())} SECONDS")
    pairs = (
        ids.alias("e")
        .join(feature_df.alias("f"), "entity_id")
        .where(
            (F.col("f.event_ts") <= F.col("e.ts")) & (F.col("f.event_ts") > F.col("e.ts") - window)
        )
    )
    ranked = (
        pairs.withColumn(
            "_rn",
            F.row_number().over(Window.partitionBy("_rid").orderBy(F.col("f.event_ts").desc())),
        )
        .where("_rn = 1")
        .select("_rid", "f1", "f2", "f3")
    )
    return ids.join(ranked, "_rid", "left").drop("_rid")


def jvm_peak_rss_mb(spark: SparkSession) -> float | None:
    """VmHWM of the driver JVM (Linux), in MB; None when it cannot be read."""
    try:
        pid = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (AttributeError, OSError):
        return None
    return None


def timed(result: DataFrame) -> float:
    started = time.perf_counter()
    result.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entity-rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--ttl-days", type=float, default=7.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["sort_merge", "range_join"],
        choices=["sort_merge", "range_join"],
    )
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    args = parser.parse_args()
    spark = build_spark_session(
        "bench-pit",
        SparkSettings(
            master="local[*]",
            shuffle_partitions=args.shuffle_partitions,
            conf={"spark.driver.memory": args.driver_memory},
        ),
    )
    ttl = timedelta(days=args.ttl_days)
    work = Path(tempfile.mkdtemp(prefix="bench-pit-"))
    try:
        feature_rows(spark, args.entities, args.days).write.parquet(str(work / "features"))
        features = spark.read.parquet(str(work / "features"))
        print(
            f"feature rows: {args.entities} entities x {args.days} days x 3 features "
            f"= {args.entities * args.days:,} rows; ttl {ttl}; cores "
            f"{spark.sparkContext.defaultParallelism}"
        )

        def join(entity_df: DataFrame, method: str) -> DataFrame:
            return as_of_join(
                entity_df,
                features,
                join_keys=["entity_id"],
                entity_timestamp_column="ts",
                event_timestamp_column="event_ts",
                feature_columns=["f1", "f2", "f3"],
                ttl=ttl,
                method=method,  # type: ignore[arg-type]
            )

        # Warm-up (JIT, caches) on a small sample so no method pays it in the timings.
        warm = entity_rows(spark, 20_000, args.entities, args.days)
        for method in args.methods:
            timed(join(warm, method))
        if not args.no_baseline:
            timed(baseline_join(warm, features, ttl))
        for rows in args.entity_rows:
            entity_rows(spark, rows, args.entities, args.days).write.parquet(
                str(work / f"entities-{rows}")
            )
            entities = spark.read.parquet(str(work / f"entities-{rows}"))
            sums = {}
            for method in args.methods:
                seconds = timed(join(entities, method))
                line = (
                    f"as_of_join[{method}]  entity_rows={rows:>9,}  {seconds:8.2f} s  "
                    f"{rows / seconds:>10,.0f} rows/s"
                )
                if not args.no_baseline and method == args.methods[0]:
                    base = timed(baseline_join(entities, features, ttl))
                    line += f"   baseline {base:8.2f} s  ratio as_of/baseline {seconds / base:.2f}"
                print(line, flush=True)
                row_hash = F.xxhash64("row", "f1", "f2", "f3") % F.lit(1 << 40)
                sums[method] = join(entities, method).agg(F.sum(row_hash)).first()[0]
            print(
                f"methods agree on every row (checksum): {len(set(sums.values())) == 1}",
                flush=True,
            )
        jvm = jvm_peak_rss_mb(spark)
        python_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"peak memory: driver JVM RSS {jvm:,.0f} MB (VmHWM since start; local mode, "
            f"executors inside; heap cap {args.driver_memory}); python driver RSS "
            f"{python_mb:,.0f} MB"
            if jvm is not None
            else f"peak memory: python driver RSS {python_mb:,.0f} MB (JVM RSS unavailable)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
