"""Baseline: a normalizing-flow density of the whole standardized event (score = -log p(x)).

This is the approach that won the Dark Machines anomaly-score challenge: no latent space, the flow maps
the flattened standardized event array to a standard normal. Padding slots are exactly zero; a little
Gaussian noise on them during training keeps the density finite in those directions.

References:
    T. Aarrestad et al., "The Dark Machines Anomaly Score Challenge", SciPost Phys. 12 (2022) 043.
    G. Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from darkflow.flows import build_flow
from darkflow.models.scaler import Standardizer

LOG_2PI = math.log(2 * math.pi)
SCORES = ("total",)


class FlowDensity(nn.Module):
    """-log p(x) of standardized events under a flow.

    Shapes:
        forward: ``objects`` ``(B, R, F)`` raw, ``mask`` bool ``(B, R)`` -> ``{"total": (B,)}``.
    """

    def __init__(self, standardizer: Standardizer, type_codes: list[int] | None = None, flow: str = "maf",
                 flow_options: dict | None = None, noise: float = 0.05) -> None:
        super().__init__()
        self.standardizer = standardizer
        self.dim = len(standardizer.rows) * len(standardizer.out_features)
        self.flow = build_flow(flow, features=self.dim, context=0, **(flow_options or {}))
        self.noise = noise

    def forward(self, objects: Tensor, mask: Tensor, sample: bool = True,
                hlf: Tensor | None = None) -> dict[str, Tensor]:
        x = self.standardizer(objects, mask)
        if sample and self.noise:
            x = x + self.noise * torch.randn_like(x) * (~mask).unsqueeze(-1)
        flat = x.reshape(x.shape[0], -1)
        # The density direction x -> u: a flow's inverse where it has one (one network pass for MAF),
        # so that log p(x) = log N(u) + log |det du/dx|.
        u, log_det = self.flow.inverse(flat) if self.flow.has_inverse else self.flow(flat)
        nll = 0.5 * (u**2 + LOG_2PI).sum(-1) - log_det
        return {"total": nll}
