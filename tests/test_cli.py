"""The command line: instant help (no heavy imports at start-up), inspect output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import random_nanoaod, write_tree

HEAVY = ("torch", "uproot", "awkward", "h5py", "matplotlib", "lightning", "vector", "pydantic")


def test_cli_import_is_light():
    code = f"import sys, darkflow.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"darkflow.cli imports {out} at start-up"


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "darkflow", "--help"], capture_output=True, text=True, check=True)
    for verb in ("prepare", "inspect", "merge"):
        assert verb in out.stdout


def test_inspect_summarizes(tmp_path, capsys):
    from darkflow.cli import main

    data = random_nanoaod(np.random.default_rng(0), 120)
    data["MET_pt"] *= 3
    src = write_tree(tmp_path / "ttbar.root", data)
    out = tmp_path / "t.h5"
    assert main(["prepare", str(src), "--out", str(out), "--channel", "chan2b", "-q"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "read: 120" in text and "channel: chan2b" in text and "ttbar" in text
    assert "32 rows x 4 features (E, pt, eta, phi)" in text
    assert "selected: 0" not in text
    assert "simulation: yes" in text  # NanoAOD with genWeight
    assert "objects: ID on jet, bjet, eplus, eminus, muplus, muminus, photon; isolation on eplus" in text
    assert "overlap removal: jet/bjet within Delta R < 0.4 of eplus/eminus/muplus/muminus/photon" in text
