"""The delta-rs backend's side of the transaction log: commits, claims, file statistics.

:class:`~featurelake.delta.rs.RsBackend` stages a write's data files; :func:`commit_adds`
commits them in one delta-rs transaction (refusing an overwrite built on an older snapshot,
and a claim already made). :func:`stage_arrow` writes rows held on the driver as one file
without Spark. The statistics helpers read row counts and per-column bounds from the log
alone.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pyspark.sql.types import StructType

from featurelake.delta.errors import AlreadyCommittedError, ConcurrentWriteError
from featurelake.delta.files import file_stats, partition_filters
from featurelake.delta.model import AppTransaction, ColumnStats, WriteRequest, WriteResult

__all__ = [
    "add_actions",
    "check_claim",
    "commit_adds",
    "stage_arrow",
    "stats_from_log",
    "total_rows",
]

# Arrow's name for a codec where it differs from Spark's (Arrow's "lz4" is the raw block format).
_ARROW_CODEC = {"lz4_raw": "lz4", "uncompressed": "none"}


def commit_adds(
    request: WriteRequest,
    root: str,
    existing: Any,
    table_schema: StructType | None,
    schema: StructType,
    partitions: list[str],
    adds: list[Any],
    rows: int,
) -> WriteResult:
    """Commit the staged files in one delta-rs transaction (the second half of ``stage``)."""
    from deltalake import DeltaTable, Schema
    from deltalake.exceptions import CommitFailedError
    from deltalake.schema import Field as DeltaField
    from deltalake.transaction import (
        CommitProperties,
        Transaction,
        create_table_with_add_actions,
    )

    path, mode, txn = request.path, request.mode, request.txn
    # delta-rs checks appends against each other, but an overwrite built on an older
    # snapshot would remove only the files of that snapshot and keep rows committed
    # since: refuse it instead (a retry of the job recomputes from the new version).
    if existing is None:
        landed = DeltaTable.is_deltatable(root)
    else:
        landed = mode == "overwrite" and DeltaTable(root).version() != existing.version()
    if landed:
        raise ConcurrentWriteError(
            f"{path}: another commit landed after this {mode} was staged; nothing was "
            "committed (retry the job)"
        )
    if txn is not None and existing is not None:
        check_claim(path, txn, DeltaTable(root).transaction_version(txn.app_id))
    metadata = dict(request.metadata or {})
    try:
        delta_schema = Schema.from_json(schema.json())
        properties = CommitProperties(
            custom_metadata=metadata,
            app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
        )
        if existing is None:
            create_table_with_add_actions(
                root,
                delta_schema,
                adds,
                mode="error",
                partition_by=partitions or None,
                configuration=dict(request.properties or {}) or None,
                commit_properties=properties,
            )
            operation = "create"
        else:
            if table_schema is not None and schema != table_schema and not request.overwrite_schema:
                # Appends do not carry a new schema in delta-rs: evolve it first.
                new_fields = [f for f in schema.fields if f.name not in table_schema.fieldNames()]
                existing.alter.add_columns(
                    [DeltaField.from_json(json.dumps(f.jsonValue())) for f in new_fields],
                    commit_properties=CommitProperties(
                        custom_metadata={**metadata, "featurelake.schema_evolution": "add"}
                    ),
                )
                existing = DeltaTable(root)
            filters = None
            operation = mode
            effective_mode = mode
            if mode == "overwrite" and request.replace_partitions is not None:
                filters = partition_filters(request.replace_partitions, adds, partitions, path)
                operation = "partition-overwrite"
                if filters is None:  # dynamic overwrite with no rows: nothing to replace
                    effective_mode = "append"
            existing.create_write_transaction(
                adds,
                mode=effective_mode,
                schema=delta_schema,
                partition_by=partitions or None,
                partition_filters=filters,
                commit_properties=properties,
            )
        version = DeltaTable(root).version()
    except CommitFailedError as exc:
        if txn is not None and "transaction" in str(exc).lower():
            raise AlreadyCommittedError(
                f"{path}: a concurrent writer claimed {txn.app_id} first; nothing of "
                f"this {mode} was committed: {exc}"
            ) from exc
        raise ConcurrentWriteError(
            f"{path}: a concurrent commit conflicted with this {mode}; nothing was "
            f"committed (retry the job): {exc}"
        ) from exc
    return WriteResult(path, version, rows, len(adds), operation)


def check_claim(path: str, txn: AppTransaction, recorded: int | None) -> None:
    """Raise when the table already records ``txn.app_id`` at ``txn.version`` or later.

    Raises:
        AlreadyCommittedError: the claim was made before.
    """
    if recorded is not None and recorded >= txn.version:
        raise AlreadyCommittedError(
            f"{path}: {txn.app_id} is already at version {recorded} (this write claims "
            f"{txn.version}); another writer committed first and nothing of this write was "
            "committed"
        )


def stage_arrow(
    table: Any, root: str, schema: StructType, compression: str, dictionary: bool
) -> list[Any]:
    """Write an Arrow table as one Parquet file in the table's folder; its add action.

    Columns are written in ``schema``'s order, all nullable, as Spark writes them. No rows,
    no file (Delta needs none). The file is referenced by no version until the commit.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    if table.num_rows == 0:
        return []
    aligned = table.select(schema.fieldNames())
    aligned = aligned.cast(pa.schema([pa.field(f.name, f.type, True) for f in aligned.schema]))
    codec = _ARROW_CODEC.get(compression, compression)
    name = f"part-00000-{uuid.uuid4().hex}-c000.{compression}.parquet"
    target = os.path.join(root, name)
    os.makedirs(root, exist_ok=True)
    pq.write_table(aligned, target, compression=codec, use_dictionary=dictionary)
    stats = file_stats(target, {f.name: f.dataType for f in schema.fields}, set())
    return [
        AddAction(
            name, os.path.getsize(target), {}, int(time.time() * 1000), True, json.dumps(stats)
        )
    ]


def add_actions(table: Any) -> Any:
    """A delta-rs table's data files with their flattened statistics, as an Arrow table."""
    import pyarrow as pa

    return pa.table(table.get_add_actions(flatten=True))


def total_rows(table: Any) -> int:
    actions = add_actions(table)
    if actions.num_rows == 0 or "num_records" not in actions.column_names:
        return 0
    return int(sum(v or 0 for v in actions.column("num_records").to_pylist()))


def stats_from_log(table: Any, columns: Sequence[str]) -> dict[str, ColumnStats] | None:
    """Combine the files' statistics of a delta-rs snapshot per column (see ``column_stats``)."""
    actions = add_actions(table)
    if actions.num_rows == 0:
        return {c: ColumnStats(None, None, 0) for c in columns}
    if "num_records" not in actions.column_names:
        return None
    records = actions.column("num_records").to_pylist()
    out = {}
    for name in columns:
        needed = [f"null_count.{name}", f"min.{name}", f"max.{name}"]
        if any(c not in actions.column_names for c in needed):
            return None
        nulls, lows, highs = (actions.column(c).to_pylist() for c in needed)
        low = high = None
        for n, count, lo, hi in zip(records, nulls, lows, highs, strict=True):
            if n is None or count is None:
                return None
            if count == n:  # only nulls in this file: it has no min or max
                continue
            if lo is None or hi is None:
                return None
            low = lo if low is None else min(low, lo)
            high = hi if high is None else max(high, hi)
        out[name] = ColumnStats(low, high, int(sum(nulls)))
    return out
