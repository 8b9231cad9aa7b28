"""The CFLOW-AD model: input standardization, a frozen multi-scale encoder, feature standardization, the
closed-form Gaussian of every scale's fibers (whitening), one conditional-flow decoder per scale conditioned on
positional encodings (none: the MVG model), and calibration constants."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from darkflow.cflow.config import CflowConfig
from darkflow.cflow.decoder import build_decoders
from darkflow.cflow.encoders import IMAGENET_MEAN, IMAGENET_STD, build_encoder
from darkflow.cflow.gaussian import GaussianFibers
from darkflow.cflow.loss import fiber_nll
from darkflow.cflow.maps import anomaly_map, image_score
from darkflow.cflow.positional import positional_encoding_2d

NORMALIZATIONS = ("channel", "column", "imagenet")


class CFlowModel(nn.Module):
    """Image in, anomaly map and image score out.

    Arguments:
        config: the run's configuration (encoder, decoder sections).
        shape: ``(C, H, W)`` of the input images.
        normalization: ``channel`` (a mean and std per input channel), ``column`` (per channel and column,
            for event arrays whose columns are different features) or ``imagenet`` (ImageNet's constants,
            for pretrained torchvision encoders).
        load_weights: fetch the encoder's pretrained weights (False when a saved state dict follows).
        rows_are_objects: event arrays, one object per row: the built-in encoder's first scale sees each row
            alone and the maps are upsampled ``nearest`` (see :func:`~darkflow.cflow.maps.anomaly_map`), so that
            the map points at one object; images: ``False`` (3x3 convolutions, ``bilinear``).

    Shapes:
        ``forward``: ``(N, C, H, W)`` -> anomaly map ``(N, H, W)``, score ``(N,)``.

    References:
        D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD: Real-Time Unsupervised Anomaly Detection with
        Localization via Conditional Normalizing Flows, WACV 2022 (arXiv:2107.12571).
    """

    def __init__(self, config: CflowConfig, shape: tuple[int, int, int], normalization: str = "channel",
                 load_weights: bool = True, rows_are_objects: bool = False) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {normalization!r}")
        c, h, w = shape
        self.shape = (c, h, w)
        self.normalization = normalization
        self.rows_are_objects = rows_are_objects
        self.upsample = "nearest" if rows_are_objects else "bilinear"
        enc = config.encoder
        weights = enc.weights if load_weights else "none"
        self.encoder = build_encoder(enc.name, c, (h, w), weights, enc.channels, enc.resolution, rows_are_objects)
        self.register_buffer("input_mean", torch.zeros(c, 1, w if normalization == "column" else 1))
        self.register_buffer("input_std", torch.ones(c, 1, w if normalization == "column" else 1))
        if normalization == "imagenet":
            k = 3 if c == 3 else 1
            self.input_mean.copy_(torch.tensor(IMAGENET_MEAN[:k] if k == 3 else [0.449]).view(k, 1, 1))
            self.input_std.copy_(torch.tensor(IMAGENET_STD[:k] if k == 3 else [0.226]).view(k, 1, 1))
        with torch.no_grad():
            maps = self.encoder.eval()(torch.zeros(1, c, h, w))
        self.scales = [(m.shape[1], m.shape[2], m.shape[3]) for m in maps]
        for s, (cs, hs, ws) in enumerate(self.scales):
            self.register_buffer(f"feature_mean_{s}", torch.zeros(cs, 1, 1))
            self.register_buffer(f"feature_std_{s}", torch.ones(cs, 1, 1))
            pos = positional_encoding_2d(config.decoder.pos_dim, hs, ws)
            self.register_buffer(f"position_{s}", pos.flatten(1).T.contiguous(), persistent=False)  # (hs*ws, P)
        g = config.gaussian
        self.gaussians = nn.ModuleList() if g.covariance == "none" else nn.ModuleList(
            GaussianFibers(cs, hs * ws, g.covariance) for cs, hs, ws in self.scales)
        d = config.decoder
        self.mvg = config.is_mvg
        self.decoders = nn.ModuleList() if self.mvg else build_decoders(
            [cs for cs, _, _ in self.scales], d.flow, d.blocks, d.clamp, d.pos_dim, d.flow_options)
        self.forward_direction = self.mvg or d.flow == "cflow-coupling" or not self.decoders[0].has_inverse
        self.register_buffer("calibration", torch.tensor([[0.0, 1.0]] * len(self.scales)))
        self._contexts: dict[int, object] = {}

    def fit_input_normalization(self, images: Tensor) -> None:
        """Fit the input mean and standard deviation on training images ``(N, C, H, W)`` (not ``imagenet``)."""
        if self.normalization == "imagenet":
            return
        dims = (0, 2) if self.normalization == "column" else (0, 2, 3)
        x = images.double()
        mean = x.mean(dim=dims)
        std = x.std(dim=dims)
        std = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
        self.input_mean.copy_(mean.view(self.input_mean.shape).float())
        self.input_std.copy_(std.view(self.input_std.shape).float())

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.input_mean) / self.input_std

    def raw_features(self, images: Tensor) -> list[Tensor]:
        """Encoder maps of raw images, before feature standardization: ``[(N, C_s, h_s, w_s)]``."""
        return self.encoder(self.normalize(images))

    def fit_feature_normalization(self, maps: list[Tensor]) -> None:
        """Per-channel mean and std of every scale's encoder output on training images (dead channels
        get the median std so that they cannot blow up)."""
        for s, m in enumerate(maps):
            x = m.double().transpose(0, 1).flatten(1)
            mean, std = x.mean(dim=1), x.std(dim=1)
            std = std.clamp_min(0.1 * float(std.median()) + 1e-12)
            getattr(self, f"feature_mean_{s}").copy_(mean.view(-1, 1, 1).float())
            getattr(self, f"feature_std_{s}").copy_(std.view(-1, 1, 1).float())

    def standardize(self, maps: list[Tensor]) -> list[Tensor]:
        """Raw encoder maps ``[(N, C_s, h_s, w_s)]`` standardized per channel with the fitted statistics."""
        return [(m - getattr(self, f"feature_mean_{s}")) / getattr(self, f"feature_std_{s}")
                for s, m in enumerate(maps)]

    def features(self, images: Tensor) -> list[Tensor]:
        """Standardized encoder maps ``[(N, C_s, h_s, w_s)]``."""
        return self.standardize(self.raw_features(images))

    def fit_gaussians(self, maps: list[Tensor], epsilon: float) -> None:
        """Fit every scale's Gaussian on the standardized training maps ``[(N, C_s, h_s, w_s)]``."""
        for gaussian, m in zip(self.gaussians, maps, strict=True):
            gaussian.fit(m, epsilon)

    def scale_fibers(self, scale: int, maps: Tensor) -> Tensor:
        """The fibers the decoder of ``scale`` sees: standardized maps ``(N, C_s, h_s, w_s)`` -> ``(N, P_s, C_s)``,
        whitened by the scale's Gaussian (when there is one), positions in row-major order."""
        if len(self.gaussians):
            return self.gaussians[scale].whiten(maps)
        return maps.flatten(2).transpose(1, 2)

    def position(self, scale: int) -> Tensor:
        """The positional encodings of scale ``scale``'s positions in row-major order, ``(h_s * w_s, P)``."""
        return getattr(self, f"position_{scale}")

    def fibers(self, scale: int, fibers: Tensor, positions: Tensor | None = None, chunk: int = 8192) -> Tensor:
        """Per-fiber NLL of ``fibers`` ``(B, C_s)`` of scale ``scale``, conditioned on the positional encodings
        of their positions -> ``(B,)``.

        The fibers are ``B / Q`` images times ``Q`` positions, image-major: ``positions`` ``(Q,)`` are the
        row-major positions of each image's fibers (``None``: all ``P_s`` positions in order). Without
        gradients the decoder runs on about ``chunk`` fibers (whole images) at a time: its hidden activations
        then stay in the CPU cache (2-3x faster than one pass over a large batch); traced exports take one pass."""
        from darkflow.flows import IndexedContext

        table = self.position(scale)
        if positions is None and not torch.is_grad_enabled():  # kept: each block projects the table once
            context = self._contexts.get(scale)
            if context is None or context.table is not table:
                context = self._contexts[scale] = IndexedContext(table)
        else:
            context = IndexedContext(table if positions is None else table[positions])
        decoder = self.decoders[scale]
        q = context.table.shape[0]
        rows = max(q, chunk // q * q)
        if torch.is_grad_enabled() or len(fibers) <= rows or torch.jit.is_tracing():
            return self._nll(decoder, fibers, context)
        return torch.cat([self._nll(decoder, part, context) for part in fibers.split(rows)])

    def _nll(self, decoder: nn.Module, fibers: Tensor, context) -> Tensor:
        u, log_det = decoder(fibers, context) if self.forward_direction else decoder.inverse(fibers, context)
        return fiber_nll(u, log_det)

    def nll_maps(self, images: Tensor) -> list[Tensor]:
        """Per-scale fiber NLL maps ``[(N, h_s, w_s)]``: the decoder's NLL of the whitened fibers per dimension
        (the whitening's log-determinant, a constant of each position, is left out like the Gaussian
        normalisation), or for the MVG model the squared Mahalanobis distance over ``2 C_s`` (the same NLL
        with the identity as flow). Without gradients the standardization and whitening are one fused product
        (:meth:`~darkflow.cflow.gaussian.GaussianFibers.whiten_standardized`)."""
        fused = len(self.gaussians) > 0 and not torch.is_grad_enabled() and not torch.jit.is_tracing()
        out = []
        for s, m in enumerate(self.raw_features(images) if fused else self.features(images)):
            n, c, h, w = m.shape
            if fused:
                z = self.gaussians[s].whiten_standardized(m, getattr(self, f"feature_mean_{s}"),
                                                          getattr(self, f"feature_std_{s}"))
            else:
                z = self.scale_fibers(s, m).reshape(n * h * w, c)
            if self.mvg:
                out.append((0.5 * z.pow(2).sum(-1) / c).view(n, h, w))
                continue
            out.append(self.fibers(s, z).view(n, h, w))
        return out

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        amap = anomaly_map(self.nll_maps(images), self.calibration, images.shape[2:], self.upsample)
        return amap, image_score(amap)

