#!/usr/bin/env python
"""CFLOW-AD speed and quality (issue 16) on four image sets, every model on the same images:

* ``texture96``: crops of scikit-image's brick photograph, test crops with a pasted patch of gravel and exact
  masks (:mod:`darkflow.cflow.textures`), 160 training images of 96 x 96 px;
* ``texture128``: the same kind of set with 300 training images of 128 x 128 px;
* ``synthetic256``: procedural stripes with pasted defects, 256 x 256 px (:mod:`darkflow.cflow.synthetic`);
* ``jets32``: 32 x 32 jet images (QCD trains, boosted tops are the anomalies; image-level labels only).

1. DarkFlow's defaults (``cflow_default``: built-in encoder, Gaussian start, cflow-coupling decoders), the
   closed-form Gaussian ``--model mvg`` on the same features, and the PCA-reconstruction baseline: training
   seconds and images/s, inference images/s, image AUROC, pixel AUROC. The flow must reach at least the MVG's
   AUROCs (it starts from that Gaussian).
2. The same-backbone comparison with anomalib's CFLOW (resnet18 with random weights, layer1..layer3, same
   image size, blocks, clamp, condition size and epochs; each with its own fiber batching: anomalib's 256
   fibers a step, ours the default large batches), both run in ``benchmarks/.venv-anomalib`` (torch 2.14.1,
   torchvision 0.29.1, anomalib; created here when missing, about 6 GB): training and inference time ratios
   ours / anomalib (target <= 0.5) and the AUROCs side by side. Each side trains twice (``--rounds``) and
   scores the test images three times a round; the shortest times are compared, since noise on a shared
   machine only adds time.

    python benchmarks/bench_cflow.py            # full (about 15 minutes on 2 cores)
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
OUR_PACKAGES = ["scikit-image", "nflows==0.14", "torchdiffeq==0.2.5", "h5py==3.16.0", "pydantic>=2.5,<3", "pyyaml", "tqdm",
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
    """The image sets (reused when present)."""
    from darkflow.cflow.synthetic import write_synthetic
    from darkflow.cflow.textures import write_texture_set
    from darkflow.generate.run import GenerateConfig, generate
    from darkflow.jetimages import JetImagesConfig, make_jet_images

    tag = "quick" if quick else "full"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    sets: dict[str, dict] = {}
    textures = {"texture96": (96, (40, 10, 10) if quick else (160, 40, 40), 0),
                "texture128": (128, (60, 10, 10) if quick else (300, 80, 80), 1)}
    for name, (size, n, seed) in textures.items():
        folder = OUTPUT / f"{name}_{tag}"
        if not (folder / "train" / "good").is_dir():
            write_texture_set(folder, size=size, n_train=n[0], n_test_good=n[1], n_test_defect=n[2], seed=seed)
        sets[name] = {"kind": "folder", "train": str(folder), "test": str(folder), "image_size": size}
    synth = OUTPUT / f"synthetic256_{tag}"
    if not (synth / "train" / "good").is_dir():
        n = (16, 6, 3) if quick else (40, 10, 10)
        write_synthetic(synth, size=256, n_train=n[0], n_test_good=n[1], n_test_defect=n[2], seed=3)
    sets["synthetic256"] = {"kind": "folder", "train": str(synth), "test": str(synth), "image_size": 256}
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
    sets["jets32"] = {"kind": "jetimages", "train": [str(jets / "qcd_train.h5")],
                      "test": [str(jets / "qcd_test.h5"), str(jets / "top_test.h5")], "background": "qcd",
                      "image_size": 32}
    return sets


def load(data: dict):
    """The training and test :class:`~darkflow.cflow.imageset.ImageSet` of an image set, loaded once."""
    from darkflow.cflow.load import load_images

    return (load_images(data["train"], "train", background=data.get("background")),
            load_images(data["test"], "test", background=data.get("background")))


def ours(train, test, model: str, epochs: int | None) -> dict:
    """DarkFlow's recipe ``model`` (``default`` or ``mvg``) fitted on ``train``, scored on ``test``: seconds, rates and AUROCs."""
    from darkflow.cflow.config import load_cflow_config
    from darkflow.cflow.metrics import image_auroc, pixel_auroc
    from darkflow.cflow.score import predict
    from darkflow.cflow.train import fit_cflow

    config = load_cflow_config(model, {"training.epochs": epochs} if epochs and model != "mvg" else {})
    start = time.perf_counter()
    fitted, summary = fit_cflow(train, config, progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    maps, scores = predict(fitted, test.images)
    infer_s = time.perf_counter() - start
    return {
        "n_train": len(train), "n_test": len(test), "epochs": None if config.is_mvg else config.training.epochs,
        "train_s": train_s, "train_images_per_s": len(train) * (1 if config.is_mvg else config.training.epochs) / train_s,
        "infer_images_per_s": len(test) / infer_s, "stages": summary["seconds"],
        "image_auroc": image_auroc(scores, test.labels),
        "pixel_auroc": pixel_auroc(maps, test.masks) if test.masks is not None else None,
        "scores": scores, "labels": test.labels,
    }


def cli_train_seconds(folder: str) -> float:
    """Wall time of ``darkflow cflow train --data FOLDER`` with the defaults, as a user runs it (start-up,
    loading, training, calibration and writing the run included)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "darkflow.cli", "cflow", "train", "--data", folder, "--out",
                        str(Path(tmp) / "run"), "-q"], check=True, capture_output=True)
        return time.perf_counter() - start


def paired_sigma(a, b, labels, resamples: int = 2000, seed: int = 0) -> float | None:
    """Standard deviation of ``AUROC(a) - AUROC(b)`` over bootstrap resamples of the test images (both models
    scored the same images, so the difference is resampled pairwise)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    known = labels >= 0
    a, b, y = np.asarray(a)[known], np.asarray(b)[known], np.asarray(labels)[known]
    if len(set(y.tolist())) < 2:
        return None
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i].tolist())) == 2:
            diffs.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    return float(np.std(diffs, ddof=1))


def pca(train, test) -> dict:
    from darkflow.cflow.baseline import PCABaseline
    from darkflow.cflow.metrics import image_auroc, pixel_auroc

    maps, scores = PCABaseline().fit(train.images).score(test.images)
    return {"image_auroc": image_auroc(scores, test.labels),
            "pixel_auroc": pixel_auroc(maps, test.masks) if test.masks is not None else None}


def same_backbone(data: dict[str, dict], epochs: int, threads: int, rounds: int = 2) -> dict:
    python = ensure_venv()
    spec = {"datasets": [{"name": k, **v} for k, v in data.items()], "epochs": epochs, "batch_size": 16,
            "seed": 1, "threads": threads, "anomalib_lr": 1e-4, "rounds": rounds}
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
    parser.add_argument("--quick", action="store_true", help="small data and 2 epochs (a smoke run)")
    parser.add_argument("--skip-anomalib", action="store_true", help="only DarkFlow's models and the PCA baseline")
    parser.add_argument("--epochs", type=int, help="epochs of the same-backbone comparison (default 1)")
    parser.add_argument("--only", nargs="*", help="image sets to run (default: all)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="same-backbone trainings per side; the shortest is compared (default 2)")
    args = parser.parse_args()
    import torch

    threads = torch.get_num_threads()
    data = make_data(args.quick)
    if args.only:
        data = {k: v for k, v in data.items() if k in args.only}
    rows = []
    print(f"DarkFlow CFLOW-AD defaults (built-in encoder) beside the MVG and PCA, CPU, {threads} threads, "
          f"torch {torch.__version__}")
    print(f"{'data':<13s} {'model':<8s} {'train':>5s} {'test':>4s} {'train s':>8s} {'train img/s':>11s} "
          f"{'infer img/s':>11s} {'image AUROC':>11s} {'pixel AUROC':>11s}")
    for name, d in data.items():
        train, test = load(d)
        results = {"cflow": ours(train, test, "default", 2 if args.quick else None),
                   "mvg": ours(train, test, "mvg", None), "pca": pca(train, test)}
        results["cflow"]["image_auroc_diff_sigma"] = paired_sigma(results["cflow"]["scores"], results["mvg"]["scores"],
                                                                   results["cflow"]["labels"])
        for model, r in results.items():
            print(f"{name:<13s} {model:<8s} {r.get('n_train', 0):>5d} {r.get('n_test', 0):>4d} "
                  f"{fmt(r.get('train_s'), '.1f'):>8s} {fmt(r.get('train_images_per_s'), '.1f'):>11s} "
                  f"{fmt(r.get('infer_images_per_s'), '.1f'):>11s} {fmt(r['image_auroc']):>11s} "
                  f"{fmt(r['pixel_auroc']):>11s}")
        flow, mvg = results["cflow"], results["mvg"]
        for metric in ("image_auroc", "pixel_auroc"):
            if flow[metric] is None:
                continue
            diff = flow[metric] - mvg[metric]
            sigma = flow.get(f"{metric}_diff_sigma")
            ok = round(flow[metric], 3) >= round(mvg[metric], 3)
            spread = f" +- {sigma:.3f} (paired bootstrap over test images)" if sigma is not None else ""
            print(f"{name:<13s} CFLOW {metric.replace('_', ' ')} {flow[metric]:.3f} vs MVG {mvg[metric]:.3f}, "
                  f"difference {diff:+.4f}{spread}: {'flow >= its Gaussian' if ok else 'LOSES to its Gaussian'}")
            rows.append({"name": f"{name} CFLOW {metric.replace('_', ' ')}", "value": flow[metric], "unit": "",
                         "reference": mvg[metric], "target": ">= mvg", "ok": ok, "difference": diff,
                         "difference_sigma": sigma, "pca": results["pca"][metric]})
        rows += [
            {"name": f"{name} mvg {m.replace('_', ' ')}", "value": mvg[m], "unit": "", "reference": results["pca"][m],
             "target": None, "ok": None} for m in ("image_auroc", "pixel_auroc") if mvg[m] is not None]
        rows += [
            {"name": f"{name} CFLOW default train", "value": flow["train_s"], "unit": "s",
             "reference": flow["train_images_per_s"], "target": None, "ok": None, "epochs": flow["epochs"],
             "n_train": flow["n_train"], "stages": flow["stages"]},
            {"name": f"{name} CFLOW default inference", "value": flow["infer_images_per_s"], "unit": "images/s",
             "reference": None, "target": None, "ok": None, "n_test": flow["n_test"]},
            {"name": f"{name} mvg fit", "value": mvg["train_s"], "unit": "s", "reference": None, "target": None,
             "ok": None},
        ]
        if name in ("texture96", "texture128") and not args.quick:
            limit = 180 if name == "texture96" else 300
            wall = cli_train_seconds(d["train"])
            print(f"{name:<13s} darkflow cflow train (defaults, {flow['n_train']} images): {wall:.0f} s "
                  f"(target < {limit} s: {'met' if wall < limit else 'MISSED'})")
            rows.append({"name": f"{name} darkflow cflow train, defaults", "value": wall, "unit": "s",
                         "reference": None, "target": f"< {limit}", "ok": wall < limit})
    if not args.skip_anomalib:
        epochs = args.epochs or 1
        same = {k: v for k, v in data.items() if k in ("synthetic256", "jets32")}
        res = same_backbone(same, epochs, threads, max(1, args.rounds))
        print(f"\nsame backbone (resnet18, random weights, layer1-3), {epochs} epoch(s), CPU, torch {res['torch']}; "
              f"shortest of {max(1, args.rounds)} trainings and of "
              f"{next(iter(res['results'].values()))['inference_passes']} scoring passes a round, each side")
        print(f"{'data':<14s} {'model':<9s} {'train img/s':>12s} {'infer img/s':>12s} {'image AUROC':>12s} "
              f"{'pixel AUROC':>12s}")
        for name, r in res["results"].items():
            for model in ("ours", "anomalib"):
                m = r[model]
                print(f"{name:<14s} {model:<9s} {m['train_images_per_s']:>12.2f} {m['infer_images_per_s']:>12.2f} "
                      f"{fmt(m['image_auroc']):>12s} {fmt(m['pixel_auroc']):>12s}")
            for stage in ("train", "infer"):
                ratio = r["ours"][f"{stage}_s"] / r["anomalib"][f"{stage}_s"]
                what = "training" if stage == "train" else "inference"
                print(f"{name:<14s} {what} time ours / anomalib = {ratio:.2f}   (target <= 0.5: "
                      f"{'met' if ratio <= 0.5 else 'MISSED'})")
                rows.append({"name": f"{name} {what} time ours/anomalib", "value": ratio, "unit": "ratio",
                             "reference": 1.0, "target": "<= 0.5", "ok": ratio <= 0.5, "epochs": epochs})
            macs = r["macs"]
            floor = macs["ours"] / macs["anomalib"]
            print(f"{name:<14s} inference multiply-adds per image: ours {macs['ours'] / 1e9:.3f} G, anomalib "
                  f"{macs['anomalib'] / 1e9:.3f} G (encoder {macs['encoder'] / 1e9:.3f} G in anomalib): ratio {floor:.2f}, "
                  "the time ratio at equal speed per multiply-add")
            rows += [
                {"name": f"{name} inference multiply-adds ours/anomalib", "value": floor, "unit": "ratio",
                 "reference": 1.0, "target": None, "ok": None},
                {"name": f"{name} same-backbone image AUROC", "value": r["ours"]["image_auroc"], "unit": "",
                 "reference": r["anomalib"]["image_auroc"], "target": None, "ok": None},
                {"name": f"{name} same-backbone pixel AUROC", "value": r["ours"]["pixel_auroc"], "unit": "",
                 "reference": r["anomalib"]["pixel_auroc"], "target": None, "ok": None},
                {"name": f"{name} same-backbone train", "value": r["ours"]["train_images_per_s"], "unit": "images/s",
                 "reference": r["anomalib"]["train_images_per_s"], "target": None, "ok": None},
            ]
    if args.only:
        print("(--only: figures printed, not recorded)")
    else:
        record("bench_cflow" + ("_quick" if args.quick else ""), rows)


if __name__ == "__main__":
    main()
