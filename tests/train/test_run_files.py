"""Damaged run files (``model.pt``): one line each, never a traceback; a pickled file stays refused."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import random_nanoaod, write_tree

from darkflow.checkpoint import load_weights, mismatch, save_weights
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError, InputError
from darkflow.fileio import leftovers
from darkflow.train.run import build_model, load_model, load_train_config, model_scores, type_codes

SMALL = {"model.latent": 4, "model.context": 8, "model.hidden": 16, "model.channels": [4, 8],
         "model.flow": "planar", "model.flow_options": {"num_layers": 1}, "model.hlf_input": False}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained run (model.pt as ``darkflow train`` writes it) and its state and metadata."""
    from darkflow.models.scaler import Standardizer
    from darkflow.train.dataset import EventDataset

    d = tmp_path_factory.mktemp("runfiles")
    src = write_tree(d / "sm.root", random_nanoaod(np.random.default_rng(0), 200))
    prepare(PrepareConfig(inputs=[str(src)], out=str(d / "sm.h5"), label="sm"), progress=False)
    config = load_train_config("convvae", SMALL)
    layout = EventDataset(d / "sm.h5").layout
    scaler = Standardizer(layout["features"], layout["rows"])
    codes = type_codes(layout["rows"])
    model = build_model(config, scaler, codes)
    meta = {"config": config.model_dump(mode="json"), "scaler": scaler.to_dict(), "type_codes": codes,
            "layout": layout, "scores": list(model_scores(model))}
    out = d / "run"
    out.mkdir()
    save_weights(out / "model.pt", model, meta)
    assert not leftovers(out)
    return out, model.state_dict(), meta


def write(path, state, metadata) -> None:
    path.parent.mkdir(exist_ok=True)
    torch.save({"state_dict": state, "metadata": metadata}, path)


def test_a_good_run_loads(run):
    out, state, meta = run
    model, loaded = load_model(out)
    assert loaded == meta and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert load_model(out / "model.pt")[1] == meta


def test_damaged_metadata_is_one_line(run, tmp_path):
    out, state, meta = run
    cases = {
        "not json": ("{config: nope", r"metadata is not a JSON object; the file is damaged"),
        "a list": ("[1, 2]", r"metadata is not a JSON object"),
        "empty object": ("{}", r"metadata lacks config, scaler, type_codes, layout; the file is damaged"),
        "no scaler": (json.dumps({k: v for k, v in meta.items() if k != "scaler"}), r"metadata lacks scaler;"),
        "bad scaler": (json.dumps(meta | {"scaler": {"mean": 1}}),
                       r"metadata does not describe a model \(KeyError: 'features'\); the file is damaged"),
        "config not a mapping": (json.dumps(meta | {"config": "vae"}), r"holds no config mapping"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name.replace(" ", "_") / "model.pt"
        write(path, state, text)
        with pytest.raises(InputError, match=message) as err:
            load_model(path.parent)
        assert "\n" not in str(err.value), name
    bad_config = tmp_path / "bad_config" / "model.pt"
    write(bad_config, state, json.dumps(meta | {"config": {"model": {"kind": "vae", "latent": 0}}}))
    with pytest.raises(ConfigError, match=r"model.pt: model.vae.latent: Input should be greater than 0"):
        load_model(bad_config)


def test_weights_that_do_not_fit_the_model_are_one_line(run, tmp_path):
    out, state, meta = run
    other = json.loads(json.dumps(meta))
    other["config"]["model"]["latent"] = 6  # the metadata describes a wider latent space than the weights hold
    path = tmp_path / "wider" / "model.pt"
    write(path, state, json.dumps(other))
    with pytest.raises(InputError, match=r"weights do not match the model its metadata describes: \d+ of another "
                                         r"shape \(e.g. [\w.]+\) tensor\(s\); the file is damaged"):
        load_model(path)
    dropped = dict(state)
    name = next(iter(dropped))
    del dropped[name]
    dropped["extra.weight"] = torch.zeros(2)
    path = tmp_path / "dropped" / "model.pt"
    write(path, dropped, json.dumps(meta))
    with pytest.raises(InputError, match=rf"1 missing \(e.g. {name}\), 1 unexpected \(e.g. extra.weight\)"):
        load_model(path)
    path = tmp_path / "not_tensors" / "model.pt"
    write(path, {"w": [1.0, 2.0]}, json.dumps(meta))
    with pytest.raises(InputError, match="state_dict is not a mapping of names to tensors"):
        load_model(path)
    assert mismatch({"a": torch.zeros(2)}, {"a": torch.ones(2)}) is None


def test_truncated_empty_foreign_and_pickled_files_are_one_line(run, tmp_path):
    out, _, _ = run
    good = (out / "model.pt").read_bytes()
    cases = {
        "truncated": (good[: len(good) // 2], r"the trained model file is truncated or damaged \(.*\); write it again"),
        "header only": (good[:64], r"truncated or damaged"),
        "empty": (b"", r"the trained model file is empty"),
        "text": (b"hello\n", r"not a darkflow trained model file \(not a file written by torch.save\)"),
        "an event file": (b"\x89HDF\r\n\x1a\n" + bytes(100), r"not a darkflow trained model file \(not a file"),
        "pickled": (pickle.dumps({"state_dict": object()}), r"refused: the file needs pickle to load"),
    }
    for name, (blob, message) in cases.items():
        path = tmp_path / name.replace(" ", "_") / "model.pt"
        path.parent.mkdir()
        path.write_bytes(blob)
        with pytest.raises(InputError, match=message) as err:
            load_model(path.parent)
        assert "needs pickle" not in str(err.value) or name == "pickled"
    zipped = tmp_path / "zipped" / "model.pt"
    zipped.parent.mkdir()
    torch.save({"state_dict": {}, "metadata": "{}", "payload": np.dtype("float32")}, zipped)  # a pickled object
    with pytest.raises(InputError, match="refused: the file needs pickle to load"):
        load_model(zipped)


def test_folders_fifos_and_missing_runs_are_named_as_such(tmp_path):
    with pytest.raises(InputError, match=r"no trained model at .*nothing; run 'darkflow train' first"):
        load_model(tmp_path / "nothing")
    (tmp_path / "dir" / "model.pt").mkdir(parents=True)
    with pytest.raises(InputError, match=r"model.pt is a folder; expected a file"):
        load_model(tmp_path / "dir")
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(InputError, match=r"fifo.pt is not a regular file \(a FIFO, socket or device\)"):
        load_model(tmp_path / "fifo.pt")
    with pytest.raises(InputError, match=r"no CFLOW model at .*none; run it first$"):
        load_weights(tmp_path / "none", "cflow.pt", "CFLOW model", "run it first")


def test_the_command_line_reports_a_truncated_run_in_one_line(run, tmp_path, capsys):
    from darkflow.cli import main

    out, _, _ = run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes((out / "model.pt").read_bytes()[:1000])
    data = out.parent / "sm.h5"
    assert main(["score", "--run", str(broken), "--data", str(data), "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated or damaged" in err[0] and "pickle" not in err[0]
    assert not (tmp_path / "s.h5").exists()


def test_export_checks_its_output_before_it_reads_the_run(run, tmp_path):
    from darkflow.train.export import export_vae_onnx

    out, _, _ = run
    before = (out / "model.pt").read_bytes()
    with pytest.raises(InputError, match="output folder does not exist"):
        export_vae_onnx(tmp_path / "no_run", tmp_path / "missing" / "m.onnx")  # the output is checked first
    with pytest.raises(InputError, match="is also an input"):
        export_vae_onnx(out, out / "model.pt")
    assert (out / "model.pt").read_bytes() == before and not leftovers(out)
