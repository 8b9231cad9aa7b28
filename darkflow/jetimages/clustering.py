"""The leading large-radius anti-kT jet of an event's particles, clustered by Pythia's ``SlowJet``.

``SlowJet`` runs FastJet's fjcore (the anti-kT algorithm with FastJet's own N ln N strategies) on a
``pythia8mc.Event`` filled with the particles; distances use rapidity and azimuth, four-momenta are added
(E-scheme) and the particles keep their masses.

References:
    M. Cacciari, G. P. Salam, G. Soyez, "The anti-kt jet clustering algorithm", JHEP 04 (2008) 063.
    M. Cacciari, G. P. Salam, G. Soyez, "FastJet user manual", Eur. Phys. J. C 72 (2012) 1896.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkflow.data_prep.kinematics import energy_from_ptetam, ptetaphi_from_cartesian


@dataclass
class Jet:
    """A clustered jet: its four-momentum as (pt, eta, phi, mass) and its constituents.

    Shapes:
        constituents: int ``(k,)`` indices into the particle arrays given to :class:`LeadingJet`.
    """

    pt: float
    eta: float
    phi: float
    mass: float
    constituents: np.ndarray


class LeadingJet:
    """Clusters an event's particles with anti-kT of radius ``radius`` and returns the hardest jet.

    Arguments:
        radius: the jet radius R.
        pt_min: jets below this pT are not built (GeV).
    """

    def __init__(self, radius: float = 0.8, pt_min: float = 1.0) -> None:
        import pythia8mc

        from darkflow.generate.engine import quiet_stdout

        if radius <= 0 or pt_min <= 0:
            raise ValueError(f"jet radius and pt_min must be positive, got {radius} and {pt_min}")
        with quiet_stdout():  # fjcore prints its banner on first use
            self._slowjet = pythia8mc.SlowJet(-1, radius, pt_min, 1e3, 1, 2)
            self._event = pythia8mc.Event()
            self._event.append(211, 1, 0, 0, 1.0, 0.0, 0.0, 1.1, 0.46)
            self._slowjet.analyze(self._event)

    def __call__(self, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> Jet | None:
        """The hardest jet of particles given as ``(n,)`` arrays, or ``None`` when no jet passes pt_min."""
        pt, eta, phi, mass = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, mass))
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        energy = energy_from_ptetam(pt, eta, mass)
        event = self._event
        event.reset()
        offset = event.size()  # reset() keeps a system entry at index 0
        append = event.append
        for row in zip(px.tolist(), py.tolist(), pz.tolist(), energy.tolist(), mass.tolist(), strict=True):
            append(211, 1, 0, 0, *row)
        sj = self._slowjet
        if not sj.analyze(event) or sj.sizeJet() == 0:
            return None
        p = sj.p(0)
        jpt, jeta, jphi = ptetaphi_from_cartesian(np.array([p.px()]), np.array([p.py()]), np.array([p.pz()]))
        return Jet(float(jpt[0]), float(jeta[0]), float(jphi[0]), float(sj.m(0)),
                   np.sort(np.array(sj.constituents(0), dtype=np.int64)) - offset)
