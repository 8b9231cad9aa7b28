"""From a Pythia 8 event record to reconstructed objects: jets, b-tags, isolated leptons and photons, MET.

The record is read once into numpy arrays (:class:`RecordReader`); everything after it is whole-array
numpy on one event (:func:`reconstruct`), with anti-kT jets clustered by Pythia's ``SlowJet`` (fjcore).

References:
    M. Cacciari, G. P. Salam, G. Soyez, "The anti-kt jet clustering algorithm", JHEP 04 (2008) 063.
    C. Bierlich et al., "A comprehensive guide to the physics and usage of PYTHIA 8.3", SciPost Phys.
    Codebases 8 (2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkflow.data_prep.kinematics import mass_from_cartesian, ptetaphi_from_cartesian
from darkflow.data_prep.objects import ObjectDefinitions
from darkflow.generate.detector import Detector

ELECTRON, MUON, PHOTON = 11, 13, 22


@dataclass
class Record:
    """One event's final-state particles and heavy-flavour hadrons.

    Shapes:
        p4: float64 ``(n, 4)`` (px, py, pz, E) of final-state particles; ``pid`` int64 ``(n,)``;
        visible: bool ``(n,)`` (Pythia's ``isVisible``: neutrinos, neutralinos, dark hadrons are not).
        hadrons: float64 ``(h, 4)`` of b and c hadrons; ``flavour`` int64 ``(h,)``, 5 or 4.
        charge: int64 ``(n,)`` electric charge in units of e (``None`` when not read).
    """

    p4: np.ndarray
    pid: np.ndarray
    visible: np.ndarray
    hadrons: np.ndarray
    flavour: np.ndarray
    charge: np.ndarray | None = None


def heavy_flavour(id_abs: int) -> int:
    """5 for a hadron with a b quark, 4 for one with a c quark (and no b), else 0 (PDG numbering)."""
    h = id_abs % 10000
    q = (h // 1000) % 10 if h >= 1000 else (h // 100) % 10
    return q if q in (4, 5) else 0


class RecordReader:
    """Reads ``pythia8mc`` event records into :class:`Record` (the only per-particle Python loop).

    Per particle it asks only for the status, then the momentum and id of final-state particles and of
    decayed hadrons (status below -80) with heavy flavour; visibility and charge come from Pythia's
    particle data, cached per id.
    """

    def __init__(self, particle_data) -> None:
        self._data = particle_data
        self._known: dict[int, tuple[bool, int]] = {}
        self._flavour = [heavy_flavour(a) for a in range(10_000)]

    def properties(self, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Visibility (bool) and electric charge (int, units of e) of each particle id, ``(n,)`` each."""
        uniq, inverse = np.unique(pid, return_inverse=True)
        for code in uniq.tolist():
            if code not in self._known:
                self._known[code] = (bool(self._data.isVisible(code)), round(self._data.charge(code)))
        table = np.array([self._known[c] for c in uniq.tolist()], dtype=np.int64).reshape(-1, 2)
        table = table[inverse.reshape(-1)]
        return table[:, 0].astype(bool), table[:, 1]

    def visible(self, pid: np.ndarray) -> np.ndarray:
        """Pythia's ``isVisible`` of each particle id, bool ``(n,)``."""
        return self.properties(pid)[0]

    def __call__(self, event) -> Record:
        final, hadrons, flavour = [], [], []
        add = final.extend
        table = self._flavour
        for p in event.particles():
            status = p.status()
            if status > 0:
                add((p.px(), p.py(), p.pz(), p.e(), p.id()))
            elif status < -80:
                f = table[p.idAbs() % 10_000]
                if f:
                    hadrons.append((p.px(), p.py(), p.pz(), p.e()))
                    flavour.append(f)
        fin = np.array(final, dtype=np.float64).reshape(-1, 5)
        pid = fin[:, 4].astype(np.int64)
        visible, charge = self.properties(pid)
        return Record(
            fin[:, :4],
            pid,
            visible,
            np.array(hadrons, dtype=np.float64).reshape(-1, 4),
            np.array(flavour, dtype=np.int64),
            charge,
        )


def pt_eta_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pt, eta, phi) of four-vectors ``(n, 4)``; eta is +-inf along the beam."""
    return ptetaphi_from_cartesian(p4[:, 0], p4[:, 1], p4[:, 2])


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Delta R between every pair, ``(len(eta1), len(eta2))``."""
    deta = eta1[:, None] - eta2[None, :]
    dphi = np.remainder(phi1[:, None] - phi2[None, :] + np.pi, 2 * np.pi) - np.pi
    return np.hypot(deta, dphi)


def mass(p4: np.ndarray) -> np.ndarray:
    """Invariant mass of four-vectors ``(n, 4)``, 0 where round-off makes m^2 negative."""
    return mass_from_cartesian(p4[:, 0], p4[:, 1], p4[:, 2], p4[:, 3])


@dataclass
class Reconstructed:
    """Objects of one event after smearing and the object thresholds, each in decreasing pT.

    Shapes:
        jets, electrons, muons, photons: float64 ``(k, 4)`` rows of (pt, eta, phi, mass);
        jet_btag bool, electron_charge and muon_charge int ``(k,)``.
    """

    jets: np.ndarray
    jet_btag: np.ndarray
    electrons: np.ndarray
    electron_charge: np.ndarray
    muons: np.ndarray
    muon_charge: np.ndarray
    photons: np.ndarray
    met: float
    met_phi: float


def _isolated(cands: np.ndarray, pt, eta, phi, inside: np.ndarray, cfg) -> np.ndarray:
    """The isolated candidates (indices into the final-state list)."""
    if len(cands) == 0:
        return cands
    near = delta_r(eta[cands], phi[cands], eta[inside], phi[inside]) < cfg.delta_r
    cone = (near * pt[inside][None, :]).sum(axis=1) - pt[cands]
    return cands[cone < cfg.max_relative * pt[cands]]


def _measure(p4: np.ndarray, sigma_of, rng: np.random.Generator, cut) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smear four-vectors by ``1 + sigma * N(0, 1)``, apply the object threshold, sort by pT.

    Returns (pt, eta, phi, mass) rows ``(k, 4)``, the selected row indices into ``p4``, and the
    transverse momentum the smearing added to the whole event (for MET), ``(2,)``.
    """
    if len(p4) == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(2)
    factor = np.maximum(1.0 + sigma_of(p4) * rng.standard_normal(len(p4)), 1e-3)
    smeared = p4 * factor[:, None]
    shift = (smeared[:, :2] - p4[:, :2]).sum(axis=0)
    pt, eta, phi = pt_eta_phi(smeared)
    keep = np.flatnonzero((pt > cut.pt_min) & (np.abs(eta) < cut.abs_eta_max))
    keep = keep[np.argsort(-pt[keep], kind="stable")]
    rows = np.stack([pt[keep], eta[keep], phi[keep], mass(smeared[keep])], axis=1)
    return rows, keep, shift


def reconstruct(
    record: Record, jets_p4: np.ndarray, detector: Detector, thresholds: ObjectDefinitions,
    rng: np.random.Generator,
) -> Reconstructed:
    """Detector-level objects of one event.

    Arguments:
        record: the event's particles (:class:`RecordReader`).
        jets_p4: ``(j, 4)`` anti-kT jets of the visible final state within the acceptance.
        detector: resolutions, isolation, overlap removal, b-tagging, acceptance.
        thresholds: object definitions applied after smearing (the Dark Machines ones by default).
        rng: the worker's random generator (smearing and tagging).
    """
    pt, eta, phi = pt_eta_phi(record.p4)
    inside = np.flatnonzero(record.visible & (np.abs(eta) < detector.acceptance.abs_eta_max))
    iso = detector.isolation
    absid = np.abs(record.pid[inside])
    lep = inside[((absid == ELECTRON) | (absid == MUON)) & (pt[inside] > iso.lepton_pt_min)]
    pho = inside[(absid == PHOTON) & (pt[inside] > iso.photon_pt_min)]
    lep = _isolated(lep, pt, eta, phi, inside, iso)
    pho = _isolated(pho, pt, eta, phi, inside, iso)

    if len(jets_p4):
        jpt, jeta, jphi = pt_eta_phi(jets_p4)
        objects = np.concatenate([lep, pho])
        if len(objects):
            keep = ~(delta_r(jeta, jphi, eta[objects], phi[objects]) < detector.overlap.delta_r).any(axis=1)
            jets_p4, jeta, jphi = jets_p4[keep], jeta[keep], jphi[keep]
        tag = detector.btag
        prob = np.full(len(jets_p4), tag.light_mistag)
        if len(record.hadrons) and len(jets_p4):
            hpt, heta, hphi = pt_eta_phi(record.hadrons)
            for flavour, p in ((4, tag.c_mistag), (5, tag.efficiency)):
                sel = (record.flavour == flavour) & (hpt > tag.hadron_pt_min)
                if sel.any():
                    prob[(delta_r(jeta, jphi, heta[sel], hphi[sel]) < tag.delta_r).any(axis=1)] = p
        btag = rng.random(len(jets_p4)) < prob
    else:
        btag = np.zeros(0, dtype=bool)

    abs_lep = np.abs(record.pid[lep])
    electrons, muons = lep[abs_lep == ELECTRON], lep[abs_lep == MUON]
    jets, jkeep, s1 = _measure(jets_p4, lambda v: detector.jet.sigma(v[:, 3]), rng, thresholds.jet)
    ele, ekeep, s2 = _measure(record.p4[electrons], lambda v: detector.electron.sigma(v[:, 3]), rng,
                              thresholds.eminus)
    muo, mkeep, s3 = _measure(record.p4[muons], lambda v: detector.muon.sigma(np.hypot(v[:, 0], v[:, 1])), rng,
                              thresholds.muminus)
    pho_rows, _, s4 = _measure(record.p4[pho], lambda v: detector.photon.sigma(v[:, 3]), rng, thresholds.photon)
    # MET: minus the visible transverse momentum in the acceptance, corrected by what smearing moved.
    mex, mey = -(record.p4[inside, :2].sum(axis=0) + s1 + s2 + s3 + s4)
    return Reconstructed(
        jets, btag[jkeep], ele, -np.sign(record.pid[electrons][ekeep]), muo, -np.sign(record.pid[muons][mkeep]),
        pho_rows, float(np.hypot(mex, mey)), float(np.arctan2(mey, mex)),
    )
