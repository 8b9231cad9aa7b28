"""Standardization of event arrays, fitted on the training Standard Model sample only.

Energies and momenta go through ``log1p``, the azimuth becomes (cos, sin) or stays wrapped, and every
resulting feature is shifted and scaled with a mean and standard deviation computed over the real
objects of each row type (all jets share one set, the MET row its own). Padding slots stay exactly
zero. The fitted scaler is a torch module (so that exported models standardize inside the graph) and
round-trips through JSON; it is saved with the model and applied to every sample scored later, signal
included (the original DarkFlow code fitted a second scaler on the signal sample itself).

Optionally the event is first brought to a canonical orientation, using the symmetries of a collision
event: a rotation about the beam axis (every azimuth measured from a reference object, ``rotate``) and
the reflection z -> -z (every pseudorapidity multiplied by the sign of the leading object's,
``reflect_eta``), and the reflection phi -> -phi (``reflect_phi``). Such canonical frames are standard in
jet and event physics with machine learning, e.g. G. Kasieczka et al., "The Machine Learning Landscape of
Top Taggers", SciPost Phys. 7 (2019) 014, arXiv:1902.09914 (section 2 on preprocessing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from darkflow.errors import InputError

LOG_FEATURES = ("E", "pt", "mass")
ANGLE_FEATURES = ("phi",)


class Standardizer(nn.Module):
    """Raw ``(B, R, F)`` event arrays to standardized ``(B, R, F')`` arrays.

    Arguments:
        features: names of the raw feature columns (the file's ``layout.features``).
        rows: the type of every row (``layout.rows``).
        phi: ``"cossin"`` (two features, F' = F + 1 per angle) or ``"wrap"`` (phi / pi) or ``"none"``.
        log: raw features that go through ``log1p`` first.
        mean, std: fitted statistics ``(R, F')`` (rows of one type share them); None before fitting.
        rotate: ``"none"``, ``"leading"`` or ``"met"``: every azimuth (MET row included) becomes
            ``phi - phi_ref`` wrapped to (-pi, pi], with ``phi_ref`` the azimuth of the highest-pT real object
            that is not the MET (the MET row where the event has no object) or of the MET row.
        reflect_eta: multiply every eta by the sign of the leading object's eta (+1 without object, or when 0).
        reflect_phi: after the rotation, flip the sign of every relative azimuth so that the next object after
            the reference has phi >= 0: the second-leading object (else the MET) for ``rotate="leading"``,
            the leading object for ``rotate="met"``.

    Shapes:
        forward: ``objects`` ``(B, R, F)``, ``mask`` bool ``(B, R)`` -> ``(B, R, F')``, zeros where masked.
    """

    def __init__(self, features: Sequence[str], rows: Sequence[str], phi: Literal["cossin", "wrap", "none"] = "cossin",
                 log: Sequence[str] = LOG_FEATURES, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None, rotate: Literal["none", "leading", "met"] = "none",
                 reflect_eta: bool = False, reflect_phi: bool = False) -> None:
        super().__init__()
        if phi not in ("cossin", "wrap", "none"):
            raise ValueError(f"phi must be 'cossin', 'wrap' or 'none', got {phi!r}")
        if rotate not in ("none", "leading", "met"):
            raise ValueError(f"rotate must be 'none', 'leading' or 'met', got {rotate!r}")
        self.features = list(features)
        self.rows = list(rows)
        self.phi = phi
        self.rotate, self.reflect_eta, self.reflect_phi = rotate, bool(reflect_eta), bool(reflect_phi)
        self._check_symmetries()
        self.met_row = self.rows.index("met") if "met" in self.rows else -1
        self.register_buffer("object_rows", torch.tensor([r != "met" for r in self.rows]), persistent=False)
        self.log = [f for f in log if f in self.features]
        self.out_features = self._out_names()
        shape = (len(self.rows), len(self.out_features))
        self.register_buffer("mean", torch.as_tensor(np.zeros(shape) if mean is None else mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.ones(shape) if std is None else std, dtype=torch.float32))
        self.register_buffer("log_mask", torch.tensor([f in self.log for f in self.features]))
        self.fitted = mean is not None

    def _out_names(self) -> list[str]:
        names = []
        for f in self.features:
            if f in ANGLE_FEATURES and self.phi == "cossin":
                names += [f"cos_{f}", f"sin_{f}"]
            else:
                names.append(f)
        return names

    def _check_symmetries(self) -> None:
        needs = (["pt", "phi"] if self.rotate != "none" else []) + (["pt", "eta"] if self.reflect_eta else [])
        missing = sorted({f for f in needs if f not in self.features})
        if missing:
            raise InputError(f"standardize.rotate / reflect_eta need the features {', '.join(missing)}, which the "
                             f"layout lacks (features: {', '.join(self.features)}); set rotate: none, reflect_eta: false")
        if self.rotate == "met" and "met" not in self.rows:
            raise InputError("standardize.rotate: met needs a MET row, which the layout lacks; use rotate: leading")
        if self.reflect_phi and self.rotate == "none":
            raise InputError("standardize.reflect_phi needs a rotation; set rotate: leading or met")

    @property
    def symmetric(self) -> bool:
        """Whether the event is brought to a canonical orientation before the encoding."""
        return self.rotate != "none" or self.reflect_eta

    def canonical(self, objects: Tensor, mask: Tensor) -> Tensor:
        """Raw ``(B, R, F)`` events with ``mask`` ``(B, R)`` rotated and reflected as configured; padding stays zero.

        Tensor ops only (topk, gather, where): works on any device, in any float dtype, under torch.export.
        """
        real = mask.bool()
        cols = list(objects.unbind(-1))
        pt = cols[self.features.index("pt")]
        key = torch.where(real & self.object_rows, pt, torch.full_like(pt, -torch.inf))
        top, order = key.topk(min(2, key.shape[1]), dim=1)  # the leading and second-leading objects, (B, 2)
        has = torch.isfinite(top)
        has_met = torch.full_like(has[:, 0], self.met_row >= 0)
        met = torch.full_like(order[:, 0], max(self.met_row, 0))
        if self.rotate != "none":
            j = self.features.index("phi")
            if self.rotate == "met":
                ref, partner, partner_ok = met, order[:, 0], has[:, 0]
            else:
                ref = torch.where(has[:, 0], order[:, 0], met)
                second = has[:, -1] if has.shape[1] > 1 else torch.zeros_like(has[:, 0])
                partner = torch.where(second, order[:, -1], met)
                partner_ok = has[:, 0] & (second | has_met)
            phi_ref = cols[j].gather(1, ref.unsqueeze(1))
            phi_ref = torch.where((has[:, 0] | has_met).unsqueeze(1), phi_ref, torch.zeros_like(phi_ref))
            rel = torch.pi - torch.remainder(torch.pi - (cols[j] - phi_ref), 2 * torch.pi)  # in (-pi, pi]
            if self.reflect_phi:
                flip = partner_ok.unsqueeze(1) & (rel.gather(1, partner.unsqueeze(1)) < 0)
                rel = torch.where(flip, -rel, rel)
            cols[j] = torch.where(real, rel, torch.zeros_like(rel))
        if self.reflect_eta:
            j = self.features.index("eta")
            negative = has[:, :1] & (cols[j].gather(1, order[:, :1]) < 0)
            cols[j] = torch.where(negative & real, -cols[j], cols[j])
        return torch.stack(cols, dim=-1)

    def transform_raw(self, objects: Tensor, mask: Tensor | None = None) -> Tensor:
        """Canonical orientation (needs ``mask`` ``(B, R)`` then), log1p and angle encoding, before the shift
        and scale: ``(B, R, F) -> (B, R, F')``."""
        if self.symmetric:
            if mask is None:
                raise ValueError("transform_raw needs the mask when rotate or reflect_eta is set")
            objects = self.canonical(objects, mask)
        x = torch.where(self.log_mask, torch.log1p(objects.clamp_min(0)), objects)
        cols = []
        for j, f in enumerate(self.features):
            col = x[..., j]
            if f in ANGLE_FEATURES and self.phi == "cossin":
                cols += [torch.cos(col), torch.sin(col)]
            elif f in ANGLE_FEATURES and self.phi == "wrap":
                cols.append(torch.remainder(col + torch.pi, 2 * torch.pi) / torch.pi - 1)
            else:
                cols.append(col)
        return torch.stack(cols, dim=-1)

    def forward(self, objects: Tensor, mask: Tensor) -> Tensor:
        x = (self.transform_raw(objects, mask) - self.mean) / self.std
        return x * mask.unsqueeze(-1)

    def fit(self, batches) -> Standardizer:
        """Fit mean and std per row type over the real objects of ``batches`` of ``(objects, mask)``."""
        kinds = sorted(set(self.rows))
        index = torch.tensor([kinds.index(r) for r in self.rows])
        n_out = len(self.out_features)
        count = torch.zeros(len(kinds), dtype=torch.float64)
        total = torch.zeros(len(kinds), n_out, dtype=torch.float64)
        square = torch.zeros(len(kinds), n_out, dtype=torch.float64)
        for objects, mask in batches:
            m = torch.as_tensor(mask)
            x = self.transform_raw(torch.as_tensor(objects, dtype=torch.float32), m).double()
            m = m.double()
            for k in range(len(kinds)):
                rows = index == k
                w = m[:, rows]
                count[k] += w.sum()
                total[k] += (x[:, rows] * w.unsqueeze(-1)).sum(dim=(0, 1))
                square[k] += (x[:, rows] ** 2 * w.unsqueeze(-1)).sum(dim=(0, 1))
        if (count == 0).all():
            raise ValueError("cannot fit the standardization: the training sample has no objects")
        mean = total / count.clamp_min(1).unsqueeze(-1)
        var = square / count.clamp_min(1).unsqueeze(-1) - mean**2
        std = var.clamp_min(0).sqrt()
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.mean.copy_(mean[index].float())
        self.std.copy_(std[index].float())
        self.fitted = True
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "rows": self.rows, "phi": self.phi, "log": self.log,
                "out_features": self.out_features, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "rotate": self.rotate, "reflect_eta": self.reflect_eta, "reflect_phi": self.reflect_phi}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        """Also reads dicts written before the symmetry options existed (no rotation, no reflection)."""
        return cls(data["features"], data["rows"], data["phi"], data["log"], np.array(data["mean"]),
                   np.array(data["std"]), data.get("rotate", "none"), data.get("reflect_eta", False),
                   data.get("reflect_phi", False))

    @classmethod
    def from_json(cls, text: str) -> Standardizer:
        return cls.from_dict(json.loads(text))
