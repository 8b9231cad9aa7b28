"""The conditional coupling flow of CFLOW-AD's decoders (FrEIA's ``AllInOneBlock``, as CFLOW-AD uses it).

One block maps ``z -> z'``:

1. split ``z = (z_a, z_b)``, ``z_a`` the first ``ceil(D/2)`` features;
2. ``(s, t) = 0.1 * subnet([z_a, context])`` (the factor 0.1 of ``AllInOneBlock`` keeps the block near
   the identity at initialisation), ``z_b' = z_b * exp(clamp * tanh(s / clamp)) + t``: a soft clamp of
   the log-scale to ``(-clamp, clamp)``;
3. a learned global affine ``z' = z * scale + bias`` per dimension (``scale = 0.1 softplus_{1/2}(g)`` or
   ``exp(g)``, initialised to 1);
4. a fixed permutation: a random permutation of the features or a fixed random orthogonal matrix.

Given an :class:`~darkflow.flows.base.IndexedContext` (CFLOW-AD: ``P`` positional encodings for ``B`` fibers),
the context half of the subnet's first layer runs on the ``P`` distinct rows only, the same map at a fraction
of the cost (``C = 128`` of ``ceil(D/2) + C`` inputs).

``log |det|`` = ``sum(clamp * tanh(s / clamp)) + sum(log scale)``. Both directions cost one subnet pass
per block; the data flow is ``(B, D)`` matrix products only, for batches of ``B*H*W`` fibers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from nflows.transforms import RandomPermutation
from torch import Tensor, nn

from darkflow.flows.base import Flow, IndexedContext, Sequential, check_choice, check_float, check_int
from darkflow.flows.registry import register
from darkflow.tensor_state import tensor_state

PERMUTATIONS = ("random", "orthogonal")
GLOBAL_AFFINES = ("softplus", "exp")


class FixedOrthogonal(nn.Module):
    """A fixed random orthogonal map ``z -> z W^T`` (``|det W| = 1``), the soft permutation of FrEIA.

    ``W`` is drawn from the Haar measure in float64 and kept as the buffer ``weight``. Once cast to the
    module's dtype it is orthogonal only to that precision, so one Newton-Schulz step
    ``W (3 I - W^T W) / 2`` re-orthogonalises it in the working dtype (cached until the buffer changes);
    the log-determinant is then 0 and the inverse ``W^T`` to working precision.

    Arguments:
        features: ``D``.

    Shapes:
        ``z`` ``(B, D)`` -> ``(B, D)``.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        q, r = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))
        self.register_buffer("weight", (q * torch.sign(torch.diagonal(r))).to(torch.get_default_dtype()))
        self._cache: tuple[Tensor, int, Tensor] | None = None

    def matrix(self) -> Tensor:
        """``W`` orthogonal to the working precision, ``(D, D)``."""
        w = self.weight
        if self._cache is None or self._cache[0] is not w or self._cache[1] != w._version:
            with torch.inference_mode(False), torch.no_grad():
                self._cache = (w, w._version, 1.5 * w - 0.5 * w @ (w.T @ w))
        return self._cache[2]

    def forward(self, z: Tensor) -> Tensor:
        return F.linear(z, self.matrix())

    def inverse(self, z: Tensor) -> Tensor:
        return F.linear(z, self.matrix().T)

    def fold(self, scale: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """``((W diag(scale))^T, W bias)``: ``W (z * scale + bias)`` becomes one product (:meth:`apply`)."""
        w = self.matrix()
        return (w * scale).T, w @ bias

    def apply(self, z: Tensor, weight_t: Tensor, bias: Tensor) -> Tensor:
        """``z weight_t + bias`` with the output of :meth:`fold`."""
        return torch.addmm(bias, z, weight_t)


class _Permutation(nn.Module):
    """A fixed random permutation of the features (nflows ``RandomPermutation``); ``|det| = 1``."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.permutation = RandomPermutation(features)

    def forward(self, z: Tensor) -> Tensor:
        return self.permutation(z)[0]

    def inverse(self, z: Tensor) -> Tensor:
        return self.permutation.inverse(z)[0]

    def fold(self, scale: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """``scale`` and ``bias`` permuted: the permutation of ``z * scale + bias`` is :meth:`apply`."""
        order = self.permutation._permutation
        return scale[order], bias[order]

    def apply(self, z: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
        """The permutation of ``z``, times ``scale`` plus ``bias`` (the output of :meth:`fold`)."""
        return torch.addcmul(bias, z[:, self.permutation._permutation], scale)


class _Folded(NamedTuple):
    """The weights one :class:`CFlowBlock` pass uses (see :meth:`CFlowBlock._folded`)."""

    first_z_t: Tensor
    first_context: Tensor
    first_bias: Tensor
    last_weight_t: Tensor
    last_bias: Tensor
    log_global_scale: Tensor
    log_global_sum: Tensor
    perm_weight: Tensor
    perm_bias: Tensor


class CFlowBlock(Flow):
    """One conditional affine coupling block of CFLOW-AD (see the module docstring for the map).

    Arguments:
        features: ``D >= 2``.
        context: ``C`` (CFLOW-AD: the positional encoding, 128; 0: unconditional).
        hidden_features: width of the subnet ``Linear -> ReLU -> Linear``.
        clamp: bound of the soft-clamped log-scale (CFLOW-AD's ``clamp_alpha``).
        permutation: ``"random"`` (a permutation of the features) or ``"orthogonal"`` (a random rotation).
        global_affine: ``"softplus"`` or ``"exp"``, the activation of the global scale.

    Shapes:
        forward: ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D)``, ``log_det`` ``(B,)``.
        inverse: the same shapes.

    References:
        D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD: Real-Time Unsupervised Anomaly Detection with
        Localization via Conditional Normalizing Flows, WACV 2022 (arXiv:2107.12571); L. Ardizzone et al.,
        FrEIA ``AllInOneBlock``.
    """

    has_inverse = True
    indexed_context = True

    def __init__(
        self,
        features: int,
        context: int,
        hidden_features: int,
        clamp: float = 1.9,
        permutation: str = "random",
        global_affine: str = "softplus",
    ) -> None:
        super().__init__(features, context)
        self.split = features - features // 2
        self.clamp = float(clamp)
        self.subnet = nn.Sequential(
            nn.Linear(self.split + context, hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, 2 * (features - self.split)),
        )
        self.global_affine = global_affine
        init = 2.0 * math.log(math.expm1(5.0)) if global_affine == "softplus" else 0.0
        self.global_scale = nn.Parameter(torch.full((features,), init))
        self.global_bias = nn.Parameter(torch.zeros(features))
        self.permutation = (
            FixedOrthogonal(features) if permutation == "orthogonal" else _Permutation(features)
        )
        self._cache: tuple[tuple, _Folded] | None = None

    def _folded(self) -> _Folded:
        """The block's weights with the constants folded in: the factors 0.1 and ``1 / clamp`` in the last layer,
        the global affine in the permutation; the matrices transposed for ``rows @ weight`` products. Without
        gradients they are kept until a parameter changes."""
        if torch.is_grad_enabled():
            return self._fold()
        first, last = self.subnet[0], self.subnet[2]
        params = (first.weight, first.bias, last.weight, last.bias, self.global_scale, self.global_bias,
                  *self.permutation.buffers())
        key = tensor_state(params)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._fold())
        return self._cache[1]

    def _fold(self) -> _Folded:
        first, last = self.subnet[0], self.subnet[2]
        k = self.features - self.split
        fold = torch.cat([last.weight.new_full((k,), 0.1 / self.clamp), last.weight.new_full((k,), 0.1)])
        log_g = self._log_global_scale()
        perm_weight, perm_bias = self.permutation.fold(log_g.exp(), self.global_bias)
        return _Folded(first.weight[:, : self.split].T, first.weight[:, self.split :], first.bias,
                       (last.weight * fold[:, None]).T, last.bias * fold, log_g, log_g.sum(), perm_weight, perm_bias)

    def _coupling(self, z_a: Tensor, context: Tensor | IndexedContext, w: _Folded) -> tuple[Tensor, Tensor]:
        """``(clamp * tanh(s / clamp), t)`` with ``(s, t) = 0.1 * subnet([z_a, context])``; with an indexed
        context the context half of the first layer runs on the ``P`` distinct rows only."""
        if isinstance(context, IndexedContext):
            h = context.affine(z_a, w.first_z_t, context.project(self, w.first_context, w.first_bias))
        else:
            h = F.linear(torch.cat([z_a, context], dim=1), self.subnet[0].weight, w.first_bias)
        u, t = torch.addmm(w.last_bias, F.relu(h, inplace=True), w.last_weight_t).split(self.features - self.split, dim=1)
        return self.clamp * torch.tanh(u), t

    def _log_global_scale(self) -> Tensor:
        if self.global_affine == "softplus":
            return torch.log(0.1 * F.softplus(self.global_scale, beta=0.5))
        return self.global_scale

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        w = self._folded()
        z_a, z_b = z.split([self.split, self.features - self.split], dim=1)
        log_s, t = self._coupling(z_a, context, w)
        z = self.permutation.apply(torch.cat([z_a, torch.addcmul(t, z_b, log_s.exp())], dim=1), w.perm_weight,
                                   w.perm_bias)
        return z, log_s.sum(dim=1).add_(w.log_global_sum)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        w = self._folded()
        log_g = w.log_global_scale
        z = (self.permutation.inverse(z) - self.global_bias) * (-log_g).exp()
        z_a, z_b = z.split([self.split, self.features - self.split], dim=1)
        log_s, t = self._coupling(z_a, context, w)
        z = torch.cat([z_a, (z_b - t) * (-log_s).exp()], dim=1)
        return z, log_s.sum(dim=1).add_(w.log_global_sum).neg_()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, clamp={self.clamp}, global_affine={self.global_affine!r}"


@register("cflow-coupling")
def cflow_coupling(
    features: int,
    context: int = 0,
    num_layers: int = 8,
    hidden_features: int = 0,
    clamp: float = 1.9,
    permutation: str = "random",
    global_affine: str = "softplus",
) -> Flow:
    """CFLOW-AD's decoder: ``num_layers`` conditional affine coupling blocks (:class:`CFlowBlock`).

    Arguments:
        features: ``D >= 2`` (CFLOW-AD: the channels of one encoder level).
        context: ``C`` (CFLOW-AD: the positional encoding, 128; 0: unconditional).
        num_layers: number of coupling blocks (CFLOW-AD: 8).
        hidden_features: subnet width; 0 takes CFLOW-AD's ``2 * (ceil(D/2) + C)``.
        clamp: bound of the soft-clamped log-scale (CFLOW-AD: 1.9).
        permutation: ``"random"`` or ``"orthogonal"`` (CFLOW-AD's ``permute_soft=True``).
        global_affine: ``"softplus"`` (CFLOW-AD) or ``"exp"``.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD: Real-Time Unsupervised Anomaly Detection with
        Localization via Conditional Normalizing Flows, WACV 2022 (arXiv:2107.12571).
    """
    check_int("features", features, minimum=2)
    check_int("context", context, minimum=0)
    check_int("num_layers", num_layers)
    check_int("hidden_features", hidden_features, minimum=0)
    check_float("clamp", clamp)
    check_choice("permutation", permutation, PERMUTATIONS)
    check_choice("global_affine", global_affine, GLOBAL_AFFINES)
    hidden = hidden_features or 2 * (features - features // 2 + context)
    return Sequential(
        [CFlowBlock(features, context, hidden, clamp, permutation, global_affine) for _ in range(num_layers)]
    )
