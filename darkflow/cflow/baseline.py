"""A plain baseline CFLOW-AD must beat: PCA reconstruction of downscaled pixels."""

from __future__ import annotations

import numpy as np


class PCABaseline:
    """PCA on images averaged down to ``size x size`` pixels (scikit-learn); the anomaly map is the squared
    reconstruction error, upsampled back, and the image score its mean.

    Arguments:
        size: side of the downscaled image (kept as it is when the image is smaller).
        variance: fraction of the training variance the kept components explain.

    Shapes:
        ``fit``: ``(N, C, H, W)``; ``score``: ``(N, C, H, W)`` -> maps ``(N, H, W)``, scores ``(N,)``.
    """

    def __init__(self, size: int = 32, variance: float = 0.95) -> None:
        self.size = size
        self.variance = variance

    def _small(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = images.shape[2:]
        out = (min(self.size, h), min(self.size, w))
        small = F.adaptive_avg_pool2d(torch.from_numpy(np.asarray(images, dtype=np.float32)), out)
        return small.numpy()

    def fit(self, images: np.ndarray) -> PCABaseline:
        from sklearn.decomposition import PCA

        small = self._small(images)
        self.shape = small.shape[1:]
        flat = small.reshape(len(small), -1)
        self.scale = flat.std(axis=0) + 1e-6
        components = min(len(flat) - 1, flat.shape[1]) if len(flat) > 1 else 1
        self.pca = PCA(n_components=components, svd_solver="full").fit(flat / self.scale)
        keep = int(np.searchsorted(np.cumsum(self.pca.explained_variance_ratio_), self.variance) + 1)
        self.keep = max(1, min(keep, components))
        return self

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        flat = self._small(images).reshape(len(images), -1) / self.scale
        centred = flat - self.pca.mean_
        basis = self.pca.components_[: self.keep]
        error = (centred - (centred @ basis.T) @ basis) ** 2
        small = error.reshape(len(images), *self.shape).mean(axis=1)  # (N, h, w)
        maps = F.interpolate(torch.from_numpy(small[:, None].astype(np.float32)), size=images.shape[2:],
                             mode="bilinear", align_corners=False)[:, 0].numpy()
        return maps, error.mean(axis=1)
