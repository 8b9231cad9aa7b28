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


def device_for(config: CflowConfig) -> torch.device:
    """The device the run's tensors live on while training: CUDA for ``accelerator`` gpu / cuda (or auto with
    a GPU present), else the CPU."""
    acc = config.training.accelerator
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _trainer(config: CflowConfig, progress: bool, epochs: int = -1, steps: int = -1, stage: str = "cflow train",
             metrics: dict[str, str] | None = None, images_per_step: float | None = None):
    import lightning as L

    from darkflow.train.progress import epoch_progress

    t = config.training
    bar = [epoch_progress(stage, metrics or {}, unit="images", per_batch=images_per_step)] if progress else []
    return L.Trainer(max_epochs=epochs, max_steps=steps, accelerator=t.accelerator, devices=t.devices, logger=False,
                     enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                     num_sanity_val_steps=0, gradient_clip_val=5.0, deterministic="warn", callbacks=bar,
                     precision="bf16-mixed" if t.precision == "bf16" else "32-true")


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


def fiber_plan(images: int, positions: list[int], fiber_batch: int, fraction: float) -> tuple[int, int, list[int]]:
    """How one optimizer step covers every scale: the same images, a random subset of each scale's positions.

    Each step takes ``n`` images and, for scale ``s``, ``Q_s = ceil(fraction * P_s)`` of its ``P_s`` positions
    (drawn anew every step), so that the largest scale sees about ``fiber_batch`` fibers (``n * Q_s``) and an
    epoch of ``ceil(images / n)`` steps sees every image once.

    Returns:
        ``steps`` per epoch, ``n`` images per step, ``[Q_s]``.
    """
    take = [max(1, math.ceil(fraction * p)) for p in positions]
    per_step = max(1, min(images, fiber_batch // max(take)))
    return math.ceil(images / per_step), per_step, take


def warmup_fraction(total_steps: int, fraction: float = 0.1) -> float:
    """The one-cycle schedule's warm-up fraction: ``fraction``, unless its warm-up would end exactly at step 1,
    where torch's ``OneCycleLR`` divides by a zero-length phase (e.g. 10 steps in all: 2 steps x 5 epochs)."""
    return fraction if abs(fraction * total_steps - 1.0) > 1e-9 else 1.5 / total_steps


def _modules():
    """The two Lightning modules, defined lazily so that importing this file does not import Lightning."""
    import lightning as L
    from torch import nn

    from darkflow.cflow.encoders import ConvDecoder
    from darkflow.train.module import NonFiniteLoss

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
        """Trains every scale's decoder in one optimizer step on a large fiber batch (:func:`fiber_plan`).

        The fibers ``[(N, P_s, C_s)]`` go to the training device once. Each epoch draws the image order and every
        step's positions on the host and sends them in one transfer; a step gathers its ``n x Q_s`` fibers per
        scale on the device. The decoders see the positions' encodings through an
        :class:`~darkflow.flows.base.IndexedContext`, so their context layer runs on ``Q_s`` rows, not
        ``n * Q_s``. No host round trip per step: the NaN check reads the epoch's mean loss at its end.
        """

        def __init__(self, model: CFlowModel, fibers: list[torch.Tensor], fiber_batch: int, fraction: float,
                     lr: float, epochs: int, seed: int) -> None:
            super().__init__()
            self.model = model
            self.fibers = [f.contiguous() for f in fibers]
            self.n_images = len(fibers[0])
            self.steps, self.per_step, self.take = fiber_plan(self.n_images, [f.shape[1] for f in fibers],
                                                              fiber_batch, fraction)
            self.lr = lr
            self.epochs = epochs
            self.seed = seed
            self.losses: list[float] = []

        def on_fit_start(self) -> None:
            self.fibers = [f.to(self.device) for f in self.fibers]

        def on_train_epoch_start(self) -> None:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.current_epoch)
            self.order = torch.randperm(self.n_images, generator=g).to(self.device)
            self.positions = [torch.rand(self.steps, f.shape[1], generator=g).argsort(dim=1)[:, :q].to(self.device)
                              for f, q in zip(self.fibers, self.take, strict=True)]

        def training_step(self, step, batch_idx):
            images = self.order[batch_idx * self.per_step : (batch_idx + 1) * self.per_step]
            total = 0.0
            for s, f in enumerate(self.fibers):
                positions = self.positions[s][batch_idx]
                x = f[images[:, None], positions[None, :]].reshape(-1, f.shape[2])
                total = total + self.model.fibers(s, x, positions).mean()
            self.log("flow_loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
            return total

        def on_train_epoch_end(self) -> None:
            loss = float(self.trainer.callback_metrics["flow_loss"])
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the CFLOW training loss became {loss} at epoch {self.current_epoch}; lower "
                                    "`training.learning_rate` or check the inputs", self.current_epoch)
            self.losses.append(loss)

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.model.decoders.parameters(), lr=self.lr)
            total = self.steps * self.epochs
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total,
                                                        pct_start=warmup_fraction(total))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return AutoencoderModule, FlowModule


@torch.no_grad()
def _in_batches(fn, images: torch.Tensor, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """``fn`` over image batches on ``device``, outputs (lists of per-scale tensors) concatenated per scale."""
    parts: list[list[torch.Tensor]] = []
    for lo in range(0, len(images), batch_size):
        parts.append(list(fn(images[lo : lo + batch_size].to(device))))
    return [torch.cat(p) for p in zip(*parts, strict=True)]


def fit_cflow(images: ImageSet, config: CflowConfig, progress: bool = True) -> tuple[CFlowModel, dict[str, Any]]:
    """Train a CFLOW-AD model (or fit the MVG model) on the normal images of ``images``; returns the model
    (eval mode, on the CPU) and a summary (losses per epoch, calibration, sizes, seconds per stage)."""
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
    device = device_for(config)
    summary: dict[str, Any] = {"n_train": len(train_idx), "n_val": len(val_idx), "ae_losses": [], "flow_losses": [],
                               "seconds": {}}
    start = time.perf_counter()
    if config.encoder.name == "builtin" and config.encoder.pretrain_steps > 0:
        ae = AutoencoderModule(model, config.encoder.pretrain_lr)
        loader = DataLoader(TensorDataset(model.normalize(x_train)), batch_size=t.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(t.seed))
        _fit(_trainer(config, progress, steps=config.encoder.pretrain_steps, stage="cflow encoder pre-training",
                      metrics={"ae_loss": "reconstruction MSE"}, images_per_step=t.batch_size), ae, loader)
        summary["ae_losses"] = ae.losses
    summary["seconds"]["pretrain"] = time.perf_counter() - start
    start = time.perf_counter()
    model.to(device).eval().requires_grad_(False)
    maps = _in_batches(model.raw_features, x_train, t.batch_size, device)
    model.fit_feature_normalization(maps)
    maps = model.standardize(maps)
    if len(model.gaussians):
        model.fit_gaussians(maps, config.gaussian.epsilon)
    summary["seconds"]["features"] = time.perf_counter() - start
    start = time.perf_counter()
    if not model.mvg:
        fibers = [model.scale_fibers(s, m) for s, m in enumerate(maps)]
        del maps
        model.decoders.requires_grad_(True).train()
        flow = FlowModule(model, fibers, t.fiber_batch, t.fiber_fraction, t.learning_rate, t.epochs, t.seed)
        del fibers
        _fit(_trainer(config, progress, epochs=t.epochs, stage="cflow decoders", metrics={"flow_loss": "fiber NLL"},
                     images_per_step=flow.per_step),
             flow, DataLoader(range(flow.steps), batch_size=None))
        summary["flow_losses"] = flow.losses
        summary["steps_per_epoch"] = flow.steps
        del flow
    summary["seconds"]["flow"] = time.perf_counter() - start
    model.to(device).eval().requires_grad_(False)
    nll = _in_batches(model.nll_maps, x_val, t.batch_size, device)
    model.calibration.copy_(calibration_constants([m.cpu() for m in nll]).to(model.calibration.device))
    summary["calibration"] = model.calibration.tolist()
    summary["val_loss"] = float(torch.cat([m.flatten().cpu() for m in nll]).mean())
    return model.cpu().eval(), summary


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
        if not self.flow_losses:
            return [f"fitted the Gaussian (mvg) on {self.n_train} images ({self.n_val} held out for calibration), "
                    f"validation NLL {self.val_loss:.4g}: {self.out}/{RUN_FILE}"]
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
    saved = dict(meta["config"])
    saved.setdefault("gaussian", {"covariance": "none"})  # runs saved before the whitening existed
    config = validate(CflowConfig, saved, str(path))
    try:
        model = CFlowModel(config, tuple(meta["shape"]), meta["normalization"], load_weights=False,
                           rows_are_objects=meta["rows_are_objects"])
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise InputError(f"{path}: the CFLOW model's metadata does not describe a model ({type(err).__name__}: "
                         f"{err}); the file is damaged") from None
    load_state(model, state, path, "CFLOW model")
    return model.eval(), meta
