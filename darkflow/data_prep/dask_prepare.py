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

A local cluster (``workers``) is closed, workers included, however the conversion ends: an error, SIGINT or
SIGTERM (:class:`darkflow.errors.Interrupted`); the scratch folder is removed after it. Its worker processes
also get SIGTERM from the kernel when this process dies without cleaning up
(:func:`darkflow.signals.die_with_parent`).

``uproot.dask`` / dask-awkward are not used: the conversion works on numpy chunks with a known entry
range and must come back in order to one writer, which plain futures express directly.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from darkflow.data_prep.convert import ConversionSpec, convert_range
from darkflow.data_prep.features import HLF_NAMES
from darkflow.errors import ConfigError, InputError

INSTALL_HINT = "pip install 'darkflow[dask]' (dask and distributed)"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"`workers` / `dask_scheduler` need dask.distributed, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return distributed


WORKER_PRELOAD = "from darkflow.signals import worker_init; worker_init()"
"""Run in every local worker process at start-up (Dask treats a preload with spaces as code): ignore SIGINT,
die on SIGTERM and when the parent process dies."""


class Cluster:
    """A Dask client (and the local cluster it talks to, when this process started one).

    Used as a context manager: closes what it started (client first, then the local cluster and its worker
    processes), never a client it was given; every close is attempted even when one fails or an interrupt
    arrives during cleanup.
    """

    def __init__(self, client, owned: list) -> None:
        self.client = client
        self.owned = owned

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close what this process started, in order. An interrupt during one close is raised once every close
        has run; an error while closing (a worker already gone) is not: the conversion's outcome stands."""
        interrupt: BaseException | None = None
        while self.owned:
            thing = self.owned.pop(0)
            try:
                thing.close()
            except Exception:  # noqa: S112 (teardown noise must not stop the next close)
                continue
            except BaseException as err:
                interrupt = interrupt or err
        if interrupt is not None:
            raise interrupt


def check_address(scheduler: str | None) -> None:
    """A one-line :class:`InputError` for a ``dask_scheduler`` that is not an address (before any work)."""
    if scheduler is not None and not _looks_like_address(scheduler):
        raise InputError(f"`dask_scheduler` {scheduler!r} is not a scheduler address; give PROTOCOL://HOST:PORT "
                         "or HOST:PORT, e.g. tcp://10.0.0.1:8786 (printed by 'dask scheduler')")


def connect(workers: int | None, scheduler: str | None, timeout: float = 10.0, client=None) -> Cluster:
    """A client on ``client`` itself, a new ``LocalCluster`` of ``workers`` processes (one thread each),
    or the scheduler at ``scheduler``; one-line :class:`InputError` when it cannot be reached."""
    if client is not None:
        return Cluster(client, [])
    distributed = _distributed()
    check_address(scheduler)
    if workers is not None:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.CRITICAL,
                                           preload=[WORKER_PRELOAD])
        try:
            local = distributed.Client(cluster, set_as_default=False)
            return Cluster(local, [local, cluster])
        except BaseException:
            cluster.close()
            raise
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
            part = running.popleft().result()
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
