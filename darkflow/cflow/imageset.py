"""The in-memory image set every CFLOW-AD loader returns (:mod:`darkflow.cflow.load` picks the loader).

Three kinds of input become an :class:`ImageSet`:

* ``folder``: an MVTec AD folder (``train/good``, ``test/good``, ``test/<defect>``,
  ``ground_truth/<defect>/<name>_mask.png``), see :mod:`darkflow.cflow.folder`;
* ``jetimages``: HDF5 files written by ``darkflow jetimages``, see :mod:`darkflow.cflow.h5images`;
* ``events``: HDF5 event files written by ``darkflow prepare`` (one ``(1, R, F)`` image per event, so that
  the anomaly map says which object is anomalous), see :mod:`darkflow.cflow.h5images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Split = Literal["train", "test"]
KINDS = ("folder", "jetimages", "events")


@dataclass
class ImageSet:
    """Images with their labels and ground-truth masks.

    Attributes:
        images: float32 ``(N, C, H, W)``: folders in ``[0, 1]``; jet images and event arrays as stored
            (the model standardizes them with statistics of its training images).
        labels: int8 ``(N,)``: 0 normal, 1 anomalous, -1 unknown.
        masks: bool ``(N, H, W)`` ground-truth anomalous pixels, or ``None`` where the data has none.
        names: ``N`` names (relative file paths, or ``<label>/<event_id>``).
        kind: one of ``folder``, ``jetimages``, ``events``.
        weights: float64 ``(N,)`` event weights (1 for images).
        meta: anything the kind needs downstream (e.g. ``rows`` and ``features`` names of an event layout,
            the jet-image ``eta``/``phi`` ranges, the sample ``label``).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    names: list[str]
    kind: str
    weights: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.images.ndim == 4 and self.images.dtype == np.float32, self.images.shape
        n = len(self.images)
        assert self.labels.shape == (n,), (self.labels.shape, n)
        assert len(self.names) == n
        assert self.kind in KINDS, self.kind
        if self.masks is not None:
            assert self.masks.shape == (n, *self.images.shape[2:]) and self.masks.dtype == bool
        if self.weights is None:
            self.weights = np.ones(n)
        assert self.weights.shape == (n,)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> ImageSet:
        """The images at ``index`` (an integer or boolean array), with their labels, masks and names."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return ImageSet(self.images[index], self.labels[index],
                        None if self.masks is None else self.masks[index],
                        [self.names[i] for i in index], self.kind, self.weights[index], dict(self.meta))
