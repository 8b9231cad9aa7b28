"""Axes and bins for anomaly scores, which are often heavy-tailed (used by :mod:`darkflow.analysis.plots`).

A density model's negative log-likelihood, for example, has its Standard Model bulk within a few tens of
units and a tail thousands of units long, and it may be negative: on a linear axis the bulk falls in one or
two bins. The axis is chosen from the values themselves:

    - positive values spanning more than ``LOG_DECADES`` decades: a log axis;
    - otherwise, a range wider than ``HEAVY_TAIL`` interquartile ranges of the narrowest sample: a log axis
      of (value - offset), the offset just below the range, with ticks labelled in score units;
    - otherwise a linear axis.

Histograms run from the 0.1% to the 99.9% weighted quantile; under- and overflow go into the edge bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

LOG_DECADES = 2.0
HEAVY_TAIL = 20.0
QUANTILES = (1e-3, 1.0 - 1e-3)
SHIFT_FRACTION = 0.3  # offset below the range: this fraction of the distance from the lowest value to the median


def weighted_quantiles(values: ArrayLike, weights: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """Weighted quantiles (Q,) of ``values`` (N,) with non-negative ``weights`` (N,) at fractions ``q`` (Q,).

    The quantile at q is the smallest value whose cumulative weight fraction reaches q (numpy's
    ``inverted_cdf`` for unit weights).
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    cumulative = np.cumsum(w[order])
    cumulative /= cumulative[-1]
    index = np.minimum(np.searchsorted(cumulative, np.asarray(q, dtype=np.float64), side="left"), v.size - 1)
    return v[order][index]


def readable_log_ticks(axis, lo: float, hi: float) -> None:
    """On a log axis spanning at most three decades, label the 1, 2, 5 ticks with plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if np.log10(hi / lo) <= 3:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


@dataclass(frozen=True)
class ScoreScale:
    """How a score axis is drawn.

    Attributes:
        kind: ``"linear"``, ``"log"`` or ``"shifted-log"`` (log of value - offset).
        offset: the offset of ``"shifted-log"`` (0 otherwise).
        floor: the smallest value - offset taken by the log (values at or below the offset map there).
    """

    kind: str = "linear"
    offset: float = 0.0
    floor: float = 1e-300

    def forward(self, x: ArrayLike) -> NDArray[np.float64]:
        """Axis coordinate of the values ``x`` (any shape): linear in it for the bins."""
        x = np.asarray(x, dtype=np.float64)
        return x if self.kind == "linear" else np.log10(np.maximum(x - self.offset, self.floor))

    def inverse(self, y: ArrayLike) -> NDArray[np.float64]:
        """Values at the axis coordinates ``y`` (any shape)."""
        y = np.asarray(y, dtype=np.float64)
        return y if self.kind == "linear" else 10.0**y + self.offset

    def edges(self, lo: float, hi: float, bins: int) -> NDArray[np.float64]:
        """``bins + 1`` edges from ``lo`` to ``hi``, equally spaced on the axis."""
        edges = self.inverse(np.linspace(self.forward(lo), self.forward(hi), bins + 1))
        edges[0], edges[-1] = lo, hi
        return edges

    def note(self) -> str:
        """What an axis label should add ("" for linear and log axes, whose ticks say it)."""
        if self.kind != "shifted-log":
            return ""
        sign = "+" if self.offset < 0 else "-"
        return f"axis log(x {sign} {abs(self.offset):.3g})"

    def apply(self, ax, lo: float, hi: float) -> None:
        """Set the x axis of ``ax`` to this scale over [lo, hi], with readable ticks."""
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        ax.set_xlim(lo, hi)
        if self.kind == "log":
            ax.set_xscale("log")
            readable_log_ticks(ax.xaxis, lo, hi)
        elif self.kind == "shifted-log":
            ax.set_xscale("function", functions=(self.forward, self.inverse))
            ax.xaxis.set_major_locator(FixedLocator(self.ticks(lo, hi)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlim(lo, hi)

    def ticks(self, lo: float, hi: float, count: int = 7) -> list[float]:
        """Round values (0 and +-1, 2, 5 x 10^k) in [lo, hi], at least 1/``count`` of the axis apart."""
        top = math.ceil(math.log10(max(abs(lo), abs(hi), 1e-300)))
        bottom = math.floor(math.log10(max(lo - self.offset, 1e-300)))
        values = {0.0} | {s * m * 10.0**k for s in (-1, 1) for m in (1, 2, 5) for k in range(bottom, top + 1)}
        inside = sorted(v for v in values if lo <= v <= hi)
        spacing = (float(self.forward(hi)) - float(self.forward(lo))) / count
        out: list[float] = []
        for v in inside:
            if not out or float(self.forward(v)) - float(self.forward(out[-1])) >= spacing:
                out.append(v)
        return out


def score_scale(samples: list[tuple[ArrayLike, ArrayLike]], lo: float, hi: float) -> ScoreScale:
    """The scale of an axis over [lo, hi] for ``(values (N,), weights (N,))`` samples.

    Log for positive values over more than ``LOG_DECADES`` decades; else shifted-log when the range is
    wider than ``HEAVY_TAIL`` interquartile ranges of the narrowest sample (its bulk would fill a bin or
    two), the offset ``SHIFT_FRACTION`` of the way from that sample's median down to ``lo``, below ``lo``.
    """
    if lo > 0 and np.log10(hi / lo) > LOG_DECADES:
        return ScoreScale("log")
    quartiles = [weighted_quantiles(v, w, (0.25, 0.5, 0.75)) for v, w in samples if np.sum(w) > 0]
    q25, q50, q75 = (float(x) for x in min(quartiles, key=lambda q: q[2] - q[0]))
    if hi > lo and hi - lo > HEAVY_TAIL * (q75 - q25):
        gap = max(SHIFT_FRACTION * (q50 - lo), 1e-4 * (hi - lo))
        return ScoreScale("shifted-log", lo - gap, gap / 100)
    return ScoreScale("linear")


@dataclass(frozen=True)
class Binning:
    """Bin edges of a score histogram.

    Attributes:
        edges: (B + 1,) increasing edges, equally spaced on the axis of ``scale``.
        scale: the axis they are drawn on.
        underflow, overflow: True when events below the first / above the last edge are counted in the
            first / last bin.
    """

    edges: NDArray[np.float64]
    scale: ScoreScale
    underflow: bool
    overflow: bool

    def fill(self, values: ArrayLike, weights: ArrayLike) -> NDArray[np.float64]:
        """Weighted counts (B,) of ``values`` (N,), under- and overflow in the edge bins."""
        clipped = np.clip(np.asarray(values, dtype=np.float64), self.edges[0], self.edges[-1])
        return np.histogram(clipped, self.edges, weights=weights)[0]

    def note(self) -> str:
        """What the edge bins hold, for the legend ("" when nothing is folded in)."""
        parts = ["First bin includes underflow"] * self.underflow + ["Last bin includes overflow"] * self.overflow
        return "\n".join(parts)


def score_binning(samples: list[tuple[ArrayLike, ArrayLike]], bins: int = 40) -> Binning:
    """Bins suited to the pooled ``(scores (N,), weights (N,))`` samples, each given unit total weight.

    The range runs from the 0.1% to the 99.9% weighted quantile of the pool; the scale follows the rule
    of the module docstring.
    """
    values = np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in samples])
    weights = np.concatenate([np.asarray(w, dtype=np.float64) / float(np.sum(w)) for _, w in samples])
    lo, hi = (float(x) for x in weighted_quantiles(values, weights, QUANTILES))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    scale = score_scale(samples, lo, hi)
    return Binning(scale.edges(lo, hi, bins), scale, bool(np.any(values < lo)), bool(np.any(values > hi)))
