"""``darkflow jetimages`` on small PFNano-like ROOT files and prepared event files: contents, attributes,
bookkeeping, and one-line errors that leave no output behind."""

from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.errors import DataError, InputError
from darkflow.jetimages import JetImagesConfig, make_jet_images
from darkflow.jetimages.clustering import LeadingJet

N = 25


def pf_candidates(rng: np.random.Generator, n: int) -> ak.Array:
    """Per event: a hard two-prong spray, a softer spray elsewhere, and soft noise."""
    events = []
    for _ in range(n):
        eta0, phi0 = rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi)
        parts = []
        for d_eta, d_phi, scale, k in ((0, 0, 60, 12), (0.3, 0.2, 30, 8), (-1.5, 2.5, 15, 6), (0, 0, 1, 30)):
            spread = 3.0 if scale == 1 else 0.05
            eta = eta0 + d_eta + rng.normal(0, spread, k)
            phi = np.remainder(phi0 + d_phi + rng.normal(0, spread, k) + np.pi, 2 * np.pi) - np.pi
            parts.append(np.stack([rng.exponential(scale, k) + 0.5, np.clip(eta, -4.5, 4.5), phi,
                                   np.full(k, 0.1396)], axis=1))
        events.append(np.concatenate(parts))
    counts = [len(e) for e in events]
    flat = np.concatenate(events).astype(np.float32)
    fields = {f: flat[:, i] for i, f in enumerate(("pt", "eta", "phi", "mass"))}
    fields["pdgId"] = np.full(len(flat), 211, np.int32)
    fields["charge"] = np.ones(len(flat), np.int32)
    return ak.unflatten(ak.zip(fields), counts)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("jetimages")
    rng = np.random.default_rng(7)
    data = random_nanoaod(rng, N)
    plain = write_tree(base / "plain.root", dict(data))
    data["PFCands"] = pf_candidates(rng, N)
    pfnano = write_tree(base / "sample_a.root", data)
    res = make_jet_images(JetImagesConfig(inputs=[str(pfnano)], out=str(base / "jets.h5"), size=16, radius=1.0),
                          progress=False)
    return base, pfnano, plain, data, res


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "darkflow", "jetimages", *args], capture_output=True, text=True)


def test_jet_images_of_a_pfnano_file(files):
    base, pfnano, _, data, res = files
    out = base / "jets.h5"
    assert (res.n_read, res.n_selected, res.image_kind) == (N, N, "jet")
    with h5py.File(out) as f:
        images = f["images"][:]
        assert images.shape == (N, 1, 16, 16) and images.dtype == np.float32
        np.testing.assert_allclose(images.sum(axis=(1, 2, 3)), 1.0, atol=1e-5)
        assert (f.attrs["label"], f.attrs["size"], f.attrs["radius"], f.attrs["image_kind"]) == ("jets", 16, 1.0, "jet")
        assert json.loads(f.attrs["process_names"]) == ["sample_a"]
        assert json.loads(f.attrs["inputs"]) == [str(pfnano)]
        assert f.attrs["n_read"] == N and f.attrs["n_selected"] == N and f.attrs["darkflow_version"]
        np.testing.assert_array_equal(f["event_id"][:], data["event"])
        np.testing.assert_allclose(f["weight"][:], data["genWeight"])  # PFNano weights: genWeight
        assert (f["process"][:] == 0).all() and f["process"].dtype == np.int16
        jets = np.stack([f[f"jet_{k}"][:] for k in ("pt", "eta", "phi", "mass")], axis=1)
    pf = data["PFCands"]
    lead = LeadingJet(1.0, 20.0)
    for i in (0, 7, N - 1):
        arr = [np.asarray(pf[i][k], dtype=np.float64) for k in ("pt", "eta", "phi", "mass")]
        jet = lead(*arr)
        np.testing.assert_allclose(jets[i], [jet.pt, jet.eta, jet.phi, jet.mass], rtol=1e-5)
        assert jet.pt > 600  # the hard spray
    assert not list(base.glob(".*tmp"))


def test_selection_window_and_max_events(files):
    base, pfnano, _, _, _ = files
    out = base / "window.h5"
    with h5py.File(base / "jets.h5") as f:
        all_pt = f["jet_pt"][:]
    ranked = np.sort(all_pt)
    lo, hi = (ranked[5] + ranked[6]) / 2, (ranked[18] + ranked[19]) / 2  # away from float32 round-off
    res = make_jet_images(JetImagesConfig(inputs=[str(pfnano)], out=str(out), size=16, radius=1.0, jet_pt_min=lo,
                                          jet_pt_max=hi, max_events=20), progress=False)
    assert res.n_read == 20
    with h5py.File(out) as f:
        pt = f["jet_pt"][:]
    assert res.n_selected == len(pt) == ((all_pt[:20] >= lo) & (all_pt[:20] < hi)).sum()
    assert ((pt >= lo - 1e-3) & (pt < hi + 1e-3)).all()


def test_event_images_of_a_prepared_file(files, tmp_path):
    base, pfnano, _, _, _ = files
    events = tmp_path / "prepared.h5"
    done = subprocess.run([sys.executable, "-m", "darkflow", "prepare", str(pfnano), "--out", str(events), "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "ev.h5"
    res = make_jet_images(JetImagesConfig(inputs=[str(events)], out=str(out), size=24), progress=False)
    assert res.image_kind == "event"
    with h5py.File(events) as f:
        objects, mask, rows = f["objects"][:], f["mask"][:], json.loads(f.attrs["layout"])["rows"]
        ids, names = f["event_id"][:], json.loads(f.attrs["process_names"])
    jet_rows = np.isin(rows, ["jet", "bjet"])
    has_jet = (mask & jet_rows).any(axis=1)
    lead_pt = np.where(mask & jet_rows, objects[:, :, 1], 0).max(axis=1)
    keep = has_jet & (lead_pt >= 20)
    with h5py.File(out) as f:
        assert f.attrs["image_kind"] == "event" and f.attrs["radius"] == pytest.approx(np.pi)
        assert json.loads(f.attrs["process_names"]) == names
        np.testing.assert_array_equal(f["event_id"][:], ids[keep])
        np.testing.assert_allclose(f["jet_pt"][:], lead_pt[keep], rtol=1e-6)
        images = f["images"][:]
    assert images.shape == (keep.sum(), 1, 24, 24)
    np.testing.assert_allclose(images.sum(axis=(1, 2, 3)), 1.0, atol=1e-5)
    assert (images[:, 0, 12, 12] > 0).all()  # the leading jet sits in the centre pixel


def test_missing_constituents_is_a_one_line_error_without_output(files, tmp_path):
    _, _, plain, _, _ = files
    out = tmp_path / "x.h5"
    done = run_cli(str(plain), "--out", str(out), "-q")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--constituents" in done.stderr and "PFCands_pt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_other_bad_inputs(files, tmp_path):
    base, pfnano, _, _, _ = files
    out = tmp_path / "x.h5"
    with pytest.raises(DataError, match="no event passed the selection"):
        make_jet_images(JetImagesConfig(inputs=[str(pfnano)], out=str(out), jet_pt_min=1e6), progress=False)
    with pytest.raises(InputError, match="not both"):
        make_jet_images(JetImagesConfig(inputs=[str(pfnano), str(base / "jets.h5")], out=str(out)), progress=False)
    with pytest.raises(InputError, match="not an event file"):
        make_jet_images(JetImagesConfig(inputs=[str(base / "jets.h5")], out=str(out)), progress=False)
    with pytest.raises(InputError, match="input file not found"):
        make_jet_images(JetImagesConfig(inputs=[str(tmp_path / "nope.root")], out=str(out)), progress=False)
    (tmp_path / "text.root").write_text("hello")
    with pytest.raises(InputError, match="neither ROOT nor HDF5"):
        make_jet_images(JetImagesConfig(inputs=[str(tmp_path / "text.root")], out=str(out)), progress=False)
    with pytest.raises(InputError, match=r"must be an \.h5 file"):
        make_jet_images(JetImagesConfig(inputs=[str(pfnano)], out=str(tmp_path / "x.root")), progress=False)
    assert not out.exists() and not list(tmp_path.glob(".*"))
    done = run_cli(str(pfnano), "--out", str(out), "--size", "2")
    assert done.returncode == 2 and "size" in done.stderr and done.stderr.count("\n") == 1
