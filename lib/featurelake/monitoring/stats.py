"""Drift and model-quality statistics on counts: plain Python, no Spark.

The Spark side (:mod:`featurelake.monitoring.profile`) reduces a table to counts per bin, CDF
values at fixed points and per-category counts; everything here works on those small lists,
so each statistic is a short pure function tested against scipy and scikit-learn
(``tests/test_monitoring_stats.py``).

Definitions (docs/MONITORING.md):

* **PSI** (population stability index) = sum over bins of (c - r) * ln(c / r), with r and c
  the reference's and the current's share of non-null rows in the bin; a share of 0 counts as
  :data:`PSI_EPSILON` (1e-4) so that an empty bin adds a large but finite term.
* **KS** = the largest gap between the two CDFs, over the evaluation points (the
  reference's percentiles).
* **JS** = the Jensen-Shannon *distance* (square root of the divergence, base 2): 0 for equal
  distributions, 1 for disjoint ones.
* **chi-square** on the 2 x k table of reference and current counts per category (categories
  empty on both sides dropped), with its p-value from the chi-square distribution.
* **null-rate change** = |current null rate - reference null rate|.

Example:
    >>> round(psi([50, 50], [40, 60]), 6)
    0.040547
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PSI_EPSILON",
    "BinnedScores",
    "ChiSquare",
    "average_precision",
    "bin_counts_from_cdf",
    "brier_score",
    "chi2_survival",
    "chi_square",
    "expected_calibration_error",
    "js_distance",
    "ks_statistic",
    "null_rate_change",
    "psi",
    "roc_auc",
    "shares",
]

#: The share an empty bin counts as in PSI (the logarithm of 0 is undefined).
PSI_EPSILON = 1e-4


def shares(counts: Sequence[float]) -> list[float]:
    """Each count's share of the total (all zeros when the total is 0)."""
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def _same_length(reference: Sequence[float], current: Sequence[float]) -> None:
    if len(reference) != len(current):
        raise ValueError(f"bin counts differ in length: {len(reference)} and {len(current)}")


def psi(
    reference: Sequence[float], current: Sequence[float], epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index of two histograms on the same bins.

    Args:
        reference: the reference's count per bin.
        current: the current count per bin.
        epsilon: the share a bin empty on one side counts as.

    Raises:
        ValueError: the histograms have different numbers of bins.
    """
    _same_length(reference, current)
    total = 0.0
    for r, c in zip(shares(reference), shares(current), strict=True):
        r, c = max(r, epsilon), max(c, epsilon)
        total += (c - r) * math.log(c / r)
    return total


def js_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2) of two histograms on the same bins, in [0, 1]."""
    _same_length(reference, current)
    p, q = shares(reference), shares(current)
    divergence = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2
        if a > 0:
            divergence += 0.5 * a * math.log2(a / m)
        if b > 0:
            divergence += 0.5 * b * math.log2(b / m)
    return math.sqrt(max(divergence, 0.0))


def ks_statistic(reference_cdf: Sequence[float], current_cdf: Sequence[float]) -> float:
    """The largest absolute gap between two CDFs evaluated at the same points."""
    _same_length(reference_cdf, current_cdf)
    gaps = [abs(a - b) for a, b in zip(reference_cdf, current_cdf, strict=True)]
    return max(gaps, default=0.0)


def null_rate_change(
    reference_nulls: int, reference_rows: int, current_nulls: int, current_rows: int
) -> float:
    """|current null rate - reference null rate| (0 when a side has no rows)."""
    if not reference_rows or not current_rows:
        return 0.0
    return abs(current_nulls / current_rows - reference_nulls / reference_rows)


def bin_counts_from_cdf(non_null: int, cdf_at_edges: Sequence[float]) -> list[int]:
    """Counts per bin from the CDF at the bin edges.

    Bins are (-inf, e1], (e1, e2], ..., (e_last, inf): bin i holds the rows between the CDF at
    its upper edge and at its lower one. Counts are rounded to whole rows and always add up
    to ``non_null``.

    Args:
        non_null: rows with a value.
        cdf_at_edges: the share of those rows at or below each edge (non-decreasing).

    Returns:
        ``len(cdf_at_edges) + 1`` counts.
    """
    cuts = [0] + [round(non_null * min(max(v, 0.0), 1.0)) for v in cdf_at_edges] + [non_null]
    for i in range(1, len(cuts)):  # a sketch's ranks are monotone; rounding must stay so
        cuts[i] = max(cuts[i], cuts[i - 1])
    return [b - a for a, b in zip(cuts, cuts[1:], strict=False)]


# --------------------------------------------------------------------------------------------
# Chi-square
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's chi-square test of homogeneity of two count vectors.

    Attributes:
        statistic: the chi-square statistic.
        dof: degrees of freedom (categories kept - 1).
        p_value: the chance of a statistic at least this large if both come from one
            distribution (1.0 when there is nothing to compare).
    """

    statistic: float
    dof: int
    p_value: float


def chi_square(reference: Sequence[float], current: Sequence[float]) -> ChiSquare:
    """Chi-square test on the 2 x k table of reference and current counts per category.

    Categories empty on both sides are dropped (they carry no information and their expected
    count would be 0).
    """
    _same_length(reference, current)
    kept = [(r, c) for r, c in zip(reference, current, strict=True) if r + c > 0]
    n_ref, n_cur = sum(r for r, _ in kept), sum(c for _, c in kept)
    if len(kept) < 2 or not n_ref or not n_cur:
        return ChiSquare(0.0, max(len(kept) - 1, 0), 1.0)
    total = n_ref + n_cur
    statistic = 0.0
    for r, c in kept:
        column = r + c
        for observed, row_total in ((r, n_ref), (c, n_cur)):
            expected = row_total * column / total
            statistic += (observed - expected) ** 2 / expected
    dof = len(kept) - 1
    return ChiSquare(statistic, dof, chi2_survival(statistic, dof))


def chi2_survival(x: float, dof: int) -> float:
    """P(X >= x) for X chi-square distributed with ``dof`` degrees of freedom.

    The regularised upper incomplete gamma function Q(dof/2, x/2): its series when
    x/2 < dof/2 + 1, else its continued fraction (Lentz's method).
    """
    if dof <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {dof}")
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    if z < a + 1.0:
        return max(0.0, 1.0 - _lower_gamma_series(a, z))
    return min(1.0, _upper_gamma_fraction(a, z))


def _lower_gamma_series(a: float, z: float) -> float:
    term = total = 1.0 / a
    n = a
    for _ in range(10_000):
        n += 1.0
        term *= z / n
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-z + a * math.log(z) - math.lgamma(a))


def _upper_gamma_fraction(a: float, z: float) -> float:
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return math.exp(-z + a * math.log(z) - math.lgamma(a)) * h


# --------------------------------------------------------------------------------------------
# Classifier quality from scores grouped into bins
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinnedScores:
    """Labelled scores grouped by score value: one entry per distinct (binned) score.

    Attributes:
        score: the bin's score (probability of class 1), ascending.
        positives, negatives: rows with label 1 and label 0 in the bin.
        sum_probability: the sum of the rows' unbinned probabilities (calibration).
        sum_squared_error: the sum of (probability - label)^2 (Brier score).
    """

    score: tuple[float, ...]
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    sum_probability: tuple[float, ...]
    sum_squared_error: tuple[float, ...]

    @property
    def rows(self) -> int:
        return sum(self.positives) + sum(self.negatives)


def roc_auc(scores: BinnedScores) -> float | None:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half.

    None when one class has no rows.
    """
    total_pos, total_neg = sum(scores.positives), sum(scores.negatives)
    if not total_pos or not total_neg:
        return None
    negatives_below = 0
    area = 0.0
    for pos, neg in zip(scores.positives, scores.negatives, strict=True):
        area += pos * (negatives_below + 0.5 * neg)
        negatives_below += neg
    return area / (total_pos * total_neg)


def average_precision(scores: BinnedScores) -> float | None:
    """Average precision (area under the precision-recall step curve), as scikit-learn's.

    Thresholds sweep the distinct scores downwards; each adds (recall gain) x precision.
    None without positives.
    """
    total_pos = sum(scores.positives)
    if not total_pos:
        return None
    tp = fp = 0
    area = 0.0
    for pos, neg in zip(reversed(scores.positives), reversed(scores.negatives), strict=True):
        if not pos and not neg:
            continue
        tp, fp = tp + pos, fp + neg
        area += (pos / total_pos) * (tp / (tp + fp))
    return area


def expected_calibration_error(scores: BinnedScores, bins: int = 10) -> float | None:
    """Expected calibration error over ``bins`` equal-width probability bins.

    Sum over bins of (rows in bin / rows) x |mean probability - share of positives|; a score
    of exactly 1.0 falls in the last bin. None without rows.
    """
    rows = scores.rows
    if not rows:
        return None
    groups: dict[int, list[float]] = {}
    for score, pos, neg, total_p in zip(
        scores.score, scores.positives, scores.negatives, scores.sum_probability, strict=True
    ):
        index = min(int(score * bins), bins - 1)
        group = groups.setdefault(index, [0.0, 0.0, 0.0])
        group[0] += pos + neg
        group[1] += pos
        group[2] += total_p
    return sum((n / rows) * abs(total_p / n - pos / n) for n, pos, total_p in groups.values() if n)


def brier_score(scores: BinnedScores) -> float | None:
    """Mean squared difference between probability and label. None without rows."""
    rows = scores.rows
    return sum(scores.sum_squared_error) / rows if rows else None
