"""User-facing errors.

Every error a user can cause (bad file, bad option, bad data) is raised as a :class:`DarkFlowError`
subclass whose message is one actionable line: what is wrong and what is valid. The CLI prints it
without a traceback and exits non-zero.
"""

from __future__ import annotations


class DarkFlowError(Exception):
    """An error caused by the user's input; its message is shown as one line."""


class ConfigError(DarkFlowError, ValueError):
    """A bad configuration key or value."""


class InputError(DarkFlowError):
    """A missing, unreadable or malformed input file."""


class DataError(DarkFlowError):
    """Input data that cannot be used as it is (NaN, inf, unknown object code)."""


class Interrupted(BaseException):  # noqa: N818 (like KeyboardInterrupt: not an error of the user's input)
    """SIGINT or SIGTERM arrived: raised by :func:`darkflow.signals.handle_signals` in the main thread, so that
    every ``with`` block (atomic outputs, worker pools, Dask clusters) cleans up on the way out.

    Attributes:
        signum: the signal number; the command exits ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
