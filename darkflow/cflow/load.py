"""The one entry point from a path to an :class:`~darkflow.cflow.imageset.ImageSet`: an image folder goes to
:mod:`darkflow.cflow.folder`, HDF5 files to :mod:`darkflow.cflow.h5images`.

Both loaders import :mod:`darkflow.cflow.imageset` and nothing imports them back but this module, so the
three modules form no import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from darkflow.cflow.folder import load_folder
from darkflow.cflow.h5images import load_h5
from darkflow.cflow.imageset import ImageSet, Split
from darkflow.errors import InputError
from darkflow.fileio import check_input

EXPECTED = "an image folder (MVTec AD layout) or .h5 files from darkflow jetimages / darkflow prepare"


def load_images(paths: str | Path | Sequence[str | Path], split: Split, image_size: int | None = None,
                background: str | None = None) -> ImageSet:
    """Load an image folder (one directory) or HDF5 jet-image / event files (one or more ``.h5``).

    Arguments:
        paths: a directory in the MVTec AD layout, or one or more ``.h5`` files.
        split: ``train`` (normal images only) or ``test`` (everything, labelled).
        image_size: resize folder images (and their masks) to ``image_size x image_size`` (``None``: keep);
            HDF5 images keep their stored size.
        background: for HDF5 test files, the sample label that is normal (label 0); every other file is
            anomalous (label 1). ``None``: labels unknown (-1) unless a file stores them.

    Raises:
        InputError: no input, a path that is missing, unreadable, a FIFO or device, several folders or a
            folder mixed with files.
    """
    items = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not items:
        raise InputError(f"no input given: pass {EXPECTED}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if len(items) == 1 and not items[0].exists() and not items[0].is_symlink():
        raise InputError(f"{items[0]}: no such file or folder; expected {EXPECTED}")
    if len(items) == 1 and items[0].is_dir():
        return load_folder(check_input(items[0], "image folder", directory=True), split, image_size)
    if any(p.is_dir() for p in items):
        raise InputError("give either one image folder or .h5 files, not several folders or a mix")
    for p in items:
        if not p.exists() and not p.is_symlink():
            raise InputError(f"{p}: no such file or folder; expected {EXPECTED}")
        check_input(p, "image file")
    return load_h5(items, split, background)
