"""Which events of a file are events of the training file: the same (process, event ID, MET).

Event IDs alone do not identify an event across files: ``darkflow generate`` numbers every sample from 0, so
two independent samples of the same process share all their (process, event ID) pairs. The MET of the
event, a continuous quantity that object definitions and channels do not change, tells a copied event
from a new one with the same number.
"""

from __future__ import annotations

import numpy as np

KEY = np.dtype([("process", "<i8"), ("event_id", "<i8"), ("met", "<i8")])
"""One event's key: process index (in a shared list of names), event ID, MET as float32 bits."""


def event_keys(process: np.ndarray, event_id: np.ndarray, met: np.ndarray | None, process_names: list[str],
               names: list[str]) -> np.ndarray:
    """Keys ``(N,)`` of :data:`KEY` of a file's events.

    Arguments:
        process, event_id: the file's ``process`` ``(N,)`` (indices into ``process_names``) and ``event_id``.
        met: the MET ``(N,)`` (float32), or ``None`` to leave it out of the key (on both files compared).
        names: the process names the keys index (the reference file's); others get -1 and match nothing.
    """
    lookup = np.array([names.index(n) if n in names else -1 for n in process_names] or [-1], dtype=np.int64)
    keys = np.empty(len(event_id), dtype=KEY)
    keys["process"] = lookup[np.asarray(process, dtype=np.int64)]
    keys["event_id"] = event_id
    keys["met"] = 0 if met is None else np.asarray(met, dtype=np.float32).view(np.int32)
    return keys


def matched_roles(reference: np.ndarray, roles: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For every key, the role of the reference event with the same key, else -1.

    Arguments:
        reference: keys ``(M,)`` of the reference (training) file; roles: ``(M,)`` int, its events' roles
            (0 training, 1 validation). A key found several times in the reference gets the smallest role
            (trained on, if any copy was).
        keys: keys ``(N,)`` of the file compared.

    Returns:
        int8 ``(N,)``: the matched role, -1 for events not in the reference file.
    """
    unique, inverse = np.unique(reference, return_inverse=True)
    best = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, inverse.ravel(), np.asarray(roles, dtype=np.int64))
    out = np.full(len(keys), -1, dtype=np.int8)
    if not len(unique):
        return out
    pos = np.searchsorted(unique, keys).clip(max=len(unique) - 1)
    hit = unique[pos] == keys
    out[hit] = best[pos[hit]]
    return out
