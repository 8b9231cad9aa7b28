"""The likelihood of the probabilistic decoder: per slot and raw feature, a distribution suited to the feature.

The decoder predicts, for every slot, the logit that the slot holds an object and two parameters per raw
feature; the reconstruction loss is the negative log-likelihood of the raw event, summed over slots and
features. A feature the latent code cannot compress gets a broad learned distribution and weighs little.

Families (on the raw values the event file stores):

* ``E``, ``pt``: log-normal on the value in GeV. Location ``m + s * a`` and scale ``s * (softplus(b) + FLOOR)``
  with the fitted standardizer's mean ``m`` and standard deviation ``s`` of ``log1p`` of the feature in that
  row as reference (moment-matched log-normal of the raw mean and std if the feature is not in
  ``standardize.log``). Values are clamped at :data:`TINY` GeV.
* ``phi``: von Mises on the angle in radians, location ``a``, concentration ``softplus(b) + FLOOR``.
* every other feature (``eta``, ``px``, ``py``, ``pz``, ``mass``, ``type``): Gaussian on the value the
  standardizer shifts and scales (raw ``eta``; ``log1p(mass)`` when ``mass`` is in ``standardize.log``), location
  ``m + s * a``, scale ``s * (softplus(b) + FLOOR)``: a Gaussian on the standardized value, up to the constant
  ``log s``.
* presence: Bernoulli with logit ``c`` for ``mask``, in every slot but the always-real MET row.

Features of real slots only enter the feature terms. In the MET row (``E = pt = MET``, ``eta = 0``, ``phi =
MET_phi``, as :meth:`darkflow.data_prep.layout.Layout.build` stores it) the features that are constant or a
copy of another get no term: ``eta``, ``pz``, ``mass`` and ``type``, and ``E`` when ``pt`` is a feature.

Parameters per slot (:attr:`EventLikelihood.params_per_slot` = 1 + 2F): ``[c, a_0, b_0, a_1, b_1, ...]`` in
the order of the raw features.

References:
    O. Cerri, T. Q. Nguyen, M. Pierini, M. Spiropulu, J.-R. Vlimant, "Variational Autoencoders for New
    Physics Mining at the Large Hadron Collider", JHEP 05 (2019) 036, arXiv:1811.10276.
    M. Abramowitz, I. A. Stegun, "Handbook of Mathematical Functions", 9.8.1 and 9.8.2 (log I_0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import logsigmoid, softplus

from darkflow.models.scaler import ANGLE_FEATURES, Standardizer

LOG_2PI = math.log(2 * math.pi)
FLOOR = 1e-2
"""Lower bound of the scales (in units of the reference scale) and of the von Mises concentration."""
TINY = 1e-6
"""Log-normal values are clamped at this many GeV (a zero MET stays finite)."""
LOGNORMAL = ("E", "pt")
MET_ROW_SKIPPED = ("eta", "pz", "mass", "type")

_I0_SMALL = (1.0, 3.5156229, 3.0899424, 1.2067492, 0.2659732, 0.0360768, 0.0045813)
_I0_LARGE = (0.39894228, 0.01328592, 0.00225319, -0.00157565, 0.00916281, -0.02057706, 0.02635537, -0.01647633,
             0.00392377)


def family(feature: str) -> str:
    """``"lognormal"``, ``"vonmises"`` or ``"normal"``: the distribution of a raw feature."""
    if feature in LOGNORMAL:
        return "lognormal"
    return "vonmises" if feature in ANGLE_FEATURES else "normal"


def _poly(y: Tensor, coefs: tuple[float, ...]) -> Tensor:
    out = torch.full_like(y, coefs[-1])
    for c in reversed(coefs[:-1]):
        out = out * y + c
    return out


def log_i0(x: Tensor) -> Tensor:
    """``log I_0(x)`` for ``x >= 0`` (Abramowitz-Stegun 9.8.1-2, relative error of ``I_0`` below 2e-7).

    Plain arithmetic, so that it exports to ONNX (``torch.special.i0e`` does not)."""
    small = x < 3.75
    xs = torch.where(small, x, torch.zeros_like(x))
    xl = torch.where(small, torch.full_like(x, 3.75), x)
    low = _poly((xs / 3.75) ** 2, _I0_SMALL).log()
    high = xl - 0.5 * xl.log() + _poly(3.75 / xl, _I0_LARGE).log()
    return torch.where(small, low, high)


def lognormal_log_prob(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log density of a log-normal (``log x ~ N(loc, scale)``) at ``x > 0``; elementwise."""
    log_x = x.log()
    return -log_x - scale.log() - 0.5 * LOG_2PI - 0.5 * ((log_x - loc) / scale) ** 2


def normal_log_prob(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log density of ``N(loc, scale^2)``; elementwise."""
    return -scale.log() - 0.5 * LOG_2PI - 0.5 * ((x - loc) / scale) ** 2


def von_mises_log_prob(x: Tensor, loc: Tensor, concentration: Tensor) -> Tensor:
    """Log density of a von Mises distribution of an angle; elementwise."""
    return concentration * torch.cos(x - loc) - LOG_2PI - log_i0(concentration)


def bernoulli_log_prob(y: Tensor, logits: Tensor) -> Tensor:
    """Log probability of ``y`` in {0, 1} under a Bernoulli with ``logits``; elementwise."""
    return y * logsigmoid(logits) + (1 - y) * logsigmoid(-logits)


class EventLikelihood(nn.Module):
    """Per-term log-likelihood and per-event negative log-likelihood of raw events (module docstring).

    Arguments:
        features: the raw feature names (the standardizer's ``features``).
        rows: the type of every row (``met`` for the MET row).

    Shapes:
        forward: ``params`` ``(B, R, 1 + 2F)``, ``objects`` ``(B, R, F)`` raw, ``mask`` bool ``(B, R)``, the
        fitted ``scaler`` -> ``(B,)``.
    """

    def __init__(self, features: list[str], rows: list[str]) -> None:
        super().__init__()
        self.features = list(features)
        self.families = [family(f) for f in self.features]
        self.params_per_slot = 1 + 2 * len(self.features)
        met = torch.tensor([r == "met" for r in rows])
        skipped = [f in MET_ROW_SKIPPED or (f == "E" and "pt" in self.features) for f in self.features]
        terms = ~(met.unsqueeze(1) & torch.tensor(skipped, dtype=torch.bool).unsqueeze(0))
        self.register_buffer("feature_terms", terms, persistent=False)
        self.register_buffer("presence_rows", ~met, persistent=False)

    def distributions(self, params: Tensor, scaler: Standardizer) -> list[tuple[str, Tensor, Tensor]]:
        """``(family, location, scale or concentration)`` per raw feature, each ``(B, R)``; the value each
        describes is :meth:`values`' column."""
        out = []
        for j, (name, fam) in enumerate(zip(self.features, self.families, strict=True)):
            a, b = params[..., 1 + 2 * j], params[..., 2 + 2 * j]
            if fam == "vonmises":
                out.append((fam, a, softplus(b) + FLOOR))
                continue
            m, s = self._reference(name, scaler)
            out.append((fam, m + s * a, s * (softplus(b) + FLOOR)))
        return out

    def _reference(self, name: str, scaler: Standardizer) -> tuple[Tensor, Tensor]:
        col = scaler.out_features.index(name)
        m, s = scaler.mean[:, col], scaler.std[:, col]
        if family(name) == "lognormal" and name not in scaler.log:
            var = torch.log1p((s / m.clamp_min(TINY)) ** 2)
            return m.clamp_min(TINY).log() - 0.5 * var, var.sqrt().clamp_min(FLOOR)
        return m, s

    def values(self, objects: Tensor, scaler: Standardizer, mask: Tensor | None = None) -> Tensor:
        """The value every family describes, ``(B, R, F)``: raw (clamped at TINY) for log-normal and von Mises,
        the standardizer's transformed column (before the shift and scale) for Gaussian. With a symmetry-aware
        standardizer, ``objects`` are already in its canonical orientation (:meth:`log_prob` does that)."""
        transformed = None
        cols = []
        for j, (name, fam) in enumerate(zip(self.features, self.families, strict=True)):
            if fam == "lognormal":
                cols.append(objects[..., j].clamp_min(TINY))
            elif fam == "vonmises":
                cols.append(objects[..., j])
            else:
                transformed = scaler.transform_raw(objects, mask) if transformed is None else transformed
                cols.append(transformed[..., scaler.out_features.index(name)])
        return torch.stack(cols, dim=-1)

    def log_prob(self, params: Tensor, objects: Tensor, mask: Tensor, scaler: Standardizer) -> Tensor:
        """Log-likelihood of every term ``(B, R, 1 + F)``: presence first, then the features; zero where a
        term does not count (features of padding slots, the MET row's presence and constant features).
        Angles and etas are those of the standardizer's canonical orientation (rotated, reflected) when it has one."""
        if scaler.symmetric:
            objects = scaler.canonical(objects, mask)
        values = self.values(objects, scaler, mask)
        logs = []
        for j, (fam, loc, scale) in enumerate(self.distributions(params, scaler)):
            fn = {"lognormal": lognormal_log_prob, "vonmises": von_mises_log_prob, "normal": normal_log_prob}[fam]
            logs.append(fn(values[..., j], loc, scale))
        features = torch.stack(logs, dim=-1)
        counts = mask.unsqueeze(-1) & self.feature_terms
        features = torch.where(counts, features, torch.zeros_like(features))
        presence = bernoulli_log_prob(mask.to(params.dtype), params[..., 0])
        presence = torch.where(self.presence_rows, presence, torch.zeros_like(presence))
        return torch.cat([presence.unsqueeze(-1), features], dim=-1)

    def forward(self, params: Tensor, objects: Tensor, mask: Tensor, scaler: Standardizer) -> Tensor:
        return -self.log_prob(params, objects, mask, scaler).sum(dim=(1, 2))
