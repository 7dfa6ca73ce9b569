"""Model performance: a batch whose labels are 30% flipped is a degraded model.

The champion's metrics come from scikit-learn on its clean validation batch; the batches go
through the monitor's judgement as binned scores, the form the Spark aggregation produces.
"""

from __future__ import annotations

import numpy as np
import pytest
from featurelake.monitoring import stats
from featurelake.monitoring.config import ModelMonitorConfig
from featurelake.monitoring.models import SCORE_BINS, judge_performance
from sklearn.metrics import roc_auc_score


def _scores(probabilities: np.ndarray, labels: np.ndarray) -> stats.BinnedScores:
    """Labelled scores grouped by probability rounded to 1/SCORE_BINS (as the monitor does)."""
    bins = np.round(probabilities * SCORE_BINS).astype(int)
    keys = sorted(set(bins.tolist()))
    return stats.BinnedScores(
        score=tuple(k / SCORE_BINS for k in keys),
        positives=tuple(int(labels[bins == k].sum()) for k in keys),
        negatives=tuple(int((1 - labels[bins == k]).sum()) for k in keys),
        sum_probability=tuple(float(probabilities[bins == k].sum()) for k in keys),
        sum_squared_error=tuple(
            float(((probabilities[bins == k] - labels[bins == k]) ** 2).sum()) for k in keys
        ),
    )


def _batch(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """A well-separated classifier's probabilities and the true labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < 0.25).astype(int)
    logits = np.where(labels == 1, 1.2, -1.2) + rng.normal(0, 1.0, n)
    return 1 / (1 + np.exp(-logits)), labels


def _judge(batches: dict[str, stats.BinnedScores]) -> dict[str, str]:
    probabilities, labels = _batch(0)
    champion = {"promoted": roc_auc_score(labels, probabilities), "ece": 0.05}
    results = judge_performance(
        "credit_default",
        "roc_auc",
        champion,
        batches,
        ModelMonitorConfig(),
        {"table": "predictions/credit_default"},
    )
    return {r.window: r.status for r in results if r.check == "performance"}


def test_labels_flipped_on_30_percent_of_a_batch_flag_the_model_degraded():
    probabilities, labels = _batch(1)
    flipped = labels.copy()
    chosen = np.random.default_rng(2).choice(
        len(labels), size=int(0.3 * len(labels)), replace=False
    )
    flipped[chosen] = 1 - flipped[chosen]
    # scikit-learn on the same rows: the drop is far past the critical threshold (0.08)
    assert roc_auc_score(labels, probabilities) - roc_auc_score(flipped, probabilities) > 0.2
    statuses = _judge(
        {"b-clean": _scores(probabilities, labels), "b-flipped": _scores(probabilities, flipped)}
    )
    assert statuses == {"b-clean": "ok", "b-flipped": "critical"}


def test_the_degraded_result_names_the_metric_and_the_drop():
    probabilities, labels = _batch(3)
    flipped = 1 - labels
    probabilities_, labels_ = _batch(0)
    champion = {"promoted": roc_auc_score(labels_, probabilities_), "ece": 0.05}
    result = judge_performance(
        "credit_default",
        "roc_auc",
        champion,
        {"b1": _scores(probabilities, flipped)},
        ModelMonitorConfig(),
        {},
    )[0]
    assert result.subject == "model/credit_default:roc_auc"
    assert result.detail.startswith("degraded: roc_auc ")
    # scores are binned to 1/1000 before the metric: within 0.001 of the unbinned value
    assert result.value == pytest.approx(roc_auc_score(flipped, probabilities), abs=1e-3)


def test_a_batch_with_too_few_labels_is_skipped():
    probabilities, labels = _batch(4, n=50)
    assert _judge({"small": _scores(probabilities, labels)}) == {"small": "skipped"}
