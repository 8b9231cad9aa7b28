"""Read object collections from any ROOT tree through a :class:`~darkflow.data_prep.schema.SourceSchema`."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import awkward as ak
import numpy as np

from darkflow.data_prep.chunk import OBJECT_TYPES, EventChunk
from darkflow.data_prep.jagged import Jagged
from darkflow.data_prep.kinematics import energy_from_ptetam, ptetaphi_from_cartesian
from darkflow.data_prep.schema import Collection, SourceSchema
from darkflow.errors import InputError

ROOT_MAGIC = b"root"


def is_root_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the ROOT file signature."""
    with open(path, "rb") as handle:
        return handle.read(4) == ROOT_MAGIC


def open_tree(path: str | os.PathLike, tree: str):
    """Open ``tree`` in a ROOT file, with one-line errors for a missing or non-ROOT file or tree."""
    import uproot

    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if not is_root_file(path):
        raise InputError(f"{path}: not a ROOT file (no 'root' signature); expected a .root file or a Dark Machines .csv")
    try:
        handle = uproot.open(path)
    except Exception as err:  # uproot raises many types for corrupt files
        raise InputError(f"{path}: cannot be read as ROOT ({type(err).__name__}: {err})") from None
    trees = [k.split(";")[0] for k, c in handle.classnames().items() if c in ("TTree", "TNtuple")]
    if tree not in trees:
        raise InputError(f"{path}: no tree {tree!r}; trees in the file: {', '.join(trees) or 'none'}")
    return handle[tree]


def branch_names(tree) -> set[str]:
    """All branch names of a tree, sub-branches included, without their parents' prefix."""
    return set(tree.keys(recursive=True, full_paths=False)) | set(tree.keys(recursive=True))


def check_branches(tree, wanted: list[str], path: str | os.PathLike) -> None:
    """Raise an :class:`InputError` naming a missing branch and the closest branches that exist."""
    have = branch_names(tree)
    for name in wanted:
        if name not in have:
            close = difflib.get_close_matches(name, sorted(have), n=4, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise InputError(f"{path}: tree {tree.name!r} has no branch {name!r}{hint}")


class RootReader:
    """Stream :class:`EventChunk` objects from one ROOT file.

    Arguments:
        path: the ROOT file.
        schema: which branches hold which collections.
        chunk_size: events per chunk (``uproot`` step size).
        start, stop: entry range to read, for sharding.
        process: process name given to every event.
        index_offset: added to the entry number when the schema has no ``event_id`` branch.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: SourceSchema,
        chunk_size: int = 100_000,
        start: int = 0,
        stop: int | None = None,
        process: str | None = None,
        index_offset: int = 0,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.chunk_size = chunk_size
        self.tree = open_tree(self.path, schema.tree)
        check_branches(self.tree, schema.branches(), self.path)
        self.start = start
        self.stop = self.tree.num_entries if stop is None else min(stop, self.tree.num_entries)
        self.process = process or self.path.stem
        self.index_offset = index_offset
        self.n_read = 0

    def count_events(self) -> int:
        """Entries in the tree."""
        return int(self.tree.num_entries)

    def __iter__(self) -> Iterator[EventChunk]:
        if self.stop <= self.start:
            return
        entry = self.start
        batches = self.tree.iterate(
            filter_name=self.schema.branches(),
            step_size=self.chunk_size,
            entry_start=self.start,
            entry_stop=self.stop,
            library="ak",
            how=dict,
        )
        while True:
            try:
                arrays = next(batches)
            except StopIteration:
                return
            except Exception as err:  # a corrupt or truncated basket: uproot raises many types
                raise InputError(
                    f"{self.path}: cannot read entries from {entry} on ({type(err).__name__}: {err})"
                ) from None
            chunk = self._convert(arrays, entry)
            entry += len(chunk)
            self.n_read += len(chunk)
            yield chunk

    def _convert(self, arrays: dict[str, ak.Array], entry: int) -> EventChunk:
        return chunk_from_branches(arrays, self.schema, entry + self.index_offset, self.process, str(self.path))


def chunk_from_branches(
    arrays: Mapping[str, ak.Array],
    schema: SourceSchema,
    first_index: int = 0,
    process: str = "",
    source: str = "",
) -> EventChunk:
    """One in-memory chunk of ``N`` events, given as arrays of the schema's branches, as an :class:`EventChunk`.

    This is the conversion ``prepare`` applies to every chunk it reads and :class:`darkflow.Scorer` to the
    events of an analysis.

    Arguments:
        arrays: branch name -> awkward array of length ``N`` for every name in ``schema.branches()``
            (jagged ``(N, var)`` for object branches, ``(N,)`` for per-event ones).
        first_index: event ID of the first event when the schema has no ``event_id`` branch (entry number).
        process: process name given to every event.
        source: where the events came from, for messages.
    """
    n = len(next(iter(arrays.values())))
    objects: dict[str, Jagged] = {}
    for name, coll in schema.collections.items():
        record, flag = _collection(arrays, coll)
        if name == "jet" and coll.btag is not None:
            objects["jet"], objects["bjet"] = record.where(~flag), record.where(flag)
        elif name in ("electron", "muon"):
            plus, minus = ("eplus", "eminus") if name == "electron" else ("muplus", "muminus")
            objects[plus], objects[minus] = record.where(flag > 0), record.where(flag < 0)
        else:
            objects[name] = record
    for name in OBJECT_TYPES:
        if name not in objects:
            objects[name] = Jagged.empty(n)
    if schema.met.kinematics == "ptphi":
        met = _scalar(arrays[schema.met.pt])
        met_phi = _scalar(arrays[schema.met.phi])
    else:
        mex, mey = _scalar(arrays[schema.met.px]), _scalar(arrays[schema.met.py])
        met, met_phi = np.hypot(mex, mey), np.arctan2(mey, mex)
    weight = _scalar(arrays[schema.weight], 1.0) if schema.weight else np.ones(n)
    if schema.event_id:
        event_id = _scalar(arrays[schema.event_id], -1).astype(np.int64)
    else:
        event_id = np.arange(first_index, first_index + n, dtype=np.int64)
    return EventChunk(
        objects=objects,
        met=met.astype(np.float64),
        met_phi=met_phi.astype(np.float64),
        weight=weight.astype(np.float64),
        event_id=event_id,
        process=np.full(n, process, dtype=object),
        source=source,
    )


def _flat(array: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array, axis=1)).astype(np.float64)


def _collection(arrays: dict[str, ak.Array], coll: Collection) -> tuple[Jagged, np.ndarray]:
    """Flat ``E, pt, eta, phi`` of one collection (plus ``id``, bool, and ``iso``, the relative isolation,
    where the schema names them), with its flat b-tag flag or charge."""
    ref = arrays[coll.pt if coll.kinematics != "cartesian" else coll.px]
    counts = ak.to_numpy(ak.num(ref, axis=1)).astype(np.int64)
    if coll.kinematics == "cartesian":
        energy = _flat(arrays[coll.e])
        pt, eta, phi = ptetaphi_from_cartesian(*(_flat(arrays[getattr(coll, k)]) for k in ("px", "py", "pz")))
    else:
        pt, eta, phi = (_flat(arrays[getattr(coll, k)]) for k in ("pt", "eta", "phi"))
        if coll.kinematics == "ptetaphie":
            energy = _flat(arrays[coll.e])
        else:
            mass = _flat(arrays[coll.mass]) if isinstance(coll.mass, str) else float(coll.mass or 0.0)
            energy = energy_from_ptetam(pt, eta, mass)
    fields = {"E": energy, "pt": pt, "eta": eta, "phi": phi}
    if coll.id is not None:
        fields["id"] = coll.id.passes(_flat_as(arrays, coll.id.branch, len(pt)))
    if coll.isolation is not None:
        fields["iso"] = _flat_as(arrays, coll.isolation, len(pt)).astype(np.float64)
    record = Jagged(counts, fields)
    if coll.btag is not None:
        flag = ak.to_numpy(ak.flatten(arrays[coll.btag.branch], axis=1)) > coll.btag.threshold
    elif coll.charge is not None:
        flag = ak.to_numpy(ak.flatten(arrays[coll.charge], axis=1))
    else:
        flag = np.zeros(len(pt), dtype=np.int8)
    return record, flag


def _flat_as(arrays: dict[str, ak.Array], branch: str, n: int) -> np.ndarray:
    """The flat values of ``branch``, which must hold one value per object of its collection (``n`` in all)."""
    values = ak.to_numpy(ak.flatten(arrays[branch], axis=1))
    if len(values) != n:
        raise InputError(f"branch {branch!r} holds {len(values)} values in this chunk where its collection has "
                         f"{n} objects; it must have one value per object (same counter as the collection's pt)")
    return values


def _scalar(array: ak.Array, default: float = 0.0) -> np.ndarray:
    """A per-event number; a jagged branch with one entry per event (Delphes) gives its first entry."""
    if array.ndim > 1:
        array = ak.fill_none(ak.firsts(array, axis=1), default)
    return ak.to_numpy(array)
