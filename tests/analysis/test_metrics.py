"""Weighted metrics against independent computations: sklearn, scipy's beta quantiles, hand counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta
from sklearn.metrics import roc_auc_score

from darkflow.analysis.metrics import (
    bootstrap_auc,
    clopper_pearson,
    effective_count,
    efficiency_above,
    efficiency_curve,
    improvement_summary,
    significance_improvement,
    threshold_at_efficiency,
    thresholds_at_efficiencies,
    total_improvement,
    weighted_auc,
    weighted_roc,
)


def test_weighted_auc_matches_sklearn():
    rng = np.random.default_rng(3)
    sb, ss = rng.normal(0, 1, 500), rng.normal(1, 1, 300)
    wb, ws = rng.uniform(0.1, 2, 500), rng.uniform(0.1, 2, 300)
    y = np.r_[np.zeros(500), np.ones(300)]
    expected = roc_auc_score(y, np.r_[sb, ss], sample_weight=np.r_[wb, ws])
    assert weighted_auc(sb, ss, wb, ws) == pytest.approx(expected, rel=1e-12)
    fpr, tpr, _ = weighted_roc(sb, ss, wb, ws)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, rel=1e-12)


def test_weighted_auc_by_hand_with_ties():
    # pairs (b, s): s > b counts w_b w_s, ties count half. b = [0, 1] w = [1, 3]; s = [1, 2] w = [2, 1].
    # (0,1): 1*2, (0,2): 1*1, (1,1): tie 3*2/2, (1,2): 3*1 -> (2 + 1 + 3 + 3) / (4 * 3) = 0.75
    assert weighted_auc([0, 1], [1, 2], [1, 3], [2, 1]) == pytest.approx(0.75)


def test_effective_count():
    assert effective_count([1, 1, 1, 1]) == pytest.approx(4)
    assert effective_count([1, 3]) == pytest.approx(16 / 10)
    assert effective_count([]) == 0.0


def test_threshold_unweighted_no_ties():
    scores = np.arange(10.0)
    t = threshold_at_efficiency(scores, None, 0.2, min_events=1)
    # two events (8, 9) strictly above 7
    assert t.value == 7.0 and t.achieved == pytest.approx(0.2) and t.resolved
    assert efficiency_above(scores, None, t.value).value == pytest.approx(0.2)


def test_threshold_with_ties_never_exceeds_target():
    scores = np.array([0.0, 1, 2, 2, 2, 3])
    # target 0.5: above 1 is 4/6 > 0.5, above 2 is 1/6 <= 0.5: threshold 2, achieved 1/6
    t = threshold_at_efficiency(scores, None, 0.5, min_events=1)
    assert t.value == 2.0 and t.achieved == pytest.approx(1 / 6)
    # target exactly 4/6: threshold 1 (the three tied 2's and the 3 are above it)
    t = threshold_at_efficiency(scores, None, 4 / 6, min_events=1)
    assert t.value == 1.0 and t.achieved == pytest.approx(4 / 6)


def test_threshold_with_weights():
    scores = np.array([0.0, 1, 2, 3])
    weights = np.array([1.0, 1, 6, 2])
    # fraction above: 0 -> 9/10, 1 -> 8/10, 2 -> 2/10, 3 -> 0
    got = thresholds_at_efficiencies(scores, weights, [0.85, 0.8, 0.5, 0.3], min_events=1)
    assert [t.value for t in got[:3]] == [1.0, 1.0, 2.0]
    assert [t.achieved for t in got[:3]] == pytest.approx([0.8, 0.8, 0.2])
    # n_eff = 100 / 42: 0.3 < 1 / n_eff is not resolved
    assert not got[3].resolved and np.isnan(got[3].value)
    assert efficiency_above(scores, weights, 1.0).value == pytest.approx(0.8)
    assert efficiency_above(scores, weights, 0.5).value == pytest.approx(0.9)


def test_threshold_matches_brute_force():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 20, 300).astype(float)
    weights = rng.uniform(0, 1, 300)
    total = weights.sum()
    for target in (0.5, 0.1, 0.03, 0.01):
        candidates = [u for u in np.unique(scores) if weights[scores > u].sum() / total <= target]
        assert threshold_at_efficiency(scores, weights, target, min_events=1).value == min(candidates)


def test_not_resolved():
    """Resolved means at least 10 effective calibration events above the threshold: eps_B * N_eff >= 10."""
    t = threshold_at_efficiency(np.arange(999.0), None, 1e-2)
    assert not t.resolved and np.isnan(t.value) and np.isnan(t.achieved) and t.n_eff == pytest.approx(999)
    assert np.isnan(efficiency_above(np.arange(5.0), None, t.value).value)
    t = threshold_at_efficiency(np.arange(1000.0), None, 1e-2)
    assert t.resolved and t.n_eff_above == pytest.approx(10)
    assert threshold_at_efficiency(np.arange(100.0), None, 1e-2, min_events=1.0).resolved
    weights = np.r_[np.full(990, 1.0), np.full(10, 100.0)]  # N_eff = 99^2 * 100 / (990 + 1e5) ~ 97
    assert not threshold_at_efficiency(np.arange(1000.0), weights, 0.05).resolved


def test_bad_inputs():
    with pytest.raises(ValueError, match="not in"):
        threshold_at_efficiency([1.0, 2.0], None, 0.0)
    with pytest.raises(ValueError, match="negative"):
        threshold_at_efficiency([1.0, 2.0], [1.0, -1.0], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        efficiency_above([1.0, np.nan], None, 0.5)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (2.5, 7.3), (50, 1000)])
def test_clopper_pearson_matches_beta_quantiles(k, n):
    cl = 0.9
    low, high = clopper_pearson(k, n, cl)
    assert low == (0.0 if k == 0 else pytest.approx(beta.ppf(0.05, k, n - k + 1)))
    assert high == (1.0 if k == n else pytest.approx(beta.ppf(0.95, k + 1, n - k)))


@pytest.mark.parametrize(("k", "n"), [(0, 40), (3, 40), (17, 40), (40, 40), (12, 5000)])
def test_equal_weights_give_the_exact_clopper_pearson_interval(k, n):
    from scipy.stats import binomtest

    scores = np.r_[np.ones(k), np.zeros(n - k)]
    for w in (1.0, 0.37):
        eff = efficiency_above(scores, np.full(n, w), 0.5)
        exact = binomtest(k, n).proportion_ci(confidence_level=0.6826894921370859, method="exact")
        assert eff.value == pytest.approx(k / n)
        assert (eff.low, eff.high) == pytest.approx((exact.low, exact.high), abs=1e-12)
        assert eff.n_eff_above == pytest.approx(k)


def test_weighted_interval_matches_the_first_order_variance():
    """For many events the 68% interval is eps +- sqrt(V) with V from the weights (delta method)."""
    rng = np.random.default_rng(3)
    scores, weights = rng.normal(size=200_000), rng.exponential(1.0, 200_000)
    eff = efficiency_above(scores, weights, 1.5)
    above = scores > 1.5
    a, b = weights[above], weights[~above]
    eps = a.sum() / weights.sum()
    var = ((1 - eps) ** 2 * (a * a).sum() + eps**2 * (b * b).sum()) / weights.sum() ** 2
    assert eff.value == pytest.approx(eps)
    assert eff.high - eff.low == pytest.approx(2 * np.sqrt(var), rel=0.02)
    assert eff.n_eff_above == pytest.approx(a.sum() ** 2 / (a * a).sum())


@pytest.mark.slow
def test_weighted_interval_covers_68_percent():
    """Coverage in toy experiments: two-valued weights, a small efficiency, 3000 toys of 400 events."""
    rng = np.random.default_rng(5)
    truth, hits = 0.1, 0
    weights = np.where(rng.random(400) < 0.3, 5.0, 1.0)
    true_eps = truth  # the pass probability does not depend on the weight
    for _ in range(3000):
        passed = rng.random(400) < truth
        eff = efficiency_above(passed.astype(float), weights, 0.5)
        hits += eff.low <= true_eps <= eff.high
    assert 0.66 < hits / 3000 < 0.74


def test_efficiency_curve_equals_efficiency_above():
    rng = np.random.default_rng(4)
    scores, weights = rng.normal(size=3000).round(2), rng.uniform(0.1, 2.0, 3000)
    thresholds = np.array([-5.0, -0.3, 0.0, 0.5, 1.97, 10.0, np.nan])
    curve = efficiency_curve(scores, weights, thresholds)
    for i, thr in enumerate(thresholds):
        eff = efficiency_above(scores, weights, thr)
        got = [curve[k][i] for k in ("eps", "low", "high", "n_eff_above")]
        assert got == pytest.approx([eff.value, eff.low, eff.high, eff.n_eff_above], nan_ok=True)


def test_bootstrap_auc_spread_matches_delong():
    """Unweighted: the bootstrap standard deviation agrees with DeLong's closed-form standard error."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(6)
    b, s = rng.normal(0, 1, 4000), rng.normal(0.8, 1.2, 600)
    m, n = s.size, b.size
    ranks = rankdata(np.r_[s, b])
    v10 = (ranks[:m] - rankdata(s)) / n
    v01 = 1 - (ranks[m:] - rankdata(b)) / m
    delong = np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    replicas = bootstrap_auc(b, s, replicas=1000)
    assert replicas.std() == pytest.approx(delong, rel=0.1)
    assert replicas.mean() == pytest.approx(weighted_auc(b, s), abs=3 * delong / np.sqrt(1000) + 1e-3)
    # the same seed gives the same replicas
    assert np.array_equal(bootstrap_auc(b, s, replicas=5), bootstrap_auc(b, s, replicas=5))
    # ties count one half: with coarse scores the replicas centre on sklearn's tie-aware AUC
    bt, st, wt = np.round(b), np.round(s), rng.uniform(0.5, 1.5, n)
    tied = bootstrap_auc(bt, st, wt, None, replicas=1000)
    exact = weighted_auc(bt, st, wt, None)
    assert tied.mean() == pytest.approx(exact, abs=4 * tied.std() / np.sqrt(1000))
    assert abs(exact - weighted_auc(bt + 0.01 * (np.arange(n) % 2), st, wt, None)) > 5 * tied.std() / np.sqrt(1000)


def test_significance_improvement():
    assert significance_improvement(0.1, 1e-2) == pytest.approx(1.0)
    assert significance_improvement([0.5, 0.2], [1e-4, 0.04]) == pytest.approx([50.0, 1.0])
    assert np.isnan(significance_improvement(0.1, 0.0))


def test_total_improvement():
    si = {"a": [[1.0, 3.0, np.nan], [2.0, 0.5, 4.0]], "b": [[0.2, 0.1, np.nan]], "c": [[np.nan]]}
    total = total_improvement(si)
    assert total["a"] == 4.0 and total["b"] == 0.2 and np.isnan(total["c"])
    assert improvement_summary(total) == pytest.approx({"min": 0.2, "median": 2.1, "max": 4.0})
