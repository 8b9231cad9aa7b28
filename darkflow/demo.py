"""``darkflow demo``: the whole search end to end (generate, prepare, train, score, scan, report, compare).

Every step calls the Python API of the matching command and skips what already exists in ``--out`` (generated
ROOT files, prepared HDF5 files, trained ``model.pt``) unless ``fresh`` is set; scoring, scans and reports are
cheap and always rewritten. The comparison of every model on every signal goes to ``OUT/COMPARISON.md``.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darkflow.fileio import write_text_atomic

SM_PROCESSES = ("qcd", "ttbar", "wjets", "zjets_nunu", "zjets_ll", "gammajets", "diboson", "single_top")
SIGNALS = ("zprime_ttbar", "dm_monojet", "gluino")
EPS_KEY = "1e-2"
NOT_RESOLVED = "not resolved"
MIN_SELECTED = 500  # fewer SM events than this after the channel: the channel is dropped

# name -> (model config, overrides); quick mode adds the small-size overrides below.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "conv_noflow": ("convvae", {"model.flow": "none"}),
    "conv_planar": ("convvae", {"model.flow": "planar"}),
    "conv_iaf": ("convvae", {"model.flow": "iaf"}),
    "graph_planar": ("graphvae", {"model.flow": "planar"}),
    "density": ("density", {}),
}
QUICK_MODEL = {
    "convvae": {"model.latent": 4, "model.hidden": 32, "model.channels": [8, 16], "model.context": 8},
    "graphvae": {"model.latent": 4, "model.hidden": 32, "model.channels": [16, 16], "model.context": 8},
    "density": {"model.flow_options": {"num_layers": 2, "hidden_features": 32}},
}
# Full mode: the MAF density at its default size costs ~45 s per epoch per 1000 events on a 2-core CPU, so
# the demo trains a small one for fewer epochs to stay within 15 minutes.
FULL_MODEL = {
    "convvae": {},
    "graphvae": {},
    "density": {"model.flow_options": {"num_layers": 2, "hidden_features": 32}, "training.epochs": 6},
}


@dataclass
class DemoOptions:
    """Sizes and switches of one demo run."""

    out: Path = Path("demo_output")
    quick: bool = False
    fresh: bool = False
    workers: int = 2
    seed: int = 1
    sm_events: int = 0  # 0: 1500 quick, 20000 full
    signal_events: int = 0  # 0: 150 quick, 1000 full
    epochs: int = 0  # 0: 3 quick, 20 full
    channel: str = "meff200"  # m_eff > 200 GeV (dropped when too few SM events pass)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.sm_events = self.sm_events or (1500 if self.quick else 20000)
        self.signal_events = self.signal_events or (150 if self.quick else 1000)
        self.epochs = self.epochs or (3 if self.quick else 20)


def _say(options: DemoOptions, message: str) -> None:
    options.log.append(message)
    print(f"[demo] {message}", flush=True)


def _generate(options: DemoOptions) -> None:
    from darkflow.generate.run import GenerateConfig, generate

    gen = options.out / "generated"
    if options.fresh and gen.exists():
        shutil.rmtree(gen)
    gen.mkdir(parents=True, exist_ok=True)
    sm_missing = [p for p in SM_PROCESSES if not (gen / f"{p}.root").is_file()]
    if sm_missing and len(sm_missing) < len(SM_PROCESSES):
        _say(options, f"1/5 generate: SM processes {', '.join(sm_missing)} missing, regenerating the mixture")
    if sm_missing:
        _say(options, f"1/5 generate: SM mixture 'sm', {options.sm_events} events")
        generate(GenerateConfig(process="sm", events=options.sm_events, seed=options.seed, out=str(gen),
                                workers=options.workers))
    else:
        _say(options, "1/5 generate: SM mixture exists, reused")
    for name in SIGNALS:
        if (gen / f"{name}.root").is_file():
            _say(options, f"1/5 generate: {name} exists, reused")
            continue
        _say(options, f"1/5 generate: {name}, {options.signal_events} events")
        generate(GenerateConfig(process=name, events=options.signal_events, seed=options.seed, out=str(gen),
                                workers=options.workers))


def _prepare_one(options: DemoOptions, inputs: list[Path], out: Path, label: str, channel: str):
    from darkflow.data_prep.prepare import PrepareConfig, prepare

    out.unlink(missing_ok=True)
    return prepare(PrepareConfig(inputs=[str(p) for p in inputs], out=str(out), label=label, channel=channel))


def _prepare(options: DemoOptions) -> None:
    import h5py

    gen = options.out / "generated"
    sm = options.out / "sm.h5"
    channel = options.channel
    if options.fresh or not sm.is_file():
        _say(options, f"2/5 prepare: SM mixture -> {sm} (channel {channel})")
        result = _prepare_one(options, [gen / f"{p}.root" for p in SM_PROCESSES], sm, "sm", channel)
        if channel != "none" and result.n_selected < MIN_SELECTED:
            _say(options, f"2/5 prepare: only {result.n_selected} of {result.n_read} SM events pass {channel}; "
                          "too few to train on, using no channel selection instead")
            channel = "none"
            result = _prepare_one(options, [gen / f"{p}.root" for p in SM_PROCESSES], sm, "sm", channel)
        _say(options, f"2/5 prepare: {result.n_selected} of {result.n_read} SM events selected")
    else:
        with h5py.File(sm, "r") as handle:
            raw = handle.attrs.get("channel", "{}")
        channel = json.loads(raw).get("name", channel) if isinstance(raw, str) else channel
        _say(options, f"2/5 prepare: {sm} exists, reused (channel {channel})")
    options.channel = channel
    for name in SIGNALS:
        out = options.out / f"{name}.h5"
        if out.is_file() and not options.fresh:
            _say(options, f"2/5 prepare: {out} exists, reused")
            continue
        result = _prepare_one(options, [gen / f"{name}.root"], out, name, channel)
        _say(options, f"2/5 prepare: {name}: {result.n_selected} of {result.n_read} events selected -> {out}")


def run_config(name: str, options: DemoOptions):
    """The training config of demo run ``name``."""
    from darkflow.train.run import load_train_config

    model, overrides = RUNS[name]
    overrides = dict(overrides) | {"training.epochs": options.epochs, "training.seed": options.seed}
    overrides |= QUICK_MODEL[model] if options.quick else FULL_MODEL[model]
    return load_train_config(model, overrides)


def _train(options: DemoOptions) -> None:
    from darkflow.train.run import TrainOptions, train

    for name in RUNS:
        run = options.out / "runs" / name
        if (run / "model.pt").is_file() and not options.fresh:
            _say(options, f"3/5 train: {name}: {run}/model.pt exists, reused")
            continue
        if run.exists():
            shutil.rmtree(run)
        config = run_config(name, options)
        _say(options, f"3/5 train: {name} (at most {config.training.epochs} epochs)")
        start = time.perf_counter()
        summary = train(config, TrainOptions(data=str(options.out / "sm.h5"), out=str(run)))
        _say(options, f"3/5 train: {name}: {summary['epochs']} epoch(s), best validation loss "
                      f"{summary['best_val_loss']:.5g}, {time.perf_counter() - start:.1f} s")


def _analyse(options: DemoOptions) -> None:
    from darkflow.analysis.report import ReportOptions, report
    from darkflow.analysis.scan import ScanOptions, scan
    from darkflow.train.score import score

    inputs = [options.out / "sm.h5"] + [options.out / f"{s}.h5" for s in SIGNALS]
    for name in RUNS:
        run = options.out / "runs" / name
        scores = run / "scores.h5"
        _say(options, f"4/5 score, scan, report: {name}")
        score(run, inputs, scores)
        scan(ScanOptions(scores=scores, background="sm", out=run / "scan", score="total"))
        report(ReportOptions(run=run, scan=run / "scan", scores=scores, out=run / "report" / "REPORT.md"))


def _cell(row: dict[str, str] | None) -> str:
    if row is None:
        return "–"
    auc = row.get("auc", "")
    eps = row.get(f"eps_s@{EPS_KEY}", "")
    auc_text = f"{float(auc):.3f}" if auc not in ("", "None") else "n/a"
    eps_text = f"{float(eps):.3f}" if eps not in ("", "None", NOT_RESOLVED) else NOT_RESOLVED
    return f"{auc_text} / {eps_text}"


def comparison_plots(options: DemoOptions) -> list[Path]:
    """``OUT/comparison/roc_models_SIGNAL_total.png`` (and PDF): every model's ROC for each signal."""
    from darkflow.analysis.plots import load_options, roc_models
    from darkflow.analysis.thresholds import read_scores

    files = {name: read_scores(options.out / "runs" / name / "scores.h5") for name in RUNS}
    tests = {name: scores.sample("sm", "background label") for name, scores in files.items()}
    tests = {name: sm.select(sm.split != 0, "split != 0") for name, sm in tests.items()}
    plot_options = load_options(None, formats=["png", "pdf"], simulation=True)  # Pythia 8 events
    paths = []
    for signal in SIGNALS:
        curves = {name: (tests[name], files[name].sample(signal, "signal label")) for name in RUNS}
        written = roc_models(curves, signal, "total", options.out / "comparison", plot_options)
        paths += [p for p in written if p.suffix == ".png"]
    return paths


def comparison(options: DemoOptions) -> Path:
    """Write ``OUT/COMPARISON.md``: AUC and eps_S at eps_B = 1e-2 of every model on every signal."""
    lines = ["# DarkFlow demo: model comparison", "",
             f"SM mixture ({options.sm_events} generated events, channel `{options.channel}`), "
             f"{options.signal_events} generated events per signal, at most {options.epochs} epochs"
             f"{'' if options.quick else ' (density baseline: 6, a smaller flow)'}"
             f"{' (quick mode: small models)' if options.quick else ''}. Score `total`, background `sm`.",
             "", f"Each cell: AUC / eps_S at eps_B = {EPS_KEY} ('{NOT_RESOLVED}': eps_B below 1/N_eff of the "
             "calibration sample).", "",
             "| model | " + " | ".join(SIGNALS) + " | report |",
             "|---" * (len(SIGNALS) + 2) + "|"]
    for name in RUNS:
        path = options.out / "runs" / name / "scan" / "metrics.csv"
        with open(path, newline="") as handle:
            rows = {r["signal"]: r for r in csv.DictReader(handle) if r["score"] == "total"}
        cells = [_cell(rows.get(s)) for s in SIGNALS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | [REPORT](runs/{name}/report/REPORT.md) |")
    lines += ["", "ROC curves of every model, one plot per signal (background: the SM events not used for "
              "training; each curve stops where fewer than 10 effective background events remain):", ""]
    for path in comparison_plots(options):
        lines.append(f"![{path.stem}]({path.relative_to(options.out).as_posix()})")
    lines += ["", "Log:", ""] + [f"- {m}" for m in options.log if "reused" not in m] + [""]
    out = options.out / "COMPARISON.md"
    write_text_atomic(out, "\n".join(lines))
    return out


def demo(options: DemoOptions) -> Path:
    """Run the whole demo into ``options.out``; returns the path of ``COMPARISON.md``."""
    start = time.perf_counter()
    options.out.mkdir(parents=True, exist_ok=True)
    if options.fresh:
        for name in ["runs", "sm.h5", *(f"{s}.h5" for s in SIGNALS)]:
            path = options.out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    mode = "quick" if options.quick else "full"
    _say(options, f"{mode} mode into {options.out}")
    _generate(options)
    _prepare(options)
    _train(options)
    _analyse(options)
    out = comparison(options)
    _say(options, f"5/5 comparison: {out} ({time.perf_counter() - start:.0f} s in all)")
    return out
