"""The leading anti-kT jet (Pythia's SlowJet / fjcore) on hand-made particles with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from darkflow.jetimages.clustering import LeadingJet


def four_vector_sum(pt, eta, phi, m):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    tot = np.array([px.sum(), py.sum(), pz.sum(), e.sum()])
    return np.hypot(tot[0], tot[1]), np.sqrt(tot[3] ** 2 - (tot[:3] ** 2).sum())


def test_two_separated_sprays_give_the_harder_one_with_its_exact_mass():
    # spray A near (0, 0) with 300 GeV, spray B near (1.5, 2.5) with 100 GeV, a soft particle 1.0 from A
    pt = np.array([200.0, 100.0, 60.0, 40.0, 5.0])
    eta = np.array([0.0, 0.2, 1.5, 1.6, 1.0])
    phi = np.array([0.0, -0.1, 2.5, 2.4, 0.0])
    mass = np.array([0.14, 0.14, 0.0, 0.0, 0.14])
    jet = LeadingJet(radius=0.8, pt_min=1.0)(pt, eta, phi, mass)
    np.testing.assert_array_equal(jet.constituents, [0, 1])
    want_pt, want_m = four_vector_sum(pt[:2], eta[:2], phi[:2], mass[:2])
    assert jet.pt == pytest.approx(want_pt, rel=1e-9) and jet.mass == pytest.approx(want_m, rel=1e-6)
    # m^2 = m1^2 + m2^2 + 2 (E1 E2 - p1.p2): about 2 pt1 pt2 (cosh deta - cos dphi) = 2 * 2e4 * 0.0300
    assert jet.mass == pytest.approx(np.sqrt(2 * 200 * 100 * (np.cosh(0.2) - np.cos(0.1))), rel=1e-3)
    wide = LeadingJet(radius=1.2, pt_min=1.0)(pt, eta, phi, mass)
    np.testing.assert_array_equal(wide.constituents, [0, 1, 4])


def test_no_particle_or_too_soft_gives_none():
    lead = LeadingJet(radius=0.8, pt_min=50.0)
    assert lead(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)) is None
    assert lead(np.array([10.0]), np.array([0.0]), np.array([0.0]), np.array([0.0])) is None
    jet = lead(np.array([60.0]), np.array([0.5]), np.array([-1.0]), np.array([0.0]))
    assert (jet.pt, jet.eta, jet.phi) == pytest.approx((60.0, 0.5, -1.0))


def test_bad_radius_is_refused():
    with pytest.raises(ValueError, match="positive"):
        LeadingJet(radius=0.0)
