"""What the online store holds: per view, a profile of the served values and their freshness.

For each view of ``online.views`` the entities of the view's source table (at the Delta
version the view was last materialised from) are looked up in the store through its
protocol, so SQLite and Redis are read the same way. The stored rows become a small frame
(values parsed by the view's feature types) that is profiled like a table, as
``online/<view>``, and compared with the reference of the source table when that table is
monitored with one: a served value that drifted from what the model was trained on shows up
here even when gold is fine. The newest stored event time is the view's freshness in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.session import local_frame
from featurelake.feature_store.definitions import FeatureView
from featurelake.feature_store.online import (
    OnlineStore,
    encode_entity_key,
    load_serving_config,
    open_online_store,
)
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.freshness import view_result
from featurelake.monitoring.references import ReferenceUnavailable, resolve_reference
from featurelake.monitoring.results import CheckResult
from featurelake.monitoring.tables import (
    column_kinds,
    drift_results,
    profile_and_compare,
    reference_profiles,
)

__all__ = ["monitor_online", "stored_rows"]

log = logging.getLogger(__name__)

_LOOKUP_BATCH = 500


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored_rows(
    store: OnlineStore, view: FeatureView, keys: Sequence[str]
) -> list[tuple[int, str]]:
    """(event time in UTC microseconds, JSON payload) of every key the store holds."""
    found = []
    for chunk in _chunks(keys, _LOOKUP_BATCH):
        for record in store.read_records(view.name, list(chunk)):
            if record is not None:
                found.append((record.event_ts_micros, record.payload))
    return found


def _served_frame(ctx: MonitorContext, view: FeatureView, rows: list[tuple[int, str]]) -> DataFrame:
    """The stored values as columns typed by the view's features."""
    schema = ", ".join(f"`{f.name}` {f.dtype}" for f in view.features)
    raw = local_frame(ctx.spark, rows, "event_ts_micros long, payload string")
    parsed = F.from_json("payload", schema)
    return raw.select(
        F.timestamp_micros("event_ts_micros").alias("_event_ts"),
        *[parsed[f.name].alias(f.name) for f in view.features],
    )


def _entity_keys(ctx: MonitorContext, view: FeatureView, version: int) -> list[str]:
    keys = (
        ctx.tables.read(view.source.path(ctx.settings), version=version, record=False)
        .select(*view.join_keys)
        .dropna()
        .distinct()
    )
    return [encode_entity_key([row[k] for k in view.join_keys]) for row in keys.toLocalIterator()]


def _compare(
    ctx: MonitorContext, view: FeatureView, served: DataFrame, version: int
) -> list[CheckResult]:
    """Profile the served values; drift against the source table's reference when declared."""
    table = f"online/{view.name}"
    source = ctx.config.table(str(view.source))
    kinds = column_kinds(served, view.feature_names, source.categorical if source else ())
    reference, references, note = None, [], "no reference: the source table is not monitored"
    if source is not None and source.reference is not None:
        try:
            reference = resolve_reference(
                ctx.tables, ctx.settings, source, view.source.path(ctx.settings)
            )
            references = reference_profiles(ctx, source.table, reference, kinds, ())
            note = f"compared with {reference.id}"
        except ReferenceUnavailable as exc:
            note = f"drift not computed: {exc}"
    comparison = profile_and_compare(
        ctx,
        served,
        table=table,
        table_version=version,
        kinds=kinds,
        window=None,
        slices=(),
        reference=reference,
        references=references,
    )
    rows = comparison.profiles[0].rows if comparison.profiles else 0
    results = [
        CheckResult(
            "profile",
            table,
            "ok",
            metric="rows",
            value=float(rows),
            detail=f"{rows} stored entities of {view.source}@{version}; {note}",
            table=table,
            table_version=version,
            reference_id=reference.id if reference else None,
        )
    ]
    if reference is not None:
        results += drift_results(
            comparison.drifts,
            check="drift",
            table=table,
            table_version=version,
            reference=reference,
        )
    return results


def _monitor_view(ctx: MonitorContext, store: OnlineStore, view: FeatureView) -> list[CheckResult]:
    bookmark = store.get_state(view.name)
    if not bookmark:
        return [
            CheckResult(
                "profile",
                f"online/{view.name}",
                "skipped",
                detail="the view has not been materialised",
            )
        ]
    path = view.source.path(ctx.settings)
    version = int(bookmark.get("source_version", ctx.tables.version(path)))
    rows = stored_rows(store, view, _entity_keys(ctx, view, version))
    results: list[CheckResult] = []
    if view.freshness_sla is not None:
        newest = max((ts for ts, _ in rows), default=None)
        latest = (
            datetime.fromtimestamp(newest / 1_000_000, tz=timezone.utc)
            if newest is not None
            else None
        )
        results.append(view_result(ctx, view, "online", latest, version))
    if not rows:
        return [
            *results,
            CheckResult(
                "profile",
                f"online/{view.name}",
                "skipped",
                detail="the store holds no row of the view",
            ),
        ]
    return results + _compare(ctx, view, _served_frame(ctx, view, rows), version)


def monitor_online(ctx: MonitorContext) -> list[CheckResult]:
    """Profile, compare and date what the online store holds for each ``online.views`` view."""
    names = ctx.config.online.views
    if not names:
        return []
    serving = load_serving_config(ctx.settings)
    store = open_online_store(serving.online_store)
    results: list[CheckResult] = []
    try:
        for name in names:
            try:
                results += _monitor_view(ctx, store, ctx.views[name])
            except Exception as exc:  # noqa: BLE001 - one view's failure is its own result
                log.warning(
                    "online_monitor_failed", extra={"fields": {"view": name, "error": str(exc)}}
                )
                results.append(
                    CheckResult(
                        "profile", f"online/{name}", "error", detail=f"{type(exc).__name__}: {exc}"
                    )
                )
    finally:
        store.close()
    return results
