"""Real signals to a real ``darkflow train`` process (issue 15).

* SIGTERM while training: exit 143, one line on stderr, no run folder, no staging folder, no temporary file and
  no child process left; during the resume of a finished run, that run stays byte-identical.
* SIGKILL while training: the staging folder keeps the finished epochs; resuming loses at most the epoch that
  was in progress, and ``metrics.csv`` then holds every epoch once, in order.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.fileio import leftovers

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "model.latent=4", "--set", "model.context=8", "--set", "model.hidden=32", "--set",
        "model.channels=[8, 16]", "--set", "model.flow_options={num_layers: 2}", "--batch-size", "64"]


@pytest.fixture(scope="module")
def sm(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("signals")
    src = write_tree(d / "sm.root", random_nanoaod(np.random.default_rng(0), 3000))
    prepare(PrepareConfig(inputs=[str(src)], out=str(d / "sm.h5"), label="sm"), progress=False)
    return d / "sm.h5"


def child_env() -> dict[str, str]:
    """This environment for a one-process run of this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_PROCID")}
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
                  "OMP_NUM_THREADS": "1"}


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "darkflow", "train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (from /proc/PID/task/*/children)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(children - found)
            found |= children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def epochs_done(metrics: Path) -> int:
    try:
        return max(0, len(metrics.read_text().splitlines()) - 1)
    except OSError:
        return 0


def wait_for_epochs(proc: subprocess.Popen, metrics: Path, n: int, children: set[int]) -> None:
    """Wait until ``metrics`` holds ``n`` epochs, recording the process's children meanwhile."""
    deadline = time.monotonic() + 120
    while epochs_done(metrics) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not get going"
        children |= descendants(proc.pid)
        time.sleep(0.05)
    children |= descendants(proc.pid)


def rows(metrics: Path) -> list[dict]:
    with open(metrics, newline="") as handle:
        return list(csv.DictReader(handle))


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temporaries(folder: Path) -> None:
    assert not leftovers(folder) and not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def none_alive(pids: set[int], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)]


def test_sigterm_while_training_leaves_nothing(sm, tmp_path):
    out = tmp_path / "run"
    # one DataLoader worker per loader: child processes that must end with the run
    proc = start(["--data", str(sm), "--out", str(out), "--epochs", "50", "-q", *TINY,
                  "--set", "training.num_workers=1"])
    children: set[int] = set()
    wait_for_epochs(proc, tmp_path / "run.partial" / "metrics.csv", 1, children)
    assert children, "the loaders' worker processes were not seen"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert lines == ["darkflow train: interrupted by SIGTERM; no partial output was left"], err
    assert list(tmp_path.iterdir()) == []  # no run folder, no staging folder, no temporary file
    none_alive(children)


def test_sigterm_while_resuming_a_finished_run_leaves_it_byte_identical(sm, tmp_path):
    out = tmp_path / "run"
    first = subprocess.run([sys.executable, "-m", "darkflow", "train", "--data", str(sm), "--out", str(out),
                            "--epochs", "2", "-q", *TINY], capture_output=True, text=True, timeout=300,
                           env=child_env())
    assert first.returncode == 0, first.stderr
    before = hashes(out)
    proc = start(["--data", str(sm), "--out", str(out), "--epochs", "50", "--resume", "-q", *TINY])
    children: set[int] = set()
    wait_for_epochs(proc, tmp_path / "run.partial" / "metrics.csv", 3, children)  # one epoch past the run's
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and len(err.strip().splitlines()) == 1, err
    assert hashes(out) == before  # config.yaml, metrics.csv, checkpoints and model.pt included
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    no_temporaries(tmp_path)
    none_alive(children)


def test_sigkill_then_resume_loses_at_most_the_epoch_in_progress(sm, tmp_path):
    out, staging = tmp_path / "run", tmp_path / "run.partial"
    proc = start(["--data", str(sm), "--out", str(out), "--epochs", "50", "-q", *TINY])
    children: set[int] = set()
    wait_for_epochs(proc, staging / "metrics.csv", 3, children)
    time.sleep(0.3)  # into the next epoch
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    none_alive(children)
    assert not out.exists() and (staging / "checkpoints" / "last.ckpt").is_file()
    no_temporaries(tmp_path)
    killed = rows(staging / "metrics.csv")
    done = torch.load(staging / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]
    assert done >= 2 and [int(r["epoch"]) for r in killed][: done + 1] == list(range(done + 1))
    total = done + 3
    resumed = start(["--data", str(sm), "--out", str(out), "--epochs", str(total), "--resume", *TINY])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    epochs = [int(m) for m in re.findall(r"train epoch (\d+)/\d+:", err)]
    assert epochs == list(range(done + 2, total + 1))  # 1-based: the first is the epoch that was in progress
    after = rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in after] == list(range(total))  # strictly increasing, no repeats, no gaps
    assert after[: done + 1] == killed[: done + 1]  # the finished epochs are kept as they were, not trained again
    assert (out / "model.pt").is_file() and not staging.exists()
    no_temporaries(tmp_path)
