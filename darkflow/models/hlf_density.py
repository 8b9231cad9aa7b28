"""Baseline: a normalizing-flow density of the standardized high-level features (score = -log p(h)).

The event is summarised by its high-level features (MET, HT, m_eff and the multiplicity of each object
type; MET_phi is left out), standardized by the run's :class:`~darkflow.models.hlf_scaler.HLFStandardizer`,
and a small flow maps them to a standard normal: ``-log p(h) = -log N(u) - log |det du/dh|``.

Dequantization. The multiplicities ``n_*`` are integers: a continuous density fitted to them would pile
up unbounded mass on the lattice. During training uniform noise ``U[0, 1)`` is added to every count
before standardization (Uria et al. 2013; Theis et al. 2016), so that the flow models the piecewise
density ``p(n + v)``, ``v`` in the unit cell; its integral over the cell is the probability of the count,
and the training objective is a lower bound on the discrete log-likelihood. At scoring (``sample=False``)
the count is placed at the cell centre ``n + 0.5``: the mean of the training noise, and a deterministic
point estimate of the cell's density ``P(n) ~ p(n + 0.5)`` (exact for a density linear across the cell).
The standardization is one fixed affine map, so its constant log-Jacobian is left out of the score.

References:
    B. Uria, I. Murray, H. Larochelle, "RNADE: The real-valued neural autoregressive density-estimator",
    NeurIPS 2013 (dequantization); L. Theis, A. van den Oord, M. Bethge, "A note on the evaluation of
    generative models", ICLR 2016.
    G. Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from darkflow.errors import InputError
from darkflow.flows import build_flow
from darkflow.models.hlf_scaler import HLFStandardizer

LOG_2PI = math.log(2 * math.pi)
SCORES = ("total",)
COUNT_PREFIX = "n_"
"""High-level features named ``n_*`` are object multiplicities (integers), the ones that are dequantized."""


class HLFFlowDensity(nn.Module):
    """-log p(h) of the standardized high-level features under a flow.

    Arguments:
        hlf_scaler: the fitted :class:`HLFStandardizer` (its kept columns are the flow's ``K'`` dimensions).
        flow, flow_options: a name of the flow registry and its options.
        dequantize: add ``U[0, 1)`` to the multiplicities in training and ``0.5`` at scoring (see the module
            docstring); False feeds the counts as they are.

    Shapes:
        forward: ``objects`` ``(B, R, F)`` and ``mask`` ``(B, R)`` (unused), ``hlf`` ``(B, K)`` raw
        -> ``{"total": (B,)}``.
    """

    def __init__(self, hlf_scaler: HLFStandardizer, flow: str = "maf", flow_options: dict | None = None,
                 dequantize: bool = True) -> None:
        super().__init__()
        self.hlf_scaler = hlf_scaler
        self.dim = hlf_scaler.out_features
        self.flow = build_flow(flow, features=self.dim, context=0, **(flow_options or {}))
        self.dequantize = dequantize
        counts = [hlf_scaler.names.index(n) for n in hlf_scaler.used if n.startswith(COUNT_PREFIX)]
        self.register_buffer("count_columns", torch.tensor(counts, dtype=torch.long))

    def features(self, hlf: Tensor, sample: bool) -> Tensor:
        """Standardized, dequantized features ``(B, K')`` of raw ``hlf`` rows ``(B, K)``."""
        h = hlf.to(self.hlf_scaler.mean.dtype)
        if self.dequantize and len(self.count_columns):
            shift = torch.zeros_like(h)
            cells = h.new_full((h.shape[0], len(self.count_columns)), 0.5)
            if sample:
                cells = torch.rand_like(cells)
            h = h + shift.index_copy(1, self.count_columns, cells)
        return self.hlf_scaler(h)

    def forward(self, objects: Tensor, mask: Tensor, sample: bool = True,
                hlf: Tensor | None = None) -> dict[str, Tensor]:
        if hlf is None:
            raise InputError("the hlf_density model scores the high-level features: pass hlf (B, K) rows")
        x = self.features(hlf, sample)
        # The density direction h -> u: the flow's inverse where it has one (one network pass for MAF).
        u, log_det = self.flow.inverse(x) if self.flow.has_inverse else self.flow(x)
        nll = 0.5 * (u**2 + LOG_2PI).sum(-1) - log_det
        return {"total": nll}
