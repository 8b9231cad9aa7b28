"""Jet images of real Pythia 8 boosted samples (``darkflow generate --constituents``): jet-mass peaks at the
top and W masses against a falling QCD spectrum, wider top jets, and reproducible constituents."""

from __future__ import annotations

import os

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from darkflow.generate.run import GenerateConfig, generate
from darkflow.jetimages import JetImagesConfig, make_jet_images

pytestmark = pytest.mark.slow

SAMPLES = {"ttbar_boosted": 200, "ww_boosted": 150, "qcd_boosted": 200}
SIZE, R = 32, 0.8


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    out = tmp_path_factory.mktemp("boosted")
    os.environ.setdefault("XDG_CACHE_HOME", str(out / "cache"))
    result = {}
    for name, n in SAMPLES.items():
        generate(GenerateConfig(process=name, events=n, seed=21, out=str(out), constituents=True), progress=False)
        make_jet_images(JetImagesConfig(inputs=[str(out / f"{name}.root")], out=str(out / f"{name}.h5"),
                                        size=SIZE, radius=R), progress=False)
        with h5py.File(out / f"{name}.h5") as f:
            result[name] = {k: f[k][:] for k in ("images", "jet_pt", "jet_mass")}
    return out, result


def peak(masses: np.ndarray) -> float:
    hist, edges = np.histogram(masses, bins=np.arange(0, 300, 20))
    return edges[np.argmax(hist)] + 10


def test_jet_mass_peaks_at_the_top_and_w_masses_and_falls_for_qcd(images):
    _, data = images
    top, w, qcd = (data[k]["jet_mass"] for k in ("ttbar_boosted", "ww_boosted", "qcd_boosted"))
    assert 150 <= peak(top) <= 190, f"top-jet mass peaks at {peak(top)} GeV"
    assert 70 <= peak(w) <= 100, f"W-jet mass peaks at {peak(w)} GeV"
    assert peak(qcd) <= 70, f"QCD jet mass peaks at {peak(qcd)} GeV"
    in_top_window = lambda m: np.mean((m > 140) & (m < 200))  # noqa: E731
    assert in_top_window(top) > 0.4 and in_top_window(qcd) < 0.15
    hist, _ = np.histogram(qcd, bins=[60, 100, 140, 180, 220])
    assert (np.diff(hist) < 0).all(), f"QCD mass spectrum must fall above 60 GeV: {hist}"
    for k in SAMPLES:
        assert 400 < np.median(data[k]["jet_pt"]) < 700  # the pTHat window 450-650


def test_top_images_spread_their_pt_away_from_the_centre(images):
    _, data = images
    centres = (np.arange(SIZE) - SIZE // 2) * (2 * R / SIZE)
    radius = np.hypot(centres[:, None], centres[None, :])
    for k in SAMPLES:
        np.testing.assert_allclose(data[k]["images"].sum(axis=(1, 2, 3)), 1.0, atol=1e-5)
    outside = {k: (data[k]["images"][:, 0] * (radius > 0.2)).sum(axis=(1, 2)) for k in SAMPLES}
    girth = {k: (data[k]["images"][:, 0] * radius).sum(axis=(1, 2)) for k in SAMPLES}
    assert outside["ttbar_boosted"].mean() > 2 * outside["qcd_boosted"].mean()
    assert girth["ttbar_boosted"].mean() > girth["ww_boosted"].mean() > girth["qcd_boosted"].mean()
    mean_top = data["ttbar_boosted"]["images"][:, 0].mean(axis=0)
    assert mean_top[SIZE // 2 + 1:].sum() > mean_top[:SIZE // 2].sum()  # flipped: more pT on top
    assert mean_top[:, SIZE // 2 + 1:].sum() > mean_top[:, :SIZE // 2].sum()  # and on the right


def test_constituents_are_reproducible_and_leave_the_objects_unchanged(tmp_path):
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for sub, pf in (("a", True), ("b", True), ("c", False)):
        generate(GenerateConfig(process="ttbar_boosted", events=30, seed=4, out=str(tmp_path / sub), constituents=pf),
                 progress=False)
    a, b = (tmp_path / s / "ttbar_boosted.root" for s in "ab")
    assert a.read_bytes() == b.read_bytes()
    with_pf = uproot.open(a)["Events"].arrays()
    without = uproot.open(tmp_path / "c" / "ttbar_boosted.root")["Events"].arrays()
    assert "nPFCands" not in without.fields
    for field in without.fields:
        assert ak.all(ak.ravel(with_pf[field]) == ak.ravel(without[field])), field
    assert {f"PFCands_{k}" for k in ("pt", "eta", "phi", "mass", "pdgId", "charge")} <= set(with_pf.fields)
    n = with_pf["nPFCands"]
    assert ak.all(n > 50) and ak.all(ak.num(with_pf["PFCands_pt"]) == n)
    assert ak.all(with_pf["PFCands_pt"] > 0.5)
    assert ak.all(with_pf["PFCands_pt"][:, :-1] >= with_pf["PFCands_pt"][:, 1:])  # decreasing pT
    charge, pid = ak.ravel(with_pf["PFCands_charge"]).to_numpy(), ak.ravel(with_pf["PFCands_pdgId"]).to_numpy()
    assert set(np.unique(charge)) <= {-1, 0, 1}
    assert (charge[np.abs(pid) == 22] == 0).all() and (np.abs(charge[np.abs(pid) == 211]) == 1).all()
    assert (charge[pid == 11] == -1).all() and (charge[pid == -211] == -1).all()


def test_cflow_scores_generated_top_jets_above_qcd_jets(images, capsys):
    """CFLOW-AD trained on generated QCD jet images (``darkflow jetimages`` output) scores held-out top jets
    above held-out QCD jets, and beats the PCA-reconstruction baseline."""
    from darkflow.cflow.baseline import PCABaseline
    from darkflow.cflow.config import CflowConfig
    from darkflow.cflow.load import load_images
    from darkflow.cflow.metrics import image_auroc
    from darkflow.cflow.score import evaluate, predict
    from darkflow.cflow.train import fit_cflow

    out, _ = images
    qcd = load_images([out / "qcd_boosted.h5"], "train")
    test = load_images([out / "qcd_boosted.h5", out / "ttbar_boosted.h5"], "test", background="qcd_boosted")
    n_train = 130
    train = qcd.subset(np.arange(n_train))
    test = test.subset(np.arange(n_train, len(test)))  # the QCD images not trained on, then every top image
    assert (test.labels == 0).sum() == len(qcd) - n_train and (test.labels == 1).sum() > 100
    # the defaults, with fewer epochs and autoencoder steps to keep the test short
    config = CflowConfig(image_size=SIZE, encoder={"pretrain_steps": 100}, training={"epochs": 2})
    model, _ = fit_cflow(train, config, progress=False)
    maps, scores = predict(model, test.images)
    auc = evaluate(maps, scores, test)["image_auroc"]
    pca = image_auroc(PCABaseline().fit(train.images).score(test.images)[1], test.labels)
    with capsys.disabled():
        print(f"\ngenerated jet images {SIZE}x{SIZE} (qcd_boosted normal, ttbar_boosted anomalous): "
              f"CFLOW image AUROC {auc:.3f} | PCA baseline {pca:.3f}")
    assert auc > 0.75 and auc > pca
