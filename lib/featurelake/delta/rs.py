"""The delta-rs backend: Spark writes the Parquet data files, delta-rs commits them.

Spark writes a write's files in parallel into a staging folder inside the table; they are
moved beside the table's data and committed in one atomic transaction by delta-rs (the
``deltalake`` package) with per-file statistics read from their Parquet footers. Until the
commit no version references them, so a crash leaves the table as it was (``vacuum`` removes
the orphans). Reads take a snapshot's file list (any version) and hand it to Spark.

Local or mounted paths only: delta-rs is not given object-store credentials here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from featurelake.delta.errors import (
    ConcurrentWriteError,
    SchemaMismatchError,
    TableIOError,
    TableNotFoundError,
)
from featurelake.delta.files import file_stats, partition_values
from featurelake.delta.model import (
    AppTransaction,
    ArrowRows,
    ColumnStats,
    StagedWrite,
    WriteRequest,
    WriteResult,
)
from featurelake.delta.rs_log import (
    commit_adds,
    stage_arrow,
    stats_from_log,
    total_rows,
)
from featurelake.delta.schema import nullable, resolve_schema

__all__ = ["RsBackend", "local_path"]

_STAGING = "_staging"


def local_path(path: str) -> str:
    """``path`` as an absolute local path.

    Raises:
        TableIOError: an object-store URI (delta-rs is not set up for it here).
    """
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return os.path.abspath(unquote(parsed.path) if parsed.scheme else path)
    raise TableIOError(
        f"{path}: the delta-rs backend supports local or mounted paths only; "
        "use the native delta-spark backend for object stores"
    )


class RsBackend:
    """Reads and commits through delta-rs (see the module docstring).

    Args:
        spark: the session that reads and writes the data files.
        compression: the data files' codec (Spark's name).
        dictionary: dictionary-encode the data files' columns.
    """

    name = "delta-rs"

    def __init__(self, spark: SparkSession, compression: str, dictionary: bool) -> None:
        self.spark = spark
        self.compression = compression
        self.dictionary = dictionary

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(local_path(path)))

    def version(self, path: str) -> int:
        return int(self.open(path, None, None).version())

    def history(self, path: str, limit: int | None) -> list[dict[str, Any]]:
        table = self.open(path, None, None)
        return sorted(table.history(limit), key=lambda e: -int(e["version"]))

    def transaction_version(self, path: str, app_id: str) -> int | None:
        value = self.open(path, None, None).transaction_version(app_id)
        return None if value is None else int(value)

    def open(self, path: str, version: int | None, timestamp: datetime | None) -> Any:
        """The delta-rs table at a version (or timestamp, UTC), or the latest."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError as RsNotFound

        local = local_path(path)
        try:
            table = DeltaTable(local)
        except RsNotFound as exc:
            raise TableNotFoundError(f"no Delta table at {path}") from exc
        try:
            if version is not None:
                table.load_as_version(version)
            elif timestamp is not None:
                created = table.history()[-1]["timestamp"] / 1000
                if timestamp.timestamp() < created:
                    # delta-rs would quietly load version 0; a time before the table is an error
                    raise ValueError(f"{timestamp.isoformat()} is before the table was created")
                table.load_as_version(timestamp)
        except Exception as exc:  # delta-rs raises a generic error for a missing version
            first = table.history()[-1]
            raise TableNotFoundError(
                f"{path}: no version at {version if version is not None else timestamp!r} "
                f"(table created at version {first['version']}, "
                f"{datetime.fromtimestamp(first['timestamp'] / 1000, timezone.utc).isoformat()}; "
                f"latest version {DeltaTable(local).version()}): {exc}"
            ) from exc
        return table

    def read(
        self, path: str, version: int | None, timestamp: datetime | None
    ) -> tuple[DataFrame, int, int]:
        table = self.open(path, version, timestamp)
        schema = StructType.fromJson(json.loads(table.schema().to_json()))
        files = table.file_uris()
        rows = total_rows(table)
        if not files:
            return self.spark.createDataFrame([], schema), table.version(), rows
        df = (
            self.spark.read.schema(schema)
            .option("basePath", local_path(path))
            .parquet(*files)
            .select(*[F.col(f"`{f.name}`") for f in schema.fields])
        )
        return df, table.version(), rows

    def column_stats(
        self, path: str, columns: Sequence[str], version: int | None
    ) -> dict[str, ColumnStats] | None:
        return stats_from_log(self.open(path, version, None), columns)

    def row_count(self, path: str, version: int | None) -> int:
        return total_rows(self.open(path, version, None))

    def partition_columns(self, path: str) -> list[str]:
        return list(self.open(path, None, None).metadata().partition_columns)

    # ----------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> WriteResult:
        staged = self.stage(request)
        try:
            return staged._commit()
        except ConcurrentWriteError:
            staged._abort()  # no version references the files: remove them now
            raise

    def stage(self, request: WriteRequest) -> StagedWrite:
        from deltalake import DeltaTable

        path = request.path
        root = local_path(path)
        existing = DeltaTable(root) if DeltaTable.is_deltatable(root) else None
        table_schema = (
            StructType.fromJson(json.loads(existing.schema().to_json())) if existing else None
        )
        table_partitions = list(existing.metadata().partition_columns) if existing else None
        partitions = list(request.partition_by or table_partitions or [])
        if (
            table_partitions is not None
            and request.partition_by is not None
            and not request.overwrite_schema
            and list(request.partition_by) != table_partitions
        ):
            raise SchemaMismatchError(
                f"cannot write to {path}: partitioned by {table_partitions}, write asks for "
                f"{list(request.partition_by)}"
            )
        if request.replace_partitions is not None and not partitions:
            raise ValueError(f"{path} is not partitioned; replace_partitions needs partitions")
        data = request.data
        if isinstance(data, ArrowRows) and partitions:  # partitioned: Spark lays out the files
            data = self.spark.createDataFrame(data.table, data.struct)
        if isinstance(data, ArrowRows):
            schema, _ = resolve_schema(
                nullable(data.struct),
                table_schema,
                request.schema_evolution,
                request.overwrite_schema,
                path,
            )
            adds = stage_arrow(data.table, root, schema, self.compression, self.dictionary)
        else:
            schema, align = resolve_schema(
                nullable(data.schema),
                table_schema,
                request.schema_evolution,
                request.overwrite_schema,
                path,
            )
            if align:
                data = data.select(*[F.col(f"`{n}`") for n in schema.fieldNames()])
            missing_parts = [c for c in partitions if c not in schema.fieldNames()]
            if missing_parts:
                raise SchemaMismatchError(
                    f"cannot write to {path}: partition columns {missing_parts} are not in the "
                    f"write (columns: {', '.join(schema.fieldNames())})"
                )
            adds, staging = self._stage_files(data, root, partitions, schema)
            shutil.rmtree(staging, ignore_errors=True)
        rows = sum(json.loads(a.stats)["numRecords"] for a in adds)

        def commit() -> WriteResult:
            return commit_adds(
                request, root, existing, table_schema, schema, partitions, adds, rows
            )

        def abort() -> None:
            for add in adds:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(root, add.path))

        return StagedWrite(path, rows, len(adds), commit, abort)

    def _stage_files(
        self, df: DataFrame, root: str, partitions: Sequence[str], schema: StructType
    ) -> tuple[list[Any], str]:
        """Spark writes Parquet into a staging folder; files move beside the table's data."""
        from deltalake.transaction import AddAction

        staging = os.path.join(root, _STAGING, uuid.uuid4().hex)
        writer = df.write.mode("errorifexists").options(
            compression=self.compression,
            **{"parquet.enable.dictionary": "true" if self.dictionary else "false"},
        )
        if partitions:
            writer = writer.partitionBy(*partitions)
        writer.parquet(staging)
        adds = []
        types = {f.name: f.dataType for f in schema.fields}
        for dirpath, _dirs, names in os.walk(staging):
            for name in names:
                if not name.endswith(".parquet"):
                    continue
                source = os.path.join(dirpath, name)
                relative = os.path.relpath(source, staging)
                values = partition_values(relative, partitions)
                stats = file_stats(source, types, set(partitions))
                if stats["numRecords"] == 0:
                    continue  # Spark writes an empty file for an empty frame; Delta needs none
                target = os.path.join(root, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(source, target)
                adds.append(
                    AddAction(
                        relative.replace(os.sep, "/"),
                        os.path.getsize(target),
                        values,
                        int(time.time() * 1000),
                        True,
                        json.dumps(stats),
                    )
                )
        return adds, staging

    def replace_rows(
        self,
        rows: ArrowRows,
        path: str,
        where: Mapping[str, Sequence[Any]],
        metadata: Mapping[str, str],
    ) -> WriteResult:
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties

        if not self.exists(path):
            return self.write(WriteRequest(rows, path, "append", metadata=metadata))
        root = local_path(path)
        schema = StructType.fromJson(json.loads(DeltaTable(root).schema().to_json()))
        resolve_schema(nullable(rows.struct), schema, False, False, path)
        table = rows.table.select(schema.fieldNames())
        predicate = " AND ".join(
            f'"{column}" IN ({", ".join(_sql_value(v) for v in values)})'
            for column, values in where.items()
        )
        try:
            write_deltalake(
                root,
                table,
                mode="overwrite",
                predicate=predicate,
                commit_properties=CommitProperties(custom_metadata=dict(metadata)),
            )
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"{path}: a concurrent commit conflicted with this replacement; nothing was "
                f"committed (retry the job): {exc}"
            ) from exc
        return WriteResult(path, DeltaTable(root).version(), table.num_rows, 1, "replace")

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
        # lower_bounds: only a hint for a MERGE's file pruning; not used here.
        # delta-rs has MERGE, but not over a Spark frame: the kept rows and the new ones are
        # written as an overwrite - of the touched partitions only, when the partition
        # columns are among the keys.
        current, _, _ = self.read(path, None, None)
        partitions = self.partition_columns(path)
        replace: Literal["dynamic"] | None = None
        if partitions and set(partitions) <= set(keys):
            touched = df.select(*partitions).distinct()
            current = current.join(touched, list(partitions), "left_semi")
            replace = "dynamic"
        kept = current.join(df.select(*keys), list(keys), "left_anti")
        merged = kept.unionByName(df, allowMissingColumns=schema_evolution)
        result = self.write(
            WriteRequest(
                merged,
                path,
                "overwrite",
                replace_partitions=replace,
                schema_evolution=schema_evolution,
                metadata=metadata,
                txn=txn,
            )
        )
        return WriteResult(path, result.version, result.rows_written, result.files_added, "upsert")

    def changes(self, path: str, start_version: int) -> DataFrame | None:
        # delta-rs commits add actions without change files: callers compare snapshots.
        return None

    def set_constraints(
        self, path: str, wanted: Mapping[str, str], drop_only: bool
    ) -> dict[str, list[str]] | None:
        # Constraints are Spark SQL here; delta-rs would check them with DataFusion's dialect.
        return None

    # ----------------------------------------------------------------------------------------
    # Maintenance
    # ----------------------------------------------------------------------------------------

    def vacuum(
        self, path: str, retention_hours: int, dry_run: bool, metadata: Mapping[str, str]
    ) -> list[str]:
        from deltalake.transaction import CommitProperties

        table = self.open(path, None, None)
        deleted = table.vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=False,
            full=True,
            commit_properties=CommitProperties(custom_metadata=dict(metadata)),
        )
        if not dry_run:
            staging = Path(local_path(path), _STAGING)
            cutoff = time.time() - retention_hours * 3600
            if staging.is_dir():
                for batch in staging.iterdir():
                    if batch.stat().st_mtime <= cutoff:
                        shutil.rmtree(batch, ignore_errors=True)
        return list(deleted)

    def compact(
        self,
        path: str,
        target_size_mb: int,
        zorder_by: Sequence[str],
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        from deltalake import ColumnProperties, WriterProperties
        from deltalake.transaction import CommitProperties

        table = self.open(path, None, None)
        properties = WriterProperties(
            compression=self.compression.upper(),  # type: ignore[arg-type] # checked codecs
            default_column_properties=ColumnProperties(dictionary_enabled=self.dictionary),
        )
        commit = CommitProperties(custom_metadata=dict(metadata))
        if zorder_by:
            return dict(
                table.optimize.z_order(
                    list(zorder_by),
                    target_size=target_size_mb * 1024 * 1024,
                    writer_properties=properties,
                    commit_properties=commit,
                )
            )
        return dict(
            table.optimize.compact(
                target_size=target_size_mb * 1024 * 1024,
                writer_properties=properties,
                commit_properties=commit,
            )
        )


def _sql_value(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
