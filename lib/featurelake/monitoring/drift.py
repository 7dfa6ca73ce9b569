"""Drift: a current profile against its reference, per window, slice and column (plain Python).

Numeric columns are compared on the reference's bins - its quantiles at 1/bins, 2/bins...,
duplicates dropped, so a column with few distinct values gets one bin per value - (PSI and
Jensen-Shannon) and on the reference's percentiles (Kolmogorov-Smirnov); categorical columns
on the reference's most frequent categories plus ``__other__`` (chi-square, Jensen-Shannon,
PSI). Every column also gets the change of its null rate. Each metric's value is judged
against the configured thresholds; a column's status is its worst metric's.

A current profile is compared with the reference profile of the same slice when the
reference has that slice, else with the reference over all rows.

Example:
    >>> drifts = compare_profiles(reference, current, thresholds_for, settings, min_rows=100)
    >>> [d.column for d in drifts if d.status == "critical"]
    ['education']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from featurelake.monitoring import stats
from featurelake.monitoring.config import (
    CATEGORICAL_METRICS,
    LOWER_IS_WORSE,
    NUMERIC_METRICS,
    MetricThresholds,
    ProfileSettings,
    Threshold,
)
from featurelake.monitoring.profile import ALL, CDF_GRID, OTHER, ColumnProfile

__all__ = [
    "STATUS_ORDER",
    "ColumnDrift",
    "MetricResult",
    "Bins",
    "compare_profiles",
    "judge",
    "numeric_bins",
    "reference_categories",
    "reference_points",
    "worst",
]

#: Statuses from best to worst.
STATUS_ORDER = ("ok", "warning", "critical")


def worst(statuses: Iterable[str]) -> str:
    """The worst of ``statuses`` (``ok`` when there are none)."""
    ranked = [s for s in statuses if s in STATUS_ORDER]
    return max(ranked, key=STATUS_ORDER.index, default="ok")


def judge(metric: str, value: float | None, threshold: Threshold | None) -> str:
    """``ok``, ``warning`` or ``critical`` for one metric value.

    A value at or beyond a threshold reaches it (at or below for a p-value); no value or no
    threshold is ``ok``.
    """
    if value is None or threshold is None:
        return "ok"
    lower = metric in LOWER_IS_WORSE

    def reached(limit: float | None) -> bool:
        return limit is not None and (value <= limit if lower else value >= limit)

    if reached(threshold.critical):
        return "critical"
    if reached(threshold.warning):
        return "warning"
    return "ok"


@dataclass(frozen=True)
class MetricResult:
    """One metric of one column's comparison and its judgement."""

    metric: str
    value: float
    warning: float | None
    critical: float | None
    status: str


@dataclass(frozen=True)
class Bins:
    """A histogram on the reference's bins.

    ``edges`` (numeric: bin i is (edge i-1, edge i], the first and last open) or ``labels``
    (categorical: the categories, then ``__other__``), with both sides' counts.
    """

    edges: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    reference: tuple[int, ...] = ()
    current: tuple[int, ...] = ()


@dataclass(frozen=True)
class ColumnDrift:
    """One column of one window and slice compared with its reference."""

    window: str
    slice: str
    column: str
    kind: str
    reference_slice: str
    current_rows: int
    reference_rows: int
    status: str
    metrics: tuple[MetricResult, ...] = ()
    bins: Bins = field(default_factory=Bins)
    skipped: str | None = None


def _distinct_points(points: Sequence[float], ranks: Sequence[float]) -> list[tuple[float, float]]:
    """(point, rank) pairs with repeated points kept once (a repeated quantile is one value)."""
    seen: dict[float, float] = {}
    for point, rank in zip(points, ranks, strict=True):
        seen.setdefault(point, rank)
    return sorted(seen.items())


def reference_points(references: Iterable[ColumnProfile]) -> dict[str, tuple[float, ...]]:
    """Per numeric column, the union of its reference profiles' percentiles (sorted).

    The current pass asks its sketches for the CDF at these points.
    """
    points: dict[str, set[float]] = {}
    for profile in references:
        if profile.kind == "numeric":
            points.setdefault(profile.column, set()).update(profile.cdf_points)
    return {column: tuple(sorted(values)) for column, values in points.items()}


def _top_categories(profile: ColumnProfile, limit: int) -> list[str]:
    ordered = sorted(profile.value_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [value for value, _count in ordered[:limit]]


def reference_categories(
    references: Iterable[ColumnProfile], limit: int
) -> dict[str, tuple[str, ...]]:
    """Per categorical column, the categories its reference profiles compare on."""
    found: dict[str, set[str]] = {}
    for profile in references:
        if profile.kind == "categorical":
            found.setdefault(profile.column, set()).update(_top_categories(profile, limit))
    return {column: tuple(sorted(values)) for column, values in found.items()}


def numeric_bins(reference: ColumnProfile, bins: int) -> tuple[float, ...]:
    """The reference's bin edges: its percentiles at 1/bins, 2/bins..., each value once."""
    wanted = {round(i / bins, 2) for i in range(1, bins)}
    lookup = dict(zip(CDF_GRID, reference.cdf_points, strict=False))
    return tuple(sorted({lookup[p] for p in wanted if p in lookup}))


def _cdf_at(points: Sequence[float], ranks: Sequence[float], at: Sequence[float]) -> list[float]:
    """Ranks at the points ``at`` picked out of (points, ranks) (each of ``at`` is a point)."""
    lookup = dict(zip(points, ranks, strict=True))
    return [lookup[p] for p in at]


def _numeric_comparison(
    reference: ColumnProfile, current: ColumnProfile, bins: int, all_points: Sequence[float]
) -> tuple[dict[str, float], Bins]:
    pairs = _distinct_points(reference.cdf_points, reference.cdf_ranks)
    points = [p for p, _ in pairs]
    current_cdf = _cdf_at(all_points, current.reference_ranks, points)
    edges = numeric_bins(reference, bins)
    ref_counts = stats.bin_counts_from_cdf(
        reference.non_null, _cdf_at(reference.cdf_points, reference.cdf_ranks, edges)
    )
    cur_counts = stats.bin_counts_from_cdf(
        current.non_null, _cdf_at(all_points, current.reference_ranks, edges)
    )
    values = {
        "psi": stats.psi(ref_counts, cur_counts),
        "ks": stats.ks_statistic([r for _, r in pairs], current_cdf),
        "js": stats.js_distance(ref_counts, cur_counts),
    }
    return values, Bins(edges=edges, reference=tuple(ref_counts), current=tuple(cur_counts))


def _category_counts(profile: ColumnProfile, labels: Sequence[str]) -> list[int]:
    counts = [profile.value_counts.get(label, 0) for label in labels]
    return [*counts, max(profile.non_null - sum(counts), 0)]


def _categorical_comparison(
    reference: ColumnProfile, current: ColumnProfile, limit: int
) -> tuple[dict[str, float], Bins]:
    labels = _top_categories(reference, limit)
    ref_counts = _category_counts(reference, labels)
    cur_counts = _category_counts(current, labels)
    test = stats.chi_square(ref_counts, cur_counts)
    values = {
        "chi2_pvalue": test.p_value,
        "js": stats.js_distance(ref_counts, cur_counts),
        "psi": stats.psi(ref_counts, cur_counts),
    }
    return values, Bins(
        labels=(*labels, OTHER), reference=tuple(ref_counts), current=tuple(cur_counts)
    )


def _compare_one(
    reference: ColumnProfile,
    current: ColumnProfile,
    thresholds: MetricThresholds,
    settings: ProfileSettings,
    all_points: Sequence[float],
) -> tuple[tuple[MetricResult, ...], Bins]:
    values: dict[str, float] = {}
    bins = Bins()
    numeric = current.kind == "numeric"
    if current.non_null and reference.non_null:  # distributions exist on both sides
        if numeric:
            values, bins = _numeric_comparison(reference, current, settings.bins, all_points)
        else:
            values, bins = _categorical_comparison(reference, current, settings.max_categories)
    values["null_rate_change"] = stats.null_rate_change(
        reference.null_count, reference.rows, current.null_count, current.rows
    )
    results = []
    for name in NUMERIC_METRICS if numeric else CATEGORICAL_METRICS:
        if name not in values:
            continue
        limit = thresholds.get(name)
        results.append(
            MetricResult(
                name,
                float(values[name]),
                limit.warning if limit else None,
                limit.critical if limit else None,
                judge(name, values[name], limit),
            )
        )
    return tuple(results), bins


def _skip(current: ColumnProfile, reference: ColumnProfile | None, why: str) -> ColumnDrift:
    return ColumnDrift(
        current.window,
        current.slice,
        current.column,
        current.kind,
        reference.slice if reference else ALL,
        current.rows,
        reference.rows if reference else 0,
        "skipped",
        skipped=why,
    )


def compare_profiles(
    references: Mapping[tuple[str, str], ColumnProfile],
    current: Iterable[ColumnProfile],
    thresholds_for: Callable[[str], MetricThresholds],
    settings: ProfileSettings,
    min_rows: int,
) -> list[ColumnDrift]:
    """Compare every current profile with its reference.

    Args:
        references: reference profiles by (slice, column).
        current: the current profiles; numeric ones must carry ``reference_ranks`` at
            :func:`reference_points` of ``references``.
        thresholds_for: the thresholds of a column.
        settings: bins and categories compared.
        min_rows: fewer non-null rows on either side: skipped, not judged.

    Returns:
        One :class:`ColumnDrift` per current profile (status ``skipped`` with the reason when
        it could not be compared).
    """
    all_points = reference_points(references.values())
    results = []
    for profile in current:
        reference = references.get((profile.slice, profile.column)) or references.get(
            (ALL, profile.column)
        )
        if reference is None:
            results.append(_skip(profile, None, "no reference profile for this column"))
            continue
        if reference.kind != profile.kind:
            results.append(_skip(profile, reference, f"reference is {reference.kind}"))
            continue
        smallest = min(profile.rows, reference.rows)
        if smallest < min_rows:
            results.append(_skip(profile, reference, f"{smallest} rows < min_rows {min_rows}"))
            continue
        metrics, bins = _compare_one(
            reference,
            profile,
            thresholds_for(profile.column),
            settings,
            all_points.get(profile.column, ()),
        )
        results.append(
            ColumnDrift(
                profile.window,
                profile.slice,
                profile.column,
                profile.kind,
                reference.slice,
                profile.rows,
                reference.rows,
                worst(m.status for m in metrics),
                metrics,
                bins,
            )
        )
    return results
