"""Scale-out figures (issue 8): Dask conversion with 1 and 2 workers, DDP training with 1 and 2 CPU processes.

* conversion throughput (events/s) of ``darkflow prepare`` on ``--files`` NanoAOD-like ROOT files of
  ``--events`` events each: single process, a Dask ``LocalCluster`` of 1 and of 2 worker processes (one
  thread each; cluster start-up excluded, the HDF5 write in the client included). Target: 2 workers at
  least 1.7x one worker.
* training throughput (events/s) of ``darkflow train --strategy ddp --accelerator cpu`` with 1 and 2
  processes (gloo), one torch thread per process, timed between the end of the first and of the last
  epoch (process start-up and the first epoch excluded). No target in the issue; the ratio is printed.

Usage: ``python benchmarks/bench_scale.py [--files 4] [--events 100000] [--train-events 40000]
[--epochs 3] [--workdir DIR]``; ``--tiny`` runs every step on a few thousand events (a smoke test).
Run it on an otherwise idle machine with at least 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def nanoaod_file(path: Path, n: int, seed: int) -> Path:
    """NanoAOD-like events with uproot (jets, leptons, photons, MET, weights), ~ 6 jets per event, with the ID
    and isolation branches the ``nanoaod`` schema reads."""
    import awkward as ak
    import uproot

    rng = np.random.default_rng(seed)

    def coll(mean: float, extra: dict) -> ak.Array:
        counts = rng.poisson(mean, n)
        m = int(counts.sum())
        cols = {"pt": rng.exponential(40.0, m).astype(np.float32) + 5,
                "eta": rng.uniform(-3, 3, m).astype(np.float32),
                "phi": rng.uniform(-np.pi, np.pi, m).astype(np.float32),
                "mass": rng.uniform(0, 15, m).astype(np.float32)} | {k: f(m) for k, f in extra.items()}
        return ak.unflatten(ak.zip(cols), counts)

    charge = {"charge": lambda m: rng.choice(np.array([-1, 1], np.int32), m)}
    iso = lambda m: rng.exponential(0.05, m).astype(np.float32)  # noqa: E731 (mostly isolated)
    ident = lambda low, high: lambda m: rng.integers(low, high, m).astype(np.int32)  # noqa: E731
    data = {"Jet": coll(6.0, {"btagDeepB": lambda m: rng.uniform(0, 1, m).astype(np.float32),
                              "jetId": ident(0, 8)}),
            "Electron": coll(1.0, charge | {"cutBased": ident(0, 5), "pfRelIso03_all": iso}),
            "Muon": coll(1.0, charge | {"mediumId": lambda m: rng.random(m) < 0.8, "pfRelIso04_all": iso}),
            "Photon": coll(0.8, {"cutBased": ident(0, 4), "pfRelIso03_all": iso}),
            "MET_pt": rng.exponential(60.0, n).astype(np.float32),
            "MET_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
            "genWeight": np.ones(n, np.float32), "event": np.arange(n, dtype=np.int64) + seed * 10**9}
    types = {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
    with uproot.recreate(path) as handle:
        tree = handle.mktree("Events", types, field_name=lambda o, i: f"{o}_{i}", counter_name=lambda c: "n" + c)
        tree.extend(data)
    return path


def conversion(inputs: list[str], work: Path, chunk: int) -> dict[str, float]:
    """Events/s of the single-process path and of local Dask clusters of 1 and 2 workers."""
    import distributed

    from darkflow.data_prep.prepare import PrepareConfig, prepare

    total = 0
    rates: dict[str, float] = {}
    start = time.perf_counter()
    total = prepare(PrepareConfig(inputs=inputs, out=str(work / "single.h5"), chunk_size=chunk), progress=False).n_read
    rates["single"] = total / (time.perf_counter() - start)
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:
            client.run(lambda: __import__("darkflow.data_prep.prepare"))  # imports done before timing
            start = time.perf_counter()
            prepare(PrepareConfig(inputs=inputs, out=str(work / f"dask{workers}.h5"), chunk_size=chunk),
                    progress=False, client=client)
            rates[f"dask{workers}"] = total / (time.perf_counter() - start)
    return rates


def training(data: Path, work: Path, epochs: int, processes: int, batch: int) -> float:
    """Training events/s of ``darkflow train`` with ``processes`` DDP processes on CPU."""
    out = work / f"run_ddp{processes}"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "darkflow", "train", "--data", str(data), "--out", str(out),
                    "--model", "convvae", "--flow", "planar", "--epochs", str(epochs), "--batch-size", str(batch),
                    "--accelerator", "cpu", "--devices", str(processes), "--strategy", "ddp", "-q",
                    "--set", "training.patience=1000"], check=True, env=env)
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    import numpy as np

    n_train = len(np.load(out / "split.npz")["train"])
    return n_train * (len(rows) - 1) / (float(rows[-1]["seconds"]) - float(rows[0]["seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--events", type=int, default=100_000, help="events per input file")
    parser.add_argument("--chunk-size", type=int, default=50_000, help="events per Dask task / read step")
    parser.add_argument("--train-events", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workdir", help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--tiny", action="store_true", help="a few thousand events: checks that it runs")
    args = parser.parse_args()
    if args.tiny:
        args.files, args.events, args.chunk_size, args.train_events, args.epochs = 2, 3000, 1000, 3000, 2
    from _record import record

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        inputs = [str(nanoaod_file(work / f"in{i}.root", args.events, i + 1)) for i in range(args.files)]
        rates = conversion(inputs, work, args.chunk_size)
        from darkflow.data_prep.prepare import PrepareConfig, prepare

        train_src = nanoaod_file(work / "train.root", args.train_events, 99)
        prepare(PrepareConfig(inputs=[str(train_src)], out=str(work / "train.h5")), progress=False)
        train1 = training(work / "train.h5", work, args.epochs, 1, args.batch_size)
        train2 = training(work / "train.h5", work, args.epochs, 2, args.batch_size)
    speedup = rates["dask2"] / rates["dask1"]
    size = {"files": args.files, "events_per_file": args.events, "chunk_size": args.chunk_size}
    rows = [
        {"name": "prepare, single process", "value": round(rates["single"]), "unit": "events/s",
         "reference": None, "target": None, "ok": None, **size},
        {"name": "prepare, Dask 1 worker", "value": round(rates["dask1"]), "unit": "events/s",
         "reference": round(rates["single"]), "target": None, "ok": None, **size},
        {"name": "prepare, Dask 2 workers", "value": round(rates["dask2"]), "unit": "events/s",
         "reference": round(rates["dask1"]), "target": None, "ok": None, **size},
        {"name": "prepare speed-up, 2 vs 1 Dask workers", "value": round(speedup, 2), "unit": "x",
         "reference": 1.0, "target": ">= 1.7", "ok": speedup >= 1.7, **size},
        {"name": "train, 1 CPU process", "value": round(train1), "unit": "events/s", "reference": None,
         "target": None, "ok": None, "train_events": args.train_events, "epochs": args.epochs},
        {"name": "train, 2 DDP CPU processes", "value": round(train2), "unit": "events/s",
         "reference": round(train1), "target": None, "ok": None, "train_events": args.train_events,
         "epochs": args.epochs, "speedup": round(train2 / train1, 2)},
    ]
    print(f"{'figure':<40s} {'value':>12s} {'unit':<9s} {'reference':>10s} {'target':>8s}")
    for row in rows:
        ref = "" if row["reference"] is None else str(row["reference"])
        print(f"{row['name']:<40s} {row['value']:>12} {row['unit']:<9s} {ref:>10s} {row['target'] or '':>8s}"
              + ("" if row["ok"] is None else ("  ok" if row["ok"] else "  MISSED")))
    print(f"training speed-up, 2 vs 1 processes: {train2 / train1:.2f}x")
    if not args.tiny:
        record("bench_scale", rows)


if __name__ == "__main__":
    main()
