"""``darkflow prepare --workers N | --dask-scheduler ADDR``: entry ranges converted on a Dask cluster.

The inputs are cut into tasks of one file and at most ``chunk_size`` entries, aligned on the chunks the
single-process path reads. Each task runs :func:`convert_shard` on a worker: the same readers and
:func:`~darkflow.data_prep.convert.convert_chunk` (:func:`~darkflow.data_prep.convert.convert_range`), its
events written to a shard file of its own in the output's scratch folder (``.NAME.darkflow-XXXXXX.tmp``
beside the output), and only a small summary (counts, process names, the shard's name) goes back to the
client. The client appends the shards in input order to the one output file with the code of
``darkflow merge`` (:func:`darkflow.events.merge.append_events`), deleting each once copied, so the file is
the single-process one, dataset for dataset. At most two tasks per worker thread are in flight or waiting to
be copied: memory and scratch space stay bounded whatever the input size. The input files must be readable,
and the output's folder writable, from the workers (a shared file system on a cluster).

The cluster (:func:`darkflow.dask_cluster.connect`, shared with ``score``) is closed, a local one's workers
included, however the conversion ends: an error, SIGINT or SIGTERM (:class:`darkflow.errors.Interrupted`);
the scratch folder is removed after it.

``uproot.dask`` / dask-awkward are not used: the conversion works on numpy chunks with a known entry
range and must come back in order to one writer, which plain futures express directly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from darkflow.dask_cluster import result
from darkflow.data_prep.convert import ConversionSpec, convert_range
from darkflow.data_prep.features import HLF_NAMES


def tasks(readers, chunk_size: int) -> Iterator[tuple[str, int, int, int]]:
    """``(path, start, stop, index_offset)`` of every task, in input order, aligned on ``chunk_size``."""
    for reader in readers:
        start, stop = reader.start, reader.stop
        for lo in range(start, stop, chunk_size):
            yield str(reader.path), lo, min(lo + chunk_size, stop), getattr(reader, "index_offset", 0)


def convert_shard(spec: ConversionSpec, path: str, start: int, stop: int, index_offset: int,
                  shard: str) -> dict:
    """Convert entries ``[start, stop)`` of one input (run on a worker) and write the selected events to the
    event file ``shard`` (uncompressed, its ``process`` indexing the attribute ``process_names``).

    Returns the summary the client needs: ``shard`` (``None`` when no event was selected: no file),
    ``process_names`` (every process read, in order of first appearance), ``n_read``, ``n_selected``,
    ``n_bad``, ``n_skipped``.
    """
    from darkflow.events import EventFileWriter

    part = convert_range(spec, path, start, stop, index_offset)
    summary = {key: part.pop(key) for key in ("process_names", "n_read", "n_bad", "n_skipped")}
    n_selected = len(part["objects"])
    if n_selected:
        layout = spec.layout
        with EventFileWriter(shard, layout.n_rows, len(layout.features), len(HLF_NAMES)) as writer:
            writer.append(**part)
            writer.close({"layout": layout.describe(), "hlf_names": list(HLF_NAMES),
                          "process_names": summary["process_names"]})
    return summary | {"shard": shard if n_selected else None, "n_selected": n_selected}


def convert_on_cluster(client, spec: ConversionSpec, readers, writer, processes, bar,
                       scratch: Path) -> tuple[int, int, int, int]:
    """Run the tasks on ``client``'s cluster, their shards in the folder ``scratch``, and append the shards to
    ``writer`` in input order (each deleted once copied).

    Returns ``n_read, n_selected, n_bad, n_skipped``.
    """
    from darkflow.events import EventFile
    from darkflow.events.merge import append_events

    window = 2 * max(1, sum(client.nthreads().values()))
    todo = enumerate(tasks(readers, spec.chunk_size))
    running: deque = deque()
    n_read = n_selected = n_bad = n_skipped = 0

    def submit() -> None:
        for k, task in todo:
            running.append(client.submit(convert_shard, spec, *task, str(scratch / f"part-{k:06d}.h5"), pure=False))
            return

    try:
        for _ in range(window):
            submit()
        while running:
            part = result(running.popleft(), "converting entries of the inputs")
            submit()
            if part["process_names"]:  # registered in the order the single-process path meets them
                processes(np.array(part["process_names"], dtype=object))
            if part["shard"] is not None:
                with EventFile(part["shard"]) as shard:
                    append_events(writer, shard, processes.names)
                Path(part["shard"]).unlink()
            n_read += part["n_read"]
            n_bad += part["n_bad"]
            n_skipped += part["n_skipped"]
            n_selected += part["n_selected"]
            bar.update(part["n_read"])
    finally:
        for future in running:
            future.cancel()
    return n_read, n_selected, n_bad, n_skipped
