"""The Lightning module: one training step for every DarkFlow model, weighted, with a non-finite guard."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from darkflow.errors import DarkFlowError


class NonFiniteLoss(DarkFlowError):
    """The training or validation loss became NaN or inf.

    Attributes:
        what: which loss, its value and where (``"the validation loss became nan at epoch 3"``).
        epoch: the epoch it happened in.
    """

    def __init__(self, what: str, epoch: int) -> None:
        self.what, self.epoch = what, epoch
        super().__init__(f"{what}; lower training.learning_rate or training.gradient_clip, or check the inputs")


class DarkFlowModule(L.LightningModule):
    """Trains any model whose forward returns per-event losses (``total`` is minimised).

    Arguments:
        model: a :class:`~darkflow.models.vae.FlowVAE` or :class:`~darkflow.models.density.FlowDensity`.
        learning_rate, weight_decay: Adam settings.
        event_weights: ``use`` the file's weights, their ``abs`` value, or ``ignore`` them.
        kl_warmup, flow_warmup: epochs of KL and flow warm-up of a FlowVAE (:mod:`darkflow.train.warmup`): the
            training steps set ``model.beta_scale`` and ``model.flow_active`` from the schedule; validation,
            and the model after training, use the full objective (``beta_scale = 1``, flow active). Under DDP
            the bypassed flow stays in the graph with weight 0 (:func:`darkflow.train.warmup.keep_in_graph`).

    Both losses are ``sum_i w_i l_i / sum_i |w_i|`` with the weights ``w`` of ``event_weights`` (the weighted
    mean when no weight is negative): the training loss over each global batch, the validation losses
    (``val_loss`` for ``total``, ``val_reco``, ``val_kl``, ...) over all validation events of all processes,
    accumulated in float64 by :class:`~darkflow.train.weighted_mean.WeightedMean`, with the deterministic
    scores (posterior mean, ``sample=False``) that ``darkflow score`` writes.
    """

    def __init__(self, model: nn.Module, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 event_weights: str = "use", kl_warmup: int = 0, flow_warmup: int = 0) -> None:
        super().__init__()
        self.model = model
        self.kl_warmup, self.flow_warmup = kl_warmup, flow_warmup
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.event_weights = event_weights
        self._val: dict = {}  # score name -> WeightedMean, made on first use (not in the state dict)
        self._train_sum: Tensor | None = None  # sum of loss * events over this epoch's training batches
        self._train_events = 0
        self._zero_grads: list[nn.Parameter] = []  # bypassed in this step under DDP: their gradients are dropped

    def _weights(self, batch: dict[str, Tensor], dtype: torch.dtype = torch.float32) -> Tensor:
        w = batch["weight"].to(dtype)
        if self.event_weights == "abs":
            return w.abs()
        if self.event_weights == "ignore":
            return torch.ones_like(w)
        return w

    def _world(self) -> int:
        return self._trainer.world_size if self._trainer is not None else 1

    def _step(self, batch: dict[str, Tensor], sample: bool) -> Tensor:
        """The weighted mean of the per-event ``total`` loss over the global batch (the other losses the
        model returns are not needed for the gradient and are not reduced)."""
        out = self.model(batch["objects"], batch["mask"], sample=sample, hlf=batch.get("hlf"))
        w = self._weights(batch)
        norm = w.abs().sum()
        world = self._world()
        if world > 1:
            # Normalize by the weight of the whole global batch, times the number of processes: the
            # gradient DDP averages over processes is then the gradient of the global weighted mean.
            norm = self.trainer.strategy.reduce(norm.detach(), reduce_op="sum") / world
        norm = norm.clamp_min(1e-12)
        return (w * out["total"]).sum() / norm

    def _set_schedule(self, beta_scale: float, flow_active: bool) -> None:
        if self.kl_warmup or self.flow_warmup:
            self.model.beta_scale, self.model.flow_active = beta_scale, flow_active

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        from darkflow.train.warmup import schedule

        batches = self._trainer.num_training_batches if self._trainer is not None else float("inf")
        self._set_schedule(*schedule(self.current_epoch, batch_idx, batches, self.kl_warmup, self.flow_warmup))
        loss = self._step(batch, sample=True)
        if self._world() > 1 and not getattr(self.model, "flow_active", True):
            from darkflow.train.warmup import bypassed_parameters, keep_in_graph

            self._zero_grads = bypassed_parameters(self.model)
            loss = loss + keep_in_graph(self._zero_grads, loss)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"the training loss became {loss.item()} at epoch {self.current_epoch}, batch "
                                f"{batch_idx}", self.current_epoch)
        self._accumulate_train_loss(loss, len(batch["mask"]))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Drop the zero gradients of the parameters a DDP warm-up step kept in the graph (:mod:`warmup`): the
        optimizer then skips them, as it does in one process, where they get no gradient."""
        for parameter in self._zero_grads:
            parameter.grad = None
        self._zero_grads = []

    def on_train_epoch_start(self) -> None:
        self._train_sum, self._train_events = None, 0

    def _accumulate_train_loss(self, loss: Tensor, events: int) -> None:
        """Sum ``loss * events`` over the epoch as Lightning's ``on_epoch`` mean does (float32, the same
        operations), and log ``train_loss`` once, at the epoch's last batch: a ``self.log`` call costs about a
        millisecond of Lightning bookkeeping, a tenth of a small model's step. The logged value is the one
        ``self.log(..., on_epoch=True, batch_size=events, sync_dist=True)`` at every step gave, bit for bit
        in one process."""
        value = loss.detach()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.get_default_dtype())
        self._train_sum = value * events if self._train_sum is None else self._train_sum + value * events
        self._train_events += events
        loop = self._trainer.fit_loop.epoch_loop if self._trainer is not None else None
        if loop is None or not loop.batch_progress.is_last_batch:
            return
        total = self._train_sum
        events = torch.tensor(self._train_events, device=total.device)
        if self._world() > 1:
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
            events = self.trainer.strategy.reduce(events, reduce_op="sum")
        # already global; sync_dist only averages equal values (and keeps Lightning from warning)
        self.log("train_loss", total / events, on_step=False, on_epoch=True, prog_bar=True, batch_size=1,
                 sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._set_schedule(1.0, True)

    def on_train_start(self) -> None:
        """The configured learning rate and weight decay, also on resume (the checkpoint's optimizer state,
        restored before this hook, holds the values the run was started with)."""
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"], group["weight_decay"] = self.learning_rate, self.weight_decay

    def on_train_end(self) -> None:
        self._set_schedule(1.0, True)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        from darkflow.train.weighted_mean import WeightedMean

        out = self.model(batch["objects"], batch["mask"], sample=False, hlf=batch.get("hlf"))
        w = self._weights(batch, torch.float64)
        for key, value in out.items():
            if key not in self._val:
                self._val[key] = WeightedMean().to(value.device)
            self._val[key].update(value, w)

    def on_validation_epoch_end(self) -> None:
        """The weighted mean over all validation events of all processes (torchmetrics syncs the sums).

        Raises:
            NonFiniteLoss: the validation loss is NaN or inf (every process sees the same value), before any
                checkpoint of this epoch is written.
        """
        values = {key: metric.compute() for key, metric in sorted(self._val.items())}
        for metric in self._val.values():
            metric.reset()
        total = values.get("total")
        if total is not None and not torch.isfinite(total):
            raise NonFiniteLoss(f"the validation loss became {total.item()} at epoch {self.current_epoch}",
                                self.current_epoch)
        for key, value in values.items():
            name = "val_loss" if key == "total" else f"val_{key}"
            # already global; sync_dist only averages equal values (and keeps Lightning from warning)
            self.log(name, value.to(torch.float32), prog_bar=key == "total", sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
