"""The run directory of ``darkflow train``, built in a staging folder and published only when complete.

A run to ``OUT`` is trained in ``OUT.partial/`` (a fixed name, so that every DDP process and a later resume find
it) and renamed to ``OUT`` once ``model.pt`` is written:

* a failed or interrupted (SIGINT, SIGTERM) new run removes ``OUT.partial``; ``OUT`` is never created;
* after SIGKILL ``OUT.partial`` survives with ``checkpoints/last.ckpt`` (written every epoch), and resuming
  ``OUT`` continues there (the killed process's temporary files in it are removed first);
* resuming a complete ``OUT`` trains in a copy (``OUT.partial``) that replaces ``OUT`` when done; a failed or
  interrupted resume leaves ``OUT`` as it was and removes the copy;
* a staging folder that existed before the command (a killed run being resumed) is kept on failure, and so is
  one whose failure is a :class:`RunKept` (a non-finite loss: the last good checkpoint stays resumable).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from darkflow.errors import DataError, InputError
from darkflow.fileio import atomic_output, check_output, publish, remove_leftovers

MODEL_FILE = "model.pt"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""``last.ckpt`` inside a run directory (written at the end of every epoch)."""
PARTIAL_SUFFIX = ".partial"


class RunKept(DataError):
    """Training stopped on bad data (a non-finite loss); the staging folder is kept with its last good
    checkpoint."""


def staging_path(out: str | Path) -> Path:
    """``OUT.partial``: where the run ``OUT`` is trained."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


@dataclass(frozen=True)
class RunPlan:
    """Where a run is trained and what it starts from.

    Attributes:
        out: the final run directory.
        staging: ``OUT.partial``.
        source: the folder whose split, scalers and ``last.ckpt`` a resume reads (``staging`` after a kill,
            ``out`` for a complete run), or None for a new run.
        copy: the staging folder is made as a copy of ``out`` (the resume of a complete run).
    """

    out: Path
    staging: Path
    source: Path | None
    copy: bool

    @property
    def checkpoint(self) -> Path | None:
        """The ``last.ckpt`` the run resumes from, if any."""
        if self.source is None or not (self.source / LAST_CHECKPOINT).is_file():
            return None
        return self.staging / LAST_CHECKPOINT


def plan_run(out: str | Path, resume: bool, inputs: Iterable[str | Path] = (), lead: bool = True) -> RunPlan:
    """Check ``out`` (and ``OUT.partial``) before any work and say where the run is trained.

    ``lead`` is False on every DDP process but the first: those only read, so they skip the checks that the
    first process's own staging folder would fail.

    Raises:
        InputError: ``out`` is an input, its folder is missing or read-only, ``out`` already holds a run (or
            something else) for a new run, an interrupted run waits in ``OUT.partial``, or nothing can be resumed.
    """
    out = Path(out)
    staging = staging_path(out)
    if not lead:
        source = (staging if (staging / "split.npz").is_file() else out) if resume else None
        return RunPlan(out, staging, source, False)
    inputs = list(inputs)
    check_output(out, inputs, directory=True, what="run")
    check_output(staging, inputs, directory=True, what="staging folder")
    done = (out / MODEL_FILE).is_file()
    if staging.is_dir() and resume:
        has_state = (staging / "split.npz").is_file() and (staging / "scaler.json").is_file()
        return RunPlan(out, staging, staging if has_state else None, False)
    if staging.is_dir():
        last = staging / LAST_CHECKPOINT
        kept = "with its last checkpoint" if last.is_file() else "before its first epoch ended"
        raise InputError(f"an interrupted run of {out} is kept in {staging} ({kept}); set `resume` to continue "
                         "it, or remove that folder to start again")
    if not resume:
        if done:
            raise InputError(f"{out} already holds a trained model; choose another `out` or set `resume`")
        if out.exists():
            raise InputError(f"{out} exists and is not a finished run; give a new folder name as `out`")
        return RunPlan(out, staging, None, False)
    if not done:
        raise InputError(f"nothing to resume at {out}: neither a finished run ({out / MODEL_FILE}) nor an "
                         f"interrupted one ({staging}); start the run without `resume`")
    if not (out / LAST_CHECKPOINT).is_file():
        raise InputError(f"{out} holds a finished run without {LAST_CHECKPOINT} (a model trained in one step, "
                         "or the file was removed): there is nothing to resume")
    return RunPlan(out, staging, out, True)


@contextlib.contextmanager
def staged(plan: RunPlan, lead: bool = True) -> Iterator[Path]:
    """Yield the staging folder to build the run in; publish it to ``plan.out`` when the block ends normally.

    Only the first DDP process (``lead``) creates, publishes or removes anything.
    """
    created = False
    if lead:
        if plan.copy:
            with atomic_output(plan.staging, directory=True) as tmp:
                shutil.copytree(plan.out, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MODEL_FILE))
            created = True
        elif plan.staging.is_dir():
            remove_leftovers(plan.staging)
        elif not plan.staging.exists():
            try:
                plan.staging.mkdir()
            except OSError as err:
                raise InputError(f"cannot create {plan.staging}: {err.strerror}") from None
            created = True
    try:
        yield plan.staging
        if lead:
            publish(plan.staging, plan.out)
    except RunKept:
        if lead and not (plan.staging / LAST_CHECKPOINT).is_file():
            shutil.rmtree(plan.staging, ignore_errors=True)
        raise
    except BaseException:
        if lead and created:
            shutil.rmtree(plan.staging, ignore_errors=True)
        raise
