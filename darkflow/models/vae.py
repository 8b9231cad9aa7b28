"""The VAE with a normalizing-flow posterior (DESIGN section 4).

The encoder gives the mean and log-variance of q_0(z|x) and a context vector h; z_0 ~ q_0 passes through
the flow, z_K = f(z_0 | h); the decoder maps z_K back to the standardized event (or, with
``reco_loss="probabilistic"``, to the parameters of a distribution of the raw event:
:mod:`darkflow.models.probabilistic`). The KL term is the single-sample estimate
log q_0(z_0|x) - log|det dz_K/dz_0| - log p(z_K): the flow's log-determinant enters the loss (the original
DarkFlow code computed it and then left it out).

With ``hlf_input`` the standardized high-level features join the encoder output before the heads, and the
decoder reconstructs them too (their term is part of ``reco``).

Scores: ``total`` = reco + beta kl, ``reco``, ``kl``, ``latent_nll`` = -log p(z_K), and ``combined``, the sum
over reco and kl of (score - median) / (84% quantile - 16% quantile), with the median and quantiles of the
SM validation events (:meth:`FlowVAE.fit_score_scales`, called after training; 0 and 1 before).

References:
    D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.
    O. Cerri et al., "Variational Autoencoders for New Physics Mining at the LHC", arXiv:1811.10276.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from darkflow.flows import build_flow
from darkflow.models.encoders import ConvEncoder, GraphEncoder
from darkflow.models.hlf_scaler import HLFStandardizer
from darkflow.models.losses import GaussianNLL, blocks_of, chamfer, masked_mse
from darkflow.models.probabilistic import EventLikelihood
from darkflow.models.scaler import Standardizer

LOG_2PI = math.log(2 * math.pi)
SCORES = ("total", "reco", "kl", "latent_nll", "combined")
COMBINED = ("reco", "kl")
"""The scores summed, each standardized, in ``combined``."""
RECO_LOSSES = ("mse", "chamfer", "gaussian", "probabilistic")


class FlowVAE(nn.Module):
    """Encoder, flow posterior and decoder over raw event arrays (standardization inside).

    Arguments:
        standardizer: the fitted :class:`Standardizer` (part of the model and of its state dict).
        type_codes: ``(R,)`` object-type code of every row (0 for rows whose type is in the ``type`` feature).
        encoder: ``"conv"`` or ``"graph"``.
        latent: dimension of z; ``context``: dimension of the flow context h.
        flow, flow_options: a name of :data:`darkflow.flows.FLOWS` and its options.
        reco_loss: ``"mse"``, ``"chamfer"``, ``"gaussian"`` (on the standardized event) or ``"probabilistic"``
            (negative log-likelihood of the raw event, :mod:`darkflow.models.probabilistic`).
        beta: weight of the KL term.
        hlf_input: take the high-level features as input and reconstruct them (Gaussian negative
            log-likelihood with a learned variance per feature with ``probabilistic``, squared error otherwise).
        hlf_scaler: the fitted :class:`HLFStandardizer`; required with ``hlf_input`` (then part of the state dict).
        default_score: the score ``darkflow score`` marks as the default (``scan``, ``flag`` and ``report`` use it
            unless told otherwise); one of :data:`SCORES`.

    Shapes:
        forward: ``objects`` ``(B, R, F)`` raw, ``mask`` bool ``(B, R)``, ``hlf`` ``(B, K)`` raw (required with
        ``hlf_input``) -> dict of ``(B,)`` scores (:data:`SCORES`).
    """

    def __init__(self, standardizer: Standardizer, type_codes: list[int], encoder: Literal["conv", "graph"] = "conv",
                 latent: int = 8, context: int = 16, flow: str = "none", flow_options: dict | None = None,
                 reco_loss: Literal["mse", "chamfer", "gaussian", "probabilistic"] = "mse", beta: float = 1.0,
                 channels: tuple[int, ...] = (32, 64), hidden: int = 128, hlf_input: bool = False,
                 hlf_scaler: HLFStandardizer | None = None, default_score: str = "total") -> None:
        super().__init__()
        if default_score not in SCORES:
            raise ValueError(f"unknown default_score {default_score!r}; valid: {', '.join(SCORES)}")
        self.default_score = default_score
        if encoder not in ("conv", "graph"):
            raise ValueError(f"unknown encoder {encoder!r}; valid: conv, graph")
        if reco_loss not in RECO_LOSSES:
            raise ValueError(f"unknown reco_loss {reco_loss!r}; valid: {', '.join(RECO_LOSSES)}")
        if hlf_input and hlf_scaler is None:
            raise ValueError("hlf_input needs the fitted hlf_scaler")
        self.standardizer = standardizer
        rows, feats = len(standardizer.rows), len(standardizer.out_features)
        self.rows, self.feats = rows, feats
        self.register_buffer("type_codes", torch.tensor(type_codes, dtype=torch.long))
        self.type_column = standardizer.features.index("type") if "type" in standardizer.features else -1
        self.encoder = (ConvEncoder(rows, feats, channels, hidden) if encoder == "conv"
                        else GraphEncoder(feats, channels, hidden))
        self.hlf_input = hlf_input
        self.hlf_scaler = hlf_scaler if hlf_input else None
        n_hlf = hlf_scaler.out_features if hlf_input else 0
        self.n_hlf = n_hlf
        self.mu = nn.Linear(hidden + n_hlf, latent)
        self.log_var = nn.Linear(hidden + n_hlf, latent)
        self.context_head = nn.Linear(hidden + n_hlf, context) if context else None
        self.flow = build_flow(flow, features=latent, context=context, **(flow_options or {}))
        self.reco_loss = reco_loss
        self.likelihood = (EventLikelihood(standardizer.features, standardizer.rows)
                           if reco_loss == "probabilistic" else None)
        self.slot_outputs = self.likelihood.params_per_slot if self.likelihood is not None else feats
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ELU(), nn.Linear(hidden, 2 * hidden), nn.ELU(),
                                     nn.Linear(2 * hidden, rows * self.slot_outputs + n_hlf))
        self.gaussian = GaussianNLL(feats) if reco_loss == "gaussian" else None
        self.hlf_gaussian = GaussianNLL(n_hlf) if hlf_input and reco_loss == "probabilistic" else None
        self.blocks = blocks_of(standardizer.rows)
        self.beta = beta
        self.flow_active: bool = True  # False: the flow is bypassed (flow warm-up)
        self.beta_scale: float = 1.0  # the KL weight is beta * beta_scale (KL warm-up)
        self.register_buffer("score_center", torch.zeros(len(COMBINED), dtype=torch.float32))
        self.register_buffer("score_width", torch.ones(len(COMBINED), dtype=torch.float32))

    def types(self, objects: Tensor) -> Tensor:
        """Object-type code of every slot, ``(B, R)``."""
        codes = self.type_codes.expand(objects.shape[0], -1)
        if self.type_column >= 0:
            codes = torch.where(codes > 0, codes, objects[..., self.type_column].round().long())
        return codes

    def reconstruction(self, out: Tensor, x: Tensor, objects: Tensor, mask: Tensor) -> Tensor:
        """Reconstruction loss ``(B,)`` of the event from the decoder's slot outputs ``(B, R, slot_outputs)``
        (``x``: the standardized event, ``objects``: the raw one)."""
        if self.reco_loss == "probabilistic":
            return self.likelihood(out, objects, mask, self.standardizer)
        if self.reco_loss == "chamfer":
            return chamfer(out, x, mask, self.blocks)
        if self.reco_loss == "gaussian":
            return self.gaussian(out, x, mask)
        return masked_mse(out, x, mask)

    def hlf_reconstruction(self, out: Tensor, target: Tensor) -> Tensor:
        """Reconstruction loss ``(B,)`` of the standardized high-level features ``(B, K')``."""
        if self.hlf_gaussian is not None:
            ones = torch.ones(target.shape[0], 1, dtype=torch.bool, device=target.device)
            return self.hlf_gaussian(out.unsqueeze(1), target.unsqueeze(1), ones)
        return ((out - target) ** 2).sum(-1)

    def _encode(self, x: Tensor, objects: Tensor, mask: Tensor, hlf: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Encoder output ``(B, hidden [+ K'])`` and the standardized high-level features (None without them)."""
        h = self.encoder(x, mask, self.types(objects))
        if not self.hlf_input:
            return h, None
        if hlf is None:
            raise ValueError("this model takes the high-level features as input: pass hlf (B, K)")
        hlf_x = self.hlf_scaler(hlf)
        return torch.cat([h, hlf_x.to(h.dtype)], dim=-1), hlf_x

    def posterior_mean(self, objects: Tensor, mask: Tensor, hlf: Tensor | None = None) -> Tensor:
        """Mean ``mu`` ``(B, D)`` of the base posterior q_0(z_0 | x) of raw events ``(B, R, F)``, ``(B, R)``."""
        x = self.standardizer(objects, mask)
        return self.mu(self._encode(x, objects, mask, hlf)[0])

    def forward(self, objects: Tensor, mask: Tensor, sample: bool = True,
                hlf: Tensor | None = None) -> dict[str, Tensor]:
        """Per-event losses; ``sample=False`` uses the posterior mean (deterministic scores)."""
        x = self.standardizer(objects, mask)
        h, hlf_x = self._encode(x, objects, mask, hlf)
        mu, log_var = self.mu(h), self.log_var(h).clamp(-12, 8)
        context = self.context_head(h) if self.context_head is not None else None
        eps = torch.randn_like(mu) if sample else torch.zeros_like(mu)
        z0 = mu + torch.exp(0.5 * log_var) * eps
        zk, log_det = self.flow(z0, context) if self.flow_active else (z0, 0)
        out = self.decoder(zk)
        slots = out[:, : self.rows * self.slot_outputs].view(-1, self.rows, self.slot_outputs)
        reco = self.reconstruction(slots, x, objects, mask)
        if hlf_x is not None:
            reco = reco + self.hlf_reconstruction(out[:, self.rows * self.slot_outputs :], hlf_x)
        log_q0 = -0.5 * (eps**2 + log_var + LOG_2PI).sum(-1)
        latent_nll = 0.5 * (zk**2 + LOG_2PI).sum(-1)
        kl = log_q0 - log_det + latent_nll
        scores = {"total": reco + self.beta * self.beta_scale * kl, "reco": reco, "kl": kl, "latent_nll": latent_nll}
        return scores | {"combined": self.combined(scores)}

    def combined(self, scores: dict[str, Tensor]) -> Tensor:
        """Sum over :data:`COMBINED` of ``(score - center) / width``, ``(B,)``, in the scores' dtype."""
        stacked = torch.stack([scores[k] for k in COMBINED], dim=-1)
        center, width = self.score_center.to(stacked.dtype), self.score_width.to(stacked.dtype)
        return ((stacked - center) / width).sum(-1)

    @torch.no_grad()
    def fit_score_scales(self, scores: dict[str, np.ndarray]) -> None:
        """Set the center (median) and width (84% minus 16% quantile; 1 when that is not positive) of every
        score of :data:`COMBINED` from the scores ``(N,)`` of the SM validation events (their finite values)."""
        center, width = [], []
        for key in COMBINED:
            values = np.asarray(scores[key], dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ValueError(f"no finite {key} score to fit the combined score on")
            low, mid, high = np.quantile(values, [0.16, 0.5, 0.84])
            center.append(mid)
            width.append(high - low if high > low else 1.0)
        self.score_center.copy_(torch.tensor(center, dtype=torch.float32))
        self.score_width.copy_(torch.tensor(width, dtype=torch.float32))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # model.pt files written before the combined score have no scales: they load with the defaults
        state_dict.setdefault(prefix + "score_center", torch.zeros(len(COMBINED), dtype=torch.float32))
        state_dict.setdefault(prefix + "score_width", torch.ones(len(COMBINED), dtype=torch.float32))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
