"""Column profiles built from numpy samples, for drift tests that need no Spark.

The quantiles and CDF values are taken exactly with numpy (``inverted_cdf``: a percentile is
an observed value), where the Spark profile reads them from a sketch; the drift functions see
the same shape of profile either way.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from featurelake.monitoring.profile import ALL, CDF_GRID, ColumnProfile


def numeric_profile(
    column: str, values: np.ndarray, reference_points: tuple[float, ...] = ()
) -> ColumnProfile:
    """The profile of a numeric sample (NaN counts as null)."""
    present = values[~np.isnan(values)]
    ordered = np.sort(present)
    points = tuple(float(v) for v in np.quantile(ordered, CDF_GRID, method="inverted_cdf"))

    def cdf(at: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(float(np.searchsorted(ordered, p, side="right") / len(ordered)) for p in at)

    return ColumnProfile(
        window=ALL,
        window_start=None,
        window_end=None,
        slice=ALL,
        column=column,
        kind="numeric",
        rows=len(values),
        null_count=int(len(values) - len(present)),
        cdf_points=points,
        cdf_ranks=cdf(points),
        reference_ranks=cdf(reference_points),
    )


def categorical_profile(column: str, values: list[str | None]) -> ColumnProfile:
    """The profile of a categorical sample (None counts as null)."""
    counts = Counter(v for v in values if v is not None)
    return ColumnProfile(
        window=ALL,
        window_start=None,
        window_end=None,
        slice=ALL,
        column=column,
        kind="categorical",
        rows=len(values),
        null_count=sum(v is None for v in values),
        value_counts=dict(counts),
    )
