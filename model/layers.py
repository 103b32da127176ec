"""Small layers shared by the model zoo.

GDN variants are chosen by name so that one width/variant knob reaches every model:

* ``"gdn"``         -- standard GDN / IGDN (Ballé et al. 2016), CompressAI's ``GDN``.
* ``"simplified"``  -- simplified GDN (Johnston et al. 2019): |x| instead of x², no square
                      root, CompressAI's ``GDN1``. Cheaper in hardware: no multiplier for the
                      square and no (r)sqrt unit.
* ``"fixed"``       -- hardware GDN: float parameters as CompressAI's GDN for training, and in
                      eval mode the bit-exact 32-bit fixed-point normalisation of the RTL
                      kernel (``licfpga.model.fixed_gdn``, golden ``licfpga.model.golden.gdn``,
                      kernel ``hls/gdn/gdn_axis.sv``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.layers import GDN, GDN1

GDN_VARIANTS = ("gdn", "simplified", "fixed")


def make_gdn(channels: int, variant: str = "gdn", inverse: bool = False) -> nn.Module:
    """Return a GDN (or IGDN if ``inverse``) layer of the named variant."""
    if variant == "gdn":
        return GDN(channels, inverse=inverse)
    if variant == "simplified":
        return GDN1(channels, inverse=inverse)
    if variant == "fixed":
        from .fixed_gdn import FixedPointGDN

        return FixedPointGDN(channels, inverse=inverse)
    raise ValueError(f"unknown GDN variant {variant!r}; choose one of {GDN_VARIANTS}")


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Same-padded convolution (CompressAI's layout, so state dicts stay compatible)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution with CompressAI's padding (k=5, s=2, p=2, output_padding=1)."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel_size, stride=stride,
        output_padding=stride - 1, padding=kernel_size // 2,
    )


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window`` x ``window`` windows.

    The input is padded up to a multiple of the window and cropped back, so any
    feature-map size works (latents of odd-sized images are not multiples of 8).
    """

    def __init__(self, channels: int, heads: int = 4, window: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.window, self.heads = window, heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        # learned relative position bias, one table per head (Swin-style)
        self.rel_bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window
        ph, pw = (-h) % ws, (-w) % ws
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        hp, wp = h + ph, w + pw
        q, k, v = self.qkv(xp).chunk(3, dim=1)

        def windows(t: torch.Tensor) -> torch.Tensor:  # -> (b*nw, heads, ws*ws, c/heads)
            t = t.reshape(b, self.heads, c // self.heads, hp // ws, ws, wp // ws, ws)
            return t.permute(0, 3, 5, 1, 4, 6, 2).reshape(-1, self.heads, ws * ws, c // self.heads)

        bias = self.rel_bias[:, self.rel_index]  # heads, ws², ws²
        out = F.scaled_dot_product_attention(windows(q), windows(k), windows(v), attn_mask=bias)
        out = out.reshape(b, hp // ws, wp // ws, self.heads, ws, ws, c // self.heads)
        out = out.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)
        return self.proj(out)[:, :, :h, :w]


class WindowAttentionBlock(nn.Module):
    """Window-based attention module (Zou et al. 2022): a residual trunk gated by a
    window-attention branch, ``x + trunk(x) * sigmoid(attn(x))``."""

    def __init__(self, channels: int, heads: int = 4, window: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 1), nn.GELU(),
            nn.Conv2d(channels // 2, channels // 2, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels // 2, channels, 1),
        )
        self.attn = WindowAttention(channels, heads, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.trunk(x) * torch.sigmoid(self.attn(x))
