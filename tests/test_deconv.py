"""Sub-pixel decomposition (overlay/deconv.py) vs PyTorch's ConvTranspose2d.

Two kinds of comparison:

* float32, random normal weights/inputs: max |y_subpixel - y_torch| <= 1e-5 * max |y_torch|.
  Both sides multiply the same (input, tap) pairs -- the sub-pixel conv only adds products
  with exact zeros -- so the only difference is the order of the float32 additions. With at
  most Cin*k^2 = 300 terms per output the rounding difference is a few ulp of the partial
  sums (measured <= 4e-7 relative), far below 1e-5; an index mistake gives O(1) errors.
* float64 with small integer inputs, weights and biases (|v| <= 8): every product and
  partial sum is an integer < 2**53, so both computations are exact and must be EQUAL bit
  for bit. This proves the tap/phase/padding/crop mapping, independently of rounding.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn

from licfpga.model.layers import deconv
from licfpga.overlay.deconv import (
    SubPixelConvTranspose2d,
    decompose_synthesis,
    mac_counts,
    subpixel_conv_transpose2d_np,
    subpixel_geometry,
    subpixel_weights,
)

SIZES = [(5, 7), (4, 2)]  # odd and even sizes (1x1 is covered by the CompressAI tests)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _int_layer(cin, cout, k, s, p, op, seed=0) -> nn.ConvTranspose2d:
    g = torch.Generator().manual_seed(seed)
    m = nn.ConvTranspose2d(cin, cout, k, s, p, op).double()
    with torch.no_grad():
        m.weight.copy_(torch.randint(-8, 9, m.weight.shape, generator=g))
        m.bias.copy_(torch.randint(-8, 9, m.bias.shape, generator=g))
    return m


def _check_float32(m: nn.ConvTranspose2d, h: int, w: int) -> None:
    x = torch.randn(2, m.in_channels, h, w)
    sp = SubPixelConvTranspose2d.from_conv_transpose(m)
    with torch.no_grad():
        ref, y = m(x), sp(x)
    assert y.shape == ref.shape
    assert _rel_err(y, ref) <= 1e-5


def _check_exact(m: nn.ConvTranspose2d, h: int, w: int) -> None:
    x = torch.randint(-8, 9, (2, m.in_channels, h, w)).double()
    sp = SubPixelConvTranspose2d.from_conv_transpose(m)
    with torch.no_grad():
        ref, y = m(x), sp(x)
    assert y.shape == ref.shape and torch.equal(y, ref)
    # the NumPy path (what the integer golden model uses) on int64, also exact
    yn = subpixel_conv_transpose2d_np(
        x.numpy().astype(np.int64), m.weight.detach().numpy().astype(np.int64),
        m.bias.detach().numpy().astype(np.int64), m.stride[0], m.padding[0], m.output_padding[0])
    assert yn.dtype == np.int64 and np.array_equal(yn, ref.numpy())


# ------------------------------------------------------------------ CompressAI's layer

def test_compressai_layer_geometry():
    g = subpixel_geometry(5, 2, 2, 1)
    # phase 0 <- taps 4, 2, 0 at input offsets -1, 0, +1; phase 1 <- taps 3, 1 at 0, +1
    assert g.sub_kernel == 3 and (g.pad_before, g.pad_after, g.crop) == (1, 1, 0)
    assert g.taps.tolist() == [[4, 2, 0], [-1, 3, 1]]
    cw, pad = subpixel_weights(np.zeros((12, 8, 5, 5), np.float32), 2, 2, 1)
    assert cw.shape == (8 * 4, 12, 3, 3) and pad == (1, 1, 1, 1)
    assert int((subpixel_weights(np.ones((1, 1, 5, 5)), 2, 2, 1)[0] != 0).sum()) == 25


@pytest.mark.parametrize("hw", [(8, 8), (9, 11), (1, 1)])
def test_compressai_layer_float32(hw):
    _check_float32(deconv(12, 8), *hw)


@pytest.mark.parametrize("hw", [(8, 8), (9, 11), (1, 1)])
def test_compressai_layer_exact(hw):
    m = deconv(12, 8).double()
    ref = _int_layer(12, 8, 5, 2, 2, 1)
    m.load_state_dict(ref.state_dict())
    _check_exact(m, *hw)


# ------------------------------------------------------------------ sweep

SWEEP = [(k, s) for k, s in itertools.product([3, 4, 5], [1, 2, 3])] + [(3, 4), (5, 4), (2, 3)]


@pytest.mark.parametrize("k,s", SWEEP)
def test_sweep(k, s):
    n = 0
    for p, op in itertools.product(range(k + 1), range(s)):
        for h, w in SIZES:
            if (min(h, w) - 1) * s - 2 * p + k + op <= 0:
                continue  # PyTorch refuses an empty output
            _check_exact(_int_layer(3, 2, k, s, p, op, seed=n), h, w)
            if (h, w) == SIZES[0]:  # float32 once per configuration (the index map is size-free)
                _check_float32(nn.ConvTranspose2d(3, 2, k, s, p, op), h, w)
            n += 1
    assert n > 0


def test_no_bias_and_float64_random():
    m = nn.ConvTranspose2d(4, 5, 5, 2, 2, 1, bias=False).double()
    sp = SubPixelConvTranspose2d.from_conv_transpose(m)
    assert sp.conv.bias is None
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        assert _rel_err(sp(x), m(x)) < 1e-13


def test_dcr_order_is_a_row_permutation():
    w = np.random.default_rng(0).integers(-8, 9, (3, 2, 5, 5))
    crd, pad = subpixel_weights(w, 2, 2, 1)
    dcr, pad2 = subpixel_weights(w, 2, 2, 1, order="dcr")
    assert pad == pad2 and crd.dtype == w.dtype  # integer weights stay integer
    s2, cout = 4, 2
    perm = [o * s2 + ph for ph in range(s2) for o in range(cout)]  # dcr row -> crd row
    assert np.array_equal(dcr, crd[perm])


# ------------------------------------------------------------------ whole models

def test_decompose_synthesis_mean_scale():
    from licfpga.model.zoo import build_model

    model = build_model("mean-scale", N=16, M=24).eval()
    g_s = decompose_synthesis(model.g_s)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g_s.modules())
    assert sum(isinstance(m, SubPixelConvTranspose2d) for m in g_s.modules()) == 4
    assert any(isinstance(m, nn.ConvTranspose2d) for m in model.g_s.modules())  # original kept
    y = torch.randn(1, 24, 5, 6)
    with torch.no_grad():
        ref, out = model.g_s(y), g_s(y)
    assert out.shape == ref.shape == (1, 3, 80, 96)
    assert _rel_err(out, ref) <= 1e-5
    # float64: only summation order differs, now at ~1e-16
    g64, s64 = model.g_s.double(), g_s.double()
    with torch.no_grad():
        assert _rel_err(s64(y.double()), g64(y.double())) < 1e-12

    full = decompose_synthesis(model.float())  # whole codec: h_s is converted too
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in full.modules())
    z = torch.randn(1, 16, 3, 4)
    with torch.no_grad():
        assert _rel_err(full.h_s(z), model.h_s(z)) <= 1e-5


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs,msg", [
    (dict(groups=2), "groups"),
    (dict(dilation=2), "dilation"),
])
def test_unsupported_modules(kwargs, msg):
    m = nn.ConvTranspose2d(4, 4, 5, 2, 2, 1, **kwargs)
    with pytest.raises(ValueError, match=msg):
        SubPixelConvTranspose2d.from_conv_transpose(m)
    with pytest.raises(ValueError, match=msg):
        decompose_synthesis(nn.Sequential(nn.ReLU(), m))


def test_unsupported_parameters():
    w = np.zeros((2, 2, 5, 5))
    for op in (2, 3):
        with pytest.raises(ValueError, match="output_padding"):
            subpixel_weights(w, 2, 2, op)
    with pytest.raises(ValueError, match="output_padding"):
        SubPixelConvTranspose2d.from_conv_transpose(_op_too_large())
    with pytest.raises(ValueError, match="square"):
        subpixel_weights(np.zeros((2, 2, 5, 3)), 2, 2, 1)
    with pytest.raises(ValueError, match="equal"):
        SubPixelConvTranspose2d.from_conv_transpose(nn.ConvTranspose2d(2, 2, 5, (2, 1), 2))
    with pytest.raises(ValueError, match="stride"):
        subpixel_weights(w, 0, 0, 0)
    with pytest.raises(ValueError, match="padding"):
        subpixel_weights(w, 2, -1, 0)
    with pytest.raises(ValueError, match="empty output"):
        SubPixelConvTranspose2d(2, 2, 3, 1, 2)(torch.zeros(1, 2, 1, 1))


def _op_too_large() -> nn.ConvTranspose2d:
    """A module PyTorch constructs but cannot run: output_padding == stride."""
    m = nn.ConvTranspose2d(2, 2, 5, 2, 2)
    m.output_padding = (2, 2)
    return m


# ------------------------------------------------------------------ cost model

def test_mac_counts():
    c = mac_counts(192, 192, 5, 2, 16, 16)  # CompressAI's layer
    assert c["out_hw"] == (32, 32) and c["sub_kernel"] == 3
    assert c["zero_insertion"] == 192 * 192 * 25 * 32 * 32
    assert c["subpixel"] == 192 * 192 * 4 * 9 * 16 * 16
    assert c["ratio"] == pytest.approx(25 / 9)
    assert c["useful"] == 192 * 192 * 77 * 77  # 80 (input, tap) pairs per axis, 3 fall outside
    # k=4, s=2: with p=0 both phases use offsets {-1, 0} -> k'=2, ratio s^2 = 4; with p=1
    # (DCGAN style) the phases are offset by one -> stacked k'=3, ratio only 16/9
    def ratio(k, s, p):
        return mac_counts(8, 8, k, s, 10, 10, padding=p, output_padding=0)["ratio"]

    assert ratio(4, 2, 0) == pytest.approx(4.0)
    assert ratio(4, 2, 1) == pytest.approx(16 / 9)
    assert ratio(3, 1, 1) == pytest.approx(1.0)
