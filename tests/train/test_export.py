"""``darkflow export --format onnx``: onnxruntime gives the PyTorch scores of ``darkflow score`` within 1e-4."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.cli import main
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError
from darkflow.train.export import export_vae_onnx
from darkflow.train.run import TrainOptions, load_model, load_train_config, train
from darkflow.train.score import score_file

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

PREVIOUS = {"model.reco_loss": "mse", "model.hlf_input": False, "model.default_score": "total",
            "standardize.rotate": "none", "standardize.reflect_eta": False, "training.kl_warmup": 0,
            "training.flow_warmup": 0}
"""The default before issue 14: the tests here check mechanisms on it (the recipe has its own tests)."""
SMALL = PREVIOUS | {"model.latent": 4, "model.context": 8, "model.hidden": 32, "model.channels": [8, 16],
         "model.flow_options": {"num_layers": 2}, "training.batch_size": 128, "training.epochs": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    files = {}
    for name, seed in (("sm", 0), ("other", 5)):
        src = write_tree(d / f"{name}.root", random_nanoaod(np.random.default_rng(seed), 600 if name == "sm" else 257))
        files[name] = d / f"{name}.h5"
        prepare(PrepareConfig(inputs=[str(src)], out=str(files[name]), label=name), progress=False)
    return files


def untrained(data, out, **extra):
    """A run directory as ``darkflow train`` writes it, without spending time on training."""
    from darkflow.checkpoint import save_weights
    from darkflow.models.scaler import Standardizer
    from darkflow.train.dataset import EventDataset
    from darkflow.train.run import build_model, model_scores, type_codes

    config = load_train_config("convvae", SMALL | extra)
    layout = EventDataset(data["sm"]).layout
    scaler = Standardizer(layout["features"], layout["rows"])
    codes = type_codes(layout["rows"])
    model = build_model(config, scaler, codes)
    out.mkdir()
    save_weights(out / "model.pt", model, {"config": config.model_dump(mode="json"), "scaler": scaler.to_dict(),
                                         "type_codes": codes, "layout": layout, "scores": list(model_scores(model))})
    return out


def trained(data, out, model="convvae", **extra):
    train(load_train_config(model, SMALL | extra if model == "convvae" else extra),
          TrainOptions(data=str(data["sm"]), out=str(out), progress=False))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("encoder, flow", [("conv", "planar"), ("graph", "maf")])
def test_onnx_scores_equal_pytorch(data, tmp_path, encoder, flow):
    run = trained(data, tmp_path / "run", **{"model.encoder": encoder, "model.flow": flow})
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["objects", "mask"]
    names = [o.name for o in session.get_outputs()]
    assert names[:3] == ["total", "reco", "kl"]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["layout"])["rows"][-1] == "met" and meta["default_score"] == "total"
    model, _ = load_model(run)
    with h5py.File(data["other"]) as h:  # raw arrays as stored, any batch size
        objects, mask = h["objects"][:], h["mask"][:]
    expected = score_file(model, data["other"])
    for lo, hi in ((0, 257), (0, 1), (100, 164)):
        got = dict(zip(names, session.run(None, {"objects": objects[lo:hi], "mask": mask[lo:hi]}), strict=True))
        for name in names:
            np.testing.assert_allclose(got[name], expected[name][lo:hi], rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.slow
def test_what_cannot_be_exported_says_so(data, tmp_path, capsys):
    run = untrained(data, tmp_path / "cnf", **{"model.flow": "cnf", "model.flow_options": {}})
    with pytest.raises(ConfigError, match="'cnf' flow cannot be exported to ONNX"):
        export_vae_onnx(run, tmp_path / "m.onnx")
    spline = untrained(data, tmp_path / "nsf", **{"model.flow": "nsf-ar"})
    with pytest.raises(ConfigError, match="'nsf-ar' flow cannot be exported to ONNX .nflows' rational-quadratic"):
        export_vae_onnx(spline, tmp_path / "m.onnx")
    forest = tmp_path / "forest"
    train(load_train_config("isoforest", {"model.n_estimators": 10}),
          TrainOptions(data=str(data["sm"]), out=str(forest), progress=False))
    assert main(["export", "--run", str(forest), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a isoforest run" in err and "VAE runs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".*tmp"))
    assert main(["export", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "run directory not found" in capsys.readouterr().err


@pytest.mark.slow
def test_hlf_input_model_exports_with_a_third_input(data, tmp_path):
    run = trained(data, tmp_path / "run", **{"model.reco_loss": "probabilistic", "model.hlf_input": True})
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(onnx_file)]) == 0
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["objects", "mask", "hlf"]
    names = [o.name for o in session.get_outputs()]
    assert names == ["total", "reco", "kl", "latent_nll", "combined"]
    model, _ = load_model(run)
    with h5py.File(data["other"]) as h:
        objects, mask, hlf = h["objects"][:], h["mask"][:], h["hlf"][:]
    expected = score_file(model, data["other"])
    for lo, hi in ((0, 257), (3, 4)):
        feed = {"objects": objects[lo:hi], "mask": mask[lo:hi], "hlf": hlf[lo:hi]}
        got = dict(zip(names, session.run(None, feed), strict=True))
        for name in names:
            np.testing.assert_allclose(got[name], expected[name][lo:hi], rtol=1e-4, atol=1e-4, err_msg=name)
