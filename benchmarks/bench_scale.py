"""Scale-out figures (issues 8 and 17): Dask conversion and scoring with 1 and 2 workers, DDP training with 1 and
2 CPU processes.

* conversion throughput (events/s) of ``darkflow prepare`` on ``--files`` NanoAOD-like ROOT files of
  ``--events`` events each: single process, a Dask ``LocalCluster`` of 1 and of 2 worker processes (one
  thread each; cluster start-up excluded, the HDF5 write in the client included). Target: 2 workers at
  least 1.7x one worker.
* training throughput (events/s) of ``darkflow train --strategy ddp --accelerator cpu`` with 1 and 2
  processes (gloo), one torch thread per process, timed between the end of the first and of the last
  epoch (process start-up and the first epoch excluded). No target in the issue; the ratio is printed.
* scoring throughput (events/s) of ``darkflow score`` with the default recipe (``convvae``, trained for one
  epoch on ``--score-train-events`` events: the speed does not depend on how well it is trained) on
  ``--score-files`` prepared files of ``--score-events`` events: single process (torch threads: every
  core), and ``score --workers 1`` / ``--workers 2`` (the CLI's local cluster: worker threads = cores /
  workers, on the workers' GPU where they have one; cluster start-up and the workers' model load excluded;
  the client's reads, checks and write included). Each is shown as a ratio to the single process; the issue
  gives no target, the one of conversion is used: 2 workers at least 1.7x one worker. After a warm-up run
  of each (the workers load the model there), ``--repeats`` rounds of the three settings run interleaved, so
  that a change of the machine's load hits all three alike; the best run of each counts, every run is
  recorded.

Usage: ``python benchmarks/bench_scale.py [--only conversion|training|scoring] [--files 4] [--events 100000]
[--train-events 40000] [--epochs 3] [--score-files 4] [--score-events 100000] [--repeats 3] [--workdir DIR]``; ``--tiny``
runs every step on a few thousand events (a smoke test, nothing recorded). Conversion and training are
recorded in ``results/bench_scale.json`` when both ran, scoring in ``results/bench_scale_scoring.json``. Run it
on an otherwise idle machine with at least 2 cores.
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


def scoring(run: Path, inputs: list[str], work: Path, repeats: int) -> dict[str, list[float]]:
    """Events/s of ``darkflow score`` in one process and on local Dask clusters of 1 and 2 workers, ``repeats``
    rounds of the three, interleaved so that a change of the machine's load hits all three alike. A warm-up run
    of each first (imports, the workers' model load, first kernel calls); the files written are checked to be
    equal (to float32 round-off where the torch thread counts differ)."""
    from darkflow.dask_cluster import connect
    from darkflow.threads import apply_threads, available_cores
    from darkflow.train.score import score

    apply_threads(available_cores())
    rates: dict[str, list[float]] = {"single": [], "dask1": [], "dask2": []}
    with connect(1, None) as one, connect(2, None) as two:
        clients = {"single": None, "dask1": one.client, "dask2": two.client}
        for name, client in clients.items():
            score(run, inputs[:1], work / f"warm_up_{name}.h5", client=client)
        for _ in range(repeats):
            for name, client in clients.items():
                start = time.perf_counter()
                total = sum(score(run, inputs, work / f"scores_{name}.h5", client=client).values())
                rates[name].append(total / (time.perf_counter() - start))
    for name, runs in rates.items():
        print(f"{name}: {', '.join(f'{r:.0f}' for r in runs)} events/s")
        if name != "single":
            print(f"  {same_scores(work / 'scores_single.h5', work / f'scores_{name}.h5')}")
    return rates


def conversion_rows(rates: dict[str, float], size: dict) -> list[dict]:
    """The conversion figures: events/s of one process and of 1 and 2 workers, and the speed-up."""
    speedup = rates["dask2"] / rates["dask1"]
    return [
        {"name": "prepare, single process", "value": round(rates["single"]), "unit": "events/s",
         "reference": None, "target": None, "ok": None, **size},
        {"name": "prepare, Dask 1 worker", "value": round(rates["dask1"]), "unit": "events/s",
         "reference": round(rates["single"]), "target": None, "ok": None, **size},
        {"name": "prepare, Dask 2 workers", "value": round(rates["dask2"]), "unit": "events/s",
         "reference": round(rates["dask1"]), "target": None, "ok": None, **size},
        {"name": "prepare speed-up, 2 vs 1 Dask workers", "value": round(speedup, 2), "unit": "x",
         "reference": 1.0, "target": ">= 1.7", "ok": speedup >= 1.7, **size},
    ]


def training_rows(train1: float, train2: float, size: dict) -> list[dict]:
    """The training figures: events/s with 1 and 2 DDP CPU processes."""
    return [
        {"name": "train, 1 CPU process", "value": round(train1), "unit": "events/s", "reference": None,
         "target": None, "ok": None, **size},
        {"name": "train, 2 DDP CPU processes", "value": round(train2), "unit": "events/s",
         "reference": round(train1), "target": None, "ok": None, **size, "speedup": round(train2 / train1, 2)},
    ]


def same_scores(a: Path, b: Path) -> str:
    """How two scores files compare: ``identical``, or the largest difference when every dataset agrees to
    float32 round-off (relative and absolute 1e-5); anything more is an error."""
    import h5py

    largest = 0.0
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        assert list(x) == list(y) and dict(x.attrs) == dict(y.attrs)
        for label in x:
            assert list(x[label]) == list(y[label])
            for name in x[label]:
                one, other = x[label][name][:], y[label][name][:]
                np.testing.assert_allclose(other, one, rtol=1e-5, atol=1e-5, err_msg=f"{b}: {label}/{name}")
                if len(one):
                    largest = max(largest, float(np.max(np.abs(other.astype(float) - one))))
    return "identical to the single-process file" if largest == 0 else (
        f"equal to the single-process file to float32 round-off (largest difference {largest:.2g})")


def scoring_rows(runs: dict[str, list[float]], size: dict) -> list[dict]:
    """The scoring figures: events/s (the best run; every run in ``runs``), each beside the single process, and
    the 2-vs-1-worker speed-up."""
    rates = {name: max(values) for name, values in runs.items()}
    size = size | {"runs": {name: [round(v) for v in values] for name, values in runs.items()}}
    speedup = rates["dask2"] / rates["dask1"]
    single = round(rates["single"])
    return [
        {"name": "score, single process", "value": single, "unit": "events/s", "reference": None, "target": None,
         "ok": None, **size},
        {"name": "score, Dask 1 worker", "value": round(rates["dask1"]), "unit": "events/s", "reference": single,
         "target": None, "ok": None, "ratio_to_single": round(rates["dask1"] / rates["single"], 2), **size},
        {"name": "score, Dask 2 workers", "value": round(rates["dask2"]), "unit": "events/s", "reference": single,
         "target": None, "ok": None, "ratio_to_single": round(rates["dask2"] / rates["single"], 2), **size},
        {"name": "score ratio, Dask 1 worker / single process", "value": round(rates["dask1"] / rates["single"], 2),
         "unit": "x", "reference": 1.0, "target": None, "ok": None, **size},
        {"name": "score ratio, Dask 2 workers / single process", "value": round(rates["dask2"] / rates["single"], 2),
         "unit": "x", "reference": 1.0, "target": None, "ok": None, **size},
        {"name": "score speed-up, 2 vs 1 Dask workers", "value": round(speedup, 2), "unit": "x",
         "reference": 1.0, "target": ">= 1.7", "ok": speedup >= 1.7, **size},
    ]


def show(rows: list[dict]) -> None:
    print(f"{'figure':<40s} {'value':>12s} {'unit':<9s} {'reference':>10s} {'target':>8s}")
    for row in rows:
        ref = "" if row["reference"] is None else str(row["reference"])
        ratio = f"  ({row['ratio_to_single']:.2f}x single)" if "ratio_to_single" in row else ""
        print(f"{row['name']:<40s} {row['value']:>12} {row['unit']:<9s} {ref:>10s} {row['target'] or '':>8s}"
              + ("" if row["ok"] is None else ("  ok" if row["ok"] else "  MISSED")) + ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--events", type=int, default=100_000, help="events per input file")
    parser.add_argument("--chunk-size", type=int, default=50_000, help="events per Dask task / read step")
    parser.add_argument("--train-events", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--score-files", type=int, default=4)
    parser.add_argument("--score-events", type=int, default=100_000, help="events per scored file")
    parser.add_argument("--score-train-events", type=int, default=5000, help="events the scored model trains on")
    parser.add_argument("--repeats", type=int, default=3, help="scoring runs per setting (the best is shown)")
    parser.add_argument("--only", choices=("conversion", "training", "scoring"), action="append",
                        help="run only this part (repeat for several; default: all three)")
    parser.add_argument("--workdir", help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--tiny", action="store_true", help="a few thousand events: checks that it runs")
    args = parser.parse_args()
    if args.tiny:
        args.files, args.events, args.chunk_size, args.train_events, args.epochs = 2, 3000, 1000, 3000, 2
        args.score_files, args.score_events, args.score_train_events = 2, 3000, 2000
    parts = set(args.only or ("conversion", "training", "scoring"))
    from _record import record

    from darkflow.data_prep.prepare import PrepareConfig, prepare

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "scoring" in parts:
            sources = [nanoaod_file(work / f"score{i}.root", args.score_events, 50 + i)
                       for i in range(args.score_files)]
            scored = []
            for i, src in enumerate(sources):
                scored.append(str(work / f"score{i}.h5"))
                prepare(PrepareConfig(inputs=[str(src)], out=scored[-1], label=f"sample{i}"), progress=False)
            src = nanoaod_file(work / "score_train.root", args.score_train_events, 98)
            prepare(PrepareConfig(inputs=[str(src)], out=str(work / "score_train.h5")), progress=False)
            subprocess.run([sys.executable, "-m", "darkflow", "train", "--data", str(work / "score_train.h5"),
                            "--out", str(work / "run_score"), "--epochs", "1", "-q"], check=True,
                           stdout=subprocess.DEVNULL)
            score_rates = scoring(work / "run_score", scored, work, args.repeats)
            size = {"files": args.score_files, "events_per_file": args.score_events, "model": "convvae"}
            rows = scoring_rows(score_rates, size)
            show(rows)
            if not args.tiny:
                record("bench_scale_scoring", rows)
        if not parts & {"conversion", "training"}:
            return
        if "conversion" in parts:
            inputs = [str(nanoaod_file(work / f"in{i}.root", args.events, i + 1)) for i in range(args.files)]
            rates = conversion(inputs, work, args.chunk_size)
        if "training" in parts:
            train_src = nanoaod_file(work / "train.root", args.train_events, 99)
            prepare(PrepareConfig(inputs=[str(train_src)], out=str(work / "train.h5")), progress=False)
            train1 = training(work / "train.h5", work, args.epochs, 1, args.batch_size)
            train2 = training(work / "train.h5", work, args.epochs, 2, args.batch_size)
    rows = []
    if "conversion" in parts:
        rows += conversion_rows(rates, {"files": args.files, "events_per_file": args.events,
                                        "chunk_size": args.chunk_size})
    if "training" in parts:
        rows += training_rows(train1, train2, {"train_events": args.train_events, "epochs": args.epochs})
    show(rows)
    if "training" in parts:
        print(f"training speed-up, 2 vs 1 processes: {train2 / train1:.2f}x")
    if {"conversion", "training"} <= parts and not args.tiny:
        record("bench_scale", rows)


if __name__ == "__main__":
    main()
