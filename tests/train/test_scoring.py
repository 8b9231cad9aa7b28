"""A trained run on strongly weighted events: weighted validation loss, diagnostics, and what ``score`` says.

One small ConvVAE run (through the CLI) on an SM file whose weights span orders of magnitude, scored with
files prepared like it, prepared otherwise, copies of it, and independent samples that reuse its event IDs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch
from conftest import random_nanoaod, write_tree

from darkflow.cli import main
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.train.run import load_model
from darkflow.train.score import ScoreWarning, score, score_file

pytestmark = pytest.mark.slow

PREVIOUS = {"model.reco_loss": "mse", "model.hlf_input": False, "model.default_score": "total",
            "standardize.rotate": "none", "standardize.reflect_eta": False, "training.kl_warmup": 0,
            "training.flow_warmup": 0}
"""The default before issue 14: these tests check mechanisms (scores, diagnostics, early stopping) on it."""
FLAGS = ["--model", "convvae", "--set", "model.reco_loss=mse", "--set", "model.hlf_input=false", "--set", "model.default_score=total", "--set", "standardize.rotate=none", "--set", "standardize.reflect_eta=false", "--set", "training.kl_warmup=0", "--set", "training.flow_warmup=0", "--epochs", "3", "--batch-size", "128", "-q", "--set", "model.latent=4",
         "--set", "model.context=8", "--set", "model.hidden=32", "--set", "model.channels=[8, 16]",
         "--set", "training.learning_rate=3e-3", "--set", "training.patience=10"]


def _prepare(src, out, label, **extra):
    prepare(PrepareConfig(inputs=[str(src)], out=str(out), label=label, **extra), progress=False)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("scoring")
    sm = random_nanoaod(np.random.default_rng(0), 1500)
    sm["genWeight"] = np.random.default_rng(5).lognormal(0.0, 1.5, 1500).astype(np.float32)  # 1e-2 .. 1e2
    held = random_nanoaod(np.random.default_rng(1), 400)
    held["event"] += 100_000
    again = random_nanoaod(np.random.default_rng(3), 400)  # new events, the training file's event IDs
    src = {name: write_tree(d / f"{name}.root", arrays) for name, arrays in
           (("sm", sm), ("held", held), ("again", again))}
    out = {"sm": _prepare(src["sm"], d / "sm.h5", "sm"), "held": _prepare(src["held"], d / "held.h5", "held")}
    with h5py.File(out["sm"]) as h:
        process = json.loads(h.attrs["process_names"])[0]
    out["again"] = _prepare(src["again"], d / "again.h5", "again", process=process)
    (d / "met50.yaml").write_text("name: met50\nmet_min: 50\n")
    out["met50"] = _prepare(src["sm"], d / "sm_met50.h5", "sm_met50", channel=str(d / "met50.yaml"))
    (d / "jet30.yaml").write_text("jet: {pt_min: 30, abs_eta_max: 2.8}\n")
    out["jet30"] = _prepare(src["held"], d / "held_jet30.h5", "held_jet30", objects=str(d / "jet30.yaml"))
    return out


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "conv"
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "darkflow", "train", "--data", str(files["sm"]), "--out", str(run),
                           *FLAGS], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run, proc.stderr


def _rows(run):
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_validation_loss_is_the_weighted_mean_of_the_best_checkpoint(files, trained):
    run, _ = trained
    rows = _rows(run)
    best = min(range(len(rows)), key=lambda i: float(rows[i]["val_loss"]))
    model, meta = load_model(run)  # model.pt holds the best checkpoint's weights
    assert meta["diagnostics"]["best_epoch"] == best
    val = np.load(run / "split.npz")["val"]
    scores = score_file(model, files["sm"], indices=val)
    with h5py.File(files["sm"]) as h:
        w = h["weight"][:][val]
    assert w.max() / w.min() > 100
    for column, key in (("val_loss", "total"), ("val_reco", "reco"), ("val_kl", "kl")):
        weighted = np.sum(w * scores[key]) / np.sum(w)
        assert float(rows[best][column]) == pytest.approx(weighted, rel=2e-6), column
        assert abs(scores[key].mean() - weighted) > 1e-3 * abs(weighted)  # the unweighted mean would fail


def test_diagnostics_and_training_file_in_the_metadata(files, trained):
    run, stderr = trained
    model, meta = load_model(run)
    diag = meta["diagnostics"]
    losses = [float(r["val_loss"]) for r in _rows(run)]
    assert diag["stopped_by"] == "max_epochs" and diag["epochs"] == 3 and diag["patience"] == 10
    assert diag["converged"] is False and diag["best_epoch"] == int(np.argmin(losses))
    val = np.load(run / "split.npz")["val"]
    with h5py.File(files["sm"]) as h, torch.no_grad():  # the posterior means, computed by hand
        objects, mask = torch.from_numpy(h["objects"][:][val]), torch.from_numpy(h["mask"][:][val])
        hidden = model.encoder(model.standardizer(objects, mask), mask, model.types(objects))
        mu = model.mu(hidden).double().numpy()
    np.testing.assert_allclose(diag["unit_variance"], mu.var(axis=0), rtol=1e-5)
    assert diag["active_units"] == int((mu.var(axis=0) > 0.01).sum()) and diag["latent_size"] == 4
    lines = [line for line in stderr.splitlines() if line.startswith("darkflow train: warning:")]
    assert len(lines) == 1 + (diag["active_units"] < 2)
    assert lines[0].startswith("darkflow train: warning: not converged: training stopped at the epoch limit")
    tf = meta["training_file"]
    with h5py.File(files["sm"]) as h:
        assert tf["channel"] == json.loads(h.attrs["channel"]) == {"name": "none"}
        assert tf["objects_definition"] == json.loads(h.attrs["objects_definition"])
        assert tf["source"] == json.loads(h.attrs["source"])["name"]
    assert tf["path"] == str(files["sm"].resolve()) and tf["events"] == 1500 and tf["label"] == "sm"


def _collector():
    said: list[tuple[str, str]] = []
    return said, lambda kind, line: said.append((kind, line))


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_score_says_what_it_scored(files, trained, tmp_path, capsys):
    run, _ = trained
    capsys.readouterr()
    out = tmp_path / "scores.h5"
    inputs = [files[k] for k in ("sm", "held", "again", "met50", "jet30")]
    assert main(["score", "--run", str(run), "--data", *map(str, inputs), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert all(line.startswith("darkflow score: warning: ") for line in warnings), warnings
    assert len(warnings) == 3, warnings
    assert any(f"{files['met50']}: channel met50 differs from the training file's none (met_min 50.0 vs None)" in line
               for line in warnings)
    assert any(f"{files['jet30']}: object definitions" in line and "jet.pt_min 30.0 vs 20.0" in line
               for line in warnings)
    assert any(f"{files['met50']}: overlaps the training file" in line for line in warnings)

    split = np.load(run / "split.npz")
    with h5py.File(out) as s, h5py.File(files["sm"]) as sm:
        assert s.attrs["default_score"] == "total"
        for label, path in zip(("sm", "held", "again", "sm_met50", "held_jet30"), inputs, strict=True):
            with h5py.File(path) as h:
                names = json.loads(h.attrs["hlf_names"])
                hlf = h["hlf"][:]
            assert "hlf:MET_phi" not in s[label] and "MET_phi" in names
            for k, name in enumerate(names):
                if name != "MET_phi":
                    assert s[label][f"hlf:{name}"].dtype == np.float64
                    np.testing.assert_array_equal(s[label][f"hlf:{name}"][:], hlf[:, k].astype(np.float64))
        expected = np.full(1500, -1)
        expected[split["train"]], expected[split["val"]] = 0, 1
        np.testing.assert_array_equal(s["sm"]["split"][:], expected)
        assert s["sm"].attrs["role"] == "training file"
        for label in ("held", "again", "held_jet30"):  # 'again' reuses the training file's IDs, not its events
            assert (s[label]["split"][:] == -1).all() and s[label].attrs["role"] == "independent of training"
        index = {int(e): i for i, e in enumerate(sm["event_id"][:])}  # one process: event IDs are unique
        ids = s["sm_met50"]["event_id"][:]
        np.testing.assert_array_equal(s["sm_met50"]["split"][:], expected[[index[int(e)] for e in ids]])
        assert s["sm_met50"].attrs["role"] == "overlaps the training file"
        w = s["held"]["weight"][:]
        n_eff = w.sum() ** 2 / (w**2).sum()
    table = captured.out.splitlines()
    assert table[1].split()[:5] == ["label", "events", "N_eff", "sum", "of"]
    row = {line.split()[0]: line for line in table[2:]}
    assert row["sm"].split()[1] == "1500" and f"training file ({len(split['train'])} training, " \
        f"{len(split['val'])} validation)" in row["sm"]
    assert float(row["held"].split()[2]) == pytest.approx(n_eff, abs=0.05)
    assert row["held"].endswith("independent of training") and "overlaps the training file" in row["sm_met50"]

    assert main(["score", "--run", str(run), "--data", *map(str, inputs), "--out", str(tmp_path / "x.h5"),
                 "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "darkflow score: error:" in err[0] and "--strict" in err[0] and "met50" in err[0]
    assert not (tmp_path / "x.h5").exists() and not list(tmp_path.glob(".x.h5*"))


def test_out_never_replaces_an_input(files, trained, tmp_path, capsys):
    run, _ = trained
    held = tmp_path / "held.h5"
    shutil.copy(files["held"], held)
    before = _digest(held)
    os.link(held, tmp_path / "linked.h5")
    (tmp_path / "sub").mkdir()
    for out in (held, tmp_path / "linked.h5", tmp_path / "sub" / ".." / "held.h5"):
        assert main(["score", "--run", str(run), "--data", str(held), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is the input" in err[0]
    assert _digest(held) == before
    assert main(["score", "--run", str(run), "--data", str(held), "--out", str(run / "model.pt")]) == 2


def test_the_training_file_under_another_path_or_copied(files, trained, tmp_path):
    run, _ = trained
    split = np.load(run / "split.npz")
    expected = np.full(1500, -1)
    expected[split["train"]], expected[split["val"]] = 0, 1
    shutil.copy(files["sm"], tmp_path / "copy.h5")
    os.symlink(files["sm"], tmp_path / "alias.h5")
    os.link(files["sm"], tmp_path / "linked.h5")
    for name, what in (("copy.h5", "it holds the same 1500 events (a copy)"),
                       ("alias.h5", "it is the training file under another path"),
                       ("linked.h5", "it is the training file under another path")):
        said, notify = _collector()
        score(run, [tmp_path / name], tmp_path / f"{name}.scores.h5", notify=notify)
        assert said == [("warning", f"{tmp_path / name}: overlaps the training file {files['sm'].resolve()}: {what}; "
                                    "'split' marks its training (0) and validation (1) events")]
        with h5py.File(tmp_path / f"{name}.scores.h5") as s:
            np.testing.assert_array_equal(s["sm"]["split"][:], expected)
            assert s["sm"].attrs["role"] == "training file"


def test_runs_without_a_training_file_description(files, trained, tmp_path):
    from darkflow.checkpoint import load_weights, save_weights

    run, _ = trained
    state, meta, _ = load_weights(run, "model.pt", "trained model", "")
    del meta["training_file"]
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(run / "split.npz", old / "split.npz")

    class Holder(torch.nn.Module):
        def state_dict(self, *args, **kwargs):
            return state

    save_weights(old / "model.pt", Holder(), meta)
    said, notify = _collector()
    score(old, [files["met50"]], tmp_path / "s.h5", notify=notify)
    assert [k for k, _ in said] == ["warning", "warning"] and "channel met50 differs" in said[0][1]
    meta["data"] = str(tmp_path / "gone.h5")
    save_weights(old / "model.pt", Holder(), meta)
    said, notify = _collector()
    score(old, [files["met50"]], tmp_path / "s2.h5", notify=notify)
    assert said == [("note", f"the training file {tmp_path / 'gone.h5'} is not found: inputs are checked neither "
                             "against its channel, objects and source nor for overlaps")]
    with h5py.File(tmp_path / "s2.h5") as s:
        assert s["sm_met50"].attrs["role"] == "not checked" and (s["sm_met50"]["split"][:] == -1).all()
    with pytest.warns(ScoreWarning) as record:  # the Python API's default
        score(run, [files["met50"]], tmp_path / "s3.h5")
    assert ["channel met50 differs" in str(r.message) for r in record] == [True, False]


def test_early_stopping_is_recorded_as_converged(files, tmp_path):
    from darkflow.train.run import TrainOptions, load_train_config, train

    overrides = PREVIOUS | {"model.latent": 4, "model.context": 8, "model.hidden": 32, "model.channels": [8, 16],
                 "training.epochs": 6, "training.batch_size": 256, "training.learning_rate": 1e-30,
                 "training.patience": 1}  # frozen (lr 1e-30 moves no float32 weight): epoch 1 cannot improve on epoch 0
    summary = train(load_train_config("convvae", overrides),
                    TrainOptions(data=str(files["held"]), out=str(tmp_path / "run"), progress=False))
    diag = load_model(tmp_path / "run")[1]["diagnostics"]
    assert diag["stopped_by"] == "early_stopping" and diag["converged"] is True
    assert diag["best_epoch"] == 0 and diag["epochs"] == 2 and summary["diagnostics"] == diag
    assert not any(line.startswith("not converged") for line in summary["warnings"])
