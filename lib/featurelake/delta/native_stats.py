"""The native backend's reads of file statistics: row counts and column ranges from the log.

Delta keeps each data file's row count, min, max and null count in the log; these methods
answer from them (or from a version's checksum file) without reading data files.
:class:`NativeStatistics` is a base of :class:`~featurelake.delta.native.NativeBackend`, whose
session, ``exists``, ``read`` and ``_snapshot`` it uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurelake.delta.errors import TableNotFoundError
from featurelake.delta.model import ColumnStats
from featurelake.delta.native_support import jvm

__all__ = ["NativeStatistics"]


class NativeStatistics:
    """Row counts and column statistics of delta-spark tables (see the module docstring)."""

    spark: SparkSession

    if TYPE_CHECKING:  # provided by NativeBackend

        def exists(self, path: str) -> bool: ...

        def read(
            self, path: str, version: int | None, timestamp: datetime | None
        ) -> tuple[DataFrame, int, int]: ...

        def _snapshot(self, path: str) -> Any: ...

    def _files(self, path: str, version: int | None) -> DataFrame:
        """The add actions of a version: path, size, partition values and stats (JSON)."""
        view = jvm(self.spark)
        delta_log = view.org.apache.spark.sql.delta.DeltaLog.forTable(
            self.spark._jsparkSession,
            path,  # noqa: SLF001
        )
        if version is None:
            snapshot = self._snapshot(path)
        else:
            snapshot = delta_log.getSnapshotAt(
                version, view.scala.Option.empty(), view.scala.Option.empty(), False
            )
        return DataFrame(snapshot.allFiles().toDF(), self.spark)

    def _checksum_stats(self, path: str, version: int | None) -> list[str | None] | None:
        """Each data file's statistics (JSON) from the version's checksum file, when it lists
        the files (delta-spark does for small tables): no Spark job. None otherwise."""
        view = jvm(self.spark)
        try:
            if version is None:
                snapshot = self._snapshot(path)
            else:
                delta_log = view.org.apache.spark.sql.delta.DeltaLog.forTable(
                    self.spark._jsparkSession,  # noqa: SLF001
                    path,
                )
                snapshot = delta_log.getSnapshotAt(
                    version, view.scala.Option.empty(), view.scala.Option.empty(), False
                )
            checksum = snapshot.checksumOpt()
            if not checksum.isDefined():
                return None
            listed = checksum.get().allFiles()
            if not listed.isDefined():
                return None
            files = view.scala.jdk.javaapi.CollectionConverters.asJava(listed.get())
            return [add.stats() for add in files]
        except Exception:  # noqa: BLE001 - py4j: a delta-spark without these members
            return None

    def row_count(self, path: str, version: int | None) -> int:
        """Rows of a version from its files' statistics; -1 when a file has none."""
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        stats = self._checksum_stats(path, version)
        if stats is not None:
            counts = [json.loads(s).get("numRecords") if s else None for s in stats]
            known = [int(c) for c in counts if c is not None]
            return sum(known) if len(known) == len(counts) else -1
        files = self._files(path, version).select(
            F.get_json_object("stats", "$.numRecords").cast("long").alias("n")
        )
        row = files.agg(
            F.count(F.lit(1)).alias("files"),
            F.count("n").alias("with_stats"),
            F.sum("n").alias("rows"),
        ).first()
        assert row is not None
        if row["files"] != row["with_stats"]:
            return -1
        return int(row["rows"] or 0)

    def column_stats(
        self, path: str, columns: Sequence[str], version: int | None
    ) -> dict[str, ColumnStats] | None:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        schema = self.read(path, version, None)[0].schema
        fields = [schema[name] for name in columns]
        values = T.StructType([T.StructField(f.name, f.dataType) for f in fields])
        counts = T.StructType([T.StructField(f.name, T.LongType()) for f in fields])
        stats_schema = T.StructType(
            [
                T.StructField("numRecords", T.LongType()),
                T.StructField("minValues", values),
                T.StructField("maxValues", values),
                T.StructField("nullCount", counts),
            ]
        )
        stats = (
            self._files(path, version)
            .select(F.from_json("stats", stats_schema).alias("s"))
            .select("s.*")
        )
        aggregates = [F.count(F.lit(1)).alias("_files"), F.count("numRecords").alias("_with_stats")]
        for i, f in enumerate(fields):
            nulls = F.col("nullCount").getField(f.name)
            low = F.col("minValues").getField(f.name)
            high = F.col("maxValues").getField(f.name)
            has_values = nulls < F.col("numRecords")
            aggregates += [
                F.sum(nulls).alias(f"nulls_{i}"),
                F.count(nulls).alias(f"nulls_known_{i}"),
                F.sum(F.when(has_values & (low.isNull() | high.isNull()), 1).otherwise(0)).alias(
                    f"unknown_{i}"
                ),
                F.min(F.when(has_values, low)).alias(f"min_{i}"),
                F.max(F.when(has_values, high)).alias(f"max_{i}"),
            ]
        row = stats.agg(*aggregates).first()
        assert row is not None
        if row["_files"] == 0:
            return {c: ColumnStats(None, None, 0) for c in columns}
        if row["_files"] != row["_with_stats"]:
            return None
        out = {}
        for i, name in enumerate(columns):
            if row[f"nulls_known_{i}"] != row["_files"] or row[f"unknown_{i}"]:
                return None
            out[name] = ColumnStats(row[f"min_{i}"], row[f"max_{i}"], int(row[f"nulls_{i}"]))
        return out
