"""Worker of ``bench_cflow.py``, run inside ``benchmarks/.venv-anomalib`` (torch 2.14.1, torchvision, anomalib):
DarkFlow's CFLOW-AD and anomalib's CFLOW with the same backbone (torchvision resnet18, random weights, the
paper's layer1..layer3), image size, coupling blocks, clamp, condition size and epochs, trained and timed on the same images on
the CPU; anomalib with 256 fibers a step, ours with its default large fiber batches (issue 16). Prints one JSON line.

Each side is trained ``spec["rounds"]`` times from the same seed and its test images are scored three times per
round; the shortest training and the shortest scoring pass of each side are compared (``timeit``'s rule: on a
shared machine, noise only ever adds time). The maps, scores and AUROCs are those of the first round.

anomalib's model is trained with the loop of its Lightning ``training_step`` (encoder features, a random fiber
permutation, one Adam step per fiber batch on ``-logsigmoid(log p / C)``), called directly so that both models
are timed without a Trainer around them; inference is its ``CflowModel.forward`` as anomalib runs it.

Usage: python _cflow_same_backbone.py SPEC.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

INFERENCE_PASSES = 3


def shortest_pass(score) -> tuple[float, object]:
    """``score()`` run ``INFERENCE_PASSES`` times: the shortest wall time and the last result."""
    times = []
    for _ in range(INFERENCE_PASSES):
        start = time.perf_counter()
        result = score()
        times.append(time.perf_counter() - start)
    return min(times), result


def standardize(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return [torch.from_numpy(((x - mean) / std).astype(np.float32)) for x in (train, *others)]


def three_channels(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def run_anomalib(train: np.ndarray, test: np.ndarray, spec: dict) -> dict:
    import einops
    import torch.nn.functional as F
    from anomalib.models.image.cflow.torch_model import CflowModel
    from anomalib.models.image.cflow.utils import get_logp, positional_encoding_2d

    torch.manual_seed(spec["seed"])
    model = CflowModel(backbone="resnet18", layers=("layer1", "layer2", "layer3"), pre_trained=False,
                       fiber_batch_size=spec["fiber_batch"], decoder="freia-cflow", condition_vector=128,
                       coupling_blocks=8, clamp_alpha=1.9, permute_soft=True)
    x_train, x_test = (three_channels(x) for x in standardize(train, test))
    params = [p for d in model.decoders for p in d.parameters()]
    opt = torch.optim.Adam(params, lr=spec["anomalib_lr"])
    model.encoder.eval()
    start = time.perf_counter()
    for _ in range(spec["epochs"]):
        order = torch.randperm(len(x_train))
        for lo in range(0, len(x_train), spec["batch_size"]):
            images = x_train[order[lo:lo + spec["batch_size"]]]
            with torch.no_grad():
                activation = model.encoder(images)
            for layer_idx, layer in enumerate(model.pool_layers):
                e = activation[layer].detach()
                b, c, h, w = e.shape
                pos = einops.repeat(positional_encoding_2d(model.condition_vector, h, w).unsqueeze(0),
                                    "b c h w-> (tile b) c h w", tile=b)
                c_r = einops.rearrange(pos, "b c h w -> (b h w) c")
                e_r = einops.rearrange(e, "b c h w -> (b h w) c")
                perm = torch.randperm(b * h * w)
                decoder = model.decoders[layer_idx]
                n_fib = max(1, (b * h * w) // model.fiber_batch_size)
                for k in range(n_fib):
                    stop = (k + 1) * model.fiber_batch_size if k < n_fib - 1 else b * h * w
                    idx = perm[k * model.fiber_batch_size:stop]
                    opt.zero_grad()
                    p_u, log_jac_det = decoder(e_r[idx], [c_r[idx]])
                    loss = -F.logsigmoid(get_logp(c, p_u, log_jac_det) / c)
                    loss.mean().backward()
                    opt.step()
    train_s = time.perf_counter() - start

    def score() -> tuple[np.ndarray, np.ndarray]:
        maps, scores = [], []
        for lo in range(0, len(x_test), spec["batch_size"]):
            out = model(x_test[lo:lo + spec["batch_size"]])
            amap = out.anomaly_map
            maps.append((amap[:, 0] if amap.ndim == 4 else amap).numpy())  # anomalib 2.7 returns (B, H, W)
            scores.append(out.pred_score.reshape(-1).numpy())
        return np.concatenate(maps), np.concatenate(scores)

    infer_s, (maps, scores) = shortest_pass(score)
    return {"train_s": train_s, "infer_s": infer_s, "maps": maps, "scores": scores}


def run_ours(train_set, test_set, spec: dict) -> dict:
    from darkflow.cflow.config import CflowConfig
    from darkflow.cflow.score import predict
    from darkflow.cflow.train import fit_cflow

    config = CflowConfig.model_validate({
        "image_size": spec["image_size"], "encoder": {"name": "resnet18", "weights": "none"},
        "decoder": {"blocks": 8, "clamp": 1.9, "pos_dim": 128},
        "training": {"epochs": spec["epochs"], "batch_size": spec["batch_size"], "seed": spec["seed"]}})
    start = time.perf_counter()
    model, _ = fit_cflow(train_set, config, progress=False)
    train_s = time.perf_counter() - start
    infer_s, (maps, scores) = shortest_pass(lambda: predict(model, test_set.images, batch_size=spec["batch_size"]))
    return {"train_s": train_s, "infer_s": infer_s, "maps": maps, "scores": scores}


def inference_macs(image_size: int, in_channels: int, blocks: int = 8, condition: int = 128) -> dict:
    """Multiply-adds of one image's inference, counted from the layer shapes: the resnet18 encoder (the same in
    both, but for a grey image's first convolution: one input channel in ours, three in anomalib's), our decoders
    (the context half of each block's first layer once per position, shared by every image of a batch, so left
    out) and anomalib's (the context concatenated to every fiber). Both apply a 64x64 /
    128x128 / 256x256 permutation matrix per block (FrEIA's soft permutation, our orthogonal one)."""
    import torch.nn as nn

    from darkflow.cflow.encoders import TorchvisionEncoder

    encoder = TorchvisionEncoder("resnet18", "none").eval()
    count = [0]
    stem = [0]

    def hook(module, _, out):
        macs = out.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        count[0] += macs
        if module is encoder.stem[0]:
            stem[0] = macs

    handles = [m.register_forward_hook(hook) for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    with torch.enable_grad():
        maps = encoder(torch.zeros(1, in_channels, image_size, image_size))
    for h in handles:
        h.remove()
    # a grey image: anomalib's stem convolves it repeated to 3 channels, ours with the kernel summed over them
    decoders = {"ours": -(stem[0] * 2 // 3 if in_channels == 1 else 0), "anomalib": 0}
    for m in maps:
        c, positions = m.shape[1], m.shape[2] * m.shape[3]
        split, k = c - c // 2, c // 2
        hidden = 2 * (split + condition)
        for name, first in (("ours", split), ("anomalib", split + condition)):
            decoders[name] += blocks * positions * (first * hidden + hidden * 2 * k + c * c)
    return {"encoder": count[0], "ours": count[0] + decoders["ours"], "anomalib": count[0] + decoders["anomalib"]}


def main() -> None:
    from darkflow.cflow.load import load_images
    from darkflow.cflow.metrics import image_auroc, pixel_auroc

    spec = json.loads(open(sys.argv[1]).read())
    torch.set_num_threads(spec["threads"])
    import lightning  # noqa: F401  (imported before any timing, as anomalib's import does for its model)
    results = {}
    for data in spec["datasets"]:
        size = data["image_size"] if data["kind"] == "folder" else None
        train_set = load_images(data["train"], "train", size, background=data.get("background"))
        test_set = load_images(data["test"], "test", size, background=data.get("background"))
        row = {"n_train": len(train_set), "n_test": len(test_set), "rounds": spec["rounds"],
               "inference_passes": INFERENCE_PASSES}
        cfg = {**spec, "image_size": data["image_size"], "fiber_batch": 256}
        runs = {"ours": [], "anomalib": []}
        for _ in range(spec["rounds"]):
            runs["ours"].append(run_ours(train_set, test_set, cfg))
            runs["anomalib"].append(run_anomalib(train_set.images, test_set.images, cfg))
        for name, outs in runs.items():
            first = outs[0]
            train_s, infer_s = min(o["train_s"] for o in outs), min(o["infer_s"] for o in outs)
            row[name] = {
                "train_s": train_s, "infer_s": infer_s, "train_s_rounds": [o["train_s"] for o in outs],
                "train_images_per_s": len(train_set) * spec["epochs"] / train_s,
                "infer_images_per_s": len(test_set) / infer_s,
                "image_auroc": image_auroc(first["scores"], test_set.labels),
                "pixel_auroc": (pixel_auroc(first["maps"], test_set.masks) if test_set.masks is not None else None),
            }
        row["macs"] = inference_macs(data["image_size"], train_set.images.shape[1])
        results[data["name"]] = row
    print("RESULT " + json.dumps({"torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
