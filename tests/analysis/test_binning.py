"""Score axes and bins: the scale follows the distribution, the bulk lands in many bins."""

from __future__ import annotations

import numpy as np

from darkflow.analysis import binning


def test_positive_scores_over_many_decades_get_log_bins():
    rng = np.random.default_rng(3)
    values = rng.lognormal(1.0, 1.5, 5000)
    result = binning.score_binning([(values, np.ones(values.size))])
    assert result.scale.kind == "log"
    ratios = result.edges[1:] / result.edges[:-1]
    assert np.allclose(ratios, ratios[0])
    counts = result.fill(values, np.ones(values.size))
    assert np.sum(counts > 0.01 * values.size) >= 15  # a linear axis would put most in two bins


def test_quantile_range_keeps_the_bulk_in_many_bins():
    rng = np.random.default_rng(4)
    values = np.r_[rng.normal(0.0, 1.0, 5000), [1e4, -3e3]]  # two outliers a min-max range would stretch to
    result = binning.score_binning([(values, np.ones(values.size))], bins=40)
    assert result.scale.kind == "linear" and result.underflow and result.overflow
    lo, hi = np.quantile(values, [1e-3, 1 - 1e-3], method="inverted_cdf")
    assert result.edges[0] == lo and result.edges[-1] == hi
    assert np.allclose(np.diff(result.edges), (hi - lo) / 40)
    counts = result.fill(values, np.ones(values.size))
    assert counts.sum() == values.size  # under- and overflow are in the edge bins
    assert np.sum(counts >= 10) >= 30
    assert "underflow" in result.note() and "overflow" in result.note()


def test_negative_bulk_with_a_long_tail_gets_a_shifted_log_scale():
    rng = np.random.default_rng(5)
    values = np.r_[rng.normal(-200.0, 15.0, 4900), rng.exponential(2000.0, 100)]
    result = binning.score_binning([(values, np.ones(values.size))])
    scale = result.scale
    assert scale.kind == "shifted-log" and scale.offset < result.edges[0]
    steps = np.diff(np.log10(result.edges - scale.offset))
    assert np.allclose(steps, steps[0])
    assert np.allclose(scale.inverse(scale.forward(result.edges)), result.edges)
    counts = result.fill(values, np.ones(values.size))
    linear, _ = np.histogram(np.clip(values, result.edges[0], result.edges[-1]),
                             np.linspace(result.edges[0], result.edges[-1], 41))
    assert np.sum(linear > 0.01 * values.size) <= 2 and np.sum(counts > 0.01 * values.size) >= 8
    ticks = scale.ticks(result.edges[0], result.edges[-1])
    assert len(ticks) >= 4 and all(result.edges[0] <= t <= result.edges[-1] for t in ticks)
    assert "axis log(x +" in scale.note()


def test_a_narrow_sample_next_to_a_broad_one_gets_a_shifted_log_scale():
    rng = np.random.default_rng(7)
    sm = rng.normal(-200.0, 15.0, 3000)
    signal = rng.exponential(1500.0, 800) - 150.0  # broad: alone it would not call for a log axis
    result = binning.score_binning([(sm, np.ones(sm.size)), (signal, np.ones(signal.size))])
    assert result.scale.kind == "shifted-log"
    assert binning.score_binning([(signal, np.ones(signal.size))]).scale.kind == "linear"
    counts = result.fill(sm, np.ones(sm.size))
    assert np.sum(counts > 0.01 * sm.size) >= 8


def test_weights_enter_the_range():
    values = np.r_[np.zeros(100), np.ones(100)]
    weights = np.r_[np.full(100, 1e-6), np.ones(100)]  # the zeros carry almost no weight
    lo, hi = binning.weighted_quantiles(values, weights, binning.QUANTILES)
    assert lo == 1.0 and hi == 1.0


def test_weighted_quantiles_match_numpy_for_unit_weights():
    values = np.random.default_rng(6).normal(size=1001)
    q = [0.001, 0.25, 0.5, 0.999]
    assert np.allclose(binning.weighted_quantiles(values, np.ones(values.size), q),
                       np.quantile(values, q, method="inverted_cdf"))
    v, w = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 1.0])  # a weight of 3 counts like three copies
    assert np.allclose(binning.weighted_quantiles(v, w, [0.2, 0.21, 0.8, 0.81]),
                       np.quantile(np.repeat(v, [1, 3, 1]), [0.2, 0.21, 0.8, 0.81], method="inverted_cdf"))
