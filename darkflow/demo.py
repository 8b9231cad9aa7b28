"""``darkflow demo``: the whole search end to end (generate, prepare, train, score, scan, report, compare).

Four disjoint Standard Model samples, each generated with its own seed: ``sm`` (training, split into
training and validation events by the run), ``sm_calibration`` (thresholds) and ``sm_test`` (AUC, eps_S,
eps_B, plots), plus the signals. Every step calls the Python API of the matching command and skips what
already exists in ``--out`` (generated ROOT files, prepared HDF5 files, trained ``model.pt``) unless
``fresh`` is set; scoring, scans and reports are cheap and always rewritten. The comparison of every model
and every one-variable cut on every signal, with N_eff and intervals, goes to ``OUT/COMPARISON.md``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darkflow.config import Count, Name, StrictModel
from darkflow.fileio import write_text_atomic

SM_PROCESSES = ("qcd", "ttbar", "wjets", "zjets_nunu", "zjets_ll", "gammajets", "diboson", "single_top")
SIGNALS = ("zprime_ttbar", "dm_monojet", "gluino")
SM_SAMPLES = {"sm": ("train", 0), "sm_calibration": ("calibration", 1), "sm_test": ("test", 2)}
"""label -> (folder under generated/, seed offset): three independent generations of the SM mixture."""
CALIBRATION, TEST = "sm_calibration", "sm_test"
FLAG_EPS = 1e-3
MIN_SELECTED = 500  # fewer SM events than this after the channel: the channel is dropped
MAIN_CUTS = ("hlf:MET", "hlf:HT", "hlf:m_eff")  # beside the model in every run's scan and report
MIN_CUT_AUC = 0.6  # COMPARISON.md omits the cuts below this AUC on every signal (multiplicities that do not separate)

PREVIOUS_DEFAULT = {"model.flow": "planar", "model.reco_loss": "mse", "model.hlf_input": False,
                    "model.default_score": "total", "standardize.rotate": "none", "standardize.reflect_eta": False,
                    "training.kl_warmup": 0, "training.flow_warmup": 0}
"""The overrides that turn ``models/convvae.yaml`` back into the default before issue 14 (conv + planar, mse)."""

# name -> (model config, overrides); quick mode adds the small-size overrides below. "default" is what
# `darkflow train` trains with no model option (the recipe the Dark Machines channel benchmark picked).
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("convvae", {}),
    "conv_planar_mse": ("convvae", PREVIOUS_DEFAULT),
    "graph": ("graphvae", {}),
    "density": ("density", {}),
    "hlf_density": ("hlf_density", {}),
    "svdd": ("svdd", {}),
}
QUICK_MODEL = {
    "convvae": {"model.latent": 4, "model.hidden": 32, "model.channels": [8, 16], "model.context": 8},
    "graphvae": {"model.latent": 4, "model.hidden": 32, "model.channels": [16, 16], "model.context": 8},
    "density": {"model.flow_options": {"num_layers": 2, "hidden_features": 32}},
    "hlf_density": {"model.flow_options": {"num_layers": 2, "hidden_features": 16}},
    "svdd": {"model.hidden": [32, 16], "model.rep_dim": 8},
}
# Full mode: the density baseline is a small MAF (2 layers of 32, ~0.4 s per epoch here) that needs ~80 epochs to
# converge; like every model it trains until early stopping, here within at most 300 epochs.
FULL_MODEL = {
    "convvae": {},
    "graphvae": {},
    "density": {"model.flow_options": {"num_layers": 2, "hidden_features": 32}, "training.epochs": 300},
    "hlf_density": {},
    "svdd": {},
}


@dataclass
class DemoOptions:
    """Sizes and switches of one demo run."""

    out: Path = Path("demo_output")
    quick: bool = False
    fresh: bool = False
    workers: int = 2
    seed: int = 1
    sm_events: int = 0  # training sample: 0 = 1500 quick, 20000 full
    eval_events: int = 0  # calibration and test samples, each: 0 = 2500 quick (eps_B = 1e-2), 26000 full (1e-3)
    signal_events: int = 0  # 0: 150 quick, 1000 full
    epochs: int = 0  # 0: 3 quick, 60 full (early stopping ends training before); the density baseline: 300
    channel: str = "meff200"  # m_eff > 200 GeV (dropped when too few SM events pass)
    log: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.sm_events = self.sm_events or (1500 if self.quick else 20000)
        self.eval_events = self.eval_events or (2500 if self.quick else 26000)
        self.signal_events = self.signal_events or (150 if self.quick else 1000)
        self.epochs = self.epochs or (3 if self.quick else 60)

    def events(self, label: str) -> int:
        """Generated events of an SM sample."""
        return self.sm_events if label == "sm" else self.eval_events


class DemoConfig(StrictModel):
    """Options of ``darkflow demo``: the output folder, quick (small) mode, redo everything, generator workers."""

    out: Name = "demo_output"
    quick: bool = False
    fresh: bool = False
    workers: Count = 2


@dataclass
class DemoResult:
    """The comparison table of the demo and the folder of its runs."""

    table: Path
    runs: Path
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Where the comparison table and the reports are."""
        return [f"comparison table: {self.table.resolve()}; reports in {self.runs.resolve()}/<run>/report/"]


def run(config: DemoConfig) -> DemoResult:
    """``darkflow demo``: :func:`demo` with the sizes of ``config.quick``."""
    table = demo(DemoOptions(out=Path(config.out), quick=config.quick, fresh=config.fresh, workers=config.workers))
    return DemoResult(table, table.parent / "runs")


def _say(options: DemoOptions, message: str) -> None:
    options.log.append(message)
    print(f"[demo] {message}", flush=True)


def _generate(options: DemoOptions) -> None:
    from darkflow.generate.run import GenerateConfig, generate

    gen = options.out / "generated"
    if options.fresh and gen.exists():
        shutil.rmtree(gen)
    for label, (folder, offset) in SM_SAMPLES.items():
        where = gen / folder
        where.mkdir(parents=True, exist_ok=True)
        missing = [p for p in SM_PROCESSES if not (where / f"{p}.root").is_file()]
        if not missing:
            _say(options, f"1/6 generate: {label} exists, reused")
            continue
        _say(options, f"1/6 generate: {label}: SM mixture 'sm', {options.events(label)} events, seed "
                      f"{options.seed + offset}")
        generate(GenerateConfig(process="sm", events=options.events(label), seed=options.seed + offset,
                                out=str(where), workers=options.workers))
    where = gen / "signals"
    where.mkdir(parents=True, exist_ok=True)
    for name in SIGNALS:
        if (where / f"{name}.root").is_file():
            _say(options, f"1/6 generate: {name} exists, reused")
            continue
        _say(options, f"1/6 generate: {name}, {options.signal_events} events")
        generate(GenerateConfig(process=name, events=options.signal_events, seed=options.seed, out=str(where),
                                workers=options.workers))


def _prepare_one(inputs: list[Path], out: Path, label: str, channel: str):
    from darkflow.data_prep.prepare import PrepareConfig, prepare

    return prepare(PrepareConfig(inputs=[str(p) for p in inputs], out=str(out), label=label, channel=channel),
                   progress=False)


def _prepare(options: DemoOptions) -> None:
    from darkflow.errors import InputError
    from darkflow.events import EventFile

    gen = options.out / "generated"
    channel = options.channel
    sm = options.out / "sm.h5"
    if options.fresh or not sm.is_file():
        inputs = [gen / "train" / f"{p}.root" for p in SM_PROCESSES]
        _say(options, f"2/6 prepare: sm -> {sm} (channel {channel})")
        try:
            result = _prepare_one(inputs, sm, "sm", channel)
            selected = result.n_selected
        except InputError:  # no event passes the channel
            selected = 0
        if channel != "none" and selected < MIN_SELECTED:
            _say(options, f"2/6 prepare: only {selected} SM events pass {channel}; too few to train on, using no "
                          "channel selection instead")
            channel = "none"
            result = _prepare_one(inputs, sm, "sm", channel)
        _say(options, f"2/6 prepare: sm: {result.n_selected} of {result.n_read} events selected")
    else:
        channel = EventFile(sm).channel.get("name", channel)
        _say(options, f"2/6 prepare: {sm} exists, reused (channel {channel})")
    options.channel = channel
    jobs = {label: [gen / folder / f"{p}.root" for p in SM_PROCESSES]
            for label, (folder, _) in SM_SAMPLES.items() if label != "sm"}
    jobs |= {name: [gen / "signals" / f"{name}.root"] for name in SIGNALS}
    for label, inputs in jobs.items():
        out = options.out / f"{label}.h5"
        if out.is_file() and not options.fresh:
            _say(options, f"2/6 prepare: {out} exists, reused")
            continue
        result = _prepare_one(inputs, out, label, channel)
        _say(options, f"2/6 prepare: {label}: {result.n_selected} of {result.n_read} events selected -> {out}")


def run_config(name: str, options: DemoOptions):
    """The training config of demo run ``name``."""
    from darkflow.train.run import load_train_config

    model, overrides = RUNS[name]
    overrides = dict(overrides) | {"training.epochs": options.epochs, "training.seed": options.seed}
    overrides |= QUICK_MODEL[model] if options.quick else FULL_MODEL[model]
    return load_train_config(model, overrides)


def _train(options: DemoOptions) -> None:
    from darkflow.train.run import TrainOptions, train
    from darkflow.train.rundir import staging_path

    for name in RUNS:
        run = options.out / "runs" / name
        if (run / "model.pt").is_file() and not options.fresh:
            _say(options, f"3/6 train: {name}: {run}/model.pt exists, reused")
            continue
        if run.exists():
            shutil.rmtree(run)
        shutil.rmtree(staging_path(run), ignore_errors=True)  # an interrupted training: start it again
        run.parent.mkdir(parents=True, exist_ok=True)
        config = run_config(name, options)
        _say(options, f"3/6 train: {name} (at most {config.training.epochs} epochs, early stopping)")
        start = time.perf_counter()
        summary = train(config, TrainOptions(data=str(options.out / "sm.h5"), out=str(run)))
        _say(options, f"3/6 train: {name}: {summary['epochs']} epoch(s), best weighted validation loss "
                      f"{summary['best_val_loss']:.5g}, {time.perf_counter() - start:.1f} s")
        for line in summary.get("warnings", []):
            _say(options, f"3/6 train: {name}: warning: {line}")


def _inputs(options: DemoOptions) -> list[Path]:
    return [options.out / f"{label}.h5" for label in SM_SAMPLES] + [options.out / f"{s}.h5" for s in SIGNALS]


def _cut_scores(scores: Path) -> list[str]:
    """The ``hlf:`` cut scores of a scores file that every group has."""
    from darkflow.analysis.thresholds import read_scores

    samples = read_scores(scores).samples.values()
    common = set.intersection(*(set(sample.scores) for sample in samples))
    return sorted(n for n in common if n.startswith("hlf:"))


def _analyse(options: DemoOptions) -> None:
    from darkflow.analysis.report import ReportConfig, report
    from darkflow.analysis.scan import ScanConfig, scan
    from darkflow.train.score import score

    for name in RUNS:
        run = options.out / "runs" / name
        scores = run / "scores.h5"
        _say(options, f"4/6 score, scan, report: {name}")
        score(run, _inputs(options), scores, notify=lambda kind, line: _say(options, f"4/6 score: {kind}: {line}"))
        main_cuts = [c for c in MAIN_CUTS if c in _cut_scores(scores)]
        scan(ScanConfig(scores=scores, background=TEST, calibration=CALIBRATION, out=run / "scan",
                        score=",".join([default_score(scores), *main_cuts]), signals=",".join(SIGNALS),
                        no_plots=True))  # the report draws them
        (run / "report").mkdir(exist_ok=True)
        report(ReportConfig(run=run, scan=run / "scan", scores=scores, out=run / "report" / "REPORT.md"))
    first = options.out / "runs" / next(iter(RUNS)) / "scores.h5"
    cuts = _cut_scores(first)
    if cuts:
        _say(options, f"4/6 scan: one-variable cuts {', '.join(cuts)}")
        (options.out / "cuts").mkdir(exist_ok=True)
        scan(ScanConfig(scores=first, background=TEST, calibration=CALIBRATION, out=options.out / "cuts" / "scan",
                         score=",".join(cuts), signals=",".join(SIGNALS)))


def _flag(options: DemoOptions) -> list[str]:
    """Candidates at eps_B = FLAG_EPS for the first model on each signal; the commands, as a user types them."""
    from darkflow.analysis.flag import flag
    from darkflow.errors import InputError

    name = next(iter(RUNS))
    scores = options.out / "runs" / name / "scores.h5"
    lines = []
    for signal in SIGNALS:
        out = options.out / "candidates" / f"{name}_{signal}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = (f"darkflow flag --scores {scores.relative_to(options.out)} --label {signal} --calibration "
                   f"{CALIBRATION} --eps-b {FLAG_EPS:g} --out {out.relative_to(options.out)}")
        try:
            result = flag(scores, signal, out, eps_b=f"{FLAG_EPS:g}", calibration=CALIBRATION)
        except InputError as err:
            lines.append(f"- `{command}`: refused: {err}")
            continue
        lines.append(f"- `{command}`: {result.n_flagged} of {result.n_events} events flagged; {result.origin}")
    _say(options, f"5/6 flag: candidates at eps_B = {FLAG_EPS:g} in {options.out / 'candidates'}")
    return lines


def default_score(scores: Path) -> str:
    """The default score of a scores file (the run's ``model.default_score``)."""
    from darkflow.analysis.thresholds import read_scores

    return read_scores(scores).default_score


def run_score(options: DemoOptions, name: str) -> str:
    """The score the demo compares for run ``name``: its default score."""
    return default_score(options.out / "runs" / name / "scores.h5")


def comparison_plots(options: DemoOptions, cuts: dict[str, list[tuple[str, str]]] | None = None) -> list[Path]:
    """``OUT/comparison/roc_models_SIGNAL_default.png`` (and PDF): every model's ROC (its default score) for each signal on the test
    sample, and the cut baselines ``cuts[signal]`` ((label, hlf score) pairs) beside them."""
    from darkflow.analysis.plots import load_options, roc_models
    from darkflow.analysis.thresholds import read_scores, select_roles

    roles = {name: select_roles(read_scores(options.out / "runs" / name / "scores.h5"), TEST, CALIBRATION,
                                list(SIGNALS)) for name in RUNS}
    simulation = all(r.test.simulation for r in roles.values())
    plot_options = load_options(None, formats=["png", "pdf"], simulation=simulation)
    first = next(iter(roles.values()))
    paths = []
    for signal in SIGNALS:
        curves: dict = {name: (r.test, r.signals[signal], run_score(options, name)) for name, r in roles.items()}
        curves |= {label: (first.test, first.signals[signal], cut) for label, cut in (cuts or {}).get(signal, [])}
        written = roc_models(curves, signal, "default", options.out / "comparison", plot_options)
        paths += [p for p in written if p.suffix == ".png"]
    return paths


def _diagnostics(options: DemoOptions) -> list[str]:
    """One line per training problem recorded in a run (not converged, collapsed latent space)."""
    from darkflow.analysis.report import training_flags

    return [f"- {name}: {line}" for name in RUNS for line in training_flags(options.out / "runs" / name)]


def _cut_labels(fixed: str | None, oracle: str | None) -> list[tuple[str, str]]:
    """(cut, its labels) for the best fixed cut and the oracle cut of one signal (one entry when they coincide)."""
    out: dict[str, list[str]] = {}
    for cut, label in ((fixed, "best fixed cut"), (oracle, "oracle")):
        if cut:
            out.setdefault(cut, []).append(label)
    return [(cut, "; ".join(labels)) for cut, labels in out.items()]


def _auc(entry, signal: str) -> float:
    row = entry.rows.get(signal)
    return float(row["auc"]) if row else float("nan")


def comparison(options: DemoOptions, flag_lines: list[str] | None = None) -> Path:
    """Write ``OUT/COMPARISON.md``: the samples with N_eff, every model and cut on every signal with intervals."""
    from darkflow.analysis import compare
    from darkflow.analysis.scan import eps_label

    models = {name: json.loads((options.out / "runs" / name / "scan" / "metrics.json").read_text()) for name in RUNS}
    first = next(iter(models.values()))
    keys = [eps_label(e) for e in first["eps_b"]]
    entries = [compare.entries_from_metrics(name, m, run_score(options, name)) for name, m in models.items()]
    cut_path = options.out / "cuts" / "scan" / "metrics.json"
    cuts = compare.cut_entries(json.loads(cut_path.read_text())) if cut_path.is_file() else []
    deepest = compare.deepest_resolved(entries + cuts, keys)
    fixed = compare.best_fixed_cut(cuts, list(SIGNALS), deepest)
    calib = first["roles"]["calibration"]
    resolved = [k for k in keys if any(r.get(f"resolved@{k}") for r in first["rows"])]
    statement = (f"Resolved working points (eps_B * N_eff(calibration) >= {first['min_effective_events']:g}, N_eff = "
                 f"{calib['n_eff']:,.0f}): {', '.join(resolved) or 'none'}; not resolved: "
                 f"{', '.join(k for k in keys if k not in resolved) or 'none'}.")
    if f"{FLAG_EPS:g}" not in [f"{float(k):g}" for k in resolved]:
        statement += (f" **eps_B = {FLAG_EPS:g} is not resolved here**: the calibration sample would need N_eff >= "
                      f"{first['min_effective_events'] / FLAG_EPS:,.0f}" + (" (quick mode)." if options.quick else "."))
    lines = ["# DarkFlow demo: model comparison", "",
             f"Pythia 8 SM mixture, channel `{options.channel}`; four disjoint SM samples, each generated with its own "
             f"seed: training ({options.sm_events:,} generated events, split by the run into training and validation), "
             f"calibration and test ({options.eval_events:,} generated events each); {options.signal_events:,} "
             f"generated events per signal; at most {options.epochs} epochs with early stopping"
             f"{'' if options.quick else ' (the density baseline: 300)'}"
             f"{' (quick mode: small models)' if options.quick else ''}. Score `total`; one training seed per model "
             "(the seed spread is in the physics benchmark, benchmarks/RESULTS.md).", "",
             "## Samples and their roles", "", *compare.roles_table(first["roles"]), "", statement, ""]
    lines += ["## Models and one-variable cuts, per signal", "",
              "AUC ± its Poisson-bootstrap standard deviation (signal against the test sample); eps_S at each "
              "eps_B with its central 68% interval, thresholds set on the calibration sample. **Bold**: best in "
              f"the column; {compare.APPROX}: consistent with the best within the uncertainties (no significant "
              "difference). Cut rows (`hlf:`) need no training: the event's high-level feature is the score. "
              f"*Best fixed cut*: one feature for every signal, best median eps_S at eps_B = {deepest}; *oracle*: "
              "the best feature for this signal, chosen knowing the signal.", ""]
    oracles = {s: compare.oracle_cut(cuts, s, deepest) for s in SIGNALS}
    shown = [c for c in cuts if c.name in (fixed, *oracles.values())
             or max(_auc(c, s) for s in SIGNALS) >= MIN_CUT_AUC]
    for signal in SIGNALS:
        labels = dict(_cut_labels(fixed, oracles[signal]))
        lines += [f"### {signal}", "", *compare.signal_table(entries + shown, signal, keys, labels), ""]
    hidden = [c.name for c in cuts if c not in shown]
    if hidden:
        lines += [f"Cuts with AUC below {MIN_CUT_AUC} on every signal are not shown ({', '.join(hidden)}); they are in "
                  "`cuts/scan/metrics.csv`.", ""]
    inverted = [f"- {e.name} on {s}: AUC {r['auc']:.3f} < 0.5 (inverted: the SM test sample scores higher)"
                for e in entries for s, r in e.rows.items() if r["auc"] < 0.5]
    problems = inverted + _diagnostics(options)
    lines += ["## Flags", "", *(problems or ["None: every model converged, no collapsed latent space, no inverted "
                                              "score."]), ""]
    lines += ["## Thresholds: statistics on the calibration sample and closure on the test sample", "",
              "The background efficiency each threshold achieves on the calibration sample (at most the target: "
              "the threshold is a calibration score), with the effective number of calibration events above it, "
              "and the efficiency of the independent test sample above the same threshold with its 68% interval: "
              "the two should agree within the test interval.", "",
              *compare.threshold_table(models, {name: run_score(options, name) for name in models}, keys), ""]
    lines += ["## ROC curves", "", "Every model, one plot per signal, with the best fixed cut and the signal's oracle "
              f"cut (test sample; curves stop where eps_B < {first['min_effective_events']:g}/N_eff of the test "
              "sample).", ""]
    cut_curves = {s: [(f"cut {c} ({labels})", c) for c, labels in _cut_labels(fixed, oracles[s])] for s in SIGNALS}
    for path in comparison_plots(options, cut_curves):
        lines.append(f"![{path.stem}]({path.relative_to(options.out).as_posix()})")
    lines += ["", "Reports: " + ", ".join(f"[{n}](runs/{n}/report/REPORT.md)" for n in RUNS), ""]
    if flag_lines:
        lines += [f"## Candidates at eps_B = {FLAG_EPS:g}", "", *flag_lines, ""]
    lines += ["## Log", "", *(f"- {m}" for m in options.log if "reused" not in m),
              f"- total time {time.perf_counter() - options.start:.0f} s", ""]
    out = options.out / "COMPARISON.md"
    write_text_atomic(out, "\n".join(lines))
    return out


def demo(options: DemoOptions) -> Path:
    """Run the whole demo into ``options.out``; returns the path of ``COMPARISON.md``."""
    from darkflow.fileio import check_output

    options.start = time.perf_counter()
    check_output(options.out, directory=True)
    options.out.mkdir(exist_ok=True)
    if options.fresh:
        for name in ["runs", "cuts", "candidates", *(f"{label}.h5" for label in SM_SAMPLES),
                     *(f"{s}.h5" for s in SIGNALS)]:
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
    flag_lines = _flag(options)
    out = comparison(options, flag_lines)
    _say(options, f"6/6 comparison: {out} ({time.perf_counter() - options.start:.0f} s in all)")
    return out
