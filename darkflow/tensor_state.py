"""A key that changes whenever a tensor changes: for caches of values derived from weights (folded layers,
whitening constants) that must be rebuilt after an in-place update, a reload or a move to another device."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor


def tensor_state(tensors: Iterable[Tensor | None]) -> tuple:
    """``(device, address, version)`` of every tensor (``None`` skipped). Equal keys: no tensor was modified in
    place (its version counter), replaced or moved (its address) in between."""
    return tuple((t.device, t.data_ptr(), t._version) for t in tensors if t is not None)
