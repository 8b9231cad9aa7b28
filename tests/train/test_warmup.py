"""KL and flow warm-up: the schedule seen by the training steps, the frozen flow, the best checkpoint, resume."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import torch
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError
from darkflow.train.dataset import EventDataset
from darkflow.train.run import (
    TrainOptions,
    _expected_warnings,
    build_model,
    load_model,
    load_train_config,
    train,
    type_codes,
)

TINY = {"model.latent": 4, "model.context": 8, "model.hidden": 32, "model.channels": [8, 16],
        "model.flow": "planar", "model.flow_options": {"num_layers": 2}, "training.batch_size": 64,
        "training.epochs": 4, "training.learning_rate": 3e-3, "training.patience": 10,
        "model.hlf_input": False}  # this module builds the model by hand, without the run's fitted hlf_scaler


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    d = tmp_path_factory.mktemp("warmup")
    src = write_tree(d / "sm.root", random_nanoaod(np.random.default_rng(0), 500))
    prepare(PrepareConfig(inputs=[str(src)], out=str(d / "sm.h5"), label="sm"), progress=False)
    return d / "sm.h5"


def expected_beta_scale(epoch: int, batch: int, batches: int, warmup: int) -> float:
    return 1.0 if epoch >= warmup else (epoch * batches + batch) / (warmup * batches)


class StopAfter:
    """A Lightning callback that ends the run after epoch ``epoch``, as an interrupted job would."""

    def __new__(cls, epoch: int):
        import lightning as L

        class Stop(L.Callback):
            def on_train_epoch_end(self, trainer, module) -> None:
                if trainer.current_epoch >= epoch:
                    trainer.should_stop = True

        return Stop()


class Recorder:
    """A Lightning callback: what the training steps and the validation saw, and the flow's parameters."""

    def __new__(cls, perturb_at: int | None = None):
        import lightning as L

        class Record(L.Callback):
            def __init__(self) -> None:
                self.steps: list[tuple[int, int, float, bool]] = []
                self.validation: list[tuple[float, bool]] = []
                self.val_loss: list[float] = []
                self.flow_before: dict[int, list[torch.Tensor]] = {}
                self.flow_after: dict[int, list[torch.Tensor]] = {}

            def on_train_epoch_start(self, trainer, module) -> None:
                vae = module.model
                if perturb_at is not None and trainer.current_epoch == perturb_at:
                    with torch.no_grad():  # a deliberate jolt: the epochs from here on validate worse
                        vae.decoder[-1].weight.mul_(30.0)
                        vae.decoder[-1].bias.add_(5.0)
                self.flow_before[trainer.current_epoch] = flow_state(vae)

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                vae = module.model
                self.steps.append((trainer.current_epoch, batch_idx, vae.beta_scale, vae.flow_active))

            def on_train_epoch_end(self, trainer, module) -> None:
                self.flow_after[trainer.current_epoch] = flow_state(module.model)

            def on_validation_batch_end(self, trainer, module, *args, **kwargs) -> None:
                self.validation.append((module.model.beta_scale, module.model.flow_active))

            def on_validation_end(self, trainer, module) -> None:
                self.val_loss.append(float(trainer.callback_metrics["val_loss"]))

        return Record()


def flow_state(vae) -> list[torch.Tensor]:
    return [p.detach().clone() for p in [*vae.flow.parameters(), *vae.context_head.parameters()]]


def fit(sm, out, overrides: dict, callbacks: list, resume: bool = False):
    """A real training run with DarkFlowModule and the run's own monitoring callbacks, plus ``callbacks``."""
    import lightning as L

    from darkflow.models.scaler import Standardizer
    from darkflow.train.data import EventBatches, batch_loader
    from darkflow.train.module import DarkFlowModule
    from darkflow.train.warmup import monitoring_callbacks

    config = load_train_config("convvae", TINY | overrides)
    t = config.training
    data = EventDataset(str(sm))
    idx = np.arange(len(data))
    train_idx, val_idx = idx[idx % 5 != 0], idx[idx % 5 == 0]
    L.seed_everything(1, verbose=False)
    with h5py.File(sm) as h:
        scaler = Standardizer(data.layout["features"], data.layout["rows"]).fit([(h["objects"][:], h["mask"][:])])
    model = build_model(config, scaler, type_codes(data.layout["rows"]))
    module = DarkFlowModule(model, t.learning_rate, 0.0, "use", t.kl_warmup, t.flow_warmup)
    best, early, others = monitoring_callbacks(out, t.patience, max(t.kl_warmup, t.flow_warmup))
    trainer = L.Trainer(max_epochs=t.epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[best, *others, early, *callbacks], default_root_dir=out)
    with warnings.catch_warnings():
        _expected_warnings()  # the run's own filter: on resume the checkpoint folder holds last.ckpt
        trainer.fit(module, batch_loader(EventBatches(str(sm), train_idx, True), t.batch_size, True, seed=1),
                    batch_loader(EventBatches(str(sm), val_idx, True), t.batch_size, False),
                    ckpt_path=str(out / "last.ckpt") if resume else None)
    return trainer, best, model


def test_schedule_frozen_flow_and_full_validation(sm, tmp_path):
    record = Recorder()
    trainer, _, model = fit(sm, tmp_path, {"training.kl_warmup": 3, "training.flow_warmup": 2}, [record])
    batches = trainer.num_training_batches
    assert batches >= 4 and len(record.steps) == 4 * batches
    for epoch, batch, beta_scale, flow_active in record.steps:
        assert beta_scale == pytest.approx(expected_beta_scale(epoch, batch, batches, 3), abs=1e-12)
        assert flow_active == (epoch >= 2)
    scales = [s[2] for s in record.steps]
    assert scales[0] == 0.0 and scales[-1] == 1.0 and all(np.diff(scales) >= 0)
    assert record.validation and all(v == (1.0, True) for v in record.validation)
    for epoch in range(4):
        same = all(torch.equal(a, b) for a, b in zip(record.flow_before[epoch], record.flow_after[epoch], strict=True))
        assert same == (epoch < 2), epoch
    assert (model.beta_scale, model.flow_active) == (1.0, True)


def test_best_checkpoint_and_early_stopping_skip_the_warmup(sm, tmp_path):
    # the jolt at epoch 1 makes every later epoch validate worse than epoch 0: unguarded, early stopping with
    # patience 1 would end the run at epoch 1 and the best checkpoint would be epoch 0, a warm-up epoch
    record = Recorder(perturb_at=1)
    trainer, best, _ = fit(sm, tmp_path, {"training.flow_warmup": 3, "training.patience": 1,
                                          "training.epochs": 5}, [record])
    losses = record.val_loss
    assert len(losses) == 5 and int(np.argmin(losses)) == 0 and min(losses[1:]) > losses[0]
    ckpt = torch.load(best.best_model_path, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] >= 3 and float(best.best_model_score) == pytest.approx(min(losses[3:]), rel=1e-6)
    assert float(best.best_model_score) == pytest.approx(losses[ckpt["epoch"]], rel=1e-6)


def test_train_uses_the_warmup_and_resume_restores_it(sm, tmp_path):
    import csv

    out = tmp_path / "run"
    config = load_train_config("convvae", TINY | {"training.kl_warmup": 2, "training.flow_warmup": 1,
                                                  "standardize.rotate": "leading", "standardize.reflect_eta": True})
    summary = train(config, TrainOptions(data=str(sm), out=str(out), progress=False))
    model, meta = load_model(out)
    assert (meta["scaler"]["rotate"], meta["scaler"]["reflect_eta"]) == ("leading", True)
    assert model.standardizer.rotate == "leading" and (model.beta_scale, model.flow_active) == (1.0, True)
    with open(out / "metrics.csv") as handle:
        losses = [float(r["val_loss"]) for r in csv.DictReader(handle)]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert summary["best_val_loss"] == pytest.approx(min(losses[2:]), rel=1e-5)
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] >= 2 and summary["diagnostics"]["best_epoch"] >= 2

    # interrupted after epoch 1 of a 3-epoch warm-up, then resumed: the schedule continues at epoch 2
    part = tmp_path / "part"
    warm = {"training.kl_warmup": 3, "training.flow_warmup": 3}
    fit(sm, part, warm, [StopAfter(1)])
    record = Recorder()
    trainer, _, _ = fit(sm, part, warm, [record], resume=True)
    batches = trainer.num_training_batches
    assert sorted({s[0] for s in record.steps}) == [2, 3]
    for epoch, batch, beta_scale, flow_active in record.steps:
        assert beta_scale == pytest.approx(expected_beta_scale(epoch, batch, batches, 3), abs=1e-12)
        assert flow_active == (epoch >= 3)


def test_warmup_options_are_refused_where_they_do_not_apply(sm):
    with pytest.raises(ConfigError, match=r"density.yaml: the warm-up options \(training.kl_warmup\) apply to VAE"):
        load_train_config("density", {"training.kl_warmup": 2})
    short = load_train_config("convvae", {"training.flow_warmup": 5, "training.kl_warmup": 1, "training.epochs": 5})
    assert (short.training.flow_warmup, short.training.kl_warmup) == (4, 1)  # shortened to epochs - 1
    assert load_train_config("convvae", {"training.epochs": 1}).training.flow_warmup == 0
    config = load_train_config("convvae", {"training.kl_warmup": 0, "training.flow_warmup": 0})
    assert config.training.kl_warmup == 0 and config.training.flow_warmup == 0
