"""The closed-form Gaussian of CFLOW-AD's appendix A (``darkflow.cflow.gaussian``) against torch.distributions
and numpy, and the ``mvg`` model built on it."""

import numpy as np
import pytest
import torch

from darkflow.cflow.gaussian import GaussianFibers
from darkflow.errors import InputError


def _maps(n=40, c=5, h=3, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g, dtype=torch.float64)
    x = torch.randn(n, h * w, c, generator=g, dtype=torch.float64) @ mix.T
    x = x + torch.linspace(-1, 1, h * w, dtype=torch.float64)[None, :, None]  # a mean that depends on the position
    return x.transpose(1, 2).reshape(n, c, h, w)


def _covariances(maps: np.ndarray, covariance: str, epsilon: float) -> np.ndarray:
    """Each position's covariance, written out with numpy from the module docstring's definition."""
    n, c, h, w = maps.shape
    x = maps.reshape(n, c, h * w).transpose(0, 2, 1)  # (N, P, C)
    r = x - x.mean(axis=0)
    shared = sum(np.outer(r[i, p], r[i, p]) for i in range(n) for p in range(h * w)) / ((n - 1) * h * w)
    if covariance == "shared":
        return np.repeat((shared + epsilon * np.eye(c))[None], h * w, axis=0)
    own = np.stack([r[:, p].T @ r[:, p] for p in range(h * w)])
    return (own + c * shared) / (n - 1 + c) + epsilon * np.eye(c)


@pytest.mark.parametrize("covariance", ["shared", "position"])
def test_log_density_is_torch_multivariate_normal(covariance):
    train, test = _maps(seed=1), _maps(n=7, seed=2)
    gaussian = GaussianFibers(5, 12, covariance).double().fit(train, epsilon=0.05)
    sigma = torch.from_numpy(_covariances(train.numpy(), covariance, 0.05))
    mean = train.flatten(2).transpose(1, 2).mean(dim=0)  # (P, C)
    reference = torch.distributions.MultivariateNormal(mean, covariance_matrix=sigma)
    x = test.flatten(2).transpose(1, 2)  # (N, P, C)
    expected = reference.log_prob(x).view(7, 3, 4)
    torch.testing.assert_close(gaussian.log_prob(test), expected, rtol=1e-5, atol=1e-5)
    d2 = torch.einsum("npc,pcd,npd->np", x - mean, torch.linalg.inv(sigma), x - mean).view(7, 3, 4)
    torch.testing.assert_close(gaussian.mahalanobis(test), d2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("covariance", ["shared", "position"])
def test_fit_in_chunks_of_positions_equals_one_pass(covariance, monkeypatch):
    import darkflow.cflow.gaussian as gaussian_module

    train = _maps(n=9, c=5, seed=4)
    whole = GaussianFibers(5, 12, covariance).double().fit(train, epsilon=0.05)
    monkeypatch.setattr(gaussian_module, "CHUNK_BYTES", 8 * 5 * 5 * 5)  # 5 positions per chunk: 5, 5, 2
    chunked = GaussianFibers(5, 12, covariance).double().fit(train, epsilon=0.05)
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(chunked.state_dict()[name], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance", ["shared", "position"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_whitening_of_raw_maps_folds_the_standardization(covariance, channels_last):
    g = torch.Generator().manual_seed(5)
    raw = 3.0 + 2.0 * _maps(n=11, c=5, seed=5)
    mean = torch.randn(5, 1, 1, generator=g, dtype=torch.float64)
    std = torch.rand(5, 1, 1, generator=g, dtype=torch.float64) + 0.5
    gaussian = GaussianFibers(5, 12, covariance).double().fit((raw - mean) / std, epsilon=0.05)
    test = 3.0 + 2.0 * _maps(n=4, c=5, seed=6)
    if channels_last:
        test = test.contiguous(memory_format=torch.channels_last)
    expected = gaussian.whiten((test - mean) / std).reshape(-1, 5)
    torch.testing.assert_close(gaussian.whiten_standardized(test, mean, std), expected, rtol=1e-10, atol=1e-10)
    gaussian.mean.add_(1.0)  # the folded constants follow a new fit
    expected = gaussian.whiten((test - mean) / std).reshape(-1, 5)
    torch.testing.assert_close(gaussian.whiten_standardized(test, mean, std), expected, rtol=1e-10, atol=1e-10)


def test_whitened_training_fibers_are_standard_normal():
    train = _maps(n=400, c=3, seed=3)
    z = GaussianFibers(3, 12, "shared").double().fit(train, epsilon=1e-9).whiten(train)  # (N, P, C)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(12, 3, dtype=torch.float64))
    z = z.reshape(-1, 3)  # pooled within-position covariance: N - 1 degrees of freedom per position
    np.testing.assert_allclose((z.T @ z / (399 * 12)).numpy(), np.eye(3), atol=1e-6)


def test_position_covariance_memory_is_bounded():
    with pytest.raises(InputError, match="set `gaussian.covariance` to shared"):
        GaussianFibers(1024, 64 * 64, "position")


def test_mvg_model_map_is_the_squared_mahalanobis_distance(quick_config):
    from darkflow.cflow.config import CflowConfig
    from darkflow.cflow.imageset import ImageSet
    from darkflow.cflow.train import fit_cflow

    rng = np.random.default_rng(0)
    x = rng.random((12, 1, 16, 16)).astype(np.float32)
    config = CflowConfig.model_validate({**quick_config(16).model_dump(), "decoder": {"flow": "none"}})
    model, summary = fit_cflow(ImageSet(x, np.zeros(12, np.int8), None, [str(i) for i in range(12)], "jetimages"),
                               config, progress=False)
    assert model.mvg and len(model.decoders) == 0 and summary["flow_losses"] == []
    with torch.inference_mode():
        feats = model.features(torch.from_numpy(x[:3]))
        nll = model.nll_maps(torch.from_numpy(x[:3]))
    for s, (m, f) in enumerate(zip(nll, feats, strict=True)):
        torch.testing.assert_close(m, model.gaussians[s].mahalanobis(f) / (2 * f.shape[1]))
