"""ONNX export of a CFLOW run's scoring path: raw image in, anomaly map and image score out."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from darkflow.errors import InputError
from darkflow.fileio import publish


def export_onnx(run: Path, out: Path, opset: int = 18) -> Path:
    """Export the scoring path of ``run`` (a run directory or its ``cflow.pt``) to the ONNX file ``out``.

    The graph takes ``image`` ``(N, C, H, W)`` float32 raw images (as loaded: folders in ``[0, 1]``), with a
    dynamic batch size, and returns ``map`` ``(N, H, W)`` (calibrated anomaly maps) and ``score`` ``(N,)``.
    Written to a temporary name and renamed when complete.
    """
    import warnings

    from darkflow.cflow.train import load_run

    model, meta = load_run(run)
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist")
    example = torch.zeros(2, *meta["shape"])
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.onnx", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter chatter (deprecations, tracer notes) is not the user's
            torch.onnx.export(model, (example,), tmp, input_names=["image"], output_names=["map", "score"],
                              dynamic_axes={"image": {0: "batch"}, "map": {0: "batch"}, "score": {0: "batch"}},
                              opset_version=opset, dynamo=False)
        return publish(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
