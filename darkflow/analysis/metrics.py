"""Weighted anomaly-detection metrics: ROC, AUC, thresholds, efficiencies with intervals, SI.

Every function is a pure function of numpy arrays. Scores are "higher is more anomalous"; an event is
flagged when its score is *strictly above* the threshold (DESIGN section 5). Weights are per-event
cross-section weights (pb); they must be finite and non-negative.

References:
    T. Aarrestad et al., "The Dark Machines Anomaly Score Challenge: Benchmark Data and Model
    Independent Event Classification for the Large Hadron Collider", SciPost Phys. 12, 043 (2022),
    arXiv:2105.14027 (significance improvement and total improvement).
    C. J. Clopper and E. S. Pearson, Biometrika 26, 404 (1934) (binomial interval).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

ONE_SIGMA = 0.6826894921370859
# A background efficiency eps_B measured on a sample is resolved when eps_B * N_eff >= MIN_EFFECTIVE_EVENTS
# (relative statistical uncertainty about 30%); tables and plots show no number beyond it.
MIN_EFFECTIVE_EVENTS = 10


def _as_pair(scores: ArrayLike, weights: ArrayLike | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validated float64 copies of ``scores`` (N,) and ``weights`` (N,) (ones when ``None``)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if s.shape != w.shape:
        raise ValueError(f"scores and weights differ in length ({s.size} and {w.size})")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int(np.sum(~np.isfinite(s)))} score(s) are NaN or infinite")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{int(np.sum(~np.isfinite(w)))} weight(s) are NaN or infinite")
    if np.any(w < 0):
        raise ValueError(f"{int(np.sum(w < 0))} weight(s) are negative; only non-negative weights are supported")
    return s, w


def effective_count(weights: ArrayLike) -> float:
    """Kish effective number of events ``(sum w)^2 / sum w^2`` of weights (N,); 0 for an empty or zero sample."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    sum_w2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sum_w2 if sum_w2 > 0 else 0.0


def weighted_roc(
    background: ArrayLike, signal: ArrayLike, w_background: ArrayLike | None = None, w_signal: ArrayLike | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Weighted ROC curve of ``signal`` (Ns,) against ``background`` (Nb,) scores.

    Returns ``(eps_b, eps_s, thresholds)``, each (K,), from :func:`sklearn.metrics.roc_curve` with
    ``sample_weight``. sklearn counts scores ``>= threshold``; its thresholds are the distinct scores,
    so each point is also the efficiency strictly above the next lower distinct score.
    """
    from sklearn.metrics import roc_curve

    sb, wb = _as_pair(background, w_background)
    ss, ws = _as_pair(signal, w_signal)
    labels = np.concatenate([np.zeros(sb.size), np.ones(ss.size)])
    fpr, tpr, thr = roc_curve(labels, np.concatenate([sb, ss]), sample_weight=np.concatenate([wb, ws]),
                              drop_intermediate=False)
    return fpr, tpr, thr


def weighted_auc(
    background: ArrayLike, signal: ArrayLike, w_background: ArrayLike | None = None, w_signal: ArrayLike | None = None
) -> float:
    """Weighted area under the ROC curve (:func:`sklearn.metrics.roc_auc_score`); shapes as :func:`weighted_roc`."""
    from sklearn.metrics import roc_auc_score

    sb, wb = _as_pair(background, w_background)
    ss, ws = _as_pair(signal, w_signal)
    if sb.size == 0 or ss.size == 0 or wb.sum() <= 0 or ws.sum() <= 0:
        raise ValueError("AUC needs a background and a signal sample with positive total weight")
    labels = np.concatenate([np.zeros(sb.size), np.ones(ss.size)])
    return float(roc_auc_score(labels, np.concatenate([sb, ss]), sample_weight=np.concatenate([wb, ws])))


@dataclass(frozen=True)
class Threshold:
    """A threshold placed on a calibration sample for a target efficiency.

    Attributes:
        target: the requested efficiency eps_B.
        value: the threshold (events strictly above it are flagged); NaN when not resolved.
        achieved: the weighted efficiency strictly above ``value`` on the calibration sample (<= target);
            NaN when not resolved.
        resolved: False when ``target < 1 / n_eff``: the calibration statistics cannot resolve it.
        n: number of calibration events.
        n_eff: their effective number ``(sum w)^2 / sum w^2``.
    """

    target: float
    value: float
    achieved: float
    resolved: bool
    n: int
    n_eff: float


def _fraction_above(s: NDArray[np.float64], w: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distinct scores (U,) ascending and the weighted fraction of the sample strictly above each (U,)."""
    order = np.argsort(s, kind="stable")
    s_sorted, w_sorted = s[order], w[order]
    values, first = np.unique(s_sorted, return_index=True)
    last = np.append(first[1:], s_sorted.size) - 1
    # suffix sums: the weight strictly above a value is summed over the few top events only (no cancellation)
    suffix = np.append(np.cumsum(w_sorted[::-1])[::-1], 0.0)
    above = suffix[last + 1]
    return values, np.clip(above / suffix[0], 0.0, 1.0)


def thresholds_at_efficiencies(scores: ArrayLike, weights: ArrayLike | None, targets: Iterable[float]) -> list[Threshold]:
    """Thresholds on a calibration sample for each target efficiency.

    The threshold for a target eps is the *smallest distinct calibration score u* such that the weighted
    fraction of the calibration sample strictly above u is at most eps. Ties are handled exactly: events
    tied at u are never flagged by u, so when a block of tied events straddles the target the achieved
    efficiency is below it (never above), and the threshold is always one of the calibration scores.
    A target below ``1 / n_eff`` is not resolved: ``value`` and ``achieved`` are NaN, ``resolved`` False.

    Shapes:
        scores, weights: (N,) calibration scores and weights; targets: (T,) in (0, 1]. Returns T thresholds.
    """
    s, w = _as_pair(scores, weights)
    targets = [float(t) for t in targets]
    for t in targets:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"target efficiency {t} is not in (0, 1]")
    if s.size == 0 or w.sum() <= 0:
        raise ValueError("the calibration sample is empty or has zero total weight")
    n_eff = effective_count(w)
    values, frac = _fraction_above(s, w)
    # frac is non-increasing in the score (weights >= 0): the first index with frac <= t is the smallest u.
    out = []
    for t in targets:
        if t * n_eff < 1.0:
            out.append(Threshold(t, float("nan"), float("nan"), False, int(s.size), n_eff))
            continue
        k = int(np.searchsorted(-frac, -t, side="left"))
        out.append(Threshold(t, float(values[k]), float(frac[k]), True, int(s.size), n_eff))
    return out


def threshold_at_efficiency(scores: ArrayLike, weights: ArrayLike | None, target: float) -> Threshold:
    """One threshold; see :func:`thresholds_at_efficiencies` (scores, weights: (N,))."""
    return thresholds_at_efficiencies(scores, weights, [target])[0]


@dataclass(frozen=True)
class Efficiency:
    """A weighted efficiency with its Clopper-Pearson interval.

    Attributes:
        value: sum of weights strictly above the threshold / total weight (NaN if the threshold is NaN).
        low, high: the central Clopper-Pearson interval at confidence ``cl``.
        n_eff: effective number of events of the sample.
    """

    value: float
    low: float
    high: float
    n_eff: float


def clopper_pearson(k: float, n: float, cl: float = ONE_SIGMA) -> tuple[float, float]:
    """Central Clopper-Pearson interval for ``k`` successes in ``n`` trials (both may be non-integer).

    ``low = Beta^-1((1-cl)/2; k, n-k+1)`` (0 when k = 0), ``high = Beta^-1((1+cl)/2; k+1, n-k)``
    (1 when k = n); NaN, NaN when n <= 0.
    """
    from scipy.stats import beta

    if not n > 0:
        return float("nan"), float("nan")
    k = min(max(k, 0.0), n)
    alpha = 1.0 - cl
    low = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def efficiency_above(scores: ArrayLike, weights: ArrayLike | None, threshold: float, cl: float = ONE_SIGMA) -> Efficiency:
    """Weighted efficiency of a sample strictly above ``threshold`` with a Clopper-Pearson interval.

    The interval treats the weighted sample as ``n_eff = (sum w)^2 / sum w^2`` unweighted events of
    which ``k_eff = eps * n_eff`` pass (the usual effective-entries approximation for weighted samples;
    exact for equal weights).

    Shapes:
        scores, weights: (N,); threshold: scalar (NaN gives a NaN efficiency).
    """
    s, w = _as_pair(scores, weights)
    n_eff = effective_count(w)
    total = float(w.sum())
    if not np.isfinite(threshold) or total <= 0:
        return Efficiency(float("nan"), float("nan"), float("nan"), n_eff)
    eps = float(w[s > threshold].sum()) / total
    low, high = clopper_pearson(eps * n_eff, n_eff, cl)
    return Efficiency(eps, low, high, n_eff)


def significance_improvement(eps_s: ArrayLike, eps_b: ArrayLike) -> NDArray[np.float64]:
    """Significance improvement ``eps_S / sqrt(eps_B)`` (Aarrestad et al. 2022), elementwise; NaN where eps_B <= 0."""
    s = np.asarray(eps_s, dtype=np.float64)
    b = np.asarray(eps_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, s / np.sqrt(np.where(b > 0, b, 1.0)), np.nan)


def total_improvement(si: Mapping[str, Iterable[Iterable[float]]]) -> dict[str, float]:
    """The Dark Machines "total improvement" of each physics signal.

    Definition of Aarrestad et al. (2022) as implemented in the paper's companion repository
    (github.com/bostdiek/DarkMachines-UnsupervisedChallenge, notebooks/04-SignificanceImprovement.ipynb):
    for each signal and channel the significance improvement eps_S / sqrt(eps_B) is taken at the working
    point eps_B in {1e-2, 1e-3, 1e-4} that maximizes it; a signal that appears in several channels keeps
    the largest of its channel values. That maximum is the signal's total improvement; a model is then
    summarized by the minimum, median and maximum over signals (:func:`improvement_summary`). We did not
    check the equation number in the paper itself; this docstring is our reading of the notebook.
    NaN values (working points not resolved) are ignored; a signal with no finite value gets NaN.

    Arguments:
        si: signal name -> one sequence per channel of SI values at the working points.
    """
    out: dict[str, float] = {}
    for name, channels in si.items():
        values = np.asarray([v for channel in channels for v in channel], dtype=np.float64)
        finite = values[np.isfinite(values)]
        out[name] = float(finite.max()) if finite.size else float("nan")
    return out


def improvement_summary(total: Mapping[str, float]) -> dict[str, float]:
    """Minimum, median and maximum of total improvements over signals (NaN ignored; NaN when none)."""
    values = np.asarray([v for v in total.values() if np.isfinite(v)], dtype=np.float64)
    if values.size == 0:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
