"""``darkflow train``: a run directory with the resolved config, scaler, split, metrics and the model.

Run directory (built in ``OUT.partial`` and renamed to ``OUT`` when complete: :mod:`darkflow.train.rundir`)::

    config.yaml      the resolved TrainConfig (plus the data file)
    scaler.json      the standardization fitted on the training split of the SM file
    hlf_scaler.json  the standardization of the high-level features (for models that take them as input)
    split.npz        the train and validation event indices
    metrics.csv      one row per epoch
    checkpoints/     Lightning checkpoints: best.ckpt, and last.ckpt written after every epoch to resume from
    model.pt         the best model: {"state_dict": tensors, "metadata": JSON}, loads with weights_only=True

The metadata holds, beside what rebuilds the model, ``training_file`` (what the training file was prepared
with: :func:`darkflow.train.provenance.describe`) and ``diagnostics`` (:mod:`darkflow.train.diagnostics`:
how training stopped, whether it converged, the active latent units of a VAE); ``train`` returns one
warning line per problem found there.
"""

from __future__ import annotations

import csv
import functools
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from darkflow import __version__
from darkflow.checkpoint import load_state, load_weights, save_weights
from darkflow.config import StrictModel
from darkflow.errors import ConfigError, DataError, InputError, Interrupted
from darkflow.fileio import atomic_output, check_input, write_text_atomic
from darkflow.train.config import TrainCommandConfig, TrainConfig
from darkflow.train.config import load_train_config as load_train_config  # re-exported
from darkflow.train.diagnostics import warnings_for
from darkflow.train.rundir import LAST_CHECKPOINT, MODEL_FILE, RunKept, plan_run, staged


class TrainOptions(StrictModel):
    """What ``darkflow train`` needs beyond the model config."""

    data: str
    out: str
    resume: bool = False
    progress: bool = True


def type_codes(rows: list[str]) -> list[int]:
    """Object-type code per row (0 where the row's type is in the ``type`` feature)."""
    from darkflow.data_prep.chunk import TYPE_CODES

    return [TYPE_CODES.get(r, 0) for r in rows]


def build_model(config: TrainConfig, standardizer, codes: list[int], hlf_scaler=None) -> torch.nn.Module:
    """The model a config describes (its ``model`` section maps 1:1 to the constructor).

    ``hlf_scaler`` (a fitted :class:`~darkflow.models.hlf_scaler.HLFStandardizer`) is passed to the models that
    take the high-level features as input."""
    options = config.model.model_dump(exclude={"kind"})
    if uses_hlf(config):
        if hlf_scaler is None:
            raise InputError("this model takes the high-level features as input but the run has no hlf_scaler")
        options["hlf_scaler"] = hlf_scaler
    if config.model.kind == "isoforest":
        from darkflow.models.isoforest import IsolationForestModel

        return IsolationForestModel(standardizer, codes, **options)
    if config.model.kind == "density":
        from darkflow.models.density import FlowDensity

        return FlowDensity(standardizer, codes, **options)
    if config.model.kind == "hlf_density":
        from darkflow.models.hlf_density import HLFFlowDensity

        return HLFFlowDensity(**options)
    if config.model.kind == "svdd":
        from darkflow.models.svdd import DeepSVDD

        return DeepSVDD(standardizer, codes, **options)
    from darkflow.models.vae import FlowVAE

    options["channels"] = tuple(options["channels"])
    return FlowVAE(standardizer, codes, **options)


def uses_hlf(config: TrainConfig) -> bool:
    """Whether the model of ``config`` reads the ``hlf`` dataset (``model.hlf_input`` or an HLF-only model)."""
    return bool(getattr(config.model, "hlf_input", False)) or config.model.kind in HLF_MODELS


HLF_MODELS: tuple[str, ...] = ("hlf_density",)
"""Model kinds that read only the high-level features."""


RUN_KEYS = ("config", "scaler", "type_codes", "layout")
"""The metadata keys ``model.pt`` needs to rebuild its model."""


def load_model_once(run: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of ``run`` (:func:`load_model`) on ``device``, loaded once per process and again only when its
    ``model.pt`` changes (path, modification time, size): for processes that score many parts of a run (Dask
    workers, unpickled :class:`darkflow.Scorer` copies)."""
    path = Path(run) / MODEL_FILE if Path(run).is_dir() else Path(run)
    try:
        info = path.stat()
        key = (str(path.resolve()), info.st_mtime_ns, info.st_size)
    except OSError:
        key = (str(path), 0, 0)
    return _load_model_on(*key, str(device))


@functools.lru_cache(maxsize=4)
def _load_model_on(path: str, mtime_ns: int, size: int, device: str) -> torch.nn.Module:
    return load_model(path)[0].to(device)


def load_model(run: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained model of a run directory (or a model.pt path) and its metadata, in eval mode.

    Raises:
        InputError: no run there, or a damaged ``model.pt`` (see :func:`darkflow.checkpoint.load_weights`),
            metadata that does not describe a model, or weights that do not fit the model it describes.
    """
    from darkflow.config import validate
    from darkflow.models.hlf_scaler import HLFStandardizer
    from darkflow.models.scaler import Standardizer

    state, meta, path = load_weights(run, MODEL_FILE, "trained model",
                                     "run 'darkflow train' first (or give a run directory)", required=RUN_KEYS)
    if not isinstance(meta["config"], dict):
        raise InputError(f"{path}: the trained model's metadata holds no config mapping; the file is damaged")
    config = validate(TrainConfig, meta["config"], str(path))
    try:
        hlf_scaler = HLFStandardizer.from_dict(meta["hlf_scaler"]) if meta.get("hlf_scaler") else None
        model = build_model(config, Standardizer.from_dict(meta["scaler"]), meta["type_codes"], hlf_scaler)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise InputError(f"{path}: the trained model's metadata does not describe a model ({type(err).__name__}: "
                         f"{err}); the file is damaged") from None
    load_state(model, state, path, "trained model")
    model.eval()
    return model, meta


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise InputError(f"the training file has {n} event(s): too few to split off a validation sample")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _training_blocks(dataset_path: str, train_idx: np.ndarray, *datasets: str):
    """The ``datasets`` of the training events, in blocks of at most 65,536 events (one tuple per block)."""
    from darkflow.events import EventFile

    with EventFile(dataset_path) as events:
        for _, block in events.blocks(65_536, fields=datasets, indices=train_idx):
            yield tuple(block[name] for name in datasets)


def _fit_scaler(dataset_path: str, train_idx: np.ndarray, config: TrainConfig, layout: dict):
    from darkflow.models.scaler import Standardizer

    s = config.standardize
    scaler = Standardizer(layout["features"], layout["rows"], s.phi, s.log, rotate=s.rotate,
                          reflect_eta=s.reflect_eta, reflect_phi=s.reflect_phi)
    return scaler.fit(_training_blocks(dataset_path, train_idx, "objects", "mask"))


def _fit_hlf_scaler(dataset_path: str, train_idx: np.ndarray, names: list[str]):
    from darkflow.models.hlf_scaler import HLFStandardizer

    return HLFStandardizer(names).fit(hlf for (hlf,) in _training_blocks(dataset_path, train_idx, "hlf"))


def _quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, tips) out of the output; warnings stay."""
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _expected_warnings() -> None:
    """Inside ``warnings.catch_warnings()``: the two Lightning warnings that are expected here."""
    import warnings

    # Lightning 2.6 calls a pytree API that torch 2.13 deprecates; harmless, filtered on purpose.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # The run directory's checkpoints/ is ours: on --resume it holds last.ckpt by design.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def train(config: TrainConfig, options: TrainOptions) -> dict[str, Any]:
    """Train a model on the SM file ``options.data`` into the run directory ``options.out``; returns the run's
    summary.

    Everything that can be checked is checked before anything is written (the run folder, the training file
    and its values, the resumed state, the trainer options). The run is built in ``OUT.partial`` and
    published as ``OUT`` when ``model.pt`` is written (:mod:`darkflow.train.rundir`).

    Raises:
        InputError, ConfigError, DataError: one line each; nothing new is left (except a kept
            :class:`~darkflow.train.rundir.RunKept` staging folder after a non-finite loss).
        darkflow.errors.Interrupted: SIGINT or SIGTERM (Lightning's own SIGTERM handling included).
    """
    import signal
    import warnings

    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from darkflow.train.data import EventBatches, batch_loader
    from darkflow.train.dataset import EventDataset
    from darkflow.train.epoch_end import AtomicCheckpointIO, MetricsCSV
    from darkflow.train.input_checks import check_training_values
    from darkflow.train.module import DarkFlowModule, NonFiniteLoss
    from darkflow.train.progress import epoch_progress
    from darkflow.train.warmup import monitoring_callbacks

    _quiet_lightning()
    # Under DDP every process runs this function; the launcher's environment tells which one this is.
    # Only process 0 writes the run directory (what the others would write is the same).
    lead = _launch_rank() == 0
    check_input(options.data, "training file")
    plan = plan_run(options.out, options.resume, inputs=[options.data], lead=lead)
    full = EventDataset(options.data)
    layout = full.layout
    t = config.training
    L.seed_everything(t.seed, workers=True, verbose=False)
    if plan.source is not None:
        train_idx, val_idx, scaler, hlf_scaler = _resumed_state(plan.source, len(full))
    else:
        train_idx, val_idx = _split(len(full), t.val_fraction, t.seed)
    _check_processes(t, len(train_idx), len(val_idx))
    check_training_values(full.events, train_idx, val_idx, t.event_weights)
    if plan.source is None:
        scaler = _fit_scaler(options.data, train_idx, config, layout)
    if plan.source is None or hlf_scaler is None:
        hlf_scaler = _fit_hlf_scaler(options.data, train_idx, full.hlf_names)
    codes = type_codes(layout["rows"])
    model = build_model(config, scaler, codes, hlf_scaler)
    resolved = {"data": str(options.data), **config.model_dump(mode="json")}

    def write_state(run_dir: Path) -> None:
        if lead:
            _save_split(run_dir / "split.npz", train_idx, val_idx)
            write_text_atomic(run_dir / "scaler.json", scaler.to_json())
            write_text_atomic(run_dir / "hlf_scaler.json", json.dumps(hlf_scaler.to_dict()))
            write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))

    if config.model.kind == "isoforest":
        with staged(plan, lead) as run_dir:
            write_state(run_dir)
            return _fit_forest(model, config, options, full, train_idx, layout, codes, scaler, hlf_scaler, run_dir)
    module = DarkFlowModule(model, t.learning_rate, t.weight_decay, t.event_weights, t.kl_warmup, t.flow_warmup)
    checkpoint = plan.checkpoint
    if checkpoint is not None:
        _check_checkpoint(plan.source / LAST_CHECKPOINT, module)
    train_set = EventBatches(options.data, train_idx, t.in_memory)
    if hasattr(model, "fit_center") and checkpoint is None:
        # Deep SVDD's centre: fitted once on every training event (each DDP process alike, before the
        # processes split the batches); on resume it comes back with the checkpoint's buffers.
        model.fit_center(train_set[np.arange(lo, min(lo + t.batch_size, len(train_set)))]
                         for lo in range(0, len(train_set), t.batch_size))
    train_loader = batch_loader(train_set, t.batch_size, True, t.num_workers, seed=t.seed)
    val_loader = batch_loader(EventBatches(options.data, val_idx, t.in_memory), t.batch_size, False, t.num_workers)
    warmup = max(t.kl_warmup, t.flow_warmup)
    run_dir = plan.staging
    best, early, others = monitoring_callbacks(run_dir / "checkpoints", t.patience, warmup)
    last = others[0]
    trainer = _trainer(
        t, default_root_dir=run_dir, plugins=[AtomicCheckpointIO()],
        callbacks=[best, *others, early, MetricsCSV(run_dir / "metrics.csv")]
        + ([epoch_progress("train", {"train_loss": "train loss", "val_loss": "validation loss"})]
           if options.progress else []),
        enable_progress_bar=options.progress)
    with staged(plan, lead) as run_dir:
        write_state(run_dir)
        try:
            with warnings.catch_warnings():
                _expected_warnings()
                trainer.fit(module, train_loader, val_loader, ckpt_path=str(checkpoint) if checkpoint else None)
        except NonFiniteLoss as err:
            raise _stopped(err, last.epoch, run_dir) from None
        except SIGTERMException:  # Lightning's own SIGTERM handling: a SystemExit that would exit 0
            raise Interrupted(signal.SIGTERM) from None
        if trainer.received_sigterm:  # a run Lightning stopped on SIGTERM is not a result
            raise Interrupted(signal.SIGTERM)
        if not trainer.is_global_zero:
            return {}
        best_path = Path(best.best_model_path or run_dir / "checkpoints" / "best.ckpt")
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        fit_score_scales(model, options.data, val_idx)
        best_score = float(best.best_model_score) if best.best_model_score is not None else float("nan")
        diagnostics = _diagnostics(model, options.data, val_idx, run_dir / "metrics.csv", t.patience,
                                   early.stopped_epoch > 0, warmup)
        metadata = _metadata(config, scaler, codes, layout, options, full.label, model, trainer.current_epoch,
                             best_score, diagnostics, hlf_scaler)
        save_weights(run_dir / MODEL_FILE, model, metadata)
    return {"out": plan.out, "epochs": trainer.current_epoch, "best_val_loss": best_score,
            "diagnostics": diagnostics, "warnings": warnings_for(diagnostics)}


def _trainer(t, **options: Any):
    """The Lightning trainer of the training options ``t``; a bad accelerator, device count or strategy is one
    :class:`ConfigError` line, before anything is written."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
            num_nodes=t.num_nodes, gradient_clip_val=t.gradient_clip, logger=False, enable_model_summary=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # EventBatchSampler shares every global batch out among the processes
            deterministic="warn",  # on GPUs some scatter kernels have no deterministic version
            **options)
    except (MisconfigurationException, ValueError) as err:
        text = " ".join(str(err).split()).replace("`", "")
        raise ConfigError(f"training options (accelerator {t.accelerator!r}, devices {t.devices}, strategy "
                          f"{t.strategy!r}, num_nodes {t.num_nodes}): {text[:300]}") from None


def _stopped(err, kept: int | None, staging: Path) -> DataError:
    """The one-line error for a non-finite loss: which loss and epoch, and where the last good checkpoint is."""
    if kept is None:
        return DataError(f"{err.what}, before any epoch had finished, so no checkpoint was kept; train again "
                         "with a lower `training.learning_rate` (or `training.gradient_clip`)")
    return RunKept(f"{err.what}; the last good checkpoint (epoch {kept}) is kept in {staging}: set `resume` to "
                   "continue from it with a lower `training.learning_rate` (or `training.gradient_clip`)")


def _resumed_state(source: Path, n_events: int):
    """``(train_idx, val_idx, scaler, hlf_scaler or None)`` of the run folder ``source``, checked against the
    training file's ``n_events``."""
    from darkflow.models.hlf_scaler import HLFStandardizer
    from darkflow.models.scaler import Standardizer

    name = "split.npz"
    try:
        with np.load(source / name) as split:
            train_idx, val_idx = np.asarray(split["train"]), np.asarray(split["val"])
        name = "scaler.json"
        scaler = Standardizer.from_json((source / name).read_text())
        name = "hlf_scaler.json"
        saved = source / name
        hlf_scaler = HLFStandardizer.from_dict(json.loads(saved.read_text())) if saved.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:120]
        raise InputError(f"cannot resume {source}: its {name} is missing or damaged ({reason})") from None
    for idx in (train_idx, val_idx):
        if idx.ndim != 1 or not len(idx) or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0:
            raise InputError(f"cannot resume {source}: its split.npz is damaged (expected two lists of event indices)")
        if idx.max() >= n_events:
            raise InputError(f"cannot resume {source}: its split holds event {idx.max()} but the training file has "
                             f"{n_events} events; give as `data` the training file the run was started with")
    return train_idx, val_idx, scaler, hlf_scaler


def _check_checkpoint(path: Path, module: torch.nn.Module) -> None:
    """Refuse a ``last.ckpt`` that cannot be read, or whose weights do not fit the model of this config."""
    from darkflow.checkpoint import mismatch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # as Lightning itself loads it
        state = ckpt["state_dict"]
    except Exception as err:  # noqa: BLE001 (a damaged file raises many types)
        reason = " ".join(str(err).split()).split(". ")[0][:120]
        raise InputError(f"cannot resume from {path}: the checkpoint is truncated or damaged ({reason})") from None
    differ = mismatch(module.state_dict(), state)
    if differ:
        raise InputError(f"cannot resume from {path}: its weights do not fit the model of this config ({differ} "
                         "tensor(s)); resume with the model options the run was started with")


def fit_score_scales(model: torch.nn.Module, data: str, val_idx: np.ndarray) -> None:
    """Fit the scales of a model's combined score (:meth:`darkflow.models.vae.FlowVAE.fit_score_scales`) on the
    deterministic scores of the validation events ``val_idx`` of the training file ``data``; models without a
    combined score are left as they are."""
    from darkflow.train.score import score_file

    if not hasattr(model, "fit_score_scales"):
        return
    model.eval()
    model.fit_score_scales(score_file(model, data, indices=val_idx))


def _launch_rank() -> int:
    """Global rank of this process as set by the launcher (Lightning, torchrun, SLURM); 0 when alone."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _save_split(path: Path, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, train=train_idx, val=val_idx)


def _check_processes(t, n_train: int, n_val: int) -> None:
    """Every DDP process needs events in each global batch and in the validation split."""
    world = (t.devices if isinstance(t.devices, int) and t.devices > 0 else 1) * t.num_nodes
    if world > 1 and min(t.batch_size, n_train, n_val) < world:
        raise InputError(f"{world} processes (devices x num_nodes) need training.batch_size and both splits of at "
                         f"least {world} events (batch {t.batch_size}, {n_train} training, {n_val} validation)")


def _diagnostics(model: torch.nn.Module, data: str, val_idx: np.ndarray, metrics_csv: Path, patience: int,
                 early_stopped: bool, warmup: int = 0) -> dict[str, Any]:
    """Convergence from the validation losses of ``metrics.csv`` (all epochs, resumed ones included; the
    ``warmup`` first epochs count as missing, as for the best checkpoint) and, for a VAE, the active units of
    its best model on the validation events."""
    from darkflow.models.vae import FlowVAE
    from darkflow.train.diagnostics import active_units, convergence, posterior_means

    with open(metrics_csv, newline="") as handle:
        losses = [float(row["val_loss"] or "nan") if int(row["epoch"]) >= warmup else float("nan")
                  for row in csv.DictReader(handle)]
    found = convergence(losses, patience, early_stopped)
    if isinstance(model, FlowVAE):
        model.eval()
        found |= active_units(posterior_means(model, data, val_idx))
    return found


def _training_file(path: str) -> dict[str, Any]:
    from darkflow.events import EventFile
    from darkflow.train.provenance import describe

    with EventFile(path) as events:
        return describe(path, events.attrs, events.n_events)


def _metadata(config: TrainConfig, scaler, codes: list[int], layout: dict, options: TrainOptions, label: str,
              model: torch.nn.Module, epochs: int, best_val_loss: float,
              diagnostics: dict[str, Any] | None = None, hlf_scaler=None) -> dict[str, Any]:
    """The JSON metadata stored in ``model.pt``: everything needed to rebuild and use the model, what its
    training file was prepared with and the training diagnostics."""
    return {
        "darkflow_version": __version__, "config": config.model_dump(mode="json"), "scaler": scaler.to_dict(),
        "type_codes": codes, "layout": layout, "data": str(options.data), "label": label,
        "epochs_trained": epochs, "best_val_loss": best_val_loss, "scores": list(model_scores(model)),
        "default_score": getattr(model, "default_score", "total"), "training_file": _training_file(options.data), "diagnostics": diagnostics or {},
        "hlf_scaler": hlf_scaler.to_dict() if hlf_scaler is not None else None,
    }


def _fit_forest(model, config: TrainConfig, options: TrainOptions, full, train_idx, layout, codes, scaler,
                hlf_scaler, run_dir: Path):
    """The isolation-forest baseline: no gradient training, one scikit-learn fit on the training split."""
    from darkflow.events import EventFile

    with EventFile(options.data) as events, torch.no_grad():
        part = events.read(train_idx, ("objects", "mask"))
        x = model.flat(torch.from_numpy(part["objects"]), torch.from_numpy(part["mask"]))
    model.fit(x.double().numpy())
    metadata = _metadata(config, scaler, codes, layout, options, full.label, model, 0, float("nan"),
                         hlf_scaler=hlf_scaler)
    save_weights(run_dir / MODEL_FILE, model, metadata)
    return {"out": Path(options.out), "epochs": 0, "best_val_loss": float("nan"), "diagnostics": {}, "warnings": []}


def model_scores(model: torch.nn.Module) -> tuple[str, ...]:
    """Names of the scores a model returns."""
    from darkflow.models import density, hlf_density, isoforest, svdd, vae

    if isinstance(model, density.FlowDensity):
        return density.SCORES
    if isinstance(model, hlf_density.HLFFlowDensity):
        return hlf_density.SCORES
    if isinstance(model, svdd.DeepSVDD):
        return svdd.SCORES
    if isinstance(model, isoforest.IsolationForestModel):
        return isoforest.SCORES
    return vae.SCORES


@dataclass
class TrainResult:
    """What ``darkflow train`` did: the run directory, the epochs, the best validation loss, warnings.

    In the extra processes of a DDP run, which write nothing, ``out`` is None and there are no lines."""

    out: Path | None
    epochs: int = 0
    best_val_loss: float = float("nan")
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        if self.out is None:
            return []
        return [f"trained {self.epochs} epoch(s), best validation loss {self.best_val_loss:.5g}: "
                f"{self.out}/{MODEL_FILE}"]


def run(config: TrainCommandConfig, progress: bool = True) -> TrainResult:
    """``darkflow train``: :func:`train` with the resolved recipe of ``config``."""
    summary = train(config.train_config, TrainOptions(data=config.data, out=config.out, resume=config.resume,
                                                      progress=progress))
    if not summary:
        return TrainResult(None)
    return TrainResult(Path(summary["out"]), summary["epochs"], summary["best_val_loss"],
                       list(summary.get("warnings", [])))
