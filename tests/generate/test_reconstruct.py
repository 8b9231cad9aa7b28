"""Object building on hand-made event records with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkflow.data_prep.objects import ObjectDefinitions
from darkflow.generate.detector import Detector
from darkflow.generate.reconstruct import Record, delta_r, heavy_flavour, reconstruct


@pytest.mark.parametrize("pid, flavour", [(511, 5), (521, 5), (531, 5), (541, 5), (5122, 5), (553, 5), (10511, 5),
                                          (411, 4), (421, 4), (4122, 4), (443, 4), (211, 0), (2212, 0), (3122, 0)])
def test_heavy_flavour(pid, flavour):
    assert heavy_flavour(pid) == flavour


def test_delta_r_wraps_phi():
    d = delta_r(np.array([0.0]), np.array([3.1]), np.array([0.0, 1.0]), np.array([-3.1, 3.1]))
    np.testing.assert_allclose(d, [[2 * math.pi - 6.2, 1.0]], atol=1e-12)


def p4(pt, eta, phi, m=0.0):
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    return (px, py, pz, math.sqrt(px * px + py * py + pz * pz + m * m))


def record(particles, visible=None, hadrons=(), flavour=()):
    arr = np.array([p for p, _ in particles], dtype=float).reshape(-1, 4)
    pid = np.array([i for _, i in particles], dtype=np.int64)
    vis = np.ones(len(arr), bool) if visible is None else np.array(visible)
    return Record(arr, pid, vis, np.array(hadrons, dtype=float).reshape(-1, 4), np.array(flavour, dtype=np.int64))


PERFECT = Detector(jet={"stochastic": 0, "constant": 0}, electron={"stochastic": 0, "constant": 0},
                   photon={"stochastic": 0, "constant": 0}, muon={"constant": 0, "slope": 0})


def test_isolation_charge_and_met_from_invisible():
    rec = record([
        (p4(50, 0.5, 0.0, 0.000511), 11),      # isolated e-
        (p4(40, -1.0, 2.0, 0.105), -13),       # mu+ with a 10 GeV hadron nearby: not isolated (10/40 > 0.15)
        (p4(10, -1.1, 2.05), 211),
        (p4(30, 1.5, -2.0), 22),               # isolated photon
        (p4(80, 0.0, 1.0), 12),                # neutrino: invisible
    ], visible=[True, True, True, True, False])
    out = reconstruct(rec, np.zeros((0, 4)), PERFECT, ObjectDefinitions(), np.random.default_rng(0))
    assert out.electrons.shape == (1, 4) and out.electron_charge.tolist() == [-1]
    np.testing.assert_allclose(out.electrons[0, :3], [50, 0.5, 0.0], atol=1e-9)
    assert len(out.muons) == 0
    np.testing.assert_allclose(out.photons[0, :3], [30, 1.5, -2.0], atol=1e-9)
    vis = np.array([p4(50, 0.5, 0.0, 0.000511), p4(40, -1.0, 2.0, 0.105), p4(10, -1.1, 2.05), p4(30, 1.5, -2.0)])
    mex, mey = -vis[:, :2].sum(axis=0)
    assert out.met == pytest.approx(math.hypot(mex, mey)) and out.met_phi == pytest.approx(math.atan2(mey, mex))


def test_overlap_removal_and_thresholds():
    rec = record([(p4(60, 0.2, 0.3), 11)])
    jets = np.array([p4(62, 0.21, 0.31, 5.0), p4(45, -2.0, -1.0, 5.0), p4(18, 0.0, 2.0), p4(50, 3.0, 0.0)])
    out = reconstruct(rec, jets, PERFECT, ObjectDefinitions(), np.random.default_rng(0))
    # the first jet is the electron; 18 GeV fails pT > 20 and eta 3.0 fails |eta| < 2.8
    assert out.jets.shape == (1, 4) and out.jets[0, 0] == pytest.approx(45)


def test_jets_within_0p4_of_isolated_leptons_and_photons_are_removed():
    """The default card removes jets within Delta R < 0.4 (the jet radius) of an isolated lepton or photon,
    as ``darkflow prepare``'s default overlap removal does; a non-isolated muon removes nothing."""
    assert Detector().overlap.delta_r == 0.4
    rec = record([
        (p4(60, 0.0, 0.0, 0.000511), 11),          # isolated e-
        (p4(40, 0.0, 3.0), 22),                     # isolated photon near phi = pi
        (p4(40, -1.5, 1.0, 0.105), 13),             # muon with a 10 GeV hadron next to it: not isolated
        (p4(10, -1.55, 1.05), 211),
    ])
    jets = np.array([p4(100, 0.3, 0.0), p4(90, 0.0, -3.0), p4(80, 0.0, 0.5), p4(70, -1.5, 1.2), p4(65, 2.0, -1.5)])
    out = reconstruct(rec, jets, PERFECT, ObjectDefinitions(), np.random.default_rng(0))
    # 0.3 from the electron and 0.28 from the photon (across the wrap): removed; 0.5 away: kept;
    # next to the non-isolated muon: kept (it is part of that jet); far from everything: kept
    np.testing.assert_allclose(out.jets[:, 0], [80, 70, 65], atol=1e-9)


def test_btag_rates_follow_the_detector_card():
    rng = np.random.default_rng(1)
    jets = np.array([p4(100, 0.0, 0.0, 10), p4(90, 1.5, 2.0, 10), p4(80, -1.5, -2.0, 10)])
    hadrons = [p4(40, 0.05, 0.05, 5.3), p4(30, 1.45, 2.02, 1.9)]
    rec = record([], hadrons=hadrons, flavour=[5, 4])
    tags = np.array([reconstruct(rec, jets, PERFECT, ObjectDefinitions(), rng).jet_btag for _ in range(4000)])
    rates = tags.mean(axis=0)
    # binomial 4000 trials: 5 sigma is about 0.033 at p = 0.77
    np.testing.assert_allclose(rates, [0.77, 0.15, 0.01], atol=0.035)


def test_smearing_has_the_configured_width():
    det = Detector(jet={"stochastic": 0.0, "constant": 0.10})
    rng = np.random.default_rng(2)
    pts = np.array([reconstruct(record([]), np.array([p4(200, 0.0, 0.0)]), det, ObjectDefinitions(), rng).jets[0, 0]
                    for _ in range(3000)])
    assert pts.mean() == pytest.approx(200, rel=0.01)
    assert pts.std() == pytest.approx(20, rel=0.06)
