"""End to end through the CLI on a generated texture set with planted defects, and on toy jet images;
CFLOW-AD's image AUROC is printed beside the PCA-reconstruction baseline's on each."""

import csv

import h5py
import numpy as np
import pytest

from darkflow.cflow.baseline import PCABaseline
from darkflow.cflow.folder import load_folder
from darkflow.cflow.imageset import ImageSet
from darkflow.cflow.metrics import image_auroc, pixel_auroc
from darkflow.cflow.score import evaluate, predict
from darkflow.cflow.synthetic import write_synthetic
from darkflow.cflow.train import fit_cflow
from darkflow.cli import main


@pytest.mark.slow
def test_cli_train_and_score_synthetic_textures(tmp_path, capsys):
    # The default config; only the size and the number of epochs are cut (10 -> 3) to keep the test short.
    root = write_synthetic(tmp_path / "textures", size=64, n_train=32, n_test_good=10, n_test_defect=8, seed=11)
    run, out = tmp_path / "run", tmp_path / "scored"
    assert main(["cflow", "train", "--data", str(root), "--out", str(run), "--image-size", "64", "--epochs", "3",
                 "-q"]) == 0
    assert main(["cflow", "score", "--run", str(run), "--data", str(root), "--out", str(out)]) == 0
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image_auroc", "pixel_auroc", "aupro"] and len(rows) == 1
    metrics = {k: float(v) for k, v in rows[0].items()}
    train, test = load_folder(root, "train", 64), load_folder(root, "test", 64)
    pca_maps, pca_scores = PCABaseline().fit(train.images).score(test.images)
    pca = image_auroc(pca_scores, test.labels)
    with capsys.disabled():
        print(f"\nsynthetic textures 64x64: CFLOW image AUROC {metrics['image_auroc']:.3f}, pixel AUROC "
              f"{metrics['pixel_auroc']:.3f}, AUPRO {metrics['aupro']:.3f} | PCA baseline image AUROC {pca:.3f}, "
              f"pixel AUROC {pixel_auroc(pca_maps, test.masks):.3f}")
    assert metrics["pixel_auroc"] > 0.9
    assert metrics["image_auroc"] > pca
    with open(out / "scores.csv") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == len(test) and list(scores[0]) == ["name", "label", "score"]
    with h5py.File(out / "maps.h5") as h:
        assert h["maps"].shape == (len(test), 64, 64) and h["maps"].dtype == np.float32
        assert [n.decode() for n in h["names"][:]] == test.names
        np.testing.assert_allclose(h["scores"][:], [float(s["score"]) for s in scores], rtol=1e-5)
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 8 and all(p.stat().st_size > 1000 for p in overlays)
    worst = max(scores, key=lambda s: float(s["score"]))
    assert overlays[0].name.startswith("00_") and worst["name"].split("/")[1] in overlays[0].name


def toy_jet_images(rng: np.random.Generator, n: int, prongs: int) -> np.ndarray:
    """Toy 32x32 pT-fraction images around the leading prong: QCD-like jets have one hard prong and
    soft collinear radiation; top-like jets have three prongs of comparable pT."""
    y, x = np.mgrid[0:32, 0:32]
    images = np.zeros((n, 1, 32, 32), dtype=np.float32)
    for i in range(n):
        if prongs == 1:
            fractions = [rng.uniform(0.8, 0.95)]
            fractions.append(1 - fractions[0])
            places = [(16, 16), 16 + rng.exponential(3, 2) * rng.choice([-1, 1], 2)]
        else:
            fractions = rng.dirichlet([4, 3, 2])
            angle = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2])
            radius = rng.uniform(5, 9, 3)
            places = [(16, 16), *(16 + np.c_[radius[1:] * np.sin(angle[1:]), radius[1:] * np.cos(angle[1:])])]
        for f, (cy, cx) in zip(fractions, places, strict=True):
            images[i, 0] += f * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 2.0) / (2 * np.pi)
        images[i, 0] += 0.002 * rng.exponential(1, (32, 32)) * (rng.random((32, 32)) < 0.05)
    return images


@pytest.mark.slow
def test_toy_jet_images_top_scores_above_qcd(capsys):
    from darkflow.cflow.config import CflowConfig

    rng = np.random.default_rng(4)
    train = ImageSet(toy_jet_images(rng, 48, 1), np.zeros(48, np.int8), None, [f"qcd/{i}" for i in range(48)],
                     "jetimages", meta={"label": "qcd"})
    # the defaults with 2 epochs and without the autoencoder pre-training (a random He-initialised encoder),
    # to keep the test short
    config = CflowConfig(image_size=32, encoder={"pretrain_steps": 0}, training={"epochs": 2})
    model, _ = fit_cflow(train, config, progress=False)
    x = np.concatenate([toy_jet_images(rng, 40, 1), toy_jet_images(rng, 40, 3)])
    labels = np.r_[np.zeros(40), np.ones(40)].astype(np.int8)
    test = ImageSet(x, labels, None, [str(i) for i in range(80)], "jetimages")
    maps, scores = predict(model, x)
    auc = evaluate(maps, scores, test)["image_auroc"]
    pca = image_auroc(PCABaseline().fit(train.images).score(x)[1], labels)
    with capsys.disabled():
        print(f"\ntoy jet images 32x32 (QCD-like normal, top-like anomalous): CFLOW image AUROC {auc:.3f} | "
              f"PCA baseline {pca:.3f}")
    assert auc > 0.9 and auc > pca
