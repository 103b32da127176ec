"""Export a Brevitas QAT student to the integer artifact read by ``golden/network.py``.

The artifact is ``<name>.json`` (schema: layer list per transform, ranges, scales) and
``<name>.npz`` (integer arrays: int8 weights, int32 biases, per-channel requantisation
multipliers/shifts, GDN integer parameters, entropy-coder CDF tables and the integer
scale thresholds). The golden model and the hardware flow start from it; torch is not
needed to run it.

Scales are read from the QAT model in eval mode by one probe forward pass with hooks on
every quantiser and convolution (Brevitas scales are constants in eval mode).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import torch
import torch.nn as nn
from compressai.models.base import get_scale_table

from .geometry import STRIDE
from .golden import network as golden_net
from .qat import QuantGDN, QuantHyperprior, load_qat

SCALE_TABLE_MIN, SCALE_TABLE_MAX, SCALE_TABLE_LEVELS = 0.11, 256, 64


def _qrange(quant: nn.Module, qt) -> list[int]:
    b = int(qt.bit_width)
    if not bool(qt.signed):
        return [0, 2**b - 1]
    narrow = bool(getattr(quant.act_quant, "is_narrow_range", False))
    return [-(2 ** (b - 1)) + int(narrow), 2 ** (b - 1) - 1]


def requant_params(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ratio m > 0 -> (mult in [2**30, 2**31), shift) with m ~= mult / 2**shift."""
    m = np.asarray(m, dtype=np.float64)
    if not np.all(m > 0):
        raise ValueError("requantisation ratios must be positive")
    shift = 30 - np.floor(np.log2(m)).astype(np.int64)
    mult = np.floor(m * np.exp2(shift.astype(np.float64)) + 0.5).astype(np.int64)
    over = mult >= 2**31
    mult[over] = (mult[over] + 1) >> 1
    shift[over] -= 1
    if shift.min() < 1 or shift.max() > 62:
        raise ValueError(f"requantisation shift out of [1, 62]: {shift.min()}..{shift.max()}")
    return mult, shift


class _Probe:
    """Records the (input, output) QuantTensors of every quantiser / conv in eval mode."""

    def __init__(self, model: nn.Module):
        self.io: dict[nn.Module, tuple] = {}
        self.handles = []
        for m in model.modules():
            if isinstance(m, (qnn.QuantIdentity, qnn.QuantReLU, qnn.QuantConv2d, qnn.QuantConvTranspose2d, QuantGDN)):
                self.handles.append(m.register_forward_hook(self._hook))

    def _hook(self, m, args, out):
        self.io[m] = (args[0], out)

    def close(self):
        for h in self.handles:
            h.remove()


def _conv_layer(name: str, conv, x_in, q_mod, q_out, arrays: dict) -> dict:
    """One conv/deconv + the requantisation into ``q_mod``'s grid."""
    deconv = isinstance(conv, qnn.QuantConvTranspose2d)
    qw = conv.quant_weight()
    w_int = qw.int().detach().numpy().astype(np.int8 if int(qw.bit_width) <= 8 else np.int16)
    co = conv.out_channels
    s_w = qw.scale.detach().reshape(-1).float()
    if s_w.numel() == 1:
        s_w = s_w.expand(co)
    s_in = x_in.scale.detach().reshape(()).float()
    bias_scale = s_in * s_w                                   # float32, as Brevitas' Int32Bias
    b_int = torch.round(conv.bias.detach().float() / bias_scale).numpy().astype(np.int64)
    if np.abs(b_int).max() >= 2**31:
        raise ValueError(f"{name}: bias does not fit int32")
    s_out = float(q_out.scale.detach().reshape(()))
    ratio = float(s_in) * s_w.double().numpy() / s_out
    mult, shift = requant_params(ratio)
    arrays[f"{name}.weight"] = w_int
    arrays[f"{name}.bias"] = b_int.astype(np.int32)
    arrays[f"{name}.mult"] = mult
    arrays[f"{name}.shift"] = shift.astype(np.int8)
    return {"op": "deconv" if deconv else "conv", "name": name, "weight": f"{name}.weight",
            "bias": f"{name}.bias", "mult": f"{name}.mult", "shift": f"{name}.shift",
            "in_channels": conv.in_channels, "out_channels": co, "kernel": conv.kernel_size[0],
            "stride": conv.stride[0], "padding": conv.padding[0],
            "output_padding": conv.output_padding[0] if deconv else 0,
            "w_bits": int(qw.bit_width), "in_range": None, "out_range": _qrange(q_mod, q_out),
            "in_scale": float(s_in), "out_scale": s_out, "w_scale": s_w.double().tolist(),
            "relu": not bool(q_out.signed)}


def export_integer(model: QuantHyperprior, out, meta: dict | None = None) -> Path:
    """Write ``out.json`` + ``out.npz``; returns the ``.json`` path."""
    model = copy.deepcopy(model).eval()
    probe = _Probe(model)
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    probe.close()
    io = probe.io
    arrays: dict[str, np.ndarray] = {}
    transforms: dict[str, list] = {}
    inputs = {"g_a": model.x_quant, "h_a": model.abs_quant, "h_s": model.z_in, "g_s": model.g_a[-1]}
    for tname in golden_net.TRANSFORMS:
        seq = getattr(model, tname)
        layers: list[dict] = [{"op": "abs", "name": "h_a.abs"}] if tname == "h_a" else []
        in_q = inputs[tname]
        cur_range = _qrange(in_q, io[in_q][1])
        cur_scale = float(io[in_q][1].scale)
        mods = list(seq)
        for i, m in enumerate(mods):
            name = f"{tname}.{i}"
            if isinstance(m, (qnn.QuantConv2d, qnn.QuantConvTranspose2d)):
                q_mod = mods[i + 1]
                layer = _conv_layer(name, m, io[m][0], q_mod, io[q_mod][1], arrays)
                layer["in_range"] = cur_range
                if abs(layer["in_scale"] - cur_scale) > 1e-12 * max(1.0, cur_scale):
                    raise RuntimeError(f"{name}: input scale mismatch {layer['in_scale']} vs {cur_scale}")
                layers.append(layer)
                cur_range, cur_scale = layer["out_range"], layer["out_scale"]
            elif isinstance(m, QuantGDN):
                x_in, y_out = io[m]
                p = m.int_params(float(x_in.scale), float(y_out.scale))
                arrays[f"{name}.gamma"] = p.gamma.astype(np.uint16 if p.gamma_bits <= 16 else np.uint32)
                arrays[f"{name}.beta"] = p.beta.astype(np.uint64 if p.acc_bits > 32 else np.uint32)
                arrays[f"{name}.gshift"] = p.shift.astype(np.int8)
                layers.append({"op": "gdn", "name": name, "variant": p.variant, "inverse": p.inverse,
                               "channels": p.channels, "gamma": f"{name}.gamma", "beta": f"{name}.beta",
                               "gshift": f"{name}.gshift", "gamma_bits": p.gamma_bits, "acc_bits": p.acc_bits,
                               "in_scale": p.in_scale, "out_scale": p.out_scale})
                cur_range = _qrange(m.out_quant, y_out)
                cur_scale = float(y_out.scale)
            # quantisers are folded into the preceding conv's requantisation
        transforms[tname] = layers

    # entropy coder tables: the z bottleneck with integer medians, the Gaussian by index
    eb = copy.deepcopy(model.entropy_bottleneck)
    with torch.no_grad():
        eb.quantiles[:, 0, 1] = torch.round(eb.quantiles[:, 0, 1])
    eb.update(force=True)
    gc = copy.deepcopy(model.gaussian_conditional)
    table = get_scale_table(SCALE_TABLE_MIN, SCALE_TABLE_MAX, SCALE_TABLE_LEVELS)
    gc.update_scale_table(table, force=True)
    s_sc = float(io[model.h_s[-1]][1].scale)
    # CompressAI: index = #{t in table[:-1] : scale > t}; scale = q * s_sc  ->  q > floor(t / s_sc)
    thresholds = np.floor(table[:-1].double().numpy() / s_sc).astype(np.int64)
    arrays.update({
        "entropy.z_cdf": eb._quantized_cdf.numpy().astype(np.int32),
        "entropy.z_cdf_length": eb._cdf_length.numpy().astype(np.int32),
        "entropy.z_offset": eb._offset.numpy().astype(np.int32),
        "entropy.z_median": eb.quantiles[:, 0, 1].detach().numpy().astype(np.int32),
        "entropy.y_cdf": gc._quantized_cdf.numpy().astype(np.int32),
        "entropy.y_cdf_length": gc._cdf_length.numpy().astype(np.int32),
        "entropy.y_offset": gc._offset.numpy().astype(np.int32),
        "entropy.y_thresholds": thresholds,
    })
    schema = {
        "format": golden_net.FORMAT,
        "model": {"arch": "int-hyperprior", **model.config()},
        "meta": dict(meta or {}),
        "input": {"pixels": f"uint8 RGB, [3, H, W], H and W multiples of {STRIDE}"},
        "transforms": transforms,
        "entropy": {"y_scale_code_scale": s_sc, "scale_table": table.double().tolist(),
                    "arrays": {k.split(".", 1)[1]: k for k in arrays if k.startswith("entropy.")}},
    }
    js, npz = golden_net.artifact_paths(out)
    js.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz, **arrays)
    js.write_text(json.dumps(schema, indent=1))
    golden_net.IntegerModel.load(js)       # fails loudly if anything is inconsistent
    return js


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="licfpga export-int", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("qat", help="QAT checkpoint (licfpga qat)")
    p.add_argument("--out", required=True, help="artifact path without suffix")
    a = p.parse_args(argv)
    model, state = load_qat(a.qat)
    path = export_integer(model, a.out, state.get("meta"))
    print(f"wrote {path} (+ .npz)\n")
    print(range_markdown(golden_net.IntegerModel.load(path)))
    return path


def range_markdown(im: golden_net.IntegerModel) -> str:
    """Static range analysis of an artifact as a Markdown table."""
    lines = ["| layer | op | weight bits | input range | worst-case accumulator | bits needed | register | requant product bits |",
             "|---|---|---|---|---|---|---|---|"]
    for r in im.range_report():
        lines.append(f"| {r['layer']} | {r['op']} | {r['w_bits']} | [{r['in_range'][0]}, {r['in_range'][1]}] | "
                     f"{r['worst_acc']:,} | {r['acc_bits_needed']} | s{r['acc_bits']} | {r['product_bits']} (of 63) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
