"""How many torch threads a process should run: the CPUs it may use, shared among its DDP processes.

torch's default (one thread per core of the machine) ignores the CPU affinity and the cgroup CPU quota a
batch scheduler or container sets, and oversubscribes a machine that other jobs share. Here the count comes
from ``os.sched_getaffinity`` capped by the cgroup CPU bandwidth limit (v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` or v2 ``cpu.max``), and is applied to torch and to the environment of child processes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line ``"QUOTA PERIOD"``; None for ``"max PERIOD"``."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``; None for quota -1."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    return None if text is None else parse_cpu_max(text)


def _v1_limit(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    return None if quota is None or period is None else parse_cfs(quota, period)


def _unescape(field: str) -> str:
    """Mount points in ``mountinfo`` escape spaces and the like as octal ``\\040``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(root inside the hierarchy, mount point, file-system type, super options) of every mount."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) >= 5 and len(tail) >= 3:
            mounts.append((_unescape(fields[3]), _unescape(fields[4]), tail[0], set(tail[2].split(","))))
    return mounts


def _limits_along(root: Path, mount_root: str, mount_point: str, cgroup: str,
                  read: Callable[[Path], float | None]) -> list[float]:
    """Limits on the way from the process's cgroup folder up to the hierarchy's mount point (parents count)."""
    base = root / mount_point.lstrip("/")
    within = mount_root == "/" or cgroup == mount_root or cgroup.startswith(mount_root + "/")
    inside = cgroup[len(mount_root):] if within else ""
    parts = [p for p in inside.split("/") if p and p != ".."]
    found = []
    for depth in range(len(parts), -1, -1):
        limit = read(base.joinpath(*parts[:depth]))
        if limit is not None:
            found.append(limit)
    return found


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """CPUs this process may use by its cgroup CPU bandwidth limit (the smallest along its cgroup path, v1 and
    v2 alike), None when there is none or it cannot be read. ``root`` prefixes ``/proc`` and ``/sys`` (tests)."""
    memberships = _read(root / "proc/self/cgroup")
    mountinfo = _read(root / "proc/self/mountinfo")
    if memberships is None or mountinfo is None:
        return None
    mounts = _mounts(mountinfo)
    limits: list[float] = []
    for line in memberships.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, cgroup = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            for mount_root, point, fstype, _opts in mounts:
                if fstype == "cgroup2":
                    limits += _limits_along(root, mount_root, point, cgroup, _v2_limit)
        elif "cpu" in controllers.split(","):
            for mount_root, point, fstype, opts in mounts:
                if fstype == "cgroup" and "cpu" in opts:
                    limits += _limits_along(root, mount_root, point, cgroup, _v1_limit)
    return min(limits) if limits else None


def affinity_cores() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where the platform has no affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use: its affinity mask, capped by its cgroup quota (in CPUs, None: no quota)."""

    affinity: int
    quota: float | None

    @property
    def cores(self) -> int:
        """The affinity capped by the quota rounded up; at least 1."""
        if self.quota is None:
            return max(1, self.affinity)
        return max(1, min(self.affinity, math.ceil(self.quota - 1e-9)))

    def describe(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g} CPUs"
        cores = "1 core" if self.cores == 1 else f"{self.cores} cores"
        return f"{cores} available: affinity {self.affinity}, cgroup quota {quota}"


def cpu_budget(root: Path = Path("/")) -> CpuBudget:
    """This process's :class:`CpuBudget` (``root`` as in :func:`cgroup_cpu_limit`)."""
    return CpuBudget(affinity_cores(), cgroup_cpu_limit(root))


def available_cores(root: Path = Path("/")) -> int:
    """The number of CPUs this process may use: affinity capped by the cgroup quota, rounded up, at least 1."""
    return cpu_budget(root).cores


def _environment_threads() -> int | None:
    """A positive ``OMP_NUM_THREADS`` (its first level where it lists several), else None."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count per process, and where it came from."""

    threads: int
    budget: CpuBudget
    processes: int
    origin: str | None  # None: from the cores available

    def describe(self) -> str:
        """One line for a log, e.g. ``torch threads: 2 (2 cores available: affinity 2, cgroup quota none)``."""
        per = " per process" if self.processes > 1 else ""
        shared = f"; shared by {self.processes} processes" if self.processes > 1 else ""
        source = f"{self.origin}; " if self.origin else ""
        over = self.threads * self.processes > self.budget.cores
        warn = "; more threads than cores: oversubscribed" if over and self.origin else ""
        return f"torch threads: {self.threads}{per} ({source}{self.budget.describe()}{shared}{warn})"


def choose_threads(requested: int | None = None, processes: int = 1, requested_by: str = "requested",
                   root: Path = Path("/")) -> ThreadChoice:
    """Threads per process: ``requested`` if given, else a positive ``OMP_NUM_THREADS`` from the environment,
    else ``max(1, available_cores() // processes)`` (``processes``: training processes sharing this node)."""
    if requested is not None and requested < 1:
        raise ValueError(f"{requested_by} must be at least 1, got {requested}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    budget = cpu_budget(root)
    if requested is not None:
        return ThreadChoice(requested, budget, processes, requested_by)
    from_env = _environment_threads()
    if from_env is not None:
        return ThreadChoice(from_env, budget, processes, f"OMP_NUM_THREADS={from_env} in the environment")
    return ThreadChoice(max(1, budget.cores // processes), budget, processes, None)


def apply_threads(threads: int) -> None:
    """Run torch with ``threads`` intra-op (and, where still allowed, inter-op) threads, and set
    ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` for this process's children (set
    before torch is first imported, they also size its OpenMP pool; Lightning keeps a set ``OMP_NUM_THREADS``)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass  # torch allows it once, before any inter-op work: too late in this process
