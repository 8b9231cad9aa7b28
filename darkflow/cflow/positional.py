"""The 2D sinusoidal positional encoding CFLOW-AD conditions its decoders on."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def positional_encoding_2d(size: int, height: int, width: int) -> Tensor:
    """CFLOW-AD's 2D positional encoding of every position of a ``height x width`` map.

    The first ``size/2`` channels encode the column ``x``, the last ``size/2`` the row ``y``; within each
    half, channel ``2i`` is ``sin(pos * w_i)`` and ``2i + 1`` is ``cos(pos * w_i)`` with the frequency
    ``w_i = 10000^(-2i / (size/2))``.

    Arguments:
        size: ``P``, a positive multiple of 4.
        height, width: the map's ``H`` and ``W``.

    Shapes:
        returns ``(P, H, W)`` float32.

    References:
        D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD, WACV 2022 (arXiv:2107.12571), eq. and code
        ``positionalencoding2d``; A. Vaswani et al., Attention Is All You Need, NeurIPS 2017.
    """
    if not isinstance(size, int) or size < 4 or size % 4:
        raise ValueError(f"positional-encoding size must be a positive multiple of 4, got {size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"map size must be positive, got {height}x{width}")
    half = size // 2
    freq = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(10000.0) / half))  # (half/2,)
    out = torch.zeros(size, height, width, dtype=torch.float64)
    x = torch.arange(width, dtype=torch.float64)[:, None] * freq  # (W, half/2)
    y = torch.arange(height, dtype=torch.float64)[:, None] * freq  # (H, half/2)
    out[0:half:2] = torch.sin(x).T[:, None, :]
    out[1:half:2] = torch.cos(x).T[:, None, :]
    out[half::2] = torch.sin(y).T[:, :, None]
    out[half + 1 :: 2] = torch.cos(y).T[:, :, None]
    return out.float()
