"""DDP training: every process its own share of each global batch; 2 CPU processes == 1 process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.train.data import EventBatchSampler
from darkflow.train.run import TrainOptions, load_train_config, train


@pytest.mark.parametrize("n, batch, world", [(1000, 128, 2), (999, 100, 3), (50, 128, 2), (7, 4, 4)])
def test_processes_share_out_each_global_batch(n, batch, world):
    for shuffle in (True, False):
        drop = shuffle and n > batch
        one = list(EventBatchSampler(n, batch, shuffle, seed=3, drop_last=drop, rank=0, world=1))
        parts = [EventBatchSampler(n, batch, shuffle, seed=3, drop_last=drop, rank=r, world=world)
                 for r in range(world)]
        got = [list(p) for p in parts]
        if shuffle:  # training: the same number of steps on every process, or DDP would hang
            assert len({len(g) for g in got}) == 1
        assert [len(g) for g in got] == [len(p) for p in parts]
        steps = max(len(g) for g in got)
        for step in range(steps):
            union = sorted(i for g in got if step < len(g) for i in g[step])
            assert union == sorted(one[step])
        seen = [i for g in got for b in g for i in b]
        assert len(seen) == len(set(seen))
        if not drop:
            assert sorted(seen) == list(range(n))
    sampler = EventBatchSampler(n, batch, True, seed=3, rank=0, world=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first or n <= 1


@pytest.fixture(scope="module")
def sm_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    events = random_nanoaod(np.random.default_rng(0), 1200)
    events["genWeight"] = np.random.default_rng(5).lognormal(0.0, 1.5, 1200).astype(np.float32)  # 1e-2 .. 1e2
    src = write_tree(d / "sm.root", events)
    out = d / "sm.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(out), label="sm"), progress=False)
    return out


def rows(run):
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


# A deterministic model (flow density without the training noise), with the file's unequal event weights.
FLAGS = ["--model", "density", "--epochs", "3", "--batch-size", "128", "--accelerator", "cpu", "-q",
         "--set", "model.noise=0", "--set", 'model.flow_options={"num_layers": 2, "hidden_features": 32}']


@pytest.mark.slow
def test_two_cpu_processes_give_the_one_process_validation_loss(sm_file, tmp_path):
    overrides = {"model.noise": 0.0, "model.flow_options": {"num_layers": 2, "hidden_features": 32},
                 "training.epochs": 3, "training.batch_size": 128}
    one = tmp_path / "one"
    train(load_train_config("density", overrides), TrainOptions(data=str(sm_file), out=str(one), progress=False))
    two = tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_PROCID")}
    proc = subprocess.run([sys.executable, "-m", "darkflow", "train", "--data", str(sm_file), "--out", str(two),
                           "--devices", "2", "--strategy", "ddp", *FLAGS], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained 3 epoch(s)") == 1  # rank 0 only
    a, b = rows(one), rows(two)
    assert [r["epoch"] for r in b] == ["0", "1", "2"]  # one row per epoch: only rank 0 writes
    # Each global batch of 128 is split 64 + 64 and the loss is normalized by the whole batch's weight, so
    # DDP's averaged gradient is the one-process gradient; only the float32 summation order differs
    # (~1e-7 relative per step), which three epochs of Adam do not amplify beyond 1e-5.
    for ra, rb in zip(a, b, strict=True):
        assert float(rb["val_loss"]) == pytest.approx(float(ra["val_loss"]), rel=1e-5)
        assert float(rb["train_loss"]) == pytest.approx(float(ra["train_loss"]), rel=1e-5)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    from darkflow.train.run import load_model
    from darkflow.train.score import score_file

    model, meta = load_model(two)
    assert meta["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in b), rel=1e-6)
    assert not list(two.glob(".*tmp*"))
    # the two processes' validation sums together: the weighted mean over all validation events
    val = np.load(two / "split.npz")["val"]
    total = score_file(model, sm_file, indices=val)["total"]
    with h5py.File(sm_file) as h:
        w = h["weight"][:][val]
    weighted = np.sum(w * total) / np.sum(w)
    assert meta["best_val_loss"] == pytest.approx(weighted, rel=2e-6)
    assert abs(total.mean() - weighted) > 50 * 2e-6 * abs(weighted)  # far outside the tolerance
