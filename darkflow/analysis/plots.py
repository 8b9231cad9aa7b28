"""HEP-style plots of a scores file, a scan folder and a run (issue 6, DESIGN section 5).

Every plot is written as PNG and PDF (or the formats of :class:`PlotOptions`) with matplotlib's Agg
backend and an mplhep experiment style. Each function returns the paths written (empty when skipped).

Conventions:
    - Scores are "higher is more anomalous"; weights are cross-section weights in pb.
    - Score distributions are weighted and normalised to unit area (the y axis says so), so that the
      Standard Model stack and each signal shape can be compared on one log axis.
    - The ROC and the scan curves take eps_B on the calibration sample as ``darkflow scan`` wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darkflow.analysis.metrics import weighted_auc, weighted_roc
from darkflow.analysis.thresholds import ScoresFile
from darkflow.errors import ConfigError, InputError
from darkflow.fileio import publish

STYLES = ("CMS", "ATLAS", "LHCb", "ALICE")
LATENT_EVENTS = 2000


@dataclass
class PlotOptions:
    """Plot options (``analysis/default.yaml``): experiment style, label text, luminosity, formats."""

    style: str = "CMS"
    label: str = "Simulation"
    lumi: float | None = None
    com: float = 13.0
    formats: list[str] = field(default_factory=lambda: ["png", "pdf"])
    eps_b: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4])
    dpi: int = 100

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ConfigError(f"unknown plot style {self.style!r}; valid: {', '.join(STYLES)}")
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
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"plot options file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of plot options")
    data |= {k: v for k, v in overrides.items() if v is not None}
    return PlotOptions.from_dict(data)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class _Figure:
    """Context: a styled figure with the experiment label, saved in every format on exit."""

    def __init__(self, options: PlotOptions, out: Path, name: str) -> None:
        self.options, self.out, self.name = options, out, name
        self.paths: list[Path] = []

    def __enter__(self):
        import mplhep

        plt = _pyplot()
        style = {"LHCb": "LHCb2"}.get(self.options.style, self.options.style)
        self._style = plt.style.context(getattr(mplhep.style, style))
        self._style.__enter__()
        self.fig, self.ax = plt.subplots(figsize=(8, 6.5))
        return self.fig, self.ax

    def __exit__(self, exc_type, exc, tb) -> None:
        import mplhep

        plt = _pyplot()
        try:
            if exc_type is None:
                exp = getattr(mplhep, self.options.style.lower())
                com = int(self.options.com) if float(self.options.com).is_integer() else self.options.com
                kwargs: dict[str, Any] = {"ax": self.ax, "com": com, "fontsize": 15}
                if self.options.lumi is not None:
                    kwargs["lumi"] = self.options.lumi
                # data=True: no automatic "Simulation" prefix, the label text is ours
                exp.label(text=self.options.label, data=True, **kwargs)
                self.out.mkdir(parents=True, exist_ok=True)
                for fmt in self.options.formats:
                    path = self.out / f"{self.name}.{fmt}"
                    tmp = path.with_name(f".{path.stem}.tmp.{fmt}")
                    self.fig.savefig(tmp, dpi=self.options.dpi, format=fmt, bbox_inches="tight")
                    publish(tmp, path)
                    self.paths.append(path)
        finally:
            plt.close(self.fig)
            self._style.__exit__(exc_type, exc, tb)


def _legend(ax, **kwargs: Any) -> None:
    ax.legend(fontsize=13, frameon=False, **kwargs)


def score_distributions(scores: ScoresFile, background: str, score: str, out: Path,
                        options: PlotOptions, bins: int = 40) -> list[Path]:
    """The background group stacked by process and each other group overlaid, weighted, unit area, log y."""
    bkg = scores.sample(background, "background label")
    values = np.concatenate([s.scores[score] for s in scores.samples.values()])
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    total = float(bkg.weight.sum()) or 1.0
    width = np.diff(edges)
    fig = _Figure(options, out, f"scores_{score}")
    with fig as (_, ax):
        import mplhep

        codes = [c for c in np.unique(bkg.process)]
        hists, labels = [], []
        for code in sorted(codes, key=lambda c: bkg.weight[bkg.process == c].sum()):
            sel = bkg.process == code
            h, _ = np.histogram(bkg.scores[score][sel], edges, weights=bkg.weight[sel])
            hists.append(h / total / width)
            labels.append(bkg.process_name(int(code)))
        plt = _pyplot()
        fill = plt.get_cmap("tab20")(np.linspace(0, 1, 20))[1::2] if len(hists) > 10 else \
            plt.get_cmap("tab10")(np.arange(len(hists)) % 10)
        mplhep.histplot(hists, edges, stack=True, histtype="fill", label=labels, ax=ax, alpha=0.6,
                        color=list(fill[: len(hists)]))
        lines = ["-", "--", "-.", ":"]
        signals = [k for k in scores.samples if k != background]
        for i, label in enumerate(signals):
            sample = scores.samples[label]
            w_sum = float(sample.weight.sum()) or 1.0
            h, _ = np.histogram(sample.scores[score], edges, weights=sample.weight)
            mplhep.histplot(h / w_sum / width, edges, histtype="step", lw=2.5, ls=lines[i % 4],
                            color=plt.get_cmap("Dark2")(i % 8), label=label, ax=ax)
        ax.set_yscale("log")
        stacked = np.sum(hists, axis=0)
        positive = stacked[stacked > 0]
        floor = positive.min() / 5 if positive.size else 1e-6
        top = np.log10(ax.get_ylim()[1])
        ax.set_ylim(floor, 10 ** (top + 0.6 * (top - np.log10(floor))))
        ax.set_xlabel(f"Anomaly score '{score}' (a.u.)")
        ax.set_ylabel("Weighted events, normalised (1 / a.u.)")
        _legend(ax, ncols=3, loc="upper right", title=f"{background} (stacked) and signals", title_fontsize=14)
    return fig.paths


def roc(scores: ScoresFile, background: str, score: str, out: Path, options: PlotOptions) -> list[Path]:
    """Background rejection 1/eps_B (log) versus eps_S, one curve per signal, AUC in the legend.

    The background is the background group without its training events (``split != 0``), as in
    ``darkflow scan``'s AUC.
    """
    bkg = scores.sample(background, "background label")
    bkg = bkg.select(bkg.split != 0, "split != 0")
    fig = _Figure(options, out, f"roc_{score}")
    with fig as (_, ax):
        for label, sample in scores.samples.items():
            if label == background:
                continue
            _roc_curve(ax, bkg, sample, score, label)
        _roc_frame(ax, r"Signal efficiency $\varepsilon_S$")
    return fig.paths


def _roc_curve(ax, bkg, sample, score: str, name: str, **line: Any) -> None:
    """Draw 1/eps_B versus eps_S of ``sample`` against ``bkg`` (weighted), with the AUC in the label."""
    eps_b, eps_s, _ = weighted_roc(bkg.scores[score], sample.scores[score], bkg.weight, sample.weight)
    auc = weighted_auc(bkg.scores[score], sample.scores[score], bkg.weight, sample.weight)
    keep = eps_b > 0
    ax.plot(eps_s[keep], 1.0 / eps_b[keep], lw=2, label=f"{name} (AUC = {auc:.3f})", **line)


def _roc_frame(ax, xlabel: str) -> None:
    """The random-classifier line, log rejection axis, labels and legend of a ROC plot."""
    grid = np.linspace(1e-3, 1.0, 200)
    ax.plot(grid, 1.0 / grid, "k:", lw=1.2, label="Random")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.8, ax.get_ylim()[1] * 20)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"Background rejection $1/\varepsilon_B$")
    _legend(ax, loc="upper right")


def read_scan(path: Path) -> list[dict[str, Any]]:
    """Rows of ``scan.csv`` with the numeric columns as floats (``not resolved`` or empty -> NaN)."""
    import csv

    if not path.is_file():
        raise InputError(f"scan file not found: {path}; run 'darkflow scan' first")
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            out: dict[str, Any] = {}
            for key, value in row.items():
                if key in ("signal", "score"):
                    out[key] = value
                else:
                    try:
                        out[key] = float(value)
                    except ValueError:
                        out[key] = float("nan")
            rows.append(out)
    return rows


def _curves(rows: list[dict[str, Any]], score: str) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row["score"] != score:
            continue
        curve = out.setdefault(row["signal"], {})
        for key, value in row.items():
            if key not in ("signal", "score"):
                curve.setdefault(key, []).append(value)
    return {s: {k: np.asarray(v, dtype=np.float64) for k, v in c.items()} for s, c in out.items()}


def scan_curves(rows: list[dict[str, Any]], score: str, out: Path, options: PlotOptions) -> list[Path]:
    """eps_S of every signal and eps_B of the calibration sample versus the threshold (log y)."""
    curves = _curves(rows, score)
    if not curves:
        return []
    fig = _Figure(options, out, f"scan_{score}")
    with fig as (_, ax):
        first = next(iter(curves.values()))
        order = np.argsort(first["threshold"])
        ax.plot(first["threshold"][order], first["eps_b"][order], "k-", lw=2.5, label=r"$\varepsilon_B$ (calibration)")
        ax.fill_between(first["threshold"][order], first["eps_b_lo"][order], first["eps_b_hi"][order],
                        color="k", alpha=0.15, lw=0)
        for name, c in curves.items():
            order = np.argsort(c["threshold"])
            ax.plot(c["threshold"][order], c["eps_s"][order], lw=2, label=rf"$\varepsilon_S$ {name}")
        for eps in options.eps_b:
            ax.axhline(eps, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(max(min(options.eps_b) / 3, 1e-6), 3.0)
        ax.set_xlabel(f"Threshold on anomaly score '{score}' (a.u.)")
        ax.set_ylabel(r"Efficiency above threshold $\varepsilon$")
        _legend(ax, loc="lower left")
    return fig.paths


def si_curves(rows: list[dict[str, Any]], score: str, out: Path, options: PlotOptions) -> list[Path]:
    """Significance improvement eps_S / sqrt(eps_B) versus eps_B (log x), one curve per signal."""
    curves = _curves(rows, score)
    if not curves:
        return []
    fig = _Figure(options, out, f"si_{score}")
    with fig as (_, ax):
        for name, c in curves.items():
            order = np.argsort(c["eps_b"])
            keep = np.isfinite(c["si"][order]) & (c["eps_b"][order] > 0)
            ax.plot(c["eps_b"][order][keep], c["si"][order][keep], lw=2, marker="o", ms=3, label=name)
        ax.axhline(1.0, color="k", ls=":", lw=1.2, label="No improvement")
        for eps in options.eps_b:
            ax.axvline(eps, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
        ax.set_xlabel(r"Background efficiency $\varepsilon_B$ (calibration)")
        ax.set_ylabel(r"Significance improvement $\varepsilon_S\,/\,\varepsilon_B^{1/2}$")
        _legend(ax, loc="upper right")
    return fig.paths


def training_curves(run: Path, out: Path, options: PlotOptions) -> list[Path]:
    """Training and validation loss per epoch from the run's ``metrics.csv`` (empty when it has no rows)."""
    import csv

    path = run / "metrics.csv"
    if not path.is_file():
        return []
    epochs, train, val = [], [], []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                epochs.append(float(row["epoch"]))
                train.append(float(row["train_loss"]) if row.get("train_loss") else np.nan)
                val.append(float(row["val_loss"]) if row.get("val_loss") else np.nan)
            except (KeyError, ValueError):
                raise InputError(f"{path}: malformed row {row}; expected epoch,train_loss,val_loss columns") from None
    if not epochs:
        return []
    fig = _Figure(options, out, "training")
    with fig as (_, ax):
        ax.plot(epochs, train, "o-", lw=2, ms=4, label="Training")
        ax.plot(epochs, val, "s--", lw=2, ms=4, label="Validation")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Loss per event (a.u.)")
        _legend(ax, loc="upper right")
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
        with h5py.File(path, "r") as handle:
            n = handle["objects"].shape[0]
            idx = np.sort(rng.choice(n, size=min(n, events), replace=False))
            objects = torch.from_numpy(handle["objects"][idx])
            mask = torch.from_numpy(handle["mask"][idx])
        with torch.no_grad():
            x = model.standardizer(objects, mask)
            h = model.encoder(x, mask, model.types(objects))
            out[label] = model.mu(h).double().numpy()
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


def latent_projection(embeddings: dict[str, np.ndarray], background: str, out: Path,
                      options: PlotOptions) -> list[Path]:
    """2D PCA of the latent posterior means, coloured by label (background first, underneath)."""
    if not embeddings:
        return []
    labels = [background] * (background in embeddings) + [k for k in embeddings if k != background]
    proj, var = pca_2d(np.concatenate([embeddings[k] for k in labels]))
    fig = _Figure(options, out, "latent_pca")
    with fig as (_, ax):
        start = 0
        for label in labels:
            n = len(embeddings[label])
            ax.scatter(proj[start:start + n, 0], proj[start:start + n, 1], s=6, alpha=0.5, label=label,
                       rasterized=True)
            start += n
        ax.set_xlabel(rf"Latent PC 1 of $\mu$ ({100 * var[0]:.0f}% var., a.u.)")
        ax.set_ylabel(rf"Latent PC 2 of $\mu$ ({100 * var[1]:.0f}% var., a.u.)")
        ylo, yhi = ax.get_ylim()
        ax.set_ylim(ylo, yhi + 0.35 * (yhi - ylo))
        _legend(ax, loc="upper right", markerscale=3, ncols=2)
    return fig.paths


def roc_models(files: dict[str, ScoresFile], background: str, signal: str, score: str, out: Path,
               options: PlotOptions) -> list[Path]:
    """One signal, several models: background rejection 1/eps_B (log) versus eps_S, AUC in the legend.

    ``files`` maps a model name to its scores file; as in :func:`roc`, the background excludes its
    training events (``split != 0``).
    """
    fig = _Figure(options, out, f"roc_models_{signal}_{score}")
    with fig as (_, ax):
        for i, (name, scores) in enumerate(files.items()):
            bkg = scores.sample(background, "background label")
            bkg = bkg.select(bkg.split != 0, "split != 0")
            sample = scores.sample(signal, "signal label")
            _roc_curve(ax, bkg, sample, score, name, ls=["-", "--", "-.", ":"][i % 4])
        _roc_frame(ax, rf"Signal efficiency $\varepsilon_S$ ({signal})")
    return fig.paths
