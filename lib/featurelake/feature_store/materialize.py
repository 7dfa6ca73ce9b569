"""Materialisation: load the latest feature values per entity into the online store.

For one feature view, :func:`materialize_view`

1. reads the view's source Delta table at its current version (pinned, so the bookmark names
   exactly what was read) and keeps the view's columns (:func:`~.offline.view_frame`, the same
   selection and type checks the training sets use), only rows with event time ``<= up_to``
   when a cut-off is given;
2. **incrementally**, when the store holds a bookmark of an earlier run of the same view
   definition: reads the source's change data feed since the bookmarked version when the
   table records one (native backend, gold tables); otherwise subtracts what that run saw
   (the source at the bookmarked Delta version, cut at the bookmarked ``up_to``) - what
   remains are the rows added or changed since, whatever kind of commit made them (append,
   overwrite, merge). Without a usable bookmark it loads everything (``mode="full"``);
3. keeps the latest row per entity with the rule point-in-time retrieval uses (greatest event
   time, then created time, then the feature values in declaration order; nulls lowest);
4. writes the rows to the store, which keeps a row only if it is not older than the stored one
   (an atomic compare in the store), then saves the new bookmark.

Writing from Spark: a SQLite file must have one writer, so its rows are streamed to the driver
with ``toLocalIterator`` (one partition in memory at a time, the next one prefetched) and
written there in batches, each one transaction. Redis is a network service that takes
concurrent writers, so each Spark task writes its own partition (``mapPartitions``, one Lua
call per batch) and returns its counts - the work and the network round trips spread over the
executors. Either way a row is written at most a few times (a retried task rewrites the same
rows, which is harmless: writes are idempotent and monotonic).

A crash between the writes and the bookmark leaves the old bookmark: the next run redoes the
same rows, with the same result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType

from featurelake.core.config import Settings
from featurelake.delta import DeltaTables, TableNotFoundError
from featurelake.feature_store.definitions import WINDOW_END, FeatureView
from featurelake.feature_store.offline import view_frame
from featurelake.feature_store.online import (
    OnlineStore,
    Row,
    encode_entity_key,
    iter_batches,
)

__all__ = [
    "EVENT_MICROS",
    "MaterializeResult",
    "PAYLOAD",
    "UNSERVABLE",
    "changed_rows",
    "latest_per_entity",
    "materialize_view",
    "push_to_online_store",
    "with_online_payload",
    "with_rows_up_to",
]

log = logging.getLogger(__name__)

EVENT_MICROS = "_event_micros"
PAYLOAD = "_payload"
_LATEST = "_latest"
UNSERVABLE = "_unservable"
_NULL_KEY = "_null_key"
_BOOKMARK_FORMAT = 1


@dataclass(frozen=True)
class MaterializeResult:
    """What one materialisation of one view did.

    Attributes:
        view: the view name.
        source: the source table path.
        source_version: the Delta version read.
        up_to: the event-time cut-off (ISO-8601 UTC), or ``None``.
        mode: ``full``, ``incremental`` or ``up_to_date`` (nothing changed since the bookmark).
        previous_version: the bookmarked version an incremental run subtracted, or ``None``.
        entities_offered: rows sent to the store (one per changed entity).
        entities_written: rows the store created or replaced.
        entities_kept_newer: rows the store refused because it holds a newer one.
        rows_without_key: changed source rows with a null join key or event time (not
            servable; reported, never silently dropped).
        duration_s: wall time.
    """

    view: str
    source: str
    source_version: int
    up_to: str | None
    mode: Literal["full", "incremental", "up_to_date"]
    previous_version: int | None
    entities_offered: int
    entities_written: int
    entities_kept_newer: int
    rows_without_key: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the job summary)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Pure transformations
# --------------------------------------------------------------------------------------------


def with_rows_up_to(df: DataFrame, view: FeatureView, up_to: datetime | None) -> DataFrame:
    """Keep the rows of ``view`` whose event time is at or before ``up_to`` (all when ``None``).

    Args:
        df: the view's rows (:func:`~.offline.view_frame`).
        view: the feature view.
        up_to: the cut-off (UTC when naive).

    Returns:
        The filtered rows.
    """
    if up_to is None:
        return df
    return df.where(F.col(view.event_timestamp_column) <= F.lit(_utc(up_to)))


def changed_rows(current: DataFrame, previous: DataFrame) -> DataFrame:
    """Rows of ``current`` that ``previous`` does not have (EXCEPT DISTINCT, all columns).

    Both frames must be the same view's rows (same columns, same order).
    """
    return current.subtract(previous)


def _no_nan(column: Column, is_float: bool) -> Column:
    # JSON has no NaN: the online store holds null instead (served with status null_value).
    return F.when(F.isnan(column), F.lit(None)).otherwise(column) if is_float else column


def with_online_payload(df: DataFrame, view: FeatureView) -> DataFrame:
    """Add the event time in UTC microseconds and the features as one JSON object.

    Args:
        df: the view's rows (keys, event time, features).
        view: the feature view.

    Returns:
        ``df`` plus ``_event_micros`` (long) and ``_payload`` (string; nulls kept as ``null``,
        NaN as ``null``).
    """
    floats = {f.name for f in df.schema.fields if isinstance(f.dataType, (DoubleType, FloatType))}
    values = F.struct(*[_no_nan(F.col(f"`{n}`"), n in floats).alias(n) for n in view.feature_names])
    return df.withColumn(
        EVENT_MICROS, F.unix_micros(F.col(view.event_timestamp_column).cast("timestamp"))
    ).withColumn(PAYLOAD, F.to_json(values, {"ignoreNullFields": "false"}))


def latest_per_entity(df: DataFrame, view: FeatureView) -> DataFrame:
    """One row per entity: the latest by the point-in-time tie rule, with unservable counts.

    Greatest event time, then (a windowed view) the window ending first, then greatest created
    time (when the view has one), then the greatest feature values compared in declaration
    order (null lowest) - the rule of
    :func:`~.offline.as_of_join`, so the online value is the one a training row at the same
    time would get. Rows that cannot be served (a null join key or a null event time) are not
    chosen; ``_unservable`` counts them per group, in the same pass (a null key forms its own
    group, whose rows all count).

    Args:
        df: rows with the view's keys, ``_event_micros``, features and ``_payload``.
        view: the feature view.

    Returns:
        The join keys, ``_event_micros`` and ``_payload`` (null when the group has no servable
        row) and ``_unservable`` (long): one row per key combination.
    """
    keys = [F.col(f"`{k}`") for k in view.join_keys]
    created = (
        F.unix_micros(F.col(view.created_timestamp_column).cast("timestamp"))
        if view.created_timestamp_column
        else F.lit(None).cast("long")
    )
    # A windowed view's rows of one entity share the latest event time across every sliding
    # window holding that event: the window ending first is the trailing one (the value over
    # the last `size` up to that event), so it wins the tie.
    trailing = (
        -F.unix_micros(F.col(WINDOW_END)) if view.window is not None else F.lit(None).cast("long")
    )
    ordering = F.struct(
        F.col(EVENT_MICROS).alias("event"),
        trailing.alias("trailing"),
        created.alias("created"),
        *[F.col(f"`{n}`").alias(f"v{i}") for i, n in enumerate(view.feature_names)],
        F.col(PAYLOAD).alias("payload"),
    )
    null_key = F.lit(False)
    for key in keys:
        null_key = null_key | key.isNull()
    return (
        df.withColumn(_NULL_KEY, null_key)
        .groupBy(*keys)
        .agg(
            F.max(F.when(F.col(EVENT_MICROS).isNotNull() & ~F.col(_NULL_KEY), ordering)).alias(
                _LATEST
            ),
            F.sum(F.when(F.col(EVENT_MICROS).isNull() | F.col(_NULL_KEY), 1).otherwise(0))
            .cast("long")
            .alias(UNSERVABLE),
        )
        .select(
            *keys,
            F.col(f"{_LATEST}.event").alias(EVENT_MICROS),
            F.col(f"{_LATEST}.payload").alias(PAYLOAD),
            F.col(UNSERVABLE),
        )
    )


# --------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------


@dataclass
class _PushCounts:
    offered: int = 0
    written: int = 0
    unservable: int = 0


def _rows_of(records: Iterator[Any], keys: Sequence[str], counts: _PushCounts) -> Iterator[Row]:
    for record in records:
        counts.unservable += int(record[UNSERVABLE] or 0)
        if record[EVENT_MICROS] is None:
            continue  # the group had no servable row; its rows are counted above
        key = encode_entity_key([record[k] for k in keys])
        yield key, int(record[EVENT_MICROS]), record[PAYLOAD]


def _write_partition(
    store: OnlineStore, view_name: str, keys: Sequence[str], batch_size: int
) -> Any:
    def write(records: Iterator[Any]) -> Iterator[tuple[int, int, int]]:
        counts = _PushCounts()
        try:
            for batch in iter_batches(_rows_of(records, keys, counts), batch_size):
                counts.offered += len(batch)
                counts.written += store.write_rows(view_name, batch)
        finally:
            store.close()
        yield counts.offered, counts.written, counts.unservable

    return write


def push_to_online_store(
    df: DataFrame, view: FeatureView, store: OnlineStore, batch_size: int = 1000
) -> tuple[int, int, int]:
    """Write latest-per-entity rows to the store.

    SQLite (one writer): rows stream to the driver partition by partition
    (``toLocalIterator``, the next partition prefetched) and are written there, each batch one
    transaction. Redis (``store.parallel_writes``): every Spark task writes its own partition to
    the server and returns its counts.

    Args:
        df: the output of :func:`latest_per_entity`.
        view: the feature view (join keys, name).
        store: the online store.
        batch_size: rows per write call.

    Returns:
        ``(rows offered, rows created or replaced, unservable source rows)``.
    """
    keys = list(view.join_keys)
    columns = [F.col(f"`{k}`") for k in keys] + [
        F.col(EVENT_MICROS),
        F.col(PAYLOAD),
        F.col(UNSERVABLE),
    ]
    rows = df.select(*columns)
    if store.parallel_writes:
        writer = _write_partition(store, view.name, keys, batch_size)
        parts = rows.rdd.mapPartitions(writer).collect()
        return (sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))
    counts = _PushCounts()
    stream = rows.toLocalIterator(prefetchPartitions=True)
    for batch in iter_batches(_rows_of(stream, keys, counts), batch_size):
        counts.offered += len(batch)
        counts.written += store.write_rows(view.name, batch)
    return counts.offered, counts.written, counts.unservable


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _utc(value).isoformat()


def materialize_view(
    tables: DeltaTables,
    settings: Settings,
    view: FeatureView,
    store: OnlineStore,
    *,
    up_to: datetime | None = None,
    full: bool = False,
    batch_size: int = 1000,
) -> MaterializeResult:
    """Load the latest values of ``view`` into ``store``, incrementally when possible.

    Args:
        tables: table I/O of the running job (records the version read in its lineage).
        settings: settings (the lakehouse root that locates the source table).
        view: the feature view.
        store: the online store.
        up_to: materialise only rows with event time at or before this time (UTC when naive).
            A later run with an earlier cut-off does not rewind the store (older never replaces
            newer); use an empty store for that.
        full: ignore the bookmark and consider every source row.
        batch_size: rows per store write.

    Returns:
        The :class:`MaterializeResult`.

    Raises:
        TableNotFoundError: the source table does not exist.
        MissingColumnsError: the source lacks a declared column.
        FeatureViewError: a source column's type differs from the declaration.
    """
    started = time.monotonic()
    path = view.source.path(settings)
    version = tables.version(path)
    digest = view.definition_hash()
    up_to_iso = _iso(up_to)
    bookmark = None if full else store.get_state(view.name)
    usable = (
        bookmark is not None
        and bookmark.get("format") == _BOOKMARK_FORMAT
        and bookmark.get("definition_hash") == digest
        and bookmark.get("source") == path
    )
    if (
        usable
        and bookmark is not None
        and bookmark["source_version"] == version
        and bookmark.get("up_to") == up_to_iso
    ):
        result = MaterializeResult(
            view.name,
            path,
            version,
            up_to_iso,
            "up_to_date",
            version,
            0,
            0,
            0,
            0,
            round(time.monotonic() - started, 3),
        )
        log.info("materialize_up_to_date", extra={"fields": result.as_dict()})
        return result

    current = view_frame(view, tables.read(path, version=version)).transform(
        with_rows_up_to, view, up_to
    )
    mode: Literal["full", "incremental"] = "full"
    previous_version: int | None = None
    fed = None
    if usable and bookmark is not None and bookmark.get("up_to") == up_to_iso:
        fed = tables.changes(path, int(bookmark["source_version"]) + 1)
    if fed is not None:
        # Delta's change feed: the rows inserted or updated since the bookmark, not the
        # difference of two whole snapshots.
        previous_version = int(bookmark["source_version"])  # type: ignore[index]
        changed = fed.where(F.col("_change_type").isin("insert", "update_postimage")).drop(
            "_change_type", "_commit_version", "_commit_timestamp"
        )
        current = view_frame(view, changed).transform(with_rows_up_to, view, up_to)
        mode = "incremental"
    elif usable and bookmark is not None:
        previous_version = int(bookmark["source_version"])
        previous_cut = bookmark.get("up_to")
        try:
            before = view_frame(view, tables.read(path, version=previous_version, record=False))
            before = before.transform(
                with_rows_up_to,
                view,
                datetime.fromisoformat(previous_cut) if previous_cut else None,
            )
            current = changed_rows(current, before)
            mode = "incremental"
        except TableNotFoundError as exc:
            # The bookmarked version is gone (vacuumed or the table was recreated): load all.
            log.warning(
                "materialize_bookmark_unusable",
                extra={"fields": {"view": view.name, "error": str(exc)}},
            )
            previous_version = None
    elif bookmark is not None:
        log.info(
            "materialize_bookmark_ignored",
            extra={"fields": {"view": view.name, "reason": "definition or source changed"}},
        )

    latest = current.transform(with_online_payload, view).transform(latest_per_entity, view)
    offered, written, unservable = push_to_online_store(latest, view, store, batch_size)
    store.set_state(
        view.name,
        {
            "format": _BOOKMARK_FORMAT,
            "source": path,
            "source_version": version,
            "up_to": up_to_iso,
            "definition_hash": digest,
            "materialized_at": datetime.now(timezone.utc).isoformat(),
            "mode": mode,
            "entities_written": written,
        },
    )
    result = MaterializeResult(
        view.name,
        path,
        version,
        up_to_iso,
        mode,
        previous_version,
        offered,
        written,
        offered - written,
        unservable,
        round(time.monotonic() - started, 3),
    )
    level = logging.WARNING if unservable else logging.INFO
    log.log(level, "materialize_finished", extra={"fields": result.as_dict()})
    return result
