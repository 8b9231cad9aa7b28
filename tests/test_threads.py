"""Thread counts from the CPUs a process may use: affinity, cgroup quotas (v1 and v2), DDP shares, --threads."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import prepared_nanoaod

from darkflow.cli import build_parser
from darkflow.threads import available_cores, cgroup_cpu_limit, choose_threads, parse_cfs, parse_cpu_max

AFFINITY = len(os.sched_getaffinity(0))
TORCH_COMMANDS = [
    ["train"], ["score", "--run", "r", "--data", "x.h5", "--out", "s.h5"],
    ["flag", "--run", "r", "--data", "x.h5", "--out", "c.csv", "--threshold", "1"],
    ["report", "--run", "r", "--scan", "d", "--scores", "s.h5", "--out", "r.md"],
    ["export", "--run", "r", "--out", "m.onnx"], ["demo"],
    ["cflow", "train", "--data", "d", "--out", "r"], ["cflow", "score", "--run", "r", "--data", "d", "--out", "o"],
]


def _independent_quota() -> float | None:
    """The cgroup CPU limit read straight from the usual mount points (no /proc parsing)."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    if v2.is_file():
        quota, period = v2.read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    for folder in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct")):
        if (folder / "cpu.cfs_quota_us").is_file():
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    return None


def _expected_cores() -> int:
    quota = _independent_quota()
    return AFFINITY if quota is None else max(1, min(AFFINITY, math.ceil(quota)))


def test_available_cores_is_the_affinity_capped_by_the_cgroup_quota():
    assert available_cores() == _expected_cores()


def fake_v2(root: Path, levels: dict[str, str]) -> Path:
    """A cgroup v2 host under ``root``: the process in /job/step, ``cpu.max`` text per cgroup folder."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/job/step\n")
    (root / "proc/self/mountinfo").write_text(
        "22 1 0:20 / / rw - ext4 /dev/sda1 rw\n"
        "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
    for folder, text in levels.items():
        path = root / "sys/fs/cgroup" / folder
        path.mkdir(parents=True, exist_ok=True)
        (path / "cpu.max").write_text(text + "\n")
    return root


@pytest.mark.parametrize("text, cpus, cores", [("max 100000", None, AFFINITY), ("150000 100000", 1.5, 2),
                                               ("50000 100000", 0.5, 1), ("200000 100000", 2.0, 2)])
def test_cgroup_v2_cpu_max(tmp_path, text, cpus, cores):
    assert parse_cpu_max(text) == cpus
    root = fake_v2(tmp_path, {"job/step": text})
    assert cgroup_cpu_limit(root) == cpus
    assert available_cores(root) == min(AFFINITY, cores)


def test_cgroup_v2_parent_limit_applies(tmp_path):
    root = fake_v2(tmp_path, {"job": "100000 100000", "job/step": "max 100000"})
    assert cgroup_cpu_limit(root) == 1.0 and available_cores(root) == 1


@pytest.mark.parametrize("quota, cpus", [("-1", None), ("150000", 1.5), ("50000", 0.5)])
def test_cgroup_v1_cfs_quota(tmp_path, quota, cpus):
    assert parse_cfs(quota, "100000") == cpus
    (tmp_path / "proc/self").mkdir(parents=True)
    # a container sharing the host's cgroup namespace: the mount's root is the container's own cgroup
    (tmp_path / "proc/self/cgroup").write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    (tmp_path / "proc/self/mountinfo").write_text(
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")
    folder = tmp_path / "sys/fs/cgroup/cpu,cpuacct"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(quota + "\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == cpus
    assert available_cores(tmp_path) == (AFFINITY if cpus is None else min(AFFINITY, math.ceil(cpus)))


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None and available_cores(tmp_path) == AFFINITY


def test_choice_from_flag_environment_or_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = _expected_cores()
    assert choose_threads().threads == cores
    shared = choose_threads(processes=2)
    assert shared.threads == max(1, cores // 2) and "per process" in shared.describe()
    assert f"affinity {AFFINITY}" in shared.describe() and "shared by 2 processes" in shared.describe()
    assert choose_threads(3, requested_by="--threads").describe().startswith("torch threads: 3 (--threads; ")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_threads().threads == 5 and "OMP_NUM_THREADS=5" in choose_threads().describe()
    assert choose_threads(2).threads == 2
    with pytest.raises(ValueError, match="at least 1"):
        choose_threads(0)


@pytest.mark.parametrize("argv", TORCH_COMMANDS, ids=lambda a: " ".join(a[:2]) if a[0] == "cflow" else a[0])
def test_every_torch_command_takes_threads(argv):
    assert build_parser().parse_args([*argv, "--threads", "3"]).threads == 3


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_threads_is_a_one_line_error(value, tmp_path):
    for argv in (["train", "--data", "x.h5", "--out", str(tmp_path / "r")], ["cflow", "score", "--run", "r",
                 "--data", "d", "--out", str(tmp_path / "o")]):
        done = subprocess.run([sys.executable, "-m", "darkflow", *argv, "--threads", value], capture_output=True,
                              text=True)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "--threads" in done.stderr and ">= 1" in done.stderr
        assert not list(tmp_path.iterdir())


# Runs the darkflow entry point as the CLI does, and records torch's thread counts in every training process
# (Lightning's DDP launcher re-runs this script for the other ranks).
PROBE = """
import os, sys
if sys.argv[1] == "pin":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import torch
from darkflow.threads import available_cores
from darkflow.train.module import DarkFlowModule

def on_train_start(self):
    print(f"rank {self.global_rank} cores {available_cores()} threads {torch.get_num_threads()} "
          f"interop {torch.get_num_interop_threads()} omp {os.environ['OMP_NUM_THREADS']}", file=sys.stderr)

DarkFlowModule.on_train_start = on_train_start
from darkflow.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def sm_file(tmp_path_factory):
    return prepared_nanoaod(tmp_path_factory.mktemp("threads"), {"sm": (0, 300)})["sm"]


def run_probe(tmp_path, sm_file, mode: str, *flags: str) -> subprocess.CompletedProcess:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_PROCID")}
    argv = ["train", "--data", str(sm_file), "--out", str(tmp_path / "run"), "--model", "density", "--epochs", "1",
            "--batch-size", "64", "-q", "--set", 'model.flow_options={"num_layers": 1, "hidden_features": 8}', *flags]
    done = subprocess.run([sys.executable, str(script), mode, *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_pinned_process_trains_with_one_thread(sm_file, tmp_path):
    done = run_probe(tmp_path, sm_file, "pin")
    assert "rank 0 cores 1 threads 1 interop 1 omp 1" in done.stderr
    assert done.stdout.startswith("torch threads: 1 (1 core available: affinity 1, cgroup quota ")


@pytest.mark.slow
def test_ddp_processes_share_the_cores_and_lightning_keeps_ours(sm_file, tmp_path):
    per = max(1, _expected_cores() // 2)
    done = run_probe(tmp_path, sm_file, "free", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu")
    for rank in (0, 1):
        assert f"rank {rank} cores {_expected_cores()} threads {per} interop {per} omp {per}" in done.stderr
    assert done.stdout.startswith(f"torch threads: {per} per process (") and "shared by 2 processes" in done.stdout
