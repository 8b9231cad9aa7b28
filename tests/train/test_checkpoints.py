"""Checkpoints and metrics.csv at the end of every epoch; a non-finite loss keeps the last good checkpoint."""

from __future__ import annotations

import csv
import hashlib
import shutil
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import DataError
from darkflow.fileio import leftovers
from darkflow.train.run import (
    TrainOptions,
    _expected_warnings,
    build_model,
    load_train_config,
    train,
    type_codes,
)

TINY = {"model.latent": 4, "model.context": 8, "model.hidden": 16, "model.channels": [4, 8],
        "model.flow": "planar", "model.flow_options": {"num_layers": 1}, "model.hlf_input": False,
        "model.reco_loss": "mse", "training.batch_size": 64, "training.learning_rate": 3e-3,
        "training.patience": 10, "training.kl_warmup": 0, "training.flow_warmup": 0}


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    src = write_tree(d / "sm.root", random_nanoaod(np.random.default_rng(0), 400))
    prepare(PrepareConfig(inputs=[str(src)], out=str(d / "sm.h5"), label="sm"), progress=False)
    return d / "sm.h5"


def ckpt_epoch(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"]


def rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Probe:
    """A callback recording, at the start of every epoch, the epoch ``last.ckpt`` holds; it can end the run
    after an epoch (as a killed job would) or spoil the validation from an epoch on."""

    def __new__(cls, last, stop_after: int | None = None, nan_from: int | None = None):
        import lightning as L

        class Record(L.Callback):
            def __init__(self) -> None:
                self.seen: list[tuple[int, int | None]] = []

            def on_train_epoch_start(self, trainer, module) -> None:
                self.seen.append((trainer.current_epoch, ckpt_epoch(last) if last.is_file() else None))

            def on_train_epoch_end(self, trainer, module) -> None:
                if stop_after is not None and trainer.current_epoch >= stop_after:
                    trainer.should_stop = True

            def on_validation_batch_start(self, trainer, module, batch, *args) -> None:
                if nan_from is not None and trainer.current_epoch >= nan_from:
                    batch["objects"][:] = float("nan")  # the validation loss of this epoch becomes NaN

        return Record()


def fit(sm, out, overrides: dict, probe_options: dict | None = None, resume: bool = False):
    """A real run with the run's own callbacks and checkpoint writer (what ``train`` builds), plus a probe."""
    import lightning as L

    from darkflow.train.data import EventBatches, batch_loader
    from darkflow.train.dataset import EventDataset
    from darkflow.train.epoch_end import AtomicCheckpointIO, MetricsCSV
    from darkflow.train.module import DarkFlowModule
    from darkflow.train.run import _fit_scaler
    from darkflow.train.warmup import monitoring_callbacks

    out.mkdir(parents=True, exist_ok=True)
    config = load_train_config("convvae", TINY | overrides)
    t = config.training
    data = EventDataset(str(sm))
    idx = np.arange(len(data))
    train_idx, val_idx = idx[idx % 5 != 0], idx[idx % 5 == 0]
    L.seed_everything(1, verbose=False)
    scaler = _fit_scaler(str(sm), train_idx, config, data.layout)
    model = build_model(config, scaler, type_codes(data.layout["rows"]))
    module = DarkFlowModule(model, t.learning_rate, 0.0, "use", t.kl_warmup, t.flow_warmup)
    best, early, others = monitoring_callbacks(out / "checkpoints", t.patience, max(t.kl_warmup, t.flow_warmup))
    probe = Probe(out / "checkpoints" / "last.ckpt", **(probe_options or {}))
    trainer = L.Trainer(max_epochs=t.epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()], default_root_dir=out,
                        callbacks=[best, *others, early, MetricsCSV(out / "metrics.csv"), probe])
    with warnings.catch_warnings():
        _expected_warnings()
        trainer.fit(module, batch_loader(EventBatches(str(sm), train_idx, True), t.batch_size, True, seed=1),
                    batch_loader(EventBatches(str(sm), val_idx, True), t.batch_size, False),
                    ckpt_path=str(out / "checkpoints" / "last.ckpt") if resume else None)
    return trainer, best, others[0], probe, module


@pytest.mark.parametrize("overrides", [
    {"training.kl_warmup": 2, "training.flow_warmup": 2},  # no best checkpoint during the warm-up
    {"training.learning_rate": 1e-30},  # frozen: the validation loss never improves after epoch 0
])
def test_last_checkpoint_after_every_epoch(sm, tmp_path, overrides):
    trainer, best, last, probe, _ = fit(sm, tmp_path, {"training.epochs": 4} | overrides)
    assert probe.seen == [(0, None), (1, 0), (2, 1), (3, 2)]
    assert ckpt_epoch(tmp_path / "checkpoints" / "last.ckpt") == 3 and last.epoch == 3
    assert [int(r["epoch"]) for r in rows(tmp_path / "metrics.csv")] == [0, 1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    if "training.kl_warmup" in overrides:
        assert ckpt_epoch(best.best_model_path) >= 2  # the best epoch is never a warm-up epoch
    else:
        assert ckpt_epoch(best.best_model_path) == 0


def test_a_resume_drops_the_metrics_rows_of_the_epoch_it_repeats(sm, tmp_path):
    fit(sm, tmp_path, {"training.epochs": 4}, {"stop_after": 1})
    first = rows(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in first] == [0, 1] and ckpt_epoch(tmp_path / "checkpoints" / "last.ckpt") == 1
    with open(tmp_path / "metrics.csv", "a") as handle:  # killed after the row of epoch 2, before its checkpoint
        handle.write("2,9.9,1,1,1,1,1\n")
    _, _, _, probe, _ = fit(sm, tmp_path, {"training.epochs": 4}, resume=True)
    assert probe.seen[0] == (2, 1)  # the resumed run starts at the epoch that was in progress
    again = rows(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in again] == [0, 1, 2, 3] and again[:2] == first and again[2]["seconds"] != "9.9"


def test_a_non_finite_validation_loss_stops_at_once_and_keeps_the_last_good_checkpoint(sm, tmp_path):
    from darkflow.train.module import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match=r"^the validation loss became nan at epoch 2; lower "
                                            r"training.learning_rate") as err:
        fit(sm, tmp_path, {"training.epochs": 5}, {"nan_from": 2})
    assert err.value.epoch == 2
    assert ckpt_epoch(tmp_path / "checkpoints" / "last.ckpt") == 1
    assert ckpt_epoch(tmp_path / "checkpoints" / "best.ckpt") <= 1
    assert [int(r["epoch"]) for r in rows(tmp_path / "metrics.csv")] == [0, 1]


def test_the_best_checkpoint_keeps_its_state_when_the_run_folder_moves(sm, tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from darkflow.train.epoch_end import BestCheckpoint, EarlyStop

    _, best, _, _, _ = fit(sm, tmp_path / "a", {"training.epochs": 3})
    score, name = float(best.best_model_score), best.best_model_path
    shutil.move(tmp_path / "a", tmp_path / "b")
    _, moved, _, _, _ = fit(sm, tmp_path / "b", {"training.epochs": 3}, resume=True)  # nothing left to train
    assert float(moved.best_model_score) == score
    assert moved.best_model_path == str((tmp_path / "b" / "checkpoints" / "best.ckpt").resolve())
    assert name.endswith("a/checkpoints/best.ckpt") and list(moved.best_k_models) == [moved.best_model_path]
    # runs written before these classes existed resume with their state (the same state keys)
    plain = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val_loss", mode="min", save_top_k=1)
    assert BestCheckpoint(tmp_path).state_key == plain.state_key
    assert EarlyStop(3).state_key == EarlyStopping(monitor="val_loss", mode="min", patience=3).state_key
    assert BestCheckpoint(tmp_path, 2).state_key.startswith("monitoring_callbacks.<locals>.BestAfterWarmup{")


def test_checkpoints_are_written_atomically(tmp_path):
    from darkflow.train.epoch_end import AtomicCheckpointIO

    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(Exception):  # noqa: B017 (torch.save cannot pickle a local function: a failed write)
        io.save_checkpoint({"epoch": 4, "hook": lambda: None}, path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before and not leftovers(path.parent)


def test_a_diverging_resume_keeps_the_last_good_checkpoint_and_resumes_from_it(sm, tmp_path):
    out = tmp_path / "run"
    train(load_train_config("convvae", TINY | {"training.epochs": 2}),
          TrainOptions(data=str(sm), out=str(out), progress=False))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    # the resumed optimizer takes the new learning rate (not the checkpoint's): training diverges at epoch 2
    with pytest.raises(DataError) as err:
        train(load_train_config("convvae", TINY | {"training.epochs": 4, "training.learning_rate": 1e4}),
              TrainOptions(data=str(sm), out=str(out), resume=True, progress=False))
    staging = tmp_path / "run.partial"
    message = str(err.value)
    assert message.startswith("the training loss became ") and " at epoch 2, batch " in message
    assert f"the last good checkpoint (epoch 1) is kept in {staging}" in message
    assert message.endswith("set `resume` to continue from it with a lower `training.learning_rate` (or "
                            "`training.gradient_clip`)")
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()} == before
    assert ckpt_epoch(staging / "checkpoints" / "last.ckpt") == 1 and not (staging / "model.pt").exists()
    summary = train(load_train_config("convvae", TINY | {"training.epochs": 4}),
                    TrainOptions(data=str(sm), out=str(out), resume=True, progress=False))
    assert summary["epochs"] == 4 and not staging.exists() and not leftovers(tmp_path)
    assert [int(r["epoch"]) for r in rows(out / "metrics.csv")] == [0, 1, 2, 3]


def test_lightning_s_own_sigterm_handling_ends_as_an_interrupt(sm, tmp_path):
    import os
    import signal
    import threading

    from darkflow.errors import Interrupted

    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))  # a handler that returns

    def terminate_after_an_epoch() -> None:
        metrics = tmp_path / "run.partial" / "metrics.csv"
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_after_an_epoch, daemon=True)
    sender.start()
    try:
        with pytest.raises(Interrupted) as err:  # not Lightning's SIGTERMException, a SystemExit with status 0
            train(load_train_config("convvae", TINY | {"training.epochs": 200}),
                  TrainOptions(data=str(sm), out=str(tmp_path / "run"), progress=False))
    finally:
        sender.join(timeout=60)
        signal.signal(signal.SIGTERM, previous)
    assert err.value.signum == signal.SIGTERM and seen == [signal.SIGTERM]
    assert list(tmp_path.iterdir()) == []
