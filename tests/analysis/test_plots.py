"""What the plots show: resolution limits, test events only, binning, labels, legends clear of data.

Every check reads the finished figure (through ``plots._Figure.hook``) and compares it with an
independent numpy computation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from darkflow.analysis import plots
from darkflow.analysis.metrics import MIN_EFFECTIVE_EVENTS
from darkflow.analysis.scan import ScanConfig, scan
from darkflow.analysis.thresholds import Sample
from darkflow.errors import ConfigError, InputError

NAMES = ["qcd", "ttbar", "wjets"]


def _sample(label: str, scores: np.ndarray, weight: np.ndarray, split: np.ndarray | None = None,
            process: np.ndarray | None = None, names: list[str] | None = None) -> Sample:
    n = scores.size
    return Sample(label, {"total": scores}, weight, np.arange(n), np.zeros(n, np.int64) if process is None else process,
                  np.full(n, 3) if split is None else split, names or [label])


def _sm(rng: np.random.Generator, n: int = 3000, heavy: bool = False) -> Sample:
    """A weighted SM mixture: three processes, cross-section weights spanning decades (small N_eff)."""
    process = rng.integers(0, 3, n)
    weight = np.array([1e3, 5.0, 2.0])[process] * rng.lognormal(0.0, 1.2, n)
    scores = rng.lognormal(1.0, 1.5, n) if heavy else rng.normal(0.0, 1.0, n) + 0.2 * process
    return _sample("sm", scores, weight, process=process, names=NAMES)


def _signals(rng: np.random.Generator, heavy: bool = False) -> dict[str, Sample]:
    out = {}
    for name, shift in (("zprime", 2.0), ("monojet", 1.0)):
        scores = rng.lognormal(1.0 + shift, 1.5, 800) if heavy else rng.normal(shift, 1.0, 800)
        out[name] = _sample(name, scores, np.full(800, 1e-3), split=np.full(800, -1))
    return out


def _n_eff(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / (w**2).sum())


@pytest.fixture
def figures(monkeypatch) -> list[dict]:
    """Each finished figure as a dict: fig, ax, texts, legend box and the display points of the data."""
    captured: list[dict] = []

    def hook(fig, ax) -> None:
        fig.canvas.draw()
        points = [line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float)) for line in ax.lines]
        for patch in ax.patches:  # histogram tops: both corners of every bin's top
            if hasattr(patch, "get_data"):
                values, edges, _ = patch.get_data()
                xy = np.c_[np.r_[edges[:-1], edges[1:]], np.r_[values, values]]
                points.append(ax.transData.transform(xy))
        for collection in ax.collections:  # scatter points
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.size and collection.get_offset_transform() is ax.transData:
                points.append(ax.transData.transform(offsets))
        box = ax.get_window_extent()
        visible = [p[np.all(np.isfinite(p), axis=1) & (p[:, 0] >= box.x0) & (p[:, 0] <= box.x1)
                     & (p[:, 1] >= box.y0) & (p[:, 1] <= box.y1)] for p in points]
        captured.append({"fig": fig, "ax": ax, "texts": [t.get_text() for t in ax.texts],
                         "legend": ax.get_legend().get_window_extent(), "points": np.concatenate(visible),
                         "lines": {line.get_label(): np.asarray(line.get_xydata()) for line in ax.lines}})

    monkeypatch.setattr(plots._Figure, "hook", hook)
    return captured


def _png(**kwargs) -> plots.PlotOptions:
    return plots.PlotOptions(formats=["png"], **kwargs)


def _roc_points(bkg: Sample, sig: Sample) -> tuple[np.ndarray, np.ndarray]:
    """eps_B and eps_S (weighted, score >= t) at every distinct score t, by direct summation."""
    b, s = bkg.scores["total"], sig.scores["total"]
    grid = np.unique(np.r_[b, s])
    eps_b = np.array([bkg.weight[b >= t].sum() for t in grid]) / bkg.weight.sum()
    eps_s = np.array([sig.weight[s >= t].sum() for t in grid]) / sig.weight.sum()
    return eps_b, eps_s


def test_roc_curves_stop_at_ten_effective_events(figures, tmp_path):
    rng = np.random.default_rng(0)
    test, signals = _sm(rng, 1500), _signals(rng)
    n_eff = _n_eff(test.weight)
    assert 20 < n_eff < 400  # the weights make the limit bite well before the last event
    plots.roc(test, signals, "total", tmp_path, _png())
    (fig,) = figures
    for name, sig in signals.items():
        (label,) = [k for k in fig["lines"] if k.startswith(f"{name} (AUC = ")]
        x, y = fig["lines"][label].T
        eps_b, eps_s = _roc_points(test, sig)
        resolved = eps_b * n_eff >= MIN_EFFECTIVE_EVENTS
        assert np.all(1.0 / y * n_eff >= MIN_EFFECTIVE_EVENTS * (1 - 1e-12))
        # the curve runs up to the last resolved point, where its signal efficiency is the one measured there
        last = int(np.argmin(np.where(resolved, eps_b, np.inf)))
        assert np.isclose(y.max(), 1.0 / eps_b[last], rtol=1e-9)
        assert np.isclose(x[y == y.max()].max(), eps_s[last], rtol=1e-9)
        assert not resolved.all()
    dashed = [line for line in fig["ax"].lines if line.get_linestyle() == "--" and line.get_label().startswith("_")]
    assert any(np.isclose(line.get_ydata()[0], n_eff / MIN_EFFECTIVE_EVENTS, rtol=1e-9) for line in dashed)
    legend = [t.get_text() for t in fig["ax"].get_legend().get_texts()]
    assert any("Not resolved" in t and f"{n_eff:.0f}" in t for t in legend)


def test_roc_models_each_curve_has_its_own_limit(figures, tmp_path):
    rng = np.random.default_rng(1)
    small, large = _sm(rng, 600), _sm(rng, 3000)
    sig = _signals(rng)["zprime"]
    plots.roc_models({"small": (small, sig), "large": (large, sig)}, "zprime", "total", tmp_path, _png())
    (fig,) = figures
    for name, bkg in (("small", small), ("large", large)):
        (label,) = [k for k in fig["lines"] if k.startswith(f"{name} (AUC")]
        y = fig["lines"][label][:, 1]
        eps_b, _ = _roc_points(bkg, sig)
        resolved = eps_b[eps_b * _n_eff(bkg.weight) >= MIN_EFFECTIVE_EVENTS]
        assert np.isclose(y.max(), 1.0 / resolved.min(), rtol=1e-9)


def _scores_file(path: Path) -> Path:
    """SM training file (training split 0, validation split 1), SM calibration and test samples with uneven
    weights, and two signals."""
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as handle:
        handle.attrs["default_score"] = "total"
        for label, n, shift in (("sm", 4000, 0.0), ("sm_cal", 2000, 0.0), ("sm_test", 2000, 0.0),
                                ("zprime", 600, 3.5), ("monojet", 600, 2.5)):
            sm = label.startswith("sm")
            g = handle.create_group(label)
            g["total"] = rng.normal(shift, 1.0, n)
            g["weight"] = rng.lognormal(0.0, 1.3, n) if sm else np.full(n, 1e-3)
            g["event_id"] = np.arange(n)
            g["process"] = rng.integers(0, 3, n) if sm else np.zeros(n, np.int64)
            g["split"] = np.arange(n) % 2 if label == "sm" else np.full(n, -1)
            g.attrs["process_names"] = json.dumps(NAMES if sm else [label])
            g.attrs["source"] = f"{label}.h5"
    return path


def _scan(scores: Path, out: Path) -> None:
    scan(ScanConfig(scores=scores, background="sm_test", calibration="sm_cal", out=out, signals="zprime,monojet",
                    no_plots=True))  # the figures checked here are the ones each test draws


def test_si_curve_maximum_is_the_table_si_max(figures, tmp_path):
    scores = _scores_file(tmp_path / "scores.h5")
    _scan(scores, tmp_path / "scan")
    with h5py.File(scores) as handle:
        calib_w = handle["sm_cal/weight"][:]
    n_eff = _n_eff(calib_w)
    rows = plots.read_scan(tmp_path / "scan" / "scan.csv")
    assert any(not r["resolved"] for r in rows) and any(r["resolved"] for r in rows)
    with open(tmp_path / "scan" / "metrics.csv", newline="") as handle:
        si_max = {r["signal"]: float(r["si_max"]) for r in csv.DictReader(handle)}
    plots.si_curves(rows, "total", tmp_path, _png())
    (fig,) = figures
    for name in ("zprime", "monojet"):
        eps_b, si = fig["lines"][name].T
        assert np.all(eps_b * n_eff >= MIN_EFFECTIVE_EVENTS * (1 - 1e-12))
        mine = [r for r in rows if r["signal"] == name]
        resolved = [r["si"] for r in mine if r["eps_b"] * n_eff >= MIN_EFFECTIVE_EVENTS]
        assert np.isclose(si.max(), max(resolved), rtol=1e-12)
        assert np.isclose(si.max(), si_max[name], rtol=1e-12)
        assert max(r["si"] for r in mine) > si.max()  # the unresolved points would have said more


def test_read_scan_uses_the_resolved_column_when_present(figures, tmp_path):
    header = "signal,score,threshold,eps_b,eps_b_lo,eps_b_hi,eps_s,eps_s_lo,eps_s_hi,si,n_eff_b_above,resolved\n"
    lines = [f"x,total,{t},{e},{e / 2},{e * 2},0.5,0.4,0.6,{0.5 / e**0.5},{e * 50},{'yes' if e >= 0.2 else 'no'}"
             for t, e in ((1.0, 0.8), (2.0, 0.4), (3.0, 0.2), (4.0, 0.1), (5.0, 0.05))]
    (tmp_path / "scan.csv").write_text(header + "\n".join(lines) + "\n")
    rows = plots.read_scan(tmp_path / "scan.csv")
    assert [r["resolved"] for r in rows] == [True, True, True, False, False]
    plots.si_curves(rows, "total", tmp_path, _png())
    plots.scan_curves(rows, "total", tmp_path, _png())
    si_fig, scan_fig = figures
    assert np.allclose(np.sort(si_fig["lines"]["x"][:, 0]), [0.2, 0.4, 0.8])
    assert np.isclose(si_fig["lines"]["x"][:, 1].max(), 0.5 / 0.2**0.5)
    (span,) = [p for p in scan_fig["ax"].patches if "not resolved" in p.get_label()]
    x0 = span.get_extents().transformed(scan_fig["ax"].transData.inverted()).x0
    assert np.isclose(x0, 3.0)  # shaded from the last resolved threshold on

    (tmp_path / "scan.csv").write_text(header.replace(",n_eff_b_above,resolved", "")
                                       + "x,total,1,0.5,0.4,0.6,0.5,0.4,0.6,0.7\n")
    with pytest.raises(InputError, match="thresholds.json"):
        plots.read_scan(tmp_path / "scan.csv")


def test_score_distributions_stack_the_test_events_only(figures, tmp_path):
    rng = np.random.default_rng(2)
    sm = _sm(rng, 2000)
    split = np.arange(len(sm)) % 4  # 0 training, 1 validation, 2 calibration, 3 test
    sm.split = split
    sm.scores["total"] = np.where(split == 0, 50.0, sm.scores["total"])  # training events far out
    test = sm.select(split == 3, "split == 3")
    signals = _signals(rng)
    plots.score_distributions(test, signals, "total", tmp_path, _png())
    (fig,) = figures
    ax = fig["ax"]
    assert ax.get_xlim()[1] < 10  # the training events did not stretch the range
    stacks = [p.get_data() for p in ax.patches if hasattr(p, "get_data") and p.get_fill()
              and "uncertainty" not in p.get_label()]
    top = max(stacks, key=lambda d: d.values.sum())  # the stack's upper edge
    edges = top.edges
    clipped = np.clip(test.scores["total"], edges[0], edges[-1])
    expected, _ = np.histogram(clipped, edges, weights=test.weight)
    assert np.allclose(top.values, expected / test.weight.sum(), rtol=1e-9)
    assert np.isclose(top.values.sum(), 1.0)
    for name, sig in signals.items():
        (step,) = [p.get_data() for p in ax.patches if p.get_label() == name]
        h, _ = np.histogram(np.clip(sig.scores["total"], edges[0], edges[-1]), edges, weights=sig.weight)
        assert np.allclose(step.values, h / sig.weight.sum())


def test_heavy_tailed_scores_get_a_log_axis(figures, tmp_path):
    rng = np.random.default_rng(3)
    test, signals = _sm(rng, 2000, heavy=True), _signals(rng, heavy=True)
    plots.score_distributions(test, signals, "total", tmp_path, _png())
    (fig,) = figures
    assert fig["ax"].get_xscale() == "log"


def test_negative_heavy_tailed_scores_get_a_shifted_log_axis(figures, tmp_path):
    """A density model's NLL: SM bulk near -200 within tens of units, tails to thousands."""
    rng = np.random.default_rng(9)
    test = _sm(rng, 2000)
    test.scores["total"] = np.where(rng.random(len(test)) < 0.02, rng.exponential(2000, len(test)),
                                    rng.normal(-200, 15, len(test)))
    signals = {"zprime": _sample("zprime", rng.exponential(1500, 800) - 150, np.full(800, 1e-3))}
    plots.score_distributions(test, signals, "total", tmp_path, _png())
    (fig,) = figures
    ax = fig["ax"]
    assert ax.get_xscale() == "function" and "axis log(x +" in ax.get_xlabel()
    top = max((p.get_data() for p in ax.patches if hasattr(p, "get_data") and p.get_fill()
               and "uncertainty" not in p.get_label()), key=lambda d: d.values.sum())
    assert np.sum(top.values > 0.01) >= 8  # the SM bulk spreads over many bins, not one or two
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert len(ticks) >= 4 and all(float(f"{t:.1g}") == t for t in ticks)


@pytest.mark.parametrize(("options", "present", "absent"), [
    ({}, ["DarkFlow"], ["Simulation", "CMS"]),
    ({"simulation": True}, ["DarkFlow", "Simulation"], ["CMS"]),
    ({"simulation": False, "label": "Preliminary"}, ["DarkFlow", "Preliminary"], ["Simulation"]),
    ({"style": "CMS", "simulation": True}, ["CMS", "Simulation"], ["DarkFlow"]),
    ({"style": "CMS", "label": "Private Work"}, ["CMS", "Private Work"], ["Simulation", "DarkFlow"]),
    ({"style": "ATLAS", "simulation": True, "label": "Internal"}, ["ATLAS", "Simulation", "Internal"], ["DarkFlow"]),
])
def test_label_text(figures, tmp_path, options, present, absent):
    plots.training_curves(_run(tmp_path), tmp_path, _png(**options))
    (fig,) = figures
    text = " ".join(fig["texts"])
    for word in present:
        assert word in text
    for word in absent:
        assert word not in text


def test_plot_options_simulation_is_validated():
    with pytest.raises(ConfigError, match="simulation"):
        plots.PlotOptions(simulation="yes")
    assert plots.PlotOptions().style is None and plots.PlotOptions().simulation is None


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "metrics.csv").write_text("epoch,train_loss,val_loss\n0,3.0,2.8\n1,2.5,2.4\n2,2.2,2.3\n")
    return run


def test_latent_axis_says_collapsed(figures, tmp_path):
    rng = np.random.default_rng(7)
    flat = np.c_[rng.normal(0, 1, 400), rng.normal(0, 0.02, 400), np.zeros(400)]
    plots.latent_projection({"sm": flat}, "sm", tmp_path, _png())
    (fig,) = figures
    assert "collapsed" in fig["ax"].get_ylabel() and "collapsed" not in fig["ax"].get_xlabel()


def _every_plot(tmp_path: Path) -> dict[str, callable]:
    rng = np.random.default_rng(8)
    test, signals = _sm(rng, 1500), _signals(rng)
    scores = _scores_file(tmp_path / "scores.h5")
    _scan(scores, tmp_path / "scan")
    rows = plots.read_scan(tmp_path / "scan" / "scan.csv")
    out, options = tmp_path / "plots", _png(simulation=True)
    latent = {"sm": rng.normal(size=(500, 4)), "zprime": rng.normal(1.0, 1.0, size=(200, 4))}
    return {
        "score_distributions": lambda: plots.score_distributions(test, signals, "total", out, options),
        "roc": lambda: plots.roc(test, signals, "total", out, options),
        "roc_models": lambda: plots.roc_models({"a": (test, signals["zprime"]), "b": (test, signals["monojet"])},
                                               "zprime", "total", out, options),
        "scan_curves": lambda: plots.scan_curves(rows, "total", out, options),
        "si_curves": lambda: plots.si_curves(rows, "total", out, options),
        "training_curves": lambda: plots.training_curves(_run(tmp_path), out, options),
        "latent_projection": lambda: plots.latent_projection(latent, "sm", out, options),
    }


@pytest.mark.parametrize("name", ["score_distributions", "roc", "roc_models", "scan_curves", "si_curves",
                                  "training_curves", "latent_projection"])
def test_legend_covers_no_data(figures, tmp_path, name):
    paths = _every_plot(tmp_path)[name]()
    assert paths and all(p.is_file() for p in paths)
    (fig,) = figures
    points, box = fig["points"], fig["legend"]
    assert len(points) >= 6
    inside = (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
    assert not inside.any(), f"{int(inside.sum())} data points under the legend of {name}"


def test_a_background_below_ten_effective_events_draws_no_roc_point(figures, tmp_path):
    rng = np.random.default_rng(10)
    test = _sample("sm", rng.normal(0, 1, 6), np.ones(6))
    paths = plots.roc(test, _signals(rng), "total", tmp_path, _png())
    assert paths
    (fig,) = figures
    assert all(v.size == 0 for k, v in fig["lines"].items() if "AUC" in k)
    with pytest.raises(InputError, match="no score 'reco'"):
        plots.roc(test, _signals(rng), "reco", tmp_path, _png())
