"""The torchvision encoder's inference path (batch norms folded into the convolutions, channels-last memory)
gives the maps of the plain eval-mode network; needs torchvision (the optional `vision` extra)."""

import pytest
import torch

torchvision = pytest.importorskip("torchvision", exc_type=ImportError)

from darkflow.cflow.encoders import TorchvisionEncoder  # noqa: E402


def _randomize_batch_norms(encoder: torch.nn.Module, generator: torch.Generator) -> None:
    for m in encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.2, generator=generator)
                m.running_mean.normal_(0.0, 0.2, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)


def _plain(encoder: TorchvisionEncoder, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.enable_grad():
        return [m.detach() for m in encoder(x)]


@pytest.mark.parametrize(("channels", "size"), [(3, 64), (1, 32), (1, 48)])
def test_folded_encoder_equals_plain_network(channels, size):
    """RGB and grey images (the grey one meets the summed stem kernel), at sizes whose last layer runs in
    channels-last memory (64 px) or in the default layout (32 px: 4x4 inputs)."""
    g = torch.Generator().manual_seed(0)
    encoder = TorchvisionEncoder("resnet18", "none").eval()
    _randomize_batch_norms(encoder, g)
    x = torch.randn(3, channels, size, size, generator=g)
    expected = _plain(encoder, x)
    with torch.inference_mode():
        folded = encoder(x)
    assert len(folded) == 3
    for got, want in zip(folded, expected, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_folded_encoder_follows_new_weights():
    g = torch.Generator().manual_seed(1)
    encoder = TorchvisionEncoder("resnet18", "none").eval()
    x = torch.randn(2, 1, 64, 64, generator=g)
    with torch.no_grad():
        before = encoder(x)[2]
    other = TorchvisionEncoder("resnet18", "none").eval()
    _randomize_batch_norms(other, g)
    encoder.load_state_dict(other.state_dict())
    with torch.no_grad():
        after = encoder(x)[2]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _plain(other, x)[2], rtol=1e-4, atol=1e-4 * float(after.abs().max()))
