"""The ``D``-pass direction of an affine MADE layer (:class:`MaskedAffine`) is nflows', bit for bit, gradients
included to float round-off, and inverts the one-pass direction."""

from __future__ import annotations

import pytest
import torch
from nflows.transforms import MaskedAffineAutoregressiveTransform

from darkflow.flows.made_inverse import MaskedAffine


def _pair(context: int, dtype: torch.dtype) -> tuple[MaskedAffine, MaskedAffineAutoregressiveTransform]:
    torch.manual_seed(0)
    ours = MaskedAffine(6, 16, context_features=context or None, num_blocks=2).to(dtype)
    with torch.no_grad():  # away from nflows' near-identity start, so that every pass matters
        for p in ours.parameters():
            p.add_(0.3 * torch.randn_like(p))
    reference = MaskedAffineAutoregressiveTransform(6, 16, context_features=context or None, num_blocks=2)
    reference.to(dtype).load_state_dict(ours.state_dict())  # same parameters, same keys
    return ours, reference


@pytest.mark.parametrize("context", [0, 5])
def test_the_d_pass_direction_is_nflows(context):
    ours, reference = _pair(context, torch.float32)
    y = torch.randn(50, 6)
    c = torch.randn(50, context) if context else None
    x, logdet = ours.inverse(y, c)
    x_ref, logdet_ref = reference.inverse(y, c)
    assert torch.equal(x, x_ref) and torch.equal(logdet, logdet_ref)  # bit for bit
    back, logdet_fwd = ours(x, c)  # the one-pass direction undoes it
    torch.testing.assert_close(back, y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logdet_fwd, -logdet, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("context", [0, 5])
def test_the_gradients_are_nflows_in_float64(context):
    ours, reference = _pair(context, torch.float64)
    y = torch.randn(50, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(50, context, dtype=torch.float64) if context else None
    grads = []
    for layer in (ours, reference):
        x, logdet = layer.inverse(y, c)
        grads.append(torch.autograd.grad(x.square().sum() - logdet.sum(), [y, *layer.parameters()]))
    for g, g_ref in zip(*grads, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_the_log_determinant_is_the_autograd_jacobians_in_float64():
    torch.manual_seed(1)
    layer = MaskedAffine(4, 8, context_features=3, num_blocks=1).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    y, c = torch.randn(4, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer.inverse(v[None], c)[0][0], y)
    assert torch.allclose(jac.triu(1), torch.zeros_like(jac))  # autoregressive: lower triangular
    assert layer.inverse(y[None], c)[1].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), rel=1e-12)
