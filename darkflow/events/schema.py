"""The HDF5 event file's contract (DESIGN section 3): datasets, attributes and the object-type vocabulary.

Every reader (:class:`~darkflow.events.file.EventFile`) and the writer
(:class:`~darkflow.events.writer.EventFileWriter`) take the names, dtypes and shapes from here.
"""

from __future__ import annotations

import numpy as np

DATASETS: tuple[str, ...] = ("objects", "mask", "hlf", "weight", "event_id", "process")
"""The datasets of an event file, in their canonical order."""

DTYPES: dict[str, np.dtype] = {
    "objects": np.dtype(np.float32),
    "mask": np.dtype(np.bool_),
    "hlf": np.dtype(np.float32),
    "weight": np.dtype(np.float64),
    "event_id": np.dtype(np.int64),
    "process": np.dtype(np.int16),
}
"""The dtype of every dataset."""

DIMS: dict[str, tuple[str, ...]] = {
    "objects": ("N", "R", "F"),
    "mask": ("N", "R"),
    "hlf": ("N", "K"),
    "weight": ("N",),
    "event_id": ("N",),
    "process": ("N",),
}
"""The shape of every dataset: ``N`` events, ``R`` rows (object slots), ``F`` features, ``K`` high-level features."""

JSON_ATTRS: tuple[str, ...] = (
    "layout", "hlf_names", "process_names", "source", "channel", "objects_definition", "inputs", "merged_from",
)
"""File attributes stored as JSON strings."""

JSON_KINDS: dict[str, type] = {"layout": dict, "hlf_names": list, "process_names": list, "source": dict,
                               "channel": dict, "objects_definition": dict, "inputs": list, "merged_from": list}
"""The top-level JSON type of every JSON attribute."""

CHUNK_EVENTS = 1024
"""Events per HDF5 chunk: small enough for random access by a data loader, large enough to stream."""

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
"""The first eight bytes of an HDF5 file (at offset 0 when the file has no user block)."""

OBJECT_TYPES: tuple[str, ...] = ("jet", "bjet", "eplus", "eminus", "muplus", "muminus", "photon")
"""Object types in their canonical order; Dark Machines codes in :data:`DARKMACHINES_CODES`."""

DARKMACHINES_CODES: dict[str, str] = {
    "j": "jet",
    "b": "bjet",
    "e+": "eplus",
    "e-": "eminus",
    "m+": "muplus",
    "m-": "muminus",
    "g": "photon",
}
"""The object code of the Dark Machines CSV format -> object type."""

TYPE_CODES: dict[str, int] = {name: i + 1 for i, name in enumerate(OBJECT_TYPES)} | {"met": len(OBJECT_TYPES) + 1}
"""Integer code of every row type, used by the ``type`` feature and the graph view; 0 marks padding."""

ANY_ROW = "any"
"""Row type of a slot in a mixed block: the object's type is then in the ``type`` feature column."""

TYPE_FEATURE = "type"
"""Name of the feature column that carries the integer type code (:data:`TYPE_CODES`, 0 for padding)."""

ROW_TYPES: tuple[str, ...] = (*TYPE_CODES, ANY_ROW)
"""Every valid entry of the layout's ``rows``."""


def check_object_types(types: list[str]) -> list[str]:
    """Raise a ``ValueError`` naming the first entry that is not in :data:`OBJECT_TYPES`."""
    bad = [t for t in types if t not in OBJECT_TYPES]
    if bad:
        raise ValueError(f"unknown object type {bad[0]!r}; valid: {', '.join(OBJECT_TYPES)}")
    return types
