"""The worker processes of ``darkflow generate --workers N``: one spawned process per share of events.

Workers start with SIGINT and SIGTERM blocked (inherited from the parent around ``start``) until
:func:`darkflow.signals.worker_init` has run: they then ignore SIGINT, die silently on SIGTERM and get SIGTERM
when the parent dies. A worker never prints a traceback; its error travels to the parent, which raises it.
On any error or interrupt in the parent, every worker is terminated and joined before the error goes on.
Progress is one shared slot per worker and results come through one pipe per worker: no lock or semaphore
that a killed process could hold or leak.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from darkflow.errors import DarkFlowError
from darkflow.generate.engine import WorkerResult
from darkflow.signals import SIGNALS, worker_init

POLL_SECONDS = 0.2
JOIN_SECONDS = 5.0


def run_pool(tasks: Sequence[tuple[Any, ...]], on_progress: Callable[[int], None]) -> list[WorkerResult]:
    """Run :func:`darkflow.generate.engine.run_worker` on each argument tuple of ``tasks``, one process each.

    Arguments:
        tasks: positional arguments of ``run_worker`` (without ``progress``), one tuple per worker.
        on_progress: called in the parent with the total number of events done by all workers.

    Returns the workers' results in the order of ``tasks``. Raises the first worker's error
    (a :class:`DarkFlowError` as it was, anything else as a one-line ``RuntimeError``), or
    ``ChildProcessError`` when a worker ends without a result (killed).
    """
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    done = ctx.Array("q", len(tasks), lock=False)
    pipes = [ctx.Pipe(duplex=False) for _ in tasks]
    procs = [ctx.Process(target=_worker_main, args=(k, task, done, send), name=f"darkflow-generate-w{k}",
                         daemon=True) for k, (task, (_, send)) in enumerate(zip(tasks, pipes, strict=True))]
    results: dict[int, WorkerResult] = {}
    try:
        with _signals_blocked():
            for proc in procs:
                proc.start()
        for _, send in pipes:
            send.close()  # the worker holds the only writing end: its exit without a result reads as EOF
        while len(results) < len(procs):
            waiting = {pipes[k][0]: k for k in range(len(procs)) if k not in results}
            for conn in wait(list(waiting), timeout=POLL_SECONDS):
                k = waiting[conn]
                results[k] = _receive(conn, k, procs[k])
            on_progress(sum(done))
    finally:
        _stop(procs)
        for recv, send in pipes:
            recv.close()
            send.close()
    on_progress(sum(done))
    return [results[k] for k in range(len(procs))]


def _receive(conn, k: int, proc) -> WorkerResult:
    try:
        kind, payload = conn.recv()
    except EOFError:
        proc.join(JOIN_SECONDS)
        raise ChildProcessError(f"generation worker w{k} ended without a result ({_how(proc.exitcode)})") from None
    if kind == "ok":
        return payload
    error_class, message = payload
    raise error_class(message)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread (children started meanwhile inherit the mask); a signal that
    arrives meanwhile is delivered when the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


def _stop(procs: list) -> None:
    """Terminate the workers still running and wait for every started one."""
    started = [proc for proc in procs if proc.pid is not None]
    for proc in started:
        if proc.exitcode is None:
            proc.terminate()
    for proc in started:
        proc.join(JOIN_SECONDS)
        if proc.exitcode is None:
            proc.kill()
            proc.join()


def _worker_main(k: int, task: tuple[Any, ...], done, send) -> None:
    """A worker's whole life: set up signals, run, send the result or a picklable error, exit."""
    worker_init()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    from darkflow.generate.engine import run_worker

    def progress(n: int) -> None:
        done[k] = n

    try:
        message = ("ok", run_worker(*task, progress=progress))
    except DarkFlowError as err:
        message = ("error", (type(err), str(err)))
    except Exception as err:  # noqa: BLE001 (sent to the parent, which reports it as one line)
        message = ("error", (RuntimeError, f"generation worker w{k}: {type(err).__name__}: {err}"))
    send.send(message)
    send.close()
