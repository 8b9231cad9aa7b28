"""The probabilistic decoder's likelihood equals torch.distributions term by term (float64), padding included;
the combined score and the high-level-feature input of the VAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import distributions as D
from torch.nn.functional import softplus

from darkflow.models.hlf_scaler import HLFStandardizer
from darkflow.models.probabilistic import FLOOR, EventLikelihood, log_i0
from darkflow.models.scaler import Standardizer
from darkflow.models.vae import FlowVAE

ROWS = ["jet", "jet", "jet", "eplus", "met"]


def hand_made(features: list[str], n: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw events ``(n, 5, F)`` float64 with padding slots (zeros) and a MET row as the layout stores it."""
    g = torch.Generator().manual_seed(seed)
    pt = torch.rand(n, 5, generator=g, dtype=torch.float64) * 200 + 20
    eta = torch.randn(n, 5, generator=g, dtype=torch.float64) * 1.5
    phi = (torch.rand(n, 5, generator=g, dtype=torch.float64) * 2 - 1) * torch.pi
    mass = torch.rand(n, 5, generator=g, dtype=torch.float64) * 10
    mask = torch.rand(n, 5, generator=g) < 0.6
    mask[:, -1] = True
    mask[0, :-1] = False  # an event with no object at all
    mask[1, :-1] = True  # one with every slot full
    eta[:, -1], mass[:, -1] = 0.0, 0.0
    e = torch.sqrt((pt * torch.cosh(eta)) ** 2 + mass**2)
    e[:, -1] = pt[:, -1]
    columns = {"E": e, "pt": pt, "eta": eta, "phi": phi, "mass": mass,
               "type": torch.tensor([1.0, 1.0, 1.0, 3.0, 8.0], dtype=torch.float64).expand(n, 5)}
    obj = torch.stack([columns[f] for f in features], -1)
    return obj * mask.unsqueeze(-1), mask


def scaler_for(features: list[str]) -> Standardizer:
    obj, mask = hand_made(features, n=200, seed=1)
    return Standardizer(features, ROWS).fit([(obj.float().numpy(), mask.numpy())]).double()


def expected_log_prob(features, scaler, params, obj, mask):
    """The terms recomputed from the documented parametrization with torch.distributions."""
    out = [D.Bernoulli(logits=params[..., 0]).log_prob(mask.double())]
    out[0][:, -1] = 0.0  # the MET row is always real: no presence term
    transformed = scaler.transform_raw(obj)
    for j, f in enumerate(features):
        a, b = params[..., 1 + 2 * j], params[..., 2 + 2 * j]
        col = scaler.out_features.index(f) if f != "phi" else None
        if f in ("E", "pt"):
            m, s = scaler.mean[:, col], scaler.std[:, col]
            dist = D.LogNormal(m + s * a, s * (softplus(b) + FLOOR), validate_args=False)
            value = obj[..., j]
        elif f == "phi":
            dist = D.VonMises(a, softplus(b) + FLOOR, validate_args=False)
            value = obj[..., j]
        else:
            m, s = scaler.mean[:, col], scaler.std[:, col]
            dist = D.Normal(m + s * a, s * (softplus(b) + FLOOR))
            value = transformed[..., col]
        counts = mask.clone()
        if f in ("eta", "mass", "type") or (f == "E" and "pt" in features):
            counts[:, -1] = False
        out.append(torch.where(counts, dist.log_prob(torch.where(counts, value, torch.ones_like(value))), 0.0))
    return torch.stack(out, -1)


@pytest.mark.parametrize("features", [["E", "pt", "eta", "phi"], ["pt", "eta", "phi", "mass", "type"]])
def test_log_likelihood_equals_torch_distributions(features):
    scaler = scaler_for(features)
    obj, mask = hand_made(features)
    lik = EventLikelihood(features, ROWS)
    params = torch.randn(*mask.shape, lik.params_per_slot, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64) * 2
    got = lik.log_prob(params, obj, mask, scaler)
    want = expected_log_prob(features, scaler, params, obj, mask)
    assert got.dtype == torch.float64 and got.shape == (7, 5, 1 + len(features))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lik(params, obj, mask, scaler), -want.sum(dim=(1, 2)), rtol=1e-10, atol=1e-10)
    # padding slots: their stored values do not count, their emptiness does
    noisy = obj + 50.0 * (~mask).unsqueeze(-1)
    torch.testing.assert_close(lik(params, noisy, mask, scaler), lik(params, obj, mask, scaler), rtol=0, atol=0)
    assert (got[..., 0][:, :-1] != 0).all() and (got[:, -1, 0] == 0).all()


def test_log_i0_is_the_bessel_function():
    x = torch.cat([torch.linspace(0, 3.74, 50), torch.linspace(3.75, 300, 200)]).double()
    exact = torch.log(torch.special.i0e(x)) + x
    torch.testing.assert_close(log_i0(x), exact, rtol=2e-7, atol=2e-7)
    x.requires_grad_(True)
    log_i0(torch.cat([x, torch.zeros(1, dtype=torch.float64)])).sum().backward()
    assert torch.isfinite(x.grad).all()


def vae(**kw) -> FlowVAE:
    torch.manual_seed(0)
    features = ["E", "pt", "eta", "phi"]
    obj, mask = hand_made(features, n=64, seed=3)
    scaler = Standardizer(features, ROWS).fit([(obj.float().numpy(), mask.numpy())])
    return FlowVAE(scaler, [1, 1, 1, 3, 8], latent=4, context=6, flow="planar", flow_options={"num_layers": 2},
                   channels=(8, 8), hidden=16, **kw).eval()


def hlf_for(obj: torch.Tensor, mask: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    pt = obj[..., 1]
    met, ht = pt[:, -1], pt[:, :3].sum(-1)
    hlf = torch.stack([met, obj[:, -1, 3], ht, ht + pt[:, 3] + met, mask[:, :3].sum(-1).double()], -1)
    return ["MET", "MET_phi", "HT", "m_eff", "n_jet"], hlf.float()


def test_combined_is_the_standardized_sum_of_reco_and_kl():
    model = vae(reco_loss="probabilistic")
    obj, mask = hand_made(["E", "pt", "eta", "phi"], n=300, seed=4)
    obj = obj.float()
    with torch.no_grad():
        before = model(obj, mask, sample=False)
    torch.testing.assert_close(before["combined"], before["reco"] + before["kl"])  # unfitted: 0 and 1
    fit = {k: v.double().numpy() for k, v in before.items()}
    model.fit_score_scales({k: v[:200] for k, v in fit.items()})
    with torch.no_grad():
        out = model(obj, mask, sample=False)
    want = sum((fit[k] - np.median(fit[k][:200])) / np.subtract(*np.quantile(fit[k][:200], [0.84, 0.16]))
               for k in ("reco", "kl"))
    np.testing.assert_allclose(out["combined"].double().numpy(), want, rtol=1e-4, atol=1e-4)
    # the scales round-trip through the state dict; one written before them loads with the defaults
    again = vae(reco_loss="probabilistic")
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again(obj, mask, sample=False)["combined"], out["combined"])
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("score_")}
    again.load_state_dict(old)
    torch.testing.assert_close(again(obj, mask, sample=False)["combined"], before["combined"])


def test_hlf_input_enters_the_encoder_and_its_reconstruction_the_reco_term():
    obj, mask = hand_made(["E", "pt", "eta", "phi"], n=32, seed=5)
    obj = obj.float()
    names, hlf = hlf_for(obj, mask)
    scaler = HLFStandardizer(names).fit([hlf.numpy()])
    with pytest.raises(ValueError, match="hlf_scaler"):
        vae(hlf_input=True)
    for reco_loss in ("probabilistic", "mse"):
        model = vae(reco_loss=reco_loss, hlf_input=True, hlf_scaler=scaler)
        with pytest.raises(ValueError, match="pass hlf"):
            model(obj, mask)
        with torch.no_grad():
            if model.hlf_gaussian is not None:
                model.hlf_gaussian.log_var.copy_(torch.linspace(-1, 1, 4))
            out = model(obj, mask, sample=False, hlf=hlf)
            shifted = model.posterior_mean(obj, mask, hlf=hlf * 1.5)
            # recompute: the encoder output with the standardized hlf, the decoder's last K' outputs
            x = model.standardizer(obj, mask)
            target = scaler(hlf)
            h = torch.cat([model.encoder(x, mask, model.types(obj)), target], -1)
            zk, _ = model.flow(model.mu(h), model.context_head(h))
            decoded = model.decoder(zk)
            n = model.rows * model.slot_outputs
            slots = decoded[:, :n].view(-1, model.rows, model.slot_outputs)
            events = model.reconstruction(slots, x, obj, mask)
        assert decoded.shape[1] == n + 4 and target.shape[1] == 4  # MET_phi is no input
        assert not torch.allclose(shifted, model.posterior_mean(obj, mask, hlf=hlf))
        if reco_loss == "probabilistic":
            sd = torch.exp(0.5 * torch.linspace(-1, 1, 4))
            hlf_term = -D.Normal(decoded[:, n:].double(), sd.double()).log_prob(target.double()).sum(-1)
        else:
            hlf_term = ((decoded[:, n:] - target) ** 2).sum(-1).double()
        torch.testing.assert_close(out["reco"].double(), events.double() + hlf_term, rtol=1e-5, atol=1e-4)
