"""Symmetry-aware standardization: invariance under azimuthal rotations and z -> -z, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darkflow.errors import InputError
from darkflow.models.scaler import Standardizer

ROWS = ["jet"] * 4 + ["bjet"] * 2 + ["eplus", "muminus", "met"]
FEATS = ["E", "pt", "eta", "phi"]
ALPHAS = np.linspace(-3 * np.pi, 3 * np.pi, 37) + 0.123


def events(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random events ``(n, 9, 4)`` with padding zero; the last 8 events have only the MET row."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(50, (n, len(ROWS))) + 20
    eta = rng.uniform(-2.5, 2.5, (n, len(ROWS)))
    phi = rng.uniform(-np.pi, np.pi, (n, len(ROWS)))
    obj = np.stack([pt * np.cosh(eta), pt, eta, phi], -1)
    mask = rng.random((n, len(ROWS))) < 0.6
    mask[-8:] = False
    mask[:, -1] = True
    obj[:, -1, 2] = 0.0
    obj[:, -1, 0] = obj[:, -1, 1]
    obj[~mask] = 0
    return obj.astype(np.float32), mask


def rotated(obj: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    out = obj.copy()
    phi = np.angle(np.exp(1j * (obj[..., 3].astype(np.float64) + alpha)))
    out[..., 3] = np.where(mask, phi, 0).astype(np.float32)
    return out


def fitted(phi: str = "cossin", **options) -> Standardizer:
    obj, mask = events(400, seed=9)
    return Standardizer(FEATS, ROWS, phi, ["E", "pt"], **options).fit([(obj, mask)])


def standardized(sc: Standardizer, obj: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return sc(torch.from_numpy(obj), torch.from_numpy(mask)).numpy()


def reference_phi(obj: np.ndarray, mask: np.ndarray, rotate: str) -> np.ndarray:
    """The relative azimuth, event by event in float64 (independent of the tensor code)."""
    out = np.zeros(obj.shape[:2])
    for i in range(len(obj)):
        real = np.flatnonzero(mask[i, :-1])
        ref = len(ROWS) - 1 if rotate == "met" or real.size == 0 else real[np.argmax(obj[i, real, 1])]
        d = obj[i, :, 3].astype(np.float64) - float(obj[i, ref, 3])
        d = np.arctan2(np.sin(d), np.cos(d))
        out[i] = np.where(mask[i], d, 0.0)
    return out


@pytest.mark.parametrize("rotate", ["leading", "met"])
@pytest.mark.parametrize("phi", ["cossin", "wrap"])
def test_rotation_about_the_beam_leaves_the_standardized_event_unchanged(rotate, phi):
    sc = fitted(phi, rotate=rotate)
    obj, mask = events()
    base = standardized(sc, obj, mask)
    plain = fitted(phi)
    for alpha in ALPHAS:
        turned = rotated(obj, mask, alpha)
        np.testing.assert_allclose(standardized(sc, turned, mask), base, atol=5e-4)
        assert not np.allclose(standardized(plain, turned, mask), standardized(plain, obj, mask), atol=1e-2)


@pytest.mark.parametrize("rotate", ["leading", "met"])
def test_relative_phi_matches_numpy_and_padding_stays_zero(rotate):
    sc = Standardizer(FEATS, ROWS, "none", [], rotate=rotate, reflect_eta=True)
    obj, mask = events()
    canon = sc.canonical(torch.from_numpy(obj), torch.from_numpy(mask)).numpy()
    expected = reference_phi(obj, mask, rotate)
    assert (expected > -np.pi).all() and (expected <= np.pi).all()
    np.testing.assert_allclose(canon[..., 3], expected, atol=2e-6)
    assert (canon[~mask] == 0).all() and (canon[:, :, [0, 1]] == obj[:, :, [0, 1]]).all()
    if rotate == "leading":  # the reference object itself sits at phi = 0, the MET of MET-only events too
        lead = np.where(mask[:, :-1], obj[:, :-1, 1], -1).argmax(1)
        has = mask[:, :-1].any(1)
        assert (canon[np.arange(len(obj)), np.where(has, lead, len(ROWS) - 1), 3] == 0).all()
    out = fitted(rotate=rotate, reflect_eta=True)(torch.from_numpy(obj), torch.from_numpy(mask)).numpy()
    assert (out[~mask] == 0).all()


def test_reflection_in_eta_leaves_the_standardized_event_unchanged():
    sc = fitted(rotate="leading", reflect_eta=True)
    obj, mask = events()
    flipped = obj.copy()
    flipped[..., 2] *= -1
    np.testing.assert_allclose(standardized(sc, flipped, mask), standardized(sc, obj, mask), atol=1e-5)
    canon = sc.canonical(torch.from_numpy(obj), torch.from_numpy(mask)).numpy()
    lead = np.where(mask[:, :-1], obj[:, :-1, 1], -1).argmax(1)
    assert (canon[np.arange(len(obj)), lead, 2] >= 0).all()
    np.testing.assert_allclose(np.abs(canon[..., 2]), np.abs(obj[..., 2]))


def test_reflection_in_phi_leaves_the_standardized_event_unchanged():
    for rotate in ("leading", "met"):
        sc = fitted(rotate=rotate, reflect_phi=True)
        obj, mask = events()
        mirrored = obj.copy()
        mirrored[..., 3] = np.where(mask, -obj[..., 3], 0)
        for alpha in ALPHAS[::6]:
            np.testing.assert_allclose(standardized(sc, rotated(mirrored, mask, alpha), mask),
                                       standardized(sc, obj, mask), atol=5e-4)


def test_round_trip_old_dicts_float64_and_torch_export():
    sc = fitted(rotate="met", reflect_eta=True, reflect_phi=True)
    again = Standardizer.from_json(sc.to_json())
    assert (again.rotate, again.reflect_eta, again.reflect_phi) == ("met", True, True)
    obj, mask = events()
    np.testing.assert_array_equal(standardized(again, obj, mask), standardized(sc, obj, mask))
    old = {k: v for k, v in fitted().to_dict().items() if k not in ("rotate", "reflect_eta", "reflect_phi")}
    assert Standardizer.from_dict(old).rotate == "none"
    canon64 = sc.canonical(torch.from_numpy(obj).double(), torch.from_numpy(mask))
    assert canon64.dtype == torch.float64
    # reflect_phi may flip an event's signs: compare magnitudes with the float64 numpy reference
    np.testing.assert_allclose(canon64[..., 3].abs().numpy(), np.abs(reference_phi(obj, mask, "met")), atol=1e-12)
    program = torch.export.export(sc, (torch.from_numpy(obj), torch.from_numpy(mask)),
                                  dynamic_shapes=({0: torch.export.Dim("batch")}, {0: torch.export.Dim("batch")}))
    obj2, mask2 = events(10, seed=5)
    torch.testing.assert_close(program.module()(torch.from_numpy(obj2), torch.from_numpy(mask2)),
                               sc(torch.from_numpy(obj2), torch.from_numpy(mask2)))


def test_options_the_layout_cannot_support_are_refused():
    with pytest.raises(InputError, match="need the features phi"):
        Standardizer(["E", "pt", "eta"], ["jet", "met"], rotate="leading")
    with pytest.raises(InputError, match="needs a MET row"):
        Standardizer(FEATS, ["jet", "jet"], rotate="met")
    with pytest.raises(InputError, match="reflect_phi needs a rotation"):
        Standardizer(FEATS, ROWS, reflect_phi=True)
