#!/usr/bin/env python
"""CFLOW-AD speed and quality on CPU (issue 7): a 256 x 256 synthetic image set with planted defects and
32 x 32 jet images (QCD trains, boosted tops are the anomalies).

1. DarkFlow's CFLOW-AD with its defaults (built-in encoder), in this venv: training and inference images/s,
   image AUROC (and pixel AUROC where there are masks), beside the PCA-reconstruction baseline's image AUROC.
2. The same-backbone comparison with anomalib's CFLOW (resnet18 with random weights, layer1..layer3, same
   image size, blocks, clamp, condition size, fiber batch and epochs), both run in
   ``benchmarks/.venv-anomalib`` (torch 2.14.1, torchvision 0.29.1, anomalib; created here when missing,
   about 6 GB): inference-time ratio ours / anomalib (target <= 0.7) and the AUROCs side by side.

    python benchmarks/bench_cflow.py            # full (tens of minutes on 2 cores)
    python benchmarks/bench_cflow.py --quick    # small smoke run (a few minutes)
    python benchmarks/bench_cflow.py --skip-anomalib
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _record import record  # noqa: E402

VENV = HERE / ".venv-anomalib"
OUTPUT = HERE / "output" / "cflow"
ANOMALIB_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "anomalib==2.7.0"]
OUR_PACKAGES = ["nflows==0.14", "torchdiffeq==0.2.5", "h5py==3.16.0", "pydantic>=2.5,<3", "pyyaml", "tqdm",
                "scikit-learn==1.9.1", "awkward==2.14.0", "uproot==5.7.7", "vector==1.9.0",
                "torch-geometric==2.8.1", "mplhep"]


def ensure_venv() -> Path:
    """``benchmarks/.venv-anomalib`` with anomalib, torchvision and DarkFlow (editable, its deps pinned)."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import anomalib, torchvision, nflows, darkflow.cflow.train"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} (torch 2.14.1 + torchvision + anomalib, about 6 GB) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *ANOMALIB_PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    subprocess.run([*pip, *OUR_PACKAGES, "torch==2.14.1"], check=True)
    subprocess.run(probe, check=True)
    return python


def make_data(quick: bool) -> dict[str, dict]:
    """The synthetic 256 x 256 set and the jet-image files (reused when present)."""
    from darkflow.cflow.synthetic import write_synthetic
    from darkflow.generate.run import GenerateConfig, generate
    from darkflow.jetimages import JetImagesConfig, make_jet_images

    tag = "quick" if quick else "full"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    synth = OUTPUT / f"synthetic256_{tag}"
    if not (synth / "train" / "good").is_dir():
        n = (16, 6, 3) if quick else (40, 10, 10)
        write_synthetic(synth, size=256, n_train=n[0], n_test_good=n[1], n_test_defect=n[2], seed=3)
    jets = OUTPUT / f"jets_{tag}"
    jets.mkdir(parents=True, exist_ok=True)
    n_train, n_test = (300, 100) if quick else (400, 200)
    os.environ.setdefault("XDG_CACHE_HOME", str(OUTPUT / "cache"))
    samples = {"qcd_train": ("qcd_boosted", n_train, 1), "qcd_test": ("qcd_boosted", n_test, 2),
               "top_test": ("ttbar_boosted", n_test, 3)}
    for name, (process, n, seed) in samples.items():
        if (jets / f"{name}.h5").exists():
            continue
        gen = jets / f"gen_{name}"
        generate(GenerateConfig(process=process, events=n, seed=seed, out=str(gen), constituents=True, workers=2),
                 progress=False)
        label = "top" if process == "ttbar_boosted" else "qcd"
        make_jet_images(JetImagesConfig(inputs=[str(gen / f"{process}.root")], out=str(jets / f"{name}.h5"),
                                        size=32, radius=0.8, label=label), progress=False)
    return {
        "synthetic256": {"kind": "folder", "train": str(synth), "test": str(synth), "image_size": 256,
                         "fiber_batch": 256},
        "jets32": {"kind": "jetimages", "train": [str(jets / "qcd_train.h5")],
                   "test": [str(jets / "qcd_test.h5"), str(jets / "top_test.h5")], "background": "qcd",
                   "image_size": 32, "fiber_batch": 64},
    }


def ours_default(data: dict, epochs: int | None) -> dict:
    """DarkFlow's CFLOW-AD with its default config (built-in encoder) and the PCA baseline."""
    from darkflow.cflow.baseline import PCABaseline
    from darkflow.cflow.config import CflowConfig
    from darkflow.cflow.load import load_images
    from darkflow.cflow.metrics import image_auroc, pixel_auroc
    from darkflow.cflow.score import predict
    from darkflow.cflow.train import fit_cflow

    size = data["image_size"] if data["kind"] == "folder" else None
    train = load_images(data["train"], "train", size, background=data.get("background"))
    test = load_images(data["test"], "test", size, background=data.get("background"))
    settings: dict = {"image_size": data["image_size"]}
    if epochs is not None:
        settings |= {"training": {"epochs": epochs}}
    config = CflowConfig.model_validate(settings)
    start = time.perf_counter()
    model, summary = fit_cflow(train, config, progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    maps, scores = predict(model, test.images, batch_size=config.training.batch_size)
    infer_s = time.perf_counter() - start
    pca = PCABaseline().fit(train.images)
    _, pca_scores = pca.score(test.images)
    return {
        "n_train": len(train), "n_test": len(test), "epochs": config.training.epochs,
        "train_images_per_s": len(train) * config.training.epochs / train_s,
        "infer_images_per_s": len(test) / infer_s,
        "image_auroc": image_auroc(scores, test.labels), "pca_image_auroc": image_auroc(pca_scores, test.labels),
        "pixel_auroc": pixel_auroc(maps, test.masks) if test.masks is not None else None,
    }


def same_backbone(data: dict[str, dict], epochs: int, threads: int) -> dict:
    python = ensure_venv()
    spec = {"datasets": [{"name": k, **v} for k, v in data.items()], "epochs": epochs, "batch_size": 16,
            "seed": 1, "threads": threads, "anomalib_lr": 1e-4}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    try:
        done = subprocess.run([str(python), str(HERE / "_cflow_same_backbone.py"), handle.name], capture_output=True,
                              text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    finally:
        os.unlink(handle.name)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"same-backbone worker failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data and 1 epoch (a smoke run)")
    parser.add_argument("--skip-anomalib", action="store_true", help="only DarkFlow's defaults and the PCA baseline")
    parser.add_argument("--epochs", type=int, help="epochs of the same-backbone comparison (default 1)")
    parser.add_argument("--our-epochs", type=int, default=3,
                        help="epochs of DarkFlow's defaults run (default 3 instead of the config's 10, for CPU time; "
                             "quick: 1)")
    args = parser.parse_args()
    import torch

    threads = torch.get_num_threads()
    data = make_data(args.quick)
    rows = []
    print(f"DarkFlow CFLOW-AD defaults (built-in encoder), CPU, {threads} threads, torch {torch.__version__}")
    print(f"{'data':<14s} {'train':>6s} {'test':>5s} {'train img/s':>12s} {'infer img/s':>12s} "
          f"{'image AUROC':>12s} {'PCA AUROC':>10s} {'pixel AUROC':>12s}  beats PCA")
    for name, d in data.items():
        r = ours_default(d, 1 if args.quick else args.our_epochs)
        ok = r["image_auroc"] is not None and r["pca_image_auroc"] is not None and r["image_auroc"] > r["pca_image_auroc"]
        print(f"{name:<14s} {r['n_train']:>6d} {r['n_test']:>5d} {r['train_images_per_s']:>12.2f} "
              f"{r['infer_images_per_s']:>12.2f} {fmt(r['image_auroc']):>12s} {fmt(r['pca_image_auroc']):>10s} "
              f"{fmt(r['pixel_auroc']):>12s}  {'yes' if ok else 'NO'}")
        rows += [
            {"name": f"{name} default train", "value": r["train_images_per_s"], "unit": "images/s", "reference": None,
             "target": None, "ok": None, "epochs": r["epochs"], "n_train": r["n_train"]},
            {"name": f"{name} default inference", "value": r["infer_images_per_s"], "unit": "images/s",
             "reference": None, "target": None, "ok": None, "n_test": r["n_test"]},
            {"name": f"{name} default image AUROC", "value": r["image_auroc"], "unit": "",
             "reference": r["pca_image_auroc"], "target": "> PCA baseline", "ok": ok},
            {"name": f"{name} default pixel AUROC", "value": r["pixel_auroc"], "unit": "", "reference": None,
             "target": None, "ok": None},
        ]
    if not args.skip_anomalib:
        epochs = args.epochs or 1
        res = same_backbone(data, epochs, threads)
        print(f"\nsame backbone (resnet18, random weights, layer1-3), {epochs} epoch(s), CPU, torch {res['torch']}")
        print(f"{'data':<14s} {'model':<9s} {'train img/s':>12s} {'infer img/s':>12s} {'image AUROC':>12s} "
              f"{'pixel AUROC':>12s}")
        for name, r in res["results"].items():
            for model in ("ours", "anomalib"):
                m = r[model]
                print(f"{name:<14s} {model:<9s} {m['train_images_per_s']:>12.2f} {m['infer_images_per_s']:>12.2f} "
                      f"{fmt(m['image_auroc']):>12s} {fmt(m['pixel_auroc']):>12s}")
            ratio = r["ours"]["infer_s"] / r["anomalib"]["infer_s"]
            print(f"{name:<14s} inference time ours / anomalib = {ratio:.2f}   (target <= 0.7: "
                  f"{'met' if ratio <= 0.7 else 'MISSED'})")
            rows += [
                {"name": f"{name} inference time ours/anomalib", "value": ratio, "unit": "ratio", "reference": 1.0,
                 "target": "<= 0.7", "ok": ratio <= 0.7, "epochs": epochs},
                {"name": f"{name} same-backbone image AUROC", "value": r["ours"]["image_auroc"], "unit": "",
                 "reference": r["anomalib"]["image_auroc"], "target": None, "ok": None},
                {"name": f"{name} same-backbone pixel AUROC", "value": r["ours"]["pixel_auroc"], "unit": "",
                 "reference": r["anomalib"]["pixel_auroc"], "target": None, "ok": None},
                {"name": f"{name} same-backbone train", "value": r["ours"]["train_images_per_s"], "unit": "images/s",
                 "reference": r["anomalib"]["train_images_per_s"], "target": None, "ok": None},
            ]
    record("bench_cflow" + ("_quick" if args.quick else ""), rows)


if __name__ == "__main__":
    main()
