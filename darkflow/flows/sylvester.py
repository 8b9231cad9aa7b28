"""Sylvester flows with parameters amortized from the context (van den Berg et al. 2018).

``z' = z + Q R1 tanh(R2 Q^T z + b)`` with ``Q`` of orthonormal columns and ``R1, R2`` upper triangular; the
three families differ in how ``Q`` is made: Björck-orthogonalized (orthogonal), a product of Householder
reflections (householder), or a fixed permutation (triangular).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from darkflow.errors import ConfigError
from darkflow.flows.base import Flow, Sequential, check_int, hypernet
from darkflow.flows.planar import log_one_plus
from darkflow.flows.registry import register


def log_cosh(x: Tensor) -> Tensor:
    """``log cosh(x)`` without overflow. Shapes: any -> same."""
    x = x.abs()
    return x + F.softplus(-2 * x) - math.log(2)


def orthogonalize(a: Tensor, max_steps: int = 100) -> Tensor:
    """Orthonormal columns from ``a`` by Björck's iteration ``Q <- Q (3 I - Q^T Q) / 2``, to convergence.

    ``a`` is first divided by ``min(||a||_F, sqrt(||a||_1 ||a||_inf))``, a bound on its largest singular
    value, so its singular values lie in ``(0, 1]`` where the iteration converges. Near convergence
    ``||Q^T Q - I||`` goes to ``0.75 ||Q^T Q - I||^2`` per step, so one step taken after the error falls below
    ``sqrt(eps)`` brings it to rounding level. Samples leave the iteration as they converge.

    Shapes:
        ``a`` ``(B, D, M)``, ``M <= D`` -> ``Q`` ``(B, D, M)`` with ``Q^T Q = I_M``.
    """
    absolute = a.abs()
    bound = torch.minimum(
        torch.linalg.vector_norm(a, dim=(1, 2)),
        (absolute.sum(1).amax(-1) * absolute.sum(2).amax(-1)).sqrt(),
    )
    q = a / bound.clamp_min(torch.finfo(a.dtype).tiny)[:, None, None]
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    tolerance = math.sqrt(torch.finfo(a.dtype).eps)
    index = torch.arange(len(a), device=a.device)
    done_index, done = [], []
    for _ in range(max_steps):
        qtq = q.mT @ q  # (b, M, M), b the samples not converged yet
        converged = torch.linalg.matrix_norm(qtq.detach() - eye) <= tolerance
        q = q @ (1.5 * eye - 0.5 * qtq)
        if converged.all():
            break
        if converged.any():
            done_index.append(index[converged])
            done.append(q[converged])
            index, q = index[~converged], q[~converged]
    else:
        error = torch.linalg.matrix_norm(q.detach().mT @ q.detach() - eye).max().item()
        warnings.warn(
            f"Björck orthogonalization did not converge in {max_steps} steps (||Q^T Q - I|| = {error:.3g})",
            RuntimeWarning,
            stacklevel=2,
        )
    if not done:
        return q
    return torch.cat([*done, q]).index_select(0, torch.argsort(torch.cat([*done_index, index])))


class Sylvester(Flow):
    """One Sylvester layer ``z' = z + Q R1 tanh(R2 Q^T z + b)``; subclasses say what ``Q`` is.

    ``R1, R2`` are ``M x M`` upper triangular, their strict upper parts the upper and the (transposed) lower
    part of one amortized matrix, their diagonals ``tanh`` of amortized values, so that
    ``r1_ii r2_ii > -1 = -1 / sup tanh'`` and the layer is invertible. The log-determinant is
    ``sum_i log(1 + r1_ii r2_ii tanh'(x_i))``, ``x = R2 Q^T z + b``, with ``1 + tanh(a) tanh(c)`` computed as
    ``cosh(a + c) / (cosh(a) cosh(c))`` so that it does not cancel to 0 when both saturate.

    Arguments:
        features: ``D``.
        context: ``C`` (0: free parameters).
        rank: ``M``, the number of columns of ``Q``.
        q_outputs: amortized numbers per sample that make ``Q``.
        hidden_features: hidden units of the hypernetwork (0: linear).

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z'`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """

    def __init__(
        self, features: int, context: int, rank: int, q_outputs: int, hidden_features: int = 0
    ) -> None:
        super().__init__(features, context)
        self.triangular = features == 1
        self.rank = rank
        self.sizes = [rank * rank, rank, rank, rank, q_outputs]
        self.net = hypernet(context, sum(self.sizes), hidden_features)
        self.register_buffer("upper", torch.ones(rank, rank).triu(1), persistent=False)

    def rotations(self, params: Tensor) -> Tensor:  # pragma: no cover
        """What :meth:`rotate` and :meth:`unrotate` need to apply ``Q``, from its amortized numbers."""
        raise NotImplementedError

    def rotate(self, z: Tensor, q: Tensor) -> Tensor:  # pragma: no cover
        """``Q^T z``: ``(B, D) -> (B, M)``."""
        raise NotImplementedError

    def unrotate(self, y: Tensor, q: Tensor) -> Tensor:  # pragma: no cover
        """``Q y``: ``(B, M) -> (B, D)``."""
        raise NotImplementedError

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        full, d1, d2, b, q = self.net(context).split(self.sizes, dim=-1)
        full = full.unflatten(-1, (self.rank, self.rank))  # (B, M, M)
        q = self.rotations(q)
        x = self.rotate(z, q)
        x = (full * (self.upper.mT * x[:, :, None])).sum(1) + torch.tanh(d2) * x + b  # R2 Q^T z + b
        t = torch.tanh(x)  # (B, M)
        z = z + self.unrotate((full * (self.upper * t[:, None, :])).sum(2) + torch.tanh(d1) * t, q)
        one_plus_r1r2 = torch.exp(log_cosh(d1 + d2) - log_cosh(d1) - log_cosh(d2))
        return z, log_one_plus(t, one_plus_r1r2).sum(-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"


class OrthogonalSylvester(Sylvester):
    """Sylvester layer whose ``Q`` ``(D, M)`` is the Björck orthogonalization of ``I + A``, ``A`` amortized.

    The offset ``I`` (the first ``M`` columns of ``I_D``) starts ``Q`` near the identity and keeps the
    matrix well conditioned, so the iteration converges in a few steps where a random square matrix,
    with its small singular values, takes tens.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z'`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """

    def __init__(self, features: int, context: int = 0, num_ortho: int = 0, hidden_features: int = 0) -> None:
        num_ortho = num_ortho or features
        super().__init__(features, context, num_ortho, features * num_ortho, hidden_features)

    def rotations(self, params: Tensor) -> Tensor:
        eye = torch.eye(self.features, self.rank, dtype=params.dtype, device=params.device)
        return orthogonalize(eye + params.unflatten(-1, (self.features, self.rank)))  # (B, D, M)

    def rotate(self, z: Tensor, q: Tensor) -> Tensor:
        return (q * z[:, :, None]).sum(1)

    def unrotate(self, y: Tensor, q: Tensor) -> Tensor:
        return (q * y[:, None, :]).sum(2)


class HouseholderSylvester(Sylvester):
    """Sylvester layer whose ``Q = H_1 ... H_K`` ``(D, D)`` is a product of amortized Householder reflections.

    ``H_k = I - 2 v_k v_k^T / ||v_k||^2``; ``Q^T z`` and ``Q y`` apply the reflections to the vectors.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z'`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """

    def __init__(
        self, features: int, context: int = 0, num_householder: int = 8, hidden_features: int = 0
    ) -> None:
        super().__init__(features, context, features, num_householder * features, hidden_features)
        self.num_householder = num_householder

    def rotations(self, params: Tensor) -> Tensor:
        v = params.unflatten(-1, (self.num_householder, self.features))  # (B, K, D)
        return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)

    @staticmethod
    def reflect(x: Tensor, v: Tensor) -> Tensor:
        return x - 2 * (v * x).sum(-1, keepdim=True) * v

    def rotate(self, z: Tensor, q: Tensor) -> Tensor:
        for k in range(self.num_householder):
            z = self.reflect(z, q[:, k])
        return z

    def unrotate(self, y: Tensor, q: Tensor) -> Tensor:
        for k in reversed(range(self.num_householder)):
            y = self.reflect(y, q[:, k])
        return y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_householder={self.num_householder}"


class TriangularSylvester(Sylvester):
    """Sylvester layer whose ``Q`` is the identity or, with ``reverse``, the reversal permutation.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z'`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """

    def __init__(
        self, features: int, context: int = 0, reverse: bool = False, hidden_features: int = 0
    ) -> None:
        super().__init__(features, context, features, 0, hidden_features)
        self.reverse = reverse

    def rotations(self, params: Tensor) -> Tensor:
        return params

    def rotate(self, z: Tensor, q: Tensor) -> Tensor:
        return z.flip(-1) if self.reverse else z

    unrotate = rotate

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reverse={self.reverse}"


def _check(num_layers: int, hidden_features: int) -> None:
    check_int("num_layers", num_layers)
    check_int("hidden_features", hidden_features, minimum=0)


@register("sylvester-orthogonal")
def sylvester_orthogonal(
    features: int,
    context: int = 0,
    num_layers: int = 4,
    hidden_features: int = 0,
    num_ortho: int | None = None,
) -> Flow:
    """``num_layers`` orthogonal Sylvester layers (:class:`OrthogonalSylvester`).

    Arguments:
        num_ortho: ``M``, the orthonormal columns of ``Q``, ``1 <= M <= D`` (None: ``D``).

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_K`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """
    _check(num_layers, hidden_features)
    num_ortho = features if num_ortho is None else num_ortho
    if isinstance(num_ortho, bool) or not isinstance(num_ortho, int) or not 1 <= num_ortho <= features:
        raise ConfigError(
            f"num_ortho must be an integer in [1, features = {features}] or None, got {num_ortho!r}"
        )
    return Sequential(
        [OrthogonalSylvester(features, context, num_ortho, hidden_features) for _ in range(num_layers)]
    )


@register("sylvester-householder")
def sylvester_householder(
    features: int, context: int = 0, num_layers: int = 4, hidden_features: int = 0, num_householder: int = 8
) -> Flow:
    """``num_layers`` Householder Sylvester layers (:class:`HouseholderSylvester`).

    Arguments:
        num_householder: reflections per layer (8, as in the paper's experiments).

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_K`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """
    _check(num_layers, hidden_features)
    check_int("num_householder", num_householder)
    return Sequential(
        [HouseholderSylvester(features, context, num_householder, hidden_features) for _ in range(num_layers)]
    )


@register("sylvester-triangular")
def sylvester_triangular(
    features: int, context: int = 0, num_layers: int = 4, hidden_features: int = 0
) -> Flow:
    """``num_layers`` triangular Sylvester layers (:class:`TriangularSylvester`), ``Q`` alternating between the
    identity and the reversal permutation.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_K`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
        Inference", UAI 2018 (arXiv:1803.05649).
    """
    _check(num_layers, hidden_features)
    return Sequential(
        [TriangularSylvester(features, context, k % 2 == 1, hidden_features) for k in range(num_layers)]
    )
