"""Column profiles of a table in one Spark pass: per window, per slice, every column at once.

:func:`profile_aggregate` builds one aggregation (lazy, pure) that reads each row once and
computes, per (window, slice) and per column: rows, nulls, a distinct estimate (HyperLogLog),
min, max, mean and standard deviation, and a KLL quantile sketch (Apache DataSketches, Spark's
``kll_sketch_agg_double``) of numeric columns; categorical values are counted in the same
aggregation (each row is expanded into one entry per categorical column, so the counts are a
grouping of the same pass, not a second job). A projection over the aggregated rows - still
the same query - then reads quantiles and CDF values out of each sketch: the configured
quantiles, the column's percentiles and its CDF at those (the points a later comparison uses),
and its CDF at the reference's points, from which histograms on the reference's bin edges
follow without touching the data again.

:func:`collect_profiles` runs that query (the table is scanned once) and returns one
:class:`ColumnProfile` per window, slice and column.

Example:
    >>> request = ProfileRequest(numeric=("monetary",), categorical=("country",))
    >>> profiles = collect_profiles(df, request)
    >>> profiles[0].quantile_values
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from featurelake.core.errors import require_columns
from featurelake.monitoring.config import ProfileSettings

__all__ = [
    "ALL",
    "CDF_GRID",
    "OTHER",
    "ColumnProfile",
    "ProfileRequest",
    "WindowSpec",
    "collect_profiles",
    "double_array",
    "profile_aggregate",
]

#: The window and slice name of a profile over every row.
ALL = "all"
#: The category standing for every value outside the compared ones.
OTHER = "__other__"
#: Probabilities of the percentiles kept per numeric column (its CDF is known at them).
CDF_GRID = tuple(round(i / 100, 2) for i in range(1, 100))

_W, _S, _C, _V = "_fl_window", "_fl_slice", "_fl_cat_column", "_fl_cat_value"
_T = "_fl_time"


@dataclass(frozen=True)
class WindowSpec:
    """How rows are placed in windows.

    Attributes:
        column: the date or timestamp column (window bounds, and the window itself unless
            ``by`` is set).
        every_seconds: window width; windows start at multiples of it since the epoch (UTC).
        by: a column whose values name the windows instead (a batch id).
        since: only rows at or after this time are profiled (the lookback).
    """

    column: str
    every_seconds: int = 86_400
    by: str | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class ProfileRequest:
    """What to profile.

    Attributes:
        numeric: columns profiled as numbers (cast to double).
        categorical: columns profiled as categories (cast to string).
        window: time windows; None: every row in the window ``all``.
        slices: columns whose values get profiles of their own (besides ``all``).
        settings: sketch size, quantiles, bins, top-k.
        reference_points: per numeric column, points at which the CDF is wanted (the
            reference's percentiles): histograms and KS against the reference come from them.
        reference_categories: per categorical column, categories always counted (the
            reference's), besides the most frequent ones.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    window: WindowSpec | None = None
    slices: tuple[str, ...] = ()
    settings: ProfileSettings = field(default_factory=ProfileSettings)
    reference_points: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    reference_categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


@dataclass
class ColumnProfile:
    """One column's profile in one window and slice.

    ``value_counts`` (categorical) holds the most frequent values and the reference's
    categories; ``cdf_points``/``cdf_ranks`` (numeric) are the column's percentiles and its
    CDF there; ``reference_ranks`` its CDF at the reference's points (when asked for).
    """

    window: str
    window_start: datetime | None
    window_end: datetime | None
    slice: str
    column: str
    kind: str
    rows: int
    null_count: int
    distinct: int | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    stddev: float | None = None
    quantile_probs: tuple[float, ...] = ()
    quantile_values: tuple[float, ...] = ()
    cdf_points: tuple[float, ...] = ()
    cdf_ranks: tuple[float, ...] = ()
    reference_ranks: tuple[float, ...] = ()
    value_counts: dict[str, int] = field(default_factory=dict)
    sketch: bytes | None = None

    @property
    def non_null(self) -> int:
        return self.rows - self.null_count

    @property
    def null_rate(self) -> float:
        return self.null_count / self.rows if self.rows else 0.0


def double_array(values: Sequence[float]) -> Column:
    """A constant ``array<double>`` built in one expression (not one JVM call per element)."""
    if not values:
        return F.expr("CAST(array() AS array<double>)")
    parts = []
    for value in values:
        if math.isnan(value):
            parts.append("CAST('NaN' AS DOUBLE)")
        elif math.isinf(value):
            parts.append(f"CAST('{'-' if value < 0 else ''}Infinity' AS DOUBLE)")
        else:
            parts.append(f"{float(value)!r}D".replace("e", "E"))
    return F.expr(f"array({', '.join(parts)})")


def _window_value(window: WindowSpec | None) -> tuple[Column, Column]:
    """(window name, the row's time) columns."""
    if window is None:
        return F.lit(ALL), F.lit(None).cast("timestamp")
    time = F.col(window.column).cast("timestamp")
    if window.by is not None:
        return F.coalesce(F.col(window.by).cast("string"), F.lit("null")), time
    seconds = F.floor(F.unix_timestamp(time) / window.every_seconds) * window.every_seconds
    start = F.timestamp_seconds(seconds)
    pattern = "yyyy-MM-dd" if window.every_seconds % 86_400 == 0 else "yyyy-MM-dd'T'HH:mm:ss"
    return F.date_format(start, pattern), time


def _entries(request: ProfileRequest) -> Column:
    """Per row: one entry per (slice, categorical column or none) pair, to explode."""
    slices = [(F.lit(ALL), None)] + [
        (F.concat(F.lit(f"{s}="), F.coalesce(F.col(s).cast("string"), F.lit("null"))), s)
        for s in request.slices
    ]
    categories: list[tuple[Column, Column]] = [
        (F.lit(None).cast("string"), F.lit(None).cast("string"))
    ] + [(F.lit(c), F.col(c).cast("string")) for c in request.categorical]
    return F.array(
        *[F.struct(s.alias(_S), c.alias(_C), v.alias(_V)) for s, _ in slices for c, v in categories]
    )


def _numeric_aggregates(index: int, column: str, base: Column, k: int) -> list[Column]:
    value = F.when(base, F.col(column).cast("double"))
    prefix = f"n{index}_"
    return [
        F.count(value).alias(prefix + "count"),
        F.min(value).alias(prefix + "min"),
        F.max(value).alias(prefix + "max"),
        F.avg(value).alias(prefix + "mean"),
        F.stddev_samp(value).alias(prefix + "stddev"),
        F.approx_count_distinct(value).alias(prefix + "distinct"),
        F.kll_sketch_agg_double(value, k).alias(prefix + "sketch"),
    ]


def _categorical_aggregates(index: int, column: str, base: Column) -> list[Column]:
    value = F.when(base, F.col(column).cast("string"))
    prefix = f"c{index}_"
    return [
        F.count(value).alias(prefix + "count"),
        F.approx_count_distinct(value).alias(prefix + "distinct"),
    ]


def profile_aggregate(df: DataFrame, request: ProfileRequest) -> DataFrame:
    """The one aggregation behind a profile (lazy): one row per window, slice and category.

    Rows with a null categorical column name (``_fl_cat_column``) carry the window's and
    slice's statistics (``_fl_rows``, ``n<i>_*`` for numeric column i, ``c<j>_*`` for
    categorical column j); the others count one value of one categorical column
    (``_fl_value_rows``).

    Raises:
        MissingColumnsError: a requested, window or slice column is absent.
    """
    needed = [*request.columns, *request.slices]
    if request.window is not None:
        needed += [request.window.column, *([request.window.by] if request.window.by else [])]
    require_columns(df.columns, dict.fromkeys(needed), "monitored table")
    window_name, time = _window_value(request.window)
    rows = df
    if request.window is not None and request.window.since is not None:
        rows = rows.filter(time >= F.lit(request.window.since))
    exploded = rows.select(
        window_name.alias(_W),
        time.alias(_T),
        *[F.col(c) for c in dict.fromkeys(request.columns)],
        F.inline(_entries(request)),
    )
    base = F.col(_C).isNull()
    aggregates = [
        F.count(F.when(base, F.lit(1))).alias("_fl_rows"),
        F.count(F.lit(1)).alias("_fl_value_rows"),
        F.min(F.when(base, F.col(_T))).alias("_fl_start"),
        F.max(F.when(base, F.col(_T))).alias("_fl_end"),
    ]
    k = request.settings.sketch_k
    for i, column in enumerate(request.numeric):
        aggregates += _numeric_aggregates(i, column, base, k)
    for j, column in enumerate(request.categorical):
        aggregates += _categorical_aggregates(j, column, base)
    return exploded.groupBy(_W, _S, _C, _V).agg(*aggregates)


def _sketch_readouts(request: ProfileRequest) -> list[Column]:
    """Quantiles and CDF values read out of each numeric column's sketch."""
    probs = double_array(request.settings.quantiles)
    grid = double_array(CDF_GRID)
    out: list[Column] = []
    for i, column in enumerate(request.numeric):
        sketch = F.col(f"n{i}_sketch")
        filled = F.kll_sketch_get_n_double(sketch) > 0  # an empty sketch has no quantiles
        points = F.kll_sketch_get_quantile_double(sketch, grid)
        out += [
            F.when(filled, F.kll_sketch_get_quantile_double(sketch, probs)).alias(f"n{i}_q"),
            F.when(filled, points).alias(f"n{i}_points"),
        ]
        wanted = request.reference_points.get(column)
        if wanted:
            ranks = F.kll_sketch_get_rank_double(sketch, double_array(wanted))
            out.append(F.when(filled, ranks).alias(f"n{i}_ref"))
    return out


def _rank_readouts(
    request: ProfileRequest, points: Mapping[int, tuple[float, ...]]
) -> list[Column]:
    """Each numeric column's CDF at the union of its profiles' percentiles.

    A sketch's rank function takes constant points only, so the percentiles read in the first
    readout are collected and asked for again, for every window and slice at once.
    """
    out: list[Column] = []
    for i, wanted in points.items():
        sketch = F.col(f"n{i}_sketch")
        filled = F.kll_sketch_get_n_double(sketch) > 0
        ranks = F.kll_sketch_get_rank_double(sketch, double_array(wanted))
        out.append(F.when(filled, ranks).alias(f"n{i}_ranks"))
    return out


def _category_rows(aggregated: DataFrame, request: ProfileRequest) -> DataFrame:
    """The value counts worth keeping: the most frequent per column, and the reference's."""
    keep = max(request.settings.top_k, request.settings.max_categories)
    rank = F.row_number().over(Window.partitionBy(_W, _S, _C).orderBy(F.desc("_fl_value_rows"), _V))
    wanted = F.lit(False)
    for column, categories in request.reference_categories.items():
        if categories:
            wanted = wanted | ((F.col(_C) == column) & F.col(_V).isin(list(categories)))
    return (
        aggregated.filter(F.col(_C).isNotNull() & F.col(_V).isNotNull())
        .select(_W, _S, _C, _V, "_fl_value_rows", rank.alias("_fl_rank"))
        .filter((F.col("_fl_rank") <= keep) | wanted)
    )


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values) if values is not None else ()


def _numeric_profile(
    row: Any, i: int, column: str, request: ProfileRequest, ranks: Mapping[float, float]
) -> ColumnProfile:
    p = f"n{i}_"
    points = _floats(row[p + "points"])
    rows = int(row["_fl_rows"])
    count = int(row[p + "count"])
    return ColumnProfile(
        window=row[_W],
        window_start=row["_fl_start"],
        window_end=row["_fl_end"],
        slice=row[_S],
        column=column,
        kind="numeric",
        rows=rows,
        null_count=rows - count,
        distinct=int(row[p + "distinct"]),
        min=row[p + "min"],
        max=row[p + "max"],
        mean=row[p + "mean"],
        stddev=row[p + "stddev"],
        quantile_probs=request.settings.quantiles if row[p + "q"] is not None else (),
        quantile_values=_floats(row[p + "q"]),
        cdf_points=points,
        cdf_ranks=tuple(ranks[v] for v in points),
        reference_ranks=_floats(row[p + "ref"]) if (p + "ref") in row.asDict() else (),
        sketch=bytes(row[p + "sketch"]) if count and request.settings.store_sketches else None,
    )


def _categorical_profile(
    row: Any, j: int, column: str, counts: Mapping[tuple[str, str, str], dict[str, int]]
) -> ColumnProfile:
    p = f"c{j}_"
    rows = int(row["_fl_rows"])
    return ColumnProfile(
        window=row[_W],
        window_start=row["_fl_start"],
        window_end=row["_fl_end"],
        slice=row[_S],
        column=column,
        kind="categorical",
        rows=rows,
        null_count=rows - int(row[p + "count"]),
        distinct=int(row[p + "distinct"]),
        value_counts=dict(counts.get((row[_W], row[_S], column), {})),
    )


def collect_profiles(df: DataFrame, request: ProfileRequest) -> list[ColumnProfile]:
    """Profile ``df``: one scan of it, one :class:`ColumnProfile` per window, slice and column.

    The aggregated rows (a few per window and slice) are cached between the two small reads
    of them, so the table itself is read once.

    Raises:
        MissingColumnsError: a requested, window or slice column is absent.
    """
    aggregated = profile_aggregate(df, request).cache()
    try:
        overall = aggregated.filter(F.col(_C).isNull())
        base_rows = overall.select("*", *_sketch_readouts(request)).collect()
        union = {
            i: tuple(sorted({v for r in base_rows for v in _floats(r[f"n{i}_points"])}))
            for i in range(len(request.numeric))
        }
        union = {i: points for i, points in union.items() if points}
        rank_rows = overall.select(_W, _S, *_rank_readouts(request, union)).collect()
        counts: dict[tuple[str, str, str], dict[str, int]] = {}
        if request.categorical:
            for r in _category_rows(aggregated, request).collect():
                counts.setdefault((r[_W], r[_S], r[_C]), {})[r[_V]] = int(r["_fl_value_rows"])
    finally:
        aggregated.unpersist()
    # (window, slice, numeric column index) -> {point: CDF there}
    ranks: dict[tuple[str, str, int], dict[float, float]] = {}
    for r in rank_rows:
        for i, points in union.items():
            values = _floats(r[f"n{i}_ranks"])
            if values:
                ranks[(r[_W], r[_S], i)] = dict(zip(points, values, strict=True))
    profiles: list[ColumnProfile] = []
    for row in sorted(base_rows, key=lambda r: (r[_W], r[_S])):
        profiles += [
            _numeric_profile(row, i, c, request, ranks.get((row[_W], row[_S], i), {}))
            for i, c in enumerate(request.numeric)
        ]
        profiles += [
            _categorical_profile(row, j, c, counts) for j, c in enumerate(request.categorical)
        ]
    return profiles
