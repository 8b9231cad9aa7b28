"""A texture image set from photographs: crops of one texture, test crops with a pasted patch of another.

The textures are the 512 x 512 grayscale photographs shipped inside scikit-image (``skimage.data``:
``brick``, ``grass``, ``gravel``), so the set needs no download. Training crops come from the top half of the
normal texture, test crops from the bottom half (disjoint pixels). A defective test crop gets one ellipse or
rectangle (1-5 % of the crop, :func:`darkflow.cflow.synthetic._region`) of the other texture, pasted as it is,
and its exact mask.

This is the benchmark of issue 16: a Gaussian of raw 8 x 8 patches separates it almost perfectly, so a
CFLOW-AD model that loses to its own Gaussian special case shows at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkflow.errors import InputError
from darkflow.fileio import atomic_output

TEXTURES = ("brick", "grass", "gravel")


def photograph(name: str) -> np.ndarray:
    """The scikit-image texture ``name`` in ``[0, 1]``, ``(512, 512)`` float64."""
    if name not in TEXTURES:
        raise InputError(f"unknown texture {name!r}; valid: {', '.join(TEXTURES)}")
    try:
        import skimage.data
    except ImportError:
        raise InputError("the texture set needs scikit-image: pip install scikit-image") from None
    return np.asarray(getattr(skimage.data, name)(), dtype=np.float64) / 255.0


def _crop(rng: np.random.Generator, image: np.ndarray, size: int, rows: tuple[int, int]) -> np.ndarray:
    y = int(rng.integers(rows[0], rows[1] - size + 1))
    x = int(rng.integers(0, image.shape[1] - size + 1))
    return image[y : y + size, x : x + size]


def texture_crop(rng: np.random.Generator, normal: np.ndarray, other: np.ndarray, size: int, rows: tuple[int, int],
                 defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """One crop ``(S, S)`` of ``normal`` from ``rows``, with a pasted patch of ``other`` when ``defect``, and its
    mask ``(S, S)`` bool."""
    from darkflow.cflow.synthetic import _region

    image = _crop(rng, normal, size, rows).copy()
    mask = np.zeros((size, size), dtype=bool)
    if defect:
        mask = _region(rng, size)
        patch = _crop(rng, other, size, (0, other.shape[0]))
        image[mask] = patch[mask]
    return np.clip(image, 0.0, 1.0), mask


def write_texture_set(root: str | Path, normal: str = "brick", other: str = "gravel", size: int = 96,
                      n_train: int = 160, n_test_good: int = 40, n_test_defect: int = 40, seed: int = 0) -> Path:
    """Write the texture set under ``root`` in the MVTec AD layout (``train/good``, ``test/good``,
    ``test/<other>``, ``ground_truth/<other>``) and return ``root``; all or nothing, the same arguments give
    byte-identical files.

    Arguments:
        normal, other: the normal texture and the pasted one (:data:`TEXTURES`).
        size: crop side in pixels (at most 256).
        n_train, n_test_good, n_test_defect: numbers of crops.
        seed: the random seed.
    """
    from PIL import Image

    if not 16 <= size <= 256:
        raise InputError(f"crop size must be between 16 and 256 pixels, got {size}")
    if normal == other:
        raise InputError(f"the pasted texture must differ from the normal one ({normal!r})")
    base, patch = photograph(normal), photograph(other)
    rng = np.random.default_rng(seed)
    half = base.shape[0] // 2

    def save(pixels: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels * 255).astype(np.uint8), "L").save(path)

    with atomic_output(Path(root), directory=True, merge=True) as staging:
        for i in range(n_train):
            save(texture_crop(rng, base, patch, size, (0, half), False)[0], staging / "train" / "good" / f"{i:03d}.png")
        for i in range(n_test_good):
            save(texture_crop(rng, base, patch, size, (half, base.shape[0]), False)[0],
                 staging / "test" / "good" / f"{i:03d}.png")
        for i in range(n_test_defect):
            image, mask = texture_crop(rng, base, patch, size, (half, base.shape[0]), True)
            save(image, staging / "test" / other / f"{i:03d}.png")
            save(mask.astype(np.float64), staging / "ground_truth" / other / f"{i:03d}_mask.png")
    return Path(root)
