"""HEP-style plots of scores, a scan folder and a run (issue 6, DESIGN section 5).

Every plot is written as PNG and PDF (or the formats of :class:`PlotOptions`) with matplotlib's Agg
backend. The default look is neutral: mplhep's ROOT style and the label "DarkFlow", followed by
"Simulation" only when the options say the inputs are simulated; an experiment style (CMS, ATLAS, LHCb,
ALICE) is opt-in. Legends sit outside the axes, so they never cover data. Each function returns the paths
written (empty when skipped).

Conventions:
    - Scores are "higher is more anomalous"; weights are cross-section weights in pb.
    - The caller chooses the samples: ``test`` is the Standard Model test sample (disjoint from the
      training, validation and calibration events); score distributions and ROC curves use only it.
    - A background efficiency eps_B measured on a sample of effective size N_eff = (sum w)^2 / sum w^2
      is resolved when eps_B * N_eff >= ``MIN_EFFECTIVE_EVENTS`` (10): ROC curves stop there, SI curves
      show only resolved points (so their maximum is the table's ``si_max``) and the threshold scan
      shades the unresolved region.
    - Score distributions are weighted, each sample normalised to unit area (fraction of events per
      bin), over the 0.1% to 99.9% quantiles with under- and overflow in the edge bins; heavy-tailed
      scores get a log axis (:mod:`darkflow.analysis.binning`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from darkflow.analysis.binning import readable_log_ticks, score_binning, score_scale
from darkflow.analysis.compare import CUT_PREFIX
from darkflow.analysis.metrics import MIN_EFFECTIVE_EVENTS, effective_count, weighted_auc, weighted_roc
from darkflow.analysis.thresholds import Sample, ScoresFile
from darkflow.errors import ConfigError, InputError
from darkflow.fileio import atomic_output

STYLES = ("CMS", "ATLAS", "LHCb", "ALICE")
NEUTRAL_STYLE = "ROOT"  # mplhep's experiment-free style
LATENT_EVENTS = 2000
COLLAPSED = 0.01  # a principal component with less variance than this fraction is called collapsed
LINESTYLES = ("-", "--", "-.", (0, (4, 1, 1, 1, 1, 1)))  # ":" is kept for reference lines
UNRESOLVED = {"facecolor": "0.85", "edgecolor": "0.55", "hatch": "//", "lw": 0, "alpha": 0.6}


@dataclass
class PlotOptions:
    """Plot options (``analysis/default.yaml``).

    Attributes:
        style: ``None`` for the neutral DarkFlow look, else an experiment style (CMS, ATLAS, LHCb, ALICE).
        label: the user's text after the experiment name ("Preliminary", "Private Work", ...).
        simulation: True when the inputs are simulated (the label then says "Simulation"); None: unknown.
        lumi: integrated luminosity in fb^-1 shown in the label (None: none); com: energy in TeV.
        formats: file formats written; eps_b: working points marked on the scan and SI curves.
    """

    style: str | None = None
    label: str = ""
    simulation: bool | None = None
    lumi: float | None = None
    com: float = 13.0
    formats: list[str] = field(default_factory=lambda: ["png", "pdf"])
    eps_b: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4])
    dpi: int = 100

    def __post_init__(self) -> None:
        if self.style is not None and self.style not in STYLES:
            raise ConfigError(f"unknown plot style {self.style!r}; valid: null (neutral DarkFlow label), "
                              f"{', '.join(STYLES)}")
        if self.simulation not in (True, False, None):
            raise ConfigError(f"plot option simulation must be true, false or null, got {self.simulation!r}")
        self.label = "" if self.label is None else str(self.label)
        bad = [f for f in self.formats if f not in ("png", "pdf", "svg")]
        if bad or not self.formats:
            raise ConfigError(f"plot formats {bad or '[]'} not supported; valid: png, pdf, svg")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlotOptions:
        """Options from a mapping (unknown keys are refused with the valid ones)."""
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigError(f"unknown plot option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        return cls(**data)


def load_options(path: str | Path | None, **overrides: Any) -> PlotOptions:
    """Options from a YAML file (defaults when ``None``), then the non-``None`` ``overrides``."""
    from darkflow.config import read_yaml

    data: dict[str, Any] = read_yaml(path, "plot options file") if path is not None else {}
    data |= {k: v for k, v in overrides.items() if v is not None}
    return PlotOptions.from_dict(data)


def file_stem(name: str) -> str:
    """``name`` (a score such as ``hlf:MET``, a signal label) as part of a file name: characters other than
    letters, digits, ``-``, ``_`` and ``.`` become ``_`` (``hlf_MET``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(ax, options: PlotOptions) -> None:
    """The label above the axes: "DarkFlow" or the experiment, "Simulation" when simulated, the user's text."""
    import mplhep

    com = int(options.com) if float(options.com).is_integer() else options.com
    # data=False makes mplhep put "Simulation" before the text
    kwargs: dict[str, Any] = {"ax": ax, "com": com, "data": not options.simulation, "text": options.label}
    if options.lumi is not None:
        kwargs["lumi"] = options.lumi
    sizes = (20, 17, 16, 14)
    if options.style is None:
        mplhep.label.exp_label(exp="DarkFlow", loc=0, fontsize=sizes, **kwargs)
    else:
        getattr(mplhep, options.style.lower()).label(loc=0, fontsize=sizes, **kwargs)  # above the axes


class _Figure:
    """Context: a styled figure with its label, saved in every format on exit (atomically).

    ``_Figure.hook``, when set (tests), is called with ``(fig, ax)`` once the figure is complete, before saving.
    """

    hook: ClassVar[Callable[[Any, Any], None] | None] = None

    def __init__(self, options: PlotOptions, out: Path, name: str) -> None:
        self.options, self.out, self.name = options, out, name
        self.paths: list[Path] = []

    def __enter__(self):
        import mplhep

        plt = _pyplot()
        style = NEUTRAL_STYLE if self.options.style is None else {"LHCb": "LHCb2"}.get(self.options.style,
                                                                                      self.options.style)
        self._style = plt.style.context(getattr(mplhep.style, style))
        self._style.__enter__()
        self.fig, self.ax = plt.subplots(figsize=(10, 8))
        return self.fig, self.ax

    def __exit__(self, exc_type, exc, tb) -> None:
        plt = _pyplot()
        try:
            if exc_type is None:
                _label(self.ax, self.options)
                if _Figure.hook is not None:
                    _Figure.hook(self.fig, self.ax)
                self.out.mkdir(parents=True, exist_ok=True)
                for fmt in self.options.formats:
                    path = self.out / f"{self.name}.{fmt}"
                    with atomic_output(path) as tmp:
                        self.fig.savefig(tmp, dpi=self.options.dpi, format=fmt, bbox_inches="tight")
                    self.paths.append(path)
        finally:
            plt.close(self.fig)
            self._style.__exit__(exc_type, exc, tb)


def _legend(ax, **kwargs: Any) -> None:
    """The legend outside the axes, to the right: it never covers data."""
    kwargs.setdefault("fontsize", 14)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def _score_label(score: str, note: str, what: str = "Anomaly score") -> str:
    """The axis label of a score; a cut baseline ``hlf:NAME`` is named as its feature, in its own units."""
    if score.startswith(CUT_PREFIX):
        feature = score[len(CUT_PREFIX):]
        lead = feature if what == "Anomaly score" else f"{what.removesuffix(' score')} {feature}"
        return f"{lead} (one-variable cut{', ' + note if note else ''})"
    return f"{what} '{score}' (a.u.{', ' + note if note else ''})"


def _n_eff_text(n_eff: float) -> str:
    return rf"$N_\mathrm{{eff}}$ = {n_eff:.0f}" if n_eff >= 10 else rf"$N_\mathrm{{eff}}$ = {n_eff:.2g}"


def _check_samples(samples: dict[str, Sample], score: str) -> None:
    """Every sample has ``score`` and events of positive total weight (else an :class:`InputError`)."""
    for role, sample in samples.items():
        if score not in sample.scores:
            raise InputError(f"{role} sample {sample.label!r} has no score {score!r}; "
                             f"its scores: {', '.join(sorted(sample.scores)) or '(none)'}")
        if len(sample) == 0 or not float(sample.weight.sum()) > 0:
            raise InputError(f"{role} sample {sample.label!r} ({sample.selection}) has no events of positive "
                             "weight; nothing to plot")


def score_distributions(test: Sample, signals: dict[str, Sample], score: str, out: Path,
                        options: PlotOptions, bins: int = 40) -> list[Path]:
    """The Standard Model test sample stacked by process and each signal overlaid, weighted, unit area, log y.

    Arguments:
        test: the Standard Model test sample (its events only are stacked; the band is its statistical
            uncertainty sqrt(sum w^2)); signals: name -> signal sample.
    """
    _check_samples({"test": test} | {f"signal {k}": v for k, v in signals.items()}, score)
    binning = score_binning([(test.scores[score], test.weight)]
                            + [(s.scores[score], s.weight) for s in signals.values()], bins)
    edges = binning.edges
    total = float(test.weight.sum())
    fig = _Figure(options, out, f"scores_{file_stem(score)}")
    with fig as (_, ax):
        import mplhep

        plt = _pyplot()
        codes = sorted(np.unique(test.process), key=lambda c: float(test.weight[test.process == c].sum()))
        hists = [binning.fill(test.scores[score][test.process == c], test.weight[test.process == c]) / total
                 for c in codes]
        labels = [test.process_name(int(c)) for c in codes]
        colours = plt.get_cmap("tab20")(np.arange(len(hists)) % 20) if len(hists) > 10 else \
            plt.get_cmap("tab10")(np.arange(len(hists)) % 10)
        mplhep.histplot(hists, edges, stack=True, histtype="fill", label=labels, ax=ax, color=list(colours),
                        alpha=0.75)
        stack = np.sum(hists, axis=0)
        error = np.sqrt(binning.fill(test.scores[score], test.weight**2)) / total
        drawn = [stack]
        for i, (name, sample) in enumerate(signals.items()):
            h = binning.fill(sample.scores[score], sample.weight) / float(sample.weight.sum())
            drawn.append(h)
            mplhep.histplot(h, edges, histtype="step", lw=2.5, ls=LINESTYLES[i % 4],
                            color=plt.get_cmap("Dark2")(i % 8), label=name, ax=ax)
        positive = np.concatenate(drawn)
        positive = positive[positive > 0]
        top = float(positive.max()) if positive.size else 1.0
        floor = max(float(positive.min()) / 3 if positive.size else 1e-5, top * 1e-5)
        ax.stairs(stack + error, edges, baseline=np.maximum(stack - error, floor / 10), fill=True,
                  facecolor="none", edgecolor="0.25", hatch="////", lw=0, label="SM stat. uncertainty")
        ax.set_yscale("log")
        ax.set_ylim(floor, top * 3)
        binning.scale.apply(ax, edges[0], edges[-1])
        ax.set_xlabel(_score_label(score, binning.scale.note()))
        ax.set_ylabel("Fraction of weighted events / bin")
        handles, names = ax.get_legend_handles_labels()
        n = len(hists)
        order = list(range(n))[::-1] + list(range(n, len(handles)))  # the stack's top process first
        title = f"{test.label} test events, stacked ({_n_eff_text(effective_count(test.weight))})"
        if binning.note():
            title += "\n" + binning.note()
        ax.legend([handles[i] for i in order], [names[i] for i in order], loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, fontsize=14, title=title,
                  title_fontsize=14, alignment="left")
    return fig.paths


def resolution_limit(n_eff: float) -> float:
    """The largest resolved background rejection 1/eps_B of a sample of effective size ``n_eff`` (at least 1)."""
    return max(n_eff / MIN_EFFECTIVE_EVENTS, 1.0)


def _roc_curve(ax, bkg: Sample, sample: Sample, score: str, name: str, **line: Any) -> float:
    """Draw 1/eps_B versus eps_S of ``sample`` against ``bkg`` (weighted) where eps_B is resolved.

    The curve stops at the last point with eps_B * N_eff(bkg) >= ``MIN_EFFECTIVE_EVENTS``; the label
    carries the AUC (of the whole curve). Returns N_eff of ``bkg``.
    """
    n_eff = effective_count(bkg.weight)
    eps_b, eps_s, _ = weighted_roc(bkg.scores[score], sample.scores[score], bkg.weight, sample.weight)
    auc = weighted_auc(bkg.scores[score], sample.scores[score], bkg.weight, sample.weight)
    keep = (eps_b * n_eff >= MIN_EFFECTIVE_EVENTS) & (eps_b > 0)
    ax.plot(eps_s[keep], 1.0 / eps_b[keep], lw=2.5, label=f"{name} (AUC = {auc:.3f})", **line)
    return n_eff


def _roc_frame(ax, n_eff: dict[str, float], xlabel: str) -> None:
    """Random-classifier line, the unresolved region, log rejection axis, labels and legend of a ROC plot.

    ``n_eff`` maps each curve to the effective size of its background sample; the shaded region lies
    above the highest resolution limit N_eff / 10 (unresolved for every curve).
    """
    lo, hi = min(n_eff.values()), max(n_eff.values())
    limit = resolution_limit(hi)
    grid = np.geomspace(1.0 / limit, 1.0, 200)
    ax.plot(grid, 1.0 / grid, color="0.4", ls=":", lw=1.5, label="Random classifier")
    span = _n_eff_text(hi) if np.isclose(lo, hi, rtol=1e-6) else \
        rf"$N_\mathrm{{eff}}$ = {lo:.0f} to {hi:.0f}; each curve stops at its own"
    ax.axhspan(limit, limit * 6, **UNRESOLVED,
               label=f"Not resolved: $\\varepsilon_B N_\\mathrm{{eff}}$ < {MIN_EFFECTIVE_EVENTS}\n({span})")
    ax.axhline(limit, color="0.4", lw=1.2, ls="--")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_ylim(1, limit * 6)
    readable_log_ticks(ax.yaxis, 1, limit * 6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"Background rejection $1/\varepsilon_B$")
    _legend(ax)


def roc(test: Sample, signals: dict[str, Sample], score: str, out: Path, options: PlotOptions) -> list[Path]:
    """Background rejection 1/eps_B (log) versus eps_S, one curve per signal, AUC in the legend.

    Each curve stops where eps_B * N_eff(test) < ``MIN_EFFECTIVE_EVENTS``; the region above N_eff / 10 is
    shaded as not resolved.

    Arguments:
        test: the Standard Model test sample; signals: name -> signal sample.
    """
    _check_samples({"test": test} | {f"signal {k}": v for k, v in signals.items()}, score)
    fig = _Figure(options, out, f"roc_{file_stem(score)}")
    with fig as (_, ax):
        n_eff = {name: _roc_curve(ax, test, sample, score, name, ls=LINESTYLES[i % 4])
                 for i, (name, sample) in enumerate(signals.items())}
        _roc_frame(ax, n_eff or {"test": effective_count(test.weight)}, r"Signal efficiency $\varepsilon_S$")
    return fig.paths


def roc_models(curves: dict[str, tuple[Sample, Sample] | tuple[Sample, Sample, str]], signal: str, score: str,
               out: Path, options: PlotOptions) -> list[Path]:
    """One signal, several models: background rejection 1/eps_B (log) versus eps_S, AUC in the legend.

    Arguments:
        curves: model name -> (its Standard Model test sample, its signal sample[, its score]); each curve
            stops at the resolution limit of its own test sample, as in :func:`roc`. A third element draws
            that curve with another score than ``score``: a one-variable cut baseline such as ``hlf:MET``
            (drawn in black and grey, after the models).
        signal: the signal's name (axis label and file name).
    """
    if not curves:
        raise InputError("roc_models: no model to plot")
    specs = {name: (c[0], c[1], c[2] if len(c) > 2 else score) for name, c in curves.items()}
    for name, (bkg, sig, name_score) in specs.items():
        _check_samples({f"{name} test": bkg, f"{name} signal": sig}, name_score)
    fig = _Figure(options, out, f"roc_models_{file_stem(signal)}_{file_stem(score)}")
    with fig as (_, ax):
        n_eff, models, cuts = {}, 0, 0
        for name, (bkg, sig, name_score) in specs.items():
            label = name
            if not name_score.startswith(CUT_PREFIX):
                line = {"ls": LINESTYLES[models % 4]}
                models += 1
                label = name if name_score == score else f"{name} ({name_score})"
            else:
                line = {"ls": LINESTYLES[cuts % 4], "color": ("black", "0.55")[cuts % 2]}
                cuts += 1
            n_eff[label] = _roc_curve(ax, bkg, sig, name_score, label, **line)
        _roc_frame(ax, n_eff, rf"Signal efficiency $\varepsilon_S$ ({signal})")
    return fig.paths


def read_scan(path: Path) -> list[dict[str, Any]]:
    """Rows of ``scan.csv``: numbers as floats (``not resolved`` or empty -> NaN), ``resolved`` as a bool.

    Each row has ``n_eff_b_above`` (effective calibration events above the threshold) and ``resolved``
    (``n_eff_b_above >= MIN_EFFECTIVE_EVENTS``). Files without these columns get them from the
    calibration N_eff in ``thresholds.json`` beside ``scan.csv``.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scan file not found: {path}; run 'darkflow scan' first")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            table = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a CSV file of 'darkflow scan' ({err})") from None
    missing = [c for c in ("signal", "score", "threshold", "eps_b", "eps_s") if table and c not in table[0]]
    if missing:
        raise InputError(f"{path}: no column {', '.join(missing)}; rerun 'darkflow scan'")
    for row in table:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key in ("signal", "score"):
                out[key] = value
            elif key == "resolved":
                out[key] = (value or "").strip().lower() in ("yes", "true", "1")
            else:
                try:
                    out[key] = float(value)
                except (TypeError, ValueError):
                    out[key] = float("nan")
        rows.append(out)
    if rows and not {"n_eff_b_above", "resolved"} <= set(rows[0]):
        n_eff = _calibration_n_eff(path.with_name("thresholds.json"))
        for row in rows:
            row.setdefault("n_eff_b_above", row["eps_b"] * n_eff)
            row.setdefault("resolved", bool(row["n_eff_b_above"] >= MIN_EFFECTIVE_EVENTS))
    return rows


def _calibration_n_eff(path: Path) -> float:
    """N_eff of the calibration sample recorded in a scan's ``thresholds.json``."""
    try:
        return float(json.loads(path.read_text())["calibration"]["n_eff"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path.parent / 'scan.csv'} has no 'resolved' column and {path} gives no calibration "
                         "n_eff; rerun 'darkflow scan'") from None


def _curves(rows: list[dict[str, Any]], score: str) -> dict[str, dict[str, np.ndarray]]:
    """Signal -> column -> (K,) values of the rows of ``score``, ordered by threshold."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row["score"] != score:
            continue
        curve = out.setdefault(row["signal"], {})
        for key, value in row.items():
            if key not in ("signal", "score"):
                curve.setdefault(key, []).append(value)
    curves = {}
    for name, c in out.items():
        if "resolved" not in c:
            raise ValueError("scan rows need a 'resolved' entry; read them with read_scan")
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in c.items()}
        order = np.argsort(arrays["threshold"], kind="stable")
        curves[name] = {k: v[order] for k, v in arrays.items()} | {"resolved": arrays["resolved"][order] > 0}
    return curves


def _unresolved_span(ax, limits: tuple[float, float], label: str) -> None:
    ax.axvspan(*limits, **UNRESOLVED, label=label)


def scan_curves(rows: list[dict[str, Any]], score: str, out: Path, options: PlotOptions) -> list[Path]:
    """eps_S of every signal and eps_B of the calibration sample versus the threshold (log y).

    The thresholds above which eps_B is not resolved (fewer than ``MIN_EFFECTIVE_EVENTS`` effective
    calibration events above) are shaded; eps_B is dotted there. The x axis follows the calibration
    scores' distribution (:func:`darkflow.analysis.binning.score_scale`: log for heavy tails).
    """
    curves = _curves(rows, score)
    if not curves:
        return []
    fig = _Figure(options, out, f"scan_{file_stem(score)}")
    with fig as (_, ax):
        first = next(iter(curves.values()))
        thr, eps_b, resolved = first["threshold"], first["eps_b"], first["resolved"]
        ax.fill_between(thr, first["eps_b_lo"], first["eps_b_hi"], color="k", alpha=0.15, lw=0,
                        label=r"$\varepsilon_B$ 68% CL (Clopper-Pearson)")
        ax.plot(thr[resolved], eps_b[resolved], "k-", lw=2.5, label=r"$\varepsilon_B$ (calibration)")
        for i, (name, c) in enumerate(curves.items()):
            ax.plot(c["threshold"], c["eps_s"], lw=2, ls=LINESTYLES[i % 4], label=rf"$\varepsilon_S$ {name}")
        for eps in options.eps_b:
            ax.axhline(eps, color="0.5", ls=":", lw=1)
        if options.eps_b:
            ax.plot([], [], color="0.5", ls=":", lw=1,
                    label=r"$\varepsilon_B$ = " + ", ".join(f"{e:g}" for e in options.eps_b))
        # the calibration weight between neighbouring thresholds, so that the scale follows its distribution
        mass = np.clip(eps_b - np.append(eps_b[1:], 0.0), 0.0, None)
        scale = score_scale([(thr, mass if mass.sum() > 0 else np.ones_like(thr))], thr.min(), thr.max())
        scale.apply(ax, thr.min(), thr.max())
        if not resolved.all():
            last = int(np.flatnonzero(resolved).max()) if resolved.any() else 0
            ax.plot(thr[last:], eps_b[last:], "k:", lw=2)
            _unresolved_span(ax, (thr[last], thr.max()),
                             f"$\\varepsilon_B$ not resolved\n(< {MIN_EFFECTIVE_EVENTS} eff. calibration events)")
        ax.set_yscale("log")
        floor = min([*options.eps_b, float(np.nanmin(np.where(eps_b > 0, eps_b, np.nan)))]) / 3
        ax.set_ylim(max(floor, 1e-7), 2.0)
        ax.set_xlabel(_score_label(score, scale.note(), "Threshold on score"))
        ax.set_ylabel(r"Efficiency above threshold $\varepsilon$")
        _legend(ax)
    return fig.paths


def si_curves(rows: list[dict[str, Any]], score: str, out: Path, options: PlotOptions) -> list[Path]:
    """Significance improvement eps_S / sqrt(eps_B) versus eps_B (log x), one curve per signal.

    Only resolved rows are drawn (eps_B * N_eff(calibration) >= ``MIN_EFFECTIVE_EVENTS``), so each
    curve's maximum, marked with a star, is the ``si_max`` of ``metrics.csv``; eps_B below the limit is
    shaded.
    """
    curves = _curves(rows, score)
    if not curves:
        return []
    plt = _pyplot()
    fig = _Figure(options, out, f"si_{file_stem(score)}")
    with fig as (_, ax):
        limit = np.nan
        for i, (name, c) in enumerate(curves.items()):
            keep = c["resolved"] & np.isfinite(c["si"]) & (c["eps_b"] > 0)
            colour = plt.get_cmap("Dark2")(i % 8)
            ax.plot(c["eps_b"][keep], c["si"][keep], lw=2, ls=LINESTYLES[i % 4], marker="o", ms=3,
                    color=colour, label=name)
            if keep.any():
                best = int(np.argmax(np.where(keep, c["si"], -np.inf)))
                ax.plot([c["eps_b"][best]], [c["si"][best]], marker="*", ms=16, color=colour, mec="k", ls="none")
            with np.errstate(divide="ignore", invalid="ignore"):
                n_eff = c["n_eff_b_above"] / c["eps_b"]
            if np.any(np.isfinite(n_eff) & (c["eps_b"] > 0)):
                limit = MIN_EFFECTIVE_EVENTS / float(np.nanmax(np.where(c["eps_b"] > 0, n_eff, np.nan)))
        ax.plot([], [], marker="*", ms=14, color="0.5", mec="k", ls="none", label="Maximum (SI max)")
        ax.axhline(1.0, color="k", ls=":", lw=1.2, label="No improvement")
        for eps in options.eps_b:
            ax.axvline(eps, color="0.5", ls=":", lw=1)
        if options.eps_b:
            ax.plot([], [], color="0.5", ls=":", lw=1,
                    label=r"$\varepsilon_B$ = " + ", ".join(f"{e:g}" for e in options.eps_b))
        ax.set_xscale("log")
        left = min([*options.eps_b, limit if np.isfinite(limit) else 1.0]) / 3
        ax.set_xlim(left, 1.5)
        if np.isfinite(limit) and limit > left:
            _unresolved_span(ax, (left, limit), f"Not resolved\n(< {MIN_EFFECTIVE_EVENTS} eff. calibration events)")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
        ax.set_xlabel(r"Background efficiency $\varepsilon_B$ (calibration)")
        ax.set_ylabel(r"Significance improvement $\varepsilon_S\,/\,\varepsilon_B^{1/2}$")
        _legend(ax)
    return fig.paths


def training_curves(run: Path, out: Path, options: PlotOptions) -> list[Path]:
    """Training and validation loss per epoch from the run's ``metrics.csv`` (empty when it has no rows)."""
    import csv

    path = run / "metrics.csv"
    if not path.is_file():
        return []
    epochs, train, val = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            table = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a CSV file ({err}); expected epoch,train_loss,val_loss columns") from None
    for row in table:
        try:
            epochs.append(float(row["epoch"]))
            train.append(float(row["train_loss"]) if row.get("train_loss") else np.nan)
            val.append(float(row["val_loss"]) if row.get("val_loss") else np.nan)
        except (KeyError, ValueError, TypeError):
            raise InputError(f"{path}: malformed row {row}; expected epoch,train_loss,val_loss columns") from None
    if not epochs:
        return []
    fig = _Figure(options, out, "training")
    with fig as (_, ax):
        ax.plot(epochs, train, "o-", lw=2, ms=5, label="Training")
        ax.plot(epochs, val, "s--", lw=2, ms=5, label="Validation")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(x=0.04, y=0.08)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Loss per event (a.u.)")
        _legend(ax)
    return fig.paths


def _resolve_source(source: str, scores_path: Path) -> Path | None:
    for base in (Path.cwd(), scores_path.parent, scores_path.parent.parent):
        candidate = Path(source) if Path(source).is_absolute() else base / source
        if candidate.is_file():
            return candidate
    return None


def latent_embeddings(model, scores: ScoresFile, events: int = LATENT_EVENTS,
                      seed: int = 0) -> tuple[dict[str, np.ndarray], list[str]]:
    """Posterior means ``mu`` (n, latent) of up to ``events`` events per group's source file, and notes."""
    import h5py
    import torch

    from darkflow.events import EventFile

    notes: list[str] = []
    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for label in scores.samples:
        with h5py.File(scores.path, "r") as handle:
            source = handle[label].attrs.get("source")
        if source is None:
            notes.append(f"{label}: the scores file names no event file (attribute 'source')")
            continue
        path = _resolve_source(str(source), Path(scores.path))
        if path is None:
            notes.append(f"{label}: event file {source} not found")
            continue
        with EventFile(path) as handle:
            n = handle.n_events
            idx = np.sort(rng.choice(n, size=min(n, events), replace=False))
            part = handle.read(idx, ("objects", "mask", "hlf"))
            objects, mask, hlf = (torch.from_numpy(part[k]) for k in ("objects", "mask", "hlf"))
        with torch.no_grad():
            out[label] = model.posterior_mean(objects, mask, hlf=hlf).double().numpy()
    return out, notes


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection of ``points`` (N, D) on its two leading principal axes (N, 2) and their variance fractions (2,)."""
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2 / max(float(np.sum(s**2)), 1e-300)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], points.shape[1]))])
        var = np.append(var, np.zeros(2 - var.size))
    return centred @ comps.T, var[:2]


def _pc_label(index: int, fraction: float) -> str:
    if fraction < COLLAPSED:
        return rf"Latent PC {index} of $\mu$ (collapsed: {100 * fraction:.2g}% var.)"
    return rf"Latent PC {index} of $\mu$ ({100 * fraction:.0f}% var., a.u.)"


def latent_projection(embeddings: dict[str, np.ndarray], background: str, out: Path,
                      options: PlotOptions) -> list[Path]:
    """2D PCA of the latent posterior means, coloured by label (background first, underneath).

    An axis whose component carries less than 1% of the variance says "collapsed".
    """
    if not embeddings:
        return []
    labels = [background] * (background in embeddings) + [k for k in embeddings if k != background]
    proj, var = pca_2d(np.concatenate([embeddings[k] for k in labels]))
    fig = _Figure(options, out, "latent_pca")
    with fig as (_, ax):
        start = 0
        for label in labels:
            n = len(embeddings[label])
            ax.scatter(proj[start:start + n, 0], proj[start:start + n, 1], s=6, alpha=0.5,
                       label=f"{label} ({n} events)", rasterized=True)
            start += n
        ax.set_xlabel(_pc_label(1, float(var[0])))
        ax.set_ylabel(_pc_label(2, float(var[1])))
        _legend(ax, markerscale=3)
    return fig.paths
