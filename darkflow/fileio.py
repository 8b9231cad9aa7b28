"""Every file and folder DarkFlow reads or writes passes here: input checks, output checks, atomic output.

An output is built under a temporary name in its destination folder (``.NAME.darkflow-XXXXXX.tmp``, the one
naming scheme of the project) and takes its final name only when complete. A failed or interrupted command
(any exception, including :class:`darkflow.errors.Interrupted`) leaves no new output and leaves an existing
one unchanged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from darkflow.errors import InputError

TMP_MARK = ".darkflow-"
"""Every temporary output's name contains this (``.NAME.darkflow-XXXXXX.tmp``)."""

PathLike = str | os.PathLike


def default_mode(directory: bool = False) -> int:
    """The permissions a newly created file (or folder) gets under the current umask (e.g. 0o644)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as err:
        raise InputError(f"{path}: cannot resolve the path ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    if isinstance(err, RuntimeError) or getattr(err, "errno", None) == 40:
        return "symlink loop"
    return getattr(err, "strerror", None) or str(err)


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same resolved path, or the same inode (a hard link)."""
    try:
        return Path(a).resolve() == Path(b).resolve() or os.path.samefile(a, b)
    except (OSError, RuntimeError):
        return False


def check_input(path: PathLike, what: str = "file", directory: bool = False) -> Path:
    """``path`` as a readable regular file (or folder, ``directory=True``); otherwise a one-line
    :class:`InputError` that names the problem: not found, a folder, a FIFO or device, unreadable."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, RuntimeError) as err:
        raise InputError(f"{what} {path}: cannot be read ({_reason(err)})") from None
    if directory:
        if not stat.S_ISDIR(info.st_mode):
            raise InputError(f"{what} {path} is not a folder")
    elif stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {path} is a folder; expected a file")
    elif not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {path} is not a regular file (a FIFO, socket or device); expected a file")
    if not os.access(path, os.R_OK | (os.X_OK if directory else 0)):
        raise InputError(f"{what} {path}: permission denied")
    return path


def check_output(
    path: PathLike, inputs: Iterable[PathLike] = (), directory: bool = False, what: str = "output"
) -> Path:
    """Check, before any work, that ``path`` can become an output: its folder exists and is writable, it is
    not one of ``inputs`` (or inside an input folder's own name), and an existing ``path`` has the right kind.

    Returns the path. Raises :class:`InputError` with what is wrong and what is valid.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise InputError(f"{what} path is empty; give a file or folder name")
    resolved = _resolve(path)
    for item in inputs:
        if Path(item).exists() and same_file(path, item):
            raise InputError(f"{what} {path} is also an input; give another output name (inputs are never changed)")
    parent = resolved.parent
    shown = f"{path.parent}" if resolved.parent == _resolve(path.parent) else f"{parent} (where the link {path} points)"
    if not parent.exists():
        raise InputError(f"{what} folder does not exist: {shown}; create it first")
    if not parent.is_dir():
        raise InputError(f"{what} folder {shown} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or _read_only_fs(parent):
        raise InputError(f"{what} folder {path.parent} is not writable")
    if resolved.exists() or path.is_symlink():
        if directory and not resolved.is_dir():
            raise InputError(f"{what} {path} exists and is not a folder; give a folder name")
        if not directory and resolved.is_dir():
            raise InputError(f"{what} {path} is a folder; give a file name")
        if not directory and not resolved.is_file():
            raise InputError(f"{what} {path} exists and is not a regular file; give a file name")
    return path


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY) or str(folder).startswith(("/proc", "/sys"))
    except OSError:
        return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def temporary_path(final: PathLike, directory: bool = False) -> Path:
    """A new, empty temporary file (or folder) beside ``final``: ``.NAME.darkflow-XXXXXX.tmp``."""
    final = Path(final)
    prefix, suffix = f".{final.name}{TMP_MARK}", ".tmp"
    try:
        if directory:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=final.parent))
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=final.parent)
    except OSError as err:
        raise InputError(f"cannot write {final}: {_reason(err)}") from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: PathLike, final: PathLike) -> Path:
    """Give the complete output ``tmp`` the permissions of a new file and rename it to ``final``.

    A folder replaces an existing folder ``final`` in two renames (the old one is removed afterwards).
    """
    tmp, final = Path(tmp), Path(final)
    os.chmod(tmp, default_mode(tmp.is_dir()))
    if tmp.is_dir() and final.is_dir() and not final.is_symlink():
        old = temporary_path(final, directory=True)
        os.rmdir(old)
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


@contextlib.contextmanager
def atomic_output(
    path: PathLike, directory: bool = False, inputs: Iterable[PathLike] = (), merge: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to build the output ``path`` in; publish it when the block ends normally.

    Arguments:
        path: the final file or folder.
        directory: the output is a folder.
        inputs: paths the output must not be (checked first, with :func:`check_output`).
        merge: for a folder that may exist with other content: move each staged entry into it instead of
            replacing the whole folder.

    On any exception or interrupt inside the block the temporary output is removed and an existing ``path``
    is left as it was.
    """
    final = check_output(path, inputs, directory=directory)
    tmp = temporary_path(final, directory=directory)
    try:
        yield tmp
        if merge and directory and final.is_dir():
            for entry in sorted(tmp.iterdir()):
                publish(entry, final / entry.name)
            tmp.rmdir()
        else:
            publish(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def scratch_folder(final: PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``final`` (``.NAME.darkflow-XXXXXX.tmp``) for intermediate files of
    the output ``final``; it is removed, with everything in it, however the block ends (nothing is published)."""
    tmp = temporary_path(final, directory=True)
    try:
        yield tmp
    finally:
        _remove(tmp)


def write_text_atomic(path: PathLike, text: str, inputs: Iterable[PathLike] = ()) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path, inputs=inputs) as tmp:
        tmp.write_text(text, newline="")
    return Path(path)


def leftovers(folder: PathLike) -> list[Path]:
    """Temporary outputs DarkFlow left in ``folder`` (there should be none once a command has ended)."""
    return sorted(p for p in Path(folder).iterdir() if TMP_MARK in p.name)


def remove_leftovers(folder: PathLike) -> None:
    """Remove the temporary outputs a killed process (SIGKILL) left anywhere under ``folder``."""
    for path in sorted(Path(folder).rglob(f"*{TMP_MARK}*"), reverse=True):
        _remove(path)
