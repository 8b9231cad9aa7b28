"""KL and flow warm-up of the VAE: the schedule, and checkpointing and early stopping that start after it.

KL warm-up (beta annealing): the KL weight rises linearly from 0 to the model's ``beta`` over the first
``kl_warmup`` epochs, step by step (S. R. Bowman et al., "Generating Sentences from a Continuous Space",
CoNLL 2016, arXiv:1511.06349; C. K. Sonderby et al., "Ladder Variational Autoencoders", NeurIPS 2016,
arXiv:1602.02282). Flow warm-up: the flow is the identity (z_K = z_0, log-det 0) for the first
``flow_warmup`` epochs, so that the encoder and decoder settle before the flow shapes the posterior.

The schedule is a function of the epoch counter and the batch index only, so that ``--resume`` (which
restarts at the epoch after the last completed one) restores it. The validation losses are always those
of the full objective, and the best checkpoint and early stopping only consider the epochs after the
warm-up.

Under DDP the bypassed flow's parameters would take no part in the loss, which DDP (without the search for
unused parameters) refuses. In several processes they therefore stay in the graph with weight 0
(:func:`keep_in_graph`) and their zero gradients are dropped before the optimizer step, so that Adam leaves
them, their moments and their step count untouched, as in one process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import Tensor, nn


def schedule(epoch: int, batch: int, batches: float, kl_warmup: int, flow_warmup: int) -> tuple[float, bool]:
    """``(beta_scale, flow_active)`` at batch ``batch`` of ``batches`` in epoch ``epoch`` (both from 0).

    ``beta_scale = min(1, (epoch + batch / batches) / kl_warmup)`` (1 without KL warm-up; per epoch when the
    number of batches is unknown) and ``flow_active = epoch >= flow_warmup``.
    """
    fraction = batch / batches if math.isfinite(batches) and batches > 0 else 0.0
    beta_scale = min(1.0, (epoch + fraction) / kl_warmup) if kl_warmup > 0 else 1.0
    return beta_scale, epoch >= flow_warmup


def monitoring_callbacks(ckpt_dir: Path, patience: int, start: int) -> tuple[Any, Any, list[Any]]:
    """``(best, early, others)``: the Lightning callbacks that keep ``best.ckpt`` (lowest ``val_loss``) and stop
    early, both ignoring the epochs before ``start``, and in ``others`` the one that writes ``last.ckpt`` at the
    end of every epoch, warm-up epochs included (:mod:`darkflow.train.epoch_end`)."""
    from darkflow.train.epoch_end import BestCheckpoint, EarlyStop, LastCheckpoint

    return BestCheckpoint(ckpt_dir, start), EarlyStop(patience, start), [LastCheckpoint(Path(ckpt_dir) / "last.ckpt")]


def bypassed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that take no part in the loss while the flow is bypassed: the flow's and those of the
    head that gives it its context (``model.flow``, ``model.context_head``; none for a model without them)."""
    parts = [getattr(model, name, None) for name in ("flow", "context_head")]
    return [p for part in parts if isinstance(part, nn.Module) for p in part.parameters() if p.requires_grad]


def keep_in_graph(parameters: list[nn.Parameter], like: Tensor) -> Tensor:
    """``0 * sum`` of every element of ``parameters``, a scalar of ``like``'s dtype: added to the loss it changes
    no value and no other gradient, and gives each of these parameters a zero gradient, so that DDP sees them used.
    """
    if not parameters:
        return like.new_zeros(())
    return 0.0 * sum(p.sum().to(like.dtype) for p in parameters)
