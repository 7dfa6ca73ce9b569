"""local_frame: small driver-side frames through Arrow, equal to what createDataFrame builds."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from featurelake.session import local_frame
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
    got = [r[0] for r in local_frame(spark, [(utc,), (paris,), (naive,)], schema)
           .select(F.unix_micros("at")).collect()]
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
