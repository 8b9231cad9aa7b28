"""Run ``darkflow generate``: processes or mixtures, workers, progress, atomic outputs, cross-sections."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from darkflow import __version__
from darkflow.config import Name, StrictModel
from darkflow.data_prep.objects import ObjectDefinitions
from darkflow.errors import ConfigError
from darkflow.fileio import publish
from darkflow.generate import catalogue
from darkflow.generate.detector import load_detector
from darkflow.progress import progress_bar


class GenerateConfig(StrictModel):
    """Options of ``darkflow generate``."""

    process: Name
    events: int
    seed: int = 1
    out: Name = "generated"
    format: Literal["root", "csv", "both"] = "root"
    workers: int = 1
    detector: str = "default"
    constituents: bool = False

    @field_validator("events", "workers")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        if not 0 <= value < 2**31:
            raise ValueError("must be in [0, 2^31)")
        return value


@dataclass
class ProcessResult:
    """One generated process: files written, cross-section (pb) and speed."""

    process: str
    events: int
    sigma_pb: float
    sigma_err_pb: float
    files: list[Path]
    seconds: float


@dataclass
class GenerateResult:
    """What ``darkflow generate`` wrote: one entry per generated process (a mixture gives several)."""

    processes: list[ProcessResult]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per process: events, cross-section, speed and files."""
        return [f"{r.process}: {r.events} events, sigma = {r.sigma_pb:.4g} +- {r.sigma_err_pb:.2g} pb, "
                f"{r.events / max(r.seconds, 1e-9):.1f} events/s -> {', '.join(str(f) for f in r.files)}"
                for r in self.processes]


def cache_file() -> Path:
    """Where measured cross-sections are remembered for ``--list`` (XDG cache folder)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "darkflow" / "cross_sections.json"


def _remember(process: catalogue.Process, sigma_pb: float, err_pb: float, events: int) -> None:
    path = cache_file()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
        old = known.get(process.name)
        if old is None or old.get("events", 0) <= events or old.get("settings") != process.pythia_lines():
            known[process.name] = {"sigma_pb": sigma_pb, "err_pb": err_pb, "events": events,
                                   "settings": process.pythia_lines()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        publish(tmp, path)
    except OSError:
        pass  # a read-only home must not fail a generation run


def list_processes() -> str:
    """The catalogue as a table: name, kind, cross-section when known, description."""
    known = {}
    if cache_file().is_file():
        try:
            known = json.loads(cache_file().read_text())
        except (OSError, ValueError):
            known = {}
    lines = [f"{'process':<14s} {'kind':<4s} {'sigma (pb)':>12s}  description"]
    for name in catalogue.process_names():
        proc = catalogue.load_process(name)
        entry = known.get(name)
        sigma = (f"{entry['sigma_pb']:.4g}" if entry and entry.get("settings") == proc.pythia_lines()
                 else "not yet run")
        lines.append(f"{name:<14s} {proc.kind:<4s} {sigma:>12s}  {proc.description}")
    for name in catalogue.mixture_names():
        mix = catalogue.load_mixture(name)
        lines.append(f"{name:<14s} mix  {'':>12s}  {mix.description} ({', '.join(mix.processes)})")
    lines.append(f"(cross-sections from Pythia's own estimate in earlier runs; cache: {cache_file()})")
    return "\n".join(lines)


def _plan(config: GenerateConfig) -> list[tuple[catalogue.Process, int]]:
    """(process, events) pairs: one for a process, several for a mixture (events split by fraction)."""
    names = [n.strip() for n in config.process.split(",") if n.strip()]
    if not names:
        raise ConfigError("`process` needs at least one name")
    plan = []
    for name in names:
        if catalogue.is_mixture(name):
            mix = catalogue.load_mixture(name)
            total = sum(mix.processes.values())
            for proc, frac in mix.processes.items():
                plan.append((catalogue.load_process(proc), max(1, round(config.events * frac / total))))
        else:
            plan.append((catalogue.load_process(name), config.events))
    return plan


def generate(config: GenerateConfig, progress: bool = True) -> GenerateResult:
    """Generate every requested process into ``config.out`` (see the module docstring)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    detector = load_detector(config.detector)
    plan = _plan(config)
    return GenerateResult([
        _generate_one(proc, n, config, detector, out, progress, f" ({k}/{len(plan)})" if len(plan) > 1 else "")
        for k, (proc, n) in enumerate(plan, 1)])


def _generate_one(process, n_events, config, detector, out, progress, position: str = "") -> ProcessResult:
    from darkflow.generate.engine import MB_TO_PB, run_worker, seeds
    from darkflow.generate.writers import write_csv, write_root

    thresholds = ObjectDefinitions()
    n_workers = min(config.workers, n_events)
    shares = [n_events // n_workers + (k < n_events % n_workers) for k in range(n_workers)]
    firsts = [sum(shares[:k]) for k in range(n_workers)]
    worker_seeds = seeds(config.seed, process.name, n_workers)
    bar = progress_bar(f"generate {process.name}{position}", n_events, enabled=progress)
    workdir = tempfile.mkdtemp(prefix=f".darkflow-{process.name}-", dir=out)
    start = time.perf_counter()
    try:
        with bar:
            if n_workers == 1:
                counter = _Counter(bar)
                results = [run_worker(process, detector, thresholds, n_events, worker_seeds[0], 0, workdir, "w0",
                                      config.constituents, counter)]
            else:
                results = _run_pool(process, detector, thresholds, shares, firsts, worker_seeds, workdir, bar,
                                    config.constituents)
        n = sum(r.n_events for r in results)
        sigma = sum(r.sigma_mb * r.n_events for r in results) / n * MB_TO_PB
        err = (sum((r.sigma_err_mb * r.n_events) ** 2 for r in results) ** 0.5) / n * MB_TO_PB
        sum_w = sum(r.sum_weights for r in results)
        scale = sigma / sum_w
        parts = [p for r in results for p in r.parts]
        metadata = json.dumps({
            "darkflow_version": __version__, "process": process.name, "description": process.description,
            "kind": process.kind, "events": n, "seed": config.seed, "workers": n_workers,
            "worker_seeds": worker_seeds, "sigma_pb": sigma, "sigma_err_pb": err, "ecm_gev": 13000.0,
            "pythia_settings": process.pythia_lines(), "detector": detector.model_dump(mode="json"),
            "failed_next": sum(r.n_failed for r in results), "constituents": config.constituents,
        })
        files = []
        if config.format in ("root", "both"):
            files.append(out / f"{process.name}.root")
            write_root(files[-1], parts, scale, config.seed, metadata)
        if config.format in ("csv", "both"):
            files.append(out / f"{process.name}.csv")
            write_csv(files[-1], parts, scale, process.name)
        meta_path = out / f"{process.name}.json"
        meta_path.write_text(json.dumps(json.loads(metadata), indent=1) + "\n")
        files.append(meta_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _remember(process, sigma, err, n)
    return ProcessResult(process.name, n, sigma, err, files, time.perf_counter() - start)


class _Counter:
    """In-process stand-in for a shared counter: updates the progress bar directly."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.value = 0

    def get_lock(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.update(self.value - self.bar.n)


def _run_pool(process, detector, thresholds, shares, firsts, worker_seeds, workdir, bar, constituents):
    """One spawned process per worker; the parent follows their shared event counter."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    args = [(process, detector, thresholds, n, s, f, workdir, f"w{k}", constituents)
            for k, (n, s, f) in enumerate(zip(shares, worker_seeds, firsts, strict=True))]
    with ctx.Pool(len(shares), initializer=_init_worker, initargs=(counter,)) as pool:
        pending = pool.map_async(_pool_entry, args)
        while not pending.ready():
            pending.wait(0.2)
            bar.update(counter.value - bar.n)
        results = pending.get()
    bar.update(sum(shares) - bar.n)
    return results


_SHARED = None


def _init_worker(counter) -> None:
    global _SHARED
    _SHARED = counter


def _pool_entry(args):
    from darkflow.generate.engine import run_worker

    return run_worker(*args, counter=_SHARED)
