"""The texture benchmark set (``darkflow.cflow.textures``): disjoint crops of scikit-image's photographs, exact
masks of the pasted patches, byte-identical for the same arguments."""

import hashlib

import numpy as np
import pytest

pytest.importorskip("skimage")

from darkflow.cflow.folder import load_folder  # noqa: E402
from darkflow.cflow.textures import photograph, write_texture_set  # noqa: E402
from darkflow.errors import InputError  # noqa: E402


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_texture_set_layout_masks_and_crops(tmp_path):
    root = write_texture_set(tmp_path / "a", size=32, n_train=4, n_test_good=2, n_test_defect=3, seed=5)
    assert _digest(root) == _digest(write_texture_set(tmp_path / "b", size=32, n_train=4, n_test_good=2,
                                                      n_test_defect=3, seed=5))
    train, test = load_folder(root, "train"), load_folder(root, "test")
    assert train.images.shape == (4, 1, 32, 32) and test.images.shape == (5, 1, 32, 32)
    assert test.labels.tolist() == [0, 0, 1, 1, 1]
    area = test.masks.reshape(5, -1).mean(axis=1)
    assert (area[:2] == 0).all() and ((area[2:] > 0.005) & (area[2:] < 0.08)).all()
    brick = np.round(photograph("brick") * 255).astype(np.uint8)
    for image, rows in ((train.images[0, 0], (0, 256)), (test.images[0, 0], (256, 512))):
        pixels = np.round(image * 255).astype(np.uint8)
        windows = np.lib.stride_tricks.sliding_window_view(brick, (32, 32))  # every crop position
        hits = np.argwhere((windows == pixels).all(axis=(2, 3)))
        assert len(hits) >= 1 and all(rows[0] <= y and y + 32 <= rows[1] for y, _ in hits)  # disjoint halves
    defect = np.round(test.images[2, 0] * 255).astype(np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(brick[256:], (32, 32))
    outside = ~test.masks[2]
    assert ((windows == defect).all(axis=(2, 3))).sum() == 0  # the patch changed the crop
    assert ((windows == defect) | test.masks[2]).all(axis=(2, 3)).any()  # ... only inside its mask
    assert outside.any()


def test_bad_texture_arguments(tmp_path):
    with pytest.raises(InputError, match="unknown texture 'wood'"):
        write_texture_set(tmp_path / "x", normal="wood")
    with pytest.raises(InputError, match="must differ"):
        write_texture_set(tmp_path / "x", normal="grass", other="grass")
    with pytest.raises(InputError, match="between 16 and 256"):
        write_texture_set(tmp_path / "x", size=300)
    assert not (tmp_path / "x").exists()
