"""DDP training of a VAE with flow warm-up: the bypassed flow stays in the graph with weight 0, so DDP (without the
search for unused parameters) trains, and its parameters, gradients dropped, are left exactly as they were, as in
one process; the epoch's metrics are synced on every process, so that a warm-up epoch does not hang."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import prepared_nanoaod

from darkflow.train.warmup import bypassed_parameters, keep_in_graph

# Records every parameter of the model on each process at the start of training and at the end of epoch 0 (the
# flow warm-up), then runs the command line as a user does.
PROBE = """
import sys
import torch
from darkflow.train.module import DarkFlowModule

OUT = sys.argv[1]


def snapshot(self, when):
    state = {name: p.detach().clone() for name, p in self.model.named_parameters()}
    torch.save(state, f"{OUT}/{when}_rank{self.global_rank}.pt")


def on_train_start(self, _base=DarkFlowModule.on_train_start):
    _base(self)
    snapshot(self, "start")


def on_train_epoch_end(self):
    if self.current_epoch == 0:
        snapshot(self, "warmup")


DarkFlowModule.on_train_start = on_train_start
DarkFlowModule.on_train_epoch_end = on_train_epoch_end
from darkflow.cli import main

sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def sm_file(tmp_path_factory):
    return prepared_nanoaod(tmp_path_factory.mktemp("ddp_warmup"), {"sm": (0, 600)})["sm"]


@pytest.mark.slow
def test_two_cpu_processes_train_through_the_flow_warmup(sm_file, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_PROCID")}
    argv = ["train", "--data", str(sm_file), "--out", str(run), "--model", "convvae", "--epochs", "2",
            "--batch-size", "128", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--threads", "1",
            "-q", "--set", "model.channels=[8]", "--set", "model.hidden=16",
            "--set", "model.flow_options={num_layers: 2}", "--set", "training.flow_warmup=1",
            "--set", "training.kl_warmup=1", "--set", "training.weight_decay=0.01"]
    done = subprocess.run([sys.executable, str(script), str(tmp_path), *argv], capture_output=True, text=True,
                          env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trained 2 epoch(s)") == 1
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss"))
    start = [torch.load(tmp_path / f"start_rank{r}.pt") for r in (0, 1)]
    warm = [torch.load(tmp_path / f"warmup_rank{r}.pt") for r in (0, 1)]
    flow = [name for name in start[0] if name.startswith(("flow.", "context_head."))]
    assert len(flow) >= 4 and any(name.startswith("context_head.") for name in flow)
    for rank in (0, 1):
        for name in start[0]:
            assert torch.equal(warm[rank][name], warm[0][name]), name  # DDP keeps the processes equal
            # weight decay 0.01 would move every parameter with a (zero) gradient: the flow's have none
            assert torch.equal(warm[rank][name], start[rank][name]) == (name in flow), name
    from darkflow.train.run import load_model

    model, _ = load_model(run)
    trained = dict(model.named_parameters())
    assert all(not torch.equal(trained[name].detach(), start[0][name]) for name in flow)  # trained after warm-up


def test_keep_in_graph_is_zero_with_zero_gradients():
    """Against autograd in float64: the term adds exactly 0 and gives every parameter a zero gradient."""
    torch.manual_seed(0)
    flow = torch.nn.Linear(3, 2).double()
    head = torch.nn.Linear(2, 4).double()
    model = torch.nn.Module()
    model.flow, model.context_head, model.encoder = flow, head, torch.nn.Linear(4, 4).double()
    params = bypassed_parameters(model)
    assert {id(p) for p in params} == {id(p) for p in [*flow.parameters(), *head.parameters()]}
    loss = model.encoder(torch.randn(5, 4, dtype=torch.float64)).pow(2).sum()
    expected = torch.autograd.grad(loss, list(model.encoder.parameters()), retain_graph=True)
    total = loss + keep_in_graph(params, loss)
    assert total.item() == loss.item() and total.dtype == torch.float64
    grads = torch.autograd.grad(total, [*params, *model.encoder.parameters()])
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads[: len(params)])
    assert all(torch.equal(g, e) for g, e in zip(grads[len(params):], expected, strict=True))
    empty = torch.nn.Module()
    assert bypassed_parameters(empty) == [] and keep_in_graph([], loss).item() == 0.0
