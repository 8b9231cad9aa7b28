"""ONNX export of a CFLOW run's scoring path: raw image in, anomaly map and image score out."""

from __future__ import annotations

from pathlib import Path

import torch

from darkflow.fileio import atomic_output


def export_onnx(run: Path, out: Path, opset: int = 18) -> Path:
    """Export the scoring path of ``run`` (a run directory or its ``cflow.pt``) to the ONNX file ``out``.

    The graph takes ``image`` ``(N, C, H, W)`` float32 raw images (as loaded: folders in ``[0, 1]``), with a
    dynamic batch size, and returns ``map`` ``(N, H, W)`` (calibrated anomaly maps) and ``score`` ``(N,)``.
    Checked before any work and written through :func:`darkflow.fileio.atomic_output`.
    """
    import warnings

    from darkflow.cflow.train import load_run

    out = Path(out)
    with atomic_output(out, inputs=[run]) as tmp:
        model, meta = load_run(run)
        example = torch.zeros(2, *meta["shape"])
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter chatter (deprecations, tracer notes) is not the user's
            torch.onnx.export(model, (example,), str(tmp), input_names=["image"], output_names=["map", "score"],
                              dynamic_axes={"image": {0: "batch"}, "map": {0: "batch"}, "score": {0: "batch"}},
                              opset_version=opset, dynamo=False)
    return out
