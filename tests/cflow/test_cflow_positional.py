"""The 2D positional encoding against values computed by hand."""

import math

import pytest
import torch

from darkflow.cflow.positional import positional_encoding_2d


def test_hand_values():
    # P = 8: channels 0-3 encode x with frequencies 1 and 10000^(-2/4) = 0.01, channels 4-7 encode y.
    pe = positional_encoding_2d(8, 2, 3)
    assert pe.shape == (8, 2, 3) and pe.dtype == torch.float32
    y, x = 1, 2
    expected = [0.9092974268, -0.4161468365, 0.0199986667, 0.9998000067,  # sin 2, cos 2, sin .02, cos .02
                0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004]  # sin 1, cos 1, sin .01, cos .01
    assert pe[:, y, x].tolist() == pytest.approx(expected, abs=1e-7)
    assert pe[:, 0, 0].tolist() == pytest.approx([0, 1, 0, 1, 0, 1, 0, 1], abs=1e-7)
    # the x half is constant along y, the y half along x
    assert torch.equal(pe[:4, 0], pe[:4, 1])
    assert torch.equal(pe[4:, :, 0], pe[4:, :, 2])


def test_cflow_ad_size():
    pe = positional_encoding_2d(128, 16, 4)
    half = 64
    w_last = 10000 ** (-62 / half)
    assert pe[62, 0, 3].item() == pytest.approx(math.sin(3 * w_last), abs=1e-7)
    assert pe[half + 63, 15, 0].item() == pytest.approx(math.cos(15 * w_last), abs=1e-7)


@pytest.mark.parametrize("size", [0, 6, 130, 3])
def test_bad_size(size):
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding_2d(size, 4, 4)
