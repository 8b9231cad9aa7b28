"""``darkflow jetimages``: events -> one image per event in an HDF5 file.

Two kinds of input:

* ROOT files with PF candidates (``PFCands_pt, _eta, _phi, _mass``: ``darkflow generate --constituents``
  or PFNano): the particles are clustered with anti-kT of radius R (:mod:`darkflow.jetimages.clustering`);
  the image is the hardest jet's constituents, preprocessed (:func:`darkflow.jetimages.preprocess.jet_image`).
* HDF5 event files from ``darkflow prepare`` (objects only, no constituents): the image is the whole event,
  every object's pT in its (delta eta, delta phi) pixel around the leading jet
  (:func:`darkflow.jetimages.preprocess.event_image`), over +-pi in both directions; the MET row is left out.

Output datasets: ``images`` float32 ``(N, 1, S, S)`` (each sums to 1), ``jet_pt, jet_eta, jet_phi,
jet_mass`` float32 ``(N,)`` (the leading jet), ``weight`` float64, ``event_id`` int64, ``process`` int16;
attributes ``label``, ``size``, ``radius``, ``image_kind`` (``jet`` or ``event``), ``process_names``,
``inputs``, ``n_read``, ``n_selected``, ``darkflow_version``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import field_validator

from darkflow import __version__
from darkflow.config import Name, StrictModel, at_least_one
from darkflow.errors import DataError, InputError
from darkflow.events import TYPE_CODES as ROW_CODES
from darkflow.events import EventFile
from darkflow.fileio import check_input, check_output, publish, temporary_path

PF_BRANCHES = ("PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass")
WEIGHT_BRANCHES = ("weight", "genWeight")
EVENT_WINDOW = float(np.pi)
"""Half-width in delta eta and delta phi of event-level images."""
JET_TYPES = ("jet", "bjet")
TYPE_CODES = {name: ROW_CODES[name] for name in JET_TYPES}
"""Codes of jets in the ``type`` feature of mixed layouts (``data_prep/layouts/single_list.yaml``)."""
CHUNK_EVENTS = 1024


class JetImagesConfig(StrictModel):
    """Options of ``darkflow jetimages``."""

    inputs: Annotated[list[Name], at_least_one("give at least one ROOT file with PF candidates or prepared .h5 event file")]
    out: Name
    size: int = 32
    radius: float = 0.8
    max_events: int | None = None
    label: str | None = None
    jet_pt_min: float = 20.0
    jet_pt_max: float | None = None
    jet_abs_eta_max: float | None = None
    chunk_size: int = 20_000

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if not 4 <= value <= 1024:
            raise ValueError("must be between 4 and 1024 pixels")
        return value

    @field_validator("radius", "jet_pt_min")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("max_events", "chunk_size")
    @classmethod
    def _count(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value


@dataclass
class Batch:
    """Images of a chunk of events with their leading-jet kinematics and bookkeeping (all ``(n, ...)``)."""

    images: np.ndarray
    jets: np.ndarray
    weight: np.ndarray
    event_id: np.ndarray
    process: np.ndarray
    n_read: int


@dataclass
class JetImagesResult:
    """What ``darkflow jetimages`` wrote."""

    out: Path
    n_read: int
    n_selected: int
    image_kind: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        return [f"wrote {self.out}: {self.n_selected} {self.image_kind} images of {self.n_read} events "
                f"({self.n_read / max(self.seconds, 1e-9):.0f} events/s)"]


class _Writer:
    """Resizable, chunked HDF5 datasets in a temporary file, renamed when complete."""

    def __init__(self, path: Path, size: int, inputs: list[Path]) -> None:
        import h5py

        self.path, self.n = check_output(path, inputs), 0
        self.tmp = temporary_path(self.path)
        try:
            self.file = h5py.File(self.tmp, "w")
            specs = {"images": ((1, size, size), np.float32), "jet_pt": ((), np.float32),
                     "jet_eta": ((), np.float32), "jet_phi": ((), np.float32), "jet_mass": ((), np.float32),
                     "weight": ((), np.float64), "event_id": ((), np.int64), "process": ((), np.int16)}
            for name, (shape, dtype) in specs.items():
                self.file.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                         chunks=(CHUNK_EVENTS, *shape))
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def append(self, batch: Batch) -> None:
        n = len(batch.images)
        columns = {"images": batch.images[:, None], "weight": batch.weight, "event_id": batch.event_id,
                   "process": batch.process}
        columns |= {f"jet_{k}": batch.jets[:, i] for i, k in enumerate(("pt", "eta", "phi", "mass"))}
        for name, values in columns.items():
            dset = self.file[name]
            dset.resize(self.n + n, axis=0)
            dset[self.n:] = values
        self.n += n

    def close(self, attrs: dict) -> None:
        for key, value in attrs.items():
            self.file.attrs[key] = value
        self.file.close()
        publish(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _check_finite(values: np.ndarray, path: Path, what: str) -> None:
    if not np.isfinite(values).all():
        raise DataError(f"{path}: {what} holds NaN or inf; fix the input or drop those events")


def _root_batches(path: Path, process: int, config: JetImagesConfig, budget: int) -> Iterator[Batch]:
    """Leading-jet images of a ROOT file with PF candidates, ``config.chunk_size`` events at a time."""
    import awkward as ak

    from darkflow.data_prep.root_reader import branch_names, open_tree
    from darkflow.jetimages.clustering import LeadingJet
    from darkflow.jetimages.preprocess import jet_image

    tree = open_tree(path, "Events")
    names = branch_names(tree)
    missing = [b for b in PF_BRANCHES if b not in names]
    if missing:
        raise InputError(f"{path}: no branch {missing[0]!r}; jet images need the PF candidates: generate the "
                         "events with `constituents` (darkflow generate) or use a PFNano file (PFCands_pt, _eta, _phi, "
                         "_mass)")
    weight = next((b for b in WEIGHT_BRANCHES if b in names), None)
    event = "event" if "event" in names else None
    branches = list(PF_BRANCHES) + [b for b in (weight, event) if b]
    cluster = LeadingJet(config.radius, config.jet_pt_min)
    first = 0
    for arrays in tree.iterate(branches, step_size=config.chunk_size, entry_stop=budget, library="ak"):
        n = len(arrays)
        counts = ak.to_numpy(ak.num(arrays[PF_BRANCHES[0]]))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = [ak.to_numpy(ak.flatten(arrays[b])).astype(np.float64) for b in PF_BRANCHES]
        for b, values in zip(PF_BRANCHES, flat, strict=True):
            _check_finite(values, path, b)
        w = ak.to_numpy(arrays[weight]).astype(np.float64) if weight else np.ones(n)
        ids = ak.to_numpy(arrays[event]).astype(np.int64) if event else np.arange(first, first + n)
        images, jets, keep = [], [], []
        for i in range(n):
            a, b = offsets[i], offsets[i + 1]
            pt, eta, phi, mass = (v[a:b] for v in flat)
            jet = cluster(pt, eta, phi, mass)
            if jet is None or not _selected(jet.pt, jet.eta, config):
                continue
            c = jet.constituents
            images.append(jet_image(pt[c], eta[c], phi[c], jet.eta, jet.phi, config.size, config.radius))
            jets.append((jet.pt, jet.eta, jet.phi, jet.mass))
            keep.append(i)
        first += n
        yield _batch(images, jets, w[keep], ids[keep], process, n, config.size)


def _selected(pt: float, eta: float, config: JetImagesConfig) -> bool:
    return (pt >= config.jet_pt_min and (config.jet_pt_max is None or pt < config.jet_pt_max)
            and (config.jet_abs_eta_max is None or abs(eta) < config.jet_abs_eta_max))


def _batch(images: list, jets: list, weight: np.ndarray, ids: np.ndarray, process: int | np.ndarray, n_read: int,
           size: int) -> Batch:
    k = len(images)
    return Batch(np.array(images, dtype=np.float32).reshape(k, size, size),
                 np.array(jets, dtype=np.float64).reshape(k, 4), weight, ids,
                 np.broadcast_to(np.asarray(process, dtype=np.int16), (k,)).copy(), n_read)


def _event_file(path: Path) -> EventFile:
    """The prepared event file ``path``, validated, with the ``pt``, ``eta`` and ``phi`` features event images need."""
    events = EventFile(path)
    need = [f for f in ("pt", "eta", "phi") if f not in events.features]
    if need:
        raise InputError(f"{path}: the layout has no {need[0]!r} feature (features {events.features}); event images "
                         "need pt, eta and phi")
    return events


def _event_batches(events: EventFile, process_map: np.ndarray, config: JetImagesConfig, budget: int) -> Iterator[Batch]:
    """Event-level images of a prepared HDF5 event file (see the module docstring)."""
    from darkflow.jetimages.preprocess import event_image

    path, rows, features = events.path, events.rows, events.features
    col = {f: features.index(f) for f in features}
    rows_arr = np.array(rows)
    is_object = rows_arr != "met"
    is_jet = np.isin(rows_arr, JET_TYPES)
    mixed = rows_arr == "any"
    total = min(events.n_events, budget)
    with events:
        for where, part in events.blocks(config.chunk_size, indices=slice(0, total)):
            objects = part["objects"].astype(np.float64)  # (n, R, F)
            mask = part["mask"] & is_object[None, :]
            _check_finite(objects, path, "objects")
            jet_rows = np.broadcast_to(is_jet, mask.shape).copy()
            if mixed.any() and "type" in col:
                codes = np.rint(objects[:, :, col["type"]]).astype(int)
                jet_rows |= mixed[None, :] & np.isin(codes, list(TYPE_CODES.values()))
            jet_rows &= mask
            pt, eta, phi = (objects[:, :, col[f]] for f in ("pt", "eta", "phi"))
            if "mass" in col:
                mass = objects[:, :, col["mass"]]
            elif "E" in col:
                mass = np.sqrt(np.maximum(objects[:, :, col["E"]] ** 2 - (pt * np.cosh(eta)) ** 2, 0.0))
            else:
                mass = np.zeros_like(pt)
            weight, ids = part["weight"], part["event_id"]
            proc = process_map[part["process"]]
            n = where.stop - where.start
            images, jets, keep = [], [], []
            for i in range(n):
                if not jet_rows[i].any():
                    continue
                lead = int(np.argmax(np.where(jet_rows[i], pt[i], -np.inf)))
                if not _selected(pt[i, lead], eta[i, lead], config):
                    continue
                m = mask[i]
                images.append(event_image(pt[i, m], eta[i, m], phi[i, m], eta[i, lead], phi[i, lead], config.size,
                                          EVENT_WINDOW))
                jets.append((pt[i, lead], eta[i, lead], phi[i, lead], mass[i, lead]))
                keep.append(i)
            yield _batch(images, jets, weight[keep], ids[keep], proc[keep], n, config.size)


def _input_kinds(paths: list[Path]) -> str:
    from darkflow.data_prep.root_reader import is_root_file

    kinds = set()
    for p in paths:
        check_input(p, "input file")
        if p.stat().st_size == 0:
            raise InputError(f"{p}: file is empty")
        with open(p, "rb") as handle:
            magic = handle.read(8)
        if magic == b"\x89HDF\r\n\x1a\n":
            kinds.add("event")
        elif is_root_file(p):
            kinds.add("jet")
        else:
            raise InputError(f"{p}: neither ROOT nor HDF5; give ROOT files with PF candidates or prepared .h5 "
                             "event files")
    if len(kinds) > 1:
        raise InputError("give either ROOT files (jet images) or prepared .h5 event files (event images), not both")
    return kinds.pop()


def make_jet_images(config: JetImagesConfig, progress: bool = True) -> JetImagesResult:
    """Write the images of every input into ``config.out`` (see the module docstring)."""
    from darkflow.progress import progress_bar

    start = time.perf_counter()
    paths = [Path(p) for p in config.inputs]
    if not paths:
        raise InputError("no input given: pass ROOT files with PF candidates or prepared .h5 event files")
    out = Path(config.out)
    if out.suffix not in (".h5", ".hdf5"):
        raise InputError(f"`out` must be an .h5 file, got {out}")
    check_output(out, paths)
    kind = _input_kinds(paths)
    process_names: list[str] = []
    budget = config.max_events if config.max_events is not None else sys.maxsize
    writer = _Writer(out, config.size, paths)
    n_read = 0
    bar = progress_bar("jetimages", None, enabled=progress)
    try:
        with bar:
            for path in paths:
                if budget <= 0:
                    break
                if kind == "jet":
                    name = path.stem
                    if name not in process_names:
                        process_names.append(name)
                    batches = _root_batches(path, process_names.index(name), config, budget)
                else:
                    events = _event_file(path)
                    names = events.process_names or [path.stem]
                    for name in names:
                        if name not in process_names:
                            process_names.append(name)
                    batches = _event_batches(events, np.array([process_names.index(n) for n in names]), config,
                                             budget)
                for batch in batches:
                    writer.append(batch)
                    n_read += batch.n_read
                    budget -= batch.n_read
                    bar.update(batch.n_read)
        if writer.n == 0:
            raise DataError(f"no event passed the selection ({n_read} read): need a leading jet with pT >= "
                            f"{config.jet_pt_min:g} GeV" + (f" and < {config.jet_pt_max:g}" if config.jet_pt_max else "")
                            + (f", |eta| < {config.jet_abs_eta_max:g}" if config.jet_abs_eta_max else ""))
        writer.close({
            "label": config.label or out.stem, "size": config.size,
            "radius": config.radius if kind == "jet" else EVENT_WINDOW, "image_kind": kind,
            "process_names": json.dumps(process_names), "inputs": json.dumps([str(p) for p in paths]),
            "n_read": n_read, "n_selected": writer.n, "darkflow_version": __version__,
            "config": json.dumps(config.model_dump(mode="json")),
        })
    except BaseException:
        writer.abort()
        raise
    return JetImagesResult(out, n_read, writer.n, kind, time.perf_counter() - start)
