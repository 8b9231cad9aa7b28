"""The VAE with a normalizing-flow posterior (DESIGN section 4).

The encoder gives the mean and log-variance of q_0(z|x) and a context vector h; z_0 ~ q_0 passes through
the flow, z_K = f(z_0 | h); the decoder maps z_K back to the standardized event. The KL term is the
single-sample estimate log q_0(z_0|x) - log|det dz_K/dz_0| - log p(z_K): the flow's log-determinant
enters the loss (the original DarkFlow code computed it and then left it out).

References:
    D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from darkflow.flows import build_flow
from darkflow.models.encoders import ConvEncoder, GraphEncoder
from darkflow.models.losses import GaussianNLL, blocks_of, chamfer, masked_mse
from darkflow.models.scaler import Standardizer

LOG_2PI = math.log(2 * math.pi)
SCORES = ("total", "reco", "kl", "latent_nll")


class FlowVAE(nn.Module):
    """Encoder, flow posterior and decoder over raw event arrays (standardization inside).

    Arguments:
        standardizer: the fitted :class:`Standardizer` (part of the model and of its state dict).
        type_codes: ``(R,)`` object-type code of every row (0 for rows whose type is in the ``type`` feature).
        encoder: ``"conv"`` or ``"graph"``.
        latent: dimension of z; ``context``: dimension of the flow context h.
        flow, flow_options: a name of :data:`darkflow.flows.FLOWS` and its options.
        reco_loss: ``"mse"``, ``"chamfer"`` or ``"gaussian"``; ``beta``: weight of the KL term.

    Shapes:
        forward: ``objects`` ``(B, R, F)`` raw, ``mask`` bool ``(B, R)`` -> dict of ``(B,)`` scores.
    """

    def __init__(self, standardizer: Standardizer, type_codes: list[int], encoder: Literal["conv", "graph"] = "conv",
                 latent: int = 8, context: int = 16, flow: str = "none", flow_options: dict | None = None,
                 reco_loss: Literal["mse", "chamfer", "gaussian"] = "mse", beta: float = 1.0,
                 channels: tuple[int, ...] = (32, 64), hidden: int = 128) -> None:
        super().__init__()
        if encoder not in ("conv", "graph"):
            raise ValueError(f"unknown encoder {encoder!r}; valid: conv, graph")
        if reco_loss not in ("mse", "chamfer", "gaussian"):
            raise ValueError(f"unknown reco_loss {reco_loss!r}; valid: mse, chamfer, gaussian")
        self.standardizer = standardizer
        rows, feats = len(standardizer.rows), len(standardizer.out_features)
        self.rows, self.feats = rows, feats
        self.register_buffer("type_codes", torch.tensor(type_codes, dtype=torch.long))
        self.type_column = standardizer.features.index("type") if "type" in standardizer.features else -1
        self.encoder = (ConvEncoder(rows, feats, channels, hidden) if encoder == "conv"
                        else GraphEncoder(feats, channels, hidden))
        self.mu = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.context_head = nn.Linear(hidden, context) if context else None
        self.flow = build_flow(flow, features=latent, context=context, **(flow_options or {}))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ELU(), nn.Linear(hidden, 2 * hidden), nn.ELU(),
                                     nn.Linear(2 * hidden, rows * feats))
        self.reco_loss = reco_loss
        self.gaussian = GaussianNLL(feats) if reco_loss == "gaussian" else None
        self.blocks = blocks_of(standardizer.rows)
        self.beta = beta
        self.flow_active: bool = True  # False: the flow is bypassed (flow warm-up)
        self.beta_scale: float = 1.0  # the KL weight is beta * beta_scale (KL warm-up)

    def types(self, objects: Tensor) -> Tensor:
        """Object-type code of every slot, ``(B, R)``."""
        codes = self.type_codes.expand(objects.shape[0], -1)
        if self.type_column >= 0:
            codes = torch.where(codes > 0, codes, objects[..., self.type_column].round().long())
        return codes

    def reconstruction(self, x_hat: Tensor, x: Tensor, mask: Tensor) -> Tensor:
        if self.reco_loss == "chamfer":
            return chamfer(x_hat, x, mask, self.blocks)
        if self.reco_loss == "gaussian":
            return self.gaussian(x_hat, x, mask)
        return masked_mse(x_hat, x, mask)

    def posterior_mean(self, objects: Tensor, mask: Tensor, hlf: Tensor | None = None) -> Tensor:
        """Mean ``mu`` ``(B, D)`` of the base posterior q_0(z_0 | x) of raw events ``(B, R, F)``, ``(B, R)``."""
        x = self.standardizer(objects, mask)
        return self.mu(self.encoder(x, mask, self.types(objects)))

    def forward(self, objects: Tensor, mask: Tensor, sample: bool = True,
                hlf: Tensor | None = None) -> dict[str, Tensor]:
        """Per-event losses; ``sample=False`` uses the posterior mean (deterministic scores)."""
        x = self.standardizer(objects, mask)
        h = self.encoder(x, mask, self.types(objects))
        mu, log_var = self.mu(h), self.log_var(h).clamp(-12, 8)
        context = self.context_head(h) if self.context_head is not None else None
        eps = torch.randn_like(mu) if sample else torch.zeros_like(mu)
        z0 = mu + torch.exp(0.5 * log_var) * eps
        zk, log_det = self.flow(z0, context) if self.flow_active else (z0, 0)
        x_hat = self.decoder(zk).view(-1, self.rows, self.feats)
        reco = self.reconstruction(x_hat, x, mask)
        log_q0 = -0.5 * (eps**2 + log_var + LOG_2PI).sum(-1)
        latent_nll = 0.5 * (zk**2 + LOG_2PI).sum(-1)
        kl = log_q0 - log_det + latent_nll
        return {"total": reco + self.beta * self.beta_scale * kl, "reco": reco, "kl": kl, "latent_nll": latent_nll}
