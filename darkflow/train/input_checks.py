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
from typing import TYPE_CHECKING

import numpy as np

from darkflow.errors import DataError

if TYPE_CHECKING:
    from darkflow.events import EventFile


def check_training_values(path: str | Path | EventFile, train_idx: np.ndarray, val_idx: np.ndarray,
                          event_weights: str = "use") -> None:
    """Refuse a training file with non-finite weights, objects or high-level features, or a split whose
    weights are all zero (see the module docstring). The weights are checked by :class:`EventFile` when the
    file is opened (``path`` may be an open one), ``objects`` and ``hlf`` by :meth:`EventFile.check_finite`.

    Raises:
        DataError: one line with what is wrong, how many events, the first event index and what to do.
    """
    from darkflow.events import EventFile

    events = path if isinstance(path, EventFile) else EventFile(path)  # refuses non-finite weights
    events.check_finite()
    weight = events.read(None, ("weight",))["weight"]
    events.close()
    if event_weights == "ignore":
        return
    for split, idx in (("training", train_idx), ("validation", val_idx)):
        if not np.abs(weight[idx]).sum() > 0:
            raise DataError(f"{events.path}: every event weight of the {split} split is zero, so the weighted losses are "
                            "undefined: give the events non-zero weights or set `training.event_weights` to ignore")
