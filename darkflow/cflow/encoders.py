"""CFLOW-AD encoders: multi-scale feature maps of an image.

* ``builtin``: a small ConvNet (three scales) that works on any input size, square or not, down to the
  ``(1, 32, 4)`` event arrays; it is pre-trained as an autoencoder on the normal training images.
* ``resnet18``, ``wide_resnet50_2``: torchvision backbones (optional extra ``vision``), the outputs of
  ``layer1..layer3`` as in CFLOW-AD, with ImageNet weights (downloaded or from a local file) or random ones.

Every encoder maps ``(N, C_in, H, W)`` to a list of ``(N, C_s, h_s, w_s)`` maps, one per scale.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from darkflow.errors import ConfigError, InputError
from darkflow.tensor_state import tensor_state

BACKBONES = ("resnet18", "wide_resnet50_2")
ENCODERS = ("builtin", *BACKBONES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _block(c_in: int, c_out: int, row_local: bool = False) -> nn.Sequential:
    k, p = ((1, 3), (0, 1)) if row_local else (3, 1)
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=p), nn.LeakyReLU(0.1),
                         nn.Conv2d(c_out, c_out, k, padding=p), nn.LeakyReLU(0.1))


def _init(module: nn.Module) -> None:
    """He initialisation for the LeakyReLU stacks (PyTorch's default shrinks the signal layer by layer, and
    a dozen layers deep the autoencoder then only learns the mean image)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


def _pool(size: tuple[int, int]) -> tuple[int, int]:
    """Halve every side of at least 8 pixels, keep the others (a ``(32, 4)`` map becomes ``(16, 4)``)."""
    return tuple(2 if s >= 8 else 1 for s in size)  # type: ignore[return-value]


class ConvEncoder(nn.Module):
    """The built-in encoder: a stem to at most ``resolution`` cells a side (a convolution over
    non-overlapping power-of-two patches, or a 3x3 convolution on small inputs), then one conv block per
    scale, each after halving the sides of at least 8 cells.

    Arguments:
        in_channels: ``C_in``.
        image_size: ``(H, W)`` of the inputs.
        channels: output channels of each scale (the number of scales is its length).
        resolution: the first scale's sides are at most this (a power-of-two average pooling of the stem).
        row_local: the stem and first scale convolve along rows only (``1 x 3`` kernels): each row of the
            first scale's map describes one row of the input (one object of an event array).

    Shapes:
        ``(N, C_in, H, W)`` -> ``[(N, channels[s], h_s, w_s)]``.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], channels: list[int] | tuple[int, ...] = (32, 64, 128),
                 resolution: int = 32, row_local: bool = False) -> None:
        super().__init__()
        stem = []
        for side in image_size:
            f = 1
            while side / f > resolution:
                f *= 2
            stem.append(f)
        self.stem_factor = tuple(stem)
        if max(stem) > 1:  # non-overlapping patches: no full-resolution activations on large images
            conv = nn.Conv2d(in_channels, channels[0], tuple(stem), stride=tuple(stem))
        else:
            conv = nn.Conv2d(in_channels, channels[0], (1, 3) if row_local else 3, padding=(0, 1) if row_local else 1)
        self.stem = nn.Sequential(conv, nn.LeakyReLU(0.1))
        size = tuple(s // f for s, f in zip(image_size, stem, strict=True))
        self.stages = nn.ModuleList()
        self.sizes: list[tuple[int, int]] = []
        for s, c in enumerate(channels):
            stage: list[nn.Module] = []
            if s:
                pool = _pool(size)
                if max(pool) > 1:
                    stage.append(nn.AvgPool2d(pool))
                size = tuple(a // p for a, p in zip(size, pool, strict=True))
            stage.append(_block(channels[s - 1] if s else channels[0], c, row_local and s == 0))
            self.stages.append(nn.Sequential(*stage))
            self.sizes.append(size)  # type: ignore[arg-type]
        self.channels = list(channels)
        _init(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class ConvDecoder(nn.Module):
    """The decoder that pre-trains :class:`ConvEncoder` as an autoencoder (discarded afterwards).

    Shapes:
        the deepest map ``(N, channels[-1], h, w)`` -> ``(N, C_in, H, W)``.
    """

    def __init__(self, encoder: ConvEncoder, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.sizes = encoder.sizes[::-1][1:] + encoder.sizes[:1]
        self.image_size = tuple(image_size)
        chans = encoder.channels[::-1]
        self.blocks = nn.ModuleList(  # one convolution per level: the decoder only has to train the encoder
            nn.Sequential(nn.Conv2d(chans[i], chans[min(i + 1, len(chans) - 1)], 3, padding=1), nn.LeakyReLU(0.1))
            for i in range(len(chans)))
        f = encoder.stem_factor
        self.head = (nn.ConvTranspose2d(chans[-1], in_channels, f, stride=f) if max(f) > 1
                     else nn.Conv2d(chans[-1], in_channels, 3, padding=1))
        _init(self)

    def forward(self, z: Tensor) -> Tensor:
        for block, size in zip(self.blocks, self.sizes, strict=True):
            z = nn.functional.interpolate(block(z), size=size, mode="bilinear", align_corners=False)
        x = self.head(z)
        if tuple(x.shape[2:]) != self.image_size:
            x = nn.functional.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x


class TorchvisionEncoder(nn.Module):
    """``layer1..layer3`` of a torchvision ResNet (CFLOW-AD's encoders); 1-channel inputs are repeated to 3.

    Arguments:
        name: ``resnet18`` or ``wide_resnet50_2``.
        weights: ``imagenet`` (torchvision's download), ``none`` (random, e.g. for benchmarks) or the path
            of a local ``.pth`` state dict.

    Shapes:
        ``(N, C_in, H, W)`` -> ``[(N, C_s, H/4, W/4), (N, 2 C_s, H/8, W/8), (N, 4 C_s, H/16, W/16)]``.

    References:
        K. He et al., Deep Residual Learning for Image Recognition, CVPR 2016; S. Zagoruyko, N. Komodakis,
        Wide Residual Networks, BMVC 2016.
    """

    def __init__(self, name: str, weights: str = "imagenet") -> None:
        super().__init__()
        net = _torchvision_backbone(name, weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3])

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.training or torch.is_grad_enabled() or torch.jit.is_tracing():
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            modules, formats = [self.stem, *self.layers], None
        else:
            modules, formats = self.folded(x.shape[1], (x.shape[2], x.shape[3]))
        out = []
        for i, module in enumerate(modules):
            if formats is not None:
                x = x.contiguous(memory_format=formats[i])
            x = module(x)
            if i:
                out.append(x)
        return out

    def folded(self, in_channels: int = 3,
               size: tuple[int, int] = (224, 224)) -> tuple[list[nn.Module], list[torch.memory_format]]:
        """The stem and layers for inference on ``(N, in_channels, *size)`` images, and each one's memory format.

        Every batch norm is folded into its convolution; a 1-channel image (repeated to 3 channels on the training
        path) meets the stem's kernel summed over its input channels; a module whose input has at least 64
        positions runs in channels-last memory, smaller ones (layer3 of a 32 px image) in the default layout,
        where oneDNN's convolutions are about twice as fast. About 1.6x faster on CPU, the same maps to float32
        round-off; rebuilt when a weight changes."""
        from torch.fx.experimental.optimization import fuse
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        slots = getattr(self, "_slots", None)
        if slots is None:  # every parameter and buffer, read by name so that a replaced tensor is seen
            slots = self._slots = [(m, name) for m in self.modules() for name in (*m._parameters, *m._buffers)]
        key = (tensor_state(getattr(m, name) for m, name in slots), in_channels, size)
        if getattr(self, "_folded", None) is None or self._folded[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                conv = fuse_conv_bn_eval(self.stem[0].eval(), self.stem[1].eval())
                if in_channels == 1:
                    conv.weight = nn.Parameter(conv.weight.sum(dim=1, keepdim=True), requires_grad=False)
                    conv.in_channels = 1
                modules = [nn.Sequential(conv, *self.stem[2:]), *(fuse(m.eval()) for m in self.layers)]
                probe = torch.zeros(1, in_channels, *size, device=conv.weight.device)
                formats = []
                for i, module in enumerate(modules):
                    fmt = torch.channels_last if probe.shape[2] * probe.shape[3] >= 64 else torch.contiguous_format
                    probe = module(probe)
                    modules[i] = module.to(memory_format=fmt)
                    formats.append(fmt)
            self._folded = (key, (modules, formats))
        return self._folded[1]


def _torchvision_backbone(name: str, weights: str) -> nn.Module:
    try:
        import torchvision
    except Exception as err:  # ImportError, or a torchvision built for another torch
        raise InputError(f"encoder {name!r} needs torchvision ({type(err).__name__}: {err}); install the extra "
                         "with pip install 'darkflow[vision]' or set `encoder.name` to builtin") from None
    net = getattr(torchvision.models, name)(weights=None)
    if weights == "none":
        return net
    if weights == "imagenet":
        enum = torchvision.models.get_model_weights(name).IMAGENET1K_V1
        try:
            state = enum.get_state_dict(progress=False)
        except Exception as err:  # URLError, socket errors, a corrupt cache
            raise InputError(f"could not download the ImageNet weights of {name} ({type(err).__name__}); pass a "
                             f"local file (from {enum.url}) as `encoder.weights` or set `encoder.name` to builtin") from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"weights file not found: {path}; pass a torchvision {name} state dict (.pth), "
                             "'imagenet' or 'none'")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(f"{path}: not a loadable state dict ({type(err).__name__})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        detail = " ".join(str(err).split())
        raise InputError(f"the weights do not fit torchvision's {name}: {detail[:240]}") from None
    return net


def build_encoder(name: str, in_channels: int, image_size: tuple[int, int], weights: str = "imagenet",
                  channels: list[int] | tuple[int, ...] = (32, 64, 128), resolution: int = 32,
                  row_local: bool = False) -> nn.Module:
    """The encoder called ``name`` (one of :data:`ENCODERS`) for ``(in_channels, *image_size)`` inputs
    (``row_local``: see :class:`ConvEncoder`; torchvision encoders ignore it)."""
    if name == "builtin":
        return ConvEncoder(in_channels, image_size, channels, resolution, row_local)
    if name not in BACKBONES:
        raise ConfigError(f"unknown encoder {name!r}; valid: {', '.join(ENCODERS)}")
    if in_channels not in (1, 3):
        raise InputError(f"encoder {name} takes 1- or 3-channel images, not {in_channels}; set `encoder.name` to builtin")
    if min(image_size) < 32:
        raise InputError(f"encoder {name} needs images of at least 32x32 pixels, not {image_size[0]}x{image_size[1]}; "
                         "set `encoder.name` to builtin")
    return TorchvisionEncoder(name, weights)
