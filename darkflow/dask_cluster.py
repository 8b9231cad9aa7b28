"""The Dask plumbing shared by ``prepare`` and ``score`` with ``--workers N | --dask-scheduler ADDR``.

:func:`connect` gives a :class:`Cluster`: a client on a new ``LocalCluster`` of worker processes (one thread
each), or on the scheduler at an address. A local cluster is closed, workers included, however the command
ends: an error, SIGINT or SIGTERM (:class:`darkflow.errors.Interrupted`); its worker processes also die with
this process (:data:`WORKER_PRELOAD`). :class:`DaskOptions` holds the config keys, :func:`result` turns a lost
worker into one line. ``distributed`` is imported only when a cluster is asked for.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import field_validator, model_validator

from darkflow.config import Count, StrictModel
from darkflow.errors import ConfigError, DarkFlowError, InputError

INSTALL_HINT = "pip install 'darkflow[dask]' (dask and distributed)"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"`workers` / `dask_scheduler` need dask.distributed, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return distributed


WORKER_PRELOAD = "from darkflow.signals import worker_init; worker_init()"
"""Run in every local worker process at start-up (Dask treats a preload with spaces as code): ignore SIGINT,
die on SIGTERM and when the parent process dies."""


class DaskOptions(StrictModel):
    """The config keys of a command that can run on a Dask cluster: ``workers`` (a local cluster of that many
    processes) or ``dask_scheduler`` (a cluster's address), not both, and ``dask_timeout`` (seconds to reach
    the scheduler)."""

    workers: Count | None = None
    dask_scheduler: str | None = None
    dask_timeout: float = 10.0

    @field_validator("dask_timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be a number of seconds above 0")
        return value

    @model_validator(mode="after")
    def _one_cluster(self) -> DaskOptions:
        if self.workers is not None and self.dask_scheduler is not None:
            raise ValueError("give `workers` (a local Dask cluster) or `dask_scheduler` (a cluster's address), not both")
        return self

    @property
    def on_cluster(self) -> bool:
        """Whether a cluster is asked for."""
        return self.workers is not None or self.dask_scheduler is not None


class WorkerLost(DarkFlowError):
    """A Dask worker died (out of memory, killed) while running a task, as many times as the scheduler allows."""


class Cluster:
    """A Dask client (and the local cluster it talks to, when this process started one).

    Used as a context manager: closes what it started (client first, then the local cluster and its worker
    processes), never a client it was given; every close is attempted even when one fails or an interrupt
    arrives during cleanup.
    """

    def __init__(self, client, owned: list) -> None:
        self.client = client
        self.owned = owned

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close what this process started, in order. An interrupt during one close is raised once every close
        has run; an error while closing (a worker already gone) is not: the command's outcome stands."""
        interrupt: BaseException | None = None
        while self.owned:
            thing = self.owned.pop(0)
            try:
                thing.close()
            except Exception:  # noqa: S112 (teardown noise must not stop the next close)
                continue
            except BaseException as err:
                interrupt = interrupt or err
        if interrupt is not None:
            raise interrupt


def check_address(scheduler: str | None) -> None:
    """A one-line :class:`InputError` for a ``dask_scheduler`` that is not an address (before any work)."""
    if scheduler is not None and not _looks_like_address(scheduler):
        raise InputError(f"`dask_scheduler` {scheduler!r} is not a scheduler address; give PROTOCOL://HOST:PORT "
                         "or HOST:PORT, e.g. tcp://10.0.0.1:8786 (printed by 'dask scheduler')")


def connect(workers: int | None, scheduler: str | None, timeout: float = 10.0, client=None) -> Cluster:
    """A client on ``client`` itself, a new ``LocalCluster`` of ``workers`` processes (one thread each),
    or the scheduler at ``scheduler``; one-line :class:`InputError` when it cannot be reached."""
    if client is not None:
        return Cluster(client, [])
    distributed = _distributed()
    check_address(scheduler)
    if workers is not None:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.CRITICAL,
                                           preload=[WORKER_PRELOAD])
        try:
            local = distributed.Client(cluster, set_as_default=False)
            return Cluster(local, [local, cluster])
        except BaseException:
            cluster.close()
            raise
    try:
        client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s ({reason}); start one with "
            "'dask scheduler' (and 'dask worker ADDR' on the nodes) or set `workers` to N for a local cluster"
        ) from None
    return Cluster(client, [client])


def _looks_like_address(text: str) -> bool:
    if "://" in text:
        scheme, _, rest = text.partition("://")
        return scheme.isidentifier() and bool(rest)
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def result(future, what: str) -> Any:
    """``future.result()``; a worker that died running it (``KilledWorker``) is a one-line :class:`WorkerLost`
    naming ``what`` the task was doing. An error raised by the task itself comes back as it is."""
    distributed = _distributed()
    try:
        return future.result()
    except distributed.KilledWorker:
        raise WorkerLost(f"a Dask worker died while {what} (out of memory or killed; see the worker's log) and "
                         "the scheduler gave up on the task; nothing was written") from None
