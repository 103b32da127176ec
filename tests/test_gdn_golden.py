"""Integer golden GDN (model/golden/gdn.py) vs CompressAI's float GDN, and its range checks.

Tolerance and why: the only intended loss of the integer path is the int8 output
rounding (<= 0.5 LSB of the output scale). On top of it come gamma/beta quantisation
(u16 gamma per row at the largest exponent that fits: relative error of the normaliser
~1e-4) and the LUT + one Newton step (relative error < 2**-11 by the exhaustive test
below): at |y| <= 127 LSB that is < 0.1 LSB. So for every unsaturated element
|y_int - y_float / s_out| <= 0.5 + 0.1 LSB, i.e. within 1 LSB for 100 % of elements, and
>= 99 % of the elements equal the ideal int8 rounding of the float output (a flip needs
the float value within ~0.06 LSB of a rounding boundary). The input is exactly int8 * s_in,
so input quantisation is not part of the comparison.
"""

import numpy as np
import pytest
import torch
from compressai.layers import GDN, GDN1

from licfpga.model.fixed_gdn import FixedPointGDN
from licfpga.model.golden import gdn as G

CASES = [("gdn", False), ("gdn", True), ("simplified", False), ("simplified", True)]


def _random_layer(c: int, inverse: bool, variant: str, seed: int):
    """A CompressAI layer with random valid (trained-looking) parameters."""
    rng = np.random.default_rng(seed)
    gamma = np.abs(rng.normal(0, 0.02, (c, c))) * (rng.random((c, c)) < 0.8)
    gamma += np.diag(rng.uniform(0.02, 0.8, c))
    beta = rng.uniform(0.05, 2.0, c)
    layer = (GDN if variant == "gdn" else GDN1)(c, inverse=inverse).double()
    with torch.no_grad():
        layer.beta.copy_(layer.beta_reparam.init(torch.tensor(beta)))
        layer.gamma.copy_(layer.gamma_reparam.init(torch.tensor(gamma)))
        b = layer.beta_reparam(layer.beta).double().numpy()
        g = layer.gamma_reparam(layer.gamma).double().numpy()
    return layer, b, g, rng


def _scales(rng, x_int, b, g, inverse, variant):
    s_in = rng.uniform(1.0, 8.0) / 127
    yf = G.gdn_float(x_int * s_in, b, g, inverse, variant)
    s_out = np.percentile(np.abs(yf), 99.5) / 127        # ~0.5 % of outputs saturate
    return s_in, s_out


@pytest.mark.parametrize("variant,inverse", CASES)
def test_core_exhaustive(variant, inverse):
    """All 2**18 mantissas: every width assert holds and the relative error is < 2**-11."""
    lo = 1 << 16 if variant == "gdn" else 1 << 17
    mh = np.arange(lo, 1 << 18)
    f = G.core(mh, variant, inverse)
    m = mh / 2.0**18
    if variant == "gdn":
        ref = (np.sqrt(m) if inverse else 1 / np.sqrt(m)) * 2**16
    else:
        ref = m * 2**18 if inverse else 1 / m * 2**16
    assert f.max() < 1 << G.F_BITS
    assert np.abs(f / ref - 1).max() < 2**-11


@pytest.mark.parametrize("variant,inverse", CASES)
def test_golden_vs_compressai_float(variant, inverse):
    c = 24
    layer, b, g, rng = _random_layer(c, inverse, variant, seed=7)
    x = np.concatenate([rng.integers(-128, 128, (c, 40, 40)),
                        rng.integers(-6, 7, (c, 10, 40))], axis=1).astype(np.int8)  # + small inputs
    s_in, s_out = _scales(rng, x, b, g, inverse, variant)
    p = G.quantize_gdn_params(b, g, s_in, s_out, inverse, variant)

    # the NumPy float reference is CompressAI's layer
    xt = torch.from_numpy(x.astype(np.float64) * s_in)[None]
    y_torch = layer(xt)[0].detach().numpy()
    np.testing.assert_allclose(G.gdn_float(x * s_in, b, g, inverse, variant), y_torch, rtol=1e-10, atol=1e-12)

    y = G.gdn_int(x, p).astype(np.int64)
    r = y_torch / s_out                                    # float output in LSB
    unsat = np.abs(r) < 127.0
    err = np.abs(y - r)[unsat]
    ideal = np.clip(np.floor(r + 0.5), -128, 127)
    exact = (y == ideal).mean()
    assert err.max() <= 0.6, f"max error {err.max():.3f} LSB"
    assert np.all(np.abs(y - ideal) <= 1)
    assert exact >= 0.99, f"only {exact:.4f} equal to the ideal rounding"
    assert np.all(y[r >= 127.5] == 127) and np.all(y[r <= -128.5] == -128)   # saturation


@pytest.mark.parametrize("variant,inverse", CASES)
def test_extreme_inputs(variant, inverse):
    c = 16
    _, b, g, rng = _random_layer(c, inverse, variant, seed=3)
    for out_div in (1.0, 64.0):                             # normal / heavily saturating output
        x0 = rng.integers(-128, 128, (200, c))
        s_in, s_out = _scales(rng, x0, b, g, inverse, variant)
        p = G.quantize_gdn_params(b, g, s_in, s_out / out_div, inverse, variant)
        x = np.stack([np.full(c, -128), np.full(c, 127), np.zeros(c, int), np.full(c, 1),
                      np.full(c, -1), np.where(np.arange(c) % 2, 127, -128)]).astype(np.int8)
        y = G.gdn_int(x, p)
        assert y.dtype == np.int8
        assert np.all(y[2] == 0)                            # x = 0 -> y = 0
        assert np.all(np.sign(y.astype(int)) * np.sign(x.astype(int)) >= 0)   # sign preserved
        r = G.gdn_float(x * s_in, b, g, inverse, variant) / (s_out / out_div)
        assert np.all(np.abs(y - np.clip(r, -128, 127)) <= 1)
        if out_div > 1:
            assert np.mean(np.abs(y[[0, 1, 5]].astype(int)) >= 127) > 0.9


@pytest.mark.parametrize("variant,inverse", CASES)
def test_static_range_check(variant, inverse):
    c = 32
    _, b, g, rng = _random_layer(c, inverse, variant, seed=11)
    x0 = rng.integers(-128, 128, (100, c))
    s_in, s_out = _scales(rng, x0, b, g, inverse, variant)
    p = G.quantize_gdn_params(b, g, s_in, s_out, inverse, variant)
    wc = G.worst_case_acc(p)
    assert wc.max() <= 2**p.acc_bits - 1                     # u32 accumulator never overflows
    assert p.gamma.max() <= 2**p.gamma_bits - 1 and p.beta.min() >= 1
    # the worst case is attained by x = -128 everywhere
    acc = G.accumulate(np.full((1, c), -128), p)[0]
    assert np.array_equal(acc, wc)
    # G and B follow the spec formula, and each row uses the largest exponent that fits:
    # one step up, something would overflow (or the shift base would leave s8)
    pw = 2 if variant == "gdn" else 1
    amax = G.activity_max(variant)
    rho = s_in / s_out if inverse else s_out / s_in
    g_base, b_base = g * (s_in * rho) ** pw, b * rho ** pw
    for i in range(c):
        t = int(p.exponent[i])
        assert np.array_equal(p.gamma[i], np.floor(g_base[i] * 2.0 ** (pw * t) + 0.5))
        assert p.beta[i] == max(1, np.floor(b_base[i] * 2.0 ** (pw * t) + 0.5))
        gi = np.floor(g_base[i] * 2.0 ** (pw * (t + 1)) + 0.5)
        bi = max(1, np.floor(b_base[i] * 2.0 ** (pw * (t + 1)) + 0.5))
        sb = G._sb_of_t(t + 1, variant, inverse, p.acc_bits)
        assert (gi.max() > 2**p.gamma_bits - 1 or bi + amax * gi.sum() > 2**p.acc_bits - 1
                or not G.SB_MIN <= sb <= G.SB_MAX)
    # the check must fail when any width can overflow
    bad = G.GDNIntParams(**{**p.__dict__, "gamma": p.gamma.copy(), "beta": p.beta.copy()})
    bad.gamma[0, :] = 2**p.gamma_bits - 1                   # B + a_max * row sum > 2**32 - 1
    bad.beta[0] = max(1, 2**p.acc_bits - amax * int(bad.gamma[0].sum()))
    with pytest.raises(ValueError, match="overflows"):
        G.check_ranges(bad)
    bad = G.GDNIntParams(**{**p.__dict__, "gamma": p.gamma + (1 << p.gamma_bits) * np.eye(c, dtype=np.int64)})
    with pytest.raises(ValueError, match="gamma outside"):
        G.check_ranges(bad)
    bad = G.GDNIntParams(**{**p.__dict__, "shift": p.shift + 200})
    with pytest.raises(ValueError, match="shift"):
        G.check_ranges(bad)


def test_quantize_rejects_invalid():
    with pytest.raises(ValueError):
        G.quantize_gdn_params(np.ones(4), -np.eye(4), 0.1, 0.1, False)
    with pytest.raises(ValueError):
        G.quantize_gdn_params(np.ones(4), np.eye(3), 0.1, 0.1, False)
    with pytest.raises(ValueError):
        G.quantize_gdn_params(np.ones(4), np.eye(4), 0.0, 0.1, False)


def test_requantize_clamp_is_lossless():
    """Clamping the shift to [0, 27] equals the exact rounding for every reachable p."""
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, 20000)
    f = rng.integers(1 << 15, (1 << 17) + 1, 20000)
    f[:2000] = rng.integers(1 << 16, 1 << 18, 2000)           # simplified IGDN range of f
    q[:100] = -128
    for sh in range(-12, 45):
        y = G.requantize(q, f, np.full(q.shape, sh))
        p = [int(a) * int(b) for a, b in zip(q, f)]
        exact = [(v << -sh) if sh <= 0 else (v + (1 << (sh - 1))) >> sh for v in p]
        assert np.array_equal(y, np.clip(exact, -128, 127)), sh


def test_json_roundtrip_and_memh(tmp_path):
    c, pe = 12, 4
    _, b, g, rng = _random_layer(c, False, "gdn", seed=5)
    p = G.quantize_gdn_params(b, g, 0.03, 0.02, False)
    q = G.GDNIntParams.from_json(p.dumps())
    for k in ("gamma", "beta", "shift", "lut"):
        assert np.array_equal(getattr(p, k), getattr(q, k))
    x = rng.integers(-128, 128, (50, c)).astype(np.int8)
    assert np.array_equal(G.gdn_int(x, p), G.gdn_int(x, q))
    files = G.write_memh(p, tmp_path, pe)
    words = (tmp_path / "gamma.mem").read_text().split()
    assert len(words) == c * c // pe
    w = int(words[1 * c + 5], 16)                             # group 1, input channel 5
    assert [(w >> (16 * lane)) & 0xFFFF for lane in range(pe)] == list(p.gamma[pe:2 * pe, 5])
    assert len((tmp_path / "beta.mem").read_text().split()) == c
    assert len((tmp_path / "lut.mem").read_text().split()) == 64
    assert set(files) == {"GAMMA_FILE", "BETA_FILE", "SHIFT_FILE", "LUT_FILE"}


def test_golden_has_no_torch_import():
    import subprocess
    import sys

    code = "import sys, licfpga.model.golden.gdn; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("simplified", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
def test_fixed_point_module(inverse, simplified):
    c = 8
    variant = "simplified" if simplified else "gdn"
    ref, b, g, rng = _random_layer(c, inverse, variant, seed=21)
    m = FixedPointGDN(c, inverse=inverse, simplified=simplified).double()   # float64 like ref: exact copy
    m.load_state_dict(ref.state_dict(), strict=True)          # same names, same reparametrisers
    x = torch.randn(2, c, 12, 10, dtype=torch.float64) * 2
    with torch.no_grad():
        yf = ref(x)
        m.train()
        assert torch.allclose(m(x), yf)                       # training: float forward
        m.eval()
        m.integer = False
        assert torch.allclose(m(x), yf)
        m.integer = True
        yi = m(x)                                             # integer golden path
        s_in = float(x.abs().max()) / 127
        q = torch.clamp(torch.floor(x / s_in + 0.5), -128, 127)
        yq = ref(q * s_in)
        s_out = float(yq.abs().max()) / 127
        assert torch.all((yi - yq).abs() <= 0.6 * s_out)      # <= 0.6 LSB vs float on the int8 input
        assert torch.all((yi / s_out - torch.round(yi / s_out)).abs() < 1e-3)  # int8 grid
        # fixed scales (calibrated) are used as given and give the same int params as golden
        m.set_scales(s_in, s_out)
        assert torch.allclose(m(x), yi)
        # the integer parameters it runs on, checked against the spec formula applied to the
        # *reference* CompressAI layer's float beta/gamma (not through quantize_gdn_params):
        # G = rnd(gamma * (s_in*rho)**p * 2**(p*t)), B = max(1, rnd(beta * rho**p * 2**(p*t))),
        # rnd = floor(v + 0.5), with the per-row exponent t the parameters carry; i.e. each
        # dequantised G, B within half an LSB of its row's scale of the float value
        p = m.int_params(s_in, s_out)
        assert (p.inverse, p.variant, p.in_scale, p.out_scale) == (inverse, variant, s_in, s_out)
        assert (p.gamma_bits, p.acc_bits) == (16, 32)             # the kernel's widths
        pw = 1 if simplified else 2
        rho = s_in / s_out if inverse else s_out / s_in
        row = 2.0 ** (pw * p.exponent.astype(float))
        np.testing.assert_array_equal(p.gamma, np.floor(g * ((s_in * rho) ** pw * row)[:, None] + 0.5))
        np.testing.assert_array_equal(p.beta, np.maximum(1, np.floor(b * rho ** pw * row + 0.5)))
        assert np.array_equal(p.lut, G.core_lut(variant))
