"""Jet-image preprocessing against hand-computed pixels: centring, rotation, flips, phi wrapping, norm."""

from __future__ import annotations

import numpy as np
import pytest

from darkflow.jetimages.preprocess import event_image, jet_image, pixel_edges, standard_frame

SIZE, R = 32, 0.8  # pixel width 0.05, centre pixel (16, 16)


def place(u: np.ndarray, w: np.ndarray, angle: float, mirror: bool, eta0: float, phi0: float):
    """Canonical-frame points (u right, w up) rotated by ``angle``, optionally mirrored, moved to (eta0, phi0)."""
    if mirror:
        u = -u
    c, s = np.cos(angle), np.sin(angle)
    deta, dphi = c * u - s * w, s * u + c * w
    return eta0 + deta, np.remainder(phi0 + dphi + np.pi, 2 * np.pi) - np.pi


def test_pixel_edges_put_the_centre_in_the_middle_of_pixel_size_over_2():
    edges = pixel_edges(SIZE, R)
    assert edges[0] == pytest.approx(-R - 0.025) and edges[-1] == pytest.approx(R - 0.025)
    assert np.diff(edges) == pytest.approx(np.full(SIZE, 0.05))
    assert edges[16] < 0 < edges[17]
    assert pixel_edges(5, 1.0) == pytest.approx([-1.0, -0.6, -0.2, 0.2, 0.6, 1.0])


def test_two_particles_along_eta_end_up_vertical_with_the_harder_one_on_top():
    # pT 3 at eta 0.5 and pT 1 at eta 0.9: centroid at 0.6; the pair's axis (eta) becomes vertical and the
    # harder particle goes up: it sits 0.1 = 2 pixels above the centre, the softer 0.3 = 6 pixels below.
    image = jet_image(np.array([3.0, 1.0]), np.array([0.5, 0.9]), np.array([1.0, 1.0]), 0.55, 1.0, SIZE, R)
    expected = np.zeros((SIZE, SIZE))
    expected[18, 16], expected[10, 16] = 0.75, 0.25
    np.testing.assert_allclose(image, expected, atol=1e-7)
    assert image.dtype == np.float32


@pytest.mark.parametrize("angle", [0.0, 0.7, 2.0, -2.9])
@pytest.mark.parametrize("mirror", [False, True])
def test_three_particles_rotated_mirrored_and_across_phi_pi_come_back_to_the_hand_frame(angle, mirror):
    # Canonical frame built by hand: centroid 0 (1.5*0 + 2*0.1 - 1*0.2 = 0; -0.3 + 0.2 + 0.1 = 0), no
    # cross moment (2*0.1*0.1 - 0.2*0.1 = 0), larger spread vertical (0.09 vs 0.06), more pT right (2 vs 1)
    # and up (3 vs 1.5). Pixels: row 16 + w / 0.05, column 16 + u / 0.05.
    pt = np.array([1.5, 2.0, 1.0])
    u, w = np.array([0.0, 0.1, -0.2]), np.array([-0.2, 0.1, 0.1])
    eta, phi = place(u, w, angle, mirror, eta0=1.3, phi0=3.14)
    assert (phi < 0).any() and (phi > 0).any(), "the jet must straddle phi = pi"
    image = jet_image(pt, eta, phi, axis_eta=1.32, axis_phi=-3.1, size=SIZE, radius=R)
    expected = np.zeros((SIZE, SIZE))
    expected[12, 16], expected[18, 18], expected[18, 12] = 1.5 / 4.5, 2.0 / 4.5, 1.0 / 4.5
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_standard_frame_moments():
    rng = np.random.default_rng(3)
    pt = rng.exponential(10.0, 40)
    x, y = standard_frame(pt, rng.normal(0.2, 0.2, 40), rng.normal(-0.1, 0.05, 40) + 0.5 * rng.normal(0, 0.2, 40))
    w = pt / pt.sum()
    assert np.dot(w, x) == pytest.approx(0, abs=1e-12) and np.dot(w, y) == pytest.approx(0, abs=1e-12)
    assert np.dot(w, x * y) == pytest.approx(0, abs=1e-12)
    assert np.dot(w, y * y) >= np.dot(w, x * x)
    assert pt[x > 0].sum() >= pt[x < 0].sum() and pt[y > 0].sum() >= pt[y < 0].sum()


def test_image_sums_to_one_and_drops_what_falls_outside():
    rng = np.random.default_rng(0)
    pt = rng.exponential(5.0, 60)
    eta, phi = rng.normal(0, 0.3, 60), rng.normal(0, 0.3, 60)
    image = jet_image(pt, eta, phi, 0.0, 0.0, SIZE, R)
    assert image.sum() == pytest.approx(1.0, abs=1e-6) and (image >= 0).all()
    far = jet_image(np.array([10.0, 10.0]), np.array([0.0, 3.0]), np.array([0.0, 0.0]), 0.0, 0.0, SIZE, R)
    assert far.sum() == 0  # both particles are 1.5 from their centroid, outside +-0.8
    assert jet_image(np.zeros(0), np.zeros(0), np.zeros(0), 0.0, 0.0, 8, R).shape == (8, 8)


def test_event_image_places_objects_around_the_leading_jet_with_phi_wrapped():
    # width 2 pi / 8 = 0.785; centre pixel 4; jet at (0.2, 3.0). Object at phi -3.0 is +0.283 away in phi
    # (wrapped): row 4; object 1.6 away in eta: column 4 + round(1.6 / 0.785) = 6; at dphi = -pi: row 0.
    pt = np.array([100.0, 50.0, 30.0, 20.0])
    eta = np.array([0.2, 0.2, 1.8, 0.2])
    phi = np.array([3.0, -3.0, 3.0, 3.0 - np.pi])
    image = event_image(pt, eta, phi, 0.2, 3.0, size=8)
    expected = np.zeros((8, 8))
    expected[4, 4] = 150 / 200
    expected[4, 6] = 30 / 200
    expected[0, 4] = 20 / 200
    np.testing.assert_allclose(image, expected, atol=1e-7)
