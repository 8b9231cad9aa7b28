"""``darkflow generate --workers 2`` under signals, kills and failing workers, as real subprocesses: one line on
stderr, the shell's exit status, no temporary file, no surviving worker, the output folder all or nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darkflow.errors import ConfigError
from darkflow.fileio import leftovers
from darkflow.generate.run import GenerateConfig, generate

pytestmark = pytest.mark.slow

LONG = ["--process", "ttbar", "--events", "100000", "--workers", "2", "-q"]


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("DARKFLOW_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "darkflow", "generate", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_until_workers_generate(proc: subprocess.Popen) -> set[int]:
    """Wait until both workers run (and a little more, for Pythia's initialisation); every child pid seen."""
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        seen |= children(proc.pid)
        if sum(is_worker(p) for p in seen) >= 2:
            break
        time.sleep(0.1)
    for _ in range(20):
        seen |= children(proc.pid)
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    assert sum(is_worker(p) for p in seen) == 2, seen
    return seen


def wait_gone(pids: set[int], seconds: float = 10.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("existing", [False, True])
def test_sigterm_ends_the_workers_and_leaves_nothing(tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "ttbar.root").write_bytes(b"an earlier run")
        (out / "notes.txt").write_text("kept")
    before = digest(out) if existing else None
    proc = start([*LONG, "--out", str(out)], tmp_path)
    try:
        pids = run_until_workers_generate(proc)
        assert leftovers(tmp_path), "the output is built under a temporary name beside the folder"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0], err
    assert "Traceback" not in err
    assert not wait_gone(pids), "a worker (or the resource tracker) survived its parent"
    assert leftovers(tmp_path) == []
    if existing:
        assert digest(out) == before and leftovers(out) == []
    else:
        assert not out.exists()


def test_sigint_to_the_whole_group_is_one_line(tmp_path):
    """Ctrl-C reaches every process of the terminal's group: the workers ignore it, the parent ends them."""
    out = tmp_path / "out"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", "generate", *LONG, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        pids = run_until_workers_generate(proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted by SIGINT" in err, err
    assert not wait_gone(pids)
    assert leftovers(tmp_path) == [] and not out.exists()


def test_sigkill_of_the_parent_kills_the_workers(tmp_path):
    proc = start([*LONG, "--out", str(tmp_path / "out")], tmp_path)
    try:
        pids = run_until_workers_generate(proc)
        workers = {p for p in pids if is_worker(p)}
        proc.kill()
        proc.communicate(timeout=60)
        assert not wait_gone(workers, seconds=5.0), "workers must die with their parent (PR_SET_PDEATHSIG)"
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_worker_ends_the_run_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = start([*LONG, "--out", str(out)], tmp_path)
    try:
        pids = run_until_workers_generate(proc)
        victim = min(p for p in pids if is_worker(p))
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "ended without a result (killed by SIGKILL)" in lines[0], err
    assert not wait_gone(pids), "the other worker must be ended too"
    assert leftovers(tmp_path) == [] and not out.exists()


def test_a_worker_error_reaches_the_terminal_as_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('description: "typo"\nkind: sm\nsettings: ["Top:gg2ttbarr = on"]\n')
    out = tmp_path / "out"
    proc = start(["--process", str(bad), "--events", "10", "--workers", "2", "--out", str(out)], tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Pythia rejects the setting 'Top:gg2ttbarr = on'" in lines[0], err
    assert leftovers(tmp_path) == [] and not out.exists()


@pytest.mark.parametrize("case", ["file", "no_parent", "root_is_folder", "read_only"])
def test_output_checked_before_any_event(tmp_path, monkeypatch, case):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    expect = {"file": "is not a folder", "no_parent": "does not exist", "root_is_folder": "is a folder",
              "read_only": "not writable"}[case]
    if case == "file":
        out.write_text("x")
    elif case == "no_parent":
        out = tmp_path / "missing" / "out"
    elif case == "root_is_folder":
        (out / "ttbar.root").mkdir(parents=True)
    else:
        out = Path("/proc/darkflow_out")  # read-only even for root
    with pytest.raises(Exception) as info:
        generate(GenerateConfig(process="ttbar", events=100000, out=str(out), workers=2), progress=False)
    assert expect in str(info.value) and "\n" not in str(info.value)
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "cache").exists()


def test_existing_folder_keeps_other_files_and_gets_new_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    (out / "ttbar.root").write_bytes(b"replaced")
    (res,) = generate(GenerateConfig(process="ttbar", events=20, seed=2, out=str(out), workers=2, format="both"),
                      progress=False).processes
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "ttbar.csv", "ttbar.json", "ttbar.root"]
    assert (out / "notes.txt").read_text() == "kept"
    assert (out / "ttbar.root").read_bytes()[:4] == b"root"
    assert res.files == [out / "ttbar.root", out / "ttbar.csv", out / "ttbar.json"]
    assert leftovers(out) == [] and leftovers(tmp_path) == []
    assert (tmp_path / "cache" / "darkflow" / "cross_sections.json").is_file()
    assert leftovers(tmp_path / "cache" / "darkflow") == []


def test_a_process_asked_twice_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'ttbar' is asked for twice"):
        generate(GenerateConfig(process="ttbar,ttbar", events=5, out=str(tmp_path / "o")), progress=False)
    assert not (tmp_path / "o").exists()
