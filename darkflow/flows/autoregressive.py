"""Masked autoregressive flows on nflows: MAF, IAF and the autoregressive rational-quadratic spline flow.

Direction convention. An nflows ``Transform`` maps data to noise: here ``z_K -> z_0``. A DarkFlow
:class:`~darkflow.flows.base.Flow` maps ``z_0 -> z_K`` (in the VAE, posterior samples to flowed samples),
so :class:`NflowsFlow` runs the nflows transform backwards: ``forward = transform.inverse`` and
``inverse = transform.forward``.

One masked layer (MADE) is cheap, one network pass, in the direction where its conditioner reads the
layer's input, and costs ``D`` sequential passes the other way. Hence:

- ``maf``: the MAF of Papamakarios et al. Its one-pass direction is density evaluation ``z_K -> z_0``
  (:meth:`Flow.inverse`); :meth:`Flow.forward` (sampling, ``z_0 -> z_K``) takes ``D`` passes per layer
  (:class:`~darkflow.flows.made_inverse.MaskedAffine`: the masks and context terms once per call).
- ``iaf``: the same layer used the other way round (``InverseTransform``): :meth:`Flow.forward`,
  ``z_0 -> z_K``, is one pass per layer, as the VAE needs; :meth:`Flow.inverse` takes ``D`` passes.
- ``nsf-ar``: rational-quadratic spline layers used IAF-style, one pass per layer in :meth:`Flow.forward`.

With ``permutation="none"`` every layer is lower triangular in the natural order of ``z``, and so is the
whole flow (``triangular = True``); with a permutation between layers it is not.
"""

from __future__ import annotations

import math

import torch
from nflows.transforms import (
    CompositeTransform,
    InverseTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    RandomPermutation,
    ReversePermutation,
    Transform,
)
from nflows.transforms.autoregressive import AutoregressiveTransform
from nflows.transforms.splines.rational_quadratic import DEFAULT_MIN_DERIVATIVE
from torch import Tensor, nn

from darkflow.flows.base import Flow, check_choice, check_float, check_int
from darkflow.flows.made_inverse import MaskedAffine
from darkflow.flows.registry import register

PERMUTATIONS = ("reverse", "random", "none")


class NflowsFlow(Flow):
    """A :class:`Flow` around an nflows ``Transform`` that maps ``z_K -> z_0`` (nflows' data to noise).

    Arguments:
        transform: the nflows transform, taking the context as ``context`` (None when ``C = 0``).
        features: ``D``.
        context: ``C`` (0: the transform gets ``context=None``).
        triangular: whether ``dz_K / dz_0`` is lower triangular in the natural order of ``z``.

    Shapes:
        forward: ``z_0`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_K`` ``(B, D)``, ``(B,)``.
        inverse: ``z_K`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_0`` ``(B, D)``, ``(B,)``.
    """

    has_inverse = True

    def __init__(
        self, transform: Transform, features: int, context: int = 0, triangular: bool = False
    ) -> None:
        super().__init__(features, context)
        self.transform = transform
        self.triangular = triangular

    def _context(self, z: Tensor, context: Tensor | None) -> Tensor | None:
        context = self.check(z, context)
        return context if self.context else None

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(z, self._context(z, context))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, self._context(z, context))


def _permutation(kind: str, features: int) -> Transform | None:
    if kind == "reverse":
        return ReversePermutation(features)
    if kind == "random":
        return RandomPermutation(features)
    return None


def _stack(layers: list[Transform], permutation: str, features: int) -> CompositeTransform:
    """``layers`` with a fixed permutation between consecutive ones."""
    stacked: list[Transform] = []
    for i, layer in enumerate(layers):
        if i:
            perm = _permutation(permutation, features)
            if perm is not None:
                stacked.append(perm)
        stacked.append(layer)
    return CompositeTransform(stacked)


def _identity_init(
    layer: AutoregressiveTransform, features: int, params: list[float]
) -> AutoregressiveTransform:
    """Start a MADE layer at the identity map.

    Without this, nflows' default initialisation makes a stack of affine layers explode in its ``D``-pass
    direction (``|z_K|`` ~ 1e29 for 5 layers, D = 16) and shrink in the other. The output layer gets
    tiny weights (as nflows' masked residual blocks) and biases ``params`` for each feature, the
    unconstrained parameters of the elementwise identity.
    """
    final = layer.autoregressive_net.final_layer
    with torch.no_grad():
        nn.init.uniform_(final.weight, -1e-3, 1e-3)
        final.bias.copy_(torch.tensor(params).repeat(features))  # (D * M,), feature-major as MADE's outputs
    return layer


def _check_common(
    features: int, context: int, num_layers: int, hidden_features: int, num_blocks: int, permutation: str
) -> None:
    check_int("features", features)
    check_int("context", context, minimum=0)
    check_int("num_layers", num_layers)
    check_int("hidden_features", hidden_features)
    check_int("num_blocks", num_blocks, minimum=0)
    check_choice("permutation", permutation, PERMUTATIONS)


def _made_affine(
    features: int, context: int, num_layers: int, hidden_features: int, num_blocks: int, permutation: str
) -> CompositeTransform:
    _check_common(features, context, num_layers, hidden_features, num_blocks, permutation)
    unit_scale = math.log(math.expm1(1.0 - 1e-3))  # nflows: scale = softplus(u) + 1e-3
    layers = [
        _identity_init(
            MaskedAffine(
                features=features,
                hidden_features=hidden_features,
                context_features=context or None,
                num_blocks=num_blocks,
            ),
            features,
            [unit_scale, 0.0],
        )
        for _ in range(num_layers)
    ]
    return _stack(layers, permutation, features)


@register("maf")
def maf(
    features: int,
    context: int = 0,
    num_layers: int = 5,
    hidden_features: int = 64,
    num_blocks: int = 2,
    permutation: str = "reverse",
) -> Flow:
    """Masked autoregressive flow: affine MADE layers, fast in the density direction ``z_K -> z_0``.

    Each layer maps ``z_K -> z_0`` in one MADE pass, ``u = (x - mu(x)) / sigma(x)`` with autoregressive
    ``mu, sigma`` (nflows ``MaskedAffineAutoregressiveTransform``, ``sigma = softplus + 1e-3``);
    :meth:`forward` (``z_0 -> z_K``) inverts it with ``D`` sequential passes per layer.

    Arguments:
        features: ``D``.
        context: ``C``, fed to every MADE (0: unconditional).
        num_layers: number of MADE layers.
        hidden_features: width of each MADE.
        num_blocks: masked residual blocks per MADE.
        permutation: ``"reverse"``, ``"random"`` (fixed) or ``"none"``, applied between layers.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        G. Papamakarios, T. Pavlakou, I. Murray, Masked Autoregressive Flow for Density Estimation,
        NeurIPS 2017 (arXiv:1705.07057).
    """
    transform = _made_affine(features, context, num_layers, hidden_features, num_blocks, permutation)
    return NflowsFlow(transform, features, context, triangular=permutation == "none" or num_layers == 1)


@register("iaf")
def iaf(
    features: int,
    context: int = 0,
    num_layers: int = 5,
    hidden_features: int = 64,
    num_blocks: int = 2,
    permutation: str = "reverse",
) -> Flow:
    """Inverse autoregressive flow: affine MADE layers, fast in the sampling direction ``z_0 -> z_K``.

    Each layer is ``z' = sigma(z) * z + mu(z)`` with autoregressive ``mu, sigma`` computed from its input in
    one MADE pass (nflows ``MaskedAffineAutoregressiveTransform`` wrapped in ``InverseTransform``);
    :meth:`inverse` takes ``D`` sequential passes per layer.

    Arguments:
        features: ``D``.
        context: ``C``, fed to every MADE (the ``h`` of Kingma et al.; 0: unconditional).
        num_layers: number of MADE layers.
        hidden_features: width of each MADE.
        num_blocks: masked residual blocks per MADE.
        permutation: ``"reverse"``, ``"random"`` (fixed) or ``"none"``, applied between layers.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, Improved Variational
        Inference with Inverse Autoregressive Flow, NeurIPS 2016 (arXiv:1606.04934).
    """
    transform = _made_affine(features, context, num_layers, hidden_features, num_blocks, permutation)
    return NflowsFlow(
        InverseTransform(transform), features, context, triangular=permutation == "none" or num_layers == 1
    )


@register("nsf-ar")
def nsf_ar(
    features: int,
    context: int = 0,
    num_layers: int = 5,
    hidden_features: int = 64,
    num_blocks: int = 2,
    num_bins: int = 8,
    tail_bound: float = 4.0,
    permutation: str = "reverse",
) -> Flow:
    """Autoregressive rational-quadratic neural spline flow, fast in the sampling direction ``z_0 -> z_K``.

    Each layer is an elementwise monotone rational-quadratic spline on ``[-tail_bound, tail_bound]``
    (identity outside: linear tails) whose knots come from a MADE reading the layer's input (nflows
    ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform``), used IAF-style: one MADE pass per layer in
    :meth:`forward`, ``D`` passes in :meth:`inverse`.

    Arguments:
        features: ``D``.
        context: ``C``, fed to every MADE (0: unconditional).
        num_layers: number of spline layers.
        hidden_features: width of each MADE.
        num_blocks: masked residual blocks per MADE.
        num_bins: spline bins per dimension.
        tail_bound: half-width of the spline interval.
        permutation: ``"reverse"``, ``"random"`` (fixed) or ``"none"``, applied between layers.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, Neural Spline Flows, NeurIPS 2019
        (arXiv:1906.04032).
    """
    _check_common(features, context, num_layers, hidden_features, num_blocks, permutation)
    check_int("num_bins", num_bins, minimum=2)
    check_float("tail_bound", tail_bound)
    unit_slope = math.log(math.expm1(1.0 - DEFAULT_MIN_DERIVATIVE))  # equal bins and unit slopes
    layers = [
        _identity_init(
            MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features=features,
                hidden_features=hidden_features,
                context_features=context or None,
                num_bins=num_bins,
                tails="linear",
                tail_bound=float(tail_bound),
                num_blocks=num_blocks,
            ),
            features,
            [0.0] * (2 * num_bins) + [unit_slope] * (num_bins - 1),
        )
        for _ in range(num_layers)
    ]
    transform = InverseTransform(_stack(layers, permutation, features))
    return NflowsFlow(transform, features, context, triangular=permutation == "none" or num_layers == 1)
