"""What a training run writes at the end of every epoch, each file atomically (temporary name, then rename):
a ``metrics.csv`` row, ``checkpoints/last.ckpt`` and, when the validation loss improves, ``checkpoints/best.ckpt``.

``last.ckpt`` is written after every epoch, warm-up epochs included (Lightning's own ``save_last`` writes it only
when it also saves a best checkpoint), so that a run killed at any moment resumes losing at most the epoch in
progress. On resume, ``metrics.csv`` is cut back to the epochs before the one the checkpoint resumes at, so that
no epoch appears twice. The best checkpoint and early stopping can ignore the warm-up epochs
(:mod:`darkflow.train.warmup`), and both keep their state when the run folder is moved or renamed (a run is
trained in ``OUT.partial`` and published as ``OUT``).

This module imports Lightning: only the training run imports it.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, ModelCheckpoint

from darkflow.fileio import atomic_output, write_text_atomic

METRIC_COLUMNS = ("epoch", "seconds", "train_loss", "val_loss", "val_reco", "val_kl", "val_latent_nll")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through :func:`darkflow.fileio.atomic_output`: a killed process never
    leaves a truncated ``.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def _moved(path: str | None, old: str, new: str) -> str | None:
    """``path`` inside the folder ``old`` as the same name inside ``new`` (other paths unchanged)."""
    if path and Path(path).parent == Path(old):
        return str(Path(new) / Path(path).name)
    return path


class _FromEpoch:
    """The epoch-end hooks of a monitoring callback, skipped before epoch ``self.start`` (the warm-up).

    ``state_key`` is the key runs written before these classes existed used (``KEYS``: with a warm-up, without),
    so that such runs still resume with their best score and patience.
    """

    start: int
    KEYS: tuple[str, str]

    @property
    def state_key(self) -> str:
        name = self.KEYS[0] if self.start else self.KEYS[1]
        return name + super().state_key.removeprefix(type(self).__qualname__)

    def on_train_batch_end(self, trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.current_epoch >= self.start:
            super().on_train_batch_end(trainer, *args, **kwargs)

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch >= self.start:
            super().on_train_epoch_end(trainer, module)

    def on_validation_end(self, trainer, module) -> None:
        if trainer.current_epoch >= self.start:
            super().on_validation_end(trainer, module)


class BestCheckpoint(_FromEpoch, ModelCheckpoint):
    """``best.ckpt``: the epoch with the lowest ``val_loss`` among the epochs from ``start`` on.

    Arguments:
        dirpath: the run's ``checkpoints/`` folder.
        start: the first epoch that may be the best (the end of the warm-up; 0 for all).
    """

    KEYS = ("monitoring_callbacks.<locals>.BestAfterWarmup", "ModelCheckpoint")

    def __init__(self, dirpath: Path, start: int = 0) -> None:
        super().__init__(dirpath=dirpath, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                         save_last=False, enable_version_counter=False)
        self.start = start

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning's, with the paths of a moved run folder mapped to where the folder is now."""
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            state_dict = dict(state_dict, dirpath=new, best_k_models={
                _moved(k, old, new): v for k, v in state_dict.get("best_k_models", {}).items()})
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                state_dict[key] = _moved(state_dict.get(key), old, new)
        super().load_state_dict(state_dict)


class EarlyStop(_FromEpoch, EarlyStopping):
    """Early stopping on ``val_loss`` whose patience counts from epoch ``start``."""

    KEYS = ("monitoring_callbacks.<locals>.EarlyStoppingAfterWarmup", "EarlyStopping")

    def __init__(self, patience: int, start: int = 0) -> None:
        super().__init__(monitor="val_loss", mode="min", patience=patience)
        self.start = start


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` at the end of every training epoch (after the best checkpoint and early stopping have
    updated the state it holds).

    Attributes:
        epoch: the last epoch the file holds (None before the first one ends).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.epoch: int | None = None

    def on_train_start(self, trainer, module) -> None:
        self.epoch = trainer.current_epoch - 1 if trainer.current_epoch > 0 else None

    def on_train_epoch_end(self, trainer, module) -> None:
        trainer.save_checkpoint(self.path)  # every process takes part; the first one writes
        self.epoch = trainer.current_epoch


class MetricsCSV(Callback):
    """``metrics.csv``: one row per epoch (``METRIC_COLUMNS``), the whole file rewritten atomically each time.

    At the start of training the rows of the epochs from the starting one on are dropped (a resumed run
    repeats the epoch that was in progress when it stopped). Only the first DDP process writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.start = time.perf_counter()
        self.rows: list[dict[str, Any]] = []

    def on_train_start(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        self.rows = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                self.rows = [row for row in csv.DictReader(handle)
                             if (row.get("epoch") or "").isdigit() and int(row["epoch"]) < trainer.current_epoch]
        self._write()

    def on_train_epoch_end(self, trainer, module) -> None:
        # On every process: the first read of the epoch's metrics syncs them across DDP processes (a collective;
        # read by the first process alone, in a warm-up epoch that no monitoring callback has read, it hangs).
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch, "seconds": round(time.perf_counter() - self.start, 3)}
        self.rows.append(row | {k: metrics.get(k, "") for k in METRIC_COLUMNS[2:]})
        self._write()

    def _write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, text.getvalue())
