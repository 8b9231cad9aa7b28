"""The contract every flow follows (DESIGN section 4).

A flow is an ``nn.Module`` mapping a batch of latent vectors ``z_0`` (and an optional context) to
``z_K`` and ``log |det dz_K / dz_0|``. Amortized flows take their parameters from the context through a
hypernetwork; the others take the context as a conditioning input. With ``context = 0`` a flow has no
context and its parameters are free.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darkflow.errors import ConfigError


class IndexedContext:
    """A context whose ``B`` rows repeat a few distinct ones, never built unless a flow needs it.

    CFLOW-AD conditions every fiber on the positional encoding of its position: a batch of ``B`` fibers has
    only ``P`` distinct contexts. A flow that sets ``indexed_context = True`` (:class:`CFlowBlock`) applies its
    first context layer to the ``P`` rows of the table and adds the result to the rows that use it; any other
    flow gets the dense ``(B, C)`` tensor from :meth:`Flow.check`.

    Arguments:
        table: the distinct contexts ``(P, C)``.
        index: the row of each sample ``(B,)`` (integer), or ``None``: the samples tile the table, sample ``b``
            uses row ``b mod P`` (``B`` a multiple of ``P``; e.g. every position of ``B / P`` images).
    """

    def __init__(self, table: Tensor, index: Tensor | None = None) -> None:
        self.table = table
        self.index = index
        self._projections: dict[object, tuple[Tensor, Tensor | None, Tensor]] = {}

    def project(self, key: object, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """The table after a linear layer, ``(P, H)``. Without gradients it is kept per ``key`` (a flow block) for
        as long as ``weight`` and ``bias`` are the same tensors, so that a decoder run on several chunks of
        fibers, or on many batches with a context kept between calls, projects the table once."""
        if torch.is_grad_enabled():
            return F.linear(self.table, weight, bias)
        hit = self._projections.get(key)
        if hit is None or hit[0] is not weight or hit[1] is not bias:
            hit = self._projections[key] = (weight, bias, F.linear(self.table, weight, bias))
        return hit[2]

    def dense(self, batch: int) -> Tensor:
        """The context as a ``(batch, C)`` tensor."""
        if self.index is None:
            return self.table.repeat(batch // self.table.shape[0], 1)
        return self.table[self.index]

    def affine(self, rows: Tensor, weight_t: Tensor, projected: Tensor) -> Tensor:
        """``rows @ weight_t`` plus each sample's row of ``projected`` in one fused product.

        Shapes: ``rows`` ``(B, K)``, ``weight_t`` ``(K, H)`` (a layer's weight, transposed), ``projected``
        ``(P, H)`` (the table after a layer) -> ``(B, H)``."""
        if self.index is None:
            p, h = projected.shape
            return torch.mm(rows, weight_t).view(-1, p, h).add_(projected).view(-1, h)
        return torch.addmm(projected[self.index], rows, weight_t)


class Flow(nn.Module):
    """Base class of every flow in :mod:`darkflow.flows`.

    Arguments:
        features: ``D``, the dimension of ``z``.
        context: ``C``, the dimension of the context (0: none).

    Shapes:
        forward: ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_K`` ``(B, D)``, ``log_det`` ``(B,)``.
        inverse (where defined): ``z_K`` ``(B, D)`` -> ``z_0`` ``(B, D)``, ``log |det dz_0 / dz_K|`` ``(B,)``.

    Attributes:
        triangular: True when ``dz_K / dz_0`` is lower triangular (in the natural order of ``z``).
        has_inverse: True when :meth:`inverse` is defined (analytically or numerically exactly).
    """

    has_inverse: bool = False
    indexed_context: bool = False

    def __init__(self, features: int, context: int = 0) -> None:
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ConfigError(f"features must be a positive integer, got {features!r}")
        if not isinstance(context, int) or context < 0:
            raise ConfigError(f"context must be a non-negative integer, got {context!r}")
        self.features = features
        self.context = context
        self.triangular = False

    def check(self, z: Tensor, context: Tensor | None) -> Tensor:
        """Validate shapes at the public boundary and return the context as ``(B, C)`` (an
        :class:`IndexedContext` stays one for flows with ``indexed_context``)."""
        if z.dim() != 2 or z.shape[1] != self.features:
            raise ConfigError(f"{type(self).__name__} expects z of shape (B, {self.features}), got {tuple(z.shape)}")
        if isinstance(context, IndexedContext):
            table, index = context.table, context.index
            rows = z.shape[0] if index is None else index.shape[0]
            if (table.dim() != 2 or table.shape[1] != self.context or rows != z.shape[0]
                    or (index is None and z.shape[0] % max(1, table.shape[0]))):
                raise ConfigError(f"{type(self).__name__} expects an indexed context table (P, {self.context}) "
                                  f"with one index per sample or P dividing {z.shape[0]}, got {tuple(table.shape)}")
            return context if self.indexed_context else context.dense(z.shape[0])
        if context is None:
            if self.context:
                raise ConfigError(f"{type(self).__name__} needs a context of shape (B, {self.context})")
            return z.new_zeros(z.shape[0], 0)
        if context.dim() != 2 or context.shape != (z.shape[0], self.context):
            raise ConfigError(
                f"{type(self).__name__} expects context of shape ({z.shape[0]}, {self.context}), got {tuple(context.shape)}"
            )
        return context

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no inverse in closed form")

    def extra_repr(self) -> str:
        return f"features={self.features}, context={self.context}"


class Identity(Flow):
    """The ``none`` flow: ``z_K = z_0``, ``log_det = 0``."""

    has_inverse = True

    def __init__(self, features: int, context: int = 0, num_layers: int = 0) -> None:
        super().__init__(features, context)
        self.triangular = True

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.check(z, context)
        return z, z.new_zeros(z.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.check(z, context)
        return z, z.new_zeros(z.shape[0])


class Sequential(Flow):
    """Flows applied one after the other; log-determinants add.

    Arguments:
        layers: flows with the same ``features`` and ``context``.
    """

    def __init__(self, layers: list[Flow]) -> None:
        super().__init__(layers[0].features, layers[0].context)
        self.layers = nn.ModuleList(layers)
        self.has_inverse = all(layer.has_inverse for layer in layers)
        self.triangular = all(layer.triangular for layer in layers)
        self.indexed_context = all(layer.indexed_context for layer in layers)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        total = None
        for layer in self.layers:
            z, log_det = layer(z, context)
            total = log_det if total is None else total + log_det
        return z, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        total = None
        for layer in reversed(self.layers):
            z, log_det = layer.inverse(z, context)
            total = log_det if total is None else total + log_det
        return z, total


def hypernet(context: int, outputs: int, hidden: int = 0, scale: float = 0.1) -> nn.Module:
    """Parameters from the context: ``(B, C) -> (B, outputs)``; free parameters when ``C = 0``.

    The last layer is scaled by ``scale``: small amortized parameters make a flow start near the
    identity.
    """
    if context == 0:
        return _Free(outputs)
    net = (nn.Sequential(nn.Linear(context, hidden), nn.ELU(), nn.Linear(hidden, outputs)) if hidden
           else nn.Linear(context, outputs))
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    return net


def check_int(name: str, value: object, minimum: int = 1) -> None:
    """Raise a :class:`~darkflow.errors.ConfigError` (a ``ValueError``) unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_float(name: str, value: object) -> None:
    """Raise a :class:`~darkflow.errors.ConfigError` (a ``ValueError``) unless ``value`` is a positive real number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    """Raise a :class:`~darkflow.errors.ConfigError` (a ``ValueError``) unless ``value`` is one of ``valid``."""
    if value not in valid:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")


class _Free(nn.Module):
    """Learned parameters broadcast to the batch (the hypernetwork of a context-free flow)."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(outputs) * 0.01)

    def forward(self, context: Tensor) -> Tensor:
        return self.value.expand(context.shape[0], -1)
