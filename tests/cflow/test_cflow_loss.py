"""The per-fiber NLL against a direct computation: Gaussian log-density plus the autograd Jacobian."""

import math

import pytest
import torch

from darkflow.cflow.loss import fiber_nll
from darkflow.flows import build_flow


def test_fiber_nll_matches_density():
    torch.manual_seed(0)
    c, p = 6, 8
    flow = build_flow("cflow-coupling", features=c, context=p, num_layers=3).double()
    for param in flow.parameters():  # move away from the near-identity initialisation
        param.data += 0.3 * torch.randn_like(param)
    z = torch.randn(5, c, dtype=torch.float64)
    ctx = torch.randn(5, p, dtype=torch.float64)
    u, log_det = flow(z, ctx)
    got = fiber_nll(u, log_det)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda v, i=i: flow(v[None], ctx[i : i + 1])[0][0], z[i])
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(u[i]).sum() + torch.linalg.slogdet(jac)[1]
        # fiber_nll leaves out the constant C/2 log(2 pi) and divides by C
        direct = (-log_p - 0.5 * c * math.log(2 * math.pi)) / c
        assert got[i].item() == pytest.approx(direct.item(), abs=1e-10)
