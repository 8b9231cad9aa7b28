"""Jet images: a jet's constituents as a pT-weighted eta-phi picture in a fixed, standard frame.

The preprocessing of de Oliveira et al. (2016), with the centre and the orientation defined by moments so
that every step is a closed-form function of the constituents:

1. translate: (delta eta, delta phi) from the jet axis (phi wrapped to [-pi, pi)), then from the
   pT-weighted centroid, which becomes the image centre;
2. rotate: the principal axis of the pT-weighted second-moment matrix becomes vertical (the row axis);
3. flip: the half with the larger pT sum goes to the right (columns) and to the top (rows), which fixes
   the two mirror ambiguities left by the rotation (constituents on an axis count on neither side);
4. pixelate: ``size x size`` pixels of width ``2 R / size`` whose centre pixel ``(size // 2, size // 2)``
   is centred on the centroid (for an even size the window is ``[-R - w/2, R - w/2)``); constituents
   falling outside are dropped;
5. normalise: the pixels sum to 1 (unit total pT), so the image is the jet's pT distribution.

Row ``i`` increases with the rotated vertical coordinate: plot with ``origin="lower"``.

References:
    L. de Oliveira, M. Kagan, L. Mackey, B. Nachman, A. Schwartzman, "Jet-images -- deep learning edition",
    JHEP 07 (2016) 069, arXiv:1511.05190.
"""

from __future__ import annotations

import numpy as np


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Angles mapped to ``[-pi, pi)``."""
    return np.remainder(dphi + np.pi, 2 * np.pi) - np.pi


def pixel_edges(size: int, radius: float) -> np.ndarray:
    """Pixel edges ``(size + 1,)`` of one image axis: width ``2 R / size``, pixel ``size // 2`` centred on 0."""
    width = 2.0 * radius / size
    return (np.arange(size + 1) - size // 2 - 0.5) * width


def standard_frame(pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred, rotated and flipped coordinates (steps 1-3 of the module docstring).

    Arguments:
        pt: ``(n,)`` constituent pT (weights, > 0).
        deta, dphi: ``(n,)`` offsets from the jet axis (dphi already wrapped).

    Returns:
        ``(x, y)``, each ``(n,)``: ``x`` the horizontal (column) and ``y`` the vertical (row) coordinate;
        ``sum(pt * x) = sum(pt * y) = sum(pt * x * y) = 0`` and ``sum(pt * y^2) >= sum(pt * x^2)``.
    """
    w = pt / pt.sum()
    x = deta - np.dot(w, deta)
    y = dphi - np.dot(w, dphi)
    cov = np.array([[np.dot(w, x * x), np.dot(w, x * y)], [np.dot(w, x * y), np.dot(w, y * y)]])
    _, vectors = np.linalg.eigh(cov)
    vx, vy = vectors[:, 1]  # the principal axis (largest eigenvalue)
    theta = np.arctan2(vx, vy)
    cos, sin = np.cos(theta), np.sin(theta)
    x, y = x * cos - y * sin, x * sin + y * cos
    eps = 1e-9  # constituents on an axis (up to round-off) count on neither side
    if pt[x > eps].sum() < pt[x < -eps].sum():
        x = -x
    if pt[y > eps].sum() < pt[y < -eps].sum():
        y = -y
    return x, y


def pixelate(pt: np.ndarray, x: np.ndarray, y: np.ndarray, size: int, radius: float) -> np.ndarray:
    """pT summed per pixel, ``(size, size)`` float64, rows along ``y``, columns along ``x``."""
    edges = pixel_edges(size, radius)
    image, _, _ = np.histogram2d(y, x, bins=(edges, edges), weights=pt)
    return image


def jet_image(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, axis_eta: float, axis_phi: float,
              size: int = 32, radius: float = 0.8) -> np.ndarray:
    """The preprocessed image of one jet (see the module docstring).

    Arguments:
        pt, eta, phi: ``(n,)`` the jet's constituents.
        axis_eta, axis_phi: the jet axis (the reference for delta phi wrapping).
        size: pixels per side.
        radius: half-width of the image in eta and phi (the jet radius R).

    Returns:
        float32 ``(size, size)`` summing to 1 (all zeros if no constituent lands inside).
    """
    pt = np.asarray(pt, dtype=np.float64)
    if len(pt) == 0 or pt.sum() <= 0:
        return np.zeros((size, size), np.float32)
    deta = np.asarray(eta, dtype=np.float64) - axis_eta
    dphi = wrap_phi(np.asarray(phi, dtype=np.float64) - axis_phi)
    x, y = standard_frame(pt, deta, dphi)
    image = pixelate(pt, x, y, size, radius)
    total = image.sum()
    return (image / total if total > 0 else image).astype(np.float32)


def event_image(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, axis_eta: float, axis_phi: float,
                size: int = 32, half_width: float = np.pi) -> np.ndarray:
    """An event-level image: each object's pT in its (delta eta, delta phi) pixel around the leading jet.

    No rotation or flip (the objects of an event are few and far apart): the leading jet sits in the centre
    pixel, the window is ``half_width`` on each side in delta eta (objects beyond it are dropped) and the
    whole azimuth in delta phi (wrapped into the window), and the image sums to 1.

    Arguments:
        pt, eta, phi: ``(n,)`` the event's objects (no MET).
        axis_eta, axis_phi: the leading jet.

    Returns:
        float32 ``(size, size)``: rows along delta phi, columns along delta eta.
    """
    pt = np.asarray(pt, dtype=np.float64)
    x = np.asarray(eta, dtype=np.float64) - axis_eta
    low = pixel_edges(size, half_width)[0]
    y = np.remainder(np.asarray(phi, dtype=np.float64) - axis_phi - low, 2 * np.pi) + low
    image = pixelate(pt, x, y, size, half_width)
    total = image.sum()
    return (image / total if total > 0 else image).astype(np.float32)
