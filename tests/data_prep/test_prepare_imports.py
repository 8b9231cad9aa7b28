"""``darkflow prepare`` (one process) imports none of the heavy libraries it does not use: its start-up is part
of every conversion's time (issue 16, the ``prepare`` / bare-read ratio of benchmarks/bench_prepare.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import ROOT, random_nanoaod, write_tree

UNUSED = ("torch", "lightning", "pytorch_lightning", "torchmetrics", "matplotlib", "sklearn", "scipy", "dask",
          "distributed", "pandas", "onnx", "onnxruntime", "pythia8")
"""Top-level packages ``prepare`` without ``--workers`` / ``--dask-scheduler`` must not import."""

SCRIPT = """
import json, sys
from darkflow.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_prepare_does_not_import_what_it_does_not_use(tmp_path):
    src = write_tree(tmp_path / "in.root", random_nanoaod(np.random.default_rng(0), 200))
    out = tmp_path / "out.h5"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT, "prepare", str(src), "--out", str(out), "-q"],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and out.is_file()
    top = {name.split(".")[0] for name in report["modules"]}
    assert {"darkflow", "uproot", "h5py", "numpy"} <= top  # the modules really are those of the conversion
    assert not top & set(UNUSED), sorted(top & set(UNUSED))
