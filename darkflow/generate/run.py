"""Run ``darkflow generate``: processes or mixtures, workers, progress, atomic outputs, cross-sections."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from darkflow import __version__
from darkflow.config import Name, StrictModel
from darkflow.data_prep.objects import ObjectDefinitions
from darkflow.errors import ConfigError, DarkFlowError
from darkflow.fileio import atomic_output, check_output, temporary_path, write_text_atomic
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


def _read_cache() -> dict:
    try:
        known = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remember(process: catalogue.Process, sigma_pb: float, err_pb: float, events: int) -> None:
    path = cache_file()
    known = _read_cache()
    old = known.get(process.name)
    if not isinstance(old, dict) or old.get("events", 0) <= events or old.get("settings") != process.pythia_lines():
        known[process.name] = {"sigma_pb": sigma_pb, "err_pb": err_pb, "events": events,
                               "settings": process.pythia_lines()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(known, indent=1))
    except (OSError, DarkFlowError):
        pass  # a read-only home must not fail a generation run


def list_processes() -> str:
    """The catalogue as a table: name, kind, cross-section when known, description."""
    known = _read_cache()
    lines = [f"{'process':<14s} {'kind':<4s} {'sigma (pb)':>12s}  description"]
    for name in catalogue.process_names():
        proc = catalogue.load_process(name)
        entry = known.get(name)
        sigma = (f"{entry['sigma_pb']:.4g}" if isinstance(entry, dict) and entry.get("settings") == proc.pythia_lines()
                 and isinstance(entry.get("sigma_pb"), int | float) else "not yet run")
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
        raise ConfigError("process: give at least one process or mixture name (see the list of processes)")
    plan = []
    for name in names:
        if catalogue.is_mixture(name):
            mix = catalogue.load_mixture(name)
            total = sum(mix.processes.values())
            for proc, frac in mix.processes.items():
                plan.append((catalogue.load_process(proc), max(1, round(config.events * frac / total))))
        else:
            plan.append((catalogue.load_process(name), config.events))
    seen: set[str] = set()
    for proc, _ in plan:
        if proc.name in seen:
            raise ConfigError(f"process {proc.name!r} is asked for twice (its files would overwrite each other); "
                              "name each process once")
        seen.add(proc.name)
    return plan


def generate(config: GenerateConfig, progress: bool = True) -> GenerateResult:
    """Generate every requested process into the folder ``config.out``, all or nothing.

    The folder is checked before any event is generated; the files are built in a temporary folder beside it
    and moved into it (created if new; other files in it are kept) only when every process is done. A failed
    or interrupted run leaves no new file and leaves the folder as it was.
    """
    out = Path(config.out)
    detector = load_detector(config.detector)
    plan = _plan(config)
    if out.is_dir():
        for proc, _ in plan:
            for name in _file_names(proc.name, config.format):
                check_output(out / name)
    with atomic_output(out, directory=True, merge=True) as staging:
        results = [_generate_one(proc, n, config, detector, staging, progress,
                                 f" ({k}/{len(plan)})" if len(plan) > 1 else "")
                   for k, (proc, n) in enumerate(plan, 1)]
    for (proc, _), res in zip(plan, results, strict=True):
        res.files = [out / f.name for f in res.files]
        _remember(proc, res.sigma_pb, res.sigma_err_pb, res.events)
    return GenerateResult(results)


def _file_names(process: str, fmt: str) -> list[str]:
    """The files one process gives, in the order they are written."""
    return ([f"{process}.root"] if fmt in ("root", "both") else []) + (
        [f"{process}.csv"] if fmt in ("csv", "both") else []) + [f"{process}.json"]


def _generate_one(process, n_events, config, detector, out: Path, progress, position: str = "") -> ProcessResult:
    from darkflow.generate.engine import MB_TO_PB, run_worker, seeds
    from darkflow.generate.pool import run_pool
    from darkflow.generate.writers import write_csv, write_root

    thresholds = ObjectDefinitions()
    n_workers = min(config.workers, n_events)
    shares = [n_events // n_workers + (k < n_events % n_workers) for k in range(n_workers)]
    firsts = [sum(shares[:k]) for k in range(n_workers)]
    worker_seeds = seeds(config.seed, process.name, n_workers)
    bar = progress_bar(f"generate {process.name}{position}", n_events, enabled=progress)
    workdir = temporary_path(out / process.name, directory=True)
    start = time.perf_counter()
    try:
        with bar:
            def show(done: int) -> None:
                bar.update(done - bar.n)

            tasks = [(process, detector, thresholds, n, s, f, str(workdir), f"w{k}", config.constituents)
                     for k, (n, s, f) in enumerate(zip(shares, worker_seeds, firsts, strict=True))]
            results = [run_worker(*tasks[0], progress=show)] if n_workers == 1 else run_pool(tasks, show)
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
        files = [out / name for name in _file_names(process.name, config.format)]
        for path in files:
            if path.suffix == ".root":
                write_root(path, parts, scale, config.seed, metadata)
            elif path.suffix == ".csv":
                write_csv(path, parts, scale, process.name)
            else:
                write_text_atomic(path, json.dumps(json.loads(metadata), indent=1) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ProcessResult(process.name, n, sigma, err, files, time.perf_counter() - start)
