"""A parametric detector: resolutions, isolation, overlap removal, b-tagging and acceptance.

Configured by ``data_prep/generation/detectors/*.yaml``; every key maps one-to-one to these models.
"""

from __future__ import annotations

import numpy as np

from darkflow.config import StrictModel, read_yaml, validate
from darkflow.data_prep.builtin import resolve


class JetClustering(StrictModel):
    """Anti-kT jets from visible final-state particles (Pythia's SlowJet with fjcore)."""

    radius: float = 0.4
    pt_min: float = 15.0
    abs_eta_max: float = 4.9


class EnergyResolution(StrictModel):
    """sigma_E / E = stochastic / sqrt(E) (+) constant."""

    stochastic: float
    constant: float

    def sigma(self, energy: np.ndarray) -> np.ndarray:
        return np.hypot(self.stochastic / np.sqrt(np.maximum(energy, 1e-9)), self.constant)


class MomentumResolution(StrictModel):
    """sigma_pT / pT = constant (+) slope * pT (tracker-like)."""

    constant: float
    slope: float

    def sigma(self, pt: np.ndarray) -> np.ndarray:
        return np.hypot(self.constant, self.slope * pt)


class Isolation(StrictModel):
    """A lepton or photon is isolated when the scalar pT sum of other visible particles within
    ``delta_r`` is below ``max_relative`` times its pT."""

    delta_r: float = 0.3
    max_relative: float = 0.15
    lepton_pt_min: float = 10.0
    photon_pt_min: float = 15.0


class Overlap(StrictModel):
    """Jets within ``delta_r`` of an isolated lepton or photon are removed (they are that object).

    0.4, the jet radius, is also the default overlap removal of ``darkflow prepare``
    (``data_prep/objects/darkmachines.yaml``), which then removes nothing from a generated file.
    """

    delta_r: float = 0.4


class BTagging(StrictModel):
    """A jet within ``delta_r`` of a b hadron (pT > ``hadron_pt_min``) is tagged with ``efficiency``;
    one matched to a c hadron with ``c_mistag``; any other with ``light_mistag``."""

    efficiency: float = 0.77
    c_mistag: float = 0.15
    light_mistag: float = 0.01
    delta_r: float = 0.4
    hadron_pt_min: float = 5.0


class Acceptance(StrictModel):
    """Visible particles beyond ``abs_eta_max`` escape the detector (they count in MET)."""

    abs_eta_max: float = 4.9


class Constituents(StrictModel):
    """Visible final-state particles written as PF candidates (``darkflow generate --constituents``).

    Each particle in the acceptance is measured by the subdetector a particle-flow algorithm would use:
    charged hadrons within ``tracker_abs_eta`` by the tracker (``tracker`` resolution), beyond it by the
    hadron calorimeter; electrons, photons and muons with their own resolutions; neutral hadrons by the
    hadron calorimeter (the ``jet`` resolution). Candidates with smeared pT > ``pt_min`` are kept.
    """

    pt_min: float = 0.5
    tracker_abs_eta: float = 2.5
    tracker: MomentumResolution = MomentumResolution(constant=0.01, slope=1e-4)


class Detector(StrictModel):
    """Every setting of the parametric detector."""

    jets: JetClustering = JetClustering()
    jet: EnergyResolution = EnergyResolution(stochastic=1.0, constant=0.05)
    electron: EnergyResolution = EnergyResolution(stochastic=0.10, constant=0.01)
    photon: EnergyResolution = EnergyResolution(stochastic=0.10, constant=0.01)
    muon: MomentumResolution = MomentumResolution(constant=0.01, slope=1e-4)
    isolation: Isolation = Isolation()
    overlap: Overlap = Overlap()
    btag: BTagging = BTagging()
    acceptance: Acceptance = Acceptance()
    constituents: Constituents = Constituents()


def load_detector(name_or_path: str = "default") -> Detector:
    """A built-in detector card by name, or a YAML file."""
    path = resolve("generation/detectors", name_or_path, label="detector")
    return validate(Detector, read_yaml(path), str(path))
