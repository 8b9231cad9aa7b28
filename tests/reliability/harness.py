"""The reliability corpus' harness: run one bad command and check that it failed cleanly (issue 15).

A :class:`Case` is one bad or hostile command line. :func:`check` runs it in a fresh copy of a small, real
world (event files, a trained run, a scores file, a scan folder, CFLOW images and a CFLOW run: built once per
session by :func:`world`) and asserts what issue 15 asks of every failure:

* a non-zero exit status;
* exactly one line on standard error, with the expected fragments, without ``Traceback`` or ``internal error``;
* nothing new and nothing changed in the case's folder, which holds every input and every output location:
  names, kinds, sizes and sha256 of every file, before and after (so inputs are unchanged by hash, and a
  temporary file, a partial output or a folder made by a YAML ``!!python`` tag or a pickled model shows up).

Commands run in-process through :func:`darkflow.cli.main` (fast; warnings behave as in a plain ``python``; an
alarm stops a command that hangs, e.g. on opening a FIFO), or in a subprocess with a memory limit where a broken
build could eat memory or run for minutes (``/dev/zero``, ``demo``, ``--epochs -1``, the billion laughs).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INPROCESS_TIMEOUT = 60.0
"""Seconds an in-process case may run before it counts as hanging (a blocking open of a FIFO, a loop)."""
SUBPROCESS_TIMEOUT = 30.0
"""Seconds a subprocess case may run before it counts as hanging."""
SUBPROCESS_MEMORY = 6 << 30
"""Address-space limit of a subprocess case (torch needs about 1 GiB; a runaway read of /dev/zero stops here)."""


# ----------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    """What one command did: exit status and standard error (standard output is not judged)."""

    code: int | None
    err: str
    out: str = ""


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _plain_python_warnings() -> None:
    """Warnings as a plain ``python`` run shows them: its default filters (pytest's ``error`` filter would turn
    them into exceptions), printed on standard error (pytest would collect them)."""
    warnings.showwarning = _show_on_stderr
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)


class _Hung(BaseException):
    """Raised by the watchdog alarm in a command that runs too long (no ``except Exception`` catches it)."""


def _hung(signum: int, frame: object) -> None:
    raise _Hung


def run_inprocess(argv: Sequence[str], capfd, timeout: float = INPROCESS_TIMEOUT) -> Outcome:
    """``darkflow ARGV`` through :func:`darkflow.cli.main`, as the console script would run it.

    An exception escaping ``main`` is printed as the interpreter would print it (a traceback), and
    ``SystemExit("text")`` prints the text, exit status 1, as the interpreter does. A command still running
    after ``timeout`` seconds is stopped by an alarm (blocking calls such as opening a FIFO are interrupted)
    and its exit status is ``None``.
    """
    from darkflow.cli import main

    capfd.readouterr()
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    with warnings.catch_warnings():
        _plain_python_warnings()
        try:
            code = main(list(argv))
        except _Hung:
            print(f"[no exit within {timeout:.0f} s: stopped]", file=sys.stderr)
            code = None
        except SystemExit as exc:
            code = exc.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
            elif code is None:
                code = 0
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 (what the interpreter would show the user)
            traceback.print_exc()
            code = 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        sys.stdout.flush()
        sys.stderr.flush()
    captured = capfd.readouterr()
    return Outcome(code, captured.err, captured.out)


def subprocess_env() -> dict[str, str]:
    """The environment of a ``python -m darkflow`` child: this checkout's code, one thread, no debug mode."""
    env = {k: v for k, v in os.environ.items() if k not in ("DARKFLOW_DEBUG", "PYTEST_CURRENT_TEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_MEMORY, SUBPROCESS_MEMORY))


def run_subprocess(argv: Sequence[str], cwd: Path, timeout: float = SUBPROCESS_TIMEOUT) -> Outcome:
    """``python -m darkflow ARGV`` in its own process group; the whole group is killed when it hangs."""
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", *argv], cwd=cwd, env=subprocess_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_limit_memory)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Outcome(None, err + f"\n[no exit within {timeout:.0f} s: killed]", out)
    return Outcome(proc.returncode, err, out)


# ----------------------------------------------------------------------------------------------- snapshots


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (recursively, links not followed): kind, and for files size and sha256."""
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("folder",)
            elif stat.S_ISREG(info.st_mode):
                entries[rel] = ("file", info.st_size, sha256(path))
            else:
                entries[rel] = ("special", stat.S_IFMT(info.st_mode))
    return entries


def differences(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """Human-readable differences of two snapshots: new, removed and changed entries."""
    out = [f"new {name}" for name in sorted(after.keys() - before.keys())]
    out += [f"removed {name}" for name in sorted(before.keys() - after.keys())]
    out += [f"changed {name}" for name in sorted(before.keys() & after.keys()) if before[name] != after[name]]
    return out


# ----------------------------------------------------------------------------------------------- the world


SM_EVENTS, CAL_EVENTS, TEST_EVENTS, SIG_EVENTS = 400, 300, 300, 200
TINY_VAE = ["--model", "convvae", "--batch-size", "64", "--set", "model.latent=2", "--set", "model.context=4",
            "--set", "model.hidden=8", "--set", "model.channels=[4]", "--set", "model.flow=none",
            "--set", "model.hlf_input=false", "--set", "training.kl_warmup=0", "--set", "training.flow_warmup=0"]
"""Options of the tiny ConvVAE every training in the corpus uses (seconds on one core)."""
TINY_CFLOW = ["--image-size", "32", "--set", "encoder.channels=[8, 16]", "--set", "encoder.pretrain_steps=5",
              "--set", "decoder.blocks=2", "--set", "decoder.pos_dim=16", "--set", "training.fiber_batch=512"]
"""Options of the tiny CFLOW-AD model (``tests/conftest.py``'s quick_config) for ``cflow train``."""

_WORLD: dict[str, Path] = {}


def alias_bomb_text(levels: int) -> str:
    """YAML of ``levels`` levels of ten aliases each: 10**levels values once expanded, from a few hundred bytes."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def dark_machines_lines(n: int, seed: int, scale: float = 1000.0) -> list[str]:
    """``n`` Dark Machines CSV lines; energies in GeV times ``scale`` (1000: MeV as the format says)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    codes = ["j", "j", "j", "b", "e+", "e-", "m+", "m-", "g"]
    lines = []
    for i in range(n):
        fields = [str(i + 1), "ttbar", f"{rng.uniform(0.5, 1.5):.4f}", f"{rng.exponential(80) * scale:.1f}",
                  f"{rng.uniform(-3.1, 3.1):.4f}"]
        for _ in range(int(rng.integers(2, 7))):
            pt = (25 + rng.exponential(60)) * scale
            eta = rng.uniform(-2.4, 2.4)
            fields.append(f"{codes[int(rng.integers(len(codes)))]},{pt * np.cosh(eta):.1f},{pt:.1f},{eta:.4f},"
                          f"{rng.uniform(-3.1, 3.1):.4f}")
        lines.append(";".join(fields) + ";")
    return lines


def _build(root: Path, capfd) -> None:
    import numpy as np
    from conftest import random_nanoaod, write_tree

    from darkflow.cflow.synthetic import write_synthetic

    def ok(*argv: str) -> None:
        result = run_inprocess(argv, capfd)
        assert result.code == 0, f"building the corpus world: darkflow {' '.join(argv)}: {result.err[-3000:]}"

    samples = {"sm": (0, SM_EVENTS, 0), "smcal": (2, CAL_EVENTS, 20_000), "smtest": (3, TEST_EVENTS, 30_000),
               "sig": (1, SIG_EVENTS, 10_000)}
    for label, (seed, n, offset) in samples.items():
        data = random_nanoaod(np.random.default_rng(seed), n)
        data["event"] = data["event"] + offset
        if label == "sig":
            data["MET_pt"] = data["MET_pt"] * 4
        write_tree(root / f"{label}.root", data)
        ok("prepare", str(root / f"{label}.root"), "--out", str(root / f"{label}.h5"), "--label", label, "-q")
    (root / "dm.csv").write_text("\n".join(dark_machines_lines(20, seed=4)) + "\n")
    ok("train", "--data", str(root / "sm.h5"), "--out", str(root / "run"), "--epochs", "1", "-q", *TINY_VAE)
    ok("score", "--run", str(root / "run"), "--data", *(str(root / f"{s}.h5") for s in samples),
       "--out", str(root / "scores.h5"))
    ok("scan", "--scores", str(root / "scores.h5"), "--background", "smtest", "--calibration", "smcal",
       "--eps-b", "0.1", "--out", str(root / "scan"))
    ok("jetimages", str(root / "sm.h5"), "--out", str(root / "img.h5"), "--size", "16", "-q")
    write_synthetic(root / "tex", size=32, n_train=8, n_test_good=3, n_test_defect=3, seed=3)
    ok("cflow", "train", "--data", str(root / "tex"), "--out", str(root / "crun"), "--epochs", "1", "-q", *TINY_CFLOW)


def world(tmp_path_factory, capfd) -> Path:
    """The pristine world, built once per session; cases work on copies (:class:`Scene`)."""
    if "root" not in _WORLD:
        root = tmp_path_factory.mktemp("reliability_world")
        _build(root, capfd)
        _WORLD["root"] = root
    return _WORLD["root"]


class Scene:
    """One case's folder: a copy of the world (its inputs) plus the bad inputs the case makes.

    Attributes are absolute paths as strings, ready for an argument list; ``out`` is an empty folder for
    outputs. The folder is the working directory while the case runs.
    """

    def __init__(self, world_root: Path, root: Path) -> None:
        shutil.copytree(world_root, root, symlinks=True)
        self.root = root
        (root / "out").mkdir()
        for name in ("sm", "smcal", "smtest", "sig"):
            setattr(self, f"{name}_h5", str(root / f"{name}.h5"))
            setattr(self, f"{name}_root", str(root / f"{name}.root"))
        self.dm_csv = str(root / "dm.csv")
        self.run = str(root / "run")
        self.crun = str(root / "crun")
        self.scores = str(root / "scores.h5")
        self.scan = str(root / "scan")
        self.img = str(root / "img.h5")
        self.tex = str(root / "tex")

    sm_h5: str
    smcal_h5: str
    smtest_h5: str
    sig_h5: str
    sm_root: str
    sig_root: str

    def out(self, name: str) -> str:
        """A path in the empty output folder."""
        return str(self.root / "out" / name)

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, content: bytes | str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    def folder(self, name: str, with_file: bool = True) -> str:
        """A folder (holding one small file unless ``with_file`` is false)."""
        path = self.root / name
        path.mkdir(parents=True)
        if with_file:
            (path / "keep.txt").write_text("keep\n")
        return str(path)

    def fifo(self, name: str) -> str:
        path = self.root / name
        os.mkfifo(path)
        return str(path)

    def loop(self, name: str) -> str:
        """A symbolic link to itself: resolving it is a symlink loop."""
        path = self.root / name
        os.symlink(path.name, path)
        return str(path)

    def link(self, name: str, target: str) -> str:
        path = self.root / name
        os.symlink(target, path)
        return str(path)

    def copy(self, source: str, name: str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, path, symlinks=True)
        else:
            shutil.copyfile(source, path)
        return str(path)

    def truncated(self, source: str, name: str, fraction: float = 0.5) -> str:
        data = Path(source).read_bytes()
        return self.write(name, data[: int(len(data) * fraction)])

    def h5(self, name: str, edit: Callable, source: str | None = None) -> str:
        """An HDF5 file: a copy of ``source`` (or a new file) changed in place by ``edit(h5py.File)``."""
        import h5py

        path = self.root / name
        if source is not None:
            shutil.copyfile(source, path)
        with h5py.File(path, "a" if source is not None else "w") as handle:
            edit(handle)
        return str(path)

    def run_copy(self, name: str, edit: Callable[[Path], None], source: str | None = None) -> str:
        """A copy of the trained run (or ``source``), changed by ``edit(run_folder)``."""
        path = Path(self.copy(source or self.run, name))
        edit(path)
        return str(path)


@dataclass(frozen=True)
class Case:
    """One bad command: ``argv(scene)`` makes its bad inputs in the scene and returns the arguments.

    ``expect``: fragments the one-line message must contain (case-insensitive; ``"a|b"``: either ``a`` or
    ``b``); ``forbid``: fragments it
    must not contain (misleading words); ``subprocess``: run it as ``python -m darkflow`` with a timeout;
    ``allow``: folders (relative to the scene) where new entries are expected, e.g. the staging folder that
    keeps the last good checkpoint of a training stopped by a non-finite validation loss.
    """

    id: str
    argv: Callable[[Scene], list[str]]
    expect: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    subprocess: bool = False
    allow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.expect, str) or isinstance(self.forbid, str):
            raise TypeError(f"{self.id}: expect and forbid are tuples of fragments")


def judge(outcome: Outcome, before: dict, after: dict, expect: Sequence[str] = (),
          forbid: Sequence[str] = (), allow: Sequence[str] = ()) -> list[str]:
    """Every way ``outcome`` falls short of a clean failure (an empty list: it failed cleanly)."""
    problems = []
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    if outcome.code is None:
        problems.append("hangs")
    elif outcome.code == 0:
        problems.append("exit status 0")
    if "Traceback" in outcome.err:
        problems.append("traceback")
    if "internal error" in outcome.err:
        problems.append("internal error")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    text = outcome.err.lower()
    missing = [f for f in expect if not any(alt.lower() in text for alt in f.split("|"))]
    if missing and outcome.code not in (0, None):
        problems.append(f"message lacks {missing}")
    present = [f for f in forbid if f.lower() in text]
    if present:
        problems.append(f"message says {present}")
    changed = [d for d in differences(before, after)
               if not any(d.startswith(f"new {a}/") or d == f"new {a}" for a in allow)]
    if changed:
        problems.append("left or changed: " + ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else ""))
    return problems


def check(case: Case, world_root: Path, tmp_path: Path, capfd, monkeypatch) -> None:
    """Run ``case`` in a fresh scene and assert that it failed cleanly (see the module docstring)."""
    scene = Scene(world_root, tmp_path / "case")
    monkeypatch.chdir(scene.root)
    monkeypatch.delenv("DARKFLOW_DEBUG", raising=False)
    argv = case.argv(scene)
    before = snapshot(scene.root)
    outcome = run_subprocess(argv, scene.root) if case.subprocess else run_inprocess(argv, capfd)
    after = snapshot(scene.root)
    problems = judge(outcome, before, after, case.expect, case.forbid, case.allow)
    tail = "\n".join(outcome.err.strip().splitlines()[-6:])
    assert not problems, f"{case.id}: {'; '.join(problems)}\n  darkflow {' '.join(argv)}\n  exit {outcome.code}\n{tail}"


def ids(cases: Sequence[Case]) -> list[str]:
    names = [c.id for c in cases]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"duplicate case ids: {sorted(duplicated)}")
    return names


# ----------------------------------------------------------------------------------------------- damage


def _replace(handle, name: str, data) -> None:
    del handle[name]
    handle[name] = data


EVENT_DAMAGE: dict[str, Callable] = {
    "no-datasets": lambda h: [h.__delitem__(name) for name in list(h)],
    "objects-int32": lambda h: _replace(h, "objects", h["objects"][:].astype("int32")),
    "objects-missing": lambda h: h.__delitem__("objects"),
    "mask-short": lambda h: _replace(h, "mask", h["mask"][:-10]),
    "layout-not-json": lambda h: h.attrs.__setitem__("layout", "{rows: [broken"),
    "weight-inf": lambda h: h["weight"].__setitem__(3, float("inf")),
    "weight-nan": lambda h: h["weight"].__setitem__(7, float("nan")),
    "objects-nan": lambda h: h["objects"].__setitem__((5, 0, 1), float("nan")),
    "hlf-inf": lambda h: h["hlf"].__setitem__((9, 0), float("inf")),
}
"""Ways to damage a copy of an event file, applied with :meth:`Scene.h5`."""


def damaged_events(kind: str) -> Callable[[Scene], str]:
    """A copy of ``smtest.h5`` (not the run's training file, which ``score`` would warn about) damaged by
    ``EVENT_DAMAGE[kind]``, as ``KIND.h5`` in the scene."""
    return lambda s: s.h5(f"{kind}.h5", EVENT_DAMAGE[kind], source=s.smtest_h5)


class Payload:
    """Unpickling this object makes the folder ``pwned`` in the working directory (the case's folder)."""

    def __reduce__(self):
        return (os.mkdir, ("pwned",))


def damage_weights(run: Path, name: str, kind: str) -> None:
    """Damage ``run/name`` (``model.pt`` or ``cflow.pt``: ``{"state_dict", "metadata": JSON}``) in place."""
    import json

    import torch

    path = run / name
    if kind in ("truncated", "missing", "folder", "fifo"):
        data = path.read_bytes()
        path.unlink()
        if kind == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        return
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(blob["metadata"])
    if kind == "pickled":
        blob = {"state_dict": blob["state_dict"], "metadata": Payload()}
    elif kind == "blob-empty":
        blob = {}
    elif kind == "meta-not-json":
        blob["metadata"] = "{config: [broken"
    elif kind == "meta-empty":
        blob["metadata"] = "{}"
    elif kind == "meta-without-config":
        blob["metadata"] = json.dumps({k: v for k, v in meta.items() if k != "config"})
    elif kind == "weights-mismatch":  # the metadata describes a bigger model than the weights
        config = meta["config"]
        if "model" in config:
            config["model"]["latent"] += 3
            config["model"]["hidden"] *= 2
        else:
            config["decoder"]["blocks"] += 2
            config["decoder"]["pos_dim"] *= 2
        blob["metadata"] = json.dumps(meta)
    elif kind == "weights-missing":
        blob["state_dict"] = dict(list(blob["state_dict"].items())[1:])
    else:
        raise ValueError(f"unknown damage {kind!r}")
    path.unlink()
    torch.save(blob, path)
