"""The run directory's staging folder: where a run is trained, when it is published, what a failure leaves."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest

from darkflow.errors import InputError, Interrupted
from darkflow.fileio import leftovers
from darkflow.train.rundir import LAST_CHECKPOINT, MODEL_FILE, RunKept, plan_run, staged, staging_path


def finished_run(out: Path) -> Path:
    """A folder laid out as a finished run (contents are stand-ins: no training here)."""
    (out / "checkpoints").mkdir(parents=True)
    for name, text in (("config.yaml", "training: {epochs: 2}\n"), ("split.npz", "s"), ("scaler.json", "{}"),
                       ("metrics.csv", "epoch\n0\n1\n"), (MODEL_FILE, "model"), (str(LAST_CHECKPOINT), "last")):
        (out / name).write_text(text)
    return out


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_new_run_is_built_in_the_staging_folder_and_published_when_complete(tmp_path):
    out = tmp_path / "run"
    plan = plan_run(out, resume=False)
    assert plan.staging == staging_path(out) == tmp_path / "run.partial"
    assert plan.source is None and plan.checkpoint is None and not plan.copy
    with staged(plan) as run_dir:
        assert run_dir == plan.staging and run_dir.is_dir() and not out.exists()
        (run_dir / MODEL_FILE).write_text("model")
    assert (out / MODEL_FILE).read_text() == "model" and not plan.staging.exists()
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("failure", [RuntimeError("boom"), Interrupted(signal.SIGTERM), KeyboardInterrupt()])
def test_a_failed_or_interrupted_new_run_leaves_nothing(tmp_path, failure):
    out = tmp_path / "run"
    with pytest.raises(type(failure)), staged(plan_run(out, resume=False)) as run_dir:
        (run_dir / "config.yaml").write_text("x")
        raise failure
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and not leftovers(tmp_path)


def test_a_non_finite_loss_keeps_the_staging_folder_only_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunKept), staged(plan_run(out, resume=False)) as run_dir:
        (run_dir / "checkpoints").mkdir()
        (run_dir / LAST_CHECKPOINT).write_text("epoch 3")
        raise RunKept("the validation loss became nan at epoch 4")
    assert (staging_path(out) / LAST_CHECKPOINT).read_text() == "epoch 3" and not out.exists()
    other = tmp_path / "other"
    with pytest.raises(RunKept), staged(plan_run(other, resume=False)):
        raise RunKept("the training loss became inf at epoch 0, batch 1")
    assert not staging_path(other).exists() and not other.exists()


def test_resuming_a_finished_run_trains_a_copy_and_swaps_it_in(tmp_path):
    out = finished_run(tmp_path / "run")
    before = tree(out)
    plan = plan_run(out, resume=True)
    assert plan.copy and plan.source == out and plan.checkpoint == plan.staging / LAST_CHECKPOINT
    with pytest.raises(Interrupted), staged(plan) as run_dir:
        assert tree(run_dir) == {k: v for k, v in before.items() if k != MODEL_FILE}  # model.pt comes last
        (run_dir / "config.yaml").write_text("training: {epochs: 4}\n")
        (run_dir / "metrics.csv").write_text("epoch\n0\n1\n2\n")
        raise Interrupted(signal.SIGINT)
    assert tree(out) == before and not plan.staging.exists() and not leftovers(tmp_path)  # byte-identical
    with staged(plan_run(out, resume=True)) as run_dir:
        (run_dir / "metrics.csv").write_text("epoch\n0\n1\n2\n")
        (run_dir / MODEL_FILE).write_text("model 2")
    assert (out / "metrics.csv").read_text() == "epoch\n0\n1\n2\n" and (out / MODEL_FILE).read_text() == "model 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_killed_run_is_resumed_in_place_and_kept_when_the_resume_fails(tmp_path):
    out = tmp_path / "run"
    staging = finished_run(staging_path(out))
    (staging / MODEL_FILE).unlink()  # killed: no model.pt yet
    plan = plan_run(out, resume=True)
    assert plan.source == staging and not plan.copy and plan.checkpoint == staging / LAST_CHECKPOINT
    with pytest.raises(Interrupted), staged(plan):
        raise Interrupted(signal.SIGTERM)
    assert (staging / LAST_CHECKPOINT).is_file() and not out.exists()  # the finished epochs are not lost
    with pytest.raises(InputError, match=r"an interrupted run of .*run is kept in .*run.partial \(with its last "
                                         r"checkpoint\); set `resume` to continue it, or remove that folder to start again"):
        plan_run(out, resume=False)
    (staging / LAST_CHECKPOINT).unlink()
    (staging / "split.npz").unlink()  # killed before the split was written: trained again from the start
    plan = plan_run(out, resume=True)
    assert plan.source is None and plan.checkpoint is None
    with staged(plan) as run_dir:
        (run_dir / MODEL_FILE).write_text("model")
    assert (out / MODEL_FILE).is_file() and not staging.exists()


def test_run_folders_that_cannot_be_used_are_refused_before_anything_is_created(tmp_path):
    data = tmp_path / "sm.h5"
    data.write_text("events")
    cases = [
        (tmp_path / "sm.h5", False, "is also an input"),
        (tmp_path / "missing" / "run", False, "folder does not exist"),
        (tmp_path / "nothing", True, r"nothing to resume at .*nothing: neither a finished run"),
    ]
    for out, resume, message in cases:
        with pytest.raises(InputError, match=message):
            plan_run(out, resume, inputs=[data])
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        plan_run(tmp_path / "file", False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="busy exists and is not a finished run; give a new folder name as `out`"):
        plan_run(tmp_path / "busy", False)
    finished_run(tmp_path / "done")
    with pytest.raises(InputError, match="already holds a trained model; choose another `out` or set `resume`"):
        plan_run(tmp_path / "done", False)
    (tmp_path / "forest").mkdir()
    (tmp_path / "forest" / MODEL_FILE).write_text("model")
    with pytest.raises(InputError, match=r"finished run without checkpoints/last.ckpt .*nothing to resume"):
        plan_run(tmp_path / "forest", True)
    (tmp_path / "clash.partial").write_text("x")
    with pytest.raises(InputError, match="staging folder .*clash.partial exists and is not a folder"):
        plan_run(tmp_path / "clash", False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "clash.partial", "done", "file", "forest", "sm.h5"]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="not writable"):
            plan_run(locked / "run", False)


def test_other_ddp_processes_read_where_the_first_one_trains(tmp_path):
    out = finished_run(tmp_path / "run")
    plan = plan_run(out, resume=True, lead=False)  # the first process has not made its copy yet
    assert plan.source == out and plan.checkpoint == plan.staging / LAST_CHECKPOINT
    with staged(plan, lead=False) as run_dir:
        assert run_dir == plan.staging and not run_dir.exists()  # only the first process writes
    finished_run(staging_path(out))
    assert plan_run(out, resume=True, lead=False).source == staging_path(out)
    assert plan_run(tmp_path / "new", resume=False, lead=False).source is None


def test_a_resume_removes_what_the_killed_process_was_writing(tmp_path):
    out = tmp_path / "run"
    staging = finished_run(staging_path(out))
    (staging / MODEL_FILE).unlink()
    stale = staging / "checkpoints" / ".best.ckpt.darkflow-abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    with staged(plan_run(out, resume=True)) as run_dir:
        assert not stale.exists() and (run_dir / LAST_CHECKPOINT).is_file()
        (run_dir / MODEL_FILE).write_text("model")
    assert not [p for p in out.rglob("*") if ".darkflow-" in p.name]
