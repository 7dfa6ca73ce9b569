"""Profiling a daily customer feature table against Spark's own ``summary()``, same run.

    .venv/bin/python bench/bench_profile.py [--rows 10000000] [--days 30] [--repeat 3]

A table shaped like ``gold/customer_features_daily`` (the RFM and activity features, country,
one row per customer per as-of day) is generated and written as a Delta table once, outside
the timings. Then, on the same table in one SparkSession, each timed ``--repeat`` times after
one warm-up:

* ``summary``: ``df.summary().collect()`` over the profiled columns (count, mean, stddev, min,
  quartiles, max);
* ``profile``: the monitor's one-pass profile of the same columns over every row (count, nulls,
  distinct estimate, min, max, mean, stddev, a quantile sketch read at 7 quantiles and 99
  percentiles, top values of ``country``);
* ``profile-daily``: the same per as-of day, as the monitor profiles a windowed table.

Printed: each timing, the medians, and the ratios profile / summary (target: at most 1.5). The
load average is printed at the start and end: on a shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from featurelake.core.config import DeltaSettings, SparkSettings
from featurelake.core.session import build_spark_session
from featurelake.delta import DeltaTables
from featurelake.lakehouse.feature_library.customers import customer_feature_columns
from featurelake.monitoring.config import ProfileSettings
from featurelake.monitoring.profile import ProfileRequest, WindowSpec, collect_profiles
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

# The daily customer feature table's numeric features, as gold defines them.
NUMERIC = tuple(
    c
    for c in customer_feature_columns((30, 90, 365))
    if c not in ("customer_id", "as_of_ts", "as_of_date", "country")
)
COUNTRIES = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands", "Belgium")


def daily_customer_features(spark: SparkSession, rows: int, days: int) -> DataFrame:
    """``rows`` synthetic rows: ``rows // days`` customers on each of ``days`` as-of days."""
    customers = max(rows // days, 1)

    def u(seed: int) -> F.Column:
        return F.rand(seed)

    day = F.floor(F.col("id") / customers).cast("int")
    spend = F.exp(u(3) * 6)
    return spark.range(0, rows).select(
        (F.col("id") % customers).cast("string").alias("customer_id"),
        F.date_add(F.lit("2026-01-01").cast("date"), day).alias("as_of_date"),
        F.timestamp_seconds(F.lit(1767225600) + day * 86400 + 86399).alias("as_of_ts"),
        F.floor(u(1) * 365).cast("int").alias("recency_days"),
        F.floor(F.exp(u(2) * 4)).cast("long").alias("frequency"),
        spend.alias("monetary"),
        *[
            (F.floor(u(10 + i) * 5) + 1).cast("int").alias(f"{c}_score")
            for i, c in enumerate("rfm")
        ],
        (F.floor(u(13) * 13) + 3).cast("int").alias("rfm_score"),
        F.floor(u(14) * 700).cast("int").alias("tenure_days"),
        (spend / (F.floor(u(2) * 20) + 1)).alias("avg_basket_value"),
        (u(15) * 40).alias("avg_basket_size"),
        F.floor(u(16) * 300).cast("long").alias("distinct_products"),
        F.when(u(17) < 0.8, F.lit(0.0)).otherwise(u(18) * 0.3).alias("cancellation_rate"),
        *[(spend * u(20 + i) * w / 365).alias(f"spend_{w}d") for i, w in enumerate((30, 90, 365))],
        *[
            F.floor(u(30 + i) * w / 10).cast("long").alias(f"orders_{w}d")
            for i, w in enumerate((30, 90, 365))
        ],
        F.element_at(
            F.array(*[F.lit(c) for c in COUNTRIES]),
            (F.floor(F.pow(u(40), 4) * len(COUNTRIES)) + 1).cast("int"),
        ).alias("country"),
    )  # fmt: skip


def timed(label: str, action: Callable[[], object], repeat: int) -> list[float]:
    action()  # warm-up: code generation, file listing, caches
    seconds = []
    for run in range(repeat):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
        print(f"{label:14s} run {run + 1}: {seconds[-1]:.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    spark = build_spark_session(
        "bench-profile",
        SparkSettings(master=args.master, shuffle_partitions=8, log_level="ERROR"),
        DeltaSettings(),
    )
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as work:
        path = str(Path(work) / "gold" / "customer_features_daily")
        tables = DeltaTables(spark)
        started = time.perf_counter()
        tables.write(daily_customer_features(spark, args.rows, args.days), path)
        print(f"table: {args.rows:,} rows written in {time.perf_counter() - started:.1f} s")
        df = tables.read(path)
        columns = [*NUMERIC, "country"]
        settings = ProfileSettings()
        overall = ProfileRequest(numeric=NUMERIC, categorical=("country",), settings=settings)
        daily = ProfileRequest(
            numeric=NUMERIC,
            categorical=("country",),
            window=WindowSpec(column="as_of_ts"),
            settings=settings,
        )
        summary = timed("summary", lambda: df.select(*columns).summary().collect(), args.repeat)
        profile = timed("profile", lambda: collect_profiles(df, overall), args.repeat)
        per_day = timed("profile-daily", lambda: collect_profiles(df, daily), args.repeat)
    spark.stop()
    base = statistics.median(summary)
    print(f"\nmedians over {args.repeat} runs, {args.rows:,} rows, {len(columns)} columns:")
    for label, seconds in (("summary", summary), ("profile", profile), ("profile-daily", per_day)):
        median = statistics.median(seconds)
        print(f"  {label:14s} {median:7.2f} s   ratio to summary {median / base:.2f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
