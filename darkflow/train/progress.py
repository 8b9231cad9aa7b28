"""Lightning's progress bar replaced by one that suits both a terminal and a log file.

On a terminal: one bar per epoch (batches, rate, ETA) that stays with the epoch's losses. Elsewhere: a line
when training starts, periodic lines within long epochs (:func:`darkflow.progress.progress_bar`), one line
per epoch and one at the end, e.g.::

    train epoch 3/30: train loss 1.234, validation loss 1.456, 25120 events/s, elapsed 00:32, ETA 04:48

Only the global-zero process reports under DDP; its event rate is scaled by the number of processes.
"""

from __future__ import annotations

import math
import time
from typing import Any

from darkflow.progress import is_terminal, log_line, progress_bar


def _batch_events(batch: Any) -> int | None:
    """Events in a batch: the length of its first tensor (dict, list or tensor batches), else None."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()), None)
    elif isinstance(batch, list | tuple):
        batch = batch[0] if batch else None
    return len(batch) if hasattr(batch, "shape") and len(batch.shape) > 0 else None


def _clock(seconds: float) -> str:
    from tqdm import tqdm

    return tqdm.format_interval(seconds)


def _max_epochs(trainer) -> int | None:
    """The epochs this fit runs at most (from max_steps when the trainer is bounded by steps)."""
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        return trainer.max_epochs
    batches = trainer.num_training_batches
    if trainer.max_steps and trainer.max_steps > 0 and math.isfinite(batches) and batches > 0:
        return math.ceil(trainer.max_steps / batches)
    return None


def epoch_progress(desc: str, metrics: dict[str, str], unit: str = "events", per_batch: float | None = None):
    """A Lightning progress-bar callback; ``metrics`` maps logged metric names to how lines name them, e.g.
    ``{"train_loss": "train loss", "val_loss": "validation loss"}`` (absent ones are left out).

    The rate is in ``unit`` per second: ``per_batch`` of them per batch when given (e.g. the images a CFLOW
    fiber step covers), else the length of each batch's first tensor."""
    from lightning.pytorch.callbacks.progress import ProgressBar

    class EpochProgress(ProgressBar):
        def __init__(self) -> None:
            super().__init__()
            self._enabled = True
            self._bar = None
            self._terminal = is_terminal()

        def disable(self) -> None:
            self._enabled = False

        def enable(self) -> None:
            self._enabled = True

        def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
            log_line(sep.join(map(str, args)))

        def on_train_start(self, trainer, module) -> None:
            self._start = time.perf_counter()
            self._epochs = _max_epochs(trainer)
            self._done = 0
            if self._enabled and not self._terminal:
                most = f"at most {self._epochs} epoch(s)" if self._epochs else "until stopped"
                log_line(f"{desc}: {most} of {self.total_train_batches} batches")

        def on_train_epoch_start(self, trainer, module) -> None:
            self._epoch_start = self._train_end = time.perf_counter()
            self._events: int | None = 0
            self._batches = 0
            if not self._enabled:
                return
            total = self.total_train_batches
            self._bar = progress_bar(f"{desc} epoch {self._epoch_name(trainer)}",
                                     int(total) if math.isfinite(total) else None, unit="batches", ends=False)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
            n = _batch_events(batch) if per_batch is None else per_batch
            self._events = None if n is None or self._events is None else self._events + n
            self._batches += 1
            self._train_end = time.perf_counter()
            if self._bar is not None:
                self._bar.update(1)

        def on_train_epoch_end(self, trainer, module) -> None:
            self._done += 1
            if not self._enabled:
                return
            values = {k: float(v) for k, v in trainer.callback_metrics.items()
                      if getattr(v, "numel", lambda: 0)() == 1}
            losses = ", ".join(f"{name} {values[key]:.5g}" for key, name in metrics.items() if key in values)
            train_seconds = self._train_end - self._epoch_start
            if self._events and train_seconds > 0:
                per_s = self._events * trainer.world_size / train_seconds
                rate = f"{per_s:.0f} {unit}/s" if per_s >= 100 else f"{per_s:.3g} {unit}/s"
            else:
                rate = f"{self._batches / train_seconds:.3g} batches/s" if train_seconds > 0 else ""
            if self._terminal and self._bar is not None:
                self._bar.set_postfix_str(", ".join(p for p in (losses, rate) if p), refresh=False)
            self._close_bar()
            if self._terminal:
                return
            now = time.perf_counter()
            elapsed = now - self._start
            parts = [p for p in (losses, rate, f"elapsed {_clock(elapsed)}") if p]
            if self._epochs:  # epochs of this session so far; on --resume the count starts further on
                left = max(0, self._epochs - trainer.current_epoch - 1)
                parts.append(f"ETA {_clock(elapsed / self._done * left)}")
            log_line(f"{desc} epoch {self._epoch_name(trainer)}: {', '.join(parts)}")

        def on_train_end(self, trainer, module) -> None:
            self._close_bar()
            if self._enabled and not self._terminal:
                bounded = trainer.max_epochs is not None and trainer.max_epochs > 0
                early = ", stopped early" if bounded and trainer.current_epoch < trainer.max_epochs else ""
                log_line(f"{desc}: {self._done} epoch(s) in {_clock(time.perf_counter() - self._start)}{early}")

        def on_exception(self, trainer, module, exception: BaseException) -> None:
            self._close_bar()

        def _epoch_name(self, trainer) -> str:
            return f"{trainer.current_epoch + 1}/{self._epochs}" if self._epochs else str(trainer.current_epoch + 1)

        def _close_bar(self) -> None:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    return EpochProgress()
