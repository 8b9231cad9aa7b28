"""``darkflow generate``: Pythia 8 events -> reconstructed objects -> ROOT (NanoAOD-like) and/or CSV.

Each worker process runs its own Pythia with its own seed, reconstructs every event
(:mod:`darkflow.generate.reconstruct`) and stores columns in part files; the parent then writes the
output under a temporary name, with per-event weights sigma * w_i / sum(w) in pb (sigma from Pythia's
own estimate, w_i Pythia's event weight, 1 unless the process biases its phase space), and renames it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkflow.data_prep.objects import ObjectDefinitions
from darkflow.errors import ConfigError, DarkFlowError
from darkflow.generate.catalogue import COMMON_SETTINGS, Process
from darkflow.generate.detector import Detector

MB_TO_PB = 1e9
PART_EVENTS = 20_000
COLLECTIONS = {
    "Jet": ("pt", "eta", "phi", "mass", "btag"),
    "Electron": ("pt", "eta", "phi", "mass", "charge"),
    "Muon": ("pt", "eta", "phi", "mass", "charge"),
    "Photon": ("pt", "eta", "phi", "mass"),
}
CONSTITUENTS = {"PFCands": ("pt", "eta", "phi", "mass", "pdgId", "charge")}
"""The PF-candidate collection written with ``--constituents`` (PFNano names)."""
INTEGER_FIELDS = ("charge", "pdgId")


@dataclass
class WorkerResult:
    """What one worker generated: its part files and Pythia's bookkeeping."""

    parts: list[str]
    n_events: int
    sum_weights: float
    sigma_mb: float
    sigma_err_mb: float
    n_tried: int
    n_failed: int
    seconds: float


def seeds(seed: int, process: str, n_workers: int) -> list[int]:
    """A distinct, reproducible seed per worker, from the user's seed and the process name."""
    seq = np.random.SeedSequence([seed, zlib.crc32(process.encode()), n_workers])
    return [int(s.generate_state(1)[0] % 900_000_000) + 1 for s in seq.spawn(n_workers)]


@contextlib.contextmanager
def quiet_stdout():
    """Send C++ writes to file descriptor 1 (Pythia's banner and listings) to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def make_pythia(process: Process, seed: int, ecm: float = 13000.0):
    """An initialised ``pythia8mc.Pythia`` for ``process``; a setting Pythia rejects is a ConfigError."""
    import pythia8mc

    with quiet_stdout():
        pythia = pythia8mc.Pythia("", False)
        lines = [*COMMON_SETTINGS, f"Beams:eCM = {ecm:g}", f"Random:seed = {seed}", *process.pythia_lines()]
        for line in lines:
            if not pythia.readString(line):
                raise ConfigError(f"process {process.name!r}: Pythia rejects the setting {line!r} ({process.source})")
        ok = pythia.init()
    if not ok:
        raise ConfigError(f"process {process.name!r}: Pythia failed to initialise with {process.source}")
    return pythia


class _Columns:
    """Per-event reconstructed objects (and PF candidates when asked) accumulated as flat columns."""

    def __init__(self, constituents: bool = False) -> None:
        self.collections = COLLECTIONS | CONSTITUENTS if constituents else COLLECTIONS
        self.counts = {c: [] for c in self.collections}
        self.values = {c: {f: [] for f in fs} for c, fs in self.collections.items()}
        self.scalars = {"MET_pt": [], "MET_phi": [], "w": [], "event": []}

    def __len__(self) -> int:
        return len(self.scalars["event"])

    def add(self, rec, weight: float, event: int, pf=None) -> None:
        groups = {
            "Jet": (rec.jets, {"btag": rec.jet_btag}),
            "Electron": (rec.electrons, {"charge": rec.electron_charge}),
            "Muon": (rec.muons, {"charge": rec.muon_charge}),
            "Photon": (rec.photons, {}),
        }
        if "PFCands" in self.collections:
            groups["PFCands"] = (pf.rows, {"pdgId": pf.pdg_id, "charge": pf.charge})
        for name, (rows, extra) in groups.items():
            self.counts[name].append(len(rows))
            values = self.values[name]
            for j, f in enumerate(("pt", "eta", "phi", "mass")):
                values[f].append(rows[:, j])
            for f, col in extra.items():
                values[f].append(col)
        self.scalars["MET_pt"].append(rec.met)
        self.scalars["MET_phi"].append(rec.met_phi)
        self.scalars["w"].append(weight)
        self.scalars["event"].append(event)

    def save(self, path: Path) -> None:
        arrays = {}
        for name, fields in self.collections.items():
            arrays[f"n{name}"] = np.array(self.counts[name], dtype=np.int32)
            for f in fields:
                dtype = np.int32 if f in INTEGER_FIELDS else np.float32
                arrays[f"{name}_{f}"] = np.concatenate(self.values[name][f]).astype(dtype) if len(self) else np.zeros(0, dtype)
        arrays["MET_pt"] = np.array(self.scalars["MET_pt"], dtype=np.float32)
        arrays["MET_phi"] = np.array(self.scalars["MET_phi"], dtype=np.float32)
        arrays["w"] = np.array(self.scalars["w"], dtype=np.float64)
        arrays["event"] = np.array(self.scalars["event"], dtype=np.int64)
        np.savez(path, **arrays)


def run_worker(process: Process, detector: Detector, thresholds: ObjectDefinitions, n_events: int, seed: int,
               first_event: int, workdir: str, tag: str, constituents: bool = False,
               progress: Callable[[int], None] | None = None) -> WorkerResult:
    """Generate ``n_events`` accepted events with one Pythia; columns go to ``workdir/tag_*.npz``.

    With ``constituents`` the PF candidates are stored too; they are smeared with their own random stream,
    so the objects are the same with and without them. ``progress`` is called with the number of events
    done so far (every 10 events and at the end).
    """
    import pythia8mc

    from darkflow.generate.constituents import pf_candidates
    from darkflow.generate.reconstruct import RecordReader, reconstruct

    pythia = make_pythia(process, seed)
    start = time.perf_counter()
    jets = detector.jets
    slowjet = pythia8mc.SlowJet(-1, jets.radius, jets.pt_min, detector.acceptance.abs_eta_max, 2, 2)
    rng = np.random.default_rng(seed)
    pf_rng = np.random.default_rng([seed, 1])
    read_record = RecordReader(pythia.particleData)
    cols, parts = _Columns(constituents), []
    done = failed = 0
    reported = 0
    with quiet_stdout():
        while done < n_events:
            if not pythia.next():
                failed += 1
                if failed > 100 + n_events:
                    raise DarkFlowError(f"process {process.name!r}: Pythia failed {failed} times; check its settings")
                continue
            slowjet.analyze(pythia.event)
            jets_p4 = np.array([(v.px(), v.py(), v.pz(), v.e()) for v in
                                (slowjet.p(i) for i in range(slowjet.sizeJet()))], dtype=np.float64).reshape(-1, 4)
            record = read_record(pythia.event)
            rec = reconstruct(record, jets_p4, detector, thresholds, rng)
            pf = pf_candidates(record, detector, pf_rng) if constituents else None
            cols.add(rec, pythia.infoPython().weight(), first_event + done, pf)
            done += 1
            if len(cols) >= PART_EVENTS:
                parts.append(str(Path(workdir) / f"{tag}_{len(parts):05d}.npz"))
                cols.save(Path(parts[-1]))
                cols = _Columns(constituents)
            if progress is not None and done - reported >= 10:
                progress(done)
                reported = done
        if len(cols):
            parts.append(str(Path(workdir) / f"{tag}_{len(parts):05d}.npz"))
            cols.save(Path(parts[-1]))
    if progress is not None:
        progress(done)
    sum_w = float(sum(np.load(p)["w"].sum() for p in parts))
    info = pythia.infoPython()  # a snapshot: read it after the run
    return WorkerResult(parts, done, sum_w, info.sigmaGen(), info.sigmaErr(), done + failed, failed,
                        time.perf_counter() - start)
