"""Offline retrieval: point-in-time-correct training sets.

The rule (DESIGN.md, "Point-in-time correctness"), for an entity row with keys ``k`` and
timestamp ``t`` and a feature view with TTL ``ttl``:

* a feature row is **usable** when its keys equal ``k`` and ``t - ttl < event_time <= t``:
  a value stamped exactly ``t`` is used; one stamped exactly ``t - ttl`` has expired (the
  lower bound is exclusive, so a ``30d`` TTL means "younger than 30 days"); without a TTL
  there is no lower bound;
* with a **known-time filter** (``known_at``), a feature row is usable only if its created
  timestamp is ``<= t`` (``known_at="entity_time"``) or ``<=`` a fixed cutoff (a datetime),
  so a value that arrived late cannot leak into an earlier training row; a row whose created
  time is null counts as not known;
* among usable rows the **latest** wins: greatest event time, then greatest created time
  (null lowest), then - for rows equal on both - the greatest values of the view's features
  compared in declaration order (null lowest). So the choice is deterministic, independent of
  file and partition order, and independent of which of the view's features were requested;
* **every entity row is kept**, duplicates included (each gets a private row id), with nulls
  where no usable row exists (unknown entity, row before the first value, expired value).

:func:`as_of_join` is the one implementation of this rule; :func:`get_training_set` applies
it once per requested view.

Two methods, the same result (tests/test_pit.py compares them on random histories):

* **sort-merge** (the default when no known-time filter is asked for): entity rows and feature
  rows of a view are put in one frame, sorted per key by time (feature rows before entity rows
  at the same instant, then by the tie rule), and each entity row carries forward the last
  feature row before it (``last(..., ignorenulls)`` over the sorted rows); the TTL is then one
  comparison with that row's event time (if the latest usable-by-time row has expired, every
  earlier one has too). One shuffle by key and one sort: the cost does not grow with the TTL or
  with how many feature rows a key has per entity row.
* **range join** (``known_at``): the sort orders rows by one time only, so it cannot honour a
  per-row known-time filter (a late-arriving older value and an on-time newer one need both
  event and created time). A range join can, and the TTL bounds it: feature rows are bucketed
  by ``floor(event_time / ttl)`` and copied into the next bucket, entity rows join on
  ``(keys, floor(t / ttl))``, so each entity row meets at most two TTLs' worth of rows of its
  own key before the exact window filter - an equi-join Spark hashes or sort-merges, never a
  cross product. The latest row is chosen with ``row_number()`` over (keys, bucket, row id),
  which the join's partitioning already satisfies, so it costs a sort within partitions and no
  extra shuffle; the entity columns travel through the left join, so there is no join back on
  a generated id. Without a TTL the join is on the keys alone, which costs (entity rows x
  feature rows) per key: declare a TTL for long histories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, TimestampNTZType, TimestampType

from featurelake.core.errors import MissingColumnsError, require_columns
from featurelake.feature_store.definitions import (
    FeatureRef,
    FeatureView,
    FeatureViewError,
    resolve_feature_refs,
)

__all__ = [
    "AsOfMethod",
    "KnownAt",
    "MissingColumnsError",
    "ROW_ID",
    "as_of_join",
    "get_training_set",
    "view_frame",
]

#: ``"entity_time"``: a value counts only if created at or before the entity row's time;
#: a datetime: only if created at or before that cutoff; ``None``: no known-time filter.
KnownAt = Literal["entity_time"] | datetime | None

#: ``"sort_merge"``, ``"range_join"``, or ``"auto"``: sort-merge unless a known-time filter is
#: asked for (which only the range join can apply).
AsOfMethod = Literal["auto", "sort_merge", "range_join"]

#: The private row id that keeps duplicate entity rows apart (dropped from the result).
ROW_ID = "__fl_row_id"
_PREFIX = "__fl_"
_EVENT = "__fl_event_ts"
_EVENT_US = "__fl_event_us"
_CREATED = "__fl_created_ts"
_BUCKET = "__fl_bucket"
_LATEST = "__fl_latest"
_ENTITY_TS = "__fl_entity_ts"
_TIME = "__fl_time"
_KIND = "__fl_kind"
_FOUND = "__fl_found"


def _require(df: DataFrame, columns: Sequence[str], what: str) -> None:
    require_columns(df.columns, columns, what)


def _is_timestamp(dtype: DataType) -> bool:
    return isinstance(dtype, (TimestampType, TimestampNTZType))


def _micros(column: Column) -> Column:
    return F.unix_micros(column.cast("timestamp"))


def as_of_join(
    entity_df: DataFrame,
    feature_df: DataFrame,
    *,
    join_keys: Sequence[str],
    entity_timestamp_column: str,
    event_timestamp_column: str,
    feature_columns: Sequence[str],
    tie_break_columns: Sequence[str] | None = None,
    ttl: timedelta | None = None,
    created_timestamp_column: str | None = None,
    known_at: KnownAt = None,
    output_columns: Mapping[str, str] | None = None,
    event_timestamp_output: str | None = None,
    method: AsOfMethod = "auto",
) -> DataFrame:
    """Attach to each entity row the latest usable feature values (point in time).

    See the module docstring for the exact rule (window, TTL boundary, known-time filter,
    ties). Every entity row is kept exactly once, in any order, with its own columns
    unchanged, plus one column per feature (null when no usable row exists).

    Args:
        entity_df: the entity rows: ``join_keys`` and ``entity_timestamp_column`` (timestamp),
            plus any other columns (kept as they are). Duplicate rows are all kept.
        feature_df: the feature rows: ``join_keys``, ``event_timestamp_column``, the features
            and, if given, ``created_timestamp_column``.
        join_keys: key columns present in both frames with the same types.
        entity_timestamp_column: the time ``t`` of each entity row.
        event_timestamp_column: when each feature row's values were true.
        feature_columns: the feature columns to attach, in output order.
        tie_break_columns: columns compared (in order, greatest wins, null lowest) between rows
            with equal event and created times; default ``feature_columns``. Pass every feature
            of the view so the choice does not depend on which features were requested.
        ttl: a feature row is usable only if ``event_time > t - ttl``; ``None``: no limit.
        created_timestamp_column: when each feature row became known.
        known_at: the known-time filter (see :data:`KnownAt`); needs
            ``created_timestamp_column``.
        output_columns: rename features in the result (``{feature: output name}``).
        event_timestamp_output: also return the chosen row's event time under this name.
        method: ``sort_merge``, ``range_join`` or ``auto`` (sort-merge unless ``known_at``);
            see the module docstring.

    Returns:
        ``entity_df``'s columns followed by the feature columns (renamed as asked).

    Raises:
        MissingColumnsError: a frame lacks a needed column.
        FeatureViewError: bad types (timestamps, key types differ), a non-positive TTL,
            ``known_at`` without a created column, or output names that clash with entity
            columns.
    """
    keys = list(join_keys)
    features = list(feature_columns)
    tie_break = list(tie_break_columns) if tie_break_columns is not None else features
    renames = dict(output_columns or {})
    if not keys:
        raise FeatureViewError("as_of_join needs at least one join key")
    if not features:
        raise FeatureViewError("as_of_join needs at least one feature column")
    if ttl is not None and ttl <= timedelta(0):
        raise FeatureViewError(f"ttl must be positive, got {ttl}")
    if known_at is not None and created_timestamp_column is None:
        raise FeatureViewError(
            "a known-time filter (known_at) needs a created timestamp column on the feature rows"
        )
    if isinstance(known_at, str) and known_at != "entity_time":
        raise FeatureViewError(
            f"known_at must be 'entity_time', a datetime or None; got {known_at!r}"
        )
    if method == "sort_merge" and known_at is not None:
        raise FeatureViewError("the sort-merge method cannot apply a known-time filter (known_at)")
    if method not in ("auto", "sort_merge", "range_join"):
        raise FeatureViewError(f"method must be auto, sort_merge or range_join; got {method!r}")
    _require(entity_df, [*keys, entity_timestamp_column], "entity rows")
    feature_needs = [*keys, event_timestamp_column, *features, *tie_break]
    if created_timestamp_column:
        feature_needs.append(created_timestamp_column)
    _require(feature_df, list(dict.fromkeys(feature_needs)), "feature rows")
    _check_types(
        entity_df,
        feature_df,
        keys,
        entity_timestamp_column,
        event_timestamp_column,
        created_timestamp_column,
    )
    out_names = [renames.get(f, f) for f in features]
    if event_timestamp_output:
        out_names.append(event_timestamp_output)
    clash = sorted(set(out_names) & set(entity_df.columns))
    if clash or len(set(out_names)) != len(out_names):
        raise FeatureViewError(
            f"output columns {clash or out_names} clash with entity columns or each other; "
            f"rename them (entity columns: {entity_df.columns})"
        )
    if any(c.startswith(_PREFIX) for c in entity_df.columns if c != ROW_ID):
        raise FeatureViewError(f"entity columns must not start with {_PREFIX!r}")

    # Step 0 - identify entity rows. A private id keeps duplicates apart; the caller's id is
    # reused so several views joined in turn group by the same id.
    entities = (
        entity_df
        if ROW_ID in entity_df.columns
        else entity_df.withColumn(ROW_ID, F.monotonically_increasing_id())
    )
    entity_columns = [c for c in entity_df.columns if c != ROW_ID]
    key_alias = {k: f"{_PREFIX}k{i}" for i, k in enumerate(keys)}
    left = entities.select(
        *[F.col(f"`{c}`") for c in entity_columns],
        ROW_ID,
        _micros(F.col(entity_timestamp_column)).alias(_ENTITY_TS),
    )

    # Step 1 - filter the feature rows to what can ever be usable: event time present and,
    # for a fixed known-time cutoff, known by then. Times become epoch microseconds so every
    # comparison below is exact integer arithmetic.
    ordered_values = list(dict.fromkeys([*tie_break, *features]))
    right = feature_df.select(
        *[F.col(f"`{k}`").alias(key_alias[k]) for k in keys],
        F.col(event_timestamp_column).cast("timestamp").alias(_EVENT),
        _micros(F.col(event_timestamp_column)).alias(_EVENT_US),
        (
            _micros(F.col(created_timestamp_column))
            if created_timestamp_column
            else F.lit(None).cast("long")
        ).alias(_CREATED),
        *[F.col(f"`{c}`").alias(f"{_PREFIX}v{i}") for i, c in enumerate(ordered_values)],
    ).where(F.col(_EVENT_US).isNotNull())
    if isinstance(known_at, datetime):
        right = right.where(F.col(_CREATED) <= F.lit(_epoch_micros(known_at)))

    index = {c: i for i, c in enumerate(ordered_values)}
    keep_id = [ROW_ID] if ROW_ID in entity_df.columns else []
    if method == "sort_merge" or (method == "auto" and known_at is None):
        return _sort_merge(
            left,
            right,
            keys=keys,
            key_alias=key_alias,
            entity_columns=entity_columns,
            values=len(ordered_values),
            ttl=ttl,
            result=[
                *[(f"{_PREFIX}v{index[f]}", renames.get(f, f)) for f in features],
                *([(_EVENT, event_timestamp_output)] if event_timestamp_output else []),
            ],
            keep_id=keep_id,
        )

    # Step 2 - join on the key columns (never a concatenated string) and, with a TTL, on the
    # TTL bucket: a feature row goes to the buckets of every t it can be usable at
    # (event_time <= t <= event_time + ttl - 1us): its own and, unless it sits exactly on a
    # bucket start, the next one.
    condition = [F.col(k) == F.col(key_alias[k]) for k in keys]
    if ttl is not None:
        width = _total_micros(ttl)
        left = left.withColumn(_BUCKET, _floor_div(F.col(_ENTITY_TS), width))
        first = _floor_div(F.col(_EVENT_US), width)
        last = _floor_div(F.col(_EVENT_US) + F.lit(width - 1), width)  # last usable instant
        right = right.withColumn(f"{_BUCKET}_r", F.explode(F.sequence(first, last)))
        condition.append(F.col(_BUCKET) == F.col(f"{_BUCKET}_r"))

    # Step 3 - keep only usable rows: inside the window (t - ttl, t] and, with
    # known_at="entity_time", created at or before t. Inside the join condition, so a left
    # join keeps entity rows that have no usable row at all.
    condition.append(F.col(_EVENT_US) <= F.col(_ENTITY_TS))
    if ttl is not None:
        condition.append(F.col(_EVENT_US) > F.col(_ENTITY_TS) - F.lit(_total_micros(ttl)))
    if known_at == "entity_time":
        condition.append(F.col(_CREATED) <= F.col(_ENTITY_TS))
    on = condition[0]
    for part in condition[1:]:
        on = on & part
    pairs = left.join(right, on, "left")

    # Step 4 - dedupe and pick the latest per entity row: the first row in the order (event
    # time, created time, tie-break values), all descending with nulls last, is the documented
    # tie rule; identical duplicate feature rows collapse. An entity row meets feature rows of
    # one (keys, bucket) only, so partitioning by them plus the row id reuses the join's
    # partitioning: a sort within partitions, no further shuffle.
    order = [F.col(_EVENT).desc_nulls_last(), F.col(_CREATED).desc_nulls_last()]
    order += [F.col(f"{_PREFIX}v{i}").desc_nulls_last() for i in range(len(ordered_values))]
    partition = [*keys, *([_BUCKET] if ttl is not None else []), ROW_ID]
    ranked = pairs.withColumn(
        _LATEST, F.row_number().over(Window.partitionBy(*partition).orderBy(*order))
    ).where(F.col(_LATEST) == 1)

    # Step 5 - one row per entity row (unmatched ones came through the left join with nulls):
    # the entity columns as they came, then the features.
    result = [F.col(f"`{c}`") for c in entity_columns]
    result += [F.col(f"{_PREFIX}v{index[f]}").alias(renames.get(f, f)) for f in features]
    if event_timestamp_output:
        result.append(F.col(_EVENT).alias(event_timestamp_output))
    return ranked.select(*keep_id, *result)


def _sort_merge(
    left: DataFrame,
    right: DataFrame,
    *,
    keys: Sequence[str],
    key_alias: Mapping[str, str],
    entity_columns: Sequence[str],
    values: int,
    ttl: timedelta | None,
    result: Sequence[tuple[str, str]],
    keep_id: Sequence[str],
) -> DataFrame:
    """Steps 2-5 of :func:`as_of_join` without a known-time filter, by sorting (see the module
    docstring). ``left`` and ``right`` are the prepared entity and feature rows of step 1."""
    # Step 2 - one frame: entity rows (kind 1) and feature rows (kind 0) of every key, the
    # feature row's columns packed in one struct that entity rows leave null. Feature rows with
    # a null key can never match (a null key equals nothing), so they are dropped.
    packed = [_EVENT, _EVENT_US, _CREATED, *[f"{_PREFIX}v{i}" for i in range(values)]]
    features = right.where(
        F.lit(True) if not keys else _all_not_null([key_alias[k] for k in keys])
    ).select(
        *[F.col(key_alias[k]).alias(k) for k in keys],
        F.col(_EVENT_US).alias(_TIME),
        F.lit(0).alias(_KIND),
        F.struct(*packed).alias(_FOUND),
        *[F.col(c) for c in packed],
    )
    entities = left.select(
        *[F.col(f"`{c}`") for c in entity_columns],
        ROW_ID,
        F.col(_ENTITY_TS).alias(_TIME),
        F.lit(1).alias(_KIND),
    )
    rows = entities.unionByName(features, allowMissingColumns=True)

    # Step 3 - per key, in time order with feature rows before entity rows at the same instant
    # (a value stamped exactly t is usable) and feature rows of equal time in the tie rule's
    # order (created time, then values, ascending with nulls first), the last feature row up
    # to each entity row is the latest usable one by time.
    order = [F.col(_TIME).asc_nulls_first(), F.col(_KIND).asc()]
    order += [F.col(c).asc_nulls_first() for c in packed[2:]]
    window = (
        Window.partitionBy(*[F.col(f"`{k}`") for k in keys])
        .orderBy(*order)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    carried = rows.withColumn(_FOUND, F.last(_FOUND, ignorenulls=True).over(window)).where(
        F.col(_KIND) == 1
    )

    # Step 4 - the TTL: the carried row is usable only if event_time > t - ttl (an entity row
    # without a time, or with a null key, has none).
    usable = F.col(_TIME).isNotNull() & _all_not_null(list(keys)) & F.col(_FOUND).isNotNull()
    if ttl is not None:
        usable = usable & (
            F.col(f"{_FOUND}.{_EVENT_US}") > F.col(_TIME) - F.lit(_total_micros(ttl))
        )

    # Step 5 - the entity columns as they came, then the features.
    out = [F.col(f"`{c}`") for c in entity_columns]
    out += [F.when(usable, F.col(f"{_FOUND}.{src}")).alias(name) for src, name in result]
    return carried.select(*keep_id, *out)


def _all_not_null(columns: Sequence[str]) -> Column:
    condition = F.lit(True)
    for c in columns:
        condition = condition & F.col(f"`{c}`").isNotNull()
    return condition


def _check_types(
    entity_df: DataFrame,
    feature_df: DataFrame,
    keys: Sequence[str],
    entity_ts: str,
    event_ts: str,
    created_ts: str | None,
) -> None:
    left_types = {f.name: f.dataType for f in entity_df.schema.fields}
    right_types = {f.name: f.dataType for f in feature_df.schema.fields}
    differ = [
        f"{k} ({left_types[k].simpleString()} vs {right_types[k].simpleString()})"
        for k in keys
        if left_types[k] != right_types[k]
    ]
    if differ:
        raise FeatureViewError(
            f"join keys have different types in entity rows and feature rows: {differ}; "
            "cast the entity rows' keys"
        )
    for name, types, what in (
        (entity_ts, left_types, "entity"),
        (event_ts, right_types, "event"),
        (created_ts, right_types, "created"),
    ):
        if name is not None and not _is_timestamp(types[name]):
            raise FeatureViewError(
                f"{what} timestamp column {name!r} must be a timestamp, "
                f"got {types[name].simpleString()}"
            )


def _epoch_micros(value: datetime) -> int:
    aware = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    return _total_micros(aware - datetime(1970, 1, 1, tzinfo=timezone.utc))


def _total_micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _floor_div(column: Column, width: int) -> Column:
    """Exact floor division of a long column (also below zero: times before 1970)."""
    return ((column - F.pmod(column, F.lit(width))) / F.lit(width)).cast("long")


def view_frame(view: FeatureView, source_df: DataFrame) -> DataFrame:
    """The feature rows of ``view`` from its source table, checked against the declaration.

    Adds the constant event time of a snapshot view (``event_timestamp_value``).

    Args:
        view: the feature view.
        source_df: the view's source table.

    Returns:
        The keys, timestamps and features of the view.

    Raises:
        MissingColumnsError: the source lacks declared columns.
        FeatureViewError: a feature's type differs from its declared dtype, or a snapshot
            view's source already has the event-time column.
    """
    where = f"source {view.source} of feature view {view.name!r}"
    _require(source_df, view.source_columns(), where)
    types = {f.name: f.dataType.simpleString() for f in source_df.schema.fields}
    wrong = [
        f"{f.name} is {types[f.name]}, declared {f.dtype}"
        for f in view.features
        if types[f.name] != _spark_type_name(f.dtype)
    ]
    if wrong:
        raise FeatureViewError(
            f"source {view.source} does not match feature view {view.name!r}: {wrong}"
        )
    df = source_df.select(*[F.col(f"`{c}`") for c in view.source_columns()])
    if view.event_timestamp_value is not None:
        if view.event_timestamp_column in source_df.columns:
            raise FeatureViewError(
                f"feature view {view.name!r} sets event_timestamp_value but its source "
                f"{view.source} already has a column {view.event_timestamp_column!r}"
            )
        df = df.withColumn(view.event_timestamp_column, F.lit(view.event_timestamp_value))
    return df


def _spark_type_name(dtype: str) -> str:
    return {
        "long": "bigint",
        "int": "int",
        "float": "float",
        "double": "double",
        "string": "string",
        "boolean": "boolean",
        "date": "date",
        "timestamp": "timestamp",
    }[dtype]


def get_training_set(
    entity_df: DataFrame,
    features: Sequence[str | FeatureRef],
    *,
    views: Mapping[str, FeatureView],
    sources: Mapping[str, DataFrame],
    entity_timestamp_column: str = "event_timestamp",
    known_at: KnownAt = None,
    full_feature_names: bool = False,
    include_event_timestamps: bool = False,
) -> DataFrame:
    """Point-in-time feature values for every entity row, from several views in one call.

    Args:
        entity_df: entity rows: each requested view's join keys and a timestamp column.
        features: ``"view:feature"`` references (``"view:*"`` for all of a view's features).
        views: declared views by name.
        sources: source tables by ``"<layer>/<table>"`` (read by the caller, e.g.
            :class:`featurelake.feature_store.api.FeatureStore`).
        entity_timestamp_column: the entity rows' time column.
        known_at: known-time filter (see :data:`KnownAt`); every requested view needs a
            ``created_timestamp_column``.
        full_feature_names: name columns ``<view>__<feature>`` instead of ``<feature>``.
        include_event_timestamps: add ``<view>__event_ts``, the event time of the row used.

    Returns:
        The entity rows (all kept, duplicates included) with one column per feature.

    Raises:
        UnknownFeatureError: an undeclared view or feature.
        FeatureViewError: a feature name repeats across views (use ``full_feature_names``),
            ``known_at`` with a view without created timestamps, or as :func:`as_of_join`.
        MissingColumnsError: a needed column is missing.
    """
    requested = resolve_feature_refs(features, views)
    if not full_feature_names:
        names = [f for chosen in requested.values() for f in chosen]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FeatureViewError(
                f"features {repeated} are requested from more than one view; "
                "pass full_feature_names=True to name columns <view>__<feature>"
            )
    if known_at is not None:
        lacking = [v for v in requested if views[v].created_timestamp_column is None]
        if lacking:
            raise FeatureViewError(
                f"known_at needs created timestamps, but feature views {lacking} declare no "
                "created_timestamp_column"
            )
    _require(entity_df, [entity_timestamp_column], "entity rows")
    result = entity_df.withColumn(ROW_ID, F.monotonically_increasing_id())
    for view_name, chosen in requested.items():
        view = views[view_name]
        source_key = str(view.source)
        if source_key not in sources:
            raise FeatureViewError(
                f"no source frame for {source_key} (feature view {view_name!r}); "
                f"given: {sorted(sources)}"
            )
        renames = {f: f"{view_name}__{f}" for f in chosen} if full_feature_names else {}
        result = as_of_join(
            result,
            view_frame(view, sources[source_key]),
            join_keys=view.join_keys,
            entity_timestamp_column=entity_timestamp_column,
            event_timestamp_column=view.event_timestamp_column,
            feature_columns=chosen,
            tie_break_columns=view.feature_names,
            ttl=view.ttl,
            created_timestamp_column=view.created_timestamp_column,
            known_at=known_at,
            output_columns=renames,
            event_timestamp_output=f"{view_name}__event_ts" if include_event_timestamps else None,
        )
    return result.drop(ROW_ID)
