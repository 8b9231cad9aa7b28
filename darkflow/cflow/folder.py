"""Image folders in the MVTec AD layout -> :class:`~darkflow.cflow.imageset.ImageSet`.

Layout::

    ROOT/train/good/*.png                      normal training images
    ROOT/test/good/*.png                       normal test images (all-False masks)
    ROOT/test/<defect>/*.png                   anomalous test images
    ROOT/ground_truth/<defect>/<name>_mask.png their masks (non-zero = anomalous)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkflow.cflow.imageset import ImageSet, Split
from darkflow.errors import InputError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _read(path: Path, mode: str, image_size: int | None, nearest: bool = False,
          image: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels of ``path`` in ``mode``, resized to ``image_size`` when given, and the stored size (W, H).

    ``image``: the stored size of the image a mask belongs to; a mask of another size is refused (it is
    never resized onto its image).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            stored = img.size
            if image is not None and stored != image:
                raise InputError(f"{path}: mask is {stored[0]}x{stored[1]} but its image is {image[0]}x{image[1]}; "
                                 "a mask must have the size of its image")
            img = img.convert(mode)
            if image_size is not None and img.size != (image_size, image_size):
                resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
                img = img.resize((image_size, image_size), resample)
            return np.asarray(img), stored
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None


def _mode(paths: list[Path]) -> str:
    """``L`` when every image is grayscale, else ``RGB``."""
    from PIL import Image

    modes = set()
    for p in paths:
        try:
            with Image.open(p) as img:
                modes.add(img.mode)
        except OSError as err:
            raise InputError(f"{p}: not a readable image ({err})") from None
    return "L" if modes <= {"L", "1", "I", "I;16", "F", "LA"} else "RGB"


def load_folder(root: str | Path, split: Split, image_size: int | None = None) -> ImageSet:
    """Load the ``train`` (normal only) or ``test`` split of an MVTec AD folder.

    Arguments:
        root: the folder holding ``train/good`` (and ``test/``, ``ground_truth/`` for the test split).
        split: ``train`` or ``test``.
        image_size: resize to ``image_size x image_size`` (bilinear; masks nearest); ``None`` keeps the
            size, which must then be the same for every image. A mask must have the stored size of its image
            (refused otherwise, never resized onto it).

    Returns:
        an :class:`ImageSet` of kind ``folder``: images ``(N, C, H, W)`` in ``[0, 1]`` (``C`` 1 for
        grayscale, 3 when any image is colour), labels 0 for ``good`` and 1 otherwise, masks from
        ``ground_truth`` (test split; ``None`` for train, and for a test split whose defect images have no masks
        at all: image-level labels only, said in ``meta["note"]``). Masks for some defect images but not for
        others are refused.
    """
    root = Path(root)
    if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
        raise InputError(f"image size must be an integer of at least 8 pixels, got {image_size!r}")
    train_good = root / "train" / "good"
    if not train_good.is_dir() or not _images_in(train_good):
        raise InputError(f"{root}: no images in train/good; an image folder needs the MVTec AD layout "
                         "train/good/*.png, test/good/*.png, test/<defect>/*.png, ground_truth/<defect>/<name>_mask.png")
    if split == "train":
        groups = [("good", train_good)]
    else:
        test = root / "test"
        if not test.is_dir():
            raise InputError(f"{root}: no test/ folder; expected test/good/*.png and test/<defect>/*.png")
        groups = [(d.name, d) for d in sorted(test.iterdir()) if d.is_dir() and _images_in(d)]
        groups.sort(key=lambda g: (g[0] != "good", g[0]))
        if not groups:
            raise InputError(f"{test}: no images in any test/<defect> folder (test/good, test/<defect>)")
    files = [(name, p) for name, folder in groups for p in _images_in(folder)]
    mode = _mode([p for _, p in files] + ([] if split == "train" else _images_in(train_good)[:1]))
    images, masks, labels, names = [], [], [], []
    defects = [(name, p) for name, p in files if name != "good"]
    found = [_mask_path(root, name, p) for name, p in defects]
    has_masks = split == "test" and any(m is not None for m in found)
    if has_masks and None in found:
        name, p = defects[found.index(None)]
        raise InputError(f"{p}: no mask at {root / 'ground_truth' / name / (p.stem + '_mask.png')}, while other "
                         "defect images have masks; give every test/<defect> image a ground_truth mask, or none "
                         "(image-level labels only)")
    masks_of = dict(zip([p for _, p in defects], found, strict=True))
    for name, p in files:
        pixels, stored = _read(p, mode, image_size)
        images.append(pixels)
        labels.append(0 if name == "good" else 1)
        names.append(f"{split}/{name}/{p.name}")
        if not has_masks:
            continue
        if name == "good":
            masks.append(np.zeros(pixels.shape[:2], dtype=bool))
            continue
        mask, _ = _read(masks_of[p], "L", image_size, nearest=True, image=stored)
        masks.append(mask > 0)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise InputError(f"{root}: images of different sizes {sorted(shapes)[:2]}...; set `image_size` to N to resize them")
    stack = np.stack(images).astype(np.float32) / 255.0
    stack = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
    meta = {"root": str(root), "mode": mode}
    if split == "test" and defects and not has_masks:
        meta["note"] = (f"no ground_truth masks for the {len(defects)} defect image(s): image-level labels only, "
                        "so pixel_auroc and aupro are left empty")
    return ImageSet(np.ascontiguousarray(stack), np.asarray(labels, dtype=np.int8),
                    np.stack(masks) if has_masks else None, names, "folder", meta=meta)


def _mask_path(root: Path, defect: str, image: Path) -> Path | None:
    """``ground_truth/<defect>/<name>_mask.png`` (or ``<name>.png``) of a defect image, if it exists."""
    for name in (f"{image.stem}_mask.png", f"{image.stem}.png"):
        path = root / "ground_truth" / defect / name
        if path.is_file():
            return path
    return None
