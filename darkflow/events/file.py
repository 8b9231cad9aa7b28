"""The validated reader of the HDF5 event file (DESIGN section 3): checked once, then read by index or block.

:class:`EventFile` opens a file once to check everything the contract promises (the datasets with their
dtypes and consistent shapes, the JSON attributes, a layout that describes ``objects``, finite weights), and
then reads events without loading whole datasets. The h5py handle is opened lazily in the process that reads,
so the object can be pickled to DataLoader workers (``fork`` or ``spawn``).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from darkflow.errors import DataError, InputError
from darkflow.events.schema import (
    ANY_ROW,
    DATASETS,
    DIMS,
    DTYPES,
    HDF5_MAGIC,
    JSON_ATTRS,
    JSON_KINDS,
    ROW_TYPES,
    TYPE_FEATURE,
)
from darkflow.fileio import check_input

BLOCK = 65_536
"""Events per block of :meth:`EventFile.blocks` and of the checks that stream the whole file."""

_MIN_CACHE_BYTES = 1024 * 1024
"""Smallest HDF5 raw-chunk cache per dataset (HDF5's default). The cache is sized to hold two chunks of the
largest dataset, so that consecutive batches within a chunk decompress it once; a larger cache makes random
reads slower (whole chunks are copied in for one row) unless it holds the whole file."""

_DENSE_FACTOR = 4
"""Read a bounding slice instead of a point selection when it holds at most this many times the events asked."""

Index = slice | Sequence[int] | np.ndarray | None


def _attr_value(value: Any) -> Any:
    """An HDF5 attribute as a Python value (h5py returns ``bytes`` for fixed-length strings, numpy scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_value(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


class EventFile:
    """An HDF5 event file, validated when constructed.

    Arguments:
        path: the event file written by ``darkflow prepare`` (or ``merge``, ``subset``).

    Shapes (``N`` events, ``R`` rows, ``F`` features, ``K`` high-level features):
        ``objects`` float32 ``(N, R, F)``, ``mask`` bool ``(N, R)``, ``hlf`` float32 ``(N, K)``,
        ``weight`` float64 ``(N,)``, ``event_id`` int64 ``(N,)``, ``process`` int16 ``(N,)``.

    Raises:
        InputError: not found, a folder, FIFO or device, not an HDF5 file, truncated or damaged, a missing
            dataset or one of the wrong dtype or shape, datasets that disagree on ``N`` or ``R``, a JSON
            attribute that does not parse, no ``layout`` or a layout that does not describe ``objects``.
        DataError: a NaN or inf event weight, or a ``process`` index outside ``process_names``.

    NaN or inf in ``objects`` and ``hlf`` are found by :meth:`check_finite` (one pass over the file), which
    training calls.

    Example::

        with EventFile("sm.h5") as events:
            batch = events.read(np.array([7, 3, 3]))      # objects (3, R, F), ...
            for where, block in events.blocks(65_536):   # where: slice of event indices
                block["weight"]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = check_input(path, "event file")
        self._file: Any = None
        self._pid: int | None = None
        self._validate()

    # ------------------------------------------------------------------ validation

    def _fail(self, message: str) -> InputError:
        return InputError(f"{self.path}: {message}")

    def _validate(self) -> None:
        import h5py

        path = self.path
        with open(path, "rb") as handle:
            head = handle.read(len(HDF5_MAGIC))
        if head != HDF5_MAGIC and not h5py.is_hdf5(path):
            raise self._fail("not an HDF5 file; expected an event file written by 'darkflow prepare'")
        try:
            with h5py.File(path, "r") as file:
                self._check_datasets(file, h5py)
                attrs = {key: _attr_value(file.attrs[key]) for key in file.attrs}
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            raise self._fail(f"cannot be read as HDF5 (truncated or damaged: {_short(err)})") from None
        self._attrs = self._parse_attrs(attrs)
        self._check_layout()
        self._check_weights_and_processes()

    def _check_datasets(self, file: Any, h5py: Any) -> None:
        missing = [name for name in DATASETS if not isinstance(file.get(name), h5py.Dataset)]
        if missing:
            present = sorted(file.keys())
            raise self._fail(
                f"not an event file from 'darkflow prepare': missing dataset(s) {', '.join(missing)}; "
                f"it holds: {', '.join(present) if present else 'nothing'}"
            )
        shapes = {}
        for name in DATASETS:
            dset = file[name]
            if dset.dtype != DTYPES[name]:
                raise self._fail(f"dataset '{name}' has dtype {dset.dtype}, expected {DTYPES[name]}")
            if dset.ndim != len(DIMS[name]):
                raise self._fail(f"dataset '{name}' has shape {dset.shape}, expected ({', '.join(DIMS[name])})")
            shapes[name] = tuple(dset.shape)
        n_events, n_rows, n_features = shapes["objects"]
        bad = [f"{name} {shape}" for name, shape in shapes.items() if shape[0] != n_events]
        if bad:
            raise self._fail(f"datasets disagree on the number of events: objects has {n_events}, "
                             f"but {', '.join(bad)}")
        if shapes["mask"][1] != n_rows:
            raise self._fail(f"'mask' has {shapes['mask'][1]} rows but 'objects' has {n_rows}")
        self._n_events, self._n_rows, self._n_features = n_events, n_rows, n_features
        self._n_hlf = shapes["hlf"][1]
        chunk_bytes = max(int(np.prod(file[name].chunks or (0,))) * file[name].dtype.itemsize for name in DATASETS)
        self._cache_bytes = max(_MIN_CACHE_BYTES, 2 * chunk_bytes)
        chunks = file["objects"].chunks
        self._chunk_events: int | None = chunks[0] if chunks else None
        self._compression: str | None = file["objects"].compression

    def _parse_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        out = dict(attrs)
        for name in JSON_ATTRS:
            if name not in out:
                continue
            text = out[name]
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError:
                raise self._fail(f"attribute '{name}' is not valid JSON: {text[:80]!r}") from None
            kind = JSON_KINDS[name]
            if not isinstance(value, kind):
                raise self._fail(f"attribute '{name}' must be a JSON {kind.__name__}, got {str(text)[:80]!r}")
            if name in ("hlf_names", "process_names") and not all(isinstance(v, str) for v in value):
                raise self._fail(f"attribute '{name}' must be a JSON list of names (strings), got {str(text)[:80]!r}")
            out[name] = value
        return out

    def _check_layout(self) -> None:
        attrs = self._attrs
        if "layout" not in attrs:
            raise self._fail("no 'layout' attribute; it was not written by `darkflow prepare`")
        layout = attrs["layout"]
        features = layout.get("features")
        if (not isinstance(features, list) or len(features) != self._n_features
                or not all(isinstance(f, str) for f in features)):
            raise self._fail(f"layout features {features!r} do not match the {self._n_features} columns of 'objects'")
        rows = layout.get("rows")
        if not isinstance(rows, list) or len(rows) != self._n_rows:
            count = len(rows) if isinstance(rows, list) else rows
            raise self._fail(f"layout has {count} rows but 'objects' has {self._n_rows}")
        unknown = sorted({str(row) for row in rows if row not in ROW_TYPES})
        if unknown:
            raise self._fail(f"unknown row type(s) {', '.join(unknown)} in layout; valid: {', '.join(ROW_TYPES)}")
        if ANY_ROW in rows and TYPE_FEATURE not in features:
            raise self._fail(f"layout has '{ANY_ROW}' rows but no '{TYPE_FEATURE}' feature column")
        attrs.setdefault("hlf_names", [f"hlf_{k}" for k in range(self._n_hlf)])
        attrs.setdefault("process_names", [])
        if len(attrs["hlf_names"]) != self._n_hlf:
            raise self._fail(f"{len(attrs['hlf_names'])} hlf_names for {self._n_hlf} columns of 'hlf'")

    def _check_weights_and_processes(self) -> None:
        """Every weight finite and every ``process`` an index into ``process_names`` (one streaming pass)."""
        n_names = len(self.process_names)
        bad_weight, first_weight = 0, -1
        bad_process, first_process = 0, -1
        for where, block in self.blocks(BLOCK, fields=("weight", "process")):
            bad = ~np.isfinite(block["weight"])
            if bad.any():
                first_weight = first_weight if bad_weight else where.start + int(np.argmax(bad))
                bad_weight += int(bad.sum())
            if n_names:
                process = block["process"]
                bad = (process < 0) | (process >= n_names)
                if bad.any():
                    first_process = first_process if bad_process else where.start + int(np.argmax(bad))
                    bad_process += int(bad.sum())
        self.close()
        if bad_weight:
            raise DataError(f"{self.path}: {bad_weight} event weight(s) are NaN or inf (the first at event "
                            f"{first_weight}); event weights must be finite: fix or drop those events and prepare "
                            "the file again")
        if bad_process:
            raise DataError(f"{self.path}: {bad_process} event(s) have a process index outside the "
                            f"{n_names} process_names (the first at event {first_process})")

    def check_finite(self, indices: Index = None) -> None:
        """Raise :class:`DataError` when ``objects`` or ``hlf`` hold NaN or inf in any event (of ``indices``),
        naming the dataset, how many events and the first one. One streaming pass over both datasets.

        ``prepare`` refuses such values, so a file that holds them was damaged or written by other means.
        """
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self._n_events))
        chosen = None if indices is None else self.check_indices(indices)
        fields = ("objects", "hlf")
        count, first = dict.fromkeys(fields, 0), dict.fromkeys(fields, -1)
        for where, block in self.blocks(BLOCK, fields=fields, indices=chosen):
            for name in fields:
                values = block[name]
                bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
                if bad.any():
                    if not count[name]:
                        position = where.start + int(np.argmax(bad))
                        first[name] = position if chosen is None else int(chosen[position])
                    count[name] += int(bad.sum())
        self.close()
        for name in fields:
            if count[name]:
                raise DataError(f"{self.path}: damaged input file: {count[name]} event(s) hold NaN or inf in "
                                f"{name!r} (the first at event {first[name]}); prepare the file again from its "
                                "sources")

    # ------------------------------------------------------------------ properties

    @property
    def n_events(self) -> int:
        """Number of events ``N``."""
        return self._n_events

    def __len__(self) -> int:
        return self._n_events

    @property
    def n_rows(self) -> int:
        """Number of rows ``R`` (object slots) of every event array."""
        return self._n_rows

    @property
    def n_features(self) -> int:
        """Number of feature columns ``F`` of every event array."""
        return self._n_features

    @property
    def n_hlf(self) -> int:
        """Number of high-level features ``K``."""
        return self._n_hlf

    @property
    def attrs(self) -> dict[str, Any]:
        """Every file attribute, the JSON ones decoded (a copy)."""
        return copy.deepcopy(self._attrs)

    @property
    def layout(self) -> dict[str, Any]:
        """The layout attribute: ``name``, ``features``, ``rows`` (type of every row), ``blocks``, ``met_row``."""
        return dict(self._attrs["layout"])

    @property
    def rows(self) -> list[str]:
        """Type of every one of the ``R`` rows (an object type, ``"met"``, or ``"any"``)."""
        return list(self._attrs["layout"]["rows"])

    @property
    def features(self) -> list[str]:
        """Names of the ``F`` feature columns of ``objects`` (e.g. ``["E", "pt", "eta", "phi"]``)."""
        return list(self._attrs["layout"]["features"])

    @property
    def hlf_names(self) -> list[str]:
        """Names of the ``K`` high-level features."""
        return list(self._attrs["hlf_names"])

    @property
    def process_names(self) -> list[str]:
        """Process names; ``process`` values index this list."""
        return list(self._attrs["process_names"])

    @property
    def label(self) -> str:
        """The sample's label (file attribute ``label``, else the file name without suffix)."""
        return str(self._attrs.get("label") or self.path.stem)

    @property
    def channel(self) -> dict[str, Any]:
        """The channel selection the file was prepared with (``{"name": "none"}`` when there was none)."""
        return dict(self._attrs.get("channel") or {"name": "none"})

    @property
    def source(self) -> dict[str, Any]:
        """The resolved source schema (``{}`` when not recorded)."""
        return dict(self._attrs.get("source") or {})

    @property
    def simulation(self) -> bool | None:
        """Whether the events are simulated (``None`` when the file does not say)."""
        value = self._attrs.get("simulation")
        return None if value is None else bool(value)

    @property
    def chunk_events(self) -> int | None:
        """Events per HDF5 chunk of ``objects`` (``None`` if not chunked)."""
        return self._chunk_events

    @property
    def compression(self) -> str | None:
        """The HDF5 compression filter of ``objects`` (``None``, ``"gzip"`` or ``"lzf"``)."""
        return self._compression

    # ------------------------------------------------------------------ reading

    def _handle(self) -> Any:
        """The file opened in this process (reopened after a fork: HDF5 handles must not cross processes)."""
        import h5py

        pid = os.getpid()
        if self._file is None or self._pid != pid:
            self._file = h5py.File(self.path, "r", rdcc_nbytes=self._cache_bytes)
            self._pid = pid
        return self._file

    def check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``indices`` as an int64 ``(B,)`` array of event indices, each in ``[0, N)``.

        Raises:
            ValueError: not a 1-D sequence of integers (a boolean mask is refused).
            IndexError: an index outside ``[0, N)``.
        """
        array = np.asarray(indices)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.dtype == np.bool_:
            raise ValueError("indices must be integers, not a boolean mask (use np.flatnonzero(mask))")
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"indices must be a 1-D sequence of integers, got dtype {array.dtype} shape {array.shape}")
        array = array.astype(np.int64)
        bad = array[(array < 0) | (array >= self._n_events)]
        if bad.size:
            raise IndexError(f"event index {int(bad[0])} out of range for {self.path} with {self._n_events} events "
                             f"(valid: 0 to {self._n_events - 1})")
        return array

    def read(self, idx: Index = None, fields: Sequence[str] = DATASETS) -> dict[str, np.ndarray]:
        """The events ``idx`` of the datasets ``fields``, as numpy arrays in the order asked.

        Arguments:
            idx: ``None`` (every event), a ``slice``, or integer indices in any order (repeats allowed).
                Integer indices are read with one h5py selection per dataset: a slice when they are
                contiguous or dense, else an increasing point selection; the order asked is restored.
            fields: names among :data:`~darkflow.events.schema.DATASETS`.

        Shapes:
            ``B`` events asked: ``objects (B, R, F)``, ``mask (B, R)``, ``hlf (B, K)``, the others ``(B,)``.
        """
        unknown = [f for f in fields if f not in DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset {unknown[0]!r}; valid: {', '.join(DATASETS)}")
        if idx is None:
            idx = slice(None)
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self._n_events)
            if step == 1:
                return self._select(slice(start, max(start, stop)), None, fields)
            idx = np.arange(start, stop, step)
        indices = self.check_indices(idx)
        if len(indices) == 0:
            return self._select(slice(0, 0), None, fields)
        unique, inverse = np.unique(indices, return_inverse=True)
        start, stop = int(unique[0]), int(unique[-1]) + 1
        span = stop - start
        if span == len(unique):
            selection: slice | np.ndarray = slice(start, stop)
            order = inverse
        elif span <= _DENSE_FACTOR * len(unique):
            selection = slice(start, stop)
            order = unique[inverse] - start
        else:
            selection = unique
            order = inverse
        identity = len(order) == (stop - start if isinstance(selection, slice) else len(selection)) and bool(
            np.all(order == np.arange(len(order))))
        return self._select(selection, None if identity else order, fields)

    def _select(self, selection: slice | np.ndarray, order: np.ndarray | None,
                fields: Sequence[str]) -> dict[str, np.ndarray]:
        file = self._handle()
        try:
            values = {name: file[name][selection] for name in fields}
        except OSError as err:
            raise self._fail(f"cannot read its events (truncated or damaged: {_short(err)})") from None
        return values if order is None else {name: v[order] for name, v in values.items()}

    def blocks(self, size: int = BLOCK, fields: Sequence[str] = DATASETS,
               indices: Index = None) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
        """Consecutive blocks of at most ``size`` events: ``(where, arrays)`` for every block.

        ``where`` is the block's slice of event indices, or, with ``indices`` (sorted for streaming speed),
        its slice of positions in ``indices``; ``arrays`` as :meth:`read` returns them.
        """
        if size < 1:
            raise ValueError(f"block size must be at least 1, got {size}")
        if indices is None:
            for lo in range(0, self._n_events, size):
                where = slice(lo, min(lo + size, self._n_events))
                yield where, self.read(where, fields)
            return
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self._n_events))
        indices = self.check_indices(indices)
        for lo in range(0, len(indices), size):
            where = slice(lo, min(lo + size, len(indices)))
            yield where, self.read(indices[where], fields)

    def summary(self) -> str:
        """What ``darkflow inspect`` prints: counts, layout, processes, object and feature ranges."""
        from darkflow.events.summary import summary_text

        return summary_text(self)

    # ------------------------------------------------------------------ handle life cycle

    def close(self) -> None:
        """Close the file handle of this process; the next read reopens it."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the h5py handle (for DataLoader workers started with spawn or forkserver)."""
        return {**self.__dict__, "_file": None, "_pid": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, events={self._n_events}, rows={self._n_rows}, "
                f"features={self.features})")


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:160] or type(err).__name__

