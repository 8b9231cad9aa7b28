"""HDF5 inputs of CFLOW-AD: jet-image files (``darkflow jetimages``) and event files (``darkflow prepare``).

* kind ``jetimages``: the ``images`` dataset as stored, ``(N, 1, S, S)``; names ``<label>/<event_id>``;
  ``meta``: ``label``, ``size``, ``radius``, ``image_kind`` (``jet`` or ``event``), ``process_names``.
* kind ``events``: the ``objects`` array ``(N, R, F)`` as one-channel images ``(N, 1, R, F)``, so that a
  pixel is one feature of one object slot; ``meta``: ``rows`` (slot names ``jet_0, jet_1, ..., met``),
  ``row_types`` and ``features`` from the file's ``layout``, ``label``.

Labels: ``train`` takes every image as normal (0); with ``background`` given, only the files whose label is
``background`` are used. ``test`` labels a file's images 0 when its label is ``background``, 1 otherwise, and
-1 (unknown) when ``background`` is ``None``. Masks are ``None`` (no pixel-level truth). Datasets are read
in chunks of :data:`CHUNK` events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darkflow.cflow.imageset import ImageSet, Split
from darkflow.errors import DataError, InputError
from darkflow.events import EventFile
from darkflow.events.schema import HDF5_MAGIC
from darkflow.fileio import check_input

CHUNK = 16_384


def _kind(path: Path, handle) -> str:
    if "images" in handle and "size" in handle.attrs:
        return "jetimages"
    if "objects" in handle:
        return "events"
    raise InputError(f"{path}: neither a jet-image file (darkflow jetimages: 'images' dataset) nor an event file "
                     "(darkflow prepare: 'objects' dataset with a 'layout' attribute)")


def _read(dataset, dtype) -> np.ndarray:
    """A whole dataset, read ``CHUNK`` events at a time into one preallocated array."""
    out = np.empty(dataset.shape, dtype=dtype)
    for start in range(0, len(dataset), CHUNK):
        out[start:start + CHUNK] = dataset[start:start + CHUNK]
    return out


def slot_names(rows: Sequence[str]) -> list[str]:
    """Unique names of layout rows: ``jet_0, jet_1, ..., bjet_0, ..., met`` (a single row keeps its type)."""
    totals = {r: list(rows).count(r) for r in rows}
    seen: dict[str, int] = {}
    names = []
    for r in rows:
        k = seen.get(r, 0)
        seen[r] = k + 1
        names.append("met" if r == "met" and totals[r] == 1 else f"{r}_{k}")
    return names


def _open(path: Path):
    """The jet-image file ``path`` opened with h5py (event files are read through :class:`EventFile`)."""
    import h5py

    if not path.exists():
        raise InputError(f"{path}: no such file; expected .h5 files from darkflow jetimages or darkflow prepare")
    check_input(path, ".h5 file")
    with open(path, "rb") as handle:
        if handle.read(8) != HDF5_MAGIC:
            raise InputError(f"{path}: not an HDF5 file; expected .h5 files from darkflow jetimages or darkflow prepare")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: cannot be read as HDF5 (truncated or damaged: {err})") from None


def _events(events: EventFile) -> tuple[np.ndarray, dict[str, Any], np.ndarray, np.ndarray]:
    """An event file's ``objects`` as one-channel images ``(N, 1, R, F)``, its meta, event ids and weights."""
    with events:
        part = events.read(None, ("objects", "event_id", "weight"))
    meta = {"rows": slot_names(events.rows), "row_types": events.rows, "features": events.features}
    return part["objects"][:, None], meta, part["event_id"], part["weight"]


def load_h5(paths: Sequence[str | Path], split: Split, background: str | None = None) -> ImageSet:
    """Load jet-image files or event files (all of one kind) as an :class:`ImageSet` (see the module docstring).

    Arguments:
        paths: one or more ``.h5`` files.
        split: ``train`` or ``test``.
        background: the sample label that is normal.

    Returns:
        an :class:`ImageSet` with images float32 ``(N, 1, H, W)``, labels int8 ``(N,)``, masks ``None``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no .h5 file given")
    images, labels, names, weights = [], [], [], []
    kinds, meta, file_labels, used = set(), {}, [], []
    for path in paths:
        with _open(path) as handle:
            kind = _kind(path, handle)
            kinds.add(kind)
            if len(kinds) > 1:
                raise InputError("give either jet-image files (darkflow jetimages) or event files (darkflow prepare), "
                                 "not both")
            if kind == "jetimages":
                label = str(handle.attrs.get("label", path.stem))
                file_labels.append(label)
                if split == "train" and background is not None and label != background:
                    continue
                x = _read(handle["images"], np.float32)
                file_meta = {"size": int(handle.attrs["size"]), "radius": float(handle.attrs["radius"]),
                             "image_kind": str(handle.attrs.get("image_kind", "jet")),
                             "process_names": json.loads(handle.attrs.get("process_names", "[]"))}
                ids = handle["event_id"][:] if "event_id" in handle else np.arange(len(x))
                w = handle["weight"][:].astype(np.float64) if "weight" in handle else np.ones(len(x))
        if kind == "events":
            events = EventFile(path)
            label = events.label
            file_labels.append(label)
            if split == "train" and background is not None and label != background:
                continue
            x, file_meta, ids, w = _events(events)
        if x.ndim != 4 or x.shape[1] != 1:
            raise InputError(f"{path}: images have shape {x.shape}, expected (N, 1, H, W)")
        if not np.isfinite(x).all():
            raise DataError(f"{path}: images hold NaN or inf; regenerate the file")
        _check_same(meta, file_meta, path, x.shape[2:])
        used.append(label)
        if split == "train":
            y = 0
        elif background is None:
            y = -1
        else:
            y = 0 if label == background else 1
        images.append(x)
        labels.append(np.full(len(x), y, dtype=np.int8))
        names.extend(f"{label}/{int(i)}" for i in ids)
        weights.append(w)
    if not images:
        raise InputError(f"no file has the label {background!r} given as background; labels: {sorted(set(file_labels))}")
    if split == "test" and background is not None and background not in file_labels:
        raise InputError(f"background {background!r} is not the label of any file; labels: {sorted(set(file_labels))}")
    meta["label"] = used[0] if len(set(used)) == 1 else None
    meta["labels"] = used
    x = np.concatenate(images)
    if len(x) == 0:
        raise InputError(f"no images in {', '.join(str(p) for p in paths)}")
    return ImageSet(x, np.concatenate(labels), None, names, kinds.pop(), np.concatenate(weights), meta)


def _check_same(meta: dict[str, Any], file_meta: dict[str, Any], path: Path, shape: tuple[int, ...]) -> None:
    """Every file must give images of one shape (and the same layout for event files)."""
    file_meta = {**file_meta, "shape": list(shape)}
    if not meta:
        meta.update(file_meta)
        return
    for key in ("shape", "rows", "features", "size", "radius"):
        if key in meta and meta[key] != file_meta.get(key):
            raise InputError(f"{path}: {key} {file_meta.get(key)} differs from the first file's {meta[key]}; "
                             "all files must have the same image size and layout")
