"""Training diagnostics, training-file provenance, overlap keys and the hlf cut baselines, as pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkflow.train.diagnostics import active_units, convergence, warnings_for
from darkflow.train.overlap import event_keys, matched_roles
from darkflow.train.provenance import describe, differences
from darkflow.train.score import hlf_scores


def test_convergence():
    falling = [5.0, 4.0, 3.0, 2.5, 2.4]
    got = convergence(falling, patience=3, early_stopped=False)
    assert got == {"converged": False, "stopped_by": "max_epochs", "best_epoch": 4, "epochs": 5, "patience": 3}
    flat = [5.0, 4.0, 4.0, 4.5, 4.1]
    got = convergence(flat, patience=3, early_stopped=True)
    assert got["converged"] and got["stopped_by"] == "early_stopping" and got["best_epoch"] == 1  # first minimum
    # ran to the limit, but the best epoch is older than the patience (e.g. a resumed run with a new patience)
    assert convergence([3.0, 1.0, 2.0, 2.0, 2.0], patience=2, early_stopped=False)["converged"]
    assert convergence([3.0, 1.0, 2.0, 2.0], patience=3, early_stopped=False)["converged"] is False
    nan = convergence([float("nan"), 2.0, float("nan")], patience=5, early_stopped=False)
    assert nan["best_epoch"] == 1
    assert convergence([], patience=5, early_stopped=False)["best_epoch"] is None


def test_active_units_against_numpy():
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 0.5, 0.2, 0.05, 0.001, 0.0])
    mu = rng.normal(size=(20_000, 6)) * scales + 3.0
    got = active_units(mu)
    np.testing.assert_allclose(got["unit_variance"], mu.var(axis=0), rtol=1e-12)
    assert got["active_units"] == int((mu.var(axis=0) > 0.01).sum()) == 3  # 0.05**2 = 0.0025 is inactive
    assert got["latent_size"] == 6 and got["events"] == 20_000 and got["threshold"] == 0.01
    directions = np.linalg.svd(mu - mu.mean(axis=0), compute_uv=False) ** 2 / len(mu)  # PCA, independently
    np.testing.assert_allclose(got["direction_variance"], directions, rtol=1e-9, atol=1e-15)
    assert got["active_directions"] == 3
    with pytest.raises(ValueError, match="mu must be"):
        active_units(np.zeros(5))


def test_a_latent_space_collapsed_onto_one_direction_is_reported():
    """Four units that all follow one number are four active units but one active direction."""
    rng = np.random.default_rng(1)
    t = rng.normal(size=(5000, 1))
    mu = t * np.array([1.0, -0.5, 0.3, 0.8]) + rng.normal(0, 1e-3, size=(5000, 4))
    got = active_units(mu)
    assert got["active_units"] == 4 and got["active_directions"] == 1
    pca = np.linalg.svd(mu - mu.mean(axis=0), compute_uv=False) ** 2
    assert pca[0] / pca.sum() > 0.999  # "PCA 100% / 0%"
    (line,) = warnings_for(got)
    assert line.startswith("collapsed latent space: 4 of 4 latent units active but they move together: 1 active")


def test_warning_lines():
    ok = convergence([3.0, 2.0, 2.5, 2.6], patience=2, early_stopped=True) | active_units(np.eye(4) * 10)
    assert warnings_for(ok) == []
    bad = convergence([3.0, 2.0, 1.0], patience=5, early_stopped=False)
    bad |= active_units(np.c_[np.linspace(-1, 1, 100), np.zeros((100, 7))])
    lines = warnings_for(bad)
    assert len(lines) == 2
    assert lines[0].startswith("not converged: training stopped at the epoch limit (3 epochs)") and "best epoch 2" in lines[0]
    assert lines[1].startswith("collapsed latent space: 1 of 8 latent units active")
    assert warnings_for(active_units(np.linspace(-1, 1, 50)[:, None])) == []  # a 1-d latent space: 1 of 1 active


def test_describe_and_differences():
    base = {"label": "sm", "channel": {"name": "meff200", "description": "m_eff > 200", "meff_min": 200.0},
            "layout": {"name": "default", "rows": ["jet", "met"], "features": ["E", "pt"]},
            "objects_definition": {"jet": {"pt_min": 20.0, "abs_eta_max": 2.8}, "photon": {"pt_min": 20.0,
                                   "abs_eta_max": math.inf}},
            "source": {"name": "nanoaod", "tree": "Events"}, "simulation": '{"generator": "pythia8"}'}
    ref = describe("sm.h5", base, 10)
    assert ref["source"] == "nanoaod" and ref["simulation"] == {"generator": "pythia8"} and ref["events"] == 10
    assert differences(base, ref) == []
    renamed = base | {"channel": base["channel"] | {"name": "mine", "description": "same cuts"}}
    assert differences(renamed, ref) == []  # compared by cuts, not names
    other = base | {"channel": {"name": "chan3", "met_min": 50.0, "multiplicities": []}, "source": {"name": "delphes"},
                    "objects_definition": {"jet": {"pt_min": 30.0, "abs_eta_max": 2.8},
                                           "photon": {"pt_min": 20.0, "abs_eta_max": math.inf}}}
    found = differences(other, ref)
    assert found == ["channel chan3 differs from the training file's meff200 (meff_min None vs 200.0, met_min 50.0 vs None)",
                     "object definitions differ from the training file's (jet.pt_min 30.0 vs 20.0)",
                     "source delphes differs from the training file's nanoaod"]
    old = {k: v for k, v in other.items() if k not in ("objects_definition", "source")}
    assert len(differences(old, ref)) == 1  # attributes a file lacks are not compared


def test_overlap_keys_and_roles():
    names = ["ttbar", "qcd"]
    reference = event_keys(np.array([0, 0, 1, 1, 0]), np.array([1, 2, 1, 2, 2]),
                           np.array([10.0, 20.0, 30.0, 40.0, 20.0], np.float32), names, names)
    roles = np.array([1, 1, 0, 1, 0])  # (ttbar, 2, 20.0) twice: once training, once validation
    other = event_keys(np.array([1, 0, 0, 1, 0]), np.array([1, 2, 1, 5, 1]),
                       np.array([30.0, 20.0, 10.0, 40.0, 11.0], np.float32), ["ttbar", "qcd"][::-1], names)
    # other's process 1 is ttbar, 0 is qcd: (ttbar,1,30) no; (qcd,2,20) no; (qcd,1,10) no; (ttbar,5,40) no;
    # (qcd,1,11) no -> nothing matches although every event ID exists in the reference
    np.testing.assert_array_equal(matched_roles(reference, roles, other), [-1] * 5)
    same = event_keys(np.array([0, 0, 1, 0, 1]), np.array([1, 2, 1, 3, 1]),
                      np.array([10.0, 20.0, 30.0, 20.0, 31.0], np.float32), names, names)
    np.testing.assert_array_equal(matched_roles(reference, roles, same), [1, 0, 0, -1, -1])
    unknown = event_keys(np.array([0]), np.array([1]), np.array([10.0], np.float32), ["wjets"], names)
    assert matched_roles(reference, roles, unknown).tolist() == [-1]
    assert matched_roles(reference[:0], roles[:0], same).tolist() == [-1] * 5


def test_hlf_scores_are_the_columns_but_the_angle():
    hlf = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    got = hlf_scores(["MET", "MET_phi", "HT", "n_jet"], hlf)
    assert list(got) == ["hlf:MET", "hlf:HT", "hlf:n_jet"]
    for key, col in (("hlf:MET", 0), ("hlf:HT", 2), ("hlf:n_jet", 3)):
        assert got[key].dtype == np.float64
        np.testing.assert_array_equal(got[key], hlf[:, col].astype(np.float64))
    with pytest.raises(Exception, match="high-level features"):
        hlf_scores(["MET"], hlf)
