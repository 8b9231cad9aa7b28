"""The training file's values, checked once before any training: a NaN or inf there would otherwise surface
epochs later as a non-finite loss that reads like a learning-rate problem.

* ``weight``: every weight finite (a :class:`DataError` with how many are not and the first one's event index);
  with ``event_weights`` ``use`` or ``abs``, the weights of each split must not all be zero (the weighted mean
  of the losses would be undefined).
* ``objects`` and ``hlf``: every value finite; otherwise the file is damaged (it was not written by ``prepare``,
  which refuses such values, or was changed since), again with the count and the first event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkflow.errors import DataError

BLOCK_EVENTS = 65_536
"""Events read at a time."""


def _bad_events(values: np.ndarray) -> np.ndarray:
    """Which events (first axis) hold a NaN or inf, bool ``(B,)``."""
    return ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)


def _count(bad: np.ndarray, offset: int = 0) -> tuple[int, int]:
    return int(bad.sum()), offset + int(np.argmax(bad)) if bad.any() else -1


def check_training_values(path: str | Path, train_idx: np.ndarray, val_idx: np.ndarray,
                          event_weights: str = "use") -> None:
    """Refuse a training file with non-finite weights, objects or high-level features, or a split whose
    weights are all zero (see the module docstring).

    Raises:
        DataError: one line with what is wrong, how many events, the first event index and what to do.
    """
    from darkflow.data_prep.store import open_event_file

    with open_event_file(path) as handle:
        weight = handle["weight"][:]
        count, first = _count(_bad_events(weight))
        if count:
            raise DataError(f"{path}: {count} event weight(s) are NaN or inf (the first at event {first}); event "
                            "weights must be finite: fix or drop those events and prepare the file again")
        for name in ("objects", "hlf"):
            data, count, first = handle[name], 0, -1
            for lo in range(0, data.shape[0], BLOCK_EVENTS):
                n, at = _count(_bad_events(data[lo : lo + BLOCK_EVENTS]), lo)
                count, first = count + n, first if first >= 0 else at
            if count:
                raise DataError(f"{path}: damaged input file: {count} event(s) hold NaN or inf in {name!r} (the "
                                f"first at event {first}); prepare the file again from its sources")
    if event_weights == "ignore":
        return
    for split, idx in (("training", train_idx), ("validation", val_idx)):
        if not np.abs(weight[idx]).sum() > 0:
            raise DataError(f"{path}: every event weight of the {split} split is zero, so the weighted losses are "
                            "undefined: give the events non-zero weights or set `training.event_weights` to ignore")
