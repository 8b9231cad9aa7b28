"""Small CFLOW-AD fixtures: a synthetic image folder and a quickly trained run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from darkflow.cflow.config import CflowConfig


def quick_config(size: int, **training) -> CflowConfig:
    """A CFLOW config small enough for a unit test (the defaults, with fewer and smaller everything)."""
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
