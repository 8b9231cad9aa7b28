"""The MVTec AD folder loader and the synthetic image set, including bad inputs."""

from pathlib import Path

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
