"""Training options and training files that cannot be right: refused in one line before anything is written."""

from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.cli import main
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError, DataError
from darkflow.fileio import leftovers
from darkflow.train.run import TrainOptions, load_train_config, train

SMALL = ["--set", "model.latent=4", "--set", "model.hidden=16", "--set", "model.channels=[4, 8]", "-q"]


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    src = write_tree(d / "sm.root", random_nanoaod(np.random.default_rng(0), 300))
    prepare(PrepareConfig(inputs=[str(src)], out=str(d / "sm.h5"), label="sm"), progress=False)
    return d / "sm.h5"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(argv: list[str], folder, capsys) -> str:
    """Run ``darkflow train ARGV``: exit 2, one line on stderr, nothing new in ``folder``; returns the line."""
    before = sorted(p.name for p in folder.iterdir())
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == before and not leftovers(folder)
    return err[0]


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "training.epochs: must be at least 1 (got 0)"),
    (["--epochs", "-1"], "training.epochs: must be at least 1 (got -1)"),
    (["--batch-size", "0"], "training.batch_size: must be at least 1 (got 0)"),
    (["--devices", "0"], "training.devices: must be at least 1 (got 0)"),
    (["--num-nodes", "0"], "training.num_nodes: must be at least 1 (got 0)"),
    (["--set", "training.learning_rate=nan"], "training.learning_rate: Input should be a finite number"),
    (["--set", "training.learning_rate=inf"], "training.learning_rate: Input should be a finite number"),
    (["--set", "training.learning_rate=0"], "training.learning_rate: Input should be greater than 0 (got 0)"),
    (["--set", "training.learning_rate=-1e-3"], "training.learning_rate: Input should be greater than 0"),
    (["--set", "training.weight_decay=-1"], "training.weight_decay: Input should be greater than or equal to 0"),
    (["--set", "training.seed=-1"], "training.seed: Input should be greater than or equal to 0 (got -1)"),
    (["--set", "training.num_workers=-2"], "training.num_workers: Input should be greater than or equal to 0"),
    (["--set", "model.latent=0"], "model.vae.latent: Input should be greater than 0 (got 0)"),
    (["--set", "model.channels=[]"], "model.vae.channels: List should have at least 1 item"),
    (["--set", "training.accelerator=foo"], "training options (accelerator 'foo', devices 1, strategy 'auto', num_nodes 1): "
                               "You selected an invalid accelerator name"),
    (["--set", "training.strategy=bogus"], "You selected an invalid strategy name"),
])
def test_bad_training_options_are_refused(sm, tmp_path, capsys, flags, message):
    line = refused(["--data", str(sm), "--out", str(tmp_path / "run"), *SMALL, *flags], tmp_path, capsys)
    assert line.startswith("darkflow train: error: ") and message in line


def test_bad_options_in_the_python_api_are_one_line_config_errors():
    for key, value in (("training.epochs", 0), ("training.batch_size", -4), ("training.learning_rate", float("inf")),
                       ("training.devices", 0), ("training.num_nodes", -1), ("training.patience", -1)):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
            load_train_config("convvae", {key: value})
        assert "\n" not in str(err.value)


def damaged(sm, tmp_path, name: str, change) -> str:
    """A copy of the training file with ``change(h5py file)`` applied."""
    path = tmp_path / name
    shutil.copy(sm, path)
    with h5py.File(path, "r+") as h:
        change(h)
    return str(path)


def set_values(dataset: str, index, value: float):
    def change(h) -> None:
        values = h[dataset][:]
        values[index] = value
        h[dataset][...] = values

    return change


@pytest.mark.parametrize("name, change, error", [
    ("inf_weight.h5", set_values("weight", [5, 9], [np.inf, np.nan]),
     "2 event weight(s) are NaN or inf (the first at event 5); event weights must be finite"),
    ("nan_objects.h5", set_values("objects", (7, 0, 1), np.nan),
     "damaged input file: 1 event(s) hold NaN or inf in 'objects' (the first at event 7); prepare the file again"),
    ("inf_hlf.h5", set_values("hlf", ([250, 3], [0, 2]), [np.inf, -np.inf]),
     "damaged input file: 2 event(s) hold NaN or inf in 'hlf' (the first at event 3)"),
    ("zero_weights.h5", set_values("weight", slice(None), 0.0),
     "every event weight of the training split is zero, so the weighted losses are undefined"),
])
def test_non_finite_values_in_the_training_file_are_refused(sm, tmp_path, capsys, name, change, error):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = damaged(sm, data_dir, name, change)
    before = sha(data_dir / name)
    runs = tmp_path / "runs"
    runs.mkdir()
    config = load_train_config("convvae", {"model.latent": 4, "model.hidden": 16, "model.channels": [4, 8]})
    with pytest.raises(DataError) as err:
        train(config, TrainOptions(data=data, out=str(runs / "run"), progress=False))
    assert error in str(err.value) and "learning" not in str(err.value)
    assert list(runs.iterdir()) == [] and sha(data_dir / name) == before
    line = refused(["--data", data, "--out", str(runs / "run"), *SMALL], runs, capsys)
    assert error in line


def test_zero_weights_train_when_the_weights_are_ignored(sm, tmp_path):
    data = damaged(sm, tmp_path, "zero.h5", set_values("weight", slice(None), 0.0))
    config = load_train_config("density", {"training.epochs": 1, "training.event_weights": "ignore",
                                           "model.flow_options": {"num_layers": 1, "hidden_features": 8}})
    summary = train(config, TrainOptions(data=data, out=str(tmp_path / "run"), progress=False))
    assert np.isfinite(summary["best_val_loss"]) and (tmp_path / "run" / "model.pt").is_file()
