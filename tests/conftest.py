"""Shared fixtures: the real CMS Open Data file and a writer of small NanoAOD-like ROOT files."""

from __future__ import annotations

import os
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
    """Random NanoAOD-like events (GeV), with objects on both sides of every Dark Machines cut."""
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
    if nan_event is not None:
        data["MET_pt"][nan_event] = np.nan
    return data


# ----------------------------------------------------------------------------- CFLOW-AD fixtures


def quick_config(size: int, **training):
    """A CFLOW config small enough for a unit test (the defaults, with fewer and smaller everything)."""
    from darkflow.cflow.config import CflowConfig

    return CflowConfig(image_size=size, encoder={"channels": [8, 16], "pretrain_steps": 5},
                       decoder={"blocks": 2, "pos_dim": 16},
                       training={"epochs": 1, "fiber_batch": 512, **training})


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
