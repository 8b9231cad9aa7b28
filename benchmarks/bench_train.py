"""Training and scoring speed (issue 5 targets).

On a synthetic NanoAOD-like Standard Model file (``--events``, default 20k), for the conv and graph
encoders with the ``planar`` and ``nsf-ar`` flows, prints:

* training events/s of ``darkflow train`` (Lightning, data streamed from HDF5), from its metrics.csv;
* the share of the training step spent outside the model's forward/backward/optimizer step (data
  loading, Lightning, logging), from a bare loop over the same batches held in memory, with the recipe's
  gradient clipping (``training.gradient_clip``, part of the optimizer step) (target < 15%);
* scoring events/s batched (``darkflow score``'s path) versus one event per call, as the original did;
* the shipped default recipe (``darkflow train`` with no model options) against the previous default, conv +
  planar with the squared-error loss and no recipe option (issue 14: at most 1.5x slower per training event).

Usage: ``python benchmarks/bench_train.py [--events 20000] [--epochs 4]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

PREVIOUS_DEFAULT = {"model.reco_loss": "mse", "model.hlf_input": False, "model.default_score": "total",
                    "standardize.rotate": "none", "standardize.reflect_eta": False, "training.kl_warmup": 0,
                    "training.flow_warmup": 0}
"""The options that make ``models/convvae.yaml`` the recipe of the previous default (before issue 14)."""


def make_file(path: Path, n: int) -> Path:
    from conftest import random_nanoaod, write_tree

    from darkflow.data_prep.prepare import PrepareConfig, prepare

    src = write_tree(path.with_suffix(".root"), random_nanoaod(np.random.default_rng(0), n))
    prepare(PrepareConfig(inputs=[str(src)], out=str(path), label="sm"), progress=False)
    return path


def bare_rate(model: torch.nn.Module, path: Path, batch: int, n_train: int, n_val: int, clip: float = 0.0) -> float:
    """Training events/s of a bare loop over in-memory batches: the same work as one epoch of
    ``darkflow train`` (training steps with the recipe's gradient clipping at norm ``clip`` (0: none), then a
    forward pass over the validation events) and nothing else."""
    from darkflow.events import EventFile

    with EventFile(path) as events:
        part = events.read(slice(0, n_train + n_val), ("objects", "mask", "hlf"))
    objects, mask, hlf = (torch.from_numpy(part[k]) for k in ("objects", "mask", "hlf"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for lo in range(0, n_train - batch + 1, batch):
        loss = model(objects[lo : lo + batch], mask[lo : lo + batch], hlf=hlf[lo : lo + batch])["total"].mean()
        opt.zero_grad()
        loss.backward()
        if clip > 0:  # part of the configured optimizer step (training.gradient_clip), as in Lightning's
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    with torch.no_grad():
        for lo in range(n_train, n_train + n_val, batch):
            model(objects[lo : lo + batch], mask[lo : lo + batch], sample=False, hlf=hlf[lo : lo + batch])
    return n_train / (time.perf_counter() - start)


def main() -> None:
    from darkflow.train.run import TrainOptions, load_model, load_train_config, train
    from darkflow.train.score import score_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_file(Path(tmp) / "sm.h5", args.events)
        print(f"{'model':<14s} {'train ev/s':>11s} {'bare step ev/s':>15s} {'outside model':>14s} {'ref':>6s}"
              f" {'score batched':>14s} {'score 1-by-1':>13s} {'speed-up':>9s}")
        recorded: list[dict] = []
        rates: dict[str, float] = {}
        # the recipe's warm-ups shortened to one epoch, so that the timed epochs (all but the first) run the flow
        runs = [(f"{e}+{f}", {"model.encoder": e, "model.flow": f, **PREVIOUS_DEFAULT})
                for e in ("conv", "graph") for f in ("planar", "nsf-ar")]
        runs += [("default recipe", {"training.kl_warmup": 1, "training.flow_warmup": 1})]
        for name, overrides in runs:
            out = Path(tmp) / name.replace(" ", "_").replace("+", "_")
            cfg = load_train_config("convvae", {**overrides, "training.epochs": args.epochs,
                                                "training.patience": 99})
            train(cfg, TrainOptions(data=str(data), out=str(out), progress=False))
            with open(out / "metrics.csv") as handle:
                rows = list(csv.DictReader(handle))
            n_train = int(args.events * (1 - cfg.training.val_fraction))
            # epoch 0 includes start-up; use the later epochs' wall time (training + validation)
            epoch_s = (float(rows[-1]["seconds"]) - float(rows[0]["seconds"])) / max(len(rows) - 1, 1)
            train_rate = n_train / epoch_s
            model, _ = load_model(out)
            bare = bare_rate(model, data, cfg.training.batch_size, n_train, args.events - n_train,
                             cfg.training.gradient_clip)
            outside = 1 - train_rate / bare
            model.eval()
            start = time.perf_counter()
            score_file(model, data)
            batched = args.events / (time.perf_counter() - start)
            from darkflow.events import EventFile

            with EventFile(data) as events, torch.no_grad():
                part = events.read(slice(0, 500), ("objects", "mask", "hlf"))
                objects, mask, hlf = (torch.from_numpy(part[k]) for k in ("objects", "mask", "hlf"))
                start = time.perf_counter()
                for i in range(500):
                    model(objects[i : i + 1], mask[i : i + 1], sample=False, hlf=hlf[i : i + 1])
                single = 500 / (time.perf_counter() - start)
            print(f"{name:<14s} {train_rate:>11.0f} {bare:>15.0f} {outside:>13.0%} {'<15%':>6s}"
                  f" {batched:>14.0f} {single:>13.0f} {batched / single:>8.0f}x")
            rates[name] = train_rate
            recorded += [
                {"name": f"{name}: train", "value": train_rate, "unit": "events/s", "reference": None,
                 "target": None, "ok": None},
                {"name": f"{name}: bare training step", "value": bare, "unit": "events/s", "reference": None,
                 "target": None, "ok": None},
                {"name": f"{name}: share of the step outside the model", "value": outside, "unit": "fraction",
                 "reference": None, "target": "< 0.15", "ok": outside < 0.15},
                {"name": f"{name}: score batched", "value": batched, "unit": "events/s", "reference": None,
                 "target": None, "ok": None},
                {"name": f"{name}: score one event per call", "value": single, "unit": "events/s",
                 "reference": None, "target": None, "ok": None},
                {"name": f"{name}: batched / one-by-one", "value": batched / single, "unit": "x",
                 "reference": None, "target": None, "ok": None},
            ]
        ratio = rates["conv+planar"] / rates["default recipe"]
        print(f"default recipe: {rates['default recipe']:.0f} training events/s, {ratio:.2f}x slower than the previous "
              f"default conv+planar ({rates['conv+planar']:.0f} events/s); target <= 1.5x")
        recorded.append({"name": "default recipe: training time per event / conv+planar's (previous default)",
                         "value": ratio, "unit": "x", "reference": None, "target": "<= 1.5", "ok": ratio <= 1.5})
    record("bench_train", recorded, {"events": args.events, "epochs": args.epochs,
                                     "previous_default": PREVIOUS_DEFAULT})


if __name__ == "__main__":
    main()
