"""The validation loss is the event-weighted mean over all validation events, on one process and several."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from darkflow.train.module import DarkFlowModule
from darkflow.train.weighted_mean import WeightedMean


def test_weighted_mean_of_two_values():
    metric = WeightedMean()
    metric.update(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 100.0]))
    assert metric.compute().item() == pytest.approx(np.average([1.0, 3.0], weights=[1.0, 100.0]), rel=1e-15)
    assert metric.compute().item() == pytest.approx(2.98019801980198, rel=1e-12)


def test_weighted_mean_over_batches_in_float64():
    rng = np.random.default_rng(0)
    values = rng.normal(1e4, 1.0, 10_000).astype(np.float32)
    weights = rng.lognormal(0.0, 2.0, 10_000)
    metric = WeightedMean()
    for lo in range(0, 10_000, 999):
        metric.update(torch.from_numpy(values[lo : lo + 999]), torch.from_numpy(weights[lo : lo + 999]))
    assert metric.compute().dtype == torch.float64
    expected = np.average(values.astype(np.float64), weights=weights)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-13)
    assert abs(expected - values.astype(np.float64).mean()) > 1e-3  # an unweighted mean would be caught
    metric.reset()
    metric.update(torch.ones(3), torch.zeros(3))
    assert np.isnan(metric.compute().item())


def test_negative_weights_are_normalized_as_in_training():
    values, weights = np.array([2.0, 5.0, 7.0]), np.array([1.5, -0.5, 2.0])
    metric = WeightedMean()
    metric.update(torch.from_numpy(values), torch.from_numpy(weights))
    assert metric.compute().item() == pytest.approx((weights * values).sum() / np.abs(weights).sum(), rel=1e-15)


class _Toy(torch.nn.Module):
    """Per-event 'losses' that are functions of the event; ``sample`` must be False in validation."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.ones(1))

    def forward(self, objects, mask, sample=True, hlf=None):
        assert not sample
        total = objects.sum(dim=(1, 2)) * self.p
        return {"total": total, "reco": objects[:, 0, 0] * self.p}


@pytest.mark.parametrize("mode", ["use", "abs", "ignore"])
def test_validation_step_weights_like_the_training_step(mode):
    rng = np.random.default_rng(1)
    objects = rng.normal(size=(300, 3, 4)).astype(np.float32)
    weights = rng.lognormal(0.0, 1.5, 300) * np.where(rng.random(300) < 0.2, -1.0, 1.0)
    module = DarkFlowModule(_Toy(), event_weights=mode)
    for lo in range(0, 300, 64):
        batch = {"objects": torch.from_numpy(objects[lo : lo + 64]),
                 "mask": torch.ones(len(objects[lo : lo + 64]), 3, dtype=torch.bool),
                 "weight": torch.from_numpy(weights[lo : lo + 64])}
        with torch.no_grad():
            module.validation_step(batch, 0)
    w = {"use": weights, "abs": np.abs(weights), "ignore": np.ones(300)}[mode]
    total = objects.astype(np.float64).sum(axis=(1, 2))
    for key, value in (("total", total), ("reco", objects[:, 0, 0].astype(np.float64))):
        expected = (w * value).sum() / np.abs(w).sum()
        assert module._val[key].compute().item() == pytest.approx(expected, rel=1e-6)
    # the training step's loss on the whole set as one batch is the same quantity
    batch = {"objects": torch.from_numpy(objects), "mask": torch.ones(300, 3, dtype=torch.bool),
             "weight": torch.from_numpy(weights)}
    loss = module._step(batch, sample=False)
    assert loss.item() == pytest.approx(module._val["total"].compute().item(), rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_worker(rank: int, world: int, port: int, values, weights, result) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metric = WeightedMean()
        part = np.array_split(np.arange(len(values)), world)[rank]
        metric.update(torch.from_numpy(values[part]), torch.from_numpy(weights[part]))
        result[rank] = metric.compute().item()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_sum_their_states():
    import torch.multiprocessing as mp

    rng = np.random.default_rng(2)
    values, weights = rng.normal(size=101), rng.lognormal(0.0, 2.0, 101)
    result = mp.Manager().dict()
    mp.spawn(_sync_worker, args=(2, _free_port(), values, weights, result), nprocs=2, join=True)
    expected = np.average(values, weights=weights)
    assert result[0] == pytest.approx(expected, rel=1e-13) and result[1] == pytest.approx(expected, rel=1e-13)
