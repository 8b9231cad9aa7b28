"""Standardization of the high-level features (the ``hlf`` dataset) used as a model input.

MET, HT and m_eff go through ``log1p``, multiplicities stay counts, every column is then shifted and
scaled with the mean and standard deviation of the training SM sample. ``MET_phi`` is left out: an
angle carries no information under the detector's azimuthal symmetry. Fitted once at training time,
saved in the model's metadata and applied to every sample scored later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

SKIPPED = ("MET_phi",)
LOG_COLUMNS = ("MET", "HT", "m_eff")


class HLFStandardizer(nn.Module):
    """``hlf`` rows ``(B, K)`` of an event file to standardized inputs ``(B, K')``.

    Arguments:
        names: the file's ``hlf_names`` (all K columns, in order).
        mean, std: fitted statistics ``(K',)`` of the kept columns; None before fitting.

    Shapes:
        forward: ``hlf`` ``(B, K)`` -> ``(B, K')`` with ``K'`` = ``len(self.used)``.
    """

    def __init__(self, names: Sequence[str], mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        super().__init__()
        self.names = list(names)
        self.used = [n for n in self.names if n not in SKIPPED]
        self.register_buffer("columns", torch.tensor([self.names.index(n) for n in self.used], dtype=torch.long))
        self.register_buffer("log_mask", torch.tensor([n in LOG_COLUMNS for n in self.used]))
        k = len(self.used)
        self.register_buffer("mean", torch.as_tensor(np.zeros(k) if mean is None else mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.ones(k) if std is None else std, dtype=torch.float32))

    @property
    def out_features(self) -> int:
        return len(self.used)

    def transform_raw(self, hlf: Tensor) -> Tensor:
        x = hlf[:, self.columns].to(torch.float32)
        return torch.where(self.log_mask, torch.log1p(x.clamp_min(0)), x)

    def forward(self, hlf: Tensor) -> Tensor:
        return (self.transform_raw(hlf) - self.mean) / self.std

    def fit(self, blocks: Iterable[np.ndarray]) -> HLFStandardizer:
        """Mean and standard deviation of every kept column over ``blocks`` of ``hlf`` rows ``(n, K)``."""
        count, total, square = 0, torch.zeros(len(self.used), dtype=torch.float64), None
        for block in blocks:
            x = self.transform_raw(torch.as_tensor(np.asarray(block))).double()
            count += len(x)
            total = total + x.sum(0)
            square = x.pow(2).sum(0) if square is None else square + x.pow(2).sum(0)
        if count == 0:
            raise ValueError("cannot fit the high-level-feature standardization: no training events")
        mean = total / count
        std = (square / count - mean**2).clamp_min(0).sqrt()
        self.mean.copy_(mean.float())
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).float())
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "used": self.used, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HLFStandardizer:
        return cls(data["names"], np.array(data["mean"]), np.array(data["std"]))
