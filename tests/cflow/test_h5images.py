"""CFLOW-AD's HDF5 loaders: jet-image files and prepared event files as ImageSets."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.cflow import load_images
from darkflow.cflow.h5images import load_h5, slot_names
from darkflow.errors import InputError
from darkflow.jetimages import JetImagesConfig, make_jet_images


def particles(rng: np.random.Generator, n: int, prongs: int):
    """Per event one hard jet made of ``prongs`` narrow sprays (0.3 apart) plus soft noise."""
    import awkward as ak

    events = []
    for _ in range(n):
        eta0, phi0 = rng.uniform(-1.5, 1.5), rng.uniform(-3, 3)
        rows = []
        for k in range(prongs):
            a = 2 * np.pi * k / prongs
            m = 10
            rows.append(np.stack([rng.exponential(30, m) + 1, eta0 + 0.3 * np.cos(a) * (prongs > 1)
                                  + rng.normal(0, 0.02, m), phi0 + 0.3 * np.sin(a) * (prongs > 1)
                                  + rng.normal(0, 0.02, m), np.zeros(m)], axis=1))
        events.append(np.concatenate(rows))
    counts = [len(e) for e in events]
    flat = np.concatenate(events).astype(np.float32)
    return ak.unflatten(ak.zip({f: flat[:, i] for i, f in enumerate(("pt", "eta", "phi", "mass"))}), counts)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    base = tmp_path_factory.mktemp("h5images")
    rng = np.random.default_rng(1)
    out = {}
    for name, prongs, n in (("qcd", 1, 30), ("top", 3, 20)):
        data = random_nanoaod(rng, n)
        data["PFCands"] = particles(rng, n, prongs)
        root = write_tree(base / f"{name}.root", data)
        out[name] = base / f"{name}.h5"
        make_jet_images(JetImagesConfig(inputs=[str(root)], out=str(out[name]), size=16, label=name), progress=False)
    events = base / "events.h5"
    done = subprocess.run([sys.executable, "-m", "darkflow", "prepare", str(base / "qcd.root"), "--out", str(events),
                           "--label", "sm", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out["events"] = events
    return out


def test_jet_images_test_split_labels_names_weights(samples):
    s = load_h5([samples["qcd"], samples["top"]], "test", background="qcd")
    assert s.kind == "jetimages" and s.images.shape == (50, 1, 16, 16) and s.images.dtype == np.float32
    np.testing.assert_array_equal(s.labels, [0] * 30 + [1] * 20)
    assert s.masks is None
    with h5py.File(samples["top"]) as f:
        np.testing.assert_array_equal(s.images[30:], f["images"][:])
        assert s.names[30:] == [f"top/{i}" for i in f["event_id"][:]]
        np.testing.assert_allclose(s.weights[30:], f["weight"][:])
    assert s.meta["size"] == 16 and s.meta["radius"] == 0.8 and s.meta["labels"] == ["qcd", "top"]
    unknown = load_images([samples["qcd"], samples["top"]], "test")
    assert (unknown.labels == -1).all()


def test_train_split_keeps_the_background_files_only(samples):
    s = load_images([samples["qcd"], samples["top"]], "train", background="qcd")
    assert len(s) == 30 and (s.labels == 0).all() and s.meta["label"] == "qcd"
    every = load_images([samples["qcd"], samples["top"]], "train")
    assert len(every) == 50 and (every.labels == 0).all()
    with pytest.raises(InputError, match="no file has the label 'ttbar'"):
        load_images([samples["qcd"]], "train", background="ttbar")
    with pytest.raises(InputError, match="'ttbar' is not the label of any file"):
        load_images([samples["qcd"], samples["top"]], "test", background="ttbar")


def test_event_files_become_one_channel_object_feature_images(samples):
    s = load_images(samples["events"], "test", background="sm")
    with h5py.File(samples["events"]) as f:
        objects = f["objects"][:]
        layout = json.loads(f.attrs["layout"])
    assert s.kind == "events" and s.images.shape == (len(objects), 1, *objects.shape[1:])
    np.testing.assert_array_equal(s.images[:, 0], objects)
    assert (s.labels == 0).all()
    assert s.meta["features"] == layout["features"] == ["E", "pt", "eta", "phi"]
    assert s.meta["rows"][:2] == ["jet_0", "jet_1"] and s.meta["rows"][13] == "bjet_0" and s.meta["rows"][-1] == "met"
    assert len(s.meta["rows"]) == objects.shape[1] == len(set(s.meta["rows"]))


def test_slot_names():
    assert slot_names(["jet", "jet", "bjet", "met"]) == ["jet_0", "jet_1", "bjet_0", "met"]
    assert slot_names(["any", "any", "met"]) == ["any_0", "any_1", "met"]


def test_wrong_files_are_one_line_errors(samples, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputError, match="neither a jet-image file"):
        load_h5([other], "test")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        load_h5([text], "test")
    with pytest.raises(InputError, match="not both"):
        load_h5([samples["qcd"], samples["events"]], "test")
    small = tmp_path / "small.h5"
    with h5py.File(samples["qcd"]) as src, h5py.File(small, "w") as dst:
        dst["images"] = src["images"][:, :, :8, :8]
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        dst.attrs["size"] = 8
    with pytest.raises(InputError, match="differs from the first file"):
        load_h5([samples["qcd"], small], "test")
