"""Baseline: Deep SVDD, the one-class objective of Ruff et al. on the standardized event.

A network ``phi`` maps the flattened standardized event (optionally with the standardized high-level
features appended) to ``R^d``; the training loss and the anomaly score are both ``||phi(x) - c||^2``, the
squared distance to a centre ``c`` fixed before training (the One-Class Deep SVDD objective; its weight
decay is ``training.weight_decay``). Two of the paper's conditions against the trivial collapse
``phi = c`` are built in: ``phi`` has no bias terms (a bias could map every input to ``c``) and no
bounded activation (leaky ReLU, unbounded, between bias-free linear layers); and ``c`` is the mean of
``phi`` over the training events at initialization, never a trainable parameter. As in the authors'
code, a component of ``c`` within ``eps`` of zero is moved to ``+-eps`` (its sign; ``+eps`` for an exact
zero), since a network can reach a zero output unit by zeroing its weights.

``c`` is a buffer: it is saved in ``model.pt`` and in the Lightning checkpoints, so that ``--resume``
and ``darkflow score`` use the centre fitted once at the start of the run.

References:
    L. Ruff, R. Vandermeulen, N. Goernitz, L. Deecke, S. A. Siddiqui, A. Binder, E. Mueller, M. Kloft,
    "Deep One-Class Classification", ICML 2018 (Proposition 2 and 3; section 3.3).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from darkflow.errors import InputError
from darkflow.models.hlf_scaler import HLFStandardizer
from darkflow.models.scaler import Standardizer

SCORES = ("total",)


class DeepSVDD(nn.Module):
    """One-class Deep SVDD: score ``||phi(x) - c||^2``.

    Arguments:
        standardizer: the fitted :class:`Standardizer` of the event arrays.
        type_codes: object-type code per row (unused; the common model signature).
        hidden: widths of the hidden bias-free layers of ``phi``.
        rep_dim: ``d``, the dimension of the representation ``phi(x)``.
        hlf_input: append the standardized high-level features to the flattened event.
        eps: the centre's components closer than ``eps`` to zero are moved to ``+-eps``.
        negative_slope: the leaky ReLU's slope for negative inputs.
        hlf_scaler: the fitted :class:`HLFStandardizer` (needed when ``hlf_input``).

    Shapes:
        forward: ``objects`` ``(B, R, F)`` raw, ``mask`` bool ``(B, R)``, ``hlf`` ``(B, K)`` raw or None
        -> ``{"total": (B,)}``; :meth:`phi`: the same inputs -> ``(B, d)``.
    """

    def __init__(self, standardizer: Standardizer, type_codes: list[int] | None = None,
                 hidden: list[int] | tuple[int, ...] = (128, 64), rep_dim: int = 32, hlf_input: bool = False,
                 eps: float = 0.1, negative_slope: float = 0.01, hlf_scaler: HLFStandardizer | None = None) -> None:
        super().__init__()
        if hlf_input and hlf_scaler is None:
            raise InputError("svdd with hlf_input: true needs the run's fitted hlf_scaler")
        self.standardizer = standardizer
        self.hlf_input = hlf_input
        self.hlf_scaler = hlf_scaler if hlf_input else None
        self.eps = eps
        dim = len(standardizer.rows) * len(standardizer.out_features)
        dim += hlf_scaler.out_features if hlf_input else 0
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(dim, width, bias=False), nn.LeakyReLU(negative_slope)]
            dim = width
        layers.append(nn.Linear(dim, rep_dim, bias=False))
        self.net = nn.Sequential(*layers)
        self.register_buffer("center", torch.zeros(rep_dim))

    def inputs(self, objects: Tensor, mask: Tensor, hlf: Tensor | None = None) -> Tensor:
        """The network input ``(B, R * F' [+ K'])``: the flattened standardized event [and HLFs]."""
        x = self.standardizer(objects, mask).reshape(objects.shape[0], -1)
        if self.hlf_input:
            if hlf is None:
                raise InputError("this svdd model takes the high-level features (hlf_input: true): pass hlf")
            x = torch.cat([x, self.hlf_scaler(hlf).to(x.dtype)], dim=1)
        return x

    def phi(self, objects: Tensor, mask: Tensor, hlf: Tensor | None = None) -> Tensor:
        """The representation ``phi(x)`` ``(B, d)``."""
        return self.net(self.inputs(objects, mask, hlf))

    @torch.no_grad()
    def fit_center(self, batches: Iterable[dict[str, Tensor]]) -> Tensor:
        """Set ``c`` to the mean of ``phi`` over ``batches`` (dicts with ``objects``, ``mask`` and ``hlf``),
        with the eps-fix; returns ``c`` ``(d,)``."""
        was_training = self.training
        self.eval()
        total, count = torch.zeros_like(self.center, dtype=torch.float64), 0
        for batch in batches:
            rep = self.phi(batch["objects"], batch["mask"], batch.get("hlf"))
            total += rep.double().sum(0)
            count += rep.shape[0]
        self.train(was_training)
        if count == 0:
            raise InputError("cannot fit the Deep SVDD centre: no training events")
        c = total / count
        c = torch.where(c.abs() < self.eps, c.new_full(c.shape, self.eps).copysign(c), c)
        self.center.copy_(c.to(self.center.dtype))
        return self.center

    def forward(self, objects: Tensor, mask: Tensor, sample: bool = True,
                hlf: Tensor | None = None) -> dict[str, Tensor]:
        dist = (self.phi(objects, mask, hlf) - self.center).pow(2).sum(-1)
        return {"total": dist}
