"""The LIC model zoo: one class per paper, every width a constructor argument.

All classes subclass CompressAI's ``CompressionModel`` and use its entropy models
(``EntropyBottleneck``, ``GaussianConditional``) and rANS coder. Where CompressAI already
implements a paper, our class inherits its ``forward``/``compress``/``decompress`` and only
rebuilds the transforms so that the GDN variant is a knob (module names are kept, so a
``gdn="gdn"`` model loads CompressAI state dicts and vice versa).

``compress`` returns ``{"strings": [[bytes]*B]*G, "shape": ...}``: G payload groups,
each holding one byte string per batch item; the file container stores the groups.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.models import FactorizedPrior as _CaiFactorizedPrior
from compressai.models import MeanScaleHyperprior as _CaiMeanScaleHyperprior
from compressai.models import ScaleHyperprior as _CaiScaleHyperprior

from .geometry import STRIDE
from .layers import WindowAttentionBlock, conv, deconv, make_gdn


def analysis(N: int, M: int, gdn: str) -> nn.Sequential:
    """g_a: four 5x5 stride-2 convolutions with GDN between them (x16 downsampling)."""
    return nn.Sequential(
        conv(3, N), make_gdn(N, gdn), conv(N, N), make_gdn(N, gdn),
        conv(N, N), make_gdn(N, gdn), conv(N, M),
    )


def synthesis(N: int, M: int, gdn: str) -> nn.Sequential:
    """g_s: four 5x5 stride-2 transposed convolutions with IGDN between them."""
    return nn.Sequential(
        deconv(M, N), make_gdn(N, gdn, inverse=True), deconv(N, N), make_gdn(N, gdn, inverse=True),
        deconv(N, N), make_gdn(N, gdn, inverse=True), deconv(N, 3),
    )


class FactorizedPrior(_CaiFactorizedPrior):
    """Ballé et al. 2016/2018, fully factorized entropy model."""

    def __init__(self, N: int = 64, M: int = 96, gdn: str = "gdn"):
        super().__init__(N, M)
        self.g_a, self.g_s = analysis(N, M, gdn), synthesis(N, M, gdn)


class ScaleHyperprior(_CaiScaleHyperprior):
    """Ballé et al. 2018, zero-mean Gaussian conditioned on a scale hyperprior.

    ``Nh`` (default ``N``) is the width of the hyper-transforms and of z; a channel-pruned
    model (``licfpga.model.prune``) has a narrower ``N`` in g_a / g_s only."""

    def __init__(self, N: int = 64, M: int = 96, gdn: str = "gdn", Nh: int | None = None):
        super().__init__(N if Nh is None else Nh, M)
        self.g_a, self.g_s = analysis(N, M, gdn), synthesis(N, M, gdn)


class MeanScaleHyperprior(_CaiMeanScaleHyperprior):
    """Minnen et al. 2018 mean-scale hyperprior (no context model)."""

    def __init__(self, N: int = 64, M: int = 96, gdn: str = "gdn"):
        super().__init__(N, M)
        self.g_a, self.g_s = analysis(N, M, gdn), synthesis(N, M, gdn)


def _slice_transform(in_ch: int, out_ch: int) -> nn.Sequential:
    """Small 3x3 conv stack used for the per-slice mean/scale and LRP transforms."""
    mid = max(out_ch, (in_ch + out_ch) // 2)
    return nn.Sequential(
        nn.Conv2d(in_ch, mid, 3, padding=1), nn.GELU(),
        nn.Conv2d(mid, mid, 3, padding=1), nn.GELU(),
        nn.Conv2d(mid, out_ch, 3, padding=1),
    )


class ChannelwiseAutoregressive(CompressionModel):
    """Minnen & Singh 2020: channel-wise autoregressive entropy model with latent
    residual prediction (LRP). The latent is split into ``slices`` groups; each group's
    mean and scale are predicted from the hyperprior and the already decoded groups.
    Payload groups: one per slice, then the hyper-latent."""

    def __init__(self, N: int = 64, M: int = 96, slices: int = 4, gdn: str = "gdn"):
        super().__init__()
        if M % slices:
            raise ValueError(f"M ({M}) must be divisible by slices ({slices})")
        self.N, self.M, self.slices = N, M, slices
        self.g_a, self.g_s = analysis(N, M, gdn), synthesis(N, M, gdn)
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.GELU(), conv(N, N), nn.GELU(), conv(N, N),
        )
        self.h_mean_s = nn.Sequential(deconv(N, N), nn.GELU(), deconv(N, M), nn.GELU(), conv(M, M, 3, 1))
        self.h_scale_s = nn.Sequential(deconv(N, N), nn.GELU(), deconv(N, M), nn.GELU(), conv(M, M, 3, 1))
        s = M // slices
        self.cc_mean = nn.ModuleList(_slice_transform(M + i * s, s) for i in range(slices))
        self.cc_scale = nn.ModuleList(_slice_transform(M + i * s, s) for i in range(slices))
        self.lrp = nn.ModuleList(_slice_transform(M + (i + 1) * s, s) for i in range(slices))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

    @property
    def downsampling_factor(self) -> int:
        return STRIDE       # g_a x16, h_a x4

    def _slice_params(self, i: int, mean_support, scale_support, decoded):
        mean = self.cc_mean[i](torch.cat([mean_support, *decoded], 1))
        scale = self.cc_scale[i](torch.cat([scale_support, *decoded], 1))
        return mean, scale

    def _lrp(self, i: int, mean_support, decoded, y_hat_slice):
        lrp = self.lrp[i](torch.cat([mean_support, *decoded, y_hat_slice], 1))
        return y_hat_slice + 0.5 * torch.tanh(lrp)

    def _hyper(self, z_hat: torch.Tensor):
        return self.h_mean_s(z_hat), self.h_scale_s(z_hat)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        mean_support, scale_support = self._hyper(z_hat)
        decoded, likelihoods = [], []
        for i, y_slice in enumerate(y.chunk(self.slices, 1)):
            mean, scale = self._slice_params(i, mean_support, scale_support, decoded)
            _, lik = self.gaussian_conditional(y_slice, scale, mean)
            likelihoods.append(lik)
            y_hat_slice = self.gaussian_conditional.quantize(y_slice, "dequantize", mean)
            if self.training:  # straight-through gradient around the rounding (Minnen & Singh 2020)
                y_hat_slice = y_slice + (y_hat_slice - y_slice).detach()
            decoded.append(self._lrp(i, mean_support, decoded, y_hat_slice))
        x_hat = self.g_s(torch.cat(decoded, 1))
        return {"x_hat": x_hat, "likelihoods": {"y": torch.cat(likelihoods, 1), "z": z_likelihoods}}

    def compress(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        mean_support, scale_support = self._hyper(z_hat)
        decoded, strings = [], []
        for i, y_slice in enumerate(y.chunk(self.slices, 1)):
            mean, scale = self._slice_params(i, mean_support, scale_support, decoded)
            indexes = self.gaussian_conditional.build_indexes(scale)
            strings.append(self.gaussian_conditional.compress(y_slice, indexes, means=mean))
            y_hat_slice = self.gaussian_conditional.quantize(y_slice, "dequantize", mean)
            decoded.append(self._lrp(i, mean_support, decoded, y_hat_slice))
        return {"strings": [*strings, z_strings], "shape": z.size()[-2:]}

    def decompress(self, strings: list, shape) -> dict:
        if len(strings) != self.slices + 1:
            raise ValueError(f"expected {self.slices + 1} payload groups, got {len(strings)}")
        z_hat = self.entropy_bottleneck.decompress(strings[-1], shape)
        mean_support, scale_support = self._hyper(z_hat)
        decoded = []
        for i in range(self.slices):
            mean, scale = self._slice_params(i, mean_support, scale_support, decoded)
            indexes = self.gaussian_conditional.build_indexes(scale)
            y_hat_slice = self.gaussian_conditional.decompress(strings[i], indexes, means=mean)
            decoded.append(self._lrp(i, mean_support, decoded, y_hat_slice))
        x_hat = self.g_s(torch.cat(decoded, 1)).clamp_(0, 1)
        return {"x_hat": x_hat}


class WACNN(ChannelwiseAutoregressive):
    """Zou et al. 2022 window-attention CNN: GDN transforms with window-based attention
    modules after the second and last stages of g_a (mirrored in g_s), and the
    channel-wise autoregressive entropy model."""

    def __init__(self, N: int = 64, M: int = 96, slices: int = 4, gdn: str = "gdn",
                 heads: int = 4, window: int = 8):
        super().__init__(N, M, slices, gdn)
        self.g_a = nn.Sequential(
            conv(3, N), make_gdn(N, gdn), conv(N, N), make_gdn(N, gdn),
            WindowAttentionBlock(N, heads, window),
            conv(N, N), make_gdn(N, gdn), conv(N, M),
            WindowAttentionBlock(M, heads, window),
        )
        self.g_s = nn.Sequential(
            WindowAttentionBlock(M, heads, window),
            deconv(M, N), make_gdn(N, gdn, inverse=True), deconv(N, N), make_gdn(N, gdn, inverse=True),
            WindowAttentionBlock(N, heads, window),
            deconv(N, N), make_gdn(N, gdn, inverse=True), deconv(N, 3),
        )


MODELS: dict[str, type[CompressionModel]] = {
    "factorized": FactorizedPrior,
    "hyperprior": ScaleHyperprior,
    "mean-scale": MeanScaleHyperprior,
    "channelwise": ChannelwiseAutoregressive,
    "wacnn": WACNN,
}


def build_model(arch: str, **kwargs) -> CompressionModel:
    """Instantiate a zoo model by name; unknown names list the choices."""
    try:
        cls = MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown model {arch!r}; choose one of {sorted(MODELS)}") from None
    return cls(**kwargs)
