"""AUPRO on a hand-made mask with a hand-derived answer; AUROCs against pair counting."""

import itertools

import numpy as np
import pytest

from darkflow.cflow.metrics import aupro, image_auroc, pixel_auroc, pro_curve


def _hand_case():
    # image 0: region A = two adjacent pixels (scores 0.9 and 0.5); image 1: region B = one pixel (0.8).
    # normal pixels: one at 0.7, one at 0.6, the other 11 at 0.1 (13 normal pixels in all).
    maps = np.full((2, 2, 4), 0.1)
    masks = np.zeros((2, 2, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 0, 1] = masks[1, 1, 3] = True
    maps[0, 0, 0], maps[0, 0, 1], maps[1, 1, 3] = 0.9, 0.5, 0.8
    maps[0, 1, 2], maps[1, 0, 0] = 0.7, 0.6
    return maps, masks


def test_aupro_hand_made():
    maps, masks = _hand_case()
    fpr, pro = pro_curve(maps, masks)
    # thresholds 0.9, 0.8, 0.7, 0.6, 0.5, 0.1: PRO is the mean of the two regions' covered fractions
    assert fpr.tolist() == pytest.approx([0, 0, 0, 1 / 13, 2 / 13, 2 / 13, 1])
    assert pro.tolist() == pytest.approx([0, 0.25, 0.75, 0.75, 0.75, 1, 1])
    # area up to FPR 0.3: 0.75 * 2/13 + 1 * (0.3 - 2/13), divided by 0.3
    assert aupro(maps, masks) == pytest.approx(1 - 0.5 / (13 * 0.3), abs=1e-12)


def test_aupro_regions_and_bounds():
    maps, masks = _hand_case()
    diagonal = np.zeros_like(masks)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = True  # diagonal neighbours: one region (8-connectivity)
    _, pro = pro_curve(maps, diagonal)
    assert pro[1] == pytest.approx(0.5)
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.random((20, 16, 16))
    big = np.zeros((20, 16, 16), dtype=bool)
    big[:, 4:9, 4:9] = True
    assert aupro(noise, big) == pytest.approx(0.15, abs=0.03)  # random maps: about max_fpr / 2
    assert aupro(maps, np.zeros_like(masks)) is None


def _pairs_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_auroc_against_pair_counting():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.normal(size=60) + labels, 1)  # rounded: ties included
    assert image_auroc(scores, labels) == pytest.approx(_pairs_auc(scores, labels))
    labels_unknown = labels.copy()
    labels_unknown[:5] = -1
    assert image_auroc(scores, labels_unknown) == pytest.approx(_pairs_auc(scores[5:], labels[5:]))
    assert image_auroc(scores, np.zeros(60, dtype=int)) is None
    maps = rng.normal(size=(3, 5, 5))
    masks = rng.random((3, 5, 5)) < 0.3
    maps = maps + masks
    assert pixel_auroc(maps, masks) == pytest.approx(_pairs_auc(maps.ravel(), masks.ravel().astype(int)))
