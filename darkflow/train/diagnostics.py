"""Training diagnostics stored with every run: did training converge, and how many latent units are used.

References:
    Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, arXiv:1509.00519
    (section 5.2: a latent unit u is active when Cov_x(E_q[z_u | x]) > 0.01).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ACTIVE_THRESHOLD = 0.01
"""Variance over events of a unit's posterior mean above which the unit is active (Burda et al. 2016)."""
MIN_ACTIVE = 2
"""Fewer active units than this (or than the latent size, if smaller) is reported as a collapsed latent space."""
MAX_EVENTS = 50_000
"""Validation events whose posterior means estimate the unit variances (a seeded random subset beyond this)."""


def convergence(val_loss: Sequence[float], patience: int, early_stopped: bool) -> dict[str, Any]:
    """Whether training ended with a validation loss that had stopped improving.

    Arguments:
        val_loss: the validation loss of every epoch, in order (epoch 0 first; NaN where missing).
        patience: the early-stopping patience in epochs.
        early_stopped: whether early stopping ended the run (otherwise it ran to ``training.epochs``).

    Returns:
        ``stopped_by`` (``"early_stopping"`` or ``"max_epochs"``), ``best_epoch`` (the first epoch with the
        lowest loss, the one the best checkpoint holds; ``None`` without any finite loss), ``epochs``,
        ``patience`` and ``converged``: False when the run stopped at the epoch limit with its best epoch
        among the last ``patience`` epochs, i.e. while the validation loss was still improving.
    """
    losses = np.asarray(val_loss, dtype=np.float64)
    finite = np.isfinite(losses)
    best = int(np.argmin(np.where(finite, losses, np.inf))) if finite.any() else None
    epochs = len(losses)
    still_improving = best is None or epochs - 1 - best < patience
    return {"converged": bool(early_stopped or not still_improving),
            "stopped_by": "early_stopping" if early_stopped else "max_epochs",
            "best_epoch": best, "epochs": epochs, "patience": patience}


def active_units(mu: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> dict[str, Any]:
    """Active latent units (Burda et al. 2016) from the posterior means of a set of events.

    The activity of unit u is the variance over events of its posterior mean, ``Var_x(mu_u(x))``,
    unweighted (every event counts once, whatever its weight: a few heavy events cannot hide a
    collapse). With a flow posterior, ``mu`` is the mean of the base density q_0(z_0 | x) the flow acts on.

    Shapes:
        mu: ``(N, D)`` posterior means of N events.

    The count per unit misses a latent space that collapsed onto one *direction* shared by several units
    (units moving together): ``active_directions`` counts the eigenvalues of the covariance of ``mu`` (the
    variances along its principal axes) above the same threshold, the rotation-invariant version.

    Returns:
        ``active_units`` (count), ``active_directions`` (count), ``latent_size`` (D), ``unit_variance`` and
        ``direction_variance`` (D floats each, the latter descending), ``threshold`` and ``events`` (N).
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"mu must be (events, latent), got shape {mu.shape}")
    var = mu.var(axis=0) if len(mu) else np.zeros(mu.shape[1])
    cov = np.atleast_2d(np.cov(mu, rowvar=False, bias=True)) if len(mu) > 1 else np.zeros((mu.shape[1],) * 2)
    eig = np.sort(np.clip(np.linalg.eigvalsh(cov), 0.0, None))[::-1]
    return {"active_units": int((var > threshold).sum()), "active_directions": int((eig > threshold).sum()),
            "latent_size": int(mu.shape[1]), "unit_variance": [float(v) for v in var],
            "direction_variance": [float(v) for v in eig], "threshold": threshold, "events": int(len(mu))}


def warnings_for(diagnostics: dict[str, Any]) -> list[str]:
    """One line per problem found in :func:`convergence` / :func:`active_units` results (merged)."""
    lines = []
    if diagnostics.get("converged") is False:
        best, epochs = diagnostics["best_epoch"], diagnostics["epochs"]
        where = "no finite validation loss" if best is None else f"best epoch {best} of 0..{epochs - 1}"
        lines.append(f"not converged: training stopped at the epoch limit ({epochs} epochs) while the validation "
                     f"loss was still improving ({where}, patience {diagnostics['patience']}); train longer "
                     "(`resume` with a larger `training.epochs` continues this run)")
    if "active_units" in diagnostics:
        active, size = diagnostics["active_units"], diagnostics["latent_size"]
        directions = diagnostics.get("active_directions", active)
        if min(active, directions) < min(MIN_ACTIVE, size):
            what = (f"{active} of {size} latent units active" if active <= directions else
                    f"{active} of {size} latent units active but they move together: {directions} active "
                    "direction(s) (principal axes)")
            lines.append(f"collapsed latent space: {what} (variance of the posterior mean over "
                         f"{diagnostics['events']} validation events > {diagnostics['threshold']}, Burda et al. "
                         "2016); the encoder passes the event through fewer than 2 latent directions (the KL term "
                         "switched the others off): try a lower model.beta or another encoder")
    return lines


def posterior_means(model, path: str | Path, indices: np.ndarray, max_events: int = MAX_EVENTS,
                    batch_size: int = 4096, seed: int = 0) -> np.ndarray:
    """Posterior means ``(n, D)`` of the events ``indices`` of an event file (a seeded subset of
    ``max_events`` of them when there are more); the model, in eval mode, stays on its device."""
    import torch

    from darkflow.events import EventFile

    indices = np.sort(np.asarray(indices, dtype=np.int64))
    if len(indices) > max_events:
        indices = np.sort(np.random.default_rng(seed).choice(indices, size=max_events, replace=False))
    device = next(model.parameters()).device
    parts = []
    with EventFile(path) as events, torch.no_grad():
        for _, block in events.blocks(batch_size, fields=("objects", "mask", "hlf"), indices=indices):
            objects = torch.from_numpy(block["objects"]).to(device)
            mask = torch.from_numpy(block["mask"]).to(device)
            hlf = torch.from_numpy(block["hlf"]).to(device)
            parts.append(model.posterior_mean(objects, mask, hlf=hlf).cpu().double().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, model.mu.out_features))
