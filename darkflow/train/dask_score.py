"""``darkflow score --workers N | --dask-scheduler ADDR``: the model's scores computed on a Dask cluster.

Each input is cut into parts of at most ``part_events`` events, a whole number of scoring batches, so that
every batch holds the events it holds in the single-process path (:func:`darkflow.train.score.score_file`
from event 0 in steps of ``batch_size``) and the scores are the same numbers. Each part runs
:func:`score_part` on a worker: the worker loads the run once (kept for the next parts, :func:`worker_model`),
on its GPU when it has one, scores the part's events and writes their scores to a part file of its own in the
output's scratch folder (``.NAME.darkflow-XXXXXX.tmp`` beside the output); only a summary goes back to the
client. The client (:func:`score_on_cluster`) reads the parts in input order, deletes each once read, and
gives every input's scores to :func:`darkflow.train.score.score`, which writes the scores file exactly as in
one process: the cut baselines, weights, ids and overlap checks are the client's, on the same code. The
file is bit for bit the single-process one where the workers run as many torch threads on the same kind of
device as the single process; otherwise the scores agree to float32 round-off (a sum split over other threads).

At most two parts per worker thread are in flight or waiting to be read, so scratch space stays bounded.
The run and the inputs must be readable, and the output's folder writable, from the workers (a shared file
system on a cluster).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PART_EVENTS = 16 * 4096
"""Events per part by default: sixteen scoring batches of :data:`darkflow.train.score.BATCH`."""


def parts(inputs: list[tuple[str, int]], part_events: int) -> Iterator[tuple[int, str, int, int]]:
    """``(input index, path, start, stop)`` of every part of the ``(path, n_events)`` inputs, in input order."""
    for index, (path, n) in enumerate(inputs):
        for lo in range(0, n, part_events):
            yield index, path, lo, min(lo + part_events, n)


@dataclass(frozen=True)
class Placement:
    """Where a worker sits among the workers of its host: ``rank`` (0, 1, ... by address, to spread workers
    over the host's GPUs) and ``share`` (its Dask threads over the host's, its share of the host's cores)."""

    rank: int = 0
    share: float = 1.0


def placements(nthreads: dict[str, int]) -> dict[str, Placement]:
    """The :class:`Placement` of every worker of ``client.nthreads()`` (worker address -> its Dask threads);
    workers whose addresses name the same host share it."""
    hosts: dict[str, list[str]] = {}
    for address in nthreads:
        hosts.setdefault(address_host(address), []).append(address)
    out = {}
    for addresses in hosts.values():
        total = sum(max(1, int(nthreads[a])) for a in addresses)
        for rank, address in enumerate(sorted(addresses)):
            out[address] = Placement(rank, max(1, int(nthreads[address])) / total)
    return out


def address_host(address: str) -> str:
    """The host of a Dask address: ``tcp://10.0.0.1:8786`` -> ``10.0.0.1``, ``tls://[::1]:80`` -> ``::1``,
    ``inproc://10.0.0.1/123/4`` -> ``10.0.0.1``."""
    rest = address.partition("://")[2] or address
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    for stop in (":", "/"):
        rest = rest.partition(stop)[0]
    return rest


def device_and_threads(placement: Placement, cuda_devices: int, cores: int) -> tuple[str, int]:
    """A worker's torch device (``cuda:K``, its rank modulo the host's GPUs, else ``cpu``) and its CPU threads
    (its share of the host's ``cores``, at least 1)."""
    device = f"cuda:{placement.rank % cuda_devices}" if cuda_devices > 0 else "cpu"
    return device, max(1, int(cores * placement.share + 1e-9))


def heap_for_tensors() -> bool:
    """Let glibc keep freed batch tensors in the heap for the next batch; False where there is no ``mallopt``.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes glibc's mmap threshold
    at 128 KiB: every tensor of a batch is then mapped and unmapped again (page faults), and scoring is about
    30% slower than in a plain process (2.8 s against 2.1 s for 65,536 events, one thread). Tensors up to
    32 MiB come from the heap and up to 256 MiB of it is kept instead (1.9 s).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 2**20)) and bool(mallopt(m_trim_threshold, 256 * 2**20))


def worker_model(run: str, placement: Placement) -> tuple[Any, str]:
    """The model of ``run`` on this worker's device, and the device; loaded once per worker process
    (:func:`darkflow.train.run.load_model_once`). In a worker process started by a nanny it also sets the torch
    threads (:func:`device_and_threads`) and the heap (:func:`heap_for_tensors`); a worker running inside the
    client's process leaves both alone."""
    import torch

    from darkflow.threads import apply_threads, available_cores
    from darkflow.train.run import load_model_once

    device, threads = device_and_threads(placement, torch.cuda.device_count() if torch.cuda.is_available()
                                         else 0, available_cores())
    if multiprocessing.parent_process() is not None:  # a worker process of its own, not the client's
        heap_for_tensors()
        if device == "cpu" and torch.get_num_threads() != threads:
            apply_threads(threads)
    return load_model_once(run, device), device


def _placement(where: dict[str, Placement]) -> Placement:
    try:
        from distributed import get_worker

        return where.get(get_worker().address, Placement())
    except (ImportError, ValueError):
        return Placement()


def score_part(run: str, path: str, start: int, stop: int, batch_size: int, part: str,
               where: dict[str, Placement]) -> dict[str, Any]:
    """Score events ``[start, stop)`` of the event file ``path`` (run on a worker) and write one float64
    dataset per score to the HDF5 file ``part`` (attribute ``keys``: the scores in the model's order).

    Returns ``part``, ``events`` (``stop - start``), ``keys`` and the ``device`` used; ``where`` maps worker
    addresses to their :class:`Placement`.
    """
    import h5py

    from darkflow.train.score import score_file

    model, device = worker_model(run, _placement(where))
    scores = score_file(model, path, batch_size, start=start, stop=stop, device=device)
    with h5py.File(part, "w") as handle:
        for key, value in scores.items():
            handle.create_dataset(key, data=value)
        handle.attrs["keys"] = json.dumps(list(scores))
    return {"part": part, "events": stop - start, "keys": list(scores), "device": device}


def score_on_cluster(client, run: str | Path, inputs: list[tuple[str, int]], scratch: Path, batch_size: int,
                     part_events: int, devices: set[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The scores of every ``(path, n_events)`` input in order, as :func:`darkflow.train.score.score_file`
    gives them, computed on ``client``'s cluster; the part files go to the folder ``scratch`` and are
    deleted once read. ``devices`` collects the devices the workers used.

    Close the iterator (``contextlib.closing``) when the caller stops early: the parts not yet run are
    cancelled.
    """
    import h5py

    from darkflow.dask_cluster import result

    run = os.path.abspath(run)
    scratch = Path(os.path.abspath(scratch))
    where = placements(client.nthreads())
    window = 2 * max(1, sum(client.nthreads().values()))
    todo = enumerate(parts([(os.path.abspath(p), n) for p, n in inputs], part_events))
    running: deque = deque()

    def submit() -> None:
        for k, (index, path, lo, hi) in todo:
            future = client.submit(score_part, run, path, lo, hi, batch_size, str(scratch / f"part-{k:06d}.h5"),
                                   where, pure=False)
            running.append((index, path, lo, hi, future))
            return

    try:
        for _ in range(window):
            submit()
        for index in range(len(inputs)):
            scores: dict[str, list[np.ndarray]] = {}
            while running and running[0][0] == index:
                _, path, lo, hi, future = running.popleft()
                summary = result(future, f"scoring events {lo} to {hi} of {path}")
                submit()
                with h5py.File(summary["part"], "r") as handle:
                    for key in summary["keys"]:
                        scores.setdefault(key, []).append(handle[key][:])
                Path(summary["part"]).unlink()
                if devices is not None:
                    devices.add(summary["device"])
            yield {key: np.concatenate(values) for key, values in scores.items()}
    finally:
        for *_, future in running:
            future.cancel()
