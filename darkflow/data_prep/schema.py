"""Source schemas: how a ROOT tree's branches map to object collections (DESIGN section 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import model_validator

from darkflow.config import StrictModel, read_yaml, validate

COLLECTION_NAMES = ("jet", "electron", "muon", "photon", "bjet", "eplus", "eminus", "muplus", "muminus")
"""Collections a schema may define: ``jet`` splits into jet/bjet by ``btag``, ``electron`` and ``muon``
split by ``charge``; the others are taken as that object type directly."""

SPLIT = {"electron": ("eplus", "eminus"), "muon": ("muplus", "muminus")}

_REQUIRED = {
    "ptetaphim": ("pt", "eta", "phi"),
    "ptetaphie": ("pt", "eta", "phi", "e"),
    "cartesian": ("px", "py", "pz", "e"),
    "ptphi": ("pt", "phi"),
}


class BTag(StrictModel):
    """A jet is a b-jet when ``branch > threshold``."""

    branch: str
    threshold: float


class Identification(StrictModel):
    """An object passes its identification when ``branch >= min``, or, with ``bits``, when every bit of
    ``bits`` is set in ``branch`` (``value & bits == bits``, e.g. NanoAOD ``Jet_jetId`` bit 2 = tight)."""

    branch: str
    min: float | None = None
    bits: int | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> Identification:
        if (self.min is None) == (self.bits is None):
            raise ValueError(f"id {self.branch!r}: give exactly one of 'min' or 'bits'")
        if self.bits is not None and self.bits < 1:
            raise ValueError(f"id {self.branch!r}: bits must be a positive mask, got {self.bits}")
        return self

    def passes(self, values: np.ndarray) -> np.ndarray:
        """Boolean ``(M,)``: which flat branch values ``(M,)`` pass."""
        if self.bits is not None:
            return (values.astype(np.int64) & self.bits) == self.bits
        return values >= self.min

    def describe(self) -> str:
        return f"{self.branch} & {self.bits} == {self.bits}" if self.bits is not None else f"{self.branch} >= {self.min:g}"


class Collection(StrictModel):
    """One object collection of a tree.

    ``kinematics`` picks the branches used: ``ptetaphim`` (``pt, eta, phi, mass``; ``mass`` may be a
    number, e.g. the electron mass, and defaults to 0), ``ptetaphie`` (``pt, eta, phi, e``) or
    ``cartesian`` (``px, py, pz, e``). ``id`` (identification working point) and ``isolation`` (a
    relative-isolation branch) are optional: object types whose source has none do not get that
    requirement (see :mod:`darkflow.data_prep.objects`).
    """

    kinematics: Literal["ptetaphim", "ptetaphie", "cartesian"]
    pt: str | None = None
    eta: str | None = None
    phi: str | None = None
    mass: str | float | None = None
    e: str | None = None
    px: str | None = None
    py: str | None = None
    pz: str | None = None
    btag: BTag | None = None
    charge: str | None = None
    id: Identification | None = None
    isolation: str | None = None

    @model_validator(mode="after")
    def _keys_for_kinematics(self) -> Collection:
        missing = [k for k in _REQUIRED[self.kinematics] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"kinematics {self.kinematics!r} needs {', '.join(missing)}")
        return self

    def branches(self) -> list[str]:
        """Every branch this collection reads."""
        names = [getattr(self, k) for k in ("pt", "eta", "phi", "mass", "e", "px", "py", "pz", "charge")]
        if self.btag is not None:
            names.append(self.btag.branch)
        if self.id is not None:
            names.append(self.id.branch)
        names.append(self.isolation)
        return [n for n in names if isinstance(n, str)]

    def object_types(self, name: str) -> tuple[str, ...]:
        """The object types collection ``name`` fills: ``jet`` gives jet and bjet (when b-tagged), ``electron``
        and ``muon`` both charges, any other collection its own type."""
        if name == "jet":
            return ("jet", "bjet") if self.btag is not None else ("jet",)
        return SPLIT.get(name, (name,))


class Met(StrictModel):
    """Missing transverse momentum: ``ptphi`` (``pt, phi``) or ``cartesian`` (``px, py``)."""

    kinematics: Literal["ptphi", "cartesian"]
    pt: str | None = None
    phi: str | None = None
    px: str | None = None
    py: str | None = None

    @model_validator(mode="after")
    def _keys_for_kinematics(self) -> Met:
        need = _REQUIRED["ptphi"] if self.kinematics == "ptphi" else ("px", "py")
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"met kinematics {self.kinematics!r} needs {', '.join(missing)}")
        return self

    def branches(self) -> list[str]:
        return [b for b in (self.pt, self.phi, self.px, self.py) if b is not None]


class SourceSchema(StrictModel):
    """How to read one kind of ROOT tree (``data_prep/sources/*.yaml``)."""

    name: str = "custom"
    tree: str = "Events"
    collections: dict[str, Collection]
    met: Met
    weight: str | None = None
    event_id: str | None = None

    @model_validator(mode="after")
    def _known_collections(self) -> SourceSchema:
        for name, coll in self.collections.items():
            if name not in COLLECTION_NAMES:
                raise ValueError(f"unknown collection {name!r}; valid: {', '.join(COLLECTION_NAMES)}")
            if name in ("electron", "muon") and coll.charge is None:
                raise ValueError(f"collection {name!r} needs a 'charge' branch to split by charge")
        return self

    def provides(self) -> dict[str, set[str]]:
        """For every object type, which of ``id`` and ``isolation`` the source provides."""
        out: dict[str, set[str]] = {}
        for name, coll in self.collections.items():
            have = {k for k in ("id", "isolation") if getattr(coll, k) is not None}
            for kind in coll.object_types(name):
                out[kind] = have
        return out

    def branches(self) -> list[str]:
        """Every branch the schema reads, in a stable order without repeats."""
        names = [b for c in self.collections.values() for b in c.branches()] + self.met.branches()
        names += [b for b in (self.weight, self.event_id) if b is not None]
        return list(dict.fromkeys(names))


def load_schema(path: str | Path) -> SourceSchema:
    """Read and validate a source schema YAML file."""
    data = read_yaml(path)
    data.setdefault("name", Path(path).stem)
    return validate(SourceSchema, data, str(path))
