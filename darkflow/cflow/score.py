"""``darkflow cflow score``: anomaly maps, image scores, metrics and overlays of a trained run.

Output folder::

    metrics.csv   image_auroc,pixel_auroc,aupro (empty cells where the data has no labels or masks)
    scores.csv    name,label,score (+ slot,object for event arrays: the most anomalous row)
    maps.h5       maps float32 (N, H, W), names, scores, labels
    overlays/     PNG overlays of the highest-scored images
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import NonNegativeInt

from darkflow.cflow.imageset import ImageSet
from darkflow.cflow.model import CFlowModel
from darkflow.config import Name, StrictModel, at_least_one
from darkflow.errors import InputError
from darkflow.fileio import atomic_output, write_text_atomic

METRICS = ("image_auroc", "pixel_auroc", "aupro")


def predict(model: CFlowModel, images: np.ndarray, batch_size: int = 64,
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps ``(N, H, W)`` and image scores ``(N,)`` of raw images ``(N, C, H, W)``: every scale of a
    batch of images in one pass, under ``torch.inference_mode``, written into preallocated float32 arrays."""
    model.eval().to(device)
    n, _, h, w = images.shape
    maps = np.empty((n, h, w), dtype=np.float32)
    scores = np.empty(n, dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch_size], dtype=np.float32))
            m, s = model(batch.to(device))
            maps[lo : lo + len(batch)] = m.float().cpu().numpy()
            scores[lo : lo + len(batch)] = s.float().cpu().numpy()
    return maps, scores


def evaluate(maps: np.ndarray, scores: np.ndarray, images: ImageSet) -> dict[str, float | None]:
    """Image AUROC (needs labels), pixel AUROC and AUPRO (need masks of anomalous images)."""
    from darkflow.cflow.metrics import aupro, image_auroc, pixel_auroc

    out: dict[str, float | None] = {"image_auroc": image_auroc(scores, images.labels), "pixel_auroc": None,
                                    "aupro": None}
    if images.masks is not None:
        known = images.labels >= 0
        out["pixel_auroc"] = pixel_auroc(maps[known], images.masks[known])
        out["aupro"] = aupro(maps[known], images.masks[known])
    return out


def slot_names(rows: list[str]) -> list[str]:
    """``jet[0], jet[1], ..., met[0]``: each row's object type and its index within the type."""
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        out.append(f"{r}[{seen.get(r, 0)}]")
        seen[r] = seen.get(r, 0) + 1
    return out


def _scores_csv(images: ImageSet, maps: np.ndarray, scores: np.ndarray) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    events = images.kind == "events"
    writer.writerow(["name", "label", "score", *(["slot", "object"] if events else [])])
    rows = images.meta.get("rows") or []
    names = slot_names(list(rows)) if rows else []
    for i, name in enumerate(images.names):
        extra = []
        if events:
            slot = int(maps[i].max(axis=1).argmax())
            extra = [slot, names[slot] if slot < len(names) else ""]
        writer.writerow([name, int(images.labels[i]), f"{scores[i]:.6g}", *extra])
    return buf.getvalue()


def _write_maps(path: Path, images: ImageSet, maps: np.ndarray, scores: np.ndarray) -> None:
    import h5py

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h:
        h.create_dataset("maps", data=maps.astype(np.float32), chunks=(1, *maps.shape[1:]))
        h.create_dataset("names", data=np.array(images.names, dtype=object), dtype=h5py.string_dtype())
        h.create_dataset("scores", data=scores.astype(np.float32))
        h.create_dataset("labels", data=images.labels.astype(np.int8))
        if images.masks is not None:
            h.create_dataset("masks", data=images.masks)
        h.attrs["kind"] = images.kind


def score_cflow(run: str | Path, data: list[str], out: str | Path, background: str | None = None,
                overlays: int = 8, batch_size: int = 64) -> dict[str, Any]:
    """Score ``data`` with the run, write the output folder, return the metrics and counts.

    The output folder is checked before any work (it may be neither the run nor an input) and built under a
    temporary name; its files then replace those of an existing folder (other files are kept). A failed or
    interrupted run leaves no new output and an existing folder unchanged.
    """
    from darkflow.cflow.load import load_images
    from darkflow.cflow.train import load_run

    out = Path(out)
    with atomic_output(out, directory=True, merge=True, inputs=[*data, run]) as staging:
        model, meta = load_run(run)
        size = meta["config"].get("image_size") if meta["kind"] == "folder" else None
        background = background if background is not None else meta.get("label")
        images = load_images(data if len(data) > 1 else data[0], "test", size, background)
        if tuple(images.images.shape[1:]) != tuple(meta["shape"]):
            raise InputError(f"the data's images are {tuple(images.images.shape[1:])} (C, H, W) but the run was "
                             f"trained on {tuple(meta['shape'])}; score data of the kind the run was trained on")
        if not np.isfinite(images.images).all():
            raise InputError("the images to score contain NaN or inf values")
        maps, scores = predict(model, images.images, batch_size)
        metrics = evaluate(maps, scores, images)
        write_text_atomic(staging / "metrics.csv", ",".join(METRICS) + "\n"
                          + ",".join("" if metrics[k] is None else f"{metrics[k]:.6f}" for k in METRICS) + "\n")
        write_text_atomic(staging / "scores.csv", _scores_csv(images, maps, scores))
        _write_maps(staging / "maps.h5", images, maps, scores)
        if overlays:
            from darkflow.cflow.overlay import write_overlays

            (staging / "overlays").mkdir()
            write_overlays(staging / "overlays", images, maps, scores, overlays)
    return {"metrics": metrics, "n": len(images), "out": out, "kind": images.kind,
            "notes": [images.meta["note"]] if images.meta.get("note") else []}


class CflowScoreConfig(StrictModel):
    """Options of ``darkflow cflow score``: the run, the images to score, the output folder, the normal label
    of ``.h5`` inputs (default: the run's) and the number of PNG overlays."""

    run: Name
    data: Annotated[list[Name], at_least_one("give an image folder (MVTec AD layout) or .h5 file(s)")]
    out: Name
    background: str | None = None
    overlays: NonNegativeInt = 8


@dataclass
class CflowScoreResult:
    """What ``darkflow cflow score`` wrote: the folder, the images scored and their metrics."""

    out: Path
    n: int
    kind: str
    metrics: dict[str, float | None]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The count of images, then every metric ('-' where the data has no labels or masks)."""
        return [f"scored {self.n} {self.kind} image(s) -> {self.out}",
                "  ".join(f"{k} {'-' if self.metrics[k] is None else format(self.metrics[k], '.4f')}" for k in METRICS)]


def run(config: CflowScoreConfig) -> CflowScoreResult:
    """``darkflow cflow score``: :func:`score_cflow`."""
    result = score_cflow(config.run, list(config.data), config.out, background=config.background,
                         overlays=config.overlays)
    return CflowScoreResult(Path(result["out"]), result["n"], result["kind"], result["metrics"],
                            list(result.get("notes", [])))
