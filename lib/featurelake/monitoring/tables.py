"""Profiles and drift of one monitored table: read, profile (one pass), compare, record.

:func:`monitor_table` is the I/O edge for one declaration of ``conf/monitoring.yaml``'s
``tables``: it reads the table's current version, resolves its reference and that reference's
profile (computed once per reference id, then read back from ``ops/profile_metrics``),
profiles the current rows in one Spark pass with histograms on the reference's bins, compares
them (:mod:`featurelake.monitoring.drift`) and writes the profile, drift and result rows.
:func:`profile_and_compare` is the same without a declaration, for the online store and the
model monitor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, NumericType, StringType

from featurelake.monitoring.catalog import monitored_columns
from featurelake.monitoring.config import MetricThresholds, TableMonitorConfig
from featurelake.monitoring.context import MonitorContext
from featurelake.monitoring.drift import Bins, ColumnDrift, compare_profiles, numeric_bins
from featurelake.monitoring.drift import reference_categories as categories_of
from featurelake.monitoring.drift import reference_points as points_of
from featurelake.monitoring.profile import (
    ALL,
    OTHER,
    ColumnProfile,
    ProfileRequest,
    WindowSpec,
    collect_profiles,
)
from featurelake.monitoring.references import Reference, ReferenceUnavailable, resolve_reference
from featurelake.monitoring.results import (
    DRIFT_SCHEMA,
    DRIFT_TABLE,
    PROFILE_SCHEMA,
    PROFILE_TABLE,
    CheckResult,
    drift_rows,
    profile_rows,
)
from featurelake.monitoring.stats import bin_counts_from_cdf

__all__ = [
    "ColumnKinds",
    "column_kinds",
    "drift_results",
    "monitor_table",
    "profile_and_compare",
    "reference_profiles",
    "subject_of",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColumnKinds:
    """The profiled columns split by kind; ``ignored`` are of a type neither kind handles."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ignored: tuple[str, ...] = ()


def column_kinds(df: DataFrame, columns: Sequence[str], categorical: Sequence[str]) -> ColumnKinds:
    """Numeric columns are numbers; strings, booleans and the declared ones are categories."""
    types = {f.name: f.dataType for f in df.schema.fields}
    numeric, cats, ignored = [], [], []
    for column in columns:
        dtype = types.get(column)
        if column in categorical or isinstance(dtype, (StringType, BooleanType)):
            cats.append(column)
        elif isinstance(dtype, NumericType):
            numeric.append(column)
        else:
            ignored.append(column)
    return ColumnKinds(tuple(numeric), tuple(cats), tuple(ignored))


def subject_of(table: str, column: str, slice_name: str) -> str:
    """A drift condition's subject: ``<table>:<column>``, with ``[<slice>]`` for a slice."""
    return f"{table}:{column}" + ("" if slice_name == ALL else f"[{slice_name}]")


def _own_bins(profile: ColumnProfile, bins: int, max_categories: int) -> Bins:
    """A profile's histogram on its own bins (a reference's, or a table without reference)."""
    if profile.kind == "numeric":
        edges = numeric_bins(profile, bins)
        lookup = dict(zip(profile.cdf_points, profile.cdf_ranks, strict=True))
        counts = bin_counts_from_cdf(profile.non_null, [lookup[e] for e in edges])
        return Bins(edges=edges, current=tuple(counts))
    ordered = sorted(profile.value_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    labels = [v for v, _ in ordered[:max_categories]]
    counts = [profile.value_counts[v] for v in labels]
    return Bins(labels=(*labels, OTHER), current=(*counts, max(profile.non_null - sum(counts), 0)))


def _bins_map(
    profiles: Sequence[ColumnProfile], drifts: Sequence[ColumnDrift], bins: int, limit: int
) -> dict[tuple[str, str, str], tuple[Sequence[float], Sequence[str], Sequence[int]]]:
    """Histogram stored with each profile: on the reference's bins when compared, else own."""
    compared = {(d.window, d.slice, d.column): d.bins for d in drifts if d.bins.current}
    out: dict[tuple[str, str, str], tuple[Sequence[float], Sequence[str], Sequence[int]]] = {}
    for p in profiles:
        key = (p.window, p.slice, p.column)
        chosen = compared.get(key) or (_own_bins(p, bins, limit) if p.non_null else Bins())
        out[key] = (chosen.edges, chosen.labels, chosen.current)
    return out


def _stored_reference(
    ctx: MonitorContext, table: str, reference_id: str, columns: Sequence[str]
) -> list[ColumnProfile] | None:
    """A reference's profile read back from ``ops/profile_metrics``; None unless complete."""
    stored = ctx.read_ops(PROFILE_TABLE)
    if stored is None:
        return None
    rows = stored.filter(
        (F.col("role") == "reference")
        & (F.col("table") == table)
        & (F.col("reference_id") == reference_id)
    ).collect()
    profiles = [
        ColumnProfile(
            window=r["window"],
            window_start=r["window_start"],
            window_end=r["window_end"],
            slice=r["slice"],
            column=r["column"],
            kind=r["kind"],
            rows=int(r["rows"]),
            null_count=int(r["null_count"]),
            distinct=r["distinct_estimate"],
            min=r["min"],
            max=r["max"],
            mean=r["mean"],
            stddev=r["stddev"],
            quantile_probs=tuple(r["quantile_probs"] or ()),
            quantile_values=tuple(r["quantile_values"] or ()),
            cdf_points=tuple(r["cdf_points"] or ()),
            cdf_ranks=tuple(r["cdf_ranks"] or ()),
            value_counts=dict(zip(r["top_values"] or (), r["top_counts"] or (), strict=True)),
        )
        for r in rows
    ]
    overall = {p.column for p in profiles if p.slice == ALL}
    return profiles if set(columns) <= overall else None


def reference_profiles(
    ctx: MonitorContext,
    table: str,
    reference: Reference,
    kinds: ColumnKinds,
    slices: Sequence[str] = (),
) -> list[ColumnProfile]:
    """The reference's profile: stored, or computed now (one pass) and stored.

    Only the columns (and slice columns) the reference rows have are profiled.
    """
    cached = _stored_reference(ctx, table, reference.id, [*kinds.numeric, *kinds.categorical])
    if cached is not None:
        return cached
    present = set(reference.rows.columns)
    request = ProfileRequest(
        numeric=tuple(c for c in kinds.numeric if c in present),
        categorical=tuple(c for c in kinds.categorical if c in present),
        slices=tuple(s for s in slices if s in present),
        settings=ctx.config.profile,
    )
    profiles = collect_profiles(reference.rows, request)
    settings = ctx.config.profile
    rows = profile_rows(
        profiles,
        run_id=ctx.run_id,
        profiled_at=ctx.now,
        role="reference",
        table=table,
        table_version=reference.table_version,
        reference_id=reference.id,
        bins=_bins_map(profiles, [], settings.bins, settings.max_categories),
        top_k=settings.max_categories,
    )
    ctx.replace(
        PROFILE_TABLE,
        rows,
        PROFILE_SCHEMA,
        {"table": [table], "role": ["reference"], "reference_id": [reference.id]},
    )
    return profiles


@dataclass
class Comparison:
    """A profiled table version and, when it has a reference, its drift."""

    profiles: list[ColumnProfile]
    drifts: list[ColumnDrift] = field(default_factory=list)


def profile_and_compare(
    ctx: MonitorContext,
    df: DataFrame,
    *,
    table: str,
    table_version: int | None,
    kinds: ColumnKinds,
    window: WindowSpec | None,
    slices: Sequence[str],
    reference: Reference | None,
    references: Sequence[ColumnProfile],
    thresholds: MetricThresholds | None = None,
    model: tuple[str | None, str | None] = (None, None),
) -> Comparison:
    """Profile ``df`` in one pass, compare with the reference profiles, write both tables.

    Args:
        ctx: the run.
        df: the rows (one table version).
        table, table_version: what the rows are (``<layer>/<table>``, Delta version).
        kinds: the columns by kind.
        window, slices: how the rows are split.
        reference: the reference (None: profiles only).
        references: the reference's profiles.
        thresholds: thresholds for every column (default: ``drift`` of conf/monitoring.yaml
            for each column).
        model: (model, version) recorded with drift rows of predictions.
    """
    settings = ctx.config.profile
    request = ProfileRequest(
        numeric=kinds.numeric,
        categorical=kinds.categorical,
        window=window,
        slices=tuple(slices),
        settings=settings,
        reference_points=points_of(references),
        reference_categories=categories_of(references, settings.max_categories),
    )
    profiles = collect_profiles(df, request)
    drifts: list[ColumnDrift] = []
    if reference is not None:
        by_key = {(p.slice, p.column): p for p in references}
        drifts = compare_profiles(
            by_key,
            profiles,
            (lambda _c: thresholds)
            if thresholds
            else (lambda c: ctx.config.drift.for_column(table, c)),
            settings,
            ctx.config.drift.min_rows,
        )
    rows = profile_rows(
        profiles,
        run_id=ctx.run_id,
        profiled_at=ctx.now,
        role="current",
        table=table,
        table_version=table_version,
        reference_id=reference.id if reference else None,
        bins=_bins_map(profiles, drifts, settings.bins, settings.max_categories),
        top_k=settings.top_k,
    )
    version_key: list[int | None] = [table_version]
    ctx.replace(
        PROFILE_TABLE,
        rows,
        PROFILE_SCHEMA,
        {"table": [table], "role": ["current"], "table_version": version_key},
    )
    if reference is not None:
        ctx.replace(
            DRIFT_TABLE,
            drift_rows(
                drifts,
                run_id=ctx.run_id,
                computed_at=ctx.now,
                table=table,
                table_version=table_version,
                reference_id=reference.id,
                reference_kind=reference.kind,
                model=model[0],
                model_version=model[1],
            ),
            DRIFT_SCHEMA,
            {"table": [table], "table_version": version_key},
        )
    return Comparison(profiles, drifts)


def drift_results(
    drifts: Sequence[ColumnDrift],
    *,
    check: str,
    table: str,
    table_version: int | None,
    reference: Reference,
    model: tuple[str | None, str | None] = (None, None),
) -> list[CheckResult]:
    """One result per compared column, window and slice: its status and deciding metric."""
    results = []
    for d in drifts:
        deciding = max(
            d.metrics,
            key=lambda m: (("ok", "warning", "critical").index(m.status), m.status != "ok"),
            default=None,
        )
        reached = None
        if deciding is not None:
            reached = deciding.critical if deciding.status == "critical" else deciding.warning
        failing = [f"{m.metric}={m.value:.4g}" for m in d.metrics if m.status != "ok"]
        results.append(
            CheckResult(
                check=check,
                subject=subject_of(table, d.column, d.slice),
                status=d.status,
                metric=deciding.metric if deciding and d.status != "ok" else None,
                value=deciding.value if deciding and d.status != "ok" else None,
                threshold=reached if d.status != "ok" else None,
                detail=d.skipped or (", ".join(failing) if failing else "no drift"),
                table=table,
                table_version=table_version,
                window=d.window,
                slice=d.slice,
                column=d.column,
                model=model[0],
                model_version=model[1],
                reference_id=reference.id,
            )
        )
    return results


def _window_spec(
    ctx: MonitorContext, config: TableMonitorConfig, path: str, version: int
) -> WindowSpec | None:
    if config.window is None:
        return None
    spec = config.window
    stats = ctx.tables.column_stats(path, [spec.column], version)
    latest = stats[spec.column].max if stats and spec.column in stats else None
    since = None
    if latest is not None:
        if isinstance(latest, date) and not isinstance(latest, datetime):
            latest = datetime.combine(latest, time.max, timezone.utc)
        since = latest - spec.lookback + timedelta(microseconds=1)
    return WindowSpec(
        column=spec.column,
        every_seconds=int(spec.every.total_seconds()),
        by=spec.by,
        since=since,
    )


def monitor_table(ctx: MonitorContext, config: TableMonitorConfig) -> list[CheckResult]:
    """Profile one declared table's current version and compare it with its reference.

    Returns:
        The check results (one ``profile`` result for the table, one ``drift`` result per
        compared column, window and slice).
    """
    path = ctx.path(config.table)
    if not ctx.tables.exists(path):
        return [
            CheckResult(
                "profile",
                config.table,
                "skipped",
                detail="the table does not exist yet",
                table=config.table,
            )
        ]
    version = ctx.tables.version(path)
    df = ctx.tables.read(path, version=version)
    kinds = column_kinds(df, monitored_columns(config, ctx.views), config.categorical)
    reference: Reference | None = None
    references: list[ColumnProfile] = []
    note = "no reference declared"
    if config.reference is not None:
        try:
            reference = resolve_reference(ctx.tables, ctx.settings, config, path)
            references = reference_profiles(ctx, config.table, reference, kinds, config.slices)
            note = f"compared with {reference.id}"
        except ReferenceUnavailable as exc:
            note = f"drift not computed: {exc}"
    comparison = profile_and_compare(
        ctx,
        df,
        table=config.table,
        table_version=version,
        kinds=kinds,
        window=_window_spec(ctx, config, path, version),
        slices=config.slices,
        reference=reference,
        references=references,
    )
    windows = sorted({p.window for p in comparison.profiles})
    summary = CheckResult(
        "profile",
        config.table,
        "ok",
        metric="rows",
        value=float(
            sum(p.rows for p in comparison.profiles if p.slice == ALL)
            / max(len(kinds.numeric) + len(kinds.categorical), 1)
        ),
        detail=f"version {version}: {len(windows)} window(s), "
        f"{len(kinds.numeric) + len(kinds.categorical)} column(s); {note}"
        + (f"; not profiled (type): {list(kinds.ignored)}" if kinds.ignored else ""),
        table=config.table,
        table_version=version,
        reference_id=reference.id if reference else None,
    )
    if reference is None:
        return [summary]
    return [
        summary,
        *drift_results(
            comparison.drifts,
            check="drift",
            table=config.table,
            table_version=version,
            reference=reference,
        ),
    ]
