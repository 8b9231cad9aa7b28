"""``darkflow generate``: real Pythia 8 samples checked on physics that cannot be faked, determinism,
round trips through ``darkflow prepare`` and the Dark Machines reader, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import signal_when_ready

from darkflow.data_prep.darkmachines import DarkMachinesReader
from darkflow.generate.run import GenerateConfig, generate

pytestmark = pytest.mark.slow

SAMPLES = {"ttbar": 300, "zprime_ttbar": 250, "zjets_nunu": 250, "dm_monojet": 250, "qcd": 250, "zjets_ll": 300}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    os.environ.setdefault("XDG_CACHE_HOME", str(out / "cache"))
    results = {}
    for name, n in SAMPLES.items():
        (res,) = generate(GenerateConfig(process=name, events=n, seed=11, out=str(out), format="both"),
                          progress=False).processes
        results[name] = res
    return out, results


def events(out, name):
    return uproot.open(out / f"{name}.root")["Events"].arrays()


def p4(arr, prefix):
    pt, eta, phi, m = (arr[f"{prefix}_{f}"] for f in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    return px, py, pz, e


def reclustered_dijet_mass(arr, radius=1.0):
    """Mass of the two leading large-radius jets built by merging R=0.4 jets within ``radius``."""
    px, py, pz, e = p4(arr, "Jet")
    eta, phi = arr.Jet_eta, arr.Jet_phi
    masses = []
    for i in range(len(arr)):
        if len(eta[i]) < 2:
            continue
        lead = [0, 1]
        comp = np.zeros((2, 4))
        for j in range(len(eta[i])):
            d = [np.hypot(eta[i][j] - eta[i][k], np.remainder(phi[i][j] - phi[i][k] + np.pi, 2 * np.pi) - np.pi)
                 for k in lead]
            k = int(np.argmin(d))
            if d[k] < radius:
                comp[k] += [px[i][j], py[i][j], pz[i][j], e[i][j]]
        tot = comp.sum(axis=0)
        masses.append(np.sqrt(max(tot[3] ** 2 - (tot[:3] ** 2).sum(), 0.0)))
    return np.array(masses)


def hadronic(arr):
    """Events without an isolated lepton or photon: jets within 0.4 of one are removed (overlap removal),
    so in the others part of a top decay is not in the jets (in a boosted t -> b l nu, the b jet is
    typically within 0.4 of the lepton)."""
    return arr[(ak.num(arr.Electron_pt) + ak.num(arr.Muon_pt) + ak.num(arr.Photon_pt)) == 0]


def test_zprime_mass_peak_near_2tev(samples):
    out, _ = samples
    m_zp = reclustered_dijet_mass(hadronic(events(out, "zprime_ttbar")))
    m_tt = reclustered_dijet_mass(hadronic(events(out, "ttbar")))
    assert len(m_zp) > 150
    hist, edges = np.histogram(m_zp, bins=np.arange(0, 3000, 200))
    peak = edges[np.argmax(hist)] + 100
    assert 1500 <= peak <= 2200, f"Z' large-R dijet mass peaks at {peak} GeV"
    assert 1400 < np.median(m_zp) < 2200
    assert np.median(m_tt) < 800


def test_met_where_neutrinos_or_dark_matter(samples):
    out, _ = samples
    med = {n: float(np.median(events(out, n).MET_pt)) for n in ("zjets_nunu", "dm_monojet", "qcd", "ttbar")}
    assert med["zjets_nunu"] > 80 and med["dm_monojet"] > 150, med
    assert med["qcd"] < 40, med
    assert med["dm_monojet"] > 3 * med["qcd"] and med["zjets_nunu"] > 2 * med["qcd"], med


def test_zjets_ll_has_opposite_sign_pairs(samples):
    out, _ = samples
    arr = events(out, "zjets_ll")
    n_e, n_m = ak.num(arr.Electron_pt), ak.num(arr.Muon_pt)
    two_e = (n_e == 2) & (n_m == 0)
    two_m = (n_m == 2) & (n_e == 0)
    assert ak.sum(two_e) + ak.sum(two_m) > 0.35 * len(arr)  # acceptance x isolation x thresholds
    assert ak.all(ak.sum(arr.Electron_charge[two_e], axis=1) == 0)
    assert ak.all(ak.sum(arr.Muon_charge[two_m], axis=1) == 0)
    px, py, pz, e = p4(arr[two_m], "Muon")
    mll = np.sqrt(ak.to_numpy(ak.sum(e, axis=1) ** 2 - ak.sum(px, axis=1) ** 2 - ak.sum(py, axis=1) ** 2
                              - ak.sum(pz, axis=1) ** 2))
    assert abs(np.median(mll) - 91.2) < 5


def test_ttbar_cross_section_and_weights(samples):
    out, results = samples
    sigma = results["ttbar"].sigma_pb
    assert 250 < sigma < 1000, sigma
    arr = events(out, "ttbar")
    assert ak.sum(arr.weight) == pytest.approx(sigma, rel=1e-6)
    assert ak.all(arr.weight == arr.weight[0])
    qcd = events(out, "qcd")
    assert ak.sum(qcd.weight) == pytest.approx(results["qcd"].sigma_pb, rel=1e-6)
    meta = json.loads((out / "ttbar.json").read_text())
    assert meta["sigma_pb"] == pytest.approx(sigma) and meta["events"] == 300
    assert ak.mean(ak.sum(arr.Jet_btag, axis=1)) > 0.8  # two b jets per event, 77% tagged


def test_root_round_trips_through_prepare(samples, tmp_path):
    import h5py

    from darkflow.data_prep.prepare import PrepareConfig, prepare

    out, _ = samples
    h5 = tmp_path / "tt.h5"
    res = prepare(PrepareConfig(inputs=[str(out / "ttbar.root")], out=str(h5)), progress=False)
    assert res.n_read == 300
    arr = events(out, "ttbar")
    with h5py.File(h5) as h:
        assert json.loads(h.attrs["source"])["name"] == "darkflow"
        np.testing.assert_array_equal(h["event_id"][:], ak.to_numpy(arr.event))
        np.testing.assert_allclose(h["weight"][:], ak.to_numpy(arr.weight))
        np.testing.assert_allclose(h["hlf"][:, 0], ak.to_numpy(arr.MET_pt), rtol=1e-6)
        n_jets = ak.to_numpy(ak.num(arr.Jet_pt))
        n_b = ak.to_numpy(ak.sum(arr.Jet_btag > 0.5, axis=1))
        np.testing.assert_array_equal(h["hlf"][:, 4], n_jets - n_b)
        np.testing.assert_array_equal(h["hlf"][:, 5], n_b)
        lead = ak.to_numpy(ak.fill_none(ak.firsts(arr.Jet_pt[arr.Jet_btag < 0.5]), 0.0))
        np.testing.assert_allclose(h["objects"][:, 0, 1], lead, rtol=1e-6)


@pytest.mark.parametrize("name", ["ttbar", "zjets_ll"])
def test_prepare_keeps_every_generated_jet(samples, tmp_path, name):
    """The generator removes jets within Delta R < 0.4 of isolated leptons and photons, so ``prepare``'s default
    objects remove nothing from its files, and no jet lies within 0.4 of a lepton or photon."""
    import h5py

    from darkflow.data_prep.prepare import PrepareConfig, prepare

    out, _ = samples
    h5 = tmp_path / f"{name}.h5"
    prepare(PrepareConfig(inputs=[str(out / f"{name}.root")], out=str(h5)), progress=False)
    arr = events(out, name)
    with h5py.File(h5) as h:
        counts = h["hlf"][:, 4:].astype(np.int64)
        assert bool(h.attrs["simulation"]) is True
        reqs = json.loads(h.attrs["objects_definition"])["requirements"]
    assert reqs["muplus"]["not_provided"] == ["id", "rel_iso_max"] and "overlap_removal" in reqs["jet"]["applied"]
    np.testing.assert_array_equal(counts[:, 0] + counts[:, 1], ak.to_numpy(ak.num(arr.Jet_pt)))
    np.testing.assert_array_equal(counts[:, 2:6].sum(axis=1),
                                  ak.to_numpy(ak.num(arr.Electron_pt) + ak.num(arr.Muon_pt)))
    np.testing.assert_array_equal(counts[:, 6], ak.to_numpy(ak.num(arr.Photon_pt)))
    near_eta = ak.concatenate([arr.Electron_eta, arr.Muon_eta, arr.Photon_eta], axis=1)
    near_phi = ak.concatenate([arr.Electron_phi, arr.Muon_phi, arr.Photon_phi], axis=1)
    eta = ak.cartesian([arr.Jet_eta, near_eta], nested=True)
    phi = ak.cartesian([arr.Jet_phi, near_phi], nested=True)
    dphi = np.remainder(phi["0"] - phi["1"] + np.pi, 2 * np.pi) - np.pi
    dr = ak.flatten(np.hypot(eta["0"] - eta["1"], dphi), axis=None)
    assert len(dr) > 100, "jets and leptons or photons in the same events"
    assert ak.min(dr) >= 0.4


def test_csv_parses_with_the_dark_machines_reader(samples):
    out, results = samples
    arr = events(out, "zjets_ll")
    chunks = list(DarkMachinesReader(out / "zjets_ll.csv"))
    assert sum(len(c) for c in chunks) == 300
    chunk = chunks[0]
    np.testing.assert_array_equal(chunk.event_id, ak.to_numpy(arr.event))
    assert set(chunk.process) == {"zjets_ll"}
    np.testing.assert_allclose(chunk.met, ak.to_numpy(arr.MET_pt), rtol=1e-5)
    np.testing.assert_allclose(chunk.weight, ak.to_numpy(arr.weight), rtol=1e-7)
    n_lep = ak.to_numpy(ak.num(chunk.objects["eplus"]) + ak.num(chunk.objects["eminus"]))
    np.testing.assert_array_equal(n_lep, ak.to_numpy(ak.num(arr.Electron_pt)))
    pts = np.sort(ak.to_numpy(ak.flatten(chunk.objects["muplus"].pt)))
    ref = np.sort(ak.to_numpy(ak.flatten(arr.Muon_pt[arr.Muon_charge > 0])))
    np.testing.assert_allclose(pts, ref, rtol=1e-5)


def test_same_seed_gives_identical_files(tmp_path):
    a, b, c = (tmp_path / d for d in "abc")
    for out, seed in ((a, 3), (b, 3), (c, 4)):
        generate(GenerateConfig(process="ttbar", events=40, seed=seed, out=str(out), format="both"), progress=False)
    for ext in ("root", "csv"):
        assert (a / f"ttbar.{ext}").read_bytes() == (b / f"ttbar.{ext}").read_bytes()
        assert (a / f"ttbar.{ext}").read_bytes() != (c / f"ttbar.{ext}").read_bytes()


def test_two_workers_get_different_seeds(tmp_path):
    (res,) = generate(GenerateConfig(process="ttbar", events=60, seed=5, out=str(tmp_path), workers=2),
                      progress=False).processes
    meta = json.loads((tmp_path / "ttbar.json").read_text())
    assert meta["workers"] == 2 and len(set(meta["worker_seeds"])) == 2
    arr = events(tmp_path, "ttbar")
    assert len(arr) == 60 and len(set(ak.to_list(arr.event))) == 60
    first, second = arr[:30], arr[30:]
    assert not np.allclose(ak.to_numpy(first.MET_pt), ak.to_numpy(second.MET_pt))
    assert not list(tmp_path.glob(".darkflow-*")), "worker parts must be cleaned up"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "worker parts must be cleaned up"


def test_interrupt_leaves_no_half_file(tmp_path):
    from darkflow.fileio import leftovers

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", "generate", "--process", "ttbar", "--events", "100000",
                             "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell that starts the suite in the background makes its children ignore SIGINT
                            # (POSIX), and Python then raises no KeyboardInterrupt: restore the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # start-up (imports, Pythia's initialisation) takes seconds on a loaded machine
    err = signal_when_ready(proc, signal.SIGINT, lambda: bool(leftovers(tmp_path)), settle=1)
    assert proc.returncode == 130, err
    assert list(tmp_path.iterdir()) == []


def test_list_and_bad_input(capsys, tmp_path):
    from darkflow.cli import main

    assert main(["generate", "--list"]) == 0
    text = capsys.readouterr().out
    for name in ("qcd", "ttbar", "wjets", "zjets_nunu", "zjets_ll", "gammajets", "diboson", "single_top",
                 "zprime_ttbar", "dm_monojet", "gluino", "leptoquark", "wprime_wz", "hidden_valley", "sm"):
        assert f"\n{name} " in text
    assert main(["generate", "--process", "higgs", "--events", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown process 'higgs'" in err and "ttbar" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text('description: "typo"\nkind: sm\nsettings: ["Top:gg2ttbarr = on"]\n')
    assert main(["generate", "--process", str(bad), "--events", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Pythia rejects the setting 'Top:gg2ttbarr = on'" in err
    assert main(["generate", "--process", "ttbar", "--events", "0", "--out", str(tmp_path)]) == 2
    assert "events" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True
