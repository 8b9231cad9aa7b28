"""Source schemas: every ``kinematics`` kind, Delphes-style names, jagged one-per-event branches, defaults."""

from __future__ import annotations

import json
import math

import awkward as ak
import h5py
import numpy as np
import pytest
from conftest import write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare

SCHEMA_CARTESIAN = """
tree: Tracks
collections:
  jet:    {kinematics: cartesian, px: J_px, py: J_py, pz: J_pz, e: J_e}
  muon:   {kinematics: ptetaphie, pt: M_pt, eta: M_eta, phi: M_phi, e: M_e, charge: M_q}
  photon: {kinematics: ptetaphim, pt: G_pt, eta: G_eta, phi: G_phi}
met: {kinematics: cartesian, px: MEx, py: MEy}
"""


def test_cartesian_and_ptetaphie(tmp_path):
    jets = ak.zip({"px": [[30.0, -100.0], []], "py": [[40.0, 0.0], []], "pz": [[0.0, 50.0], []],
                   "e": [[60.0, 200.0], []]})
    muons = ak.zip({"pt": [[], [25.0]], "eta": [[], [0.5]], "phi": [[], [1.0]], "e": [[], [40.0]],
                    "q": ak.Array([[], [-1]], with_name=None)})
    photons = ak.zip({"pt": [[30.0], [10.0]], "eta": [[1.0], [0.0]], "phi": [[0.2], [0.0]]})
    data = {"J": jets, "M": muons, "G": photons, "MEx": np.array([3.0, 0.0]), "MEy": np.array([4.0, -2.0])}
    src = write_tree(tmp_path / "c.root", data, tree="Tracks")
    schema = tmp_path / "cart.yaml"
    schema.write_text(SCHEMA_CARTESIAN)
    out = tmp_path / "c.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(out), source=str(schema)), progress=False)
    with h5py.File(out) as h:
        obj, mask, ids, w = h["objects"][:], h["mask"][:], h["event_id"][:], h["weight"][:]
    # event 0: jets pt 100 (eta = asinh(50/100)) and 50 (eta 0), sorted by pT
    np.testing.assert_allclose(obj[0, 0], [200.0, 100.0, math.asinh(0.5), math.pi], rtol=1e-6)
    np.testing.assert_allclose(obj[0, 1], [60.0, 50.0, 0.0, math.atan2(40, 30)], rtol=1e-6)
    assert mask[0].sum() == 4  # two jets, the photon, MET
    np.testing.assert_allclose(obj[0, 28], [30.0 * math.cosh(1.0), 30.0, 1.0, 0.2], rtol=1e-6)
    np.testing.assert_allclose(obj[0, 31], [5.0, 5.0, 0.0, math.atan2(4, 3)], rtol=1e-6)
    # event 1: one mu- (rows 25..27), ptetaphie keeps the given energy; the 10 GeV photon fails pT > 20
    np.testing.assert_allclose(obj[1, 25], [40.0, 25.0, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(obj[1, 31], [2.0, 2.0, 0.0, -math.pi / 2], rtol=1e-6)
    assert mask[1].sum() == 2
    np.testing.assert_array_equal(ids, [0, 1])  # no event_id branch: running index
    np.testing.assert_array_equal(w, [1.0, 1.0])  # no weight branch: ones
    with h5py.File(out) as h:
        assert bool(h.attrs["simulation"]) is False  # a custom schema without a generator weight


def test_delphes_names_and_one_per_event_branches(tmp_path):
    n = 3
    data = {
        "Jet": ak.zip({"PT": [[50.0], [30.0, 80.0], []], "Eta": [[0.0], [0.1, -0.2], []],
                       "Phi": [[0.0], [1.0, 2.0], []], "Mass": [[5.0], [1.0, 2.0], []],
                       "BTag": ak.Array([[1], [0, 1], []])}),
        "Electron": ak.zip({"PT": [[20.0], [], []], "Eta": [[1.3], [], []], "Phi": [[0.1], [], []],
                            "Charge": ak.Array([[1], [], []])}),
        "Muon": ak.zip({"PT": [[], [], [17.0]], "Eta": [[], [], [1.1]], "Phi": [[], [], [-1.0]],
                        "Charge": ak.Array([[], [], [1]])}),
        "Photon": ak.zip({"PT": [[], [], [45.0]], "Eta": [[], [], [0.0]], "Phi": [[], [], [3.0]],
                          "E": [[], [], [45.0]]}),
        "MissingET": ak.zip({"MET": [[10.0], [20.0], [30.0]], "Phi": [[0.5], [0.6], [0.7]]}),
        "Event": ak.zip({"Weight": [[2.0], [3.0], [4.0]], "Number": ak.Array([[7], [8], [9]])}),
    }
    src = write_tree(tmp_path / "delphes.root", data, tree="Delphes", sep=".")
    out = tmp_path / "d.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(out)), progress=False)  # --source auto
    with h5py.File(out) as h:
        obj, mask, hlf = h["objects"][:], h["mask"][:], h["hlf"][:]
        np.testing.assert_array_equal(h["event_id"][:], [7, 8, 9])
        np.testing.assert_array_equal(h["weight"][:], [2.0, 3.0, 4.0])
        assert '"delphes"' in h.attrs["source"]
        assert bool(h.attrs["simulation"]) is True
        reqs = json.loads(h.attrs["objects_definition"])["requirements"]
    assert len(obj) == n
    np.testing.assert_allclose(obj[0, 13], [math.sqrt(50**2 + 25), 50.0, 0.0, 0.0], rtol=1e-6)  # b-jet row
    np.testing.assert_allclose(obj[0, 16, :2], [math.hypot(20 * math.cosh(1.3), 0.000511), 20.0], rtol=1e-6)
    np.testing.assert_allclose(obj[1, 0, 1], 30.0)
    np.testing.assert_allclose(obj[1, 13, 1], 80.0)
    np.testing.assert_allclose(obj[2, 22, 1], 17.0)  # mu+
    np.testing.assert_allclose(obj[2, 28], [45.0, 45.0, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(obj[:, 31, 0], [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(hlf[:, 4:], [[0, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 1]])
    assert mask.sum() == 3 + 3 + 3
    # Delphes isolates upstream: ID and isolation are recorded as not provided, the overlap removal applies
    assert reqs["eplus"] == {"applied": ["pt_min", "abs_eta_max"], "not_provided": ["id", "rel_iso_max"]}
    assert reqs["bjet"] == {"applied": ["pt_min", "abs_eta_max", "overlap_removal"], "not_provided": ["id"]}


@pytest.mark.parametrize(
    "bad, message",
    [
        ("collections: {jet: {kinematics: cartesian, px: a}}\nmet: {kinematics: ptphi, pt: x, phi: y}", "needs py, pz, e"),
        ("collections: {tau: {kinematics: ptetaphim, pt: a, eta: b, phi: c}}\nmet: {kinematics: ptphi, pt: x, phi: y}", "unknown collection 'tau'"),
        ("collections: {}\nmet: {kinematics: ptphi, pt: x, phi: y}\ncolour: red", "unknown key 'colour'"),
        ("collections: {muon: {kinematics: ptetaphim, pt: a, eta: b, phi: c}}\nmet: {kinematics: ptphi, pt: x, phi: y}", "needs a 'charge'"),
    ],
)
def test_bad_schemas(tmp_path, bad, message):
    from darkflow.data_prep.schema import load_schema
    from darkflow.errors import ConfigError

    path = tmp_path / "s.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError, match=message):
        load_schema(path)
