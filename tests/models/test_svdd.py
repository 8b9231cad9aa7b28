"""Deep SVDD: the centre and the score recomputed in numpy, no bias terms, and training pulls events in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from darkflow.data_prep.features import HLF_NAMES
from darkflow.models.hlf_scaler import HLFStandardizer
from darkflow.models.scaler import Standardizer
from darkflow.models.svdd import DeepSVDD
from darkflow.train.module import DarkFlowModule

ROWS, FEATURES = ["jet", "jet", "met"], ["E", "pt", "eta", "phi"]


def events(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    objects = rng.normal(size=(n, len(ROWS), len(FEATURES))).astype(np.float32)
    mask = rng.random((n, len(ROWS))) < 0.8
    mask[:, -1] = True
    objects *= mask[..., None]
    hlf = np.abs(rng.normal(size=(n, len(HLF_NAMES)))).astype(np.float32)
    return {"objects": torch.from_numpy(objects), "mask": torch.from_numpy(mask), "hlf": torch.from_numpy(hlf),
            "weight": torch.ones(n, dtype=torch.float64)}


def identity_standardizer() -> Standardizer:
    return Standardizer(FEATURES, ROWS, phi="none", log=[])  # unfitted: x * mask


def numpy_phi(model: DeepSVDD, x: np.ndarray, slope: float) -> np.ndarray:
    """phi in numpy from the model's weights: bias-free linear layers with leaky ReLU between them."""
    weights = [m.weight.detach().double().numpy() for m in model.net if isinstance(m, nn.Linear)]
    for w in weights[:-1]:
        x = x @ w.T
        x = np.where(x > 0, x, slope * x)
    return x @ weights[-1].T


def batches(data: dict[str, torch.Tensor], size: int):
    n = len(data["mask"])
    return ({k: v[lo : lo + size] for k, v in data.items()} for lo in range(0, n, size))


def test_no_bias_and_no_bounded_activation():
    model = DeepSVDD(identity_standardizer(), hidden=[16, 8], rep_dim=4)
    names = [name for name, _ in model.named_parameters()]
    assert names and all(name.endswith("weight") for name in names)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert {type(m) for m in model.net if not isinstance(m, nn.Linear)} == {nn.LeakyReLU}
    assert "center" in dict(model.named_buffers()) and "center" not in names


@pytest.mark.parametrize("hlf_input", [False, True])
def test_centre_and_score_equal_numpy(hlf_input):
    torch.manual_seed(0)
    data = events(300)
    hlf_scaler = HLFStandardizer(HLF_NAMES).fit([data["hlf"].numpy()])
    x = data["objects"].double().numpy().reshape(300, -1)
    if hlf_input:
        kept = [i for i, n in enumerate(HLF_NAMES) if n != "MET_phi"]
        h = data["hlf"].double().numpy()[:, kept]
        h[:, :3] = np.log1p(h[:, :3])  # MET, HT, m_eff
        x = np.concatenate([x, (h - hlf_scaler.mean.double().numpy()) / hlf_scaler.std.double().numpy()], axis=1)
    model = DeepSVDD(identity_standardizer(), hidden=[16, 8], rep_dim=6, hlf_input=hlf_input, hlf_scaler=hlf_scaler,
                     negative_slope=0.1)
    rep = numpy_phi(model, x, 0.1)
    raw = rep.mean(0)
    eps = float(np.sort(np.abs(raw))[2]) + 1e-6  # large enough that three components get the eps-fix
    model.eps = eps
    center = model.fit_center(batches(data, 64)).double().numpy()
    expected = np.where(np.abs(raw) < eps, np.where(raw < 0, -eps, eps), raw)
    assert (expected != raw).sum() == 3
    np.testing.assert_allclose(center, expected, rtol=1e-5, atol=1e-6)
    got = model(data["objects"], data["mask"], sample=False, hlf=data["hlf"])["total"].detach().double().numpy()
    np.testing.assert_allclose(got, ((rep - center) ** 2).sum(-1), rtol=1e-4, atol=1e-6)


def test_centre_is_saved_with_the_state_dict():
    model = DeepSVDD(identity_standardizer(), hidden=[8], rep_dim=3)
    model.fit_center(batches(events(50), 16))
    again = DeepSVDD(identity_standardizer(), hidden=[8], rep_dim=3)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.center, model.center) and model.center.abs().min() >= model.eps


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`:UserWarning")  # the module outside a Trainer
def test_training_with_the_lightning_module_lowers_the_score():
    torch.manual_seed(1)
    data = events(512, seed=3)
    model = DeepSVDD(identity_standardizer(), hidden=[32, 16], rep_dim=8)
    model.fit_center(batches(data, 128))
    center = model.center.clone()
    with torch.no_grad():
        before = model(data["objects"], data["mask"], sample=False)["total"].mean().item()
    module = DarkFlowModule(model, learning_rate=3e-3, weight_decay=1e-6)
    optimizer = module.configure_optimizers()
    for _ in range(20):
        for i, batch in enumerate(batches(data, 128)):
            optimizer.zero_grad()
            module.training_step(batch, i).backward()
            optimizer.step()
    with torch.no_grad():
        after = model(data["objects"], data["mask"], sample=False)["total"].mean().item()
    assert after < 0.5 * before
    assert torch.equal(model.center, center)  # the centre is fixed, never trained
