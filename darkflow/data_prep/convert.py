"""The conversion of source events into event-file arrays, shared by the single-process and the Dask paths.

:func:`convert_chunk` applies object cuts, the channel, the layout and the high-level features to one chunk
(:func:`convert_selected` also says which events passed the channel: :class:`darkflow.Scorer` keeps the others);
:func:`convert_range` converts an entry range of one input as a Dask task (or any worker) does. Both paths
(:mod:`darkflow.data_prep.prepare` and :mod:`darkflow.data_prep.dask_prepare`) import from here, never from
each other's module in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkflow.data_prep.channels import Channel
from darkflow.data_prep.chunk import EventChunk
from darkflow.data_prep.features import HLF_NAMES, high_level_features, ht
from darkflow.data_prep.jagged import Jagged
from darkflow.data_prep.layout import Layout
from darkflow.data_prep.objects import ObjectDefinitions, select_objects
from darkflow.data_prep.schema import SourceSchema
from darkflow.errors import DataError


@dataclass
class ConversionSpec:
    """Everything needed to convert events once the inputs are resolved (picklable, sent to Dask workers)."""

    layout: Layout
    objects_def: ObjectDefinitions
    channel: Channel | None
    schema: SourceSchema | None
    chunk_size: int
    on_error: str
    process: str | None


class ProcessIndex:
    """Maps process names to int16 indices in order of first appearance, whatever the chunking."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, process: np.ndarray) -> np.ndarray:
        if len(process) == 0:
            return np.zeros(0, dtype=np.int16)
        if (process == process[0]).all():
            uniq, inverse = process[:1], np.zeros(len(process), dtype=np.intp)
        else:
            uniq, first, inverse = np.unique(process.astype(str), return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            uniq, inverse = uniq[order], np.argsort(order)[inverse]
        for name in uniq:
            if str(name) not in self.names:
                self.names.append(str(name))
        lookup = np.array([self.names.index(str(n)) for n in uniq], dtype=np.int16)
        return lookup[inverse]


def as_jagged(chunk: EventChunk) -> EventChunk:
    """The chunk with every collection as :class:`Jagged` (readers may give awkward arrays)."""
    objects = {k: v if isinstance(v, Jagged) else Jagged.from_awkward(v) for k, v in chunk.objects.items()}
    return EventChunk(objects, chunk.met, chunk.met_phi, chunk.weight, chunk.event_id, chunk.process,
                      chunk.source, chunk.first_line)


def nonfinite(chunk: EventChunk) -> tuple[np.ndarray, list[str]]:
    """Which events have NaN or inf in any input quantity, bool ``(N,)``, and in which quantities (for messages)."""
    bad = ~(np.isfinite(chunk.met) & np.isfinite(chunk.met_phi) & np.isfinite(chunk.weight))
    what = ["MET/MET_phi/weight"] if bad.any() else []
    for name, coll in chunk.objects.items():
        for key in ("E", "pt", "eta", "phi", "iso"):
            if key not in coll.fields:
                continue
            finite = np.isfinite(coll[key])
            if not finite.all():
                bad[coll.event[~finite]] = True
                what.append(f"{name} {key}")
    return bad, what


def drop_nonfinite(chunk: EventChunk, on_error: str) -> tuple[EventChunk, int]:
    """Drop (``skip``) or refuse (``fail``) events with NaN or inf in any input quantity; returns the chunk
    and the number of events dropped."""
    bad, what = nonfinite(chunk)
    if not bad.any():
        return chunk, 0
    if on_error == "fail":
        ids = ", ".join(str(i) for i in chunk.event_id[bad][:5])
        raise DataError(
            f"{chunk.source}: {int(bad.sum())} event(s) in this chunk have NaN or inf in {', '.join(what)} "
            f"(first event IDs: {ids}); fix the input or drop them with `on_error` skip"
        )
    keep = ~bad
    return EventChunk(
        objects={k: v.events(keep) for k, v in chunk.objects.items()},
        met=chunk.met[keep],
        met_phi=chunk.met_phi[keep],
        weight=chunk.weight[keep],
        event_id=chunk.event_id[keep],
        process=chunk.process[keep],
        source=chunk.source,
    ), int(bad.sum())


def convert_chunk(
    chunk: EventChunk,
    objects_def: ObjectDefinitions,
    channel: Channel | None,
    layout: Layout,
    buffers: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Object cuts, channel selection, layout and high-level features for one chunk of Jagged objects.

    Returns the datasets of DESIGN section 3 for the selected events (``process_name`` as strings);
    ``buffers`` are passed to :meth:`Layout.build`.
    """
    return convert_selected(chunk, objects_def, channel, layout, buffers)[0]


def convert_selected(
    chunk: EventChunk,
    objects_def: ObjectDefinitions,
    channel: Channel | None,
    layout: Layout,
    buffers: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`convert_chunk` and which events of the chunk passed the channel, bool ``(N,)``: the datasets
    hold the passing events in order (``len == keep.sum()``)."""
    objects = select_objects(chunk.objects, objects_def)
    met, met_phi = chunk.met, chunk.met_phi
    hts = ht(objects)
    keep = channel.passes(objects, met, hts) if channel is not None else np.ones(len(met), dtype=bool)
    if not keep.all():
        objects = {k: v.events(keep) for k, v in objects.items()}
        met, met_phi, hts = met[keep], met_phi[keep], hts[keep]
        rows = keep
    else:
        rows = slice(None)
    arrays, mask = layout.build(objects, met, met_phi, buffers)
    return {
        "objects": arrays,
        "mask": mask,
        "hlf": high_level_features(objects, met, met_phi, hts),
        "weight": chunk.weight[rows].astype(np.float64),
        "event_id": chunk.event_id[rows].astype(np.int64),
        "process_name": chunk.process[rows],
    }, keep


def open_reader(spec: ConversionSpec, path: str, start: int = 0, stop: int | None = None,
                index_offset: int = 0):
    """The reader of one input for ``spec``: Dark Machines CSV (no schema) or a ROOT tree."""
    if spec.schema is None:
        from darkflow.data_prep.darkmachines import DarkMachinesReader

        return DarkMachinesReader(path, chunk_size=spec.chunk_size, on_error=spec.on_error, start=start, stop=stop)
    from darkflow.data_prep.root_reader import RootReader

    return RootReader(path, spec.schema, chunk_size=spec.chunk_size, start=start, stop=stop, process=spec.process,
                      index_offset=index_offset)


def convert_range(spec: ConversionSpec, path: str, start: int, stop: int, index_offset: int) -> dict:
    """Convert entries ``[start, stop)`` of one input, as the single-process path does (run on a worker).

    Returns the datasets of DESIGN section 3 with ``process`` indexing the returned ``process_names``
    (every process read, in order of first appearance), and the counts ``n_read``, ``n_bad``, ``n_skipped``.
    """
    reader = open_reader(spec, path, start, stop, index_offset)
    processes = ProcessIndex()
    parts, n_read, n_bad = [], 0, 0
    for chunk in reader:
        n_read += len(chunk)
        chunk, bad = drop_nonfinite(as_jagged(chunk), spec.on_error)
        n_bad += bad
        processes(chunk.process)
        arrays = convert_chunk(chunk, spec.objects_def, spec.channel, spec.layout)
        arrays["process"] = processes(arrays.pop("process_name"))
        parts.append(arrays)
    if parts:
        result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        n_rows, n_feat = spec.layout.n_rows, len(spec.layout.features)
        result = {"objects": np.zeros((0, n_rows, n_feat), np.float32), "mask": np.zeros((0, n_rows), bool),
                  "hlf": np.zeros((0, len(HLF_NAMES)), np.float32), "weight": np.zeros(0),
                  "event_id": np.zeros(0, np.int64), "process": np.zeros(0, np.int16)}
    return result | {"process_names": processes.names, "n_read": n_read, "n_bad": n_bad,
                     "n_skipped": getattr(reader, "n_skipped", 0)}
