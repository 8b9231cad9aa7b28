"""The HLF flow density: -log p(h) against an autograd Jacobian in float64 and the analytic Gaussian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darkflow.data_prep.features import HLF_NAMES
from darkflow.errors import InputError
from darkflow.models.hlf_density import HLFFlowDensity
from darkflow.models.hlf_scaler import HLFStandardizer
from darkflow.train.config import TrainConfig
from darkflow.train.run import uses_hlf

COUNTS = [i for i, n in enumerate(HLF_NAMES) if n.startswith("n_")]
LOGS = [HLF_NAMES.index(n) for n in ("MET", "HT", "m_eff")]
KEPT = [i for i, n in enumerate(HLF_NAMES) if n != "MET_phi"]


def hlf_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.zeros((n, len(HLF_NAMES)), np.float32)
    h[:, LOGS] = rng.gamma(2.0, 60.0, size=(n, 3))
    h[:, HLF_NAMES.index("MET_phi")] = rng.uniform(-np.pi, np.pi, n)
    h[:, COUNTS] = rng.poisson(1.5, size=(n, len(COUNTS)))
    return h


def standardized(h: np.ndarray, scaler: HLFStandardizer, shift: float) -> np.ndarray:
    """numpy: log1p of MET, HT, m_eff, counts + shift, MET_phi dropped, then the scaler's mean and std."""
    x = h.astype(np.float64).copy()
    x[:, LOGS] = np.log1p(x[:, LOGS])
    x[:, COUNTS] += shift
    return (x[:, KEPT] - scaler.mean.double().numpy()) / scaler.std.double().numpy()


@pytest.fixture
def scaler() -> HLFStandardizer:
    return HLFStandardizer(HLF_NAMES).fit([hlf_rows(500, seed=1)])


def test_registered_as_an_hlf_model():
    assert uses_hlf(TrainConfig.model_validate({"model": {"kind": "hlf_density"}}))


def test_dequantization_uniform_in_training_cell_centre_at_scoring(scaler):
    h = hlf_rows(400)
    model = HLFFlowDensity(scaler, "none")
    fixed = model.features(torch.from_numpy(h), sample=False).double().numpy()
    np.testing.assert_allclose(fixed, standardized(h, scaler, 0.5), rtol=1e-5, atol=1e-5)
    noisy = model.features(torch.from_numpy(h), sample=True).double().numpy()
    noise = (noisy - fixed) * scaler.std.double().numpy() + 0.5  # back to raw units: the U[0, 1) draws
    kept_counts = [KEPT.index(i) for i in COUNTS]
    others = [j for j in range(len(KEPT)) if j not in kept_counts]
    np.testing.assert_allclose(noise[:, others], 0.5, atol=1e-5)
    draws = noise[:, kept_counts]
    assert draws.min() >= -1e-5 and draws.max() < 1 + 1e-5
    assert abs(draws.mean() - 0.5) < 0.02 and abs(draws.var() - 1 / 12) < 0.01
    plain = HLFFlowDensity(scaler, "none", dequantize=False).features(torch.from_numpy(h), sample=True)
    np.testing.assert_allclose(plain.double().numpy(), standardized(h, scaler, 0.0), rtol=1e-5, atol=1e-5)


def test_identity_flow_gives_the_standard_normal_density(scaler):
    h = hlf_rows(50)
    got = HLFFlowDensity(scaler, "none")(None, None, sample=False, hlf=torch.from_numpy(h))["total"]
    x = torch.from_numpy(standardized(h, scaler, 0.5))
    expected = -torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    np.testing.assert_allclose(got.double().numpy(), expected.numpy(), rtol=1e-5)
    assert expected.numpy() == pytest.approx(0.5 * (x.numpy() ** 2).sum(-1) + 0.5 * len(KEPT) * math.log(2 * math.pi))


@pytest.mark.parametrize("flow", ["maf", "realnvp"])
def test_score_is_minus_log_normal_minus_log_det_of_the_autograd_jacobian(scaler, flow):
    torch.manual_seed(0)
    model = HLFFlowDensity(scaler, flow, {"num_layers": 2, "hidden_features": 8}).double()
    with torch.no_grad():  # move away from the identity initialisation
        for p in model.flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    h = torch.from_numpy(hlf_rows(6, seed=2))
    got = model(None, None, sample=False, hlf=h)["total"]
    x = model.features(h, sample=False).double()
    normal = torch.distributions.MultivariateNormal(torch.zeros(len(KEPT), dtype=torch.float64),
                                                    torch.eye(len(KEPT), dtype=torch.float64))
    for i in range(len(h)):
        def to_noise(v: torch.Tensor) -> torch.Tensor:
            return model.flow.inverse(v.unsqueeze(0))[0].squeeze(0)

        jac = torch.autograd.functional.jacobian(to_noise, x[i])
        _, log_abs_det = torch.linalg.slogdet(jac)
        expected = -normal.log_prob(to_noise(x[i])) - log_abs_det
        assert abs(log_abs_det.item()) > 0.1  # a non-trivial flow
        assert got[i].item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-9)


def test_needs_the_high_level_features(scaler):
    with pytest.raises(InputError, match="pass hlf"):
        HLFFlowDensity(scaler)(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
