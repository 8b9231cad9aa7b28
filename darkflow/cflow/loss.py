"""The per-fiber negative log-likelihood CFLOW-AD trains its decoders with."""

from __future__ import annotations

from torch import Tensor


def fiber_nll(u: Tensor, log_det: Tensor) -> Tensor:
    """Negative log-likelihood of each fiber under a standard normal base, per feature dimension.

    ``(||u||^2 / 2 - log|det J|) / C``: the Gaussian normalisation ``C/2 log(2 pi)`` is a constant and is
    left out (it shifts every fiber equally).

    Arguments:
        u: the flow output ``(B, C)``.
        log_det: ``log |det du/dz|`` ``(B,)``.

    Shapes:
        returns ``(B,)``.

    References:
        D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD, WACV 2022 (arXiv:2107.12571), eq. (7).
    """
    assert u.dim() == 2 and log_det.shape == u.shape[:1], (u.shape, log_det.shape)
    return (0.5 * u.pow(2).sum(dim=1) - log_det) / u.shape[1]
