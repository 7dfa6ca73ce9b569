"""Mixed writers: a table written by one backend, appended to, merged, compacted and vacuumed
by the other, reads the same through Spark (native and delta-rs), deltalake, polars and duckdb.

The interop table of the native-Delta work is this module's cases: writer (native, delta-rs)
x stage (written, appended by the other, upserted, compacted, vacuumed) x reader.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from featurelake.delta import ConcurrentWriteError, DeltaTables, native_delta_available
from pyspark.sql import types as T

SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("s", T.StringType()),
        T.StructField("i", T.IntegerType()),
        T.StructField("d", T.DoubleType()),
        T.StructField("dec", T.DecimalType(12, 2)),
        T.StructField("b", T.BooleanType()),
        T.StructField("dt", T.DateType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("part", T.StringType()),
    ]
)


def _row(i: int, part: str, s: str = "v") -> tuple:
    return (
        i,
        f"{s}{i}",
        i * 10,
        i / 4,
        Decimal(f"{i}.25"),
        i % 2 == 0,
        date(2024, 1, 1 + i % 28),
        datetime(2024, 1, 1, 12, i % 60, 0, 123000 * (i % 2), tzinfo=timezone.utc),
        part,
    )


def _normal(rows: list[tuple]) -> list[tuple]:
    """Rows as plain comparable tuples (timestamps as UTC instants, decimals as strings)."""
    out = []
    for r in rows:
        r = list(r)
        ts = r[7]
        if ts is not None and hasattr(ts, "tzinfo"):
            if getattr(ts, "to_pydatetime", None):
                ts = ts.to_pydatetime()
            ts = (
                ts.replace(tzinfo=timezone.utc)
                if ts.tzinfo is None
                else ts.astimezone(timezone.utc)
            )
        r[7] = ts
        r[4] = str(Decimal(str(r[4])).quantize(Decimal("0.01")))
        r[6] = r[6] if isinstance(r[6], date) else r[6].date()
        out.append(tuple(r))
    return sorted(out)


def _through_every_reader(spark, path: str) -> dict[str, list[tuple]]:
    import duckdb

    readers = {
        "spark-native": DeltaTables(spark, backend="native").read(path),
        "spark-delta-rs": DeltaTables(spark, backend="delta-rs").read(path),
    }
    got = {name: _normal([tuple(r) for r in df.collect()]) for name, df in readers.items()}
    pandas = DeltaTable(path).to_pandas()[SCHEMA.fieldNames()]
    got["deltalake"] = _normal([tuple(r) for r in pandas.itertuples(index=False)])
    polars = pl.read_delta(path).select(SCHEMA.fieldNames())
    got["polars"] = _normal(polars.rows())
    snapshot = DeltaTable(path).to_pyarrow_dataset()  # noqa: F841 - scanned by duckdb
    got["duckdb"] = _normal(
        duckdb.sql(f"SELECT {', '.join(SCHEMA.fieldNames())} FROM snapshot").fetchall()
    )
    return got


@pytest.fixture(scope="module")
def both(spark):
    if not native_delta_available(spark):
        pytest.skip(
            "delta-spark's jar could not be fetched: see the native_delta_unavailable "
            "log line of the test session"
        )
    return {
        "native": DeltaTables(spark, backend="native"),
        "delta-rs": DeltaTables(spark, backend="delta-rs"),
    }


@pytest.mark.parametrize("first", ["native", "delta-rs"])
def test_a_table_of_one_writer_is_extended_by_the_other_and_read_alike_everywhere(
    spark, both, tmp_path, first
):
    other = "delta-rs" if first == "native" else "native"
    path = str(tmp_path / "t")
    expected = [_row(i, "a" if i % 2 else "b") for i in range(6)]
    both[first].write(spark.createDataFrame(expected, SCHEMA), path, partition_by=["part"])
    stages = {}
    stages["written"] = _through_every_reader(spark, path), list(expected)
    more = [_row(i, "c") for i in range(6, 9)]
    both[other].write(spark.createDataFrame(more, SCHEMA), path)
    expected += more
    stages["appended by the other"] = _through_every_reader(spark, path), list(expected)
    changed = [_row(1, "a", s="changed"), _row(20, "c", s="new")]
    both[other].upsert(spark.createDataFrame(changed, SCHEMA), path, keys=["id", "part"])
    expected = [r for r in expected if r[0] != 1] + changed
    stages["upserted by the other"] = _through_every_reader(spark, path), list(expected)
    both[first].compact(path, zorder_by=["id"] if first == "native" else ())
    stages["compacted"] = _through_every_reader(spark, path), list(expected)
    both[other].vacuum(path, retention_hours=0)
    stages["vacuumed by the other"] = _through_every_reader(spark, path), list(expected)
    for stage, (got, want) in stages.items():
        for reader, rows in got.items():
            assert rows == _normal(want), (stage, reader)


def test_both_writers_alternate_across_checkpoints(spark, both, tmp_path):
    """Twelve commits, alternating writers: delta-spark checkpoints every ten; each reads on."""
    path = str(tmp_path / "t")
    expected = []
    for i in range(12):
        writer = both["native"] if i % 2 == 0 else both["delta-rs"]
        row = _row(i, "a")
        writer.write(spark.createDataFrame([row], SCHEMA), path)
        expected.append(row)
    assert any(p.name.endswith(".checkpoint.parquet") for p in Path(path, "_delta_log").iterdir())
    for reader, rows in _through_every_reader(spark, path).items():
        assert rows == _normal(expected), reader


@pytest.mark.parametrize("stager", ["native", "delta-rs"])
def test_a_conflicting_commit_of_the_other_writer_is_detected(spark, both, tmp_path, stager):
    other = "delta-rs" if stager == "native" else "native"
    path = str(tmp_path / "t")
    both[stager].write(spark.createDataFrame([_row(0, "a")], SCHEMA), path)
    staged = both[stager].stage(spark.createDataFrame([_row(1, "a")], SCHEMA), path, "overwrite")
    both[other].write(spark.createDataFrame([_row(2, "a")], SCHEMA), path)  # lands first
    with pytest.raises(ConcurrentWriteError):
        both[stager].commit(staged)
    both[stager].abort(staged)
    ids = sorted(r["id"] for r in both[other].read(path).collect())
    assert ids == [0, 2]


def test_the_log_holds_the_protocol_docs_contracts_states(spark, both, tmp_path):
    """docs/CONTRACTS.md: protocol (1, 2) and no table features, from either writer."""
    for name, tables in both.items():
        path = str(tmp_path / name)
        tables.write(spark.createDataFrame([_row(0, "a")], SCHEMA), path)
        first = Path(path, "_delta_log", f"{0:020d}.json").read_text().splitlines()
        actions = [json.loads(line) for line in first]
        protocol = next(a["protocol"] for a in actions if "protocol" in a)
        assert (protocol["minReaderVersion"], protocol["minWriterVersion"]) == (1, 2), name
        assert "readerFeatures" not in protocol and "writerFeatures" not in protocol, name
