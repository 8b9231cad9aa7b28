"""PNG overlays of anomaly maps on their images (matplotlib), for the highest-scored images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from darkflow.cflow.imageset import ImageSet


def _safe(name: str) -> str:
    name = re.sub(r"\.(png|jpe?g|bmp|tiff?)$", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80]


def write_overlays(folder: Path, images: ImageSet, maps: np.ndarray, scores: np.ndarray, count: int = 8) -> list[Path]:
    """Write ``count`` overlays (highest scores first) into ``folder``: the image, the anomaly map over it
    and the ground-truth outline where there is a mask. Returns the files written.

    Shapes:
        ``maps`` ``(N, H, W)``, ``scores`` ``(N,)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    order = np.argsort(-scores, kind="stable")[:count]
    rows = images.meta.get("rows")
    features = images.meta.get("features")
    written = []
    for rank, i in enumerate(order):
        image = images.images[i]
        h, w = image.shape[1:]
        aspect = "auto" if w < h / 2 else "equal"
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), constrained_layout=True)
        if images.kind == "folder":
            shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            axes[0].imshow(np.clip(shown, 0, 1), cmap="gray", vmin=0, vmax=1)
        else:
            axes[0].imshow(image.sum(axis=0), cmap="viridis", aspect=aspect)
        axes[0].set_title(f"{images.names[i]} (label {int(images.labels[i])})", fontsize=8)
        axes[1].imshow(image.mean(axis=0), cmap="gray", aspect=aspect)
        # per image, from 0 (the validation mean) to the image's maximum; anomalies span decades, so gamma 0.5
        norm = PowerNorm(0.5, vmin=0.0, vmax=max(float(maps[i].max()), 1e-6), clip=True)
        im = axes[1].imshow(maps[i], cmap="inferno", alpha=0.6, norm=norm, aspect=aspect)
        if images.masks is not None and images.masks[i].any():
            axes[1].contour(images.masks[i], levels=[0.5], colors="cyan", linewidths=1)
        axes[1].set_title(f"anomaly map, score {scores[i]:.3g}", fontsize=8)
        fig.colorbar(im, ax=axes[1], shrink=0.8, label="calibrated anomaly (validation sigmas)")
        for ax in axes:
            if images.kind == "events" and rows and features and len(rows) == h and len(features) == w:
                ax.set_yticks(range(h), rows, fontsize=5)
                ax.set_xticks(range(w), features, fontsize=7)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
        path = folder / f"{rank:02d}_{_safe(images.names[i])}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
