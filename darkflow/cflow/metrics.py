"""Anomaly-detection metrics: image AUROC, pixel AUROC and AUPRO (per-region overlap up to FPR 0.3)."""

from __future__ import annotations

import numpy as np


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of image scores against labels (1 anomalous, 0 normal, -1 unknown is left out).

    Shapes:
        ``scores`` ``(N,)``, ``labels`` ``(N,)``; ``None`` when fewer than two classes are known.
    """
    from sklearn.metrics import roc_auc_score

    known = labels >= 0
    if len(np.unique(labels[known])) < 2:
        return None
    return float(roc_auc_score(labels[known], scores[known]))


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float | None:
    """ROC AUC of every pixel's anomaly value against the ground-truth masks.

    Shapes:
        ``maps`` ``(N, H, W)`` float, ``masks`` ``(N, H, W)`` bool; ``None`` when the masks hold one class.
    """
    from sklearn.metrics import roc_auc_score

    truth = masks.ravel()
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, maps.ravel()))


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-region-overlap curve at every distinct threshold of the maps, exactly.

    A pixel is predicted anomalous when its value is ``>= t``. ``FPR(t)`` is the fraction of normal pixels
    (all images) predicted anomalous; ``PRO(t)`` is the mean over the connected ground-truth regions
    (8-connectivity, per image) of the fraction of the region predicted anomalous.

    Shapes:
        ``maps`` ``(N, H, W)``, ``masks`` ``(N, H, W)`` bool -> ``fpr`` ``(T + 1,)``, ``pro`` ``(T + 1,)``,
        increasing, from ``(0, 0)``.

    References:
        P. Bergmann et al., The MVTec Anomaly Detection Dataset, IJCV 129 (2021) 1038, section 5.2.
    """
    from scipy.ndimage import label

    weight = np.zeros(masks.shape, dtype=np.float64)
    regions = 0
    for i, mask in enumerate(masks):
        labelled, n = label(mask, structure=np.ones((3, 3), dtype=int))
        if n:
            sizes = np.bincount(labelled.ravel())
            weight[i] = np.where(labelled > 0, 1.0 / sizes[labelled], 0.0)
            regions += n
    values = maps.ravel()
    normal = ~masks.ravel()
    if regions == 0 or not normal.any():
        raise ValueError("AUPRO needs masks with at least one anomalous region and one normal pixel")
    order = np.argsort(-values, kind="stable")
    values = values[order]
    fpr = np.cumsum(normal[order]) / normal.sum()
    pro = np.cumsum(weight.ravel()[order]) / regions
    last_of_tie = np.r_[values[1:] != values[:-1], True]
    return np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def aupro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3) -> float | None:
    """Area under the PRO curve for ``FPR <= max_fpr`` (trapezoids, the curve interpolated linearly at
    ``max_fpr``), divided by ``max_fpr``: 1 is perfect, about ``max_fpr / 2`` is random.

    Shapes:
        ``maps`` ``(N, H, W)``, ``masks`` ``(N, H, W)`` bool; ``None`` when the masks have no region.

    References:
        P. Bergmann et al., The MVTec Anomaly Detection Dataset, IJCV 129 (2021) 1038, section 5.2.
    """
    if not masks.any() or masks.all():
        return None
    fpr, pro = pro_curve(maps, masks)
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:
        j = int(np.searchsorted(fpr, max_fpr))
        y_end = pro[j - 1] + (pro[j] - pro[j - 1]) * (max_fpr - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        x, y = np.r_[x, max_fpr], np.r_[y, y_end]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / max_fpr)
