"""A small synthetic image set in the MVTec AD layout: procedural textures with pasted defects.

Normal images are oriented stripes (random phase, slightly jittered orientation and period, a smooth
brightness gradient and pixel noise). Defective test images get one pasted patch (an ellipse or a
rectangle) of another texture, with its exact mask:

* ``stripes``: the same kind of stripes rotated by 50-90 degrees;
* ``blobs``: smooth blob noise of about the same mean brightness.

Everything is drawn from one seeded generator: the same arguments give byte-identical files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from darkflow.fileio import atomic_output

DEFECTS = ("stripes", "blobs")


def _stripes(rng: np.random.Generator, size: int, angle: float, period: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    return 0.5 + 0.3 * np.sin(2 * np.pi * u / period + phase)


def _blobs(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=(size, size)), sigma=scale, mode="wrap")
    field = (field - field.mean()) / (field.std() + 1e-12)
    return 0.5 + 0.2 * field


def _region(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random ellipse or rectangle covering roughly 1-5 % of the image, fully inside it."""
    y, x = np.mgrid[0:size, 0:size]
    half_h, half_w = rng.uniform(0.07, 0.14, size=2) * size
    cy = rng.uniform(half_h + 1, size - half_h - 1)
    cx = rng.uniform(half_w + 1, size - half_w - 1)
    if rng.random() < 0.5:
        return ((y - cy) / half_h) ** 2 + ((x - cx) / half_w) ** 2 <= 1.0
    return (np.abs(y - cy) <= half_h) & (np.abs(x - cx) <= half_w)


def texture(rng: np.random.Generator, size: int, defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image in ``[0, 1]`` and its defect mask.

    Arguments:
        rng: the generator every random number comes from.
        size: ``S``, the image side in pixels.
        defect: ``None`` (a normal image) or one of :data:`DEFECTS`.

    Shapes:
        returns the image ``(S, S)`` float64 and the mask ``(S, S)`` bool.
    """
    period = size / 8 * rng.uniform(0.9, 1.1)
    angle = np.deg2rad(30 + rng.normal(0, 3))
    image = _stripes(rng, size, angle, period)
    mask = np.zeros((size, size), dtype=bool)
    if defect == "stripes":
        mask = _region(rng, size)
        other = _stripes(rng, size, angle + np.deg2rad(rng.uniform(50, 90)), period)
        image = np.where(mask, other, image)
    elif defect == "blobs":
        mask = _region(rng, size)
        image = np.where(mask, _blobs(rng, size, size / 32), image)
    elif defect is not None:
        raise ValueError(f"unknown defect {defect!r}; valid: {', '.join(DEFECTS)}")
    y, x = np.mgrid[0:size, 0:size] / size
    gx, gy = rng.normal(0, 0.05, size=2)
    image = image + gx * (x - 0.5) + gy * (y - 0.5) + rng.normal(0, 0.04, size=(size, size))
    return np.clip(image, 0.0, 1.0), mask


def write_synthetic(root: str | Path, size: int = 64, n_train: int = 40, n_test_good: int = 10,
                    n_test_defect: int = 10, rgb: bool = False, seed: int = 0) -> Path:
    """Write the image set under ``root`` in the MVTec AD layout and return ``root``.

    Layout: ``train/good/NNN.png``, ``test/good/NNN.png``, ``test/<defect>/NNN.png`` and
    ``ground_truth/<defect>/NNN_mask.png`` (0 or 255) for every defect in :data:`DEFECTS`.

    Arguments:
        root: output folder, written all or nothing (created when new; in an existing one, its ``train``,
            ``test`` and ``ground_truth`` folders are replaced and other files kept).
        size: image side in pixels.
        n_train, n_test_good, n_test_defect: numbers of images (``n_test_defect`` per defect type).
        rgb: write RGB images (the texture tinted differently per channel) instead of grayscale.
        seed: the random seed.
    """
    from PIL import Image

    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    tint = np.array([1.0, 0.85, 0.7])

    def save(image: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if rgb:
            pixels = np.clip(image[..., None] * tint + 0.05 * rng.normal(size=(*image.shape, 3)), 0, 1)
            Image.fromarray(np.round(pixels * 255).astype(np.uint8), "RGB").save(path)
        else:
            Image.fromarray(np.round(image * 255).astype(np.uint8), "L").save(path)

    with atomic_output(root, directory=True, merge=True) as staging:
        for i in range(n_train):
            save(texture(rng, size)[0], staging / "train" / "good" / f"{i:03d}.png")
        for i in range(n_test_good):
            save(texture(rng, size)[0], staging / "test" / "good" / f"{i:03d}.png")
        for defect in DEFECTS:
            for i in range(n_test_defect):
                image, mask = texture(rng, size, defect)
                save(image, staging / "test" / defect / f"{i:03d}.png")
                mask_path = staging / "ground_truth" / defect / f"{i:03d}_mask.png"
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255, "L").save(mask_path)
    return root


def make_synthetic(size: int = 64, seed: int = 0, **options) -> Path:
    """:func:`write_synthetic` into a new temporary folder (the caller removes it); returns the folder."""
    return write_synthetic(Path(tempfile.mkdtemp(prefix="darkflow_cflow_synthetic_")), size=size, seed=seed,
                           **options)
