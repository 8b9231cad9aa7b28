"""Write generated events: NanoAOD-like ROOT (uproot) and Dark Machines CSV, both atomically.

ROOT headers normally carry the write time and a random UUID; here both are fixed (the time from
``SOURCE_DATE_EPOCH`` when set, else 1995-01-01, ROOT's epoch; the UUID from the run's seed), so that the
same seed gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from darkflow.data_prep.kinematics import energy_from_ptetam
from darkflow.fileio import atomic_output
from darkflow.generate.engine import COLLECTIONS, CONSTITUENTS

CSV_CODES = {"Jet": ("j", "b"), "Electron": ("e-", "e+"), "Muon": ("m-", "m+"), "Photon": ("g", "g")}


def _fixed_time() -> _dt.datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).replace(tzinfo=None)
    return _dt.datetime(1995, 1, 1)


@contextlib.contextmanager
def reproducible_uproot(seed: int) -> Iterator[Callable[[], uuid.UUID]]:
    """Fix the timestamps uproot writes; yields a deterministic UUID function for ``uproot.recreate``."""
    import uproot.writing._cascade as cascade
    import uproot.writing._cascadetree as cascadetree

    fixed = _fixed_time()

    class _Datetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ARG003
            return fixed

    shim = types.SimpleNamespace(datetime=_Datetime, timezone=_dt.timezone, timedelta=_dt.timedelta)
    counter = iter(range(1 << 30))

    def next_uuid() -> uuid.UUID:
        return uuid.UUID(int=(seed << 64) | next(counter))

    saved = cascade.datetime, cascadetree.datetime
    cascade.datetime = cascadetree.datetime = shim
    try:
        yield next_uuid
    finally:
        cascade.datetime, cascadetree.datetime = saved


def _parts(parts: list[str], scale: float) -> Iterator[dict[str, np.ndarray]]:
    """Load part files, turning Pythia's event weights into sigma/N-style weights in pb."""
    for path in parts:
        with np.load(path) as part:
            data = {k: part[k] for k in part.files}
        data["weight"] = data.pop("w") * scale
        yield data


def write_root(path: Path, parts: list[str], scale: float, seed: int, metadata: str) -> None:
    """NanoAOD-like tree ``Events`` (``nJet``, ``Jet_pt``, ..., ``MET_pt``, ``weight``, ``event``), plus
    ``nPFCands``, ``PFCands_pt``, ... when the parts hold PF candidates."""
    import awkward as ak
    import uproot

    with atomic_output(path) as tmp, open(tmp, "r+b") as sink, reproducible_uproot(seed) as uuid_function:
        # through a file object: uproot then records no (random) temporary name in the header
        with uproot.recreate(sink, uuid_function=uuid_function) as handle:
            tree = None
            for data in _parts(parts, scale):
                branches = {}
                for name, fields in (COLLECTIONS | CONSTITUENTS).items():
                    if f"n{name}" not in data:
                        continue
                    counts = data[f"n{name}"]
                    branches[name] = ak.unflatten(ak.zip({f: data[f"{name}_{f}"] for f in fields}), counts)
                for key in ("MET_pt", "MET_phi", "weight", "event"):
                    branches[key] = data[key]
                if tree is None:
                    types_ = {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()}
                    tree = handle.mktree("Events", types_, field_name=lambda o, i: f"{o}_{i}",
                                         counter_name=lambda c: "n" + c)
                tree.extend(branches)
            handle["darkflow_generate"] = metadata


def write_csv(path: Path, parts: list[str], scale: float, process: str) -> None:
    """Dark Machines CSV: ``event;process;weight;MET;METphi;code,E,pt,eta,phi;...`` in MeV."""
    with atomic_output(path) as tmp, open(tmp, "w") as out:
        for data in _parts(parts, scale):
            out.writelines(_csv_lines(data, process))


def _csv_lines(data: dict[str, np.ndarray], process: str) -> list[str]:
    """One line per event; objects of all types in decreasing pT."""
    n = len(data["event"])
    kinds, rows, owner = [], [], []
    for name in COLLECTIONS:
        counts = data[f"n{name}"]
        pt, eta, phi, m = (data[f"{name}_{f}"].astype(np.float64) for f in ("pt", "eta", "phi", "mass"))
        energy = energy_from_ptetam(pt, eta, m)
        flag = data[f"{name}_btag"] > 0.5 if name == "Jet" else (
            data[f"{name}_charge"] > 0 if name in ("Electron", "Muon") else np.zeros(len(pt), bool))
        codes = np.where(flag, CSV_CODES[name][1], CSV_CODES[name][0])
        kinds.append(codes)
        rows.append(np.stack([energy * 1000, pt * 1000, eta, phi], axis=1))
        owner.append(np.repeat(np.arange(n), counts))
    codes, values, event = np.concatenate(kinds), np.concatenate(rows), np.concatenate(owner)
    order = np.lexsort((-values[:, 1], event))
    codes, values, event = codes[order], values[order], event[order]
    fields = [f"{c},{e:.6g},{p:.6g},{h:.6g},{f:.6g}" for c, (e, p, h, f) in zip(codes, values.tolist(), strict=True)]
    starts = np.searchsorted(event, np.arange(n + 1))
    met, met_phi, w, ids = data["MET_pt"] * 1000.0, data["MET_phi"], data["weight"], data["event"]
    return [
        f"{ids[i]};{process};{w[i]:.8g};{met[i]:.6g};{met_phi[i]:.6g};"
        + "".join(f + ";" for f in fields[starts[i]:starts[i + 1]]) + "\n"
        for i in range(n)
    ]
