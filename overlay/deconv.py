"""Sub-pixel (polyphase) decomposition of transposed convolutions for the hardware flow.

Why
---
CompressAI's synthesis transform upsamples with ``nn.ConvTranspose2d(k=5, stride=2,
padding=2, output_padding=1)`` (:func:`licfpga.model.layers.deconv`). FINN's
``InferPixelPaddingDeconv`` lowers a transposed convolution to zero insertion + padding +
an ordinary convolution, but it pads the dilated input by ``(k-1) - pads[0]`` on all four
sides: ``output_padding`` is ignored and the padding is symmetric, so it gets CompressAI's
layer wrong. This module instead rewrites every stride-``s`` transposed convolution as ONE
stride-1 convolution whose ``s*s`` groups of output channels are the ``s*s`` output phases,
followed by a depth-to-space (``nn.PixelShuffle(s)``). The rewrite is exact (the same
products are summed; only the summation order can differ), including ``output_padding``.

The math (one axis; both axes are identical and independent)
------------------------------------------------------------
A transposed convolution scatters input ``x[i]`` through tap ``w[t]`` to output

    o = i*s - p + t,        0 <= t < k,      L_out = (L-1)*s - 2p + k + op.

Split the output index into a phase ``r`` and a coarse position ``q``: ``o = s*q + r`` with
``0 <= r < s``. Write ``r + p = s*a_r + b_r`` (``a_r = (r+p) // s``, ``b_r = (r+p) % s``).
Then ``i*s + t = s*(q + a_r) + b_r``, so only taps with ``t ≡ b_r (mod s)`` reach phase
``r``, and tap ``t = b_r + s*j`` reads input ``i = q + a_r - j``:

    y[s*q + r] = sum_j  x[q + a_r - j] * w[b_r + s*j],    j = 0 .. n_r - 1,
    n_r = #{t in [0, k) : t ≡ b_r (mod s)} = ceil((k - b_r) / s).

For every phase this is a stride-1 correlation of ``x`` over input offsets
``m = a_r - j`` relative to ``q``. Taking the union of offsets over all phases,
``m_min = min_r (a_r - n_r + 1)`` .. ``m_max = max_r a_r``, gives one kernel of size
``k' = m_max - m_min + 1`` in which phase ``r`` holds ``w[b_r + s*(a_r - m)]`` at offset
``m`` and zero where it has no tap (phases may have ``ceil(k/s)`` or ``floor(k/s)`` taps).
The correlation then needs ``-m_min`` zeros before the input and
``ceil(e/s) + k' - 1 + m_min`` after it (``e = k - s - 2p + op``, so that
``L_out = L*s + e``); a negative amount means cropping (only with large ``padding``).
The convolution yields ``ceil(L_out / s)`` positions per phase, i.e. after depth-to-space
``s*ceil(L_out/s)`` outputs, of which the last ``(-e) mod s`` are dropped. All of these
quantities are independent of the input size, so the padding and crop are constants.

``k' = ceil(k/s)`` when all phases start at the same offset (e.g. k=4, s=2, p=0); when
they are staggered it is one larger (k=4, s=2, p=1 gives k' = 3).

CompressAI's layer (k=5, s=2, p=2, op=1): phase 0 takes taps 0, 2, 4 at offsets +1, 0, -1;
phase 1 takes taps 1, 3 at offsets +1, 0; so ``k' = 3``, padding (1, 1, 1, 1), no crop:
a plain "same" 3x3 convolution with ``4*out`` channels, and the polyphase kernels are
3x3, 3x2, 2x3 and 2x2 (25 non-zero taps of the 36 in the stacked 3x3 kernel).

Output-channel order: ``conv channel = o*s*s + ry*s + rx`` (``"crd"``, what
``nn.PixelShuffle`` and ONNX ``DepthToSpace(mode="CRD")`` expect). ``order="dcr"`` gives
``(ry*s + rx)*out + o`` instead (ONNX ``DepthToSpace(mode="DCR")``); in a channels-last
stream that keeps the channel index innermost, which is the easier layout to shuffle in
hardware. Either order is only a permutation of the weight rows, fixed at compile time.

Why it beats zero insertion
---------------------------
Zero insertion (what ``InferPixelPaddingDeconv`` builds) upsamples the input to
``(L-1)*s + 1`` by inserting zeros, pads it, and runs a k x k stride-1 convolution over the
full ``H_out x W_out`` output: ``Cin*Cout*k^2*H_out*W_out`` MACs, of which only about
``1/s^2`` multiply a non-zero input. The sub-pixel form runs a k' x k' convolution over
``ceil(H_out/s) x ceil(W_out/s)`` positions for ``Cout*s^2`` channels:
``Cin*Cout*s^2*k'^2*ceil(H_out/s)*ceil(W_out/s) ~ Cin*Cout*k'^2*H_out*W_out`` MACs.
The ratio is ``k^2 / k'^2`` (at most ``s^2``): for CompressAI's layer ``25 / 9 = 2.78x``
fewer MACs (the remaining waste is the 11 zero taps of the stacked 3x3 kernel, 25/36 = 69 %
useful, vs. 25/100 = 25 % for zero insertion). The sliding window also runs over the H x W input
instead of the ~sH x sW zero-stuffed one, so the line buffers hold k' rows of W pixels
instead of k rows of s*W pixels, and the stream feeding the MVU is s^2 times shorter.
:func:`mac_counts` gives the exact numbers for a layer and input size.

What the hardware sees
----------------------
One ordinary convolution: a (possibly asymmetric, here symmetric) zero padding, a k' x k'
stride-1 sliding window over ``Cin`` channels, and a matrix-vector unit with
``MW = Cin*k'^2`` and ``MH = Cout*s^2`` -- in FINN terms FMPadding +
ConvolutionInputGenerator + MVAU, the same path as every other convolution in the codec.
It is followed by a pure data-movement depth-to-space (ONNX ``DepthToSpace``, exported from
``nn.PixelShuffle``): in NHWC with the DCR channel order it is the permutation
``[H, W, s, s, C] -> [H, s, W, s, C]`` (the innermost axis stays put), which needs a
buffer of about one output row band (``s*W*Cout*s`` elements) and no arithmetic. FINN has
generic transpose ("shuffle") HW layers rather than a dedicated DepthToSpace; how that node
is lowered is for the QONNX/FINN+ export to settle. A crop is only needed when
``(-e) mod s != 0`` (never for CompressAI's layers).

Everything that computes weights here is pure NumPy (``subpixel_weights``,
:func:`subpixel_conv_transpose2d_np`), so the integer golden model can reuse it; integer
arrays stay integer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "SubPixelGeometry",
    "subpixel_geometry",
    "subpixel_weights",
    "subpixel_conv_transpose2d_np",
    "conv_transpose_out_size",
    "mac_counts",
    "SubPixelConvTranspose2d",
    "decompose_synthesis",
]


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class SubPixelGeometry:
    """Index map of one axis (both axes share it: square kernel, equal strides).

    ``taps[r, u]`` is the transposed-conv tap feeding phase ``r`` at position ``u`` of the
    k'-wide stride-1 kernel, or -1 for a zero tap. Input offset of position ``u`` relative
    to the coarse output position is ``u - pad_before``.
    """

    kernel_size: int       # k of the transposed convolution
    stride: int            # s
    padding: int           # p
    output_padding: int    # op
    sub_kernel: int        # k'
    pad_before: int        # zeros before the input (negative: crop)
    pad_after: int         # zeros after the input (negative: crop)
    crop: int              # trailing outputs dropped after depth-to-space
    taps: np.ndarray       # int64 [s, k']

    def out_size(self, n: int) -> int:
        """Output length of the transposed convolution for input length ``n``."""
        return conv_transpose_out_size(n, self.kernel_size, self.stride, self.padding,
                                       self.output_padding)


def conv_transpose_out_size(n: int, k: int, stride: int, padding: int, output_padding: int) -> int:
    """``(n-1)*s - 2p + k + op``, PyTorch's ConvTranspose output length (dilation 1)."""
    return (n - 1) * stride - 2 * padding + k + output_padding


def _as_int(v, name: str) -> int:
    """An int, or a tuple/list of equal ints (PyTorch stores (h, w) pairs)."""
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"{name}={tuple(v)}: only equal height/width values are supported")
        v = v[0]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {v!r}")
    return int(v)


def _check(k: int, stride: int, padding: int, output_padding: int) -> None:
    if k < 1:
        raise ValueError(f"kernel_size must be >= 1, got {k}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if not 0 <= output_padding < stride:
        raise ValueError(
            f"output_padding={output_padding} unsupported: it must satisfy 0 <= output_padding "
            f"< stride={stride} (dilation is 1, so PyTorch requires the same)"
        )


def subpixel_geometry(kernel_size: int, stride: int, padding: int = 0,
                      output_padding: int = 0) -> SubPixelGeometry:
    """Phase/tap map, stride-1 kernel size, padding and crop for one axis (pure Python)."""
    k, s = _as_int(kernel_size, "kernel_size"), _as_int(stride, "stride")
    p, op = _as_int(padding, "padding"), _as_int(output_padding, "output_padding")
    _check(k, s, p, op)
    phases = []  # (a_r, b_r, n_r)
    for r in range(s):
        a, b = divmod(r + p, s)
        n = len(range(b, k, s))
        phases.append((a, b, n))
    used = [(a, n) for a, _, n in phases if n > 0]  # residue 0 always has tap 0, never empty
    m_min = min(a - n + 1 for a, n in used)
    m_max = max(a for a, _ in used)
    kk = m_max - m_min + 1
    taps = np.full((s, kk), -1, dtype=np.int64)
    for r, (a, b, n) in enumerate(phases):
        for j in range(n):
            taps[r, a - j - m_min] = b + s * j
    e = k - s - 2 * p + op                      # L_out = L*s + e
    q_extra = -((-e) // s)                      # ceil(e / s): conv positions = L + q_extra
    pad_before = -m_min
    pad_after = q_extra + kk - 1 - pad_before
    crop = (-e) % s
    return SubPixelGeometry(k, s, p, op, kk, pad_before, pad_after, crop, taps)


# ----------------------------------------------------------------------------- weights

def subpixel_weights(weight: np.ndarray, stride: int, padding: int = 0, output_padding: int = 0,
                     order: str = "crd"):
    """Equivalent stride-1 convolution of a transposed convolution (pure NumPy).

    Args:
        weight: ConvTranspose2d weight ``[in, out, k, k]`` (any numeric dtype; kept).
        stride, padding, output_padding: the transposed convolution's (ints, or equal pairs).
        order: ``"crd"`` (default): channel ``o*s*s + ry*s + rx`` for ``nn.PixelShuffle`` /
            ``DepthToSpace(mode="CRD")``; ``"dcr"``: ``(ry*s + rx)*out + o``.

    Returns:
        ``(conv_weight [out*s*s, in, k', k'], (top, bottom, left, right))``: a Conv2d
        (cross-correlation) weight and its zero padding (negative = crop). A Conv2d with
        this weight and padding followed by PixelShuffle(s) reproduces the transposed
        convolution; its output has ``crop = subpixel_geometry(...).crop`` extra trailing
        rows/columns to drop (0 for CompressAI's layers). A bias ``b[out]`` becomes
        ``np.repeat(b, s*s)`` (crd) or ``np.tile(b, s*s)`` (dcr).
    """
    w = np.asarray(weight)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"expected a square ConvTranspose2d weight [in, out, k, k], got {w.shape}")
    if order not in ("crd", "dcr"):
        raise ValueError(f"order must be 'crd' or 'dcr', got {order!r}")
    cin, cout, k, _ = w.shape
    g = subpixel_geometry(k, stride, padding, output_padding)
    s, kk = g.stride, g.sub_kernel
    ext = np.zeros((cin, cout, k + 1, k + 1), dtype=w.dtype)  # index k = the zero tap
    ext[:, :, :k, :k] = w
    t = np.where(g.taps < 0, k, g.taps)                            # [s, k']
    # cw[i, o, ry, rx, u, v] = w[i, o, t[ry, u], t[rx, v]]
    cw = ext[:, :, t[:, None, :, None], t[None, :, None, :]]
    if order == "crd":
        cw = cw.transpose(1, 2, 3, 0, 4, 5)                        # [o, ry, rx, i, u, v]
    else:
        cw = cw.transpose(2, 3, 1, 0, 4, 5)                        # [ry, rx, o, i, u, v]
    cw = np.ascontiguousarray(cw.reshape(cout * s * s, cin, kk, kk))
    pad = (g.pad_before, g.pad_after, g.pad_before, g.pad_after)
    return cw, pad


def depth_to_space_nhwc(x: np.ndarray, s: int, order: str = "dcr") -> np.ndarray:
    """Depth-to-space on channels-last data ``[..., H, W, s*s*C] -> [..., s*H, s*W, C]``.

    ``order="dcr"``: input channel ``(ry*s + rx)*C + c`` (ONNX ``DepthToSpace`` mode DCR,
    what :func:`subpixel_weights` ``order="dcr"`` produces and what the RTL kernel
    ``hls/depth_to_space/depth_to_space_axis.sv`` streams); ``"crd"``: ``c*s*s + ry*s + rx``
    (``nn.PixelShuffle``). The golden model of that kernel."""
    x = np.asarray(x)
    *lead, h, w, cs = x.shape
    if s < 1 or cs % (s * s):
        raise ValueError(f"{cs} channels are not a multiple of s*s = {s * s}")
    c = cs // (s * s)
    if order == "dcr":
        y = x.reshape(*lead, h, w, s, s, c)                      # ..., h, w, ry, rx, c
    elif order == "crd":
        y = np.moveaxis(x.reshape(*lead, h, w, c, s, s), -3, -1)  # ..., h, w, ry, rx, c
    else:
        raise ValueError(f"order must be 'crd' or 'dcr', got {order!r}")
    nl = len(lead)
    y = y.transpose(*range(nl), nl, nl + 2, nl + 1, nl + 3, nl + 4)  # ..., h, ry, w, rx, c
    return np.ascontiguousarray(y.reshape(*lead, h * s, w * s, c))


def _pad_or_crop(x: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) one axis."""
    n = x.shape[axis]
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(max(0, -before), n - max(0, -after))
    x = x[tuple(sl)]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (max(0, before), max(0, after))
    return np.pad(x, widths)


def subpixel_conv_transpose2d_np(x: np.ndarray, weight: np.ndarray, bias=None, stride: int = 1,
                                 padding: int = 0, output_padding: int = 0) -> np.ndarray:
    """NumPy transposed convolution via the sub-pixel path (reference for the golden model).

    ``x [N, in, H, W]``, ``weight [in, out, k, k]``. Integer inputs give exact integer
    results (int64 accumulation).
    """
    x = np.asarray(x)
    w = np.asarray(weight)
    cw, (top, bottom, left, right) = subpixel_weights(w, stride, padding, output_padding)
    g = subpixel_geometry(w.shape[2], stride, padding, output_padding)
    s, kk = g.stride, g.sub_kernel
    n, cin, h, wd = x.shape
    ho, wo = g.out_size(h), g.out_size(wd)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{wd} gives an empty output ({ho}x{wo})")
    acc = np.int64 if np.issubdtype(np.result_type(x, cw), np.integer) else np.result_type(x, cw)
    xp = _pad_or_crop(_pad_or_crop(x, top, bottom, 2), left, right, 3).astype(acc)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kk, kk), axis=(2, 3))  # n,c,H',W',u,v
    y = np.einsum("nchwuv,ocuv->nohw", win, cw.astype(acc), optimize=True)
    if bias is not None:
        y = y + np.repeat(np.asarray(bias).astype(acc), s * s)[None, :, None, None]
    y = np.moveaxis(depth_to_space_nhwc(np.moveaxis(y, 1, -1), s, order="crd"), -1, 1)
    return y[:, :, :ho, :wo]


# ----------------------------------------------------------------------------- cost

def mac_counts(in_ch: int, out_ch: int, k: int, stride: int, H: int, W: int,
               padding: int | None = None, output_padding: int | None = None) -> dict:
    """MACs of one transposed convolution on an ``H x W`` input, by implementation.

    ``padding``/``output_padding`` default to CompressAI's (``k // 2``, ``stride - 1``).
    Returns a dict with
      * ``zero_insertion``: k x k conv over the zero-stuffed input, ``Cin*Cout*k^2*Ho*Wo``;
      * ``subpixel``: the stacked k' x k' conv, ``Cin*Cout*s^2*k'^2*ceil(Ho/s)*ceil(Wo/s)``;
      * ``useful``: products of a real input with a real tap that land in the output;
      * ``ratio``: ``zero_insertion / subpixel``; ``subpixel_utilization``: useful/subpixel;
      * ``out_hw``, ``sub_kernel``.
    """
    p = k // 2 if padding is None else padding
    op = stride - 1 if output_padding is None else output_padding
    g = subpixel_geometry(k, stride, p, op)
    s, kk = g.stride, g.sub_kernel
    ho, wo = g.out_size(H), g.out_size(W)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {H}x{W} gives an empty output ({ho}x{wo})")

    def useful_1d(n: int, lo: int) -> int:
        return sum(1 for i in range(n) for t in range(k) if 0 <= i * s - p + t < lo)

    zero = in_ch * out_ch * k * k * ho * wo
    sub = in_ch * out_ch * s * s * kk * kk * (-(-ho // s)) * (-(-wo // s))
    useful = in_ch * out_ch * useful_1d(H, ho) * useful_1d(W, wo)
    return {
        "zero_insertion": zero, "subpixel": sub, "useful": useful,
        "ratio": zero / sub, "subpixel_utilization": useful / sub,
        "out_hw": (ho, wo), "sub_kernel": kk,
    }


# ----------------------------------------------------------------------------- torch

class SubPixelConvTranspose2d(nn.Module):
    """Drop-in replacement of a ConvTranspose2d: pad -> Conv2d(stride 1) -> PixelShuffle -> crop.

    ``conv`` holds ``out*s*s`` output channels (CRD order), ``pad`` is F.pad's
    ``(left, right, top, bottom)`` (negative = crop), ``crop`` the trailing rows/columns
    dropped after the shuffle (0 for CompressAI's layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, output_padding: int = 0, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        g = subpixel_geometry(kernel_size, stride, padding, output_padding)
        self.geometry = g
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = g.kernel_size, g.stride
        self.padding, self.output_padding = g.padding, g.output_padding
        self.pad = (g.pad_before, g.pad_after, g.pad_before, g.pad_after)
        self.crop = g.crop
        self.conv = nn.Conv2d(in_channels, out_channels * g.stride ** 2, g.sub_kernel, bias=bias,
                              device=device, dtype=dtype)
        self.shuffle = nn.PixelShuffle(g.stride)

    @classmethod
    def from_conv_transpose(cls, m: nn.ConvTranspose2d) -> "SubPixelConvTranspose2d":
        """Build the equivalent module from ``m`` (weights copied exactly, not tied)."""
        if not isinstance(m, nn.ConvTranspose2d):
            raise ValueError(f"expected nn.ConvTranspose2d, got {type(m).__name__}")
        if m.groups != 1:
            raise ValueError(f"groups={m.groups} unsupported (only groups=1)")
        if tuple(m.dilation) != (1, 1):
            raise ValueError(f"dilation={tuple(m.dilation)} unsupported (only dilation=1)")
        if m.padding_mode != "zeros":
            raise ValueError(f"padding_mode={m.padding_mode!r} unsupported (only 'zeros')")
        if isinstance(m.padding, str):
            raise ValueError(f"padding={m.padding!r} unsupported (integers only)")
        k = _as_int(m.kernel_size, "kernel_size")
        new = cls(m.in_channels, m.out_channels, k, _as_int(m.stride, "stride"),
                  _as_int(m.padding, "padding"), _as_int(m.output_padding, "output_padding"),
                  bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        new.load_conv_transpose(m.weight, m.bias)
        new.train(m.training)
        return new

    @torch.no_grad()
    def load_conv_transpose(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Set the conv from a ConvTranspose2d weight ``[in, out, k, k]`` (and bias)."""
        g = self.geometry
        # float64 holds every float16/bfloat16/float32 value exactly: the copy is exact.
        w = weight.detach().to("cpu", torch.float64).numpy()
        cw, _ = subpixel_weights(w, g.stride, g.padding, g.output_padding)
        self.conv.weight.copy_(torch.from_numpy(cw))
        if bias is not None:
            self.conv.bias.copy_(bias.detach().repeat_interleave(g.stride ** 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        ho, wo = g.out_size(x.shape[-2]), g.out_size(x.shape[-1])
        if ho <= 0 or wo <= 0:
            raise ValueError(f"input {tuple(x.shape[-2:])} gives an empty output ({ho}x{wo})")
        if any(self.pad):
            x = F.pad(x, self.pad)
        y = self.shuffle(self.conv(x))
        if self.crop:
            y = y[..., :ho, :wo]
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding} -> {self.geometry.sub_kernel}x"
                f"{self.geometry.sub_kernel} conv, pad={self.pad}, crop={self.crop}")


def decompose_synthesis(model: nn.Module) -> nn.Module:
    """Deep copy of ``model`` with every ``nn.ConvTranspose2d`` replaced by its sub-pixel form.

    Works on any module tree (``model.g_s``, ``model.h_s`` or a whole codec); the input is
    left untouched. Raises ValueError if any transposed convolution is unsupported.
    """
    if isinstance(model, nn.ConvTranspose2d):
        return SubPixelConvTranspose2d.from_conv_transpose(model)
    new = copy.deepcopy(model)
    targets = [(name, m) for name, m in new.named_modules(remove_duplicate=False)
               if isinstance(m, nn.ConvTranspose2d)]
    done: dict[int, SubPixelConvTranspose2d] = {}  # a shared layer stays shared
    for name, m in targets:
        if id(m) not in done:
            done[id(m)] = SubPixelConvTranspose2d.from_conv_transpose(m)
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, done[id(m)])
    return new
