"""The native backend: delta-spark's ``format("delta")``, as Databricks, EMR or Dataproc run it.

Active when delta-spark's JVM classes are on the classpath (``spark-submit.sh`` and
``build_spark_session`` put them there from Maven Central; a cluster may start with
``--packages io.delta:delta-spark_<spark>_2.13:<version>``). Works on any storage Spark can
reach. Writes are one ``save`` each (data files and commit); a staged write computes its rows
into Spark's cache (memory, spilling to disk) so that they can be judged before the commit.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurelake.delta.errors import (
    AlreadyCommittedError,
    ConcurrentWriteError,
    SchemaMismatchError,
    TableNotFoundError,
)
from featurelake.delta.model import (
    AppTransaction,
    ArrowRows,
    StagedWrite,
    WriteRequest,
    WriteResult,
)
from featurelake.delta.native_stats import NativeStatistics
from featurelake.delta.native_support import (
    SESSION_METADATA_LOCK,
    conflicts,
    first_line,
    jvm,
    native_delta_available,
    sql_literal,
    sql_path,
    tokens,
)
from featurelake.delta.schema import nullable, resolve_schema

__all__ = ["NativeBackend", "native_delta_available"]


class NativeBackend(NativeStatistics):
    """Reads and commits through delta-spark (see the module docstring).

    Args:
        spark: a session with delta-spark's classes and SQL extension.
        compression: the data files' codec (Spark's name).
        dictionary: dictionary-encode the data files' columns.
    """

    name = "native"

    def __init__(self, spark: SparkSession, compression: str, dictionary: bool) -> None:
        self.spark = spark
        self.compression = compression
        self.dictionary = dictionary
        # delta-spark hands the session's settings, not a write's options, to the Parquet
        # writer's Hadoop configuration: the dictionary choice is made for the session (a
        # job's session has one table configuration).
        spark.conf.set("parquet.enable.dictionary", "true" if dictionary else "false")
        # OPTIMIZE rewrites files with the session's codec, not a write option's.
        spark.conf.set("spark.sql.parquet.compression.codec", compression)

    def _table(self, path: str) -> Any:
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.spark, path)

    def _snapshot(self, path: str) -> Any:
        """The JVM snapshot of the table's latest version (delta-spark has no Python API)."""
        view = jvm(self.spark)
        delta_log = view.org.apache.spark.sql.delta.DeltaLog.forTable(
            self.spark._jsparkSession,
            path,  # noqa: SLF001
        )
        return delta_log.update(False, view.scala.Option.empty(), view.scala.Option.empty())

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, path))

    def version(self, path: str) -> int:
        # The log's latest version from a listing of _delta_log: no Spark job (history is one).
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        return int(self._snapshot(path).version())

    def history(self, path: str, limit: int | None) -> list[dict[str, Any]]:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        rows = self._table(path).history(limit or 1_000_000).collect()
        out = []
        for row in rows:
            entry: dict[str, Any] = {
                "version": int(row["version"]),
                "timestamp": int(row["timestamp"].timestamp() * 1000),
                "operation": row["operation"],
                "operationMetrics": dict(row["operationMetrics"] or {}),
            }
            if row["userMetadata"]:
                with contextlib.suppress(ValueError):
                    entry.update(json.loads(row["userMetadata"]))
            out.append(entry)
        return out

    def transaction_version(self, path: str, app_id: str) -> int | None:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        recorded = self._snapshot(path).transactions().get(app_id)
        return int(recorded.get()) if recorded.isDefined() else None

    def read(
        self, path: str, version: int | None, timestamp: datetime | None
    ) -> tuple[DataFrame, int, int]:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        if version is None:
            version = self._version_at(path, timestamp)
        try:
            df = self.spark.read.format("delta").option("versionAsOf", version).load(path)
            df.schema  # noqa: B018 - resolves the version now: a missing one fails here
        except Exception as exc:  # noqa: BLE001 - AnalysisException for a vacuumed/absent version
            raise TableNotFoundError(f"{path}: no version at {version}: {first_line(exc)}") from exc
        # Counting rows needs a Spark job over the file statistics: done when asked
        # (row_count), not on every read.
        return df, version, -1

    def _version_at(self, path: str, timestamp: datetime | None) -> int:
        if timestamp is None:
            return int(self._snapshot(path).version())
        entries = self.history(path, None)
        limit = timestamp.timestamp() * 1000
        earlier = [e for e in entries if e["timestamp"] <= limit]
        if not earlier:
            first = entries[-1]
            raise TableNotFoundError(
                f"{path}: no version at {timestamp.isoformat()} (table created at version "
                f"{first['version']}, {first['timestamp']} ms; latest version "
                f"{entries[0]['version']})"
            )
        return int(earlier[0]["version"])

    def _schema(self, path: str) -> T.StructType:
        """The latest version's schema, from the log (no Spark job)."""
        schema = T.StructType.fromJson(json.loads(self._snapshot(path).schema().json()))
        return nullable(schema)

    def partition_columns(self, path: str) -> list[str]:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        view = jvm(self.spark)
        columns = self._snapshot(path).metadata().partitionColumns()
        return [str(c) for c in view.scala.jdk.javaapi.CollectionConverters.asJava(columns)]

    # ----------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------

    def _checked(self, request: WriteRequest) -> DataFrame:
        """The write's rows aligned to the table's schema; raises what the write would break."""
        data = request.data
        # Rows held by the driver are few: one data file, as delta-rs writes them.
        df = (
            self.spark.createDataFrame(data.table, data.struct).coalesce(1)
            if isinstance(data, ArrowRows)
            else data
        )
        if not self.exists(request.path):
            return df
        table_partitions = self.partition_columns(request.path)
        if (
            request.partition_by is not None
            and not request.overwrite_schema
            and list(request.partition_by) != table_partitions
        ):
            raise SchemaMismatchError(
                f"cannot write to {request.path}: partitioned by {table_partitions}, write "
                f"asks for {list(request.partition_by)}"
            )
        if request.replace_partitions is not None and not table_partitions:
            raise ValueError(
                f"{request.path} is not partitioned; replace_partitions needs partitions"
            )
        if isinstance(request.replace_partitions, Mapping):
            unknown = [k for k in request.replace_partitions if k not in table_partitions]
            if unknown:
                raise ValueError(
                    f"{request.path}: {unknown} are not partition columns "
                    f"(partitions: {table_partitions})"
                )
        table_schema = self._schema(request.path)
        schema, align = resolve_schema(
            nullable(df.schema),
            table_schema,
            request.schema_evolution,
            request.overwrite_schema,
            request.path,
        )
        if align:
            present = set(df.columns)
            df = df.select(*[F.col(f"`{n}`") for n in schema.fieldNames() if n in present])
        return df

    def write(self, request: WriteRequest) -> WriteResult:
        return self._save(self._checked(request), request)

    def stage(self, request: WriteRequest) -> StagedWrite:
        df = self._checked(request)
        base = self._snapshot(request.path).version() if self.exists(request.path) else None
        cached = df.persist()
        rows = cached.count()

        def commit() -> WriteResult:
            try:
                # As on delta-rs: an overwrite computed from an older version would replace
                # rows committed since; a table created since was not seen at all.
                now = self._snapshot(request.path).version() if self.exists(request.path) else None
                if (base is None and now is not None) or (
                    request.mode == "overwrite" and now != base
                ):
                    raise ConcurrentWriteError(
                        f"{request.path}: another commit landed after this {request.mode} was "
                        "staged; nothing was committed (retry the job)"
                    )
                return self._save(cached, request)
            finally:
                cached.unpersist()

        def abort() -> None:
            cached.unpersist()

        return StagedWrite(request.path, rows, cached.rdd.getNumPartitions(), commit, abort)

    def _save(
        self, df: DataFrame, request: WriteRequest, replace_where: str | None = None
    ) -> WriteResult:
        path, txn = request.path, request.txn
        exists = self.exists(path)
        write_id = uuid.uuid4().hex
        metadata = {**(request.metadata or {}), "featurelake.write_id": write_id}
        writer = (
            df.write.format("delta")
            .mode(request.mode)
            .option("compression", self.compression)
            .option("parquet.enable.dictionary", "true" if self.dictionary else "false")
            .option("userMetadata", json.dumps(metadata))
        )
        if txn is not None:
            # delta-spark skips a write whose claim is not above the recorded version (an
            # idempotent write) and fails one that races a commit of the same app id.
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        if request.partition_by and (not exists or request.overwrite_schema):
            writer = writer.partitionBy(*request.partition_by)
        if not exists:
            for key, value in (request.properties or {}).items():
                writer = writer.option(key, value)  # delta.* options are table properties
            # Constraints in the creating commit: no ALTER commit, no scan of the new rows
            # (a row breaking one fails this write as it would any later one).
            for name, expression in (request.constraints or {}).items():
                writer = writer.option(f"delta.constraints.{name.lower()}", expression)
        if request.schema_evolution:
            writer = writer.option("mergeSchema", "true")
        if request.overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        operation: str = "create" if not exists else request.mode
        if request.replace_partitions == "dynamic":
            writer = writer.option("partitionOverwriteMode", "dynamic")
            operation = "partition-overwrite"
        elif isinstance(request.replace_partitions, Mapping):
            condition = " AND ".join(
                f"`{k}` <=> {sql_literal(v)}" for k, v in request.replace_partitions.items()
            )
            writer = writer.option("replaceWhere", condition)
            operation = "partition-overwrite"
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
            operation = "replace"
        with conflicts(path, txn):
            writer.save(path)
        commit = self._commit_of(path, write_id)
        if commit is None:
            raise AlreadyCommittedError(
                f"{path}: {txn.app_id if txn else 'the write'} already reached version "
                f"{txn.version if txn else '?'}; delta-spark skipped this write and nothing of "
                "it was committed"
            )
        version, metrics = commit
        return WriteResult(
            path,
            version,
            int(metrics.get("numOutputRows", 0)),
            int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
            operation,
        )

    def _commit_of(self, path: str, write_id: str) -> tuple[int, dict[str, str]] | None:
        """(version, operation metrics) of the commit carrying ``write_id``; None if skipped.

        Usually the latest commit, whose file is read directly (``history`` would run a Spark
        job: 0.5-0.9 s a write on two busy cores against 0.02-0.07 s); the 20 latest when
        other writers committed meanwhile (each entry read is a commit file read).
        """
        latest = self._latest_commit_info(path)
        if latest is not None:
            version, info = latest
            user = info.get("userMetadata")
            with contextlib.suppress(TypeError, ValueError):
                if user and json.loads(user).get("featurelake.write_id") == write_id:
                    metrics = info.get("operationMetrics") or {}
                    return version, {str(k): str(v) for k, v in metrics.items()}
        for limit in (1, 20):
            for entry in self.history(path, limit):
                if entry.get("featurelake.write_id") == write_id:
                    return int(entry["version"]), entry["operationMetrics"]
        return None

    def _latest_commit_info(self, path: str) -> tuple[int, dict[str, Any]] | None:
        """(version, commitInfo) of the table's latest commit, read from its log file.

        None when it cannot be read that way (no such file: a commit not yet written back to
        the log by a commit coordinator; an unexpected object store); callers then ask
        ``history``.
        """
        from py4j.protocol import Py4JError

        view = jvm(self.spark)
        try:
            delta_log = view.org.apache.spark.sql.delta.DeltaLog.forTable(
                self.spark._jsparkSession,  # noqa: SLF001
                path,
            )
            snapshot = delta_log.update(False, view.scala.Option.empty(), view.scala.Option.empty())
            version = int(snapshot.version())
            if version < 0:
                return None
            commit = view.org.apache.hadoop.fs.Path(delta_log.logPath(), f"{version:020d}.json")
            stream = commit.getFileSystem(delta_log.newDeltaHadoopConf()).open(commit)
            try:
                text = view.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
            finally:
                stream.close()
        except Py4JError:
            return None
        for line in str(text).splitlines():
            with contextlib.suppress(ValueError):
                action = json.loads(line)
                if isinstance(action, dict) and isinstance(action.get("commitInfo"), dict):
                    return version, action["commitInfo"]
        return None

    def replace_rows(
        self,
        rows: ArrowRows,
        path: str,
        where: Mapping[str, Sequence[Any]],
        metadata: Mapping[str, str],
    ) -> WriteResult:
        if not self.exists(path):
            return self.write(WriteRequest(rows, path, "append", metadata=metadata))
        condition = " AND ".join(
            f"`{column}` IN ({', '.join(sql_literal(v) for v in values)})"
            for column, values in where.items()
        )
        df = self._checked(WriteRequest(rows, path, "append"))
        result = self._save(
            df, WriteRequest(rows, path, "overwrite", metadata=metadata), replace_where=condition
        )
        return WriteResult(path, result.version, result.rows_written, result.files_added, "replace")

    def upsert(
        self,
        df: DataFrame,
        path: str,
        keys: Sequence[str],
        schema_evolution: bool,
        metadata: Mapping[str, str],
        txn: AppTransaction | None = None,
        lower_bounds: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        write_id = uuid.uuid4().hex
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        # A target row below a key's bound matches no new row: the condition says so, and
        # delta-spark skips the files whose statistics lie wholly below it.
        for column, bound in (lower_bounds or {}).items():
            condition += f" AND (t.`{column}` >= {sql_literal(bound)} OR t.`{column}` IS NULL)"
        merge = (
            self._table(path)
            .alias("t")
            .merge(df.alias("s"), condition)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
        )
        if schema_evolution:
            merge = merge.withSchemaEvolution()
        conf = self.spark.conf
        # A MERGE takes no writer options: its commit metadata and claim are session settings
        # (delta-spark's idempotent DML), held only while it runs.
        settings = {
            "spark.databricks.delta.commitInfo.userMetadata": json.dumps(
                {**metadata, "featurelake.write_id": write_id}
            )
        }
        if txn is not None:
            settings["spark.databricks.delta.write.txnAppId"] = txn.app_id
            settings["spark.databricks.delta.write.txnVersion"] = str(txn.version)
        with SESSION_METADATA_LOCK, conflicts(path, txn):
            for key, value in settings.items():
                conf.set(key, value)
            try:
                merge.execute()
            finally:
                for key in settings:
                    conf.unset(key)
        commit = self._commit_of(path, write_id)
        if commit is None:  # only a MERGE carrying a claim that was already made is skipped
            raise AlreadyCommittedError(
                f"{path}: {txn.app_id if txn else 'the merge'} already reached version "
                f"{txn.version if txn else '?'}; delta-spark skipped this merge and nothing of "
                "it was committed"
            )
        version, metrics = commit
        rows = int(metrics.get("numTargetRowsInserted", 0)) + int(
            metrics.get("numTargetRowsUpdated", 0)
        )
        return WriteResult(
            path, version, rows, int(metrics.get("numTargetFilesAdded", 0)), "upsert"
        )

    def changes(self, path: str, start_version: int) -> DataFrame | None:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        latest = int(self._snapshot(path).version())
        detail = self.spark.sql(f"DESCRIBE DETAIL delta.`{sql_path(path)}`").first()
        assert detail is not None
        if (
            start_version > latest
            or (detail["properties"] or {}).get("delta.enableChangeDataFeed") != "true"
        ):
            return None
        try:
            changes = (
                self.spark.read.format("delta")
                .option("readChangeFeed", "true")
                .option("startingVersion", start_version)
                .option("endingVersion", latest)
                .load(path)
            )
            changes.schema  # noqa: B018 - a range the feed did not record fails here
        except Exception:  # noqa: BLE001 - the feed was off for part of the range
            return None
        return changes

    def set_constraints(
        self, path: str, wanted: Mapping[str, str], drop_only: bool
    ) -> dict[str, list[str]] | None:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        detail = self.spark.sql(f"DESCRIBE DETAIL delta.`{sql_path(path)}`").first()
        assert detail is not None  # DESCRIBE DETAIL has one row
        prefix = "delta.constraints."
        current = {
            k[len(prefix) :]: v
            for k, v in (detail["properties"] or {}).items()
            if k.startswith(prefix)
        }
        wanted = {name.lower(): expr for name, expr in wanted.items()}
        # delta-spark keeps an expression as its tokens joined by spaces: compare without them
        same = {n for n, e in wanted.items() if tokens(current.get(n, "")) == tokens(e)}
        dropped = [n for n in current if n not in same]
        added = [] if drop_only else [n for n in wanted if n not in same]
        table = f"delta.`{sql_path(path)}`"
        for name in dropped:
            self.spark.sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS `{name}`")
        for name in added:
            self.spark.sql(f"ALTER TABLE {table} ADD CONSTRAINT `{name}` CHECK ({wanted[name]})")
        return {"added": added, "dropped": dropped}

    # ----------------------------------------------------------------------------------------
    # Maintenance
    # ----------------------------------------------------------------------------------------

    def vacuum(
        self, path: str, retention_hours: int, dry_run: bool, metadata: Mapping[str, str]
    ) -> list[str]:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        conf = self.spark.conf
        # Below Delta's default retention (7 days) delta-spark refuses unless told otherwise;
        # the setting is featurelake's (delta.vacuum_retention_hours), checked at start-up.
        conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        try:
            listed = self.spark.sql(
                f"VACUUM delta.`{sql_path(path)}` RETAIN {int(retention_hours)} HOURS DRY RUN"
            ).collect()
            files = [row[0] for row in listed]
            if not dry_run and files:
                with SESSION_METADATA_LOCK:
                    conf.set(
                        "spark.databricks.delta.commitInfo.userMetadata", json.dumps(dict(metadata))
                    )
                    try:
                        self._table(path).vacuum(float(retention_hours))
                    finally:
                        conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        finally:
            conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
        return files

    def compact(
        self,
        path: str,
        target_size_mb: int,
        zorder_by: Sequence[str],
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        if not self.exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        conf = self.spark.conf
        with SESSION_METADATA_LOCK:
            conf.set(
                "spark.databricks.delta.optimize.maxFileSize", str(target_size_mb * 1024 * 1024)
            )
            conf.set("spark.databricks.delta.commitInfo.userMetadata", json.dumps(dict(metadata)))
            try:
                optimize = self._table(path).optimize()
                result = (
                    optimize.executeZOrderBy(*zorder_by)
                    if zorder_by
                    else optimize.executeCompaction()
                )
                metrics = result.collect()[0]["metrics"].asDict(recursive=True)
            finally:
                conf.unset("spark.databricks.delta.optimize.maxFileSize")
                conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        return {
            "numFilesAdded": metrics.get("numFilesAdded", 0),
            "numFilesRemoved": metrics.get("numFilesRemoved", 0),
            **metrics,
        }
