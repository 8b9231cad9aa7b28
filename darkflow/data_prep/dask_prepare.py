"""``darkflow prepare --workers N | --dask-scheduler ADDR``: entry ranges converted on a Dask cluster.

The inputs are cut into tasks of one file and at most ``chunk_size`` entries, aligned on the chunks the
single-process path reads. Each task runs :func:`darkflow.data_prep.prepare.convert_range` (the same
readers and :func:`~darkflow.data_prep.prepare.convert_chunk`) on a worker; the client writes the results
in input order into one HDF5 file, so the file is the single-process one, dataset for dataset. At most
two tasks per worker thread are in flight or waiting to be written: memory stays bounded whatever the
input size. The input files must be readable from the workers (a shared file system on a cluster).

``uproot.dask`` / dask-awkward are not used: the conversion works on numpy chunks with a known entry
range and must come back in order to one writer, which plain futures express directly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from darkflow.errors import ConfigError, InputError

INSTALL_HINT = "pip install 'darkflow[dask]' (dask and distributed)"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"`workers` / `dask_scheduler` need dask.distributed, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return distributed


class Cluster:
    """A Dask client (and the local cluster it talks to, when this process started one).

    Used as a context manager: closes what it started, never a client it was given.
    """

    def __init__(self, client, owned: list) -> None:
        self.client = client
        self.owned = owned

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        for thing in self.owned:
            thing.close()


def connect(workers: int | None, scheduler: str | None, timeout: float = 10.0, client=None) -> Cluster:
    """A client on ``client`` itself, a new ``LocalCluster`` of ``workers`` processes (one thread each),
    or the scheduler at ``scheduler``; one-line :class:`InputError` when it cannot be reached."""
    if client is not None:
        return Cluster(client, [])
    distributed = _distributed()
    if scheduler is not None and not _looks_like_address(scheduler):
        raise InputError(f"`dask_scheduler` {scheduler!r} is not a scheduler address; give PROTOCOL://HOST:PORT "
                         "or HOST:PORT, e.g. tcp://10.0.0.1:8786 (printed by 'dask scheduler')")
    if workers is not None:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=40)
        return Cluster(distributed.Client(cluster), [cluster])
    try:
        client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s ({reason}); start one with "
            "'dask scheduler' (and 'dask worker ADDR' on the nodes) or set `workers` to N for a local cluster"
        ) from None
    return Cluster(client, [client])


def _looks_like_address(text: str) -> bool:
    if "://" in text:
        scheme, _, rest = text.partition("://")
        return scheme.isidentifier() and bool(rest)
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def tasks(readers, chunk_size: int) -> Iterator[tuple[str, int, int, int]]:
    """``(path, start, stop, index_offset)`` of every task, in input order, aligned on ``chunk_size``."""
    for reader in readers:
        start, stop = reader.start, reader.stop
        for lo in range(start, stop, chunk_size):
            yield str(reader.path), lo, min(lo + chunk_size, stop), getattr(reader, "index_offset", 0)


def convert_on_cluster(client, spec, readers, writer, processes, bar) -> tuple[int, int, int, int]:
    """Run the tasks on ``client``'s cluster and append their results to ``writer`` in input order.

    Returns ``n_read, n_selected, n_bad, n_skipped``.
    """
    from darkflow.data_prep.prepare import convert_range

    window = 2 * max(1, sum(client.nthreads().values()))
    todo = tasks(readers, spec.chunk_size)
    running: deque = deque()
    n_read = n_selected = n_bad = n_skipped = 0

    def submit() -> None:
        for task in todo:
            running.append(client.submit(convert_range, spec, *task, pure=False))
            return

    try:
        for _ in range(window):
            submit()
        while running:
            part = running.popleft().result()
            submit()
            names = part.pop("process_names")
            if names:  # registered in the order the single-process path meets them
                part["process"] = processes(np.array(names, dtype=object))[part["process"]]
            read = part.pop("n_read")
            n_read += read
            n_bad += part.pop("n_bad")
            n_skipped += part.pop("n_skipped")
            n_selected += len(part["objects"])
            writer.append(**part)
            bar.update(read)
    finally:
        for future in running:
            future.cancel()
    return n_read, n_selected, n_bad, n_skipped

