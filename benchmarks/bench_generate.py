"""Speed of ``darkflow generate`` (issue 3 targets).

For ``qcd`` and ``ttbar`` prints, in one run: the rate of a bare ``pythia.next()`` loop with the
process's settings, the rate of the generator's worker loop (next + jets + objects + detector + part
files) on the same settings and seed, and their ratio (target: at least 0.7); then the whole-command
rate of ``darkflow generate`` with 1 and 2 workers and their ratio (target: at least 1.7).

Usage: ``python benchmarks/bench_generate.py [--events 3000] [--processes qcd,ttbar]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

from darkflow.data_prep.objects import ObjectDefinitions
from darkflow.generate.catalogue import load_process
from darkflow.generate.detector import load_detector
from darkflow.generate.engine import make_pythia, quiet_stdout, run_worker

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _record import record  # noqa: E402


def bare_rate(name: str, n: int, seed: int) -> float:
    pythia = make_pythia(load_process(name), seed)
    start = time.perf_counter()
    with quiet_stdout():
        done = 0
        while done < n:
            done += bool(pythia.next())
    return n / (time.perf_counter() - start)


def worker_rate(name: str, n: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        result = run_worker(load_process(name), load_detector(), ObjectDefinitions(), n, seed, 0, tmp, "w0")
    return n / result.seconds


def command_rate(name: str, n: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "darkflow", "generate", "--process", name, "--events", str(n),
                        "--workers", str(workers), "--out", tmp, "-q"], check=True, stdout=subprocess.DEVNULL)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--processes", default="qcd,ttbar")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    print(f"{'process':<8s} {'bare next (ev/s)':>17s} {'worker loop (ev/s)':>19s} {'ratio':>6s} {'ref':>6s}"
          f" {'1 worker (ev/s)':>16s} {'2 workers (ev/s)':>17s} {'speed-up':>9s} {'ref':>6s}")
    rows: list[dict] = []
    for name in args.processes.split(","):
        bare = bare_rate(name, args.events, args.seed)
        ours = worker_rate(name, args.events, args.seed)
        one = command_rate(name, args.events, 1)
        two = command_rate(name, args.events, 2)
        print(f"{name:<8s} {bare:>17.1f} {ours:>19.1f} {ours / bare:>6.2f} {'>=0.7':>6s}"
              f" {one:>16.1f} {two:>17.1f} {two / one:>9.2f} {'>=1.7':>6s}")
        rows += [
            {"name": f"{name}: bare pythia.next()", "value": bare, "unit": "events/s", "reference": None,
             "target": None, "ok": None},
            {"name": f"{name}: worker loop", "value": ours, "unit": "events/s", "reference": None, "target": None,
             "ok": None},
            {"name": f"{name}: worker loop / bare next", "value": ours / bare, "unit": "", "reference": None,
             "target": ">= 0.7", "ok": ours / bare >= 0.7},
            {"name": f"{name}: darkflow generate, 1 worker", "value": one, "unit": "events/s", "reference": None,
             "target": None, "ok": None},
            {"name": f"{name}: darkflow generate, 2 workers", "value": two, "unit": "events/s", "reference": None,
             "target": None, "ok": None},
            {"name": f"{name}: speed-up 2 workers / 1", "value": two / one, "unit": "", "reference": None,
             "target": ">= 1.7", "ok": two / one >= 1.7},
        ]
    record("bench_generate", rows, {"events": args.events})


if __name__ == "__main__":
    main()
