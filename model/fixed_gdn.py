"""FixedPointGDN: CompressAI's GDN whose eval forward runs the hardware's integer math.

The module *is* a ``compressai.layers.GDN`` (same ``beta`` / ``gamma`` parameters and the
same non-negative re-parametrisers), so a trained GDN's state dict loads unchanged
(``strict=True``). In training mode, or with ``integer=False``, it is the float GDN.
In eval mode with ``integer=True`` it:

1. quantises the input to int8, ``q = clip(floor(x / s_in + 0.5), -128, 127)``;
2. quantises the parameters with :func:`licfpga.model.golden.gdn.quantize_gdn_params`;
3. runs the bit-exact golden :func:`licfpga.model.golden.gdn.gdn_int` (what
   ``hls/gdn/gdn_axis.sv`` computes), and returns ``s_out * y_int8`` as a float tensor,

so rate-distortion can be measured with the deployed GDN arithmetic. ``s_in`` / ``s_out``
are per-tensor scales: fixed values set with :meth:`set_scales` (from calibration), or,
when left ``None``, taken per call from the data (``max|x| / 127`` and
``max|float GDN(x_q)| / 127``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from compressai.layers import GDN

from .golden import gdn as golden


class FixedPointGDN(GDN):
    """GDN / IGDN (``simplified=True``: GDN1 / IGDN1) with an integer eval path."""

    def __init__(self, in_channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1, simplified: bool = False, integer: bool = True):
        super().__init__(in_channels, inverse=inverse, beta_min=beta_min, gamma_init=gamma_init)
        self.simplified = bool(simplified)
        self.integer = bool(integer)
        self.in_scale: float | None = None    # plain attributes: not in the state dict
        self.out_scale: float | None = None
        self._cache: tuple | None = None

    @property
    def variant(self) -> str:
        return "simplified" if self.simplified else "gdn"

    def set_scales(self, in_scale: float | None, out_scale: float | None) -> None:
        self.in_scale = None if in_scale is None else float(in_scale)
        self.out_scale = None if out_scale is None else float(out_scale)

    def float_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Effective (re-parameterised, non-negative) beta [C] and gamma [C, C] as float64."""
        with torch.no_grad():
            beta = self.beta_reparam(self.beta).detach().cpu().double().numpy()
            gamma = self.gamma_reparam(self.gamma).detach().cpu().double().numpy()
        return beta, gamma

    def int_params(self, in_scale: float, out_scale: float) -> golden.GDNIntParams:
        """Quantised parameters for the given scales (cached on parameters + scales)."""
        beta, gamma = self.float_params()
        key = (float(in_scale), float(out_scale),
               hashlib.sha1(beta.tobytes() + gamma.tobytes()).hexdigest())
        if self._cache is None or self._cache[0] != key:
            p = golden.quantize_gdn_params(beta, gamma, in_scale, out_scale, self.inverse, self.variant)
            self._cache = (key, p)
        return self._cache[1]

    def _float_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.simplified:
            return super().forward(x)
        c = x.size(1)
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = torch.nn.functional.conv2d(torch.abs(x), gamma, beta)
        return x * norm if self.inverse else x / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.integer:
            return self._float_forward(x)
        with torch.no_grad():
            s_in = self.in_scale or max(float(x.abs().max()) / 127.0, 1e-12)
            q = torch.clamp(torch.floor(x / s_in + 0.5), -128, 127)
            s_out = self.out_scale
            if s_out is None:
                s_out = max(float(self._float_forward(q * s_in).abs().max()) / 127.0, 1e-12)
            p = self.int_params(s_in, s_out)
            qn = q.detach().cpu().numpy().astype(np.int8)
            y = np.stack([golden.gdn_int(qn[n], p) for n in range(qn.shape[0])])
            return torch.from_numpy(y.astype(np.float32) * np.float32(s_out)).to(x.device, x.dtype)
