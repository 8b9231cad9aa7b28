"""The trained model: batch-independent scores, the run file, event arrays and jet-image inputs."""

import json

import numpy as np
import pytest
import torch

from darkflow.cflow.config import CflowConfig
from darkflow.cflow.imageset import ImageSet
from darkflow.cflow.score import predict
from darkflow.cflow.train import RUN_FILE, fit_cflow, load_run
from darkflow.config import validate
from darkflow.errors import ConfigError, InputError


def test_score_alone_equals_score_in_batch(tiny_run, synthetic_folder):
    from darkflow.cflow.folder import load_folder

    model, meta = load_run(tiny_run)
    test = load_folder(synthetic_folder, "test")
    maps, scores = predict(model, test.images, batch_size=len(test))
    for i in (0, 4, len(test) - 1):
        alone_map, alone_score = predict(model, test.images[i : i + 1])
        # equal up to float32 round-off (BLAS blocks a batch differently from a single image)
        assert alone_score[0] == pytest.approx(scores[i], rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(alone_map[0], maps[i], rtol=1e-5, atol=1e-5)
    # the other images do not matter: the same image among different company scores the same
    shuffled = np.concatenate([test.images[::-1], test.images[i : i + 1]])
    assert predict(model, shuffled, batch_size=4)[1][-1] == pytest.approx(scores[i], rel=1e-5, abs=1e-5)


def test_inference_path_equals_the_training_path(tiny_run, synthetic_folder):
    """Without gradients the maps come from the fused standardization + whitening and the positional projections
    kept across batches; with gradients from the plain steps. The same NLL maps to float32 round-off, before and
    after a change of the decoder weights (the kept projections follow it)."""
    from darkflow.cflow.folder import load_folder

    model, _ = load_run(tiny_run)
    images = torch.from_numpy(load_folder(synthetic_folder, "test").images[:6])
    for _ in range(2):
        with torch.no_grad():
            fast = [model.nll_maps(images[:3]), model.nll_maps(images[3:])]
        with torch.enable_grad():
            plain = [[m.detach() for m in model.nll_maps(part)] for part in (images[:3], images[3:])]
        for got, want in zip(fast, plain, strict=True):
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            for p in model.decoders.parameters():
                p.mul_(1.1)


def test_run_file_is_weights_only(tiny_run):
    blob = torch.load(tiny_run / RUN_FILE, weights_only=True)
    meta = json.loads(blob["metadata"])
    assert meta["kind"] == "folder" and meta["shape"] == [1, 32, 32] and meta["encoder"] == "builtin"
    assert len(meta["calibration"]) == 2 and all(s > 0 for _, s in meta["calibration"])
    assert (tiny_run / "config.yaml").is_file() and (tiny_run / "metrics.csv").read_text().startswith("stage,epoch")


def _events(rng, n, anomalous_row=None):
    x = rng.normal(size=(n, 1, 32, 4)).astype(np.float32)
    x[:, :, 20:] = 0.0  # empty slots are zeros
    if anomalous_row is not None:
        x[:, 0, anomalous_row, :] += 6.0
    return x


def test_event_arrays_point_at_the_anomalous_object(quick_config):
    from darkflow.cflow.score import _scores_csv, evaluate

    rng = np.random.default_rng(0)
    rows = ["jet"] * 13 + ["bjet"] * 3 + ["eplus"] * 3 + ["eminus"] * 3 + ["muplus"] * 3 + ["muminus"] * 3 + \
        ["photon"] * 3 + ["met"]
    train = ImageSet(_events(rng, 64), np.zeros(64, np.int8), None, [f"sm/{i}" for i in range(64)], "events",
                     meta={"rows": rows, "features": ["E", "pt", "eta", "phi"], "label": "sm"})
    model, summary = fit_cflow(train, quick_config(32, epochs=2), progress=False)
    assert model.normalization == "column" and model.scales[0][1:] == (32, 4)
    test_x = np.concatenate([_events(rng, 20), _events(rng, 20, anomalous_row=5)])
    labels = np.r_[np.zeros(20), np.ones(20)].astype(np.int8)
    test = ImageSet(test_x, labels, None, [f"x/{i}" for i in range(40)], "events", meta=train.meta)
    maps, scores = predict(model, test.images)
    assert maps.shape == (40, 32, 4)
    auc = evaluate(maps, scores, test)["image_auroc"]
    print(f"event arrays: image AUROC {auc:.3f}")
    assert auc > 0.9
    lines = _scores_csv(test, maps, scores).splitlines()
    assert lines[0] == "name,label,score,slot,object"
    slots = [line.split(",")[4] for line in lines[21:]]
    assert slots.count("jet[5]") >= 15  # the planted object is the most anomalous slot


def test_non_conditional_flow_and_bad_config(quick_config):
    with pytest.raises(ConfigError, match="unknown flow"):
        validate(CflowConfig, {"decoder": {"flow": "nope"}})
    with pytest.raises(ConfigError, match="unknown key 'blokcs'"):
        validate(CflowConfig, {"decoder": {"blokcs": 4}})
    with pytest.raises(ConfigError, match="mvg model .* the Gaussian alone"):
        validate(CflowConfig, {"decoder": {"flow": "none"}, "gaussian": {"covariance": "none"}})
    with pytest.raises(InputError, match="at least 2"):
        fit_cflow(ImageSet(np.zeros((1, 1, 8, 8), np.float32), np.zeros(1, np.int8), None, ["a"], "folder"),
                  quick_config(8), progress=False)


def test_other_registry_flow_trains(quick_config):
    rng = np.random.default_rng(1)
    x = rng.random((10, 1, 16, 16)).astype(np.float32)
    images = ImageSet(x, np.zeros(10, np.int8), None, [str(i) for i in range(10)], "jetimages")
    config = quick_config(16).model_copy(update={"decoder": CflowConfig().decoder.model_copy(
        update={"flow": "realnvp", "blocks": 2, "pos_dim": 16})})
    model, summary = fit_cflow(images, config, progress=False)
    assert np.isfinite(summary["flow_losses"]).all()
    maps, scores = predict(model, x[:3])
    assert maps.shape == (3, 16, 16) and np.isfinite(scores).all()


def test_bf16_autocast_trains(quick_config):
    rng = np.random.default_rng(3)
    x = rng.random((10, 1, 16, 16)).astype(np.float32)
    images = ImageSet(x, np.zeros(10, np.int8), None, [str(i) for i in range(10)], "jetimages")
    model, summary = fit_cflow(images, quick_config(16, precision="bf16", epochs=2), progress=False)
    assert len(summary["flow_losses"]) == 2 and np.isfinite(summary["flow_losses"]).all()
    maps, scores = predict(model, x[:3])
    assert maps.dtype == np.float32 and np.isfinite(maps).all()


@pytest.mark.parametrize("epochs", [1, 10])
def test_one_cycle_schedule_of_any_length_trains(quick_config, epochs):
    """One step an epoch: 10 steps in all used to end torch's one-cycle warm-up at step 1 and divide by zero."""
    from darkflow.cflow.train import warmup_fraction

    assert warmup_fraction(10) * 10 != 1.0 and warmup_fraction(20) == 0.1
    x = np.random.default_rng(3).random((6, 1, 16, 16)).astype(np.float32)
    config = quick_config(16, epochs=epochs, fiber_batch=100_000)
    _, summary = fit_cflow(ImageSet(x, np.zeros(6, np.int8), None, [str(i) for i in range(6)], "jetimages"),
                           config, progress=False)
    assert summary["steps_per_epoch"] == 1 and len(summary["flow_losses"]) == epochs


def test_fiber_plan_covers_every_image_once_per_epoch():
    from darkflow.cflow.train import fiber_plan

    steps, per_step, take = fiber_plan(100, [2304, 576, 144], 4096, 0.25)
    assert take == [576, 144, 36] and per_step == 4096 // 576 and steps == -(-100 // per_step)
    assert fiber_plan(3, [16], 4096, 1.0) == (1, 3, [16])  # all fibers of all images in one step
    assert fiber_plan(5, [1000], 10, 1.0) == (5, 1, [1000])  # never fewer than one image a step
