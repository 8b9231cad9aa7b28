"""``darkflow score``'s output: never an input (also through a symlink, a hard link or ``./``), checked before any
work, and written all or nothing (a real SIGTERM while the file is written leaves an existing file unchanged)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal

import pytest
from conftest import tiny_scoring_run

from darkflow.cli import main
from darkflow.errors import Interrupted
from darkflow.fileio import leftovers
from darkflow.signals import handle_signals
from darkflow.train.score import score


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_scoring_run(tmp_path_factory.mktemp("score_output"), {"sm": (0, 400), "held": (1, 200)})


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", ["same", "symlink", "dot_slash", "hard_link", "second_input", "model"])
def test_out_equal_to_an_input_is_refused_before_any_work(setup, tmp_path, capsys, monkeypatch, case):
    files, run = setup
    held = shutil.copy(files["held"], tmp_path / "a.h5")
    other = shutil.copy(files["held"], tmp_path / "b.h5")
    data, out = [held], held
    if case == "symlink":
        out = tmp_path / "link.h5"
        out.symlink_to(held)
    elif case == "dot_slash":
        monkeypatch.chdir(tmp_path)
        data, out = ["a.h5"], "./a.h5"
    elif case == "hard_link":
        out = tmp_path / "hard.h5"
        os.link(held, out)
    elif case == "second_input":
        data, out = [other, held], held
    elif case == "model":
        out = run / "model.pt"
    protected = [held, other, run / "model.pt"]
    before = [digest(p) for p in protected]
    listing = sorted(os.listdir(tmp_path))
    # a run that cannot be loaded: the output is refused first, before the model is even read
    for run_arg in ([str(run)] if case == "model" else [str(run), str(tmp_path / "no_run")]):
        assert main(["score", "--run", run_arg, "--data", *map(str, data), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is the input" in err[0], err
    assert [digest(p) for p in protected] == before
    assert sorted(os.listdir(tmp_path)) == listing and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["folder", "missing_parent", "proc"])
def test_unusable_out_is_refused_before_any_work(setup, tmp_path, capsys, case):
    files, _ = setup
    out, expect = {"folder": (tmp_path, "is a folder"),
                   "missing_parent": (tmp_path / "nowhere" / "s.h5", "does not exist"),
                   "proc": ("/proc/scores.h5", "not writable")}[case]
    assert main(["score", "--run", str(tmp_path / "no_run"), "--data", str(files["held"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert leftovers(tmp_path) == []


def test_sigterm_while_writing_leaves_the_existing_file(setup, tmp_path):
    files, run = setup
    copy = shutil.copy(files["sm"], tmp_path / "copy.h5")  # a copy of the training file: warned while written
    out = tmp_path / "scores.h5"
    out.write_bytes(b"an earlier scores file")
    said = []

    def interrupt(kind: str, line: str) -> None:
        said.append(line)
        if "overlaps the training file" in line:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted) as info, handle_signals():
        score(run, [files["held"], copy], out, notify=interrupt)
    assert info.value.signum == signal.SIGTERM and any("a copy" in line for line in said)
    assert out.read_bytes() == b"an earlier scores file" and leftovers(tmp_path) == []
    counts = score(run, [files["held"], copy], out, notify=lambda kind, line: None)
    assert counts == {"held": 200, "sm": 400} and out.read_bytes()[:4] == b"\x89HDF" and leftovers(tmp_path) == []
