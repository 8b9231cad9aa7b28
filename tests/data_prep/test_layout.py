"""Layouts: the single pT-ordered list with a type feature, derived features, and layout validation."""

from __future__ import annotations

import json
import math

import awkward as ak
import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree
from reference import TYPES, event_objects

from darkflow.data_prep.chunk import TYPE_CODES
from darkflow.data_prep.jagged import Jagged
from darkflow.data_prep.layout import Layout
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError


def test_single_list_layout_matches_reference(tmp_path):
    src = write_tree(tmp_path / "r.root", random_nanoaod(np.random.default_rng(5), 400))
    out = tmp_path / "single.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(out), layout="single_list"), progress=False)
    import uproot

    arrays = uproot.open(src)["Events"].arrays(library="np")
    with h5py.File(out) as h:
        obj, mask = h["objects"][:], h["mask"][:]
        layout = json.loads(h.attrs["layout"])
    assert layout["features"] == ["E", "pt", "eta", "phi", "type"]
    assert layout["rows"] == ["any"] * 20 + ["met"]
    for i in range(400):
        ev = {k: v[i] for k, v in arrays.items()}
        objs = event_objects(ev, "nanoaod")
        flat = sorted(((*o, TYPE_CODES[t]) for t in TYPES for o in objs[t]), key=lambda o: -o[1])[:20]
        n = len(flat)
        assert mask[i, :n].all() and not mask[i, n:20].any() and mask[i, 20]
        if n:
            np.testing.assert_allclose(obj[i, :n], np.array(flat), rtol=1e-6)
        assert (obj[i, n:20] == 0).all()
        np.testing.assert_allclose(obj[i, 20], [ev["MET_pt"], ev["MET_pt"], 0, ev["MET_phi"], 8], rtol=1e-6)


def test_derived_features_are_analytic():
    layout = Layout(features=["px", "py", "pz", "mass", "E", "type"],
                    blocks=[{"types": ["muminus"], "slots": 2}], met_row=True)
    mu = ak.Array([[{"E": math.hypot(10 * math.cosh(1.0), 3.0), "pt": 10.0, "eta": 1.0, "phi": 0.5}]])
    empty = ak.Array([[{"E": 0.0, "pt": 0.0, "eta": 0.0, "phi": 0.0}]])[:, :0]
    objects = {t: Jagged.from_awkward(empty) for t in TYPES} | {"muminus": Jagged.from_awkward(mu)}
    arr, mask = layout.build(objects, np.array([7.0]), np.array([-1.0]))
    assert arr.shape == (1, 3, 6) and mask.tolist() == [[True, False, True]]
    np.testing.assert_allclose(
        arr[0, 0], [10 * math.cos(0.5), 10 * math.sin(0.5), 10 * math.sinh(1.0), 3.0, mu.E[0, 0], 6], rtol=1e-5)
    np.testing.assert_allclose(arr[0, 2], [7 * math.cos(-1), 7 * math.sin(-1), 0, 0, 7, 8], rtol=1e-6, atol=1e-6)
    assert layout.rows == ["muminus", "muminus", "met"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"blocks": [{"types": ["tau"], "slots": 2}]}, "unknown object type"),
        ({"blocks": [{"types": ["jet"], "slots": 0}]}, "slots must be at least 1"),
        ({"blocks": [{"types": ["jet"], "slots": 2}, {"types": ["jet", "bjet"], "slots": 2}]}, "more than one block"),
        ({"blocks": [{"types": ["jet"], "slots": 2}], "features": ["pt", "rapidity"]}, "rapidity"),
    ],
)
def test_bad_layouts(tmp_path, spec, message):
    import yaml

    from darkflow.data_prep.layout import load_layout

    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message):
        load_layout(path)
