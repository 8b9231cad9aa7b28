"""The atomic writer of the HDF5 event file (DESIGN section 3).

The file is built under a temporary name beside its destination (:func:`darkflow.fileio.temporary_path`) and
takes its final name only in :meth:`EventFileWriter.close` (:func:`darkflow.fileio.publish`): a failed or
interrupted command leaves no new file and an existing one unchanged. Nothing in the file depends on when it
was written: datasets carry no timestamps and ``created`` comes from ``SOURCE_DATE_EPOCH`` or is left out, so
the same inputs and options give a byte-identical file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from darkflow import __version__
from darkflow.errors import ConfigError
from darkflow.events.schema import CHUNK_EVENTS, DATASETS, DTYPES, JSON_ATTRS
from darkflow.fileio import check_output, publish, temporary_path


def created_stamp() -> str | None:
    """The ``created`` attribute: ``SOURCE_DATE_EPOCH`` (seconds since 1970 UTC) as ISO 8601, else ``None``.

    Raises:
        ConfigError: ``SOURCE_DATE_EPOCH`` is set but is not a whole, non-negative number of seconds.
    """
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if text is None or text == "":
        return None
    try:
        seconds = int(text)
        if seconds < 0:
            raise ValueError
        moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"SOURCE_DATE_EPOCH={text!r} is not a whole number of seconds since 1970-01-01 UTC; "
                          "unset it or give e.g. SOURCE_DATE_EPOCH=$(date +%s)") from None
    return moment.isoformat(timespec="seconds")


class EventFileWriter:
    """Append events to a chunked HDF5 event file that appears under its final name only when complete.

    Arguments:
        path: the final ``.h5`` path (checked with :func:`darkflow.fileio.check_output` first).
        n_rows, n_features, n_hlf: ``R``, ``F`` and ``K`` of the arrays ``(N, R, F)`` and ``(N, K)``.
        compression: ``None``, ``"gzip"`` or ``"lzf"``.
        inputs: paths the output must not be (the command's inputs).

    Used as a context manager: :meth:`close` writes the attributes and publishes the file; leaving the block
    without it (an exception, an interrupt) removes the temporary file.

    Example::

        with EventFileWriter("sm.h5", 32, 4, 11, inputs=sources) as writer:
            writer.append(objects=..., mask=..., hlf=..., weight=..., event_id=..., process=...)
            writer.close({"label": "sm", "layout": {...}, ...})
    """

    def __init__(self, path: str | os.PathLike, n_rows: int, n_features: int, n_hlf: int,
                 compression: str | None = None, inputs: Iterable[str | os.PathLike] = ()) -> None:
        import h5py

        self.created = created_stamp()
        self.path = check_output(path, inputs)
        self.tmp = temporary_path(self.path)
        self.n = 0
        self._open = True
        try:
            self.file = h5py.File(self.tmp, "w", track_order=False)
            trailing = {"objects": (n_rows, n_features), "mask": (n_rows,), "hlf": (n_hlf,)}
            for name in DATASETS:
                shape = trailing.get(name, ())
                self.file.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=DTYPES[name],
                                         chunks=(CHUNK_EVENTS, *shape), compression=compression,
                                         track_times=False, track_order=False)
        except BaseException:
            self.abort()
            raise

    def append(self, **arrays: np.ndarray) -> None:
        """Append one block of events; every dataset of :data:`~darkflow.events.schema.DATASETS` is given,
        all with the same length ``B`` (``objects (B, R, F)``, ``mask (B, R)``, ``hlf (B, K)``, others ``(B,)``)."""
        n = len(arrays["objects"])
        for name in DATASETS:
            values = arrays[name]
            assert len(values) == n, f"{name} has {len(values)} events, expected {n}"
            dset = self.file[name]
            dset.resize(self.n + n, axis=0)
            dset[self.n : self.n + n] = values
        self.n += n

    def close(self, attrs: dict[str, Any]) -> Path:
        """Write the attributes (the JSON ones as JSON strings), close, and rename to the final path.

        A ``created`` key in ``attrs`` is ignored: ``created`` is :func:`created_stamp`, or absent.
        """
        for key, value in attrs.items():
            if key == "created":
                continue
            self.file.attrs[key] = json.dumps(value) if key in JSON_ATTRS else value
        if "darkflow_version" not in self.file.attrs:
            self.file.attrs["darkflow_version"] = __version__
        if self.created is not None:
            self.file.attrs["created"] = self.created
        self.file.close()
        publish(self.tmp, self.path)
        self._open = False
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (nothing is published)."""
        try:
            file = getattr(self, "file", None)
            if file is not None and file.id.valid:
                file.close()
        finally:
            self.tmp.unlink(missing_ok=True)
            self._open = False

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._open:
            self.abort()
