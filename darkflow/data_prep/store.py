"""The HDF5 event file (DESIGN section 3): atomic chunked writer, reader checks, merge and inspect."""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darkflow import __version__
from darkflow.errors import InputError
from darkflow.fileio import publish

DATASETS = ("objects", "mask", "hlf", "weight", "event_id", "process")
JSON_ATTRS = ("layout", "hlf_names", "process_names", "source", "channel", "objects_definition", "inputs")
CHUNK_EVENTS = 1024
"""Events per HDF5 chunk: small enough for random access by a data loader, large enough to stream."""


class EventFileWriter:
    """Append events to a chunked HDF5 file that appears under its final name only when complete.

    Data goes to a temporary file in the destination folder; :meth:`close` writes the attributes and
    renames it; an exception inside the ``with`` block removes it, so no partial output is left.

    Arguments:
        path: the final ``.h5`` path.
        n_rows, n_features, n_hlf: the array shape ``(N, R, F)`` and ``(N, K)``.
        compression: ``None``, ``"gzip"`` or ``"lzf"``.
    """

    def __init__(
        self, path: str | os.PathLike, n_rows: int, n_features: int, n_hlf: int, compression: str | None = None
    ) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise InputError(f"output folder does not exist: {self.path.parent}")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.file = h5py.File(self.tmp, "w")
        self.n = 0
        shapes = {
            "objects": ((n_rows, n_features), np.float32),
            "mask": ((n_rows,), np.bool_),
            "hlf": ((n_hlf,), np.float32),
            "weight": ((), np.float64),
            "event_id": ((), np.int64),
            "process": ((), np.int16),
        }
        for name, (shape, dtype) in shapes.items():
            self.file.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(CHUNK_EVENTS, *shape),
                compression=compression,
            )

    def append(self, **arrays: np.ndarray) -> None:
        """Append one chunk; every dataset in :data:`DATASETS` must be given with the same length."""
        n = len(arrays["objects"])
        for name in DATASETS:
            values = arrays[name]
            assert len(values) == n, f"{name} has {len(values)} events, expected {n}"
            dset = self.file[name]
            dset.resize(self.n + n, axis=0)
            dset[self.n : self.n + n] = values
        self.n += n

    def close(self, attrs: dict[str, Any]) -> Path:
        """Write the attributes, close and rename to the final path."""
        for key, value in attrs.items():
            self.file.attrs[key] = json.dumps(value) if key in JSON_ATTRS else value
        self.file.attrs.setdefault("darkflow_version", __version__)
        self.file.attrs.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        self.file.close()
        publish(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            self.abort()


def open_event_file(path: str | os.PathLike):
    """Open an event file read-only, checking that it is one (one-line errors otherwise)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"event file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise InputError(f"{path}: not an HDF5 file; expected an event file written by 'darkflow prepare'") from None
    missing = [d for d in DATASETS if d not in handle]
    if missing:
        handle.close()
        raise InputError(f"{path}: not a DarkFlow event file (missing dataset(s) {', '.join(missing)})")
    return handle


def read_attrs(handle) -> dict[str, Any]:
    """File attributes with the JSON ones decoded."""
    out = {}
    for key, value in handle.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if key in JSON_ATTRS and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def merge(paths: Sequence[str | os.PathLike], out: str | os.PathLike, label: str | None = None,
          block: int = 65_536) -> dict[str, Any]:
    """Concatenate event files (e.g. shards) into ``out``, streaming in blocks of events.

    Process indices are remapped onto the union of the inputs' ``process_names``; files whose layout,
    features or high-level features differ are refused. Returns the written attributes.
    """
    if not paths:
        raise InputError("merge needs at least one input file")
    handles = [open_event_file(p) for p in paths]
    try:
        metas = [read_attrs(h) for h in handles]
        first = metas[0]
        for p, meta in zip(paths[1:], metas[1:], strict=True):
            for key in ("layout", "hlf_names", "channel", "objects_definition"):
                if meta.get(key) != first.get(key):
                    raise InputError(
                        f"cannot merge {p}: its {key} differs from {paths[0]}'s; "
                        "prepare every input with the same `layout`, `channel` and `objects`"
                    )
        if sum(h["objects"].shape[0] for h in handles) == 0:
            channel = first.get("channel", {}).get("name", "none")
            raise InputError(
                f"no event in any of the {len(paths)} files to merge (channel {channel}, "
                f"{sum(m.get('n_read', 0) for m in metas)} events read in all); nothing is written"
            )
        names: list[str] = []
        for meta in metas:
            names += [n for n in meta.get("process_names", []) if n not in names]
        h0 = handles[0]
        n_rows, n_feat = h0["objects"].shape[1:]
        with EventFileWriter(out, n_rows, n_feat, h0["hlf"].shape[1],
                             compression=h0["objects"].compression) as writer:
            for h, meta in zip(handles, metas, strict=True):
                remap = np.array([names.index(n) for n in meta.get("process_names", [])] or [0], dtype=np.int16)
                for lo in range(0, h["objects"].shape[0], block):
                    part = {d: h[d][lo : lo + block] for d in DATASETS}
                    part["process"] = remap[part["process"]]
                    writer.append(**part)
            attrs = {k: v for k, v in first.items() if k not in ("created",)}
            attrs.update(
                label=label or first.get("label", ""),
                process_names=names,
                inputs=[i for m in metas for i in m.get("inputs", [])],
                n_read=int(sum(m.get("n_read", 0) for m in metas)),
                n_selected=int(sum(m.get("n_selected", 0) for m in metas)),
                n_skipped=int(sum(m.get("n_skipped", 0) for m in metas)),
                merged_from=json.dumps([str(p) for p in paths]),
            )
            attrs.pop("shard", None)
            writer.close(attrs)
        return attrs
    finally:
        for h in handles:
            h.close()
