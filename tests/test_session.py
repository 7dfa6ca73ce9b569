"""local_frame: small driver-side frames through Arrow, equal to what createDataFrame builds.

run_constant: a run's time on every row, without new generated code for each new value.

The session looks up each JVM function once: functions then cost one JVM round trip a call."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import py4j.clientserver
import pytest
from featurelake.core.session import local_frame, run_constant
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

SCHEMA = T.StructType(
    [
        T.StructField("name", T.StringType(), False),
        T.StructField("n", T.LongType()),
        T.StructField("i", T.IntegerType()),
        T.StructField("x", T.DoubleType()),
        T.StructField("ok", T.BooleanType()),
        T.StructField("day", T.DateType()),
        T.StructField("at", T.TimestampType()),
        T.StructField("tags", T.ArrayType(T.StringType())),
    ]
)


def test_tuples_and_mappings_give_the_schema_and_values(spark):
    at = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    df = local_frame(
        spark,
        [
            ("a", 1, 2, 0.5, True, date(2024, 3, 1), at, ["p", "q"]),
            {"name": "b", "tags": []},  # missing keys are null
        ],
        SCHEMA,
    )
    assert df.schema == SCHEMA
    rows = (
        df.select("name", "n", "i", "x", "ok", "day", F.unix_micros("at").alias("us"), "tags")
        .orderBy("name")
        .collect()
    )
    us = 1709296215123456  # 2024-03-01T12:30:15.123456Z, by hand: 19783 days * 86400 s + 45015 s
    assert [tuple(r) for r in rows] == [
        ("a", 1, 2, 0.5, True, date(2024, 3, 1), us, ["p", "q"]),
        ("b", None, None, None, None, None, None, []),
    ]


def test_timestamps_are_instants_naive_ones_taken_as_utc(spark):
    schema = "at timestamp"
    utc = datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc)
    paris = utc.astimezone(timezone(timedelta(hours=1)))  # the same instant, 01:00+01:00
    naive = datetime(2024, 1, 1, 0, 0)
    got = [
        r[0]
        for r in local_frame(spark, [(utc,), (paris,), (naive,)], schema)
        .select(F.unix_micros("at"))
        .collect()
    ]
    assert got == [1704067200 * 1_000_000] * 3


def test_no_rows_gives_an_empty_frame_with_the_schema(spark):
    df = local_frame(spark, [], SCHEMA)
    assert df.schema == SCHEMA and df.count() == 0


def test_bad_rows_are_refused_with_the_reason(spark):
    with pytest.raises(ValueError, match="field name is not nullable"):
        local_frame(spark, [(None, 1, 2, 0.5, True, None, None, None)], SCHEMA)
    with pytest.raises(TypeError, match="has 2 values"):
        local_frame(spark, [("a", 1)], SCHEMA)
    with pytest.raises(TypeError, match="does not support the type map"):
        local_frame(spark, [], "m map<string,int>")


def _compiled_classes(spark) -> int:
    """Classes Spark's code generator has compiled in this JVM so far."""
    metrics = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    return metrics.METRIC_COMPILATION_TIME().getCount()


def _judge(spark, at: Column) -> list[tuple[int, int, int]]:
    # 1000 rows in 4 partitions, one per second from 2024-01-01T00:00:00Z; per partition: rows,
    # rows at or before the constant, and the constant in microseconds.
    rows = spark.range(0, 1000, 1, 4).select(
        F.spark_partition_id().alias("p"),
        F.timestamp_seconds(F.col("id") + 1704067200).alias("ts"),
        at.alias("at"),
    )
    out = rows.groupBy("p").agg(
        F.count(F.lit(1)),
        F.sum((F.col("ts") <= F.col("at")).cast("int")),
        F.max(F.unix_micros("at")),
    )
    return sorted(tuple(r)[1:] for r in out.collect())


def test_run_constant_is_the_value_on_every_row_of_every_partition(spark):
    # 2024-01-01T00:02:00.5Z: rows 0..120 (seconds 0 to 120) are at or before it; partitions of
    # 250 rows each, so only the first holds them.
    at = datetime(2024, 1, 1, 0, 2, 0, 500000, tzinfo=timezone.utc)
    us = 1704067200 * 1_000_000 + 120_500_000
    assert _judge(spark, run_constant(at)) == [(250, 0, us)] * 3 + [(250, 121, us)]
    naive = datetime(2024, 1, 1, 0, 2, 0, 500000)  # taken as UTC
    assert _judge(spark, run_constant(naive))[-1] == (250, 121, us)
    schema = spark.range(1).select(run_constant(at).alias("at")).schema
    assert schema["at"].dataType == T.TimestampType()


def test_run_constant_takes_naive_times_as_utc_in_any_process_time_zone(spark, monkeypatch):
    # PySpark reads a naive literal in the Python process's zone (5 h off in New York).
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        got = spark.range(1).select(F.unix_micros(run_constant(datetime(2024, 1, 1)))).first()[0]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert got == 1704067200 * 1_000_000  # 2024-01-01T00:00:00Z


def test_a_new_run_constant_value_reuses_the_generated_code(spark):
    first = datetime(2024, 1, 1, 0, 0, 10)
    _judge(spark, run_constant(first))
    before = _compiled_classes(spark)
    later = [_judge(spark, run_constant(first + timedelta(seconds=k))) for k in (1, 2, 3)]
    assert [r[-1][1] for r in later] == [12, 13, 14]
    assert _compiled_classes(spark) == before
    # The check can fail: a plain literal of a new value compiles new classes.
    _judge(spark, F.lit(first + timedelta(seconds=5)))
    before = _compiled_classes(spark)
    _judge(spark, F.lit(first + timedelta(seconds=6)))
    assert _compiled_classes(spark) > before


def _commands_sent(monkeypatch, build) -> list[str]:
    """The py4j commands (first line: c = call, r = reflection...) sent while ``build`` runs."""
    sent: list[str] = []
    send = py4j.clientserver.ClientServerConnection.send_command

    def recording(self, command):
        sent.append(command.split("\n", 1)[0])
        return send(self, command)

    with monkeypatch.context() as patched:
        patched.setattr(py4j.clientserver.ClientServerConnection, "send_command", recording)
        build()
    return sent


def test_functions_are_looked_up_in_the_jvm_once(spark, monkeypatch):
    def build():
        return F.when(F.col("a").isNull(), F.lit(0)).otherwise(F.abs(F.col("a")))

    build()  # the session may have looked these up already; now it has
    sent = _commands_sent(monkeypatch, build)
    # when, col, lit, abs, col: one call each, plus isNull and otherwise on columns; no
    # reflection (PySpark alone sends two reflection commands before each function call).
    assert sent.count("r") == 0
    assert sent.count("c") == 7
    df = spark.createDataFrame([(None,), (-3,), (2,)], "a int")
    assert [r[0] for r in df.select(build()).collect()] == [0, 3, 2]
