"""Drift on numpy samples: injected drift is caught on exactly one feature, noise is not.

The profiles come from samples (tests/monitoring_samples.py); thresholds are the shipped
``conf/monitoring.yaml``'s. Expected PSI and KS are computed independently with numpy and scipy
on the same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from featurelake.core.config import load_yaml_file
from featurelake.monitoring.config import MonitoringConfig, parse_monitoring_config
from featurelake.monitoring.drift import compare_profiles, numeric_bins, reference_points
from featurelake.monitoring.profile import ALL
from monitoring_samples import categorical_profile, numeric_profile
from scipy import stats as scipy_stats

CONF = Path(__file__).resolve().parents[1] / "conf" / "monitoring.yaml"
NUMERIC = ("limit_bal", "age", "avg_utilization")
CATEGORICAL = ("education",)


@pytest.fixture(scope="module")
def config() -> MonitoringConfig:
    return parse_monitoring_config(load_yaml_file(CONF), str(CONF))


def credit_batch(rng: np.random.Generator, n: int, limit_factor: float = 1.0) -> dict:
    """A batch shaped like the credit features; ``limit_factor`` shifts limit_bal only."""
    limit = np.floor((1 + np.floor(rng.uniform(size=n) ** 2 * 80)) * 10_000 * limit_factor)
    return {
        "limit_bal": limit,
        "age": np.floor(21 + rng.uniform(size=n) ** 1.5 * 55),
        "avg_utilization": rng.beta(2, 5, size=n),
        "education": list(
            rng.choice(["1", "2", "3", "4"], size=n, p=[0.35, 0.47, 0.16, 0.02]).astype(object)
        ),
    }


def profiles_of(batch: dict, points: dict | None = None) -> list:
    found = [numeric_profile(c, batch[c], (points or {}).get(c, ())) for c in NUMERIC]
    return found + [categorical_profile(c, batch[c]) for c in CATEGORICAL]


def compare(config: MonitoringConfig, reference: dict, current: dict) -> dict[str, str]:
    references = {(ALL, p.column): p for p in profiles_of(reference)}
    points = reference_points(references.values())
    drifts = compare_profiles(
        references,
        profiles_of(current, points),
        lambda column: config.drift.for_column("gold/credit_features", column),
        config.profile,
        config.drift.min_rows,
    )
    return {d.column: d.status for d in drifts}


def test_a_shifted_limit_is_critical_and_no_other_feature_is(config):
    reference = credit_batch(np.random.default_rng(1), 3000)
    later = credit_batch(np.random.default_rng(2), 3000, limit_factor=1.6)
    statuses = compare(config, reference, later)
    assert statuses == {
        "limit_bal": "critical",
        "age": "ok",
        "avg_utilization": "ok",
        "education": "ok",
    }


def test_twenty_unchanged_batches_raise_at_most_one_warning(config):
    reference = credit_batch(np.random.default_rng(100), 3000)
    flagged = []
    for seed in range(20):
        statuses = compare(config, reference, credit_batch(np.random.default_rng(seed), 3000))
        flagged.append(any(s != "ok" for s in statuses.values()))
    assert sum(flagged) <= 1, flagged


def test_psi_and_ks_agree_with_numpy_and_scipy_on_the_same_samples(config):
    rng = np.random.default_rng(11)
    reference = rng.normal(0, 1, 4000)
    current = rng.normal(0.3, 1.2, 4000)
    ref_profile = numeric_profile("x", reference)
    cur_profile = numeric_profile("x", current, tuple(sorted(set(ref_profile.cdf_points))))
    drift = compare_profiles(
        {(ALL, "x"): ref_profile},
        [cur_profile],
        lambda _c: config.drift.thresholds,
        config.profile,
        1,
    )[0]
    values = {m.metric: m.value for m in drift.metrics}
    # numpy: the reference's deciles as right-closed bin edges, shares, PSI by its definition
    edges = np.quantile(reference, [i / 10 for i in range(1, 10)], method="inverted_cdf")
    assert tuple(edges) == numeric_bins(ref_profile, 10)
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=10)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="left"), minlength=10)
    r, c = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    assert values["psi"] == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=1e-3)
    # KS is read at the reference's percentiles only: at most scipy's, and close to it
    exact = scipy_stats.ks_2samp(reference, current).statistic
    assert exact - 0.02 <= values["ks"] <= exact + 1e-9


def test_a_null_rate_jump_is_critical_even_when_values_match(config):
    rng = np.random.default_rng(5)
    reference = rng.normal(size=2000)
    current = rng.normal(size=2000)
    current[:600] = np.nan
    statuses = compare_profiles(
        {(ALL, "x"): numeric_profile("x", reference)},
        [numeric_profile("x", current, tuple(numeric_profile("x", reference).cdf_points))],
        lambda _c: config.drift.thresholds,
        config.profile,
        100,
    )
    assert statuses[0].status == "critical"
    assert {m.metric: m.status for m in statuses[0].metrics}["null_rate_change"] == "critical"


def test_too_few_rows_are_skipped_not_judged(config):
    rng = np.random.default_rng(6)
    reference = numeric_profile("x", rng.normal(size=50))
    drift = compare_profiles(
        {(ALL, "x"): reference},
        [numeric_profile("x", rng.normal(5, 1, 50), tuple(reference.cdf_points))],
        lambda _c: config.drift.thresholds,
        config.profile,
        100,
    )[0]
    assert drift.status == "skipped"
    assert "50 rows < min_rows 100" in (drift.skipped or "")
