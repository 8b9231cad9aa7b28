"""An independent, deliberately plain per-event implementation of DESIGN section 3, for the tests.

It shares no code with ``darkflow``: plain Python loops and ``math`` over values read with uproot.
"""

from __future__ import annotations

import math

import numpy as np

TYPES = ["jet", "bjet", "eplus", "eminus", "muplus", "muminus", "photon"]
CUTS = {"jet": (20, 2.8), "bjet": (20, 2.8), "eplus": (15, 2.7), "eminus": (15, 2.7), "muplus": (15, 2.7),
        "muminus": (15, 2.7), "photon": (20, 2.37)}
SLOTS = {"jet": 13, "bjet": 3, "eplus": 3, "eminus": 3, "muplus": 3, "muminus": 3, "photon": 3}
REL_ISO_MAX = 0.15
OVERLAP_DR = 0.4
"""The default object definitions: leptons and photons isolated below 0.15, jets removed within 0.4 of them."""

# The ID working points and isolation branches of the built-in NanoAOD sources, written out by hand:
# collection -> (branch, "bits" or "min", value) and collection -> isolation branch.
NANOAOD_IDS = {"Jet": ("Jet_jetId", "bits", 2), "Electron": ("Electron_cutBased", "min", 3),
               "Muon": ("Muon_mediumId", "min", 1), "Photon": ("Photon_cutBased", "min", 2)}
NANOAOD_ISO = {"Electron": "Electron_pfRelIso03_all", "Muon": "Muon_pfRelIso04_all",
               "Photon": "Photon_pfRelIso03_all"}
SOURCES = {
    "nanoaod": {"btag": ("Jet_btagDeepB", 0.4941), "id": NANOAOD_IDS, "iso": NANOAOD_ISO},
    "nanoaod_opendata2015": {"btag": ("Jet_btagCSVV2", 0.800), "iso": NANOAOD_ISO,
                             "id": NANOAOD_IDS | {"Muon": ("Muon_isPFcand", "min", 1)}},
    "darkflow": {"btag": ("Jet_btag", 0.5), "id": {}, "iso": {}},
}


def branches(source: str) -> list[str]:
    """The branches :func:`event_objects` reads for a source."""
    spec = SOURCES[source]
    names = [f"{c}_{f}" for c in ("Jet", "Electron", "Muon", "Photon") for f in ("pt", "eta", "phi", "mass")]
    names += ["Electron_charge", "Muon_charge", spec["btag"][0], *(v[0] for v in spec["id"].values())]
    return names + list(spec["iso"].values())


def energy(pt: float, eta: float, mass: float) -> float:
    return math.sqrt((pt * math.cosh(eta)) ** 2 + mass**2)


def delta_r(a: tuple, b: tuple) -> float:
    """Delta R of two ``(E, pt, eta, phi)`` objects, Delta phi folded into [-pi, pi)."""
    dphi = (a[3] - b[3] + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(a[2] - b[2], dphi)


def event_objects(ev: dict, source: str = "nanoaod", id_iso: bool = True, overlap: bool = True
                  ) -> dict[str, list[tuple]]:
    """Selected ``(E, pt, eta, phi)`` per type, pT-descending, for one event of a NanoAOD-like dict.

    ``id_iso``: require the source's ID and relative isolation < 0.15 where it has them (the default
    object definitions); ``overlap``: then drop jets and b-jets within Delta R < 0.4 of a selected lepton
    or photon. Both off: the Dark Machines pT and |eta| cuts alone.
    """
    spec = SOURCES[source]
    btag_branch, btag_thr = spec["btag"]
    objs: dict[str, list[tuple]] = {t: [] for t in TYPES}

    def add(kind, coll, i):
        pt, eta, phi, mass = (float(ev[f"{coll}_{f}"][i]) for f in ("pt", "eta", "phi", "mass"))
        ptmin, etamax = CUTS[kind]
        if not (pt > ptmin and abs(eta) < etamax):
            return
        if id_iso and coll in spec["id"]:
            branch, rule, value = spec["id"][coll]
            passed = (int(ev[branch][i]) & value) == value if rule == "bits" else float(ev[branch][i]) >= value
            if not passed:
                return
        if id_iso and coll in spec["iso"] and not float(ev[spec["iso"][coll]][i]) < REL_ISO_MAX:
            return
        objs[kind].append((energy(pt, eta, mass), pt, eta, phi))

    for i in range(len(ev["Jet_pt"])):
        add("bjet" if ev[btag_branch][i] > btag_thr else "jet", "Jet", i)
    for coll, plus, minus in (("Electron", "eplus", "eminus"), ("Muon", "muplus", "muminus")):
        for i in range(len(ev[f"{coll}_pt"])):
            q = ev[f"{coll}_charge"][i]
            if q == 0:
                continue
            add(plus if q > 0 else minus, coll, i)
    for i in range(len(ev["Photon_pt"])):
        add("photon", "Photon", i)
    if overlap:
        remove_overlaps(objs)
    for kind in TYPES:
        objs[kind].sort(key=lambda o: -o[1])
    return objs


def remove_overlaps(objs: dict[str, list[tuple]], dr: float = OVERLAP_DR) -> None:
    """Drop, in place, every jet and b-jet within ``dr`` of a selected lepton or photon."""
    near = [o for k in ("eplus", "eminus", "muplus", "muminus", "photon") for o in objs[k]]
    for kind in ("jet", "bjet"):
        objs[kind] = [j for j in objs[kind] if all(delta_r(j, o) >= dr for o in near)]


def default_array(objs: dict[str, list[tuple]], met: float, met_phi: float) -> tuple[np.ndarray, np.ndarray]:
    """The 32 x 4 default-layout array and mask of one event."""
    rows, mask = [], []
    for kind in TYPES:
        for s in range(SLOTS[kind]):
            if s < len(objs[kind]):
                rows.append(objs[kind][s])
                mask.append(True)
            else:
                rows.append((0.0, 0.0, 0.0, 0.0))
                mask.append(False)
    rows.append((met, met, 0.0, met_phi))
    mask.append(True)
    return np.array(rows), np.array(mask)


def hlf(objs: dict[str, list[tuple]], met: float, met_phi: float) -> list[float]:
    """MET, MET_phi, HT, m_eff and the multiplicities, in the order of the ``hlf`` dataset."""
    ht = sum(o[1] for k in ("jet", "bjet") for o in objs[k])
    meff = ht + sum(o[1] for k in ("eplus", "eminus", "muplus", "muminus", "photon") for o in objs[k]) + met
    return [met, met_phi, ht, meff] + [len(objs[k]) for k in TYPES]


def channel_pass(name: str, objs: dict[str, list[tuple]], met: float) -> bool:
    """The Dark Machines channel selections, written out by hand."""
    ht = sum(o[1] for k in ("jet", "bjet") for o in objs[k])
    jets = [o[1] for k in ("jet", "bjet") for o in objs[k]]
    leptons = [o[1] for k in ("eplus", "eminus", "muplus", "muminus") for o in objs[k]]
    if name == "chan1":
        return (ht >= 600 and met >= 200 and (ht == 0 or met / ht >= 0.2)
                and sum(p > 50 for p in jets) >= 4 and sum(p > 200 for p in jets) >= 1)
    if name == "chan2a":
        return met >= 50 and sum(p > 15 for p in leptons) >= 3
    if name == "chan2b":
        return met >= 50 and ht >= 50 and sum(p > 15 for p in leptons) >= 2
    if name == "chan3":
        return ht >= 600 and met >= 100
    raise ValueError(name)
