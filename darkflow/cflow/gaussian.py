"""The multivariate Gaussian (MVG) of CFLOW-AD's appendix A: one scale's feature fibers in closed form.

Every position ``p`` of a scale's ``h x w`` map has its own mean ``mu_p``. The covariance is either one
matrix shared by every position (``shared``: the within-position covariance pooled over positions, what a
stationary texture needs) or one per position (``position``: shrunk towards the shared one with the weight of
``C`` pseudo-observations, a conjugate prior that keeps it invertible with fewer images than channels; the
approach of PaDiM). Both get ``epsilon * I`` added (features are standardized per channel, so ``epsilon`` is
in units of their variance).

The fit stores the whitening ``W_p = L_p^{-1}`` (``Sigma_p = L_p L_p^T``, Cholesky), so that
``z = W_p (x - mu_p)`` is standard normal under the model, the squared Mahalanobis distance is ``|z|^2``
and ``log N(x) = -|z|^2 / 2 - log det L_p - C/2 log(2 pi)`` (eq. 5.2 of the appendix).

The MVG model scores with ``|z|^2`` alone. CFLOW-AD's decoders start from the same whitening: a flow whose
blocks are near the identity then starts at this Gaussian and training can only add to it (eq. 6 of the
appendix relates the two).

References:
    D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD, WACV 2022 (arXiv:2107.12571), appendix A;
    T. Defard et al., PaDiM, ICPR 2021 (arXiv:2011.08785); O. Rippel, P. Mertens, D. Merhof, Modeling the
    Distribution of Normal Data in Pre-Trained Deep Features for Anomaly Detection, ICPR 2020 (arXiv:2005.14140).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from darkflow.errors import InputError
from darkflow.tensor_state import tensor_state

COVARIANCES = ("shared", "position")
MAX_POSITION_BYTES = 512 * 2**20
CHUNK_BYTES = 4 * 2**20


class GaussianFibers(nn.Module):
    """Per-position means and a shared or per-position covariance of ``C``-channel fibers on ``P`` positions.

    Arguments:
        channels: ``C``.
        positions: ``P = h * w``.
        covariance: ``shared`` or ``position`` (see the module docstring).

    Shapes:
        ``whiten``: maps ``(N, C, h, w)`` -> ``z`` ``(N, P, C)``; ``mahalanobis``, ``log_prob``: maps
        ``(N, C, h, w)`` -> ``(N, h, w)``.
    """

    def __init__(self, channels: int, positions: int, covariance: str = "shared") -> None:
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, not {covariance!r}")
        k = positions if covariance == "position" else 1
        if covariance == "position" and k * channels * channels * 4 > MAX_POSITION_BYTES:
            raise InputError(f"a covariance per position needs {k * channels * channels * 4 / 2**30:.1f} GiB for "
                             f"{positions} positions of {channels} channels; set `gaussian.covariance` to shared")
        self.covariance = covariance
        self.register_buffer("mean", torch.zeros(positions, channels))
        self.register_buffer("whitening", torch.eye(channels).expand(k, -1, -1).clone())
        self.register_buffer("log_det_cholesky", torch.zeros(k))

    @torch.no_grad()
    def fit(self, maps: Tensor, epsilon: float = 0.01) -> GaussianFibers:
        """Fit on the training maps ``(N, C, h, w)`` (``N >= 2``), in float64.

        The fibers are laid out ``(P, N, C)`` in the maps' dtype before the cast (half the bytes to reorder in
        float32). Per-position covariances ``R_p^T R_p`` of the centred fibers ``R_p`` (``(N, C)``) are formed,
        shrunk, factorized and inverted a few megabytes of positions at a time, in place: the ``(P, C, C)``
        float64 stacks of a large map would be hundreds of megabytes of fresh memory each."""
        n, c, h, w = maps.shape
        x = maps.flatten(2).permute(2, 0, 1).contiguous().double()  # (P, N, C)
        mean = x.mean(dim=1)
        r = x.sub_(mean[:, None, :])
        flat = r.view(-1, c)
        shared = (flat.T @ flat).div_(max(1, (n - 1) * h * w))
        if self.covariance == "shared":
            self._store(slice(None), shared.unsqueeze(0), epsilon)
        else:
            step = max(1, CHUNK_BYTES // (8 * c * c))
            for lo in range(0, len(r), step):
                part = r[lo : lo + step]
                cov = torch.bmm(part.transpose(1, 2), part)  # (n - 1) times the sample covariance, (Q, C, C)
                self._store(slice(lo, lo + step), cov.add_(shared, alpha=c).div_(n - 1 + c), epsilon)
        self.mean.copy_(mean.float())
        return self

    def _store(self, rows: slice, cov: Tensor, epsilon: float) -> None:
        """Whitening ``L^{-1}`` and ``log det L`` of the covariances ``cov`` ``(Q, C, C)`` (float64, modified) of
        positions ``rows``, with ``epsilon`` added to their diagonals."""
        cov.diagonal(dim1=-2, dim2=-1).add_(epsilon)
        chol = torch.linalg.cholesky(cov)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype).expand_as(chol)
        self.whitening[rows] = torch.linalg.solve_triangular(chol, eye, upper=False)
        self.log_det_cholesky[rows] = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)

    def whiten(self, maps: Tensor) -> Tensor:
        """``z = W_p (x - mu_p)`` of every fiber, ``(N, C, h, w)`` -> ``(N, P, C)``.

        One batched product per position in a contiguous ``(P, N, C)`` layout (``einsum`` on the strided view
        falls off a 100x performance cliff for some shapes)."""
        if self.covariance == "position":
            x = (maps.flatten(2).permute(2, 0, 1) - self.mean[:, None, :]).contiguous()
            return torch.bmm(x, self.whitening.transpose(1, 2)).transpose(0, 1)
        return (maps.flatten(2).transpose(1, 2) - self.mean) @ self.whitening[0].T

    def whiten_standardized(self, raw: Tensor, feature_mean: Tensor, feature_std: Tensor) -> Tensor:
        """``whiten((raw - feature_mean) / feature_std)`` in one batched product per position from the raw maps
        (inference): the standardization and the mean are folded into ``A_p = diag(1 / std) W_p^T`` and
        ``b_p = (mean / std + mu_p) W_p^T``, kept until a buffer changes. The same fibers to float32 round-off.

        Shapes: ``raw`` ``(N, C, h, w)`` (channels-last memory needs no copy), ``feature_mean``, ``feature_std``
        ``(C, 1, 1)`` -> ``(N * P, C)``, image-major."""
        n, c, h, w = raw.shape
        a, b = self._folded_standardization(feature_mean, feature_std)
        x = raw.permute(0, 2, 3, 1).reshape(n, h * w, c)
        if self.covariance == "position":
            return torch.baddbmm(b.neg().unsqueeze(1), x.transpose(0, 1), a).transpose(0, 1).reshape(-1, c)
        return (x @ a[0]).sub_(b).view(-1, c)

    def _folded_standardization(self, feature_mean: Tensor, feature_std: Tensor) -> tuple[Tensor, Tensor]:
        """``(A, b)`` of :meth:`whiten_standardized`, ``(k, C, C)`` and ``(P, C)``, computed in float64."""
        key = tensor_state((self.whitening, self.mean, feature_mean, feature_std))
        cache = getattr(self, "_standardization", None)
        if cache is None or cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                std = feature_std.reshape(1, 1, -1).double()
                w = self.whitening.double()
                shift = feature_mean.reshape(1, -1).double() / std[0] + self.mean.double()  # (P, C)
                b = torch.einsum("pc,pdc->pd", shift, w) if self.covariance == "position" else shift @ w[0].T
                a = (w / std).transpose(1, 2)
                cache = self._standardization = (key, (a.to(self.mean.dtype), b.to(self.mean.dtype)))
        return cache[1]

    def mahalanobis(self, maps: Tensor) -> Tensor:
        """Squared Mahalanobis distance of every fiber, ``(N, C, h, w)`` -> ``(N, h, w)``."""
        return self.whiten(maps).pow(2).sum(-1).view(maps.shape[0], *maps.shape[2:])

    def log_prob(self, maps: Tensor) -> Tensor:
        """Log-density of every fiber under its position's Gaussian, ``(N, C, h, w)`` -> ``(N, h, w)``."""
        c = maps.shape[1]
        log_det = self.log_det_cholesky  # (1,) shared, broadcast; (P,) per position, laid out as the map
        if self.covariance == "position":
            log_det = log_det.view(1, *maps.shape[2:])
        return -0.5 * self.mahalanobis(maps) - log_det - 0.5 * c * math.log(2 * math.pi)

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[1]}, positions={self.mean.shape[0]}, covariance={self.covariance!r}"
