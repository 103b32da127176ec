"""Every zoo model: forward, compress and decompress agree.

The quantised latents y_hat that g_s receives must be *identical* between the training
graph in eval mode (``forward``) and the real entropy-coded path (``compress`` ->
``decompress``): both compute round(y - mu) + mu from the same tensors. The reconstruction
then differs only by the final clamp to [0, 1] and float summation order of identical
convolutions, so it is compared within 1e-5 (far below half an 8-bit step, 2e-3).
"""

import pytest
import torch

from licfpga.model.layers import make_gdn
from licfpga.model.zoo import MODELS, build_model

SMALL = {"N": 16, "M": 24}


def _assert_round_trip(model, x):
    """forward (eval) and compress -> decompress give g_s identical latents; returns both."""
    seen = []
    handle = model.g_s.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        fwd = model(x)
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])
    handle.remove()
    y_fwd, y_dec = seen
    assert torch.equal(y_fwd, y_dec), "quantised latents differ between forward and decompress"
    assert fwd["x_hat"].shape == dec["x_hat"].shape == x.shape
    assert torch.allclose(fwd["x_hat"].clamp(0, 1), dec["x_hat"], atol=1e-5)
    return enc


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("gdn", ["gdn", "simplified"])
def test_forward_compress_decompress_agree(arch, gdn):
    kwargs = dict(SMALL, gdn=gdn)
    if arch in ("channelwise", "wacnn"):
        kwargs["slices"] = 3
    model = build_model(arch, **kwargs).eval()
    model.update(force=True)
    enc = _assert_round_trip(model, torch.rand(1, 3, 64, 128))
    assert all(isinstance(s[0], bytes) and len(s[0]) > 0 for s in enc["strings"])


@pytest.mark.parametrize("arch", ["hyperprior", "mean-scale", "channelwise"])
def test_likelihoods_are_probabilities_and_trainable(arch):
    model = build_model(arch, **SMALL).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    for lik in out["likelihoods"].values():
        assert torch.all(lik > 0) and torch.all(lik <= 1)
    loss = sum(l.log().sum() for l in out["likelihoods"].values()) + out["x_hat"].square().sum()
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "g_a.0" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_hyperprior_matches_compressai_state_dict():
    from compressai.models import ScaleHyperprior as Cai

    ours = build_model("hyperprior", N=16, M=24).eval()
    theirs = Cai(16, 24).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x)["x_hat"], theirs(x)["x_hat"])


def test_widths_and_bad_arguments():
    m = build_model("channelwise", N=8, M=12, slices=4)
    assert m.g_a[-1].out_channels == 12 and len(m.cc_mean) == 4
    with pytest.raises(ValueError, match="divisible"):
        build_model("channelwise", N=8, M=10, slices=4)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope")
    with pytest.raises(ValueError, match="unknown GDN variant"):
        make_gdn(8, "sqrt")


def test_simplified_gdn_uses_abs_without_sqrt():
    g = make_gdn(2, "simplified")
    x = torch.tensor([[[[3.0]], [[-4.0]]]])
    beta, gamma = g.beta_reparam(g.beta), g.gamma_reparam(g.gamma)
    expected = x[0, :, 0, 0] / (beta + gamma @ x[0, :, 0, 0].abs())
    assert torch.allclose(g(x)[0, :, 0, 0], expected, atol=1e-6)


def test_fixed_point_gdn_variant_round_trips():
    """gdn="fixed" puts the hardware GDN (bit-exact integer normalisation in eval mode) in
    every GDN slot; the entropy-coded path must still reproduce forward's latents."""
    from licfpga.model.fixed_gdn import FixedPointGDN

    model = build_model("mean-scale", N=16, M=24, gdn="fixed").eval()
    assert sum(isinstance(m, FixedPointGDN) for m in model.modules()) == 6
    model.update(force=True)
    _assert_round_trip(model, torch.rand(1, 3, 64, 64))
