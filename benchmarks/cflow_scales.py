#!/usr/bin/env python
"""Why CFLOW-AD's image AUROC can trail its Gaussian special case (issue 16): each scale's calibrated map alone,
for the defaults and ``--model mvg``, on a ``bench_cflow.py`` image set (default ``texture128``): image AUROC
(map maximum), pixel AUROC, and the median and 95 % quantile of the normal test images' map maxima in
validation standard deviations (how far a normal image's worst fiber reaches on that scale).

    python benchmarks/cflow_scales.py [texture128|texture96|synthetic256]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _record import record  # noqa: E402


def main() -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from darkflow.cflow.config import load_cflow_config
    from darkflow.cflow.load import load_images
    from darkflow.cflow.metrics import image_auroc, pixel_auroc
    from darkflow.cflow.train import fit_cflow

    name = sys.argv[1] if len(sys.argv) > 1 else "texture128"
    folder = HERE / "output" / "cflow" / f"{name}_full"
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: run benchmarks/bench_cflow.py first")
    train, test = load_images(folder, "train"), load_images(folder, "test")
    good = test.labels == 0
    rows = []
    print(f"{name}: each scale's calibrated map alone")
    print(f"{'model':<8s} {'scale':>5s} {'image AUROC':>11s} {'pixel AUROC':>11s} {'normal max median':>17s} "
          f"{'normal max 95%':>14s}")
    for recipe in ("default", "mvg"):
        model, _ = fit_cflow(train, load_cflow_config(recipe, {}), progress=False)
        with torch.inference_mode():
            nll = model.nll_maps(torch.from_numpy(test.images))
        for s, m in enumerate(nll):
            z = (m - model.calibration[s, 0]) / model.calibration[s, 1]
            up = F.interpolate(z[:, None], size=test.images.shape[2:], mode="bilinear")[:, 0].numpy()
            top = up.reshape(len(up), -1).max(axis=1)
            image, pixel = image_auroc(top, test.labels), pixel_auroc(up, test.masks)
            median, q95 = float(np.median(top[good])), float(np.quantile(top[good], 0.95))
            label = "cflow" if recipe == "default" else recipe
            print(f"{label:<8s} {s:>5d} {image:>11.3f} {pixel:>11.3f} {median:>17.2f} {q95:>14.2f}")
            rows.append({"name": f"{name} {label} scale {s} image AUROC", "value": image, "unit": "",
                         "reference": pixel, "target": None, "ok": None, "normal_max_median": median,
                         "normal_max_q95": q95})
    record(f"cflow_scales_{name}", rows)


if __name__ == "__main__":
    main()
