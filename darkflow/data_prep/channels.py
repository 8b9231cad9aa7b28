"""Event selections ("channels"), the Dark Machines ones built in (``data_prep/channels/*.yaml``).

References:
    T. Aarrestad et al., "The Dark Machines Anomaly Score Challenge", SciPost Phys. 12 (2022) 043.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import field_validator

from darkflow.config import StrictModel, read_yaml, validate
from darkflow.data_prep.chunk import check_object_types
from darkflow.data_prep.features import ht, m_eff
from darkflow.data_prep.jagged import Jagged


class Multiplicity(StrictModel):
    """At least ``min_count`` (and at most ``max_count``) objects of ``types`` with ``pt > pt_min``."""

    types: list[str]
    pt_min: float = 0.0
    min_count: int = 1
    max_count: int | None = None

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        return check_object_types(value)


class Channel(StrictModel):
    """An event selection on the selected objects; every cut given must pass (GeV)."""

    name: str = "custom"
    description: str = ""
    ht_min: float | None = None
    met_min: float | None = None
    met_over_ht_min: float | None = None
    meff_min: float | None = None
    multiplicities: list[Multiplicity] = []

    def describe(self) -> str:
        """The cuts in words, e.g. ``HT >= 600, MET >= 200, >= 4 jet/bjet with pT > 50``."""
        parts = [f"{label} >= {value:g}" for label, value in (
            ("HT", self.ht_min), ("MET", self.met_min), ("MET/HT", self.met_over_ht_min), ("m_eff", self.meff_min))
            if value is not None]
        for req in self.multiplicities:
            count = f">= {req.min_count}" if req.max_count is None else f"{req.min_count} to {req.max_count}"
            parts.append(f"{count} {'/'.join(req.types)} with pT > {req.pt_min:g}")
        return ", ".join(parts) or "no cut"

    def passes(self, objects: dict[str, Jagged], met: np.ndarray, hts: np.ndarray | None = None) -> np.ndarray:
        """Boolean ``(N,)``: which events pass.

        Shapes:
            objects: type -> jagged records ``(N, var)`` after the object cuts.
            met: ``(N,)``; ``hts``: HT ``(N,)`` when already computed.
        """
        keep = np.ones(len(met), dtype=bool)
        hts = ht(objects) if hts is None else hts
        if self.ht_min is not None:
            keep &= hts >= self.ht_min
        if self.met_min is not None:
            keep &= met >= self.met_min
        if self.met_over_ht_min is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(hts > 0, met / np.where(hts > 0, hts, 1.0), np.inf)
            keep &= ratio >= self.met_over_ht_min
        if self.meff_min is not None:
            keep &= m_eff(objects, met) >= self.meff_min
        for req in self.multiplicities:
            count = np.zeros(len(met), dtype=np.int64)
            for name in req.types:
                coll = objects[name]
                count += np.bincount(coll.event[coll["pt"] > req.pt_min], minlength=len(met))
            keep &= count >= req.min_count
            if req.max_count is not None:
                keep &= count <= req.max_count
        return keep


def load_channel(path: str | Path) -> Channel:
    """Read a channel selection from YAML."""
    data = read_yaml(path)
    data.setdefault("name", Path(path).stem)
    return validate(Channel, data, str(path))
