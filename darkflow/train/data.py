"""Training batches: whole batches read at once, from memory when the split fits, else from the event file.

A batch is one read (a slice of an in-memory array, or one sorted :meth:`EventFile.read`), with no per-event
dicts to collate; the DataLoader gets index lists from an :class:`EventBatchSampler`, which under DDP
hands every process its own share of each global batch (Lightning's own sampler injection is switched
off: it would wrap the batch sampler and pad the validation batches with repeats).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from darkflow.events import EventFile

FIELDS = ("objects", "mask", "hlf", "weight")
IN_MEMORY_BYTES = 2 * 2**30
"""Splits smaller than this (objects + mask) are loaded into memory; larger ones stream from disk."""


def memory_budget() -> int:
    """Bytes a split may take in memory: :data:`IN_MEMORY_BYTES`, at most a quarter of the free physical
    memory and a quarter of this process's address-space or data limit (``ulimit -v`` / ``-d``)."""
    import resource

    budget = IN_MEMORY_BYTES
    try:
        budget = min(budget, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):  # not every platform reports free memory
        pass
    for limit in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", resource.RLIMIT_AS)):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, soft // 4)
    return budget


class EventBatches(Dataset):
    """Batches of ``objects`` ``(B, R, F)``, ``mask`` ``(B, R)``, ``hlf`` ``(B, K)`` and ``weight`` ``(B,)`` of
    an event file.

    Arguments:
        path: the HDF5 event file, or an open :class:`EventFile` (not validated again).
        indices: the events of this split (e.g. the training split), sorted.
        in_memory: load the split into memory (``None``: when it is smaller than :func:`memory_budget`);
            otherwise every batch is read from the file when it is needed, so that memory stays bounded
            by a few batches whatever the file size.

    The values are not checked here: ``train`` checks the whole file once
    (:func:`darkflow.train.input_checks.check_training_values`).
    """

    def __init__(self, path: str | os.PathLike | EventFile, indices: Sequence[int] | np.ndarray,
                 in_memory: bool | None = None) -> None:
        self.events = path if isinstance(path, EventFile) else EventFile(path)
        self.path = str(self.events.path)
        self.indices = np.sort(self.events.check_indices(np.asarray(indices, dtype=np.int64)))
        per_event = 4 * self.events.n_rows * self.events.n_features + self.events.n_rows
        self.in_memory = per_event * len(self.indices) < memory_budget() if in_memory is None else in_memory
        self.arrays: dict[str, np.ndarray] | None = None
        if self.in_memory:
            self.arrays = self.events.read(self.indices, FIELDS)
            self.events.close()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: list[int]) -> dict[str, Tensor]:
        positions = np.sort(np.asarray(positions, dtype=np.int64))
        if self.arrays is not None:
            return {k: torch.from_numpy(v[positions]) for k, v in self.arrays.items()}
        return {k: torch.from_numpy(v) for k, v in self.events.read(self.indices[positions], FIELDS).items()}


def distributed_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process in the initialized process group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EventBatchSampler(Sampler[list[int]]):
    """Global batches of ``batch_size`` positions in ``range(n)``; each DDP process takes its slice.

    The order is a permutation drawn from ``(seed, epoch)`` (``shuffle``) or the file order. Every global
    batch is split into ``world`` near-equal contiguous parts and process ``rank`` takes part ``rank``,
    so that the processes see disjoint events and, together, exactly the batches one process would see
    (the gradient averaged by DDP is then the one-process gradient). ``drop_last`` drops a last partial
    global batch, which keeps the number of steps equal on every process.

    Arguments:
        n: events in the split; batch_size: events per global batch (all processes together).
        rank, world: this process and the number of processes (``None``: from ``torch.distributed``
            when iterated).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch: a new permutation per epoch."""
        self.epoch = epoch

    def _where(self) -> tuple[int, int]:
        found = distributed_rank()
        return (found[0] if self.rank is None else self.rank), (found[1] if self.world is None else self.world)

    def _global_batches(self) -> list[np.ndarray]:
        order = (np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        stop = self.n - self.n % self.batch_size if self.drop_last and self.n > self.batch_size else self.n
        return [order[lo : lo + self.batch_size] for lo in range(0, stop, self.batch_size)]

    def __iter__(self):
        rank, world = self._where()
        for batch in self._global_batches():
            part = np.array_split(batch, world)[rank]
            if len(part):
                yield part.tolist()

    def __len__(self) -> int:
        rank, world = self._where()
        return sum(len(np.array_split(b, world)[rank]) > 0 for b in self._global_batches())


def batch_loader(dataset: EventBatches, batch_size: int, shuffle: bool, num_workers: int = 0,
                 seed: int = 0) -> DataLoader:
    """A DataLoader yielding whole batches of ``dataset`` (random order when ``shuffle``), DDP-aware."""
    drop_last = shuffle and len(dataset) > batch_size
    sampler = EventBatchSampler(len(dataset), batch_size, shuffle, seed, drop_last)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
