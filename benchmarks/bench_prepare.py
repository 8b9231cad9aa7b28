"""Speed and memory of ``darkflow prepare`` against a bare uproot read + h5py write (issue 2 targets).

Builds a NanoAOD-like file of ``--events`` events (default 1M) by tiling the real CMS Open Data file
with uproot, then prints, side by side:

* the whole-process wall time of ``darkflow prepare`` (start-up included);
* the time of a bare ``uproot.iterate`` over the same branches plus a bare chunked ``h5py`` write of
  arrays of the output's size, and the ratio of the two (target: at most 1.5x);
* the peak RSS of ``darkflow prepare`` on 1x and 10x the events (target: 10x within 1.3x of 1x).

Usage: ``python benchmarks/bench_prepare.py [--events 1000000] [--scale 10] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

HERE = Path(__file__).resolve().parent
REAL = "nanoAOD_2015_CMS_Open_Data_ttbar.root"
COLLECTIONS = {
    "Jet": ["pt", "eta", "phi", "mass", "btagDeepB", "jetId"],
    "Electron": ["pt", "eta", "phi", "mass", "charge", "cutBased", "pfRelIso03_all"],
    "Muon": ["pt", "eta", "phi", "mass", "charge", "mediumId", "pfRelIso04_all"],
    "Photon": ["pt", "eta", "phi", "mass", "cutBased", "pfRelIso03_all"],
}
SCALARS = ["MET_pt", "MET_phi", "genWeight", "event"]


def find_real() -> Path:
    for base in (HERE.parent.parent / "shared" / "data", HERE.parent / "shared" / "data"):
        if (base / REAL).is_file():
            return base / REAL
    sys.exit(f"bench_prepare: {REAL} not found in ../shared/data")


def make_tiled(real: Path, out: Path, n_events: int, block: int = 200_000) -> Path:
    """Tile the real file's branches to ``n_events`` events (unique event numbers), NanoAOD naming."""
    import awkward as ak
    import uproot

    if out.is_file() and uproot.open(out)["Events"].num_entries == n_events:
        return out
    src = uproot.open(real)["Events"]
    names = [f"{c}_{f}" for c, fs in COLLECTIONS.items() for f in fs] + SCALARS
    arrays = src.arrays(names)
    n_src = len(arrays)
    reps = -(-block // n_src)
    tile = ak.concatenate([arrays] * reps)[:block]
    data = {c: ak.zip({f: tile[f"{c}_{f}"] for f in fs}) for c, fs in COLLECTIONS.items()}
    data |= {s: ak.to_numpy(tile[s]) for s in SCALARS}
    types = {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
    tmp = out.with_suffix(".tmp")
    with uproot.recreate(tmp) as handle:
        tree = handle.mktree("Events", types, field_name=lambda o, i: f"{o}_{i}", counter_name=lambda c: "n" + c)
        for lo in range(0, n_events, block):
            n = min(block, n_events - lo)
            part = {k: v[:n] for k, v in data.items()}
            part["event"] = np.arange(lo, lo + n, dtype=np.int64)
            tree.extend(part)
    os.replace(tmp, out)
    return out


def measured(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command, from a wrapper process that only waits for it."""
    wrapper = (
        "import resource, subprocess, sys, time, json; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:]); dt = time.perf_counter() - t; "
        "print(json.dumps([r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True)
    code, seconds, rss_kb = json.loads(out.stdout.strip().splitlines()[-1])
    if code != 0:
        sys.exit(f"bench_prepare: {' '.join(cmd)} failed:\n{out.stderr}")
    return seconds, rss_kb / 1024


def bare(path: Path, n_rows: int = 32, n_feat: int = 4, n_hlf: int = 11, step: int = 100_000) -> float:
    """Seconds for a bare uproot.iterate over the prepare branches + a bare chunked h5py write."""
    code = f"""
import time, numpy as np, uproot, h5py
names = {[f"{c}_{f}" for c, fs in COLLECTIONS.items() for f in fs] + SCALARS!r}
t = time.perf_counter()
n = 0
for arrays in uproot.iterate({str(path)!r} + ":Events", filter_name=names, step_size={step}, library="ak", how=dict):
    n += len(arrays["event"])
t_read = time.perf_counter() - t
t = time.perf_counter()
with h5py.File({str(path.with_suffix(".bare.h5"))!r}, "w") as h:
    shapes = dict(objects=(({n_rows}, {n_feat}), np.float32), mask=(({n_rows},), bool), hlf=(({n_hlf},), np.float32),
                  weight=((), np.float64), event_id=((), np.int64), process=((), np.int16))
    ds = {{k: h.create_dataset(k, shape=(n, *s), dtype=d, chunks=(1024, *s)) for k, (s, d) in shapes.items()}}
    block = {{k: np.ones(({step}, *s), dtype=d) for k, (s, d) in shapes.items()}}  # allocated once
    for lo in range(0, n, {step}):
        m = min({step}, n - lo)
        for k in shapes:
            ds[k][lo:lo + m] = block[k][:m]
print(t_read + time.perf_counter() - t)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path.with_suffix(".bare.h5").unlink(missing_ok=True)
    return float(out.stdout.strip())


def make_csv(path: Path, n_events: int, seed: int = 0) -> Path:
    """A Dark Machines CSV file of random events (values printed with 6 digits, like the challenge's)."""
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    codes = np.array(["j", "b", "e+", "e-", "m+", "m-", "g"])
    with open(path.with_suffix(".tmp"), "w") as handle:
        for i in range(n_events):
            k = int(rng.integers(0, 12))
            pt = rng.exponential(60_000, k) + 20_000
            eta, phi = rng.uniform(-2.5, 2.5, k), rng.uniform(-3.14, 3.14, k)
            objs = [f"{c},{p * np.cosh(e):g},{p:g},{e:g},{f:g}" for c, p, e, f in
                    zip(codes[rng.integers(0, 7, k)], pt, eta, phi, strict=True)]
            handle.write(";".join([str(i), "ttbar", "1", f"{rng.exponential(50_000):g}",
                                   f"{rng.uniform(-3, 3):g}", *objs]) + ";\n")
    os.replace(path.with_suffix(".tmp"), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, default=10, help="memory check at this multiple of --events")
    parser.add_argument("--workdir", default=None, help="where the tiled files go (kept for reruns)")
    args = parser.parse_args()
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "darkflow_bench")
    workdir.mkdir(parents=True, exist_ok=True)
    darkflow = [sys.executable, "-m", "darkflow"]
    real = find_real()

    small = make_tiled(real, workdir / f"nano_{args.events}.root", args.events)
    big = make_tiled(real, workdir / f"nano_{args.events * args.scale}.root", args.events * args.scale)

    prep = lambda src, out: [*darkflow, "prepare", str(src), "--out", str(out), "--source", "nanoaod", "-q"]  # noqa: E731
    rows = []
    for label, src, repeat in ((f"{args.events:,}", small, 3), (f"{args.events * args.scale:,}", big, 1)):
        bare_s = min(bare(src) for _ in range(repeat))
        runs = [measured(prep(src, workdir / "out.h5")) for _ in range(repeat)]
        rows.append((label, min(r[0] for r in runs), bare_s, max(r[1] for r in runs)))
        (workdir / "out.h5").unlink()

    csv = make_csv(workdir / "darkmachines_200000.csv", 200_000)
    csv_s = min(measured([*darkflow, "prepare", str(csv), "--out", str(workdir / "csv.h5"), "-q"])[0]
                for _ in range(2))
    (workdir / "csv.h5").unlink()
    startup = min(measured([sys.executable, "-c", "import uproot, h5py"])[0] for _ in range(3))
    cpu = platform.processor() or platform.machine()
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}; "
          f"input {small.stat().st_size / 2**20:.0f} MiB per {args.events:,} events (ZLIB, uproot defaults)")
    print(f"{'figure':<58s} {'measured':>10s} {'reference':>10s}")
    for label, prep_s, bare_s, _ in rows:
        ratio = prep_s / bare_s
        print(f"{f'darkflow prepare, {label} events (s, whole process)':<58s} {prep_s:>10.2f}")
        print(f"{f'bare uproot.iterate + h5py write, {label} events (s)':<58s} {bare_s:>10.2f}")
        print(f"{f'ratio prepare / bare, {label} events':<58s} {ratio:>10.2f} {'<= 1.50':>10s}  "
              f"{'OK' if ratio <= 1.5 else 'MISSED'}")
        print(f"{f'throughput, {label} events (events/s)':<58s} {int(label.replace(',', '')) / prep_s:>10,.0f}")
    print(f"{'darkflow prepare, Dark Machines CSV, 200,000 events (s)':<58s} {csv_s:>10.2f}")
    print(f"{'throughput, Dark Machines CSV (events/s)':<58s} {200_000 / csv_s:>10,.0f}")
    print(f"{'of which any process pays: python + import uproot, h5py (s)':<58s} {startup:>10.2f}")
    (l1, _, _, rss_1x), (l10, _, _, rss_big) = rows
    mem = rss_big / rss_1x
    print(f"{f'peak RSS, {l1} events (MiB)':<58s} {rss_1x:>10.0f}")
    print(f"{f'peak RSS, {l10} events (MiB)':<58s} {rss_big:>10.0f}")
    print(f"{f'peak RSS ratio {args.scale}x / 1x':<58s} {mem:>10.2f} {'<= 1.30':>10s}  {'OK' if mem <= 1.3 else 'MISSED'}")
    recorded = []
    for label, prep_s, bare_s, rss in rows:
        n = int(label.replace(",", ""))
        recorded += [
            _row(f"darkflow prepare, {label} events (whole process)", prep_s, "s"),
            _row(f"bare uproot.iterate + h5py write, {label} events", bare_s, "s"),
            _row(f"ratio prepare / bare, {label} events", prep_s / bare_s, "", "<= 1.50", prep_s / bare_s <= 1.5),
            _row(f"throughput, {label} events", n / prep_s, "events/s"),
            _row(f"peak RSS, {label} events", rss, "MiB"),
        ]
    recorded += [_row("darkflow prepare, Dark Machines CSV, 200,000 events", csv_s, "s"),
                 _row("throughput, Dark Machines CSV", 200_000 / csv_s, "events/s"),
                 _row("python + import uproot, h5py (start-up any process pays)", startup, "s"),
                 _row(f"peak RSS ratio {args.scale}x / 1x", mem, "", "<= 1.30", mem <= 1.3)]
    record("bench_prepare", recorded, {"input_mib_per_events": small.stat().st_size / 2**20,
                                       "events": args.events, "scale": args.scale})


def _row(name: str, value: float, unit: str, target: str | None = None, ok: bool | None = None) -> dict:
    return {"name": name, "value": value, "unit": unit, "reference": None, "target": target, "ok": ok}


if __name__ == "__main__":
    main()
