"""From per-scale log-likelihoods to one anomaly map and an image score, independent of the test set.

CFLOW-AD's reference code rescales each scale's likelihood map by its maximum over the images being
scored, so that one image's score depends on the others. Here each scale's per-fiber negative
log-likelihood is standardized with constants calibrated once on held-out normal validation images
(``(nll - mean_s) / std_s``: "how many validation standard deviations above normal"), the maps are
upsampled bilinearly to the input size and averaged over scales, and the image score is the map maximum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def calibration_constants(nll_maps: list[Tensor]) -> Tensor:
    """Per-scale mean and standard deviation of the fiber NLL of normal validation images.

    Shapes:
        ``[(N, h_s, w_s)]`` -> ``(S, 2)``.
    """
    rows = []
    for m in nll_maps:
        flat = m.reshape(-1).double()
        std = flat.std() if flat.numel() > 1 else flat.new_tensor(1.0)
        rows.append(torch.stack([flat.mean(), std.clamp_min(1e-6)]))
    return torch.stack(rows).float()


def anomaly_map(nll_maps: list[Tensor], calibration: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Combine per-scale NLL maps into one anomaly map at the input size.

    ``mode`` is the upsampling: ``bilinear`` for images; ``nearest`` for event arrays, whose rows are
    separate objects (a coarse cell then raises all the rows it covers equally, and the finest scale
    decides which of them is the most anomalous).

    Shapes:
        ``[(N, h_s, w_s)]``, ``calibration`` ``(S, 2)`` -> ``(N, H, W)``.
    """
    total = None
    for s, m in enumerate(nll_maps):
        z = (m - calibration[s, 0]) / calibration[s, 1]
        if mode == "nearest":
            up = F.interpolate(z.unsqueeze(1), size=size, mode="nearest")[:, 0]
        else:
            up = F.interpolate(z.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
        total = up if total is None else total + up
    assert total is not None
    return total / len(nll_maps)


def image_score(amap: Tensor) -> Tensor:
    """The maximum of each anomaly map. Shapes: ``(N, H, W)`` -> ``(N,)``."""
    return amap.flatten(1).amax(dim=1)
