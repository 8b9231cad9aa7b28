"""The unit every reader yields: one chunk of events, split into object types, in GeV."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from darkflow.events.schema import DARKMACHINES_CODES, OBJECT_TYPES, TYPE_CODES, check_object_types

__all__ = ["DARKMACHINES_CODES", "KINEMATIC_FIELDS", "OBJECT_TYPES", "TYPE_CODES", "EventChunk", "check_object_types"]

if TYPE_CHECKING:
    import awkward as ak

    from darkflow.data_prep.jagged import Jagged

KINEMATIC_FIELDS: tuple[str, ...] = ("E", "pt", "eta", "phi")


@dataclass
class EventChunk:
    """A chunk of ``N`` events as read from a source, before object cuts and layout.

    Arguments:
        objects: for every name in :data:`OBJECT_TYPES`, a jagged awkward record array (or a
            :class:`~darkflow.data_prep.jagged.Jagged`) of length ``N``
            with float fields ``E, pt, eta, phi`` (GeV, radians); any order within an event.
        met: missing transverse momentum magnitude, float64 ``(N,)``.
        met_phi: its azimuth, float64 ``(N,)``.
        weight: event weight, float64 ``(N,)`` (ones where the source has none).
        event_id: int64 ``(N,)``.
        process: process name of every event, a numpy array of ``str`` ``(N,)``.
        source: where the chunk came from (file path), for messages.
        first_line: for text sources, the 1-based line number of the chunk's first event.
    """

    objects: dict[str, ak.Array | Jagged]
    met: np.ndarray
    met_phi: np.ndarray
    weight: np.ndarray
    event_id: np.ndarray
    process: np.ndarray
    source: str = ""
    first_line: int | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.met)
