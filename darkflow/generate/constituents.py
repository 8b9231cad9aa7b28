"""PF candidates: every visible final-state particle after the detector, as NanoAOD's PFNano stores them.

``darkflow generate --constituents`` writes them as the jagged collection ``PFCands`` (``nPFCands``,
``PFCands_pt``, ``PFCands_eta``, ``PFCands_phi``, ``PFCands_mass``, ``PFCands_pdgId``, ``PFCands_charge``)
beside the reconstructed objects, so that large-radius jets and jet images can be built from them
(:mod:`darkflow.jetimages`). The objects (``Jet``, ``Electron``, ...) do not change: they are clustered and
smeared from the particles as before, with their own random numbers.

References:
    CMS Collaboration, "Particle-flow reconstruction and global event description with the CMS detector",
    JINST 12 (2017) P10003.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkflow.generate.detector import Detector
from darkflow.generate.reconstruct import ELECTRON, MUON, PHOTON, Record, mass, pt_eta_phi

FIELDS = ("pt", "eta", "phi", "mass", "pdgId", "charge")
"""Fields of the ``PFCands`` collection, in PFNano's spelling."""


@dataclass
class PFCandidates:
    """One event's PF candidates in decreasing pT.

    Shapes:
        rows: float64 ``(k, 4)`` of (pt, eta, phi, mass); pdg_id and charge int ``(k,)``.
    """

    rows: np.ndarray
    pdg_id: np.ndarray
    charge: np.ndarray


def pf_candidates(record: Record, detector: Detector, rng: np.random.Generator) -> PFCandidates:
    """Smear every visible final-state particle in the acceptance by its subdetector's resolution.

    Charged hadrons within the tracker use the tracker resolution (sigma_pT / pT), beyond it the hadron
    calorimeter's (the ``jet`` resolution, sigma_E / E); electrons, photons and muons their own; neutral
    hadrons the hadron calorimeter's. The four-vector is scaled by ``1 + sigma * N(0, 1)`` (direction kept),
    then candidates with pT > ``constituents.pt_min`` are kept, in decreasing pT.
    """
    if record.charge is None:
        raise ValueError("the record has no particle charges; read it with RecordReader")
    cfg = detector.constituents
    pt, eta, _ = pt_eta_phi(record.p4)
    inside = np.flatnonzero(record.visible & (np.abs(eta) < detector.acceptance.abs_eta_max))
    p4, pid, charge = record.p4[inside], record.pid[inside], record.charge[inside]
    pt, eta, energy = pt[inside], eta[inside], p4[:, 3]
    absid = np.abs(pid)
    sigma = detector.jet.sigma(energy)
    sigma = np.where(absid == ELECTRON, detector.electron.sigma(energy), sigma)
    sigma = np.where(absid == PHOTON, detector.photon.sigma(energy), sigma)
    sigma = np.where(absid == MUON, detector.muon.sigma(pt), sigma)
    tracked = (charge != 0) & (absid != ELECTRON) & (absid != MUON) & (np.abs(eta) < cfg.tracker_abs_eta)
    sigma = np.where(tracked, cfg.tracker.sigma(pt), sigma)
    factor = np.maximum(1.0 + sigma * rng.standard_normal(len(p4)), 1e-3)
    smeared = p4 * factor[:, None]
    spt, seta, sphi = pt_eta_phi(smeared)
    keep = np.flatnonzero(spt > cfg.pt_min)
    keep = keep[np.argsort(-spt[keep], kind="stable")]
    rows = np.stack([spt[keep], seta[keep], sphi[keep], mass(smeared[keep])], axis=1)
    return PFCandidates(rows, pid[keep], charge[keep])
