"""Continuous normalizing flow (FFJORD): ``dz/dt = f(z, t, context)`` integrated with an ODE solver.

The change of variables of an ODE is ``d log|det dz(t)/dz(0)| / dt = tr(df/dz)`` (Chen et al. 2018), so the
log-determinant is integrated jointly with ``z``. The trace is exact or Hutchinson's estimate
``eps^T (df/dz) eps`` with one noise vector held fixed over the whole solve (Grathwohl et al. 2019).

Both traces are computed in forward mode through the MLP ``f``: the Jacobian ``df/dz`` (exact) or the
product ``(df/dz) eps`` (Hutchinson) is carried layer by layer next to the activations, as
``W_out diag(s'(h_L)) ... W_2 diag(s'(h_1)) W_1z``. This needs no ``torch.autograd.grad`` inside the solver,
so training through ``odeint`` needs only first-order autograd, and the exact trace costs one batched
``(B * D, H) x (H, H)`` product per hidden-to-hidden layer instead of ``D`` backward passes. With two hidden
layers (the default) the trace has a closed form, ``s'(h_1)^T K s'(h_2)`` with an ``(H, H)`` matrix ``K``
built from the weights once per evaluation, and the exact trace costs about as much as Hutchinson's.
Memory: the exact trace keeps ``(B, D, H)`` tangents per evaluation for the backward pass when
``num_layers >= 3`` (use ``adjoint=True`` or ``trace="hutchinson"`` for large ``B * D``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from darkflow.errors import ConfigError
from darkflow.flows.base import Flow, Sequential
from darkflow.flows.registry import register

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")
TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")
ACTIVATIONS = ("tanh", "softplus")


class ODEDynamics(nn.Module):
    """The velocity field ``f(z, t, context)``: an MLP on ``[z, t, context]`` with a smooth activation.

    Arguments:
        features: ``D``.
        context: ``C`` (0: none).
        hidden_features: ``H``, the width of every hidden layer.
        num_layers: the number of hidden layers (at least 1).
        activation: ``"tanh"`` or ``"softplus"``.

    Shapes:
        :meth:`velocity`: ``t`` scalar, ``z`` ``(B, D)``, ``bias`` ``(B, H)`` from :meth:`input_bias`,
        ``noise`` ``(B, D)`` or None -> ``f`` ``(B, D)``, ``tr(df/dz)`` (or its estimate) ``(B,)``.
    """

    def __init__(
        self, features: int, context: int, hidden_features: int, num_layers: int, activation: str
    ) -> None:
        super().__init__()
        self.features = features
        self.activation = activation
        sizes = [features + 1 + context] + [hidden_features] * num_layers + [features]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def input_bias(self, context: Tensor) -> Tensor:
        """The part of the first layer's pre-activation that is constant in time: ``(B, C) -> (B, H)``."""
        first = self.linears[0]
        return nn.functional.linear(context, first.weight[:, self.features + 1 :], first.bias)

    def _act(self, h: Tensor) -> tuple[Tensor, Tensor]:
        if self.activation == "tanh":
            a = torch.tanh(h)
            return a, 1 - a * a
        return nn.functional.softplus(h), torch.sigmoid(h)

    def velocity(self, t: Tensor, z: Tensor, bias: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        first, *hidden, last = self.linears
        w_z, w_t = first.weight[:, : self.features], first.weight[:, self.features]  # (H, D), (H,)
        a, slope = self._act(z @ w_z.T + t * w_t + bias)  # (B, H)
        slopes = [slope]  # s'(h_l), (B, H) each
        for layer in hidden:
            a, slope = self._act(layer(a))
            slopes.append(slope)
        f = last(a)  # (B, D)
        if noise is None and len(hidden) == 1:
            # tr(W_2 S_2 W_1 S_1 W_z) = tr(S_1 (W_z W_2) S_2 W_1) = s_1^T K s_2, K = W_1^T * (W_z W_2): O(B H^2).
            kernel = hidden[0].weight.T * (w_z @ last.weight)  # (H, H)
            return f, ((slopes[0] @ kernel) * slopes[1]).sum(-1)
        # Forward-mode tangents through the layers: the D rows of the Jacobian dh/dz (exact), (D, H) then
        # (B, D, H), or its product with the noise (Hutchinson), (B, H). Rows stay in the next-to-last axis so
        # that every layer is one (B * D, H) x (H, H) product.
        exact = noise is None
        tangent = w_z.T if exact else noise @ w_z.T
        for layer, slope in zip(hidden, slopes, strict=False):
            tangent = ((slope[:, None] if exact else slope) * tangent) @ layer.weight.T
        if exact:
            trace = (slopes[-1] * (tangent * last.weight).sum(-2)).sum(-1)
        else:
            trace = ((slopes[-1] * tangent) @ last.weight.T * noise).sum(-1)
        return f, trace


class _Field(nn.Module):
    """The augmented ODE ``d(z, log_det)/dt = (f, tr df/dz)`` handed to ``torchdiffeq``.

    In plain mode the time-constant input bias is computed once per solve; in adjoint mode it is
    recomputed at every evaluation from ``context`` so that the adjoint pass can differentiate it.
    """

    def __init__(self, dynamics: ODEDynamics, context: Tensor, noise: Tensor | None, adjoint: bool) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.context = context
        self.noise = noise
        self.adjoint = adjoint
        self.bias = None if adjoint else dynamics.input_bias(context)
        self.evaluations = 0

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        self.evaluations += 1
        bias = self.dynamics.input_bias(self.context) if self.adjoint else self.bias
        return self.dynamics.velocity(t, state[0], bias, self.noise)


class CNF(Flow):
    """One continuous normalizing flow block: ``z(T) = z(0) + int_0^T f(z(t), t, context) dt``.

    Arguments:
        features: ``D``.
        context: ``C`` (0: none); concatenated with ``z`` and ``t`` at the input of ``f``.
        hidden_features: width of the hidden layers of ``f``.
        num_layers: number of hidden layers of ``f``.
        activation: ``"tanh"`` or ``"softplus"`` (smooth, so the ODE has a unique smooth solution).
        time: the integration time ``T`` (> 0).
        method: a ``torchdiffeq`` solver; adaptive (``dopri5``, ...) or fixed-grid (needs ``step_size``).
        rtol, atol: the solver's tolerances (adaptive methods; fixed-grid methods ignore them).
        step_size: the step of a fixed-grid method (required there, refused by adaptive methods).
        adjoint: solve the backward pass with ``odeint_adjoint`` (memory O(1) in the number of steps).
        trace: ``"exact"`` or ``"hutchinson"``; the estimate is used in train and eval mode alike, so
            ``log_det`` is stochastic under ``"hutchinson"`` (unbiased, one noise draw per call).
        noise: the Hutchinson probe, ``"rademacher"`` or ``"gaussian"``.

    Shapes:
        forward: ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z(T)`` ``(B, D)``, ``log_det`` ``(B,)``.
        inverse: ``z(T)`` ``(B, D)`` -> ``z(0)`` ``(B, D)``, ``log |det dz(0)/dz(T)|`` ``(B,)`` (solved from T to 0).

    References:
        Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018, arXiv:1806.07366.
        Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
        Models", ICLR 2019, arXiv:1810.01367.
    """

    has_inverse = True

    def __init__(
        self,
        features: int,
        context: int = 0,
        hidden_features: int = 64,
        num_layers: int = 2,
        activation: str = "tanh",
        time: float = 1.0,
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        step_size: float | None = None,
        adjoint: bool = False,
        trace: str = "exact",
        noise: str = "rademacher",
    ) -> None:
        super().__init__(features, context)
        self.dynamics = ODEDynamics(features, context, hidden_features, num_layers, activation)
        self.time = float(time)
        self.method = method
        self.rtol, self.atol, self.step_size = rtol, atol, step_size
        self.adjoint = adjoint
        self.trace = trace
        self.noise = noise
        self.evaluations = 0  # evaluations of f in the last solve, forward pass only

    def probe(self, z: Tensor) -> Tensor:
        """Hutchinson's noise for one solve, ``(B, D)``: Rademacher signs or standard normal."""
        if self.noise == "gaussian":
            return torch.randn_like(z)
        return torch.randint_like(z, 2) * 2 - 1

    def _solve(self, z: Tensor, context: Tensor, t0: float, t1: float) -> tuple[Tensor, Tensor]:
        import torchdiffeq

        noise = self.probe(z) if self.trace == "hutchinson" else None
        field = _Field(self.dynamics, context, noise, self.adjoint)
        times = torch.tensor([t0, t1], dtype=z.dtype, device=z.device)
        options = {"step_size": self.step_size} if self.step_size is not None else None
        state = (z, z.new_zeros(z.shape[0]))
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=options)
        if self.adjoint:
            params = (*self.dynamics.parameters(), context)
            zs, log_dets = torchdiffeq.odeint_adjoint(field, state, times, adjoint_params=params, **kwargs)
        else:
            zs, log_dets = torchdiffeq.odeint(field, state, times, **kwargs)
        self.evaluations = field.evaluations
        return zs[-1], log_dets[-1]

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        return self._solve(z, context, 0.0, self.time)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        context = self.check(z, context)
        return self._solve(z, context, self.time, 0.0)

    def extra_repr(self) -> str:
        step = f", step_size={self.step_size}" if self.step_size is not None else ""
        return (
            f"{super().extra_repr()}, time={self.time}, method={self.method!r}, rtol={self.rtol}, atol={self.atol}"
            f"{step}, adjoint={self.adjoint}, trace={self.trace!r}"
            + (f", noise={self.noise!r}" if self.trace == "hutchinson" else "")
        )


def _choice(name: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"cnf: {name} must be one of {', '.join(map(repr, valid))}; got {value!r}")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"cnf: {name} must be a positive integer; got {value!r}")


def _positive_float(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"cnf: {name} must be a positive finite number; got {value!r}")


@register("cnf")
def cnf(
    features: int,
    context: int = 0,
    num_layers: int = 2,
    hidden_features: int = 64,
    num_blocks: int = 1,
    activation: str = "tanh",
    time: float = 1.0,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    step_size: float | None = None,
    adjoint: bool = False,
    trace: str = "exact",
    noise: str = "rademacher",
) -> Flow:
    """Continuous normalizing flow (FFJORD), ``num_blocks`` ODE blocks in sequence.

    Arguments:
        num_layers: number of hidden layers of the MLP ``f(z, t, context)`` of each block.
        hidden_features: width of those hidden layers.
        num_blocks: number of CNF blocks solved one after the other (each with its own ``f``).
        activation, time, method, rtol, atol, step_size, adjoint, trace, noise: see :class:`CNF`.

    Shapes:
        ``z`` ``(B, D)``, ``context`` ``(B, C)`` or None -> ``z_K`` ``(B, D)``, ``log_det`` ``(B,)``.

    References:
        Grathwohl et al., "FFJORD", ICLR 2019, arXiv:1810.01367; Chen et al., "Neural ODEs", NeurIPS 2018.

    Raises:
        ValueError: an option out of range, or a name that is not one of the valid ones (listed).
    """
    _positive_int("num_layers", num_layers)
    _positive_int("hidden_features", hidden_features)
    _positive_int("num_blocks", num_blocks)
    _choice("activation", activation, ACTIVATIONS)
    _positive_float("time", time)
    _choice("method", method, ADAPTIVE_METHODS + FIXED_METHODS)
    _positive_float("rtol", rtol)
    _positive_float("atol", atol)
    if method in FIXED_METHODS:
        if step_size is None:
            raise ConfigError(
                f"cnf: method {method!r} is a fixed-grid solver and needs step_size (> 0); got None"
            )
        _positive_float("step_size", step_size)
    elif step_size is not None:
        raise ConfigError(
            f"cnf: step_size is for the fixed-grid methods ({', '.join(FIXED_METHODS)}); "
            f"method {method!r} chooses its own steps from rtol and atol; got step_size={step_size!r}"
        )
    if not isinstance(adjoint, bool):
        raise ConfigError(f"cnf: adjoint must be True or False; got {adjoint!r}")
    _choice("trace", trace, TRACES)
    _choice("noise", noise, NOISES)
    options = dict(
        hidden_features=hidden_features, num_layers=num_layers, activation=activation, time=time, method=method,
        rtol=rtol, atol=atol, step_size=step_size, adjoint=adjoint, trace=trace, noise=noise,
    )  # fmt: skip
    blocks = [CNF(features, context, **options) for _ in range(num_blocks)]
    return blocks[0] if num_blocks == 1 else Sequential(blocks)
