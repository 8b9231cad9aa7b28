"""``darkflow cflow train``: fit a CFLOW-AD model on normal images with Lightning.

Steps: split off normal validation images; fit the input standardization; pre-train the built-in encoder
as an autoencoder (Lightning, a fixed number of steps so that small image sets get enough); freeze the encoder and extract the training fibers once; train the
decoders on fiber batches (Lightning); calibrate the per-scale constants on the validation images.

Run directory::

    config.yaml   the resolved CflowConfig (plus the data)
    metrics.csv   one row per epoch of each stage (stage, epoch, seconds, loss)
    cflow.pt      {"state_dict": tensors, "metadata": JSON}: loads with torch.load(weights_only=True)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from darkflow import __version__
from darkflow.cflow.config import CflowConfig, CflowTrainCommandConfig
from darkflow.cflow.config import load_cflow_config as load_cflow_config  # re-exported
from darkflow.cflow.imageset import ImageSet
from darkflow.cflow.model import CFlowModel
from darkflow.checkpoint import load_state, load_weights, save_weights
from darkflow.config import StrictModel
from darkflow.errors import InputError
from darkflow.fileio import atomic_output, write_text_atomic

RUN_FILE = "cflow.pt"


class CflowTrainOptions(StrictModel):
    """What ``darkflow cflow train`` needs beyond the config."""

    data: list[str]
    out: str
    progress: bool = True


def normalization_for(config: CflowConfig, kind: str) -> str:
    """``imagenet`` for pretrained torchvision encoders, ``column`` for event arrays, else ``channel``."""
    if config.encoder.name != "builtin" and config.encoder.weights != "none":
        return "imagenet"
    return "column" if kind == "events" else "channel"


def split_normal(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices of ``n`` normal images (at least one of each)."""
    if n < 2:
        raise InputError(f"{n} training image(s): need at least 2 (one is held out to calibrate the scores)")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * fraction))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _trainer(config: CflowConfig, progress: bool, epochs: int = -1, steps: int = -1, stage: str = "cflow train",
             metrics: dict[str, str] | None = None):
    import lightning as L

    from darkflow.train.progress import epoch_progress

    t = config.training
    bar = [epoch_progress(stage, metrics or {})] if progress else []
    return L.Trainer(max_epochs=epochs, max_steps=steps, accelerator=t.accelerator, devices=t.devices, logger=False,
                     enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                     num_sanity_val_steps=0, gradient_clip_val=5.0, deterministic="warn", callbacks=bar)


def _fit(trainer, module, loader) -> None:
    import warnings

    from darkflow.train.run import _expected_warnings

    with warnings.catch_warnings():
        _expected_warnings()
        # the frozen encoder stays in eval mode while the decoders train: intended
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*train_dataloader.*num_workers.*")
        trainer.fit(module, loader)


def _modules():
    """The two Lightning modules, defined lazily so that importing this file does not import Lightning."""
    import lightning as L
    from torch import nn

    from darkflow.cflow.encoders import ConvDecoder

    class AutoencoderModule(L.LightningModule):
        """Pre-trains the built-in encoder: MSE of a small decoder's reconstruction of normal images."""

        def __init__(self, model: CFlowModel, lr: float) -> None:
            super().__init__()
            self.encoder = model.encoder
            self.decoder = ConvDecoder(model.encoder, model.shape[0], model.shape[1:])
            self.lr = lr
            self.losses: list[float] = []

        def training_step(self, batch, batch_idx):
            x = batch[0]
            loss = nn.functional.mse_loss(self.decoder(self.encoder(x)[-1]), x)
            self.log("ae_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
            return loss

        def on_train_epoch_end(self) -> None:
            self.losses.append(float(self.trainer.callback_metrics["ae_loss"]))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.lr)

    class FlowModule(L.LightningModule):
        """Trains the decoders on fiber batches: every step takes one batch of every scale, in a new random
        order each epoch (the scales have separate parameters, so their losses simply add)."""

        def __init__(self, model: CFlowModel, fibers: list[torch.Tensor], fiber_batch: int, lr: float,
                     steps: int, seed: int) -> None:
            super().__init__()
            self.model = model
            self.fibers = fibers  # [(n_s, C_s)]: plain attributes, indexed on the CPU
            self.fiber_batch = fiber_batch
            self.lr = lr
            self.steps = steps
            self.seed = seed
            self.losses: list[float] = []

        def on_train_epoch_start(self) -> None:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.current_epoch)
            self.order = [torch.randperm(len(f), generator=g) for f in self.fibers]

        def training_step(self, step, batch_idx):
            total = 0.0
            for s, f in enumerate(self.fibers):
                n = len(f)
                lo = (int(step) * self.fiber_batch) % n
                idx = self.order[s][lo : lo + self.fiber_batch]
                hw = self.model.position(s).shape[0]
                x = f[idx].to(self.device)
                context = self.model.position(s)[(idx % hw).to(self.device)]
                total = total + self.model.fibers(s, x, context).mean()
            if not torch.isfinite(total):
                from darkflow.train.module import NonFiniteLoss

                raise NonFiniteLoss(f"the CFLOW training loss became {float(total)} at epoch {self.current_epoch}; "
                                    "lower training.learning_rate or check the inputs")
            self.log("flow_loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=self.fiber_batch)
            return total

        def on_train_epoch_end(self) -> None:
            self.losses.append(float(self.trainer.callback_metrics["flow_loss"]))

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.model.decoders.parameters(), lr=self.lr)
            total = self.steps * self.trainer.max_epochs
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total, pct_start=0.1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return AutoencoderModule, FlowModule


@torch.no_grad()
def _in_batches(fn, images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``fn`` over image batches, outputs (lists of per-scale tensors) concatenated per scale on the CPU."""
    parts: list[list[torch.Tensor]] = []
    for lo in range(0, len(images), batch_size):
        parts.append([t.cpu() for t in fn(images[lo : lo + batch_size])])
    return [torch.cat(p) for p in zip(*parts, strict=True)]


def fit_cflow(images: ImageSet, config: CflowConfig, progress: bool = True) -> tuple[CFlowModel, dict[str, Any]]:
    """Train a CFLOW-AD model on the normal images of ``images``; returns the model (eval mode, on the CPU)
    and a summary (losses per epoch, calibration, sizes, seconds)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from darkflow.cflow.maps import calibration_constants
    from darkflow.train.run import _quiet_lightning

    _quiet_lightning()
    t = config.training
    if not np.isfinite(images.images).all():
        raise InputError("the training images contain NaN or inf values")
    L.seed_everything(t.seed, workers=True, verbose=False)
    train_idx, val_idx = split_normal(len(images), t.val_fraction, t.seed)
    x_all = torch.from_numpy(images.images)
    x_train, x_val = x_all[train_idx], x_all[val_idx]
    model = CFlowModel(config, tuple(images.images.shape[1:]), normalization_for(config, images.kind),
                       rows_are_objects=images.kind == "events")
    model.fit_input_normalization(x_train)
    AutoencoderModule, FlowModule = _modules()
    start = time.perf_counter()
    summary: dict[str, Any] = {"n_train": len(train_idx), "n_val": len(val_idx), "ae_losses": [], "flow_losses": []}
    if config.encoder.name == "builtin" and config.encoder.pretrain_steps > 0:
        ae = AutoencoderModule(model, config.encoder.pretrain_lr)
        loader = DataLoader(TensorDataset(model.normalize(x_train)), batch_size=t.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(t.seed))
        _fit(_trainer(config, progress, steps=config.encoder.pretrain_steps, stage="cflow encoder pre-training",
                      metrics={"ae_loss": "reconstruction MSE"}), ae, loader)
        summary["ae_losses"] = ae.losses
        model.encoder.cpu()
    summary["ae_seconds"] = time.perf_counter() - start
    model.encoder.eval().requires_grad_(False)
    raw = _in_batches(model.raw_features, x_train, t.batch_size)
    model.fit_feature_normalization(raw)
    fibers = []
    for s, m in enumerate(raw):
        m = (m - getattr(model, f"feature_mean_{s}")) / getattr(model, f"feature_std_{s}")
        fibers.append(m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]).contiguous())  # (N * h * w, C_s), row-major
    del raw
    steps = max(1, math.ceil(max(len(f) for f in fibers) / t.fiber_batch))
    flow = FlowModule(model, fibers, t.fiber_batch, t.learning_rate, steps, t.seed)
    start = time.perf_counter()
    _fit(_trainer(config, progress, epochs=t.epochs, stage="cflow decoders", metrics={"flow_loss": "fiber NLL"}),
         flow, DataLoader(range(steps), batch_size=None))
    summary["flow_seconds"] = time.perf_counter() - start
    summary["flow_losses"] = flow.losses
    summary["steps_per_epoch"] = steps
    model.cpu().eval()
    nll = _in_batches(model.nll_maps, x_val, t.batch_size)
    model.calibration.copy_(calibration_constants(nll))
    summary["calibration"] = model.calibration.tolist()
    summary["val_loss"] = float(torch.cat([m.flatten() for m in nll]).mean())
    return model, summary


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def train_cflow(config: CflowConfig, options: CflowTrainOptions) -> dict[str, Any]:
    """Load the normal images of ``options.data``, train, and write the run directory ``options.out``.

    The run directory is checked before any work and built under a temporary name: a failed or interrupted
    run leaves no new folder, and an existing folder (without a trained model) keeps what it held.
    """
    from darkflow.cflow.load import load_images

    out = Path(options.out)
    if (out / RUN_FILE).exists():
        raise InputError(f"{out} already holds a trained CFLOW model; choose another `out`")
    with atomic_output(out, directory=True, merge=True, inputs=options.data) as staging:
        images = load_images(options.data if len(options.data) > 1 else options.data[0], "train", config.image_size)
        model, summary = fit_cflow(images, config, options.progress)
        resolved = {"data": list(options.data), **config.model_dump(mode="json")}
        write_text_atomic(staging / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        rows = ["stage,epoch,loss"] + [f"autoencoder,{i},{v:.6g}" for i, v in enumerate(summary["ae_losses"])]
        rows += [f"flow,{i},{v:.6g}" for i, v in enumerate(summary["flow_losses"])]
        write_text_atomic(staging / "metrics.csv", "\n".join(rows) + "\n")
        metadata = {
            "darkflow_version": __version__, "config": config.model_dump(mode="json"), "kind": images.kind,
            "shape": list(model.shape), "channels": model.shape[0], "image_size": list(model.shape[1:]),
            "normalization": model.normalization, "rows_are_objects": model.rows_are_objects,
            "encoder": config.encoder.name, "scales": [list(s) for s in model.scales],
            "calibration": summary["calibration"], "label": images.meta.get("label"), "data": list(options.data),
            "meta": _json_safe(images.meta), "n_train": summary["n_train"], "n_val": summary["n_val"],
            "val_loss": summary["val_loss"], "epochs": config.training.epochs,
        }
        save_weights(staging / RUN_FILE, model, metadata)
    return {"out": out, **summary}


@dataclass
class CflowTrainResult:
    """What ``darkflow cflow train`` did: the run directory, image counts, the losses of every epoch."""

    out: Path
    n_train: int
    n_val: int
    flow_losses: list[float]
    val_loss: float
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        return [f"trained on {self.n_train} images ({self.n_val} held out for calibration), "
                f"{len(self.flow_losses)} epoch(s), final fiber NLL {self.flow_losses[-1]:.4g}, validation NLL "
                f"{self.val_loss:.4g}: {self.out}/{RUN_FILE}"]


def run(config: CflowTrainCommandConfig, progress: bool = True) -> CflowTrainResult:
    """``darkflow cflow train``: :func:`train_cflow` with the resolved recipe of ``config``."""
    summary = train_cflow(config.cflow_config, CflowTrainOptions(data=list(config.data), out=config.out,
                                                                 progress=progress))
    return CflowTrainResult(Path(summary["out"]), summary["n_train"], summary["n_val"], list(summary["flow_losses"]),
                            summary["val_loss"])


def load_run(run: str | Path) -> tuple[CFlowModel, dict[str, Any]]:
    """The model of a run directory (or its ``cflow.pt``) and its metadata, in eval mode on the CPU."""
    from darkflow.config import validate

    state, meta, path = load_weights(run, RUN_FILE, "CFLOW model",
                                     "run 'darkflow cflow train' first (or pass its run directory)",
                                     required=("config", "shape", "normalization", "rows_are_objects"))
    if not isinstance(meta["config"], dict):
        raise InputError(f"{path}: the CFLOW model's metadata holds no config mapping; the file is damaged")
    config = validate(CflowConfig, meta["config"], str(path))
    try:
        model = CFlowModel(config, tuple(meta["shape"]), meta["normalization"], load_weights=False,
                           rows_are_objects=meta["rows_are_objects"])
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise InputError(f"{path}: the CFLOW model's metadata does not describe a model ({type(err).__name__}: "
                         f"{err}); the file is damaged") from None
    load_state(model, state, path, "CFLOW model")
    return model.eval(), meta
