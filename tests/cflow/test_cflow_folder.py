"""The MVTec AD folder loader and the synthetic image set, including bad inputs."""

import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from darkflow.cflow.folder import load_folder
from darkflow.cflow.load import load_images
from darkflow.cflow.synthetic import DEFECTS, texture, write_synthetic
from darkflow.errors import InputError


def test_layout_and_masks(synthetic_folder):
    train = load_folder(synthetic_folder, "train")
    assert train.images.shape == (8, 1, 32, 32) and train.masks is None and (train.labels == 0).all()
    assert 0 <= train.images.min() and train.images.max() <= 1
    test = load_images(synthetic_folder, "test")
    assert len(test) == 3 + 3 * len(DEFECTS)
    assert test.names[0].startswith("test/good/") and (test.labels[:3] == 0).all() and (test.labels[3:] == 1).all()
    assert not test.masks[:3].any() and all(m.any() for m in test.masks[3:])
    name = test.names[5]
    defect, stem = name.split("/")[1], Path(name).stem
    written = np.asarray(Image.open(synthetic_folder / "ground_truth" / defect / f"{stem}_mask.png")) > 0
    assert np.array_equal(test.masks[5], written)


def test_resize_keeps_masks_binary(synthetic_folder):
    test = load_folder(synthetic_folder, "test", image_size=20)
    assert test.images.shape[2:] == (20, 20) and test.masks.shape == (len(test), 20, 20)
    assert test.masks.dtype == bool and test.masks[3:].any(axis=(1, 2)).all()


def test_rgb_and_reproducible(tmp_path):
    a = write_synthetic(tmp_path / "a", size=16, n_train=2, n_test_good=1, n_test_defect=1, rgb=True, seed=5)
    b = write_synthetic(tmp_path / "b", size=16, n_train=2, n_test_good=1, n_test_defect=1, rgb=True, seed=5)
    assert (a / "train/good/000.png").read_bytes() == (b / "train/good/000.png").read_bytes()
    images = load_folder(a, "test")
    assert images.images.shape == (3, 3, 16, 16)
    image, mask = texture(np.random.default_rng(0), 32, "blobs")
    assert image.shape == mask.shape == (32, 32) and 0 < mask.mean() < 0.1


def test_bad_folders(tmp_path, synthetic_folder):
    with pytest.raises(InputError, match="train/good"):
        load_folder(tmp_path, "train")
    with pytest.raises(InputError, match="no such file"):
        load_images(tmp_path / "missing", "train")
    root = write_synthetic(tmp_path / "set", size=16, n_train=2, n_test_good=1, n_test_defect=1)
    (root / "ground_truth" / "blobs" / "000_mask.png").unlink()
    with pytest.raises(InputError, match="000_mask.png"):
        load_folder(root, "test")
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(root / "train" / "good" / "odd.png")
    with pytest.raises(InputError, match="different sizes.*image_size"):
        load_folder(root, "train")
    (root / "train" / "good" / "odd.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="odd.png: not a readable image"):
        load_folder(root, "train")
    empty = tmp_path / "empty"
    (empty / "train" / "good").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(empty / "train" / "good" / "a.png")
    with pytest.raises(InputError, match="no test/ folder"):
        load_folder(empty, "test")


def test_a_test_split_without_any_mask_has_image_labels_only(tmp_path):
    root = write_synthetic(tmp_path / "set", size=16, n_train=2, n_test_good=2, n_test_defect=2)
    with_masks = load_folder(root, "test")
    shutil.rmtree(root / "ground_truth")
    labels_only = load_folder(root, "test")
    assert labels_only.masks is None and with_masks.masks is not None
    np.testing.assert_array_equal(labels_only.labels, with_masks.labels)
    np.testing.assert_array_equal(labels_only.images, with_masks.images)
    assert "image-level labels only" in labels_only.meta["note"] and "note" not in with_masks.meta


def test_cflow_score_of_a_folder_without_masks_gives_image_metrics_and_one_line(tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from darkflow.cli import main

    root = write_synthetic(tmp_path / "set", size=32, n_train=8, n_test_good=4, n_test_defect=2, seed=3)
    shutil.rmtree(root / "ground_truth")
    run, out = tmp_path / "run", tmp_path / "scored"
    assert main(["cflow", "train", "--data", str(root), "--out", str(run), "--epochs", "1", "-q", "--image-size",
                 "32", "--set", "encoder.channels=[8, 16]", "--set", "encoder.pretrain_steps=5",
                 "--set", "decoder.blocks=2", "--set", "decoder.pos_dim=16", "--set", "training.fiber_batch=512"]) == 0
    capsys.readouterr()
    assert main(["cflow", "score", "--run", str(run), "--data", str(root), "--out", str(out), "--overlays", "2"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image-level labels only" in err[0] and "warning" in err[0]
    with open(out / "metrics.csv") as handle:
        (metrics,) = list(csv.DictReader(handle))
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    expected = roc_auc_score([int(r["label"]) for r in rows], [float(r["score"]) for r in rows])
    assert metrics["pixel_auroc"] == "" and metrics["aupro"] == ""
    assert float(metrics["image_auroc"]) == pytest.approx(expected, abs=1e-6)
    with h5py.File(out / "maps.h5") as h:
        assert "masks" not in h and h["maps"].shape == (len(rows), 32, 32)
