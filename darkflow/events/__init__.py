"""The HDF5 event file of DESIGN section 3: schema, validated reader, atomic writer, merge and subset.

Imports only :mod:`darkflow.errors`, :mod:`darkflow.fileio`, numpy and (inside functions) h5py; every command
that reads or writes event files goes through here.
"""

from darkflow.events.file import EventFile
from darkflow.events.merge import merge, subset
from darkflow.events.schema import (
    ANY_ROW,
    CHUNK_EVENTS,
    DARKMACHINES_CODES,
    DATASETS,
    DTYPES,
    JSON_ATTRS,
    OBJECT_TYPES,
    TYPE_CODES,
    TYPE_FEATURE,
    check_object_types,
)
from darkflow.events.summary import summarize
from darkflow.events.writer import EventFileWriter, created_stamp

__all__ = [
    "ANY_ROW",
    "CHUNK_EVENTS",
    "DARKMACHINES_CODES",
    "DATASETS",
    "DTYPES",
    "JSON_ATTRS",
    "OBJECT_TYPES",
    "TYPE_CODES",
    "TYPE_FEATURE",
    "EventFile",
    "EventFileWriter",
    "check_object_types",
    "created_stamp",
    "merge",
    "subset",
    "summarize",
]
