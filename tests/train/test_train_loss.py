"""``train_loss`` of an epoch: the mean of the step losses weighted by the events of each batch, logged once per
epoch, equal bit for bit to what Lightning's per-step ``self.log(..., on_epoch=True)`` accumulation gives."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from darkflow.train.data import EventBatchSampler
from darkflow.train.module import DarkFlowModule


class _Model(torch.nn.Module):
    """A tiny model with per-event losses (``total`` ``(B,)``) that training changes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 1)

    def forward(self, objects, mask, sample=True, hlf=None):
        total = self.linear(objects.flatten(1)).squeeze(1) ** 2 + objects.square().mean(dim=(1, 2))
        return {"total": total, "reco": total * 0.5}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.objects = torch.from_numpy(rng.normal(size=(n, 3, 4)).astype(np.float32))
        self.weight = torch.from_numpy(rng.lognormal(0.0, 1.0, n))

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, positions):
        return {"objects": self.objects[positions], "mask": torch.ones(len(positions), 3, dtype=torch.bool),
                "weight": self.weight[positions]}


class _Reference(DarkFlowModule):
    """Also logs the step loss the way Lightning accumulates an epoch mean, as ``reference_loss``."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("reference_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["mask"]),
                 sync_dist=True)
        self.steps.append((loss.item(), len(batch["mask"])))
        return loss


class _Collect(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.epochs.append({k: trainer.callback_metrics[k].item() for k in ("train_loss", "reference_loss")}
                           | {"steps": list(module.steps)})
        module.steps.clear()


def test_the_epoch_train_loss_is_lightnings_epoch_mean():
    torch.manual_seed(0)
    module = _Reference(_Model(), learning_rate=1e-2)
    module.steps = []
    train = DataLoader(_Batches(1000, 0), sampler=EventBatchSampler(1000, 96, shuffle=True), batch_size=None)
    val = DataLoader(_Batches(200, 1), sampler=EventBatchSampler(200, 96, shuffle=False), batch_size=None)
    collect = _Collect()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, callbacks=[collect])
    trainer.fit(module, train, val)
    assert len(collect.epochs) == 3
    for epoch in collect.epochs:
        assert epoch["train_loss"] == epoch["reference_loss"]  # the same float32 value, bit for bit
        losses, events = np.array(epoch["steps"]).T
        assert len(losses) == 11 and events[-1] == 1000 - 10 * 96  # a last, smaller batch counts by its events
        expected = np.sum(losses * events) / np.sum(events)
        assert epoch["train_loss"] == pytest.approx(expected, rel=1e-6)
    assert collect.epochs[0]["train_loss"] != collect.epochs[2]["train_loss"]
