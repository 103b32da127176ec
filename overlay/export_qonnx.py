"""QONNX export of the deployable student's four transforms (g_a, h_a, h_s, g_s).

Each transform of a :class:`licfpga.model.qat.QuantHyperprior` is exported on its own with
Brevitas' ``export_qonnx`` through the TorchScript exporter (``dynamo=False``: its
``symbolic`` hook lets a Python module emit an arbitrary custom node). The exported graph
has the usual QONNX ``Quant`` nodes for every Brevitas quantiser (weights, Int32 biases,
activations), ``Conv`` / ``ConvTranspose`` for the (transposed) convolutions and, for each
:class:`~licfpga.model.qat.QuantGDN`, one node ``GDN`` in domain
``licfpga.overlay.custom_op`` carrying the integer GDN parameters (see
:mod:`licfpga.overlay.custom_op`), followed by the ``Quant`` node of the GDN's own int8
output quantiser. The integer parameters are those the QAT model's eval forward uses
(``QuantGDN.int_params`` of its input/output scales), so the QONNX model computes the
same integers as ``QuantHyperprior`` in eval mode and as ``licfpga.model.golden.network``.

What each exported graph takes and returns (float tensors, NCHW):

=====  ==========================================  ======================================
name   input                                       output
=====  ==========================================  ======================================
g_a    pixels in [0, 1], [1, 3, H, W]              y on the integer grid (scale 1), int8
h_a    ``|y|`` (integers 0..127), [1, M, h, w]     z (scale 1), int8
h_s    z (integers), [1, N, h/4, w/4]              scale codes * s (uint8 grid, ReLU)
g_s    y (integers), [1, M, h, w]                  pixels in [0, 1] (uint8 grid, 1/255)
=====  ==========================================  ======================================

The input quantiser of each transform (``x_quant``, ``abs_quant``, ``z_in``, ``g_a[-1]``) is
the first node, so the graph's input ``Quant`` fixes the integer grid the first layer
sees; ``|y|`` for h_a is taken outside the graph (FINN has no ``Abs`` layer; on the board it
is part of the host-side latent handling).

Transposed convolutions are exported as ``ConvTranspose`` with ``output_padding=1``;
:mod:`licfpga.overlay.finn_flow` rewrites them into sub-pixel convolutions before FINN.

    python -m licfpga.overlay.export_qonnx --out overlay/build/qonnx [--qat CKPT | --student CKPT]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from licfpga.model.geometry import STRIDE
from licfpga.model.golden import gdn as golden_gdn
from licfpga.model.package_data import QAT_DIR
from licfpga.model.qat import TRANSFORMS, QuantGDN, QuantHyperprior

from .custom_op import DOMAIN, gdn_attrs

DEFAULT_SHAPES = {"g_a": 64}     # input side of g_a; the others follow (/16, /64)


def _value(t):
    return t.value if hasattr(t, "value") else t


def _gdn_function(p: golden_gdn.GDNIntParams):
    """An autograd Function whose forward runs ``gdn_int`` and whose ONNX symbolic is our
    ``GDN`` node with the integer parameters of ``p`` as attributes."""
    attrs = gdn_attrs(p)

    class GDNFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            q = torch.clamp(torch.round(x.detach() / p.in_scale), -128, 127).to(torch.int64).cpu().numpy()
            y = np.stack([golden_gdn.gdn_int(q[n].astype(np.int8), p) for n in range(q.shape[0])])
            return torch.from_numpy(y.astype(np.float32) * np.float32(p.out_scale)).to(x.dtype)

        @staticmethod
        def symbolic(g, x):
            kw = {}
            for k, v in attrs.items():
                suffix = {int: "i", float: "f", str: "s", list: "i"}[type(v)]
                kw[f"{k}_{suffix}"] = v
            out = g.op(f"{DOMAIN}::GDN", x, **kw)
            out.setType(x.type())
            return out

    return GDNFn


class ExportGDN(nn.Module):
    """Stand-in for a :class:`QuantGDN` during export: custom node + its output quantiser."""

    def __init__(self, qgdn: QuantGDN, params: golden_gdn.GDNIntParams):
        super().__init__()
        self.params = params
        self.fn = _gdn_function(params)
        self.out_quant = qgdn.out_quant

    def forward(self, x):
        return self.out_quant(self.fn.apply(_value(x)))


class _Output(nn.Module):
    """Ends the exported graph with a plain tensor (the last quantiser's dequantised value)."""

    def forward(self, x):
        return _value(x)


def transform_module(model: QuantHyperprior, name: str) -> nn.Sequential:
    """The transform ``name`` with its input quantiser in front (a deep copy, eval mode)."""
    model = copy.deepcopy(model).eval()
    first = {"g_a": model.x_quant, "h_a": model.abs_quant, "h_s": model.z_in, "g_s": model.g_a[-1]}[name]
    return nn.Sequential(first, *getattr(model, name)).eval()


def image_hw(size) -> tuple[int, int]:
    """``size`` (square) or ``(height, width)`` of the image, each a multiple of 64."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h % STRIDE or w % STRIDE or h <= 0 or w <= 0:
        raise ValueError(f"image size must be multiples of {STRIDE}, got {h}x{w}")
    return h, w


def input_shape(model: QuantHyperprior, name: str, size=64) -> tuple[int, ...]:
    """Export input shape of transform ``name`` for a ``size`` x ``size`` (or ``(h, w)``) image."""
    h, w = image_hw(size)
    return {"g_a": (1, 3, h, w), "h_a": (1, model.M, h // 16, w // 16),
            "h_s": (1, model.N, h // STRIDE, w // STRIDE), "g_s": (1, model.M, h // 16, w // 16)}[name]


def example_input(model: QuantHyperprior, name: str, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A valid input of transform ``name``: random pixels, or integer latents in range."""
    gen = torch.Generator().manual_seed(seed)
    shape = input_shape(model, name, size)
    if name == "g_a":
        return torch.rand(shape, generator=gen)
    if name == "h_a":
        return torch.randint(0, 128, shape, generator=gen).float()
    return torch.randint(-20, 21, shape, generator=gen).float()


def with_export_gdn(seq: nn.Sequential, example: torch.Tensor) -> tuple[nn.Sequential, list]:
    """Replace every QuantGDN in ``seq`` by an :class:`ExportGDN` holding the integer
    parameters of the scales the eval forward uses (read by one probe pass)."""
    scales: dict[int, tuple[float, float]] = {}

    def hook(m, args, out):
        scales[id(m)] = (float(args[0].scale), float(out.scale))

    gdns = [m for m in seq if isinstance(m, QuantGDN)]
    handles = [m.register_forward_hook(hook) for m in gdns]
    with torch.no_grad():
        seq(example)
    for h in handles:
        h.remove()
    layers, params = [], []
    for m in seq:
        if isinstance(m, QuantGDN):
            p = m.int_params(*scales[id(m)])
            params.append(p)
            layers.append(ExportGDN(m, p))
        else:
            layers.append(m)
    layers.append(_Output())
    return nn.Sequential(*layers).eval(), params


def export_transform(model: QuantHyperprior, name: str, out_path, size: int = 64, cleanup: bool = True) -> Path:
    """Export one transform to ``out_path`` (QONNX, cleaned up by qonnx unless told not to)."""
    from brevitas.export import export_qonnx

    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose one of {TRANSFORMS}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(model, name, size)
    seq, _ = with_export_gdn(transform_module(model, name), x)
    with torch.no_grad():
        export_qonnx(seq, args=x, export_path=str(out_path), dynamo=False, opset_version=13)
    if cleanup:
        from qonnx.util.cleanup import cleanup as qonnx_cleanup
        qonnx_cleanup(str(out_path), out_file=str(out_path))
    return out_path


def reference_output(model: QuantHyperprior, name: str, x: torch.Tensor) -> np.ndarray:
    """The QAT model's eval output of transform ``name`` (float, as the QONNX graph)."""
    seq = transform_module(model, name)
    with torch.no_grad():
        return _value(seq(x)).numpy()


def export_all(model: QuantHyperprior, out_dir, size: int = 64, transforms=TRANSFORMS) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {t: export_transform(model, t, out_dir / f"{t}.onnx", size) for t in transforms}
    (out_dir / "manifest.json").write_text(json.dumps(
        {"format": "licfpga-qonnx/1", "size": list(image_hw(size)), "N": model.N, "M": model.M, "gdn_domain": DOMAIN,
         "transforms": {t: {"file": p.name, "input_shape": list(input_shape(model, t, size))}
                        for t, p in paths.items()}}, indent=1))
    return paths


def load_model(qat: str | None = None, student: str | None = None, seed: int = 0) -> QuantHyperprior:
    """A QAT checkpoint, or a float student quantised + calibrated on random crops, or (no
    argument) the shipped QAT student ``model/checkpoints/qat/qat-student-0.013.pt`` (the
    one the integer artifact ``int-student-0.013`` was exported from), else a random one."""
    from licfpga.model.qat import calibrate, load_qat, quantize_student

    shipped = QAT_DIR / "qat-student-0.013.pt"
    if qat is None and student is None and shipped.is_file():
        qat = str(shipped)
    if qat:
        return load_qat(qat)[0]
    torch.manual_seed(seed)
    if student:
        from licfpga.model.checkpoint import load_model as load_float
        s, _ = load_float(student, update=False)
        # the entropy models play no part in the transforms; fresh ones avoid loading the
        # checkpoint's CDF buffers into un-updated modules (shape mismatch)
        from compressai.entropy_models import EntropyBottleneck, GaussianConditional
        s.entropy_bottleneck = EntropyBottleneck(s.h_a[-1].out_channels)
        s.gaussian_conditional = GaussianConditional(None)
    else:
        from licfpga.model.zoo import ScaleHyperprior
        s = ScaleHyperprior(30, 48)
    q = quantize_student(s)
    gen = torch.Generator().manual_seed(seed)
    calibrate(q, [torch.rand(4, 3, 128, 128, generator=gen)])
    return q.eval()


def main(argv=None) -> dict[str, Path]:
    p = argparse.ArgumentParser(prog="python -m licfpga.overlay.export_qonnx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="overlay/build/qonnx")
    p.add_argument("--qat", help="QAT checkpoint (licfpga qat)")
    p.add_argument("--student", help="float hyperprior student (quantised + calibrated here)")
    p.add_argument("--size", type=int, default=64, help="export image size (multiple of 64)")
    p.add_argument("--width", type=int, default=None,
                   help="image width if not --size (e.g. 1920: FINN then sizes line buffers for full rows)")
    p.add_argument("--transforms", nargs="*", default=list(TRANSFORMS))
    a = p.parse_args(argv)
    size = a.size if a.width is None else (a.size, a.width)
    try:
        image_hw(size)
    except ValueError as e:
        p.error(str(e))
    paths = export_all(load_model(a.qat, a.student), a.out, size, a.transforms)
    for t, path in paths.items():
        print(t, path)
    return paths


if __name__ == "__main__":
    main()
