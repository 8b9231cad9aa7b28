"""Run files: a module's tensors plus JSON metadata, loadable with ``torch.load(weights_only=True)``.

Used by VAE/baseline runs (``model.pt``) and CFLOW-AD runs (``cflow.pt``) alike; never pickles objects.
Every way such a file can be wrong (not found, a folder or FIFO, empty, truncated, pickled, metadata that is
not a JSON object or lacks keys, weights that do not fit the model) is one line of :class:`InputError`.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from darkflow.errors import InputError
from darkflow.fileio import atomic_output, check_input

ZIP_MAGIC = b"PK\x03\x04"
"""The first bytes of every file ``torch.save`` writes (a zip archive)."""
PICKLE_PROTOCOL = b"\x80"
"""The first byte of a pickle (protocol 2 or later), as in torch's legacy format: refused as needing pickle."""


def save_weights(path: Path, module: Any, metadata: dict[str, Any]) -> None:
    """Write ``module``'s state dict and ``metadata`` (as a JSON string) to ``path``, atomically."""
    import torch

    with atomic_output(path) as tmp:
        torch.save({"state_dict": module.state_dict(), "metadata": json.dumps(metadata)}, tmp)


def load_weights(run: str | Path, filename: str, what: str, hint: str,
                 required: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The state dict and metadata of ``run`` (a run directory holding ``filename``, or the file itself).

    Arguments:
        required: metadata keys the caller needs (a file without one of them is refused).

    Raises:
        InputError: no such file (``"no {what} at PATH; {hint}"``), a folder, FIFO or device, an empty,
            truncated or damaged file, a file that needs pickle, one without ``state_dict`` and ``metadata``,
            metadata that is not a JSON object or lacks a ``required`` key, a state dict of non-tensors.
    """
    import torch

    path = Path(run)
    path = path / filename if path.is_dir() else path
    if not path.exists() and not path.is_symlink():
        raise InputError(f"no {what} at {path}; {hint}" if hint else f"no {what} at {path}")
    check_input(path, what)
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if not head:
        raise InputError(f"{path}: the {what} file is empty")
    if head != ZIP_MAGIC and not head.startswith(PICKLE_PROTOCOL):
        raise InputError(f"{path}: not a darkflow {what} file (not a file written by torch.save)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of files it then refuses
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path}: refused: the file needs pickle to load; only files written by darkflow "
                         "(tensors + JSON) are accepted") from None
    except Exception as err:  # noqa: BLE001 (torch raises RuntimeError, EOFError, KeyError, ... on a damaged file)
        reason = " ".join(str(err).split()).split(". ")[0][:120]
        raise InputError(f"{path}: the {what} file is truncated or damaged ({reason}); write it again") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "metadata" not in blob:
        raise InputError(f"{path}: not a darkflow {what} file (expected state_dict and metadata)")
    state, text = blob["state_dict"], blob["metadata"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: the {what} file's state_dict is not a mapping of names to tensors")
    try:
        meta = json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: the {what} file's metadata is not a JSON object; the file is damaged")
    missing = [key for key in required if key not in meta]
    if missing:
        raise InputError(f"{path}: the {what} file's metadata lacks {', '.join(missing)}; the file is damaged or "
                         "was not written by darkflow")
    return state, meta, path


def mismatch(expected: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """How the tensors of ``state`` differ from those of ``expected`` by name and shape, e.g.
    ``"2 missing (e.g. encoder.0.weight), 1 of another shape (e.g. flow.u)"``; None when they fit."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = [f"{len(names)} {kind} (e.g. {names[0]})" for kind, names in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if names]
    return ", ".join(parts) or None


def load_state(module: Any, state: Mapping[str, Any], path: Path, what: str) -> None:
    """Load ``state`` into ``module``, or raise one line that says how the weights do not fit the model
    the metadata describes (missing, unexpected and reshaped tensors)."""
    differ = mismatch(module.state_dict(), state)
    if differ:
        raise InputError(f"{path}: the {what}'s weights do not match the model its metadata describes: {differ} "
                         "tensor(s); the file is damaged or was written by another version")
    module.load_state_dict(state)
