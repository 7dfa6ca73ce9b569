"""Drift and model-quality statistics against scipy, scikit-learn and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from featurelake.monitoring import stats
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def test_psi_of_two_bins_worked_by_hand():
    # (0.4 - 0.5) ln(0.4/0.5) + (0.6 - 0.5) ln(0.6/0.5) = 0.0223144 + 0.0182322
    assert stats.psi([50, 50], [40, 60]) == pytest.approx(0.0405465, abs=1e-6)


def test_psi_counts_an_empty_bin_as_epsilon():
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert stats.psi([5, 5], [0, 10]) == pytest.approx(expected)


def test_js_distance_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 100, 12), rng.integers(0, 100, 12)
    assert stats.js_distance(list(a), list(b)) == pytest.approx(jensenshannon(a, b, base=2))


def test_chi_square_matches_scipy_contingency_test():
    reference, current = [120, 80, 40, 10], [100, 90, 60, 5]
    expected = scipy_stats.chi2_contingency(np.array([reference, current]), correction=False)
    result = stats.chi_square(reference, current)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.dof == expected.dof
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("x, dof", [(0.5, 1), (3.0, 2), (25.0, 9), (80.0, 49), (200.0, 3)])
def test_chi2_survival_matches_scipy(x, dof):
    assert stats.chi2_survival(x, dof) == pytest.approx(scipy_stats.chi2.sf(x, dof), rel=1e-9)


def _binned(probabilities: np.ndarray, labels: np.ndarray) -> stats.BinnedScores:
    scores = sorted(set(probabilities.tolist()))
    rows = [(s, labels[probabilities == s], probabilities[probabilities == s]) for s in scores]
    return stats.BinnedScores(
        score=tuple(scores),
        positives=tuple(int(y.sum()) for _, y, _ in rows),
        negatives=tuple(int((1 - y).sum()) for _, y, _ in rows),
        sum_probability=tuple(float(p.sum()) for _, _, p in rows),
        sum_squared_error=tuple(float(((p - y) ** 2).sum()) for _, y, p in rows),
    )


def test_classifier_metrics_match_scikit_learn():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 3000)
    probabilities = np.round(np.clip(0.3 * labels + rng.uniform(0, 0.7, 3000), 0, 1), 3)
    scores = _binned(probabilities, labels)
    assert stats.roc_auc(scores) == pytest.approx(roc_auc_score(labels, probabilities))
    assert stats.average_precision(scores) == pytest.approx(
        average_precision_score(labels, probabilities)
    )
    assert stats.brier_score(scores) == pytest.approx(brier_score_loss(labels, probabilities))


def test_calibration_error_worked_by_hand():
    # bin [0.2, 0.3): 2 rows, mean p 0.2, 1 positive -> |0.2 - 0.5| x 2/4
    # bin [0.8, 0.9): 2 rows, mean p 0.8, 2 positives -> |0.8 - 1.0| x 2/4
    scores = _binned(np.array([0.2, 0.2, 0.8, 0.8]), np.array([0, 1, 1, 1]))
    assert stats.expected_calibration_error(scores) == pytest.approx(0.25)


def test_bin_counts_from_cdf_add_up_to_the_rows():
    assert stats.bin_counts_from_cdf(10, [0.2, 0.2, 0.7]) == [2, 0, 5, 3]
