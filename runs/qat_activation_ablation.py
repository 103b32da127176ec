"""Where the QAT student loses RD against its float student (issue 9, the lever after session 8).

The float student with fake quantisation at one group of activation points at a time, using the
scales the QAT model learned (int8 narrow range / uint8, as the hardware holds them), on the
held-out validation crops (never Kodak). Also: each g_s IGDN output at 10 bit (same range, 4x
finer), and the QAT model itself. Weights (8 bit) and the fixed-point GDN were checked to cost
nothing measurable (session 9), so only activations are ablated here.

    .venv/bin/python runs/qat_activation_ablation.py \
        --float ~/.cache/licfpga/runs/student-hp30-0.013-decay/final.pt \
        --qat ~/.cache/licfpga/runs/qat-student-hp30-0.013/final.pt
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.nn as nn

from licfpga.model.checkpoint import load_model, resolve_checkpoint
from licfpga.model.qat import QuantGDN, load_qat
from licfpga.model.train import SPLIT, center_crops, rd_loss, train_val_files

TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")


def learned_scales(q, x) -> dict:
    """Output scale of every QuantIdentity / QuantReLU of the QAT model, keyed '<t>.<index>'."""
    scales, hooks = {}, []
    for t in TRANSFORMS:
        for n, m in getattr(q, t).named_modules():
            if type(m).__name__ in ("QuantIdentity", "QuantReLU"):
                hooks.append(m.register_forward_hook(
                    lambda mod, i, o, k=f"{t}.{n}": scales.__setitem__(k, float(o.scale))))
    q.eval()
    with torch.no_grad():
        q(x)
    for h in hooks:
        h.remove()
    return scales


def quant_points(f, q, t: str, scales: dict) -> list[tuple]:
    """(float module, 'in' | 'out', scale, signed) for transform ``t``, walking the QAT layout:
    a QuantIdentity right before a QuantGDN quantises the GDN's input, QuantGDN.out_quant its
    output, a QuantReLU the ReLU's output."""
    seq, qmods, fi, out = getattr(f, t), list(getattr(q, t)), 0, []
    for j, m in enumerate(qmods):
        kind = type(m).__name__
        if kind in ("QuantConv2d", "QuantConvTranspose2d"):
            while not isinstance(seq[fi], (nn.Conv2d, nn.ConvTranspose2d)):
                fi += 1
            fi += 1
        elif kind == "QuantIdentity" and j + 1 < len(qmods) and isinstance(qmods[j + 1], QuantGDN):
            out.append((seq[fi], "in", scales[f"{t}.{j}"], True))
        elif isinstance(m, QuantGDN):
            out.append((seq[fi], "out", scales[f"{t}.{j}.out_quant"], True))
            fi += 1
        elif kind == "QuantReLU":
            while not isinstance(seq[fi], nn.ReLU):
                fi += 1
            out.append((seq[fi], "out", scales[f"{t}.{j}"], False))
            fi += 1
    return out


def fake_quant(x, scale: float, signed: bool, bits: int = 8):
    lo, hi = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return torch.clamp(torch.round(x / scale), lo, hi) * scale


def rd(model, x, lmbda: float, points=()) -> dict:
    hooks = []
    for m, where, s, signed, bits in points:
        if where == "in":
            hooks.append(m.register_forward_pre_hook(lambda mod, i, s=s, g=signed, b=bits: (fake_quant(i[0], s, g, b),)))
        else:
            hooks.append(m.register_forward_hook(lambda mod, i, o, s=s, g=signed, b=bits: fake_quant(o, s, g, b)))
    model.eval()
    with torch.no_grad():
        r = rd_loss(model(x), x, lmbda, "mse")
    for h in hooks:
        h.remove()
    return {"loss": r["loss"].item(), "bpp": r["bpp"].item(), "psnr": -10 * math.log10(r["mse"].item())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--float", required=True, dest="float_ckpt", help="float student checkpoint")
    p.add_argument("--qat", required=True, help="its QAT checkpoint (licfpga qat)")
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--crops", type=int, default=12, help="held-out images, one 256-px centre crop each")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    f, state = load_model(resolve_checkpoint(a.float_ckpt), update=False)
    q, _ = load_qat(a.qat)
    lmbda = float(state["meta"]["lambda"])
    _, val_files = train_val_files(a.data, SPLIT)
    x = center_crops(val_files, 256, a.crops)
    scales = learned_scales(q, x[:2])
    pts = {t: [(*pt, 8) for pt in quant_points(f, q, t, scales)] for t in TRANSFORMS}
    rows = [("float student", rd(f, x, lmbda)), ("QAT student (fine-tuned)", rd(q, x, lmbda))]
    for t, label in (("g_a", "GDN"), ("g_s", "IGDN")):
        for where in ("in", "out"):
            rows.append((f"{t} {label} {where}puts, int8", rd(f, x, lmbda, [pt for pt in pts[t] if pt[1] == where])))
    rows.append(("h_a ReLUs, uint8", rd(f, x, lmbda, pts["h_a"])))
    rows.append(("h_s ReLUs (last: the scales), uint8", rd(f, x, lmbda, pts["h_s"])))
    for k, pt in enumerate(pt for pt in pts["g_s"] if pt[1] == "out"):
        rows.append((f"g_s IGDN output {k}, int8", rd(f, x, lmbda, [pt])))
        rows.append((f"g_s IGDN output {k}, 10 bit (same range)", rd(f, x, lmbda, [(pt[0], pt[1], pt[2] / 4, True, 10)])))
    rows.append(("every point above, 8 bit", rd(f, x, lmbda, sum(pts.values(), []))))
    base = rows[0][1]["loss"]
    print(f"lambda {lmbda}, {a.crops} held-out 256-px crops\n")
    print("| fake-quantised points (float student) | RD loss | vs float | bpp | PSNR dB |\n|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['loss']:.4f} | {100 * (r['loss'] / base - 1):+.2f} % | {r['bpp']:.4f} | {r['psnr']:.3f} |")


if __name__ == "__main__":
    main()
