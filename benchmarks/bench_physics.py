"""Physics benchmark: every model and flow on a generated SM mixture and BSM signals, 3 seeds each.

One command runs the whole chain, resumably, under ``--work`` (default ``benchmarks/work/full``)::

    generated/PROC.root      ``darkflow generate`` per process (SM and signals), fixed seed
    sm_all.h5                the SM mixture after the benchmark channel (``data_prep/channels/meff200.yaml``)
    sm_train.h5, sm_calibration.h5, sm_test.h5
                             a fixed split of it into three disjoint files: the training file (the model's own
                             train/validation split of it changes with the seed), the calibration file
                             (thresholds) and the test file (AUC, eps_S, eps_B)
    SIGNAL.h5                each signal after the same channel
    runs/MODEL/sNN/          one training run per model and seed: model.pt, train.json, scores.h5, scan/,
                             result.json (the unit is done when result.json exists)
    cuts/                    the one-variable cuts (``hlf:`` scores, no training) scanned the same way
    summary.json             the table rows (mean and spread over seeds), also recorded in
                             ``benchmarks/results/bench_physics.json`` for ``make_results.py``

Every file appears only when complete (``darkflow`` writes atomically), so an interrupted run redoes only the
unit it was in. Trainings of different (model, seed) units are independent: ``--jobs N`` runs N at a time,
each with ``cores / N`` torch threads. ``--estimate`` times one epoch and one scoring pass of every model on a
small slice of the training file and prints the extrapolated wall time of the full benchmark.

Usage::

    python benchmarks/bench_physics.py                 # the full benchmark (about 75 min on 2 cores)
    python benchmarks/bench_physics.py --quick         # tiny sizes, for the tests (< 1 min)
    python benchmarks/bench_physics.py --sm-scale 0.15 --models conv_none,conv_planar,graph_planar \\
        --seeds 1 --work benchmarks/work/medium --estimate     # a medium run plus the extrapolation
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _record import record  # noqa: E402

SCRIPT = "bench_physics"
CHANNEL = "meff200"  # data_prep/channels/meff200.yaml
FLOWS = ("none", "planar", "sylvester-orthogonal", "sylvester-householder", "sylvester-triangular", "iaf", "maf",
         "nsf-ar", "convflow", "cnf")
EPS = ("1e-2", "1e-3")
METRICS = ("auc",) + tuple(f"eps_s@{e}" for e in EPS)
BACKGROUND = "sm_test"
CALIBRATION = "sm_calibration"
ROW_KEYS = ("auc", "auc_err", *(f"{p}@{e}" for e in EPS for p in ("eps_s", "eps_s_lo", "eps_s_hi", "eps_b", "thr",
                                                                   "n_eff_b_above", "eps_b_test")))
SPLIT_SEED = 12345  # the fixed train/test split of the SM mixture: the data do not change with the seed


def _models() -> dict[str, tuple[str, dict[str, Any]]]:
    """Benchmark model name -> (model config, overrides)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for encoder, config in (("conv", "convvae"), ("graph", "graphvae")):
        for flow in FLOWS:
            out[f"{encoder}_{flow}"] = (config, {"model.flow": flow})
    out["density"] = ("density", {})
    out["isoforest"] = ("isoforest", {})
    return out


MODELS = _models()


@dataclass
class Sizes:
    """Everything that fixes the data and the training: a work folder holds one of these (``config.json``)."""

    sm_events: dict[str, int]
    signal_events: dict[str, int]
    train_events: int  # events in sm_train.h5 (the training API splits val_fraction of them off for validation)
    epochs: int
    patience: int
    batch_size: int
    gen_seed: int = 1
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    sm_scale: float = 1.0

    def scaled(self, scale: float) -> Sizes:
        """The same sizes with every generated and training count multiplied by ``scale``."""
        return Sizes({k: max(20, round(v * scale)) for k, v in self.sm_events.items()},
                     {k: max(20, round(v * scale)) for k, v in self.signal_events.items()},
                     max(200, round(self.train_events * scale)), self.epochs, self.patience, self.batch_size,
                     self.gen_seed, self.model_overrides, scale * self.sm_scale)


# The full benchmark. Generated counts per process are chosen so that about 110k SM events pass the channel
# (m_eff > 200 GeV keeps ~95% of qcd, ttbar and zjets_nunu, ~28% of wjets and 10-40% of the small processes;
# 77.6% of this mixture in a 28k-event run); the mixture is weighted by cross-section through each file's
# weights, whatever the counts. Sizes: from `--estimate` on that run (one-thread CPU time per epoch and per
# scored event of every model, and per generated event), 10 epochs and 30k training events extrapolate to
# ~44 min on 2 quiet cores and 15 epochs to ~60 min (every run at its maximum epochs; early stopping only
# shortens it), which leaves room under the 2-hour limit for a busier machine.
FULL = Sizes(
    sm_events={"qcd": 70000, "ttbar": 22000, "wjets": 20000, "zjets_nunu": 20000, "zjets_ll": 3000,
               "gammajets": 3000, "diboson": 3000, "single_top": 3000},
    signal_events={"zprime_ttbar": 3000, "dm_monojet": 3000, "gluino": 3000, "leptoquark": 3000,
                   "hidden_valley": 3000},
    train_events=30000, epochs=15, patience=3, batch_size=256,
    model_overrides={},  # every model at its default config (models/*.yaml), only the flow changes
)
QUICK = Sizes(
    sm_events={"qcd": 240, "ttbar": 120, "wjets": 120, "zjets_nunu": 120},
    signal_events={"zprime_ttbar": 60, "dm_monojet": 60, "gluino": 60, "leptoquark": 60},
    train_events=300, epochs=1, patience=1, batch_size=128,
    model_overrides={
        "convvae": {"model.latent": 4, "model.hidden": 32, "model.channels": [8, 16], "model.context": 8},
        "graphvae": {"model.latent": 4, "model.hidden": 32, "model.channels": [16, 16], "model.context": 8},
        "density": {"model.flow_options": {"num_layers": 1, "hidden_features": 16}},
    },
)
QUICK_MODELS = ("conv_none", "conv_planar", "graph_planar", "density", "isoforest")


# --------------------------------------------------------------------------------------------------- utils


def _say(message: str) -> None:
    print(f"[physics] {message}", flush=True)


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _write_json(path: Path, payload: Any) -> None:
    from darkflow.fileio import write_text_atomic

    write_text_atomic(path, json.dumps(payload, indent=1, default=float) + "\n")


def _channel_yaml() -> str:
    from darkflow.data_prep.builtin import resolve

    return resolve("channels", CHANNEL).read_text()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Timings:
    """Seconds spent per unit of work, kept in ``WORK/timings.json`` so that resumed runs add up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}

    def add(self, key: str, **values: Any) -> None:
        self.data[key] = values
        _write_json(self.path, self.data)


# ------------------------------------------------------------------------------------------- data units


def generate_all(work: Path, sizes: Sizes, workers: int, timings: Timings, progress: bool = True) -> None:
    """``darkflow generate`` for every SM process and signal whose ROOT file is not there yet."""
    from darkflow.generate.run import GenerateConfig, generate

    gen = work / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    todo = {**sizes.sm_events, **sizes.signal_events}
    for k, (proc, events) in enumerate(todo.items(), 1):
        if (gen / f"{proc}.root").is_file():
            _say(f"generate {k}/{len(todo)} {proc}: exists, reused")
            continue
        _say(f"generate {k}/{len(todo)} {proc}: {events} events, {workers} worker(s)")
        start, cpu = time.perf_counter(), time.process_time() + _cpu_children()
        generate(GenerateConfig(process=proc, events=events, seed=sizes.gen_seed, out=str(gen), workers=workers),
                 progress=progress)
        timings.add(f"generate/{proc}", seconds=time.perf_counter() - start, events=events, workers=workers,
                    cpu=time.process_time() + _cpu_children() - cpu)


def _prepare(inputs: list[Path], out: Path, label: str, timings: Timings):
    from darkflow.data_prep.prepare import PrepareConfig, prepare

    start = time.perf_counter()
    result = prepare(PrepareConfig(inputs=[str(p) for p in inputs], out=str(out), label=label, channel=CHANNEL),
                     progress=False)
    timings.add(f"prepare/{label}", seconds=time.perf_counter() - start, read=result.n_read,
                selected=result.n_selected)
    _say(f"prepare {label}: {result.n_selected} of {result.n_read} events pass the channel -> {out.name}")
    return result


def _subset(src: Path, out: Path, indices, label: str) -> None:
    """Write the events ``indices`` (sorted) of ``src`` to ``out`` with ``label`` (atomically)."""
    import numpy as np

    from darkflow.events import subset

    subset(src, out, np.asarray(indices), label=label)


def prepare_all(work: Path, sizes: Sizes, timings: Timings) -> dict[str, Any]:
    """The SM mixture after the channel, its fixed train/test split, and every signal; returns data facts."""
    import numpy as np

    from darkflow.events import EventFile

    gen = work / "generated"
    sm_all = work / "sm_all.h5"
    if not sm_all.is_file():
        _prepare([gen / f"{p}.root" for p in sizes.sm_events], sm_all, "sm", timings)
    train, calib, test = work / "sm_train.h5", work / f"{CALIBRATION}.h5", work / f"{BACKGROUND}.h5"
    if not (train.is_file() and calib.is_file() and test.is_file()):
        n = EventFile(sm_all).n_events
        if n < sizes.train_events + 100:
            from darkflow.errors import DataError

            raise DataError(f"only {n} SM events pass the channel; the training file alone needs {sizes.train_events}")
        order = np.random.default_rng(SPLIT_SEED).permutation(n)
        half = sizes.train_events + (n - sizes.train_events) // 2
        _subset(sm_all, train, order[: sizes.train_events], "sm_train")
        _subset(sm_all, calib, order[sizes.train_events : half], CALIBRATION)
        _subset(sm_all, test, order[half:], BACKGROUND)
    for name in sizes.signal_events:
        if not (work / f"{name}.h5").is_file():
            _prepare([gen / f"{name}.root"], work / f"{name}.h5", name, timings)
    return data_facts(work, sizes)


def data_facts(work: Path, sizes: Sizes) -> dict[str, Any]:
    """Events, effective events and cross-section per SM process and file, events per signal."""
    import numpy as np

    from darkflow.analysis.metrics import effective_count as neff
    from darkflow.events import EventFile

    facts: dict[str, Any] = {"channel": CHANNEL, "files": {}, "processes": {}}
    with EventFile(work / "sm_all.h5") as events:
        part = events.read(None, ("weight", "process"))
        w, proc = part["weight"], part["process"]
        names = events.process_names
        facts["sm_read"] = int(events.attrs["n_read"])
        for i, name in enumerate(names):
            sel = proc == i
            facts["processes"][name] = {"generated": sizes.sm_events.get(name), "selected": int(sel.sum()),
                                        "sigma_after_channel_pb": float(w[sel].sum()), "n_eff": neff(w[sel])}
    for name in ["sm_all", "sm_train", CALIBRATION, BACKGROUND, *sizes.signal_events]:
        with EventFile(work / f"{name}.h5") as events:
            w = events.read(None, ("weight",))["weight"]
            facts["files"][name] = {"events": int(len(w)), "n_eff": neff(w), "sigma_pb": float(np.sum(w))}
            if name in sizes.signal_events:
                facts["files"][name]["generated"] = sizes.signal_events[name]
    return facts


# ------------------------------------------------------------------------------------------- model units


def train_config(model: str, seed: int, sizes: Sizes, epochs: int | None = None):
    """The training config of benchmark model ``model`` for ``seed``."""
    from darkflow.train.run import load_train_config

    config_name, overrides = MODELS[model]
    overrides = dict(overrides) | dict(sizes.model_overrides.get(config_name, {}))
    overrides |= dict(sizes.model_overrides.get(model, {}))
    overrides |= {"training.seed": seed}
    if config_name == "isoforest":
        overrides |= {"model.seed": seed}
    else:
        overrides |= {"training.epochs": epochs or sizes.epochs, "training.patience": sizes.patience,
                      "training.batch_size": sizes.batch_size}
    return load_train_config(config_name, overrides)


def run_unit(work: str, model: str, seed: int, sizes_dict: dict[str, Any]) -> dict[str, Any]:
    """Train, score and scan one (model, seed); writes ``result.json`` last and returns it."""
    import warnings

    from darkflow.analysis.scan import ScanConfig, scan
    from darkflow.train.run import MODEL_FILE, TrainOptions, train
    from darkflow.train.rundir import staging_path
    from darkflow.train.score import score

    sizes = Sizes(**sizes_dict)
    root = Path(work)
    run = root / "runs" / model / f"s{seed:02d}"
    start = time.perf_counter()
    info_path = run / "train.json"
    if not ((run / MODEL_FILE).is_file() and info_path.is_file()):
        if run.exists():
            shutil.rmtree(run)  # an interrupted training: redo it from scratch
        shutil.rmtree(staging_path(run), ignore_errors=True)
        run.parent.mkdir(parents=True, exist_ok=True)
        config = train_config(model, seed, sizes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's hints (few workers, ...) would drown the progress
            summary = train(config, TrainOptions(data=str(root / "sm_train.h5"), out=str(run), progress=False))
        _write_json(info_path, {"seconds": time.perf_counter() - start, "epochs": summary["epochs"],
                                "best_val_loss": summary["best_val_loss"], "threads": _threads()})
    info = json.loads(info_path.read_text())
    scores = run / "scores.h5"
    t_score = time.perf_counter()
    inputs = [root / f"{CALIBRATION}.h5", root / f"{BACKGROUND}.h5"] + [root / f"{s}.h5" for s in sizes.signal_events]
    if not scores.is_file():
        score(run, inputs, scores)
    score_seconds = time.perf_counter() - t_score
    result = scan(ScanConfig(scores=scores, background=BACKGROUND, calibration=CALIBRATION, out=run / "scan",
                             score="total", signals=",".join(sizes.signal_events), no_plots=True))
    rows = {row["signal"]: {k: row.get(k) for k in ROW_KEYS} for row in result.rows}
    payload = {"model": model, "seed": seed, "train_seconds": info["seconds"], "epochs": info["epochs"],
               "best_val_loss": info["best_val_loss"], "score_seconds": score_seconds,
               "n_eff_calibration": result.thresholds["calibration"]["n_eff"],
               "n_eff_test": result.roles.test.n_eff,
               "unit_seconds": time.perf_counter() - start, "signals": rows}
    _write_json(run / "result.json", payload)
    return payload


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def run_pool(function: Callable[..., dict[str, Any]], units: list[tuple], jobs: int, threads: int,
             done: Callable[[tuple, dict[str, Any], list[tuple]], None],
             announce: Callable[[tuple], None] | None = None) -> None:
    """``function(*unit)`` for every unit, ``jobs`` at a time (in spawned processes with ``threads`` torch threads
    each when ``jobs > 1``); ``done(unit, result, units still to finish)`` after each, in the main process."""
    if jobs == 1:
        _init_worker(threads)
        for i, unit in enumerate(units):
            if announce:
                announce(unit)
            done(unit, function(*unit), units[i + 1 :])
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        pending: dict[Future, tuple] = {}
        queue = list(units)
        while queue or pending:
            while queue and len(pending) < jobs:
                unit = queue.pop(0)
                if announce:
                    announce(unit)
                pending[pool.submit(function, *unit)] = unit
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = pending.pop(future)
                done(unit, future.result(), queue + list(pending.values()))


def run_units(work: Path, sizes: Sizes, models: list[str], seeds: list[int], jobs: int,
              timings: Timings) -> list[dict[str, Any]]:
    """Every (model, seed) unit, skipping those with a result, ``jobs`` at a time; progress and ETA."""
    units = [(m, s) for s in seeds for m in models]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    todo = []
    for m, s in units:
        done = work / "runs" / m / f"s{s:02d}" / "result.json"
        if done.is_file():
            results[(m, s)] = json.loads(done.read_text())
        else:
            todo.append((m, s))
    if results:
        _say(f"models: {len(results)} of {len(units)} (model, seed) units already done, reused")
    threads = max(1, _cores() // jobs)
    durations: dict[str, list[float]] = {}
    for r in results.values():
        durations.setdefault(r["model"], []).append(r["unit_seconds"])
    start = time.perf_counter()

    def eta(remaining: list[tuple[str, int]]) -> float:
        every = [d for ds in durations.values() for d in ds]
        if not every:
            return float("nan")
        mean = sum(every) / len(every)
        return sum((sum(durations[m]) / len(durations[m])) if m in durations else mean for m, _ in remaining) / jobs

    def done(key: tuple[str, int], payload: dict[str, Any], remaining: list[tuple[str, int]]) -> None:
        results[key] = payload
        durations.setdefault(key[0], []).append(payload["unit_seconds"])
        timings.add(f"unit/{key[0]}/s{key[1]:02d}", seconds=payload["unit_seconds"],
                    train_seconds=payload["train_seconds"], score_seconds=payload["score_seconds"],
                    epochs=payload["epochs"], jobs=jobs, threads=threads)
        left = eta(remaining)
        auc = [v["auc"] for v in payload["signals"].values() if v["auc"] is not None]
        _say(f"[{len(results)}/{len(units)}] {key[0]} seed {key[1]}: {payload['unit_seconds']:.0f} s "
             f"({payload['epochs']} epochs), mean AUC {sum(auc) / max(1, len(auc)):.3f} | elapsed "
             f"{_clock(time.perf_counter() - start)}, ETA {_clock(left) if math.isfinite(left) else '?'}")

    run_pool(functools.partial(run_unit, str(work), sizes_dict=asdict(sizes)), todo, jobs, threads, done,
             announce=lambda unit: _say(f"train {unit[0]} seed {unit[1]} ..."))
    return [results[u] for u in units]


# ------------------------------------------------------------------------------------------- aggregation


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, std


def _stat(signal_row: dict[str, Any], metric: str) -> float | None:
    """The statistical uncertainty of one seed's value: the AUC's bootstrap deviation, or half the interval."""
    if metric == "auc":
        return signal_row.get("auc_err")
    key = metric.split("@", 1)[1]
    lo, hi = signal_row.get(f"eps_s_lo@{key}"), signal_row.get(f"eps_s_hi@{key}")
    return None if lo is None or hi is None else (hi - lo) / 2


def aggregate(results: list[dict[str, Any]], models: list[str], signals: list[str]) -> list[dict[str, Any]]:
    """One row per (model, signal, metric): mean and sample standard deviation over the seeds, and the mean
    statistical uncertainty of one seed's value (``stat``: from the finite test and calibration samples)."""
    rows = []
    for model in models:
        runs = [r for r in results if r["model"] == model]
        for signal in signals:
            for metric in METRICS:
                values = [r["signals"][signal][metric] for r in runs if signal in r["signals"]]
                mean, std = _mean_std(values)
                stat, _ = _mean_std([_stat(r["signals"][signal], metric) for r in runs if signal in r["signals"]])
                rows.append({"name": f"{model} / {signal} / {metric}", "model": model, "signal": signal,
                             "metric": metric, "value": mean, "std": std, "stat": stat, "unit": "",
                             "n_seeds": len(values), "n_resolved": sum(v is not None for v in values),
                             "per_seed": values, "reference": None, "target": None, "ok": None})
    return rows


def run_cuts(work: Path, sizes: Sizes, scores: Path) -> list[dict[str, Any]]:
    """The one-variable cut baselines: every ``hlf:`` score of a scores file, scanned like the models.

    They need no training, so they have no seeds: one result per cut, named after the feature.
    """
    from darkflow.analysis.scan import ScanConfig, scan
    from darkflow.analysis.thresholds import read_scores

    file = read_scores(scores)
    cuts = sorted(set.intersection(*(set(s.scores) for s in file.samples.values())))
    cuts = [c for c in cuts if c.startswith("hlf:")]
    if not cuts:
        return []
    (work / "cuts").mkdir(exist_ok=True)
    result = scan(ScanConfig(scores=scores, background=BACKGROUND, calibration=CALIBRATION, out=work / "cuts" / "scan",
                             score=",".join(cuts), signals=",".join(sizes.signal_events), no_plots=True))
    out = []
    for cut in cuts:
        rows = {r["signal"]: {k: r.get(k) for k in ROW_KEYS} for r in result.rows if r["score"] == cut}
        out.append({"model": cut, "seed": 0, "signals": rows})
    return out


def model_costs(results: list[dict[str, Any]], models: list[str]) -> dict[str, dict[str, float]]:
    """Mean training seconds, epochs and scoring seconds per model."""
    out = {}
    for model in models:
        runs = [r for r in results if r["model"] == model]
        out[model] = {k: sum(r[k] for r in runs) / len(runs) for k in ("train_seconds", "epochs", "score_seconds",
                                                                        "unit_seconds")}
    return out


# ------------------------------------------------------------------------------------------- estimate


def _cpu_children() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def estimate(work: Path, sizes: Sizes, full: Sizes, models: list[str], seeds: int, timings: Timings,
             n_events: int = 6000, gen_events: int = 600, progress: bool = True) -> dict[str, Any]:
    """Time two epochs and one scoring pass of every model on ``n_events`` and extrapolate the full benchmark.

    Each model runs on one torch thread, as with ``--jobs 2`` on 2 cores, and both its wall time and its CPU
    time are kept: on a machine shared with other work the wall time is pessimistic, while the CPU time of
    a one-thread run is what that run would take alone.
    """
    import csv
    import warnings

    from darkflow.events import EventFile
    from darkflow.train.run import TrainOptions, train
    from darkflow.train.rundir import staging_path
    from darkflow.train.score import score

    est = work / "estimate"
    est.mkdir(exist_ok=True)
    small = est / "sm_small.h5"
    if not small.is_file():
        n_events = min(n_events, EventFile(work / "sm_train.h5").n_events)
        _subset(work / "sm_train.h5", small, range(n_events), "sm_small")
    n_events = EventFile(small).n_events
    if not any(k.startswith("generate/") and "cpu" in v for k, v in timings.data.items()):
        for proc in ("qcd", "wjets", "zjets_nunu", "gluino"):  # a generation rate with CPU times, if none yet
            key = f"estimate-generate/{proc}"
            if key not in timings.data:
                from darkflow.generate.run import GenerateConfig, generate

                start, cpu = time.perf_counter(), time.process_time() + _cpu_children()
                generate(GenerateConfig(process=proc, events=gen_events, seed=99, out=str(est / "generated"),
                                        workers=2), progress=progress)
                timings.add(key, seconds=time.perf_counter() - start, events=gen_events, workers=2,
                            cpu=time.process_time() + _cpu_children() - cpu)
    _init_worker(1)
    cached = est / "costs.json"
    per_model: dict[str, dict[str, float]] = json.loads(cached.read_text()) if cached.is_file() else {}
    if any(m not in per_model for m in models):  # a first, untimed run pays the one-off imports and warm-up
        for folder in (est / "warm-up", staging_path(est / "warm-up")):
            shutil.rmtree(folder, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(train_config(models[0], 1, sizes, epochs=1), TrainOptions(data=str(small), out=str(est / "warm-up"),
                                                                            progress=False))
    for model in models:
        if model in per_model:
            continue
        run = est / model
        for folder in (run, staging_path(run)):
            shutil.rmtree(folder, ignore_errors=True)
        config = train_config(model, 1, sizes, epochs=2)
        start, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = train(config, TrainOptions(data=str(small), out=str(run), progress=False))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        epoch_s = 0.0
        if (run / "metrics.csv").is_file():
            with open(run / "metrics.csv") as handle:
                secs = [float(r["seconds"]) for r in csv.DictReader(handle)]
            epoch_s = secs[-1] - secs[-2] if len(secs) >= 2 else (secs[-1] if secs else 0.0)
        epochs = max(1, summary["epochs"]) if epoch_s else 0
        cpu_share = cpu / wall if wall > 0 else 1.0
        start, t_cpu = time.perf_counter(), time.process_time()
        score(run, [small], est / f"{model}.scores.h5")
        score_s, score_cpu = time.perf_counter() - start, time.process_time() - t_cpu
        per_model[model] = {"events": n_events, "epoch_seconds": epoch_s, "epoch_cpu": epoch_s * cpu_share,
                            "overhead_seconds": max(0.0, wall - epoch_s * epochs),
                            "overhead_cpu": max(0.0, wall - epoch_s * epochs) * cpu_share,
                            "score_seconds_per_event": score_s / n_events, "score_cpu_per_event": score_cpu / n_events}
        _write_json(cached, per_model)
        _say(f"estimate {model}: one epoch on {n_events} events {epoch_s:.2f} s ({epoch_s * cpu_share:.2f} s CPU), "
             f"scoring {n_events / score_s:.0f} ev/s ({n_events / max(score_cpu, 1e-9):.0f} ev/s of CPU)")
    return extrapolate(per_model, full, seeds, timings, work)


def extrapolate(per_model: dict[str, dict[str, float]], full: Sizes, seeds: int, timings: Timings,
                work: Path, cores: int = 2) -> dict[str, Any]:
    """The full benchmark's time on ``cores`` cores, from wall times measured here and from CPU times.

    Generation runs ``cores`` workers; the models run ``cores`` one-thread jobs at a time (``--jobs cores``).
    Training time assumes every run goes to the maximum number of epochs (early stopping only shortens it).
    """
    gen = [v for k, v in timings.data.items() if k.startswith("generate/") and "cpu" in v]
    gen = gen or [v for k, v in timings.data.items() if k.startswith("estimate-generate/")]
    n_gen = sum(full.sm_events.values()) + sum(full.signal_events.values())
    facts = json.loads((work / "facts.json").read_text()) if (work / "facts.json").is_file() else {}
    efficiency = (facts["files"]["sm_all"]["events"] / facts["sm_read"]) if facts else 0.8
    n_sm = sum(full.sm_events.values()) * efficiency
    n_scored = n_sm - full.train_events + sum(full.signal_events.values())  # calibration + test + signals
    out: dict[str, Any] = {"events_generated": n_gen, "sm_after_channel": n_sm, "scored_per_unit": n_scored,
                           "seeds": seeds, "cores": cores, "per_model": {}}
    for kind, suffix in (("wall", "seconds"), ("cpu", "cpu")):
        per_event = (sum(v[suffix] for v in gen) / sum(v["events"] for v in gen)) if gen else float("nan")
        gen_s = n_gen * per_event / (1 if kind == "wall" else cores)
        models_s = 0.0
        for model, c in per_model.items():
            key = "seconds" if kind == "wall" else "cpu"
            epoch = c["epoch_seconds" if kind == "wall" else "epoch_cpu"] * full.train_events / c["events"]
            overhead = c["overhead_" + key]
            if MODELS[model][0] == "isoforest":  # one fit; its cost grows with the events flattened
                train_s = overhead * max(1.0, full.train_events / c["events"])
            else:
                train_s = overhead + full.epochs * epoch
            score_s = c["score_seconds_per_event" if kind == "wall" else "score_cpu_per_event"] * n_scored
            out["per_model"].setdefault(model, {})[kind] = {"train": train_s, "score": score_s}
            models_s += seeds * (train_s + score_s + 2.0) / cores
        prepare_s = n_sm / 20_000 + 10
        out[kind] = {"generation": gen_s, "prepare": prepare_s, "models": models_s,
                     "total": gen_s + prepare_s + models_s}
    load = os.getloadavg()[1] if hasattr(os, "getloadavg") else float("nan")
    _say(f"extrapolation to the full benchmark ({n_gen} events generated, ~{n_sm:.0f} SM after the channel, "
         f"{full.train_events} training events, {full.epochs} epochs max, {seeds} seeds, {cores} cores, "
         f"--jobs {cores}); per model and seed, seconds of training + scoring:")
    _say(f"{'model':<28s} {'wall here':>10s} {'CPU':>8s}")
    for model, r in sorted(out["per_model"].items(), key=lambda kv: -sum(kv[1]["cpu"].values())):
        _say(f"{model:<28s} {sum(r['wall'].values()):10.0f} {sum(r['cpu'].values()):8.0f}")
    for kind, what in (("wall", f"at the wall times measured here (load average {load:.1f})"),
                       ("cpu", "from CPU times (the same machine with nothing else running)")):
        t = out[kind]
        _say(f"{what}: generation {_clock(t['generation'])}, preparation ~{_clock(t['prepare'])}, models "
             f"{_clock(t['models'])}; TOTAL {_clock(t['total'])}")
    out["load_average"] = load
    _write_json(work / "extrapolation.json", out)
    return out


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 5 models (the tests)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default benchmarks/work/full|quick)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="trainings in parallel, each with cores / jobs torch threads (default: one per core)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3)")
    parser.add_argument("--models", default="", help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--sm-scale", type=float, default=1.0, help="scale every event count (a medium run)")
    parser.add_argument("--estimate", action="store_true",
                        help="also time every model on a small slice and print the full benchmark's wall time")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for bench_physics.json (default benchmarks/results; quick: WORK/results)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars from generation")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or _cores()
    if args.jobs < 1 or args.seeds < 1 or not args.sm_scale > 0:
        parser.error("--jobs and --seeds must be at least 1 and --sm-scale positive")
    base = QUICK if args.quick else FULL
    sizes = base.scaled(args.sm_scale) if args.sm_scale != 1.0 else base
    models = [m.strip() for m in args.models.split(",") if m.strip()] or list(QUICK_MODELS if args.quick else MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(MODELS)}")
    work = args.work or HERE / "work" / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "config.json"
    if config_path.is_file():
        stored = json.loads(config_path.read_text())
        if stored != json.loads(json.dumps(asdict(sizes))):
            parser.error(f"{work} holds a run with other sizes ({config_path}); use another --work or delete it")
    else:
        _write_json(config_path, asdict(sizes))
    seeds = list(range(1, args.seeds + 1))
    timings = Timings(work / "timings.json")
    start = time.perf_counter()
    _say(f"work folder {work}; {len(models)} model(s) x {len(seeds)} seed(s), {args.jobs} job(s)")
    generate_all(work, sizes, min(_cores(), 2 if args.quick else _cores()), timings, progress=not args.no_progress)
    facts = prepare_all(work, sizes, timings)
    _write_json(work / "facts.json", facts)
    sm = facts["files"]
    _say(f"SM mixture: {sm['sm_all']['events']} events after the channel ({sm['sm_all']['n_eff']:.0f} effective), "
         f"training file {sm['sm_train']['events']}, calibration file {sm[CALIBRATION]['events']} "
         f"({sm[CALIBRATION]['n_eff']:.0f} effective), test file {sm[BACKGROUND]['events']} "
         f"({sm[BACKGROUND]['n_eff']:.0f} effective)")
    if args.estimate:
        estimate(work, sizes, FULL if not args.quick else sizes, list(MODELS) if not args.quick else models,
                 3, timings, gen_events=60 if args.quick else 600, progress=not args.no_progress)
    results = run_units(work, sizes, models, seeds, args.jobs, timings)
    signals = list(sizes.signal_events)
    cut_results = run_cuts(work, sizes, work / "runs" / models[0] / f"s{seeds[0]:02d}" / "scores.h5")
    cut_names = [r["model"] for r in cut_results]
    rows = aggregate(results + cut_results, models + cut_names, signals)
    wall = time.perf_counter() - start
    spent = {"generate": sum(v["seconds"] for k, v in timings.data.items() if k.startswith("generate/")),
             "prepare": sum(v["seconds"] for k, v in timings.data.items() if k.startswith("prepare/")),
             "models": sum(v["seconds"] for k, v in timings.data.items() if k.startswith("unit/"))}
    extra = {"mode": "quick" if args.quick else ("full" if args.sm_scale == 1.0 else f"scaled x{args.sm_scale}"),
             "complete": (models == list(MODELS) and len(seeds) >= 3 and args.sm_scale == 1.0 and not args.quick),
             "models": models, "cuts": cut_names, "seeds": seeds, "signals": signals, "sizes": asdict(sizes), "jobs": args.jobs,
             "facts": facts, "costs": model_costs(results, models), "wall_seconds_this_run": wall,
             "seconds_spent": spent, "channel_yaml": _channel_yaml(),
             "threads_per_job": max(1, _cores() // args.jobs),
             "extrapolation": json.loads((work / "extrapolation.json").read_text())
             if (work / "extrapolation.json").is_file() else None,
             "model_configs": {m: train_config(m, 1, sizes).model_dump(mode="json")
                               for m in ("conv_none", "graph_none", "density", "isoforest")}}
    _write_json(work / "summary.json", {"rows": rows, **extra})
    results_dir = args.results or (work / "results" if args.quick else None)
    path = record(SCRIPT, rows, extra, results=results_dir)
    print_table(rows, models + cut_names, signals)
    _say(f"done in {_clock(wall)} (this run); work spent in all: generation {_clock(spent['generate'])}, "
         f"preparation {_clock(spent['prepare'])}, models {_clock(spent['models'])}; recorded in {path}")
    return 0


def print_table(rows: list[dict[str, Any]], models: list[str], signals: list[str]) -> None:
    """AUC and eps_S at 1e-3 per model and signal, mean +- spread over seeds."""
    by = {(r["model"], r["signal"], r["metric"]): r for r in rows}

    def cell(r: dict[str, Any]) -> str:
        if r["value"] is None:
            return "n/r"
        return f"{r['value']:.3f}" + (f"±{r['std']:.3f}" if r["std"] is not None else "")

    for metric in METRICS:
        print(f"\n{metric} (mean ± std over seeds; n/r: not resolved)")
        print(f"{'model':<24s}" + "".join(f"{s[:15]:>17s}" for s in signals))
        for model in models:
            print(f"{model:<24s}" + "".join(f"{cell(by[(model, s, metric)]):>17s}" for s in signals))


if __name__ == "__main__":
    raise SystemExit(main())
