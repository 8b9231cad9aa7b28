#!/usr/bin/env python
"""How the CFLOW-AD defaults were chosen (issue 16): one change at a time from ``cflow_default``, on the
``texture96`` and ``jets32`` sets of ``bench_cflow.py`` (run that first to build them), for the CFLOW model and
its Gaussian special case (``mvg``). Prints image and pixel AUROC and the training seconds of every variant and
records them in ``benchmarks/results/cflow_ablation.json``.

    python benchmarks/cflow_ablation.py     # about 10 minutes on 2 cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _record import record  # noqa: E402

OUTPUT = HERE / "output" / "cflow"
VARIANTS: list[tuple[str, str, dict]] = [
    ("defaults", "default", {}),
    ("mvg (the Gaussian alone)", "mvg", {}),
    ("mvg, covariance shared", "mvg", {"gaussian.covariance": "shared"}),
    ("mvg, encoder resolution 32", "mvg", {"encoder.resolution": 32}),
    ("mvg, autoencoder pre-training 400 steps", "mvg", {"encoder.pretrain_steps": 400}),
    ("no Gaussian start (covariance none)", "default", {"gaussian.covariance": "none"}),
    ("clamp 1.9 (the paper's)", "default", {"decoder.clamp": 1.9}),
    ("8 blocks", "default", {"decoder.blocks": 8}),
    ("20 epochs", "default", {"training.epochs": 20}),
    ("fiber_fraction 1.0", "default", {"training.fiber_fraction": 1.0}),
    ("autoencoder pre-training 400 steps", "default", {"encoder.pretrain_steps": 400}),
]


def main() -> None:
    import torch

    from darkflow.cflow.config import load_cflow_config
    from darkflow.cflow.load import load_images
    from darkflow.cflow.metrics import image_auroc, pixel_auroc
    from darkflow.cflow.score import predict
    from darkflow.cflow.train import fit_cflow

    jets = OUTPUT / "jets_full"
    sets = {"texture96": (OUTPUT / "texture96_full", None, None),
            "jets32": ([jets / "qcd_train.h5"], [jets / "qcd_test.h5", jets / "top_test.h5"], "qcd")}
    rows = []
    print(f"CFLOW-AD ablation, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'data':<10s} {'variant':<42s} {'train s':>8s} {'image AUROC':>11s} {'pixel AUROC':>11s}")
    for name, (train_path, test_path, background) in sets.items():
        if not Path(train_path if isinstance(train_path, Path) else train_path[0]).exists():
            sys.exit(f"{train_path} is missing: run benchmarks/bench_cflow.py first")
        train = load_images(train_path, "train", background=background)
        test = load_images(test_path or train_path, "test", background=background)
        for label, recipe, overrides in VARIANTS:
            config = load_cflow_config(recipe, overrides)
            start = time.perf_counter()
            model, _ = fit_cflow(train, config, progress=False)
            seconds = time.perf_counter() - start
            maps, scores = predict(model, test.images)
            image = image_auroc(scores, test.labels)
            pixel = pixel_auroc(maps, test.masks) if test.masks is not None else None
            print(f"{name:<10s} {label:<42s} {seconds:>8.1f} {image:>11.3f} "
                  f"{'-' if pixel is None else format(pixel, '.3f'):>11s}", flush=True)
            rows.append({"name": f"{name} {label}", "value": image, "unit": "image AUROC", "reference": pixel,
                         "target": None, "ok": None, "seconds": seconds, "recipe": recipe, "overrides": overrides})
    record("cflow_ablation", rows)


if __name__ == "__main__":
    main()
