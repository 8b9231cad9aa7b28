"""The in-memory image set every CFLOW-AD loader returns, and the dispatch from a path to its loader.

Three kinds of input become an :class:`ImageSet`:

* ``folder``: an MVTec AD folder (``train/good``, ``test/good``, ``test/<defect>``,
  ``ground_truth/<defect>/<name>_mask.png``), see :mod:`darkflow.cflow.folder`;
* ``jetimages``: HDF5 files written by ``darkflow jetimages``, see :mod:`darkflow.cflow.h5images`;
* ``events``: HDF5 event files written by ``darkflow prepare`` (one ``(1, R, F)`` image per event, so that
  the anomaly map says which object is anomalous), see :mod:`darkflow.cflow.h5images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from darkflow.errors import InputError

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


def load_images(paths: str | Path | Sequence[str | Path], split: Split, image_size: int | None = None,
                background: str | None = None) -> ImageSet:
    """Load an image folder (one directory) or HDF5 jet-image / event files (one or more ``.h5``).

    Arguments:
        paths: a directory in the MVTec AD layout, or one or more ``.h5`` files.
        split: ``train`` (normal images only) or ``test`` (everything, labelled).
        image_size: resize folder images to ``image_size x image_size`` (``None``: keep); HDF5 images keep
            their stored size.
        background: for HDF5 test files, the sample label that is normal (label 0); every other file is
            anomalous (label 1). ``None``: labels unknown (-1) unless a file stores them.
    """
    items = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not items:
        raise InputError("no input given: pass an image folder (MVTec AD layout) or .h5 files")
    for p in items:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; expected an image folder (MVTec AD layout) "
                             "or .h5 files from darkflow jetimages / darkflow prepare")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if len(items) == 1 and items[0].is_dir():
        from darkflow.cflow.folder import load_folder

        return load_folder(items[0], split, image_size)
    if any(p.is_dir() for p in items):
        raise InputError("give either one image folder or .h5 files, not several folders or a mix")
    from darkflow.cflow.h5images import load_h5

    return load_h5(items, split, background)
