"""The ``D``-pass direction of an affine MADE layer, nflows' result bit for bit, with less work per pass.

The inverse of ``y = sigma(x) * x + mu(x)`` (``mu_i, sigma_i`` read only ``x_{<i}``) is found one feature per
pass: pass ``k`` runs the MADE on the features found so far and solves feature ``k``,
``x_k = (y_k - mu_k) / sigma_k`` (G. Papamakarios, T. Pavlakou, I. Murray, Masked Autoregressive Flow for
Density Estimation, NeurIPS 2017, arXiv:1705.07057, section 3.1). ``D`` sequential network passes are the
structural cost of this direction, here as in nflows and zuko. nflows' ``AutoregressiveTransform.inverse``
also, on every pass, multiplies each weight by its mask again, recomputes the context's contribution to every
hidden layer, recomputes every feature and takes a log-determinant; :class:`MaskedAffine` does the masks and the
context terms once per call and keeps feature ``k`` from pass ``k``. The masked weights of the features not
yet found are exactly zero, so every value is nflows', bit for bit.

The gradient is where this matters most. Through nflows' loop, the output reaches an early pass only through
the later ones, a product of up to ``D`` MADE Jacobians; near the identity start (weights ~1e-3) those
products fall below float32's normal range, and denormal arithmetic made the backward pass several times
slower than the forward. Here each feature leaves the loop at the pass that solves it, so the backward pass
follows the triangular dependence of the result itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from nflows.transforms import MaskedAffineAutoregressiveTransform
from nflows.transforms.made import MADE, MaskedResidualBlock
from torch import Tensor
from torch.nn import functional as F


def made_passes(made: MADE, context: Tensor | None) -> Callable[[Tensor], Tensor]:
    """``x -> made(x, context)`` for repeated calls with one ``context``: masked weights and context terms are
    computed here, once.

    Only the MADE that :class:`MaskedAffine` builds is supported: residual blocks, no batch norm, no dropout.

    Shapes:
        ``x`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D * M)`` (``M`` parameters per feature).
    """
    act = made.activation
    first = made.initial_layer
    w_first, b_first = first.weight * first.mask, first.bias
    c_first = act(made.context_layer(context)) if context is not None else None
    blocks = []
    for block in made.blocks:
        inner, outer = block.linear_layers
        c_block = block.context_layer(context) if context is not None else None
        blocks.append((inner.weight * inner.mask, inner.bias, outer.weight * outer.mask, outer.bias, c_block,
                       block.activation))
    last = made.final_layer
    w_last, b_last = last.weight * last.mask, last.bias

    def run(x: Tensor) -> Tensor:
        h = F.linear(x, w_first, b_first)
        if c_first is not None:
            h = h + c_first
        for w_in, b_in, w_out, b_out, c_block, block_act in blocks:
            t = F.linear(block_act(h), w_in, b_in)
            if c_block is not None:
                t = t + c_block
            h = h + F.linear(block_act(t), w_out, b_out)
        return F.linear(h, w_last, b_last)

    return run


class MaskedAffine(MaskedAffineAutoregressiveTransform):
    """nflows' ``MaskedAffineAutoregressiveTransform`` (same parameters and state dict) whose ``D``-pass
    :meth:`inverse` shares the per-call work between passes (:func:`made_passes`).

    Shapes:
        inverse: ``inputs`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D)``, ``logabsdet`` ``(B,)``.
    """

    def __init__(self, features: int, hidden_features: int, context_features: int | None = None,
                 num_blocks: int = 2) -> None:
        super().__init__(features=features, hidden_features=hidden_features, context_features=context_features,
                         num_blocks=num_blocks)
        made = self.autoregressive_net
        assert made.use_residual_blocks and all(
            isinstance(b, MaskedResidualBlock) and not b.use_batch_norm and b.dropout.p == 0 for b in made.blocks)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        run = made_passes(self.autoregressive_net, context)
        outputs = inputs.new_zeros(inputs.shape)
        columns: list[Tensor] = []
        scales: list[Tensor] = []
        for k in range(self.features):
            unconstrained_scale, shift = self._unconstrained_scale_and_shift(run(outputs))
            scales.append(F.softplus(unconstrained_scale[:, k]) + self._epsilon)
            columns.append((inputs[:, k] - shift[:, k]) / scales[-1])
            if k + 1 < self.features:
                outputs = torch.cat([torch.stack(columns, dim=1), outputs[:, k + 1 :]], dim=1)
        logabsdet = -torch.stack(scales, dim=1).log().sum(dim=1)
        return torch.stack(columns, dim=1), logabsdet
