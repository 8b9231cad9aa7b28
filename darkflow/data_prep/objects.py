"""Object definitions: the cuts every object must pass and the overlap removal between types (DESIGN section 3).

The defaults match the generator's objects (``darkflow generate``): identification where the source has
one, relative isolation below 0.15 for leptons and photons, and jets removed within Delta R < 0.4 of a
selected lepton or photon, so that generated events and CMS NanoAOD are prepared alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from darkflow.config import StrictModel, read_yaml, validate
from darkflow.data_prep.chunk import KINEMATIC_FIELDS, OBJECT_TYPES, check_object_types
from darkflow.data_prep.jagged import Jagged

LEPTONS_AND_PHOTONS = ["eplus", "eminus", "muplus", "muminus", "photon"]


class ObjectCut(StrictModel):
    """Keep an object when ``pt > pt_min``, ``|eta| < abs_eta_max``, it passes the source's identification
    (``id: true``) and its relative isolation is below ``rel_iso_max`` (``null``: no isolation cut).

    ``id`` and ``rel_iso_max`` apply only where the source schema names an ID or isolation branch for the
    type (``data_prep/sources/*.yaml``); the event file records where they could not be applied.
    """

    pt_min: float = 0.0
    abs_eta_max: float = float("inf")
    id: bool = False
    rel_iso_max: float | None = Field(default=None, gt=0)


class OverlapRemoval(StrictModel):
    """Remove objects of the ``remove`` types that lie within ``delta_r`` of a selected object of the ``near``
    types (Delta R = sqrt(Delta eta^2 + Delta phi^2), Delta phi wrapped into [-pi, pi))."""

    remove: list[str]
    near: list[str]
    delta_r: float = Field(gt=0)

    @field_validator("remove", "near")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one object type")
        return check_object_types(value)

    @model_validator(mode="after")
    def _disjoint(self) -> OverlapRemoval:
        both = sorted(set(self.remove) & set(self.near), key=OBJECT_TYPES.index)
        if both:
            raise ValueError(f"{', '.join(both)} in both 'remove' and 'near' (an object would remove itself)")
        return self


_DEFAULTS: dict[str, dict[str, Any]] = {
    "jet": {"pt_min": 20.0, "abs_eta_max": 2.8, "id": True},
    "bjet": {"pt_min": 20.0, "abs_eta_max": 2.8, "id": True},
    "eplus": {"pt_min": 15.0, "abs_eta_max": 2.7, "id": True, "rel_iso_max": 0.15},
    "eminus": {"pt_min": 15.0, "abs_eta_max": 2.7, "id": True, "rel_iso_max": 0.15},
    "muplus": {"pt_min": 15.0, "abs_eta_max": 2.7, "id": True, "rel_iso_max": 0.15},
    "muminus": {"pt_min": 15.0, "abs_eta_max": 2.7, "id": True, "rel_iso_max": 0.15},
    "photon": {"pt_min": 20.0, "abs_eta_max": 2.37, "id": True, "rel_iso_max": 0.15},
}


class ObjectDefinitions(StrictModel):
    """Cuts per object type and the overlap removal (``data_prep/objects/*.yaml``).

    The kinematic defaults are the Dark Machines ones (jets and b-jets pT > 20, |eta| < 2.8; leptons
    pT > 15, |eta| < 2.7; photons pT > 20, |eta| < 2.37); keys a YAML file leaves out keep these defaults,
    also inside a type (``jet: {pt_min: 30}`` keeps |eta| < 2.8 and the jet ID). ``overlap_removal`` rules
    run in order, after the per-object cuts, each against the objects the previous steps kept.
    """

    jet: ObjectCut = ObjectCut(**_DEFAULTS["jet"])
    bjet: ObjectCut = ObjectCut(**_DEFAULTS["bjet"])
    eplus: ObjectCut = ObjectCut(**_DEFAULTS["eplus"])
    eminus: ObjectCut = ObjectCut(**_DEFAULTS["eminus"])
    muplus: ObjectCut = ObjectCut(**_DEFAULTS["muplus"])
    muminus: ObjectCut = ObjectCut(**_DEFAULTS["muminus"])
    photon: ObjectCut = ObjectCut(**_DEFAULTS["photon"])
    overlap_removal: list[OverlapRemoval] = [
        OverlapRemoval(remove=["jet", "bjet"], near=LEPTONS_AND_PHOTONS, delta_r=0.4)
    ]

    @model_validator(mode="before")
    @classmethod
    def _type_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for name, given in data.items():
                if name in _DEFAULTS and isinstance(given, dict):
                    data[name] = _DEFAULTS[name] | given
        return data

    def requirements(self, provided: dict[str, set[str]]) -> dict[str, dict[str, list[str]]]:
        """Per object type, the requirements ``applied`` and those asked for that the source does ``not_provide``.

        ``provided`` maps a type to the subset of ``{"id", "isolation"}`` its source has
        (:meth:`darkflow.data_prep.schema.SourceSchema.provides`; empty for the Dark Machines CSV).
        """
        out = {}
        for name in OBJECT_TYPES:
            cut: ObjectCut = getattr(self, name)
            have = provided.get(name, set())
            applied, missing = ["pt_min", "abs_eta_max"], []
            for key, asked in (("id", cut.id), ("isolation", cut.rel_iso_max is not None)):
                if asked:
                    (applied if key in have else missing).append("rel_iso_max" if key == "isolation" else key)
            if any(name in rule.remove for rule in self.overlap_removal):
                applied.append("overlap_removal")
            out[name] = {"applied": applied, "not_provided": missing}
        return out


def load_objects(path: str | Path) -> ObjectDefinitions:
    """Read object definitions from YAML; types and keys not given keep their defaults."""
    return validate(ObjectDefinitions, read_yaml(path), str(path))


def select_objects(objects: dict[str, Jagged], cuts: ObjectDefinitions) -> dict[str, Jagged]:
    """Apply the per-object cuts and the overlap removal to every type and sort each type by decreasing pT.

    ``id`` and ``rel_iso_max`` use the optional fields ``id`` (bool) and ``iso`` of a collection; a
    collection without them (its source has no such branch) does not get that requirement.

    Shapes:
        objects: type -> jagged ``(N, var)`` with fields ``E, pt, eta, phi`` (and optionally ``id``, ``iso``).
        returns: the same structure with fields ``E, pt, eta, phi`` only, objects failing removed, pT-descending.
    """
    out = {}
    for name in OBJECT_TYPES:
        coll = objects[name]
        cut: ObjectCut = getattr(cuts, name)
        keep = (coll["pt"] > cut.pt_min) & (np.abs(coll["eta"]) < cut.abs_eta_max)
        if cut.id and "id" in coll.fields:
            keep &= coll["id"]
        if cut.rel_iso_max is not None and "iso" in coll.fields:
            keep &= coll["iso"] < cut.rel_iso_max
        coll = Jagged(coll.counts, {k: coll[k] for k in KINEMATIC_FIELDS}, coll.event)
        out[name] = coll if keep.all() else coll.where(keep)
    for rule in cuts.overlap_removal:
        near = Jagged.concatenate([out[t] for t in rule.near])
        for name in rule.remove:
            close = near_any(out[name], near, rule.delta_r)
            if close.any():
                out[name] = out[name].where(~close)
    return {name: coll.sorted_by("pt") for name, coll in out.items()}


def near_any(coll: Jagged, others: Jagged, delta_r: float) -> np.ndarray:
    """Whether each object of ``coll`` lies within ``delta_r`` of any object of ``others`` in the same event.

    Every (object, other) pair of an event is formed flat, without a loop over events.

    Shapes:
        coll: ``(N, var)`` with ``M`` objects; others: ``(N, var)``; returns bool ``(M,)``.
    """
    n = len(coll["pt"])
    per_object = others.counts[coll.event]  # partners of every object of coll, (M,)
    total = int(per_object.sum())
    if total == 0:
        return np.zeros(n, dtype=bool)
    first_other = (np.cumsum(others.counts) - others.counts)[coll.event]
    first_pair = np.cumsum(per_object) - per_object
    obj = np.repeat(np.arange(n), per_object)
    other = np.arange(total) - np.repeat(first_pair - first_other, per_object)
    deta = coll["eta"][obj] - others["eta"][other]
    dphi = np.remainder(coll["phi"][obj] - others["phi"][other] + np.pi, 2 * np.pi) - np.pi
    close = np.hypot(deta, dphi) < delta_r
    return np.bincount(obj[close], minlength=n) > 0
