"""The one place a SparkSession is built."""

from __future__ import annotations

import os
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession

from featurelake.config import SparkSettings

__all__ = ["build_spark_session"]


def build_spark_session(app_name: str, settings: SparkSettings) -> SparkSession:
    """Build (or return the running) SparkSession for a job.

    The master comes from ``spark-submit --master`` when it set one; otherwise from
    ``settings.master``. The session time zone is UTC and Parquet timestamps are written as
    microseconds so that every Delta reader (delta-rs, polars, duckdb) can read them.

    Args:
        app_name: shown in the Spark UI and logs; the job name.
        settings: the validated ``spark`` section of the configuration.

    Returns:
        The SparkSession.
    """
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the driver attaches to a running JVM gateway whose master came from
    # --master; only a plain Python process (tests, notebooks) takes settings.master.
    if "PYSPARK_GATEWAY_PORT" not in os.environ and not SparkConf().contains("spark.master"):
        builder = builder.master(settings.master)
        # Python workers must run this interpreter (with pandas, mlflow...), not whatever
        # `python3` is on PATH. PySpark reads only the environment variable for this (not
        # spark.pyspark.python), so it is set here, once, when the session is built;
        # spark-submit.sh sets it itself for submitted jobs.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    options = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.enabled": str(settings.ui_enabled).lower(),
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.sources.partitionOverwriteMode": "static",
        # Spark's _SUCCESS marker is not a data file; Delta's log is the commit record.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.sql.adaptive.enabled": "true",
        # wide silver/gold plans would otherwise log a truncation warning on every job
        "spark.sql.debug.maxToStringFields": "500",
        # Constraint propagation substitutes every alias of a wide silver plan (25 parsed
        # columns, each cleaned, parsed, normalised and checked) into the filters it infers:
        # the optimizer then needs gigabytes and minutes. It only adds inferred filters (such as
        # IS NOT NULL on join keys); results are the same without it.
        "spark.sql.constraintPropagation.enabled": "false",
        # PySpark's DataFrame debugging records the Python call site of every Column and
        # DataFrame call, at the price of two extra JVM round trips per call: building one
        # silver table's plan (thousands of calls) spent more than a second there. Our errors
        # name the table and rule themselves; set it back to true in spark.conf to debug.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        "spark.driver.extraJavaOptions": "-Dlog4j2.level=WARN",
    }
    options.update(settings.conf)
    for key, value in options.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark
