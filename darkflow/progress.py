"""Progress of long steps: a tqdm bar on a terminal, plain periodic lines in a log file.

A batch job's log is not a terminal: there tqdm's carriage-return bar either disables itself or fills the
log. When standard error is not a terminal, :func:`progress_bar` writes one line when the first events are
counted, one every ``DARKFLOW_PROGRESS_INTERVAL`` seconds (default 30) while the count moves, and one at the
end (none when the step fails: the command's error line follows), e.g.::

    generate qcd (1/8): 3000/7000 events (43%), 152 events/s, ETA 00:26

The counting, the rate (tqdm's smoothed rate, the overall rate at the end) and the timing are tqdm's.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from darkflow.errors import ConfigError

INTERVAL_VARIABLE = "DARKFLOW_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between two log lines: ``DARKFLOW_PROGRESS_INTERVAL`` if set, else 30."""
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{INTERVAL_VARIABLE}={text!r}: give the seconds between progress lines, a number >= 0")
    return value


def is_terminal() -> bool:
    """Whether standard error (where progress goes) is a terminal."""
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def log_line(text: str) -> None:
    """Write one progress line to standard error (for logs: no carriage return)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def progress_bar(desc: str, total: int | None = None, *, enabled: bool = True, unit: str = "events",
                 ends: bool = True, leave: bool = True):
    """A tqdm progress object counting ``unit`` towards ``total`` (None: unknown); use ``update(n)`` and
    ``close()`` or ``with``. On a terminal a bar with the count, rate and ETA; otherwise log lines (see the
    module docstring; ``ends=False`` drops the start and end lines); nothing when not ``enabled``."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(total=total, disable=True)
    if is_terminal():
        size = "{n_fmt}/{total_fmt}" if total is not None else "{n_fmt}"
        bar = "{percentage:3.0f}%|{bar}| " if total is not None else ""
        remaining = "<{remaining}" if total is not None else ""
        return tqdm(total=total, desc=desc, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True, leave=leave,
                    bar_format=f"{{desc}}: {bar}{size}{{unit}} [{{elapsed}}{remaining}, {{rate_noinv_fmt}}{{postfix}}]")
    return _log_lines_class()(total=total, desc=desc, unit=unit, ends=ends, interval=progress_interval())


class _Discard:
    """Where tqdm's own terminal output goes in log mode."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _rate(rate: float | None) -> str:
    if not rate:
        return "?"
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


@functools.cache
def _log_lines_class():
    from tqdm import tqdm

    class LogLines(tqdm):
        """tqdm that prints a plain line at each display instead of redrawing a bar.

        The start line waits for the first counted event, and a step that fails prints no end line: a command
        that stops on bad input before any event went through writes only its one-line error.
        """

        def __init__(self, *, total: int | None, desc: str, unit: str, ends: bool, interval: float) -> None:
            self._ends = ends
            self._started = False
            self._closing = False
            self._failed = False
            # miniters=1 (not tqdm's dynamic value): lines come from elapsed time alone, and tqdm's monitor
            # thread, which forces a redraw only when miniters > 1, stays out of it.
            super().__init__(total=total, desc=desc, unit=unit, file=_Discard(), mininterval=interval, miniters=1,
                             leave=True, dynamic_ncols=False, ncols=0)

        def update(self, n: float = 1) -> bool | None:
            if n > 0 and not self._started and not self.disable:
                self._started = True
                if self._ends:
                    total = f", {self.total} {self.unit}" if self.total else ""
                    log_line(f"{self.desc}: starting{total}")
            return super().update(n)

        def __exit__(self, exc_type, exc_value, traceback) -> None:
            self._failed = exc_type is not None
            super().__exit__(exc_type, exc_value, traceback)

        def close(self) -> None:
            self._closing = True
            super().close()

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            if msg is None and self._started:  # msg "": tqdm clearing its bar, nothing to clear in a log
                line = self._line(self.format_dict)
                if line is not None:
                    log_line(line)
            return True

        def _line(self, d: dict[str, Any]) -> str | None:
            n, total, unit, elapsed = d["n"], d["total"], d["unit"], d["elapsed"]
            rate = d["rate"] if d["rate"] else (n - d["initial"]) / elapsed if elapsed > 0 else None
            count = f"{n}/{total} {unit} ({100 * n / total:.0f}%)" if total else f"{n} {unit}"
            if self._closing:
                if not self._ends or self._failed:
                    return None
                took = self.format_interval(elapsed)
                if total and n < total:
                    return f"{self.desc}: stopped at {count} after {took}"
                return f"{self.desc}: {count}, {_rate(rate)} {unit}/s, done in {took}"
            if total and n >= total:
                return None  # the end line, or the caller's own line, follows
            line = f"{self.desc}: {count}, {_rate(rate)} {unit}/s"
            if total:
                eta = self.format_interval((total - n) / rate) if rate else "?"
                line += f", ETA {eta}"
            return line

    return LogLines
