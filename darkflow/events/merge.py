"""Event files from event files: :func:`merge` concatenates (e.g. ``--shard`` outputs), :func:`subset` selects,
:func:`append_events` copies one file into an open writer (merge, and the shards of ``prepare --workers``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from darkflow.errors import InputError
from darkflow.events.file import BLOCK, EventFile
from darkflow.events.writer import EventFileWriter
from darkflow.fileio import check_output

MERGE_KEYS = ("layout", "hlf_names", "channel", "objects_definition")
"""Attributes every merged file must share with the first."""


def merge(paths: Sequence[str | os.PathLike], out: str | os.PathLike, label: str | None = None,
          block: int = BLOCK) -> dict[str, Any]:
    """Concatenate event files into ``out``, streaming in blocks of events; returns the written attributes.

    Process indices are remapped onto the union of the inputs' ``process_names`` (in order of first
    appearance); files whose layout, high-level features, channel or object definitions differ are refused.
    The counts ``n_read``, ``n_selected``, ``n_skipped`` and the ``inputs`` are summed over the files.
    """
    if not paths:
        raise InputError("merge needs at least one input file")
    check_output(out, paths)
    files = [EventFile(p) for p in paths]
    try:
        metas = [f.attrs for f in files]
        first = metas[0]
        for f, meta in zip(files[1:], metas[1:], strict=True):
            for key in MERGE_KEYS:
                if meta.get(key) != first.get(key):
                    raise InputError(
                        f"cannot merge {f.path}: its {key} differs from {files[0].path}'s; "
                        "prepare every input with the same `layout`, `channel` and `objects`"
                    )
        if sum(f.n_events for f in files) == 0:
            channel = files[0].channel.get("name", "none")
            raise InputError(
                f"no event in any of the {len(paths)} files to merge (channel {channel}, "
                f"{sum(m.get('n_read', 0) for m in metas)} events read in all); nothing is written"
            )
        names: list[str] = []
        for f in files:
            names += [n for n in f.process_names if n not in names]
        head = files[0]
        with EventFileWriter(out, head.n_rows, head.n_features, head.n_hlf, compression=head.compression,
                             inputs=paths) as writer:
            for f in files:
                append_events(writer, f, names, block)
            attrs = {k: v for k, v in first.items() if k not in ("created", "shard")}
            attrs.update(
                label=label or first.get("label", ""),
                process_names=names,
                inputs=[i for m in metas for i in m.get("inputs", [])],
                n_read=int(sum(m.get("n_read", 0) for m in metas)),
                n_selected=int(sum(m.get("n_selected", 0) for m in metas)),
                n_skipped=int(sum(m.get("n_skipped", 0) for m in metas)),
                merged_from=[str(p) for p in paths],
            )
            writer.close(attrs)
        return attrs
    finally:
        for f in files:
            f.close()


def append_events(writer: EventFileWriter, source: EventFile, names: Sequence[str], block: int = BLOCK) -> int:
    """Append every event of ``source`` to ``writer`` in blocks, its ``process`` indices remapped from
    ``source.process_names`` onto ``names`` (which must hold them all); returns the number of events."""
    remap = np.array([names.index(n) for n in source.process_names] or [0], dtype=np.int16)
    for _, part in source.blocks(block):
        part["process"] = remap[part["process"]]
        writer.append(**part)
    return source.n_events


def subset(path: str | os.PathLike, out: str | os.PathLike, indices: Sequence[int] | np.ndarray,
           label: str | None = None, block: int = BLOCK) -> dict[str, Any]:
    """Write the events ``indices`` of ``path`` to ``out`` in increasing index order; returns the attributes.

    Every attribute is kept except ``created``; ``label`` (default: the source's), ``n_selected`` (the number
    of events written) and ``subset_of`` (the source path) are set.
    """
    check_output(out, [path])
    with EventFile(path) as source:
        chosen = np.sort(source.check_indices(indices))
        with EventFileWriter(out, source.n_rows, source.n_features, source.n_hlf, compression=source.compression,
                             inputs=[path]) as writer:
            for _, part in source.blocks(block, indices=chosen):
                writer.append(**part)
            attrs = {k: v for k, v in source.attrs.items() if k != "created"}
            attrs.update(label=label or source.label, n_selected=len(chosen), subset_of=str(path))
            writer.close(attrs)
    return attrs
