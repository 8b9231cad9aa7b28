"""Run files: a module's tensors plus JSON metadata, loadable with ``torch.load(weights_only=True)``.

Used by VAE/baseline runs (``model.pt``) and CFLOW-AD runs (``cflow.pt``) alike; never pickles objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from darkflow.errors import InputError
from darkflow.fileio import publish


def save_weights(path: Path, module: Any, metadata: dict[str, Any]) -> None:
    """Write ``module``'s state dict and ``metadata`` (as a JSON string) to ``path``, atomically."""
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": module.state_dict(), "metadata": json.dumps(metadata)}, tmp)
    publish(tmp, path)


def load_weights(run: str | Path, filename: str, what: str, hint: str) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The state dict and metadata of ``run`` (a run directory holding ``filename``, or the file itself).

    Raises:
        InputError: no such file (``"no {what} at PATH; {hint}"``), a file that needs pickle, or one without
            ``state_dict`` and ``metadata``.
    """
    import torch

    path = Path(run)
    path = path / filename if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"no {what} at {path}; {hint}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and friends
        raise InputError(f"{path}: refused: the file needs pickle to load ({type(err).__name__}); only files "
                         "written by darkflow (tensors + JSON) are accepted") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "metadata" not in blob:
        raise InputError(f"{path}: not a darkflow {what} file (expected state_dict and metadata)")
    return blob["state_dict"], json.loads(blob["metadata"]), path
