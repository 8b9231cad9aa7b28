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


def _hash(keys: np.ndarray) -> np.ndarray:
    """A 64-bit mix of the three fields of every key (SplitMix64 finalizer), for sorting and search."""
    with np.errstate(over="ignore"):
        x = keys["process"].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= keys["event_id"].astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        x ^= keys["met"].astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


class KeyIndex:
    """The keys of a reference (training) file, sorted for search, with their events' roles.

    Arguments:
        reference: keys ``(M,)`` (:func:`event_keys`); roles: ``(M,)`` int, the events' roles (0 training,
            1 validation). A key found several times gets the smallest role (trained on, if any copy was).

    Keys are searched by a 64-bit hash and every hit is confirmed field by field, so a match is exact;
    two different reference keys with the same hash (odds ~M^2 / 2^65) would hide the second.
    """

    def __init__(self, reference: np.ndarray, roles: np.ndarray) -> None:
        self.reference = reference
        ref_hash = _hash(reference)
        order = np.argsort(ref_hash, kind="stable")
        self.unique, start = np.unique(ref_hash[order], return_index=True)
        roles = np.asarray(roles, dtype=np.int64)[order]
        self.best = np.minimum.reduceat(roles, start) if len(start) else roles
        self.first = order[start]

    def roles_of(self, keys: np.ndarray) -> np.ndarray:
        """int8 ``(N,)``: the role of the reference event with each key, -1 for keys not in the reference."""
        out = np.full(len(keys), -1, dtype=np.int8)
        if not len(self.unique) or not len(keys):
            return out
        query = _hash(keys)
        pos = np.searchsorted(self.unique, query).clip(max=len(self.unique) - 1)
        hit = np.flatnonzero(self.unique[pos] == query)
        candidate, wanted = self.reference[self.first[pos[hit]]], keys[hit]
        exact = np.ones(len(hit), dtype=bool)
        for field in KEY.names:
            exact &= candidate[field] == wanted[field]
        where = hit[exact]
        out[where] = self.best[pos[where]]
        return out


def matched_roles(reference: np.ndarray, roles: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For every key ``(N,)``, the role of the ``reference`` event ``(M,)`` with the same key, else -1
    (:class:`KeyIndex`)."""
    return KeyIndex(reference, roles).roles_of(keys)
