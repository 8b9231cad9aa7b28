"""Shared fixtures: the real CMS Open Data file and a writer of small NanoAOD-like ROOT files."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_NANOAOD = "nanoAOD_2015_CMS_Open_Data_ttbar.root"


def shared_data() -> Path | None:
    for base in (ROOT.parent / "shared" / "data", ROOT / "shared" / "data"):
        if (base / REAL_NANOAOD).is_file():
            return base
    return None


@pytest.fixture(scope="session")
def real_nanoaod() -> Path:
    base = shared_data()
    if base is None:
        if os.environ.get("CI"):
            pytest.fail(f"{REAL_NANOAOD} not found in ../shared/data; CI must test against the real file")
        pytest.skip(f"{REAL_NANOAOD} not found in ../shared/data")
    return base / REAL_NANOAOD


def write_tree(path: Path, data: dict, tree: str = "Events", sep: str = "_") -> Path:
    """Write ``data`` (awkward record arrays become collections with a counter) with uproot."""
    import awkward as ak
    import uproot

    types = {k: v.type.content if isinstance(v, ak.Array) else np.asarray(v).dtype for k, v in data.items()}
    with uproot.recreate(path) as handle:
        out = handle.mktree(tree, types, field_name=lambda o, i: f"{o}{sep}{i}", counter_name=lambda c: "n" + c)
        out.extend(data)
    return path


def random_nanoaod(rng: np.random.Generator, n: int, nan_event: int | None = None) -> dict:
    """Random NanoAOD-like events (GeV), with objects on both sides of every Dark Machines cut, and NanoAOD's
    ID and isolation branches (``Jet_jetId``, ``Electron_cutBased``, ``Muon_mediumId``, ``Photon_cutBased``,
    ``*_pfRelIso*``) with values on both sides of every working point and of relative isolation 0.15.

    The ID and isolation values are drawn after everything else, so the kinematics are those of the same
    seed without them.
    """
    import awkward as ak

    def coll(mean: float, fields: dict) -> ak.Array:
        counts = rng.poisson(mean, n)
        total = int(counts.sum())
        cols = {k: f(total) for k, f in fields.items()}
        return ak.unflatten(ak.zip(cols), counts)

    kin = {
        "pt": lambda m: rng.exponential(40.0, m).astype(np.float32) + 5,
        "eta": lambda m: rng.uniform(-3.2, 3.2, m).astype(np.float32),
        "phi": lambda m: rng.uniform(-np.pi, np.pi, m).astype(np.float32),
        "mass": lambda m: rng.uniform(0, 15, m).astype(np.float32),
    }
    charge = {"charge": lambda m: rng.choice(np.array([-1, 1], dtype=np.int32), m)}
    data = {
        "Jet": coll(6.0, kin | {"btagDeepB": lambda m: rng.uniform(0, 1, m).astype(np.float32)}),
        "Electron": coll(1.0, kin | charge),
        "Muon": coll(1.0, kin | charge),
        "Photon": coll(0.8, kin),
        "MET_pt": rng.exponential(60.0, n).astype(np.float32),
        "MET_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
        "genWeight": rng.normal(1.0, 0.1, n).astype(np.float32),
        "event": np.arange(1000, 1000 + n, dtype=np.int64),
    }
    def add(name: str, field: str, values) -> None:
        counts = ak.num(data[name])
        data[name] = ak.with_field(data[name], ak.unflatten(values(int(ak.sum(counts))), counts), field)

    def iso(m: int) -> np.ndarray:
        # mostly isolated (below 0.15), a third anywhere up to 0.6, some exactly at the cut value
        values = np.where(rng.random(m) < 0.67, rng.exponential(0.04, m), rng.uniform(0.0, 0.6, m))
        return np.where(rng.random(m) < 0.03, 0.15, values).astype(np.float32)

    # Jet_jetId: bit 2 is tight (2016: 1 loose, 3 tight, 7 tight lepton veto; 2017+: 2, 6); 4 alone fails
    add("Jet", "jetId", lambda m: rng.choice(np.array([0, 1, 2, 3, 4, 6, 7], dtype=np.int32), m,
                                             p=[0.08, 0.04, 0.15, 0.1, 0.03, 0.5, 0.1]))
    add("Electron", "cutBased", lambda m: rng.choice(np.arange(5, dtype=np.int32), m, p=[0.1, 0.1, 0.15, 0.25, 0.4]))
    add("Electron", "pfRelIso03_all", iso)
    add("Muon", "mediumId", lambda m: rng.random(m) < 0.8)
    add("Muon", "pfRelIso04_all", iso)
    add("Photon", "cutBased", lambda m: rng.choice(np.arange(4, dtype=np.int32), m, p=[0.15, 0.15, 0.3, 0.4]))
    add("Photon", "pfRelIso03_all", iso)
    if nan_event is not None:
        data["MET_pt"][nan_event] = np.nan
    return data


# ----------------------------------------------------------------------------- event files written with h5py

EVENT_HLF_NAMES = ["MET", "MET_phi", "HT", "m_eff"]
EVENT_PROCESS_NAMES = ["ttbar", "wjets", "zjets"]


TINY_CONVVAE = ["--model", "convvae", "--epochs", "1", "--batch-size", "128", "-q", "--set", "model.latent=4",
                "--set", "model.context=8", "--set", "model.hidden=32", "--set", "model.channels=[8, 16]"]
"""``darkflow train`` flags of a ConvVAE small enough to train in seconds."""


def prepared_nanoaod(directory: Path, events: dict[str, tuple[int, int]], id_step: int = 0) -> dict[str, Path]:
    """Prepared event files ``directory/NAME.h5`` (label ``NAME``) of random NanoAOD-like events (``events``:
    name -> (seed, n); event numbers shifted by ``id_step * seed``)."""
    from darkflow.data_prep.prepare import PrepareConfig, prepare

    files = {}
    for name, (seed, n) in events.items():
        data = random_nanoaod(np.random.default_rng(seed), n)
        data["event"] += id_step * seed
        src = write_tree(directory / f"{name}.root", data)
        files[name] = directory / f"{name}.h5"
        prepare(PrepareConfig(inputs=[str(src)], out=str(files[name]), label=name), progress=False)
    return files


def tiny_scoring_run(directory: Path, events: dict[str, tuple[int, int]], id_step: int = 0
                     ) -> tuple[dict[str, Path], Path]:
    """:func:`prepared_nanoaod` files and a :data:`TINY_CONVVAE` run trained on the one named ``sm``."""
    from darkflow.cli import main

    files = prepared_nanoaod(directory, events, id_step)
    run = directory / "run"
    assert main(["train", "--data", str(files["sm"]), "--out", str(run), *TINY_CONVVAE]) == 0
    return files, run


def random_events(rows: list[str], n: int, typed: bool, seed: int) -> dict[str, np.ndarray]:
    """Random events in the event-file format: real slots first in every block, MET row always real; with
    ``typed`` a fifth feature column holds the type code (1-7 for objects, 8 for MET)."""
    rng = np.random.default_rng(seed)
    r = len(rows)
    f = 5 if typed else 4
    objects = np.zeros((n, r, f), dtype=np.float32)
    mask = np.zeros((n, r), dtype=bool)
    for i in range(n):
        for j, row in enumerate(rows):
            real = row == "met" or rng.random() < 0.6
            if not real:
                continue
            mask[i, j] = True
            pt = rng.uniform(20, 300)
            objects[i, j, :4] = [pt * 1.3, pt, 0.0 if row == "met" else rng.uniform(-2.5, 2.5), rng.uniform(-3, 3)]
            if typed:
                objects[i, j, 4] = 8 if row == "met" else int(rng.integers(1, 8))
    return {
        "objects": objects,
        "mask": mask,
        "hlf": rng.normal(size=(n, len(EVENT_HLF_NAMES))).astype(np.float32),
        "weight": rng.uniform(0.5, 2.0, size=n),
        "event_id": (1000 + 7 * np.arange(n)).astype(np.int64),
        "process": rng.integers(0, len(EVENT_PROCESS_NAMES), size=n).astype(np.int16),
    }


def write_event_file(path: Path, events: dict[str, np.ndarray], rows: list[str], typed: bool,
                     chunk: int = 8) -> Path:
    """Write ``events`` (:func:`random_events`) as an event file with h5py directly, independently of
    ``darkflow.events``; the layout's features are ``E, pt, eta, phi`` (and ``type`` when ``typed``)."""
    import json

    import h5py

    features = ["E", "pt", "eta", "phi"] + (["type"] if typed else [])
    layout = {
        "name": "test-mixed" if typed else "test-fixed",
        "features": features,
        "rows": rows,
        "blocks": [{"types": ["any"], "slots": 5}] if typed
        else [{"types": ["jet"], "slots": 2}, {"types": ["bjet"], "slots": 1}, {"types": ["eplus"], "slots": 1}],
        "met_row": True,
    }
    with h5py.File(path, "w") as file:
        for name, values in events.items():
            file.create_dataset(name, data=values, chunks=(max(1, min(chunk, len(values))), *values.shape[1:]))
        file.attrs["layout"] = json.dumps(layout)
        file.attrs["hlf_names"] = json.dumps(EVENT_HLF_NAMES)
        file.attrs["process_names"] = json.dumps(EVENT_PROCESS_NAMES)
        file.attrs["label"] = "sm-test"
    return path


# ----------------------------------------------------------------------------- CFLOW-AD fixtures


def quick_config(size: int, **training):
    """A CFLOW config small enough for a unit test (the defaults, with fewer and smaller everything)."""
    from darkflow.cflow.config import CflowConfig

    return CflowConfig(image_size=size, encoder={"channels": [8, 16], "pretrain_steps": 5},
                       decoder={"blocks": 2, "pos_dim": 16},
                       training={"epochs": 1, "fiber_batch": 512, **training})


@pytest.fixture(scope="module")
def client():
    """A Dask client of two in-process workers: the same scheduler and protocol as a real cluster, without start-up
    cost (needs the ``dask`` extra)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as c:
        with distributed.Client(c, set_as_default=False) as cl:
            yield cl


@pytest.fixture(name="quick_config", scope="session")
def _quick_config():
    """:func:`quick_config` for tests (a fixture, so that no test imports this conftest)."""
    return quick_config


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> Path:
    from darkflow.cflow.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "textures", size=32, n_train=8,
                           n_test_good=3, n_test_defect=3, seed=3)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_folder) -> Path:
    from darkflow.cflow.train import CflowTrainOptions, train_cflow

    out = tmp_path_factory.mktemp("cflow_runs") / "tiny"
    train_cflow(quick_config(32), CflowTrainOptions(data=[str(synthetic_folder)], out=str(out), progress=False))
    return out


def signal_when_ready(proc: subprocess.Popen, signum: int, ready: Callable[[], bool] = lambda: True,
                      settle: float = 0.5, timeout: float = 120.0) -> str:
    """Wait while ``proc`` runs until ``ready()`` (the command is at work, e.g. a temporary output exists) or
    ``timeout``, then ``settle`` seconds more; send ``signum`` and return the process's stderr. The process must
    still be running when signalled, and is killed if anything fails."""
    try:
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(settle)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
