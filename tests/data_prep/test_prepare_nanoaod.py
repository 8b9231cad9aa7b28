"""The real CMS Open Data NanoAOD file and random NanoAOD-like files, checked event by event against an
independent per-event computation from the values uproot reads (tests/data_prep/reference.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
from conftest import random_nanoaod, write_tree
from reference import branches, channel_pass, default_array, event_objects, hlf

from darkflow.data_prep.prepare import PrepareConfig, prepare


def _events(path, source="nanoaod"):
    names = [*branches(source), "MET_pt", "MET_phi", "genWeight", "event"]
    arrays = uproot.open(path)["Events"].arrays(names, library="np")
    n = len(arrays["event"])
    return [{k: v[i] for k, v in arrays.items()} for i in range(n)]


def _check_file(out, events, source="nanoaod", channel=None, **definitions):
    with h5py.File(out, "r") as h:
        objects, mask, feats = h["objects"][:], h["mask"][:], h["hlf"][:]
        weight, event_id = h["weight"][:], h["event_id"][:]
        assert h["objects"].dtype == np.float32 and h["mask"].dtype == bool
        assert h["weight"].dtype == np.float64 and h["event_id"].dtype == np.int64
        assert h["process"].dtype == np.int16
        assert h["objects"].chunks[0] <= 4096
        n_read = int(h.attrs["n_read"])
    expected = []
    for ev in events:
        objs = event_objects(ev, source, **definitions)
        if channel is None or channel_pass(channel, objs, float(ev["MET_pt"])):
            expected.append((ev, objs))
    assert n_read == len(events)
    assert len(objects) == len(expected) and objects.shape[1:] == (32, 4)
    for i, (ev, objs) in enumerate(expected):
        ref, ref_mask = default_array(objs, float(ev["MET_pt"]), float(ev["MET_phi"]))
        np.testing.assert_array_equal(mask[i], ref_mask)
        np.testing.assert_allclose(objects[i], ref, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(feats[i], hlf(objs, float(ev["MET_pt"]), float(ev["MET_phi"])), rtol=1e-6)
        assert event_id[i] == ev["event"]
        assert weight[i] == pytest.approx(float(ev["genWeight"]))
    return len(expected)


def test_real_nanoaod_default_layout(real_nanoaod, tmp_path):
    out = tmp_path / "ttbar.h5"
    res = prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(out), source="nanoaod_opendata2015",
                                chunk_size=64), progress=False)
    assert res.n_read == 200 and res.n_selected == 200
    events = _events(real_nanoaod, "nanoaod_opendata2015")
    _check_file(out, events, "nanoaod_opendata2015")
    with h5py.File(out, "r") as h:
        assert int(h["hlf"][:, 5].sum()) > 0, "a ttbar sample must have b-jets with CSVv2"
        assert json.loads(h.attrs["process_names"]) == [real_nanoaod.stem]
        assert json.loads(h.attrs["layout"])["rows"][-1] == "met"
        assert h.attrs["label"] == "ttbar"
        assert bool(h.attrs["simulation"]) is True  # a genWeight branch: simulated ttbar
        objects = json.loads(h.attrs["objects_definition"])
    assert objects["overlap_removal"] == [{"remove": ["jet", "bjet"], "near": ["eplus", "eminus", "muplus", "muminus",
                                                                              "photon"], "delta_r": 0.4}]
    reqs = objects["requirements"]
    assert reqs["jet"] == {"applied": ["pt_min", "abs_eta_max", "id", "overlap_removal"], "not_provided": []}
    assert reqs["muminus"] == {"applied": ["pt_min", "abs_eta_max", "id", "rel_iso_max"], "not_provided": []}


def test_real_nanoaod_auto_source_picks_filled_btag(real_nanoaod, tmp_path):
    out = tmp_path / "auto.h5"
    prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(out)), progress=False)
    with h5py.File(out, "r") as h:
        assert json.loads(h.attrs["source"])["name"] == "nanoaod_opendata2015"
    _check_file(out, _events(real_nanoaod, "nanoaod_opendata2015"), "nanoaod_opendata2015")


def test_real_nanoaod_unfilled_btag_warning(real_nanoaod, tmp_path):
    out = tmp_path / "deepcsv.h5"
    proc = subprocess.run([sys.executable, "-m", "darkflow", "prepare", str(real_nanoaod), "--out", str(out),
                           "--source", "nanoaod", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Jet_btagDeepB" in proc.stderr and "nanoaod_opendata2015" in proc.stderr
    assert "Muon_mediumId" in proc.stderr  # not filled in 2015 Open Data either: every muon fails it
    with h5py.File(out, "r") as h:
        assert json.loads(h.attrs["source"])["name"] == "nanoaod"
        assert (h["hlf"][:, 5] == 0).all()
        assert (h["hlf"][:, 8:10] == 0).all()
    _check_file(out, _events(real_nanoaod, "nanoaod"), "nanoaod")


@pytest.mark.parametrize("channel", ["chan1", "chan2a", "chan2b", "chan3"])
def test_channels_on_random_events(tmp_path, channel):
    rng = np.random.default_rng(7)
    data = random_nanoaod(rng, 3000)
    # Make the hadronic channels select something: boost the MET of a third of the events and the jets of
    # half of those (jets failing ID or near a lepton leave too few for chan1 otherwise).
    data["MET_pt"][::3] *= 6
    boost = np.where(np.arange(3000) % 6 == 0, 3.0, 1.0).astype(np.float32)
    data["Jet"] = ak.with_field(data["Jet"], data["Jet"].pt * boost, "pt")
    src = write_tree(tmp_path / "rand.root", data)
    out = tmp_path / f"{channel}.h5"
    res = prepare(PrepareConfig(inputs=[str(src)], out=str(out), channel=channel, chunk_size=501), progress=False)
    n = _check_file(out, _events(src), channel=channel)
    assert res.n_selected == n and 0 < n < 3000
    with h5py.File(out, "r") as h:
        assert json.loads(h.attrs["channel"])["name"] == channel
        assert int(h.attrs["n_selected"]) == n


def test_truncation_keeps_counts(tmp_path):
    rng = np.random.default_rng(3)
    data = random_nanoaod(rng, 200)
    data["Jet"] = ak.zip({"pt": np.full((200, 20), 100.0, np.float32) + np.arange(20, dtype=np.float32),
                          "eta": np.zeros((200, 20), np.float32), "phi": np.zeros((200, 20), np.float32),
                          "mass": np.zeros((200, 20), np.float32), "btagDeepB": np.zeros((200, 20), np.float32),
                          "jetId": np.full((200, 20), 6, np.int32)})
    data["Jet"] = ak.from_regular(data["Jet"])
    src = write_tree(tmp_path / "many.root", data)
    out = tmp_path / "many.h5"
    # kinematic objects: the 20 jets sit at one point, where a random lepton would remove them all
    prepare(PrepareConfig(inputs=[str(src)], out=str(out), objects="kinematic"), progress=False)
    with h5py.File(out, "r") as h:
        assert (h["hlf"][:, 4] == 20).all()
        assert h["mask"][:, :13].all()
        np.testing.assert_allclose(h["objects"][0, :13, 1], 119.0 - np.arange(13))


def test_chunk_size_does_not_change_output(tmp_path):
    src = write_tree(tmp_path / "r.root", random_nanoaod(np.random.default_rng(1), 1000))
    outs = []
    for cs in (1000, 97, 1):
        out = tmp_path / f"c{cs}.h5"
        prepare(PrepareConfig(inputs=[str(src)], out=str(out), chunk_size=cs, max_events=300 if cs == 1 else None),
                progress=False)
        outs.append(out)
    with h5py.File(outs[0]) as a, h5py.File(outs[1]) as b, h5py.File(outs[2]) as c:
        for name in ("objects", "mask", "hlf", "weight", "event_id", "process"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
            np.testing.assert_array_equal(a[name][:300], c[name][:])


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = np.remainder(phi1 - phi2 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def _isolated_leptons_and_photons(arrays):
    """Selected leptons and photons of the real file with the 2015 Open Data IDs, written with awkward here."""
    keep = {
        "Electron": (arrays.Electron_pt > 15) & (abs(arrays.Electron_eta) < 2.7) & (arrays.Electron_cutBased >= 3)
        & (arrays.Electron_pfRelIso03_all < 0.15),
        "Muon": (arrays.Muon_pt > 15) & (abs(arrays.Muon_eta) < 2.7) & arrays.Muon_isPFcand
        & (arrays.Muon_pfRelIso04_all < 0.15),
        "Photon": (arrays.Photon_pt > 20) & (abs(arrays.Photon_eta) < 2.37) & (arrays.Photon_cutBased >= 2)
        & (arrays.Photon_pfRelIso03_all < 0.15),
    }
    eta = ak.concatenate([arrays[f"{c}_eta"][k] for c, k in keep.items()], axis=1)
    phi = ak.concatenate([arrays[f"{c}_phi"][k] for c, k in keep.items()], axis=1)
    return eta, phi


def test_real_nanoaod_no_jet_near_a_lepton_or_photon(real_nanoaod, tmp_path):
    arrays = uproot.open(real_nanoaod)["Events"].arrays()
    lep_eta, lep_phi = _isolated_leptons_and_photons(arrays)
    out, loose = tmp_path / "tt.h5", tmp_path / "loose.h5"
    prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(out)), progress=False)
    prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(loose), objects="kinematic"), progress=False)
    with h5py.File(out) as h, h5py.File(loose) as hl:
        assert (h["hlf"][:, 4] <= 13).all() and (h["hlf"][:, 5] <= 3).all()  # every selected jet has a row
        jets, jet_mask = h["objects"][:, :16], h["mask"][:, :16]
        loose_jets, loose_mask = hl["objects"][:, :16], hl["mask"][:, :16]
    n_close = {"default": 0, "kinematic": 0}
    for i in range(len(arrays)):
        le, lp = ak.to_numpy(lep_eta[i]), ak.to_numpy(lep_phi[i])
        for key, objs, mask in (("default", jets, jet_mask), ("kinematic", loose_jets, loose_mask)):
            j = objs[i][mask[i]]
            n_close[key] += int((_delta_r(j[:, 2, None], j[:, 3, None], le[None], lp[None]) < 0.4).any(axis=1).sum())
    assert n_close["default"] == 0
    assert n_close["kinematic"] > 40, "without overlap removal, jets lie on the isolated leptons and photons"
    # the jets that remain are exactly the tight-ID jets of the file that no selected lepton or photon is near
    jet = (arrays.Jet_pt > 20) & (abs(arrays.Jet_eta) < 2.8) & ((arrays.Jet_jetId & 2) == 2)
    pairs = ak.cartesian([arrays.Jet_eta, lep_eta], nested=True)
    phis = ak.cartesian([arrays.Jet_phi, lep_phi], nested=True)
    dr = _delta_r(pairs["0"], phis["0"], pairs["1"], phis["1"])
    expected = ak.sum(jet & ~ak.any(dr < 0.4, axis=2), axis=1)
    np.testing.assert_array_equal(jet_mask.sum(axis=1), ak.to_numpy(expected))


def test_kinematic_objects_match_the_plain_cuts(real_nanoaod, tmp_path):
    out = tmp_path / "loose.h5"
    prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(out), objects="kinematic"), progress=False)
    _check_file(out, _events(real_nanoaod, "nanoaod_opendata2015"), "nanoaod_opendata2015", id_iso=False,
                overlap=False)
    with h5py.File(out) as h:
        reqs = json.loads(h.attrs["objects_definition"])["requirements"]
    assert reqs["photon"] == {"applied": ["pt_min", "abs_eta_max"], "not_provided": []}


def _one(values, dtype=np.float32):
    return ak.Array([np.asarray(v, dtype=dtype) for v in values])


def test_overlap_removal_edges(tmp_path):
    """Planted pairs: across phi = +-pi, just inside and outside 0.4, near leptons that fail a requirement."""
    jet_phi = [[3.10, 0.0, 0.0, 1.0, 2.0], [-3.0]]
    jet_eta = [[0.0, 0.39, 1.41, -1.0, -2.0], [0.0]]
    n = 2
    jets = ak.zip({"pt": _one([[100, 90, 80, 70, 60], [50]]), "eta": _one(jet_eta), "phi": _one(jet_phi),
                   "mass": _one([[5] * 5, [5]]), "btagDeepB": _one([[0.9, 0.1, 0.1, 0.1, 0.1], [0.1]]),
                   "jetId": _one([[6] * 5, [6]], np.int32)})
    # electron at phi -3.1 (0.083 from the first jet across the wrap), at (0, 0) (0.39 from the second jet)
    # and at (1, 0) (0.41 from the third jet); a muon failing isolation on the fourth jet; a photon failing
    # its ID on the fifth; in event 1 a 10 GeV electron (below pT 15) on the jet
    electrons = ak.zip({"pt": _one([[40, 30, 25], [10]]), "eta": _one([[0.0, 0.0, 1.0], [0.0]]),
                        "phi": _one([[-3.10, 0.0, 0.0], [-3.0]]), "mass": _one([[0.0] * 3, [0.0]]),
                        "charge": _one([[-1, 1, 1], [-1]], np.int32), "cutBased": _one([[4, 4, 4], [4]], np.int32),
                        "pfRelIso03_all": _one([[0.01, 0.01, 0.01], [0.0]])})
    muons = ak.zip({"pt": _one([[30], []]), "eta": _one([[-1.0], []]), "phi": _one([[1.0], []]),
                    "mass": _one([[0.1], []]), "charge": _one([[1], []], np.int32),
                    "mediumId": ak.Array([np.array([True]), np.array([], bool)]),
                    "pfRelIso04_all": _one([[0.15], []])})
    photons = ak.zip({"pt": _one([[30], []]), "eta": _one([[-2.0], []]), "phi": _one([[2.0], []]),
                      "mass": _one([[0.0], []]), "cutBased": _one([[1], []], np.int32),
                      "pfRelIso03_all": _one([[0.0], []])})
    data = {"Jet": jets, "Electron": electrons, "Muon": muons, "Photon": photons,
            "MET_pt": np.full(n, 10, np.float32), "MET_phi": np.zeros(n, np.float32),
            "genWeight": np.ones(n, np.float32), "event": np.arange(n, dtype=np.int64)}
    src = write_tree(tmp_path / "edges.root", data)
    out = tmp_path / "edges.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(out)), progress=False)
    with h5py.File(out) as h:
        obj, mask = h["objects"][:], h["mask"][:]
    # event 0: the b-jet (first) and the second jet go, the third (0.41), fourth and fifth stay
    assert mask[0, :16].sum() == 3 and not mask[0, 13]
    np.testing.assert_allclose(obj[0, :3, 1], [80, 70, 60])
    assert mask[1, 0] and obj[1, 0, 1] == pytest.approx(50)
    _check_file(out, _events(src))


def test_no_event_selected_fails_without_output(real_nanoaod, tmp_path, capsys):
    from darkflow.cli import main
    from darkflow.errors import InputError
    from darkflow.events import merge

    out = tmp_path / "chan1.h5"
    assert main(["prepare", str(real_nanoaod), "--out", str(out), "--channel", "chan1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ("no event of 200 read passes channel chan1 (HT >= 600, MET >= 200, MET/HT >= 0.2, >= 4 jet/bjet with "
            "pT > 50, >= 1 jet/bjet with pT > 200); choose another --channel or check the object definitions") in err
    assert list(tmp_path.iterdir()) == []
    # a shard that selects nothing is written (it is part of a merge) and says so; merging only such shards fails
    shards = [tmp_path / f"s{i}.h5" for i in range(2)]
    for i, shard in enumerate(shards):
        assert main(["prepare", str(real_nanoaod), "--out", str(shard), "--channel", "chan1", "--shard", f"{i}/2",
                     "-q"]) == 0
        assert "holds no event" in capsys.readouterr().err
        with h5py.File(shard) as h:
            assert len(h["objects"]) == 0 and int(h.attrs["n_read"]) == 100
    with pytest.raises(InputError, match="no event in any of the 2 files to merge"):
        merge(shards, tmp_path / "merged.h5")
    assert not (tmp_path / "merged.h5").exists()
