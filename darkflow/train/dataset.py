"""PyTorch datasets that stream events from a DarkFlow HDF5 event file, built on :class:`~darkflow.events.EventFile`.

:class:`EventDataset` reads the padded 2D arrays of an event file (DESIGN section 3) without loading whole
datasets: every access reads only the requested events, and a batch of events is read with one h5py
selection per dataset (:meth:`EventFile.read`). The file is validated once, by :class:`EventFile`, and opened
lazily in the process that reads, so the dataset works with ``DataLoader(num_workers > 0)`` under both
``fork`` and ``spawn``.

Two views of an event:

* ``"array"``: a dict of tensors (the padded ``(R, F)`` array, its mask, the high-level features and the
  event's weight, id and process index), batched by the default collate of :class:`torch.utils.data.DataLoader`;
* ``"graph"``: a :class:`torch_geometric.data.Data` whose nodes are the real objects (MET included) with
  their kinematics and a one-hot of their type, fully connected; batched by
  :class:`torch_geometric.loader.DataLoader`.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from darkflow.errors import DataError, InputError
from darkflow.events import ANY_ROW, OBJECT_TYPES, TYPE_CODES, TYPE_FEATURE, EventFile

VIEWS: tuple[str, ...] = ("array", "graph")
"""Valid values of the ``view`` argument of :class:`EventDataset`."""

NODE_TYPES: tuple[str, ...] = (*OBJECT_TYPES, "met")
"""Node types of the graph view in one-hot order: the one-hot index of a type is ``TYPE_CODES[type] - 1``."""

assert [TYPE_CODES[name] for name in NODE_TYPES] == list(range(1, len(NODE_TYPES) + 1))


def import_torch_geometric() -> Any:
    """Import ``torch_geometric`` lazily (it is slow to import and only the graph view needs it).

    torch_geometric 2.x calls ``torch.jit.script`` at import time, which torch >= 2.10 deprecates; that one
    warning is silenced here so that importing it under ``-W error`` (our strict pytest) does not fail.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.script. is deprecated", category=DeprecationWarning
        )
        import torch_geometric.data
        import torch_geometric.loader  # noqa: F401  (so that users' later import is warning-free too)
    return torch_geometric


class EventDataset(Dataset):
    """Events of a DarkFlow HDF5 event file, streamed from disk.

    Arguments:
        path: the HDF5 event file, or an open :class:`EventFile` (not validated again).
        indices: events of the file this dataset holds, in this order (e.g. a training or validation split);
            integers in ``[0, N)``, repeats allowed. ``None``: every event of the file.
        view: ``"array"`` for dicts of tensors, ``"graph"`` for :class:`torch_geometric.data.Data`.

    Shapes (``R`` rows, ``F`` features, ``K`` high-level features, ``n`` real objects of the event):
        array view, ``dataset[i]`` is a dict with
            ``objects`` float32 ``(R, F)``, ``mask`` bool ``(R,)``, ``hlf`` float32 ``(K,)``,
            ``weight`` float64 ``()``, ``event_id`` int64 ``()``, ``process`` int64 ``()``;
            the default collate stacks them to ``(B, R, F)``, ``(B, R)``, ``(B, K)``, ``(B,)``...
        graph view, ``dataset[i]`` is a ``Data`` with
            ``x`` float32 ``(n, F' + 8)``: the row's features except ``type`` (``F'`` of them), then a one-hot
            of the node type over :data:`NODE_TYPES`; ``edge_index`` int64 ``(2, n (n - 1))``, every ordered
            pair of distinct nodes; ``node_type`` int64 ``(n,)`` (codes of :data:`TYPE_CODES`); ``slot`` int64
            ``(n,)`` (the node's row in the array); ``hlf`` float32 ``(1, K)``; ``weight`` float64 ``(1,)``,
            ``event_id`` int64 ``(1,)``, ``process`` int64 ``(1,)``; ``num_nodes = n``. Nodes are the rows
            with mask True (MET row included) in row order.

    Raises:
        InputError: anything :class:`EventFile` refuses, or an unknown ``view``.
        IndexError: an index outside ``[0, N)`` in ``indices`` (or outside the dataset on access).
        ValueError: ``indices`` that are not a 1-D sequence of integers.
        DataError: (graph view, on access) a real object of an ``"any"`` row whose ``type`` code is not 1-8.

    Example::

        train = EventDataset("sm.h5", indices=np.arange(0, 80_000))
        loader = torch.utils.data.DataLoader(train, batch_size=256, shuffle=True, num_workers=4)
        for batch in loader:
            batch["objects"]  # (256, R, F)
    """

    def __init__(
        self,
        path: str | os.PathLike | EventFile,
        indices: Sequence[int] | np.ndarray | None = None,
        view: Literal["array", "graph"] = "array",
    ) -> None:
        if view not in VIEWS:
            raise InputError(f"unknown dataset view {view!r}; valid views: {', '.join(VIEWS)}")
        self.events = path if isinstance(path, EventFile) else EventFile(path)
        self.path = Path(self.events.path)
        self.view: Literal["array", "graph"] = view
        n = self.events.n_events
        self._indices = (np.arange(n, dtype=np.int64) if indices is None
                         else self.events.check_indices(np.asarray(indices)))
        features, rows = self.events.features, self.events.rows
        self._type_column: int | None = features.index(TYPE_FEATURE) if TYPE_FEATURE in features else None
        self._kinematic_columns: list[int] = [j for j in range(len(features)) if j != self._type_column]
        # Row type codes, 0 where the row is "any" and the code is read from the type column.
        self._row_codes = np.array([0 if row == ANY_ROW else TYPE_CODES[row] for row in rows], dtype=np.int64)
        self._edge_cache: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ file handle

    @property
    def _file(self) -> Any:
        """The h5py handle of this process (``None`` until the first read, or after :meth:`close`)."""
        return self.events._file

    def close(self) -> None:
        """Close the file handle of this process; the next read reopens it."""
        self.events.close()

    def __enter__(self) -> EventDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the h5py handle (for DataLoader workers started with spawn or forkserver)."""
        return {**self.__dict__, "_edge_cache": {}}

    # ------------------------------------------------------------------ properties

    @property
    def layout(self) -> dict[str, Any]:
        """The layout attribute: ``name``, ``features``, ``rows`` (type of every row), ``blocks``, ``met_row``."""
        return self.events.layout

    @property
    def features(self) -> list[str]:
        """Names of the ``F`` feature columns of ``objects`` (e.g. ``["E", "pt", "eta", "phi"]``)."""
        return self.events.features

    @property
    def rows(self) -> list[str]:
        """Type of every one of the ``R`` rows (an object type, ``"met"``, or ``"any"``)."""
        return self.events.rows

    @property
    def node_features(self) -> list[str]:
        """Names of the columns of the graph view's ``x``: kinematic features, then ``is_<type>`` one-hots."""
        return [self.features[j] for j in self._kinematic_columns] + [f"is_{name}" for name in NODE_TYPES]

    @property
    def process_names(self) -> list[str]:
        """Process names; ``process`` values index this list."""
        return self.events.process_names

    @property
    def hlf_names(self) -> list[str]:
        """Names of the ``K`` high-level features."""
        return self.events.hlf_names

    @property
    def label(self) -> str:
        """The sample's label (file attribute ``label``, else the file name without suffix)."""
        return self.events.label

    @property
    def n_rows(self) -> int:
        """Number of rows ``R`` of every event array."""
        return self.events.n_rows

    @property
    def n_features(self) -> int:
        """Number of feature columns ``F`` of every event array."""
        return self.events.n_features

    @property
    def n_hlf(self) -> int:
        """Number of high-level features ``K``."""
        return self.events.n_hlf

    @property
    def n_events(self) -> int:
        """Number of events ``N`` in the file (not in the subset: that is ``len(dataset)``)."""
        return self.events.n_events

    @property
    def chunk_events(self) -> int | None:
        """Events per HDF5 chunk of ``objects`` (``None`` if not chunked): a chunk-aware sampler that
        shuffles chunks, then events within a few chunks, reads compressed files much faster than a
        uniform shuffle."""
        return self.events.chunk_events

    @property
    def indices(self) -> np.ndarray:
        """File index of every event of the dataset, int64 ``(len(self),)`` (a copy)."""
        return self._indices.copy()

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._indices)

    def _file_indices(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Map dataset positions (negative ones counted from the end) to file indices, int64 ``(B,)``."""
        positions = np.array([operator.index(i) for i in idx], dtype=np.int64)
        size = len(self._indices)
        bad = positions[(positions < -size) | (positions >= size)]
        if bad.size:
            raise IndexError(f"index {int(bad[0])} out of range for a dataset of {size} events")
        return self._indices[positions]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | Any:
        """One event in the dataset's view (see the class docstring for the shapes)."""
        return self.__getitems__([index])[0]

    def __getitems__(self, idx: list[int]) -> list[dict[str, torch.Tensor]] | list[Any]:
        """A batch of events, read with one h5py selection per dataset.

        Called by :class:`torch.utils.data.DataLoader` with the sampler's batch of positions; returns one
        sample per position, in the order asked (repeats allowed), which the collate function batches.
        """
        if len(idx) == 0:
            return []
        arrays = self.events.read(self._file_indices(idx))
        if self.view == "graph":
            return self._graphs(arrays)
        objects = torch.from_numpy(np.ascontiguousarray(arrays["objects"], dtype=np.float32))  # (B, R, F)
        mask = torch.from_numpy(np.ascontiguousarray(arrays["mask"], dtype=np.bool_))  # (B, R)
        hlf = torch.from_numpy(np.ascontiguousarray(arrays["hlf"], dtype=np.float32))  # (B, K)
        weight = torch.from_numpy(np.ascontiguousarray(arrays["weight"], dtype=np.float64))  # (B,)
        event_id = torch.from_numpy(np.ascontiguousarray(arrays["event_id"], dtype=np.int64))  # (B,)
        process = torch.from_numpy(np.ascontiguousarray(arrays["process"], dtype=np.int64))  # (B,)
        return [
            {
                "objects": objects[b],
                "mask": mask[b],
                "hlf": hlf[b],
                "weight": weight[b],
                "event_id": event_id[b],
                "process": process[b],
            }
            for b in range(len(idx))
        ]

    # ------------------------------------------------------------------ graph view

    def _edge_index(self, n: int) -> torch.Tensor:
        """Every ordered pair of distinct nodes among ``n``, int64 ``(2, n (n - 1))``."""
        if n not in self._edge_cache:
            adjacency = ~torch.eye(n, dtype=torch.bool)
            self._edge_cache[n] = adjacency.nonzero().t().contiguous()
        return self._edge_cache[n].clone()

    def _node_codes(self, objects: np.ndarray, mask: np.ndarray, event_id: np.ndarray) -> np.ndarray:
        """Type code of every real row of a batch, in row-major order of ``mask``, int64 ``(M,)``.

        Shapes:
            objects: ``(B, R, F)``; mask: ``(B, R)``; event_id: ``(B,)``; ``M = mask.sum()``.
        """
        codes = np.broadcast_to(self._row_codes, mask.shape)[mask].copy()  # (M,)
        mixed = codes == 0
        if mixed.any():
            assert self._type_column is not None
            column = objects[..., self._type_column][mask][mixed]
            read = np.rint(column).astype(np.int64)
            bad = (read < 1) | (read > len(NODE_TYPES)) | (np.abs(column - read) > 1e-3)
            if bad.any():
                event = np.repeat(np.arange(len(mask)), mask.sum(axis=1))[np.flatnonzero(mixed)[bad][0]]
                raise DataError(
                    f"{self.path}: event {int(event_id[event])} has a real object with type code "
                    f"{float(column[bad][0])!r}; valid codes: "
                    f"{', '.join(f'{code}={name}' for name, code in TYPE_CODES.items())}"
                )
            codes[mixed] = read
        return codes

    def _graphs(self, arrays: dict[str, np.ndarray]) -> list[Any]:
        """Build one ``torch_geometric.data.Data`` per event of a batch read by :meth:`EventFile.read`."""
        Data = import_torch_geometric().data.Data

        mask = np.asarray(arrays["mask"], dtype=np.bool_)  # (B, R)
        objects = np.asarray(arrays["objects"], dtype=np.float32)  # (B, R, F)
        event_id = np.asarray(arrays["event_id"], dtype=np.int64)  # (B,)
        codes = self._node_codes(objects, mask, event_id)  # (M,)
        sizes = mask.sum(axis=1).tolist()
        n_kin = len(self._kinematic_columns)
        x = np.zeros((len(codes), n_kin + len(NODE_TYPES)), dtype=np.float32)  # (M, F' + 8)
        x[:, :n_kin] = objects[mask][:, self._kinematic_columns]
        x[np.arange(len(codes)), n_kin + codes - 1] = 1.0
        slots = np.nonzero(mask)[1]  # (M,)
        xs = torch.from_numpy(x).split(sizes)
        node_types = torch.from_numpy(codes).split(sizes)
        slot = torch.from_numpy(slots.astype(np.int64)).split(sizes)
        hlf = torch.from_numpy(np.asarray(arrays["hlf"], dtype=np.float32)).unsqueeze(1)  # (B, 1, K)
        weight = torch.from_numpy(np.asarray(arrays["weight"], dtype=np.float64)).unsqueeze(1)  # (B, 1)
        ids = torch.from_numpy(event_id).unsqueeze(1)  # (B, 1)
        process = torch.from_numpy(np.asarray(arrays["process"], dtype=np.int64)).unsqueeze(1)  # (B, 1)
        return [
            Data(
                x=xs[b],
                edge_index=self._edge_index(n),
                node_type=node_types[b],
                slot=slot[b],
                hlf=hlf[b],
                weight=weight[b],
                event_id=ids[b],
                process=process[b],
                num_nodes=n,
            )
            for b, n in enumerate(sizes)
        ]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, events={len(self)}/{self.n_events}, view={self.view!r}, "
            f"rows={self.n_rows}, features={self.features})"
        )
