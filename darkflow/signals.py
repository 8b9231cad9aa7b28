"""SIGINT and SIGTERM handled alike in every command; worker processes that die with their parent.

The main process turns either signal into :class:`darkflow.errors.Interrupted`, so cleanup runs in ``finally``
and ``with`` blocks; the CLI then prints one line and exits 130 or 143. Worker processes ignore SIGINT (the
terminal sends it to the whole process group; the parent decides) and are ended by the parent, or by the
kernel when the parent dies (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

from darkflow.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum: int, frame: object) -> None:
    for sig in SIGNALS:  # a second signal during cleanup must not interrupt the cleanup
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_init() -> None:
    """Initializer for worker processes: ignore SIGINT, die on SIGTERM without a traceback, and get SIGTERM
    when the parent process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def die_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this process when its parent dies (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def exit_status(err: Interrupted) -> int:
    """The shell convention: 128 + the signal number."""
    return 128 + err.signum
