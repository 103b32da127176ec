"""Image-quality and rate metrics for uint8 RGB images (``H x W x 3``, data range 255).

* :func:`psnr` -- PSNR in dB over all pixels and all three channels (``psnr-rgb`` in
  CompressAI's results files). Identical images give ``inf``.
* :func:`ms_ssim` -- MS-SSIM (Wang et al. 2003) computed by ``pytorch_msssim`` with its
  defaults (11x11 Gaussian window, sigma 1.5, five scales, the standard weights), the same
  call CompressAI's evaluation makes. Five scales need an image whose *short side is at
  least 161 px*; for smaller images this returns ``float('nan')`` -- never a silently
  different (fewer-scale) number. Use :func:`ms_ssim_supported` to check beforehand.
  Cost: it is by far the slowest metric (torch convolutions, ~0.4 s for a 768x512 image
  on one core). When another torch job shares the cores, oversubscription makes it ~7x
  slower (measured 3 s vs 0.4 s); callers may ``torch.set_num_threads(1)`` -- this module
  never changes process-wide torch settings itself.
* :func:`ms_ssim_db` -- ``-10 log10(1 - v)``, the usual way to plot MS-SSIM.
* :func:`bpp` -- bits per pixel of a file of ``num_bytes`` for an ``h x w`` image.
"""

from __future__ import annotations

import math

import numpy as np

#: pytorch_msssim asserts ``min(H, W) > (win_size - 1) * 2**4`` for its 5 scales.
MS_SSIM_WIN_SIZE = 11
MS_SSIM_MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 2 ** 4 + 1  # 161


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    for name, x in (("a", a), ("b", b)):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"{name} must be a uint8 H x W x 3 RGB array, got {x.dtype} {x.shape}")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse(a, b) -> float:
    """Mean squared error over all pixels and channels (uint8 H x W x 3 inputs)."""
    a, b = _check_pair(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a, b) -> float:
    """PSNR in dB with peak 255 over all pixels and channels; ``inf`` if ``a == b``."""
    m = mse(a, b)
    if m == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 ** 2 / m)


def ms_ssim_supported(h: int, w: int) -> bool:
    """True when an ``h x w`` image is large enough for 5-scale MS-SSIM (short side >= 161)."""
    return min(h, w) >= MS_SSIM_MIN_SIDE


def ms_ssim(a, b) -> float:
    """MS-SSIM in [0, 1] (data range 255) of two uint8 H x W x 3 images.

    Returns ``float('nan')`` when the short side is below 161 px (see module docstring).
    """
    a, b = _check_pair(a, b)
    if not ms_ssim_supported(a.shape[0], a.shape[1]):
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().unsqueeze(0)

    with torch.no_grad():
        v = _ms_ssim(to_tensor(a), to_tensor(b), data_range=255.0, size_average=True,
                     win_size=MS_SSIM_WIN_SIZE)
    return float(v)


def ms_ssim_db(v: float) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - v)``: ``inf`` for ``v == 1``, ``nan`` stays ``nan``."""
    v = float(v)
    if math.isnan(v):
        return math.nan
    if v >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - v)


def bpp(num_bytes: int, h: int, w: int) -> float:
    """Bits per pixel of ``num_bytes`` bytes for an ``h x w`` image."""
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h} x {w}")
    return float(num_bytes) * 8.0 / (h * w)
