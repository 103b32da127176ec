"""GDN variants after quantisation: RD cost and arithmetic cost (issue table).

Variants (``model/layers.py``): standard float GDN, simplified GDN1 (|x|, no sqrt), and
the fixed-point GDN of the hardware kernel (``model/golden/gdn.py``). RD is measured on
Kodak with the *estimated* rate (likelihoods) so that every row uses the same rate
measure:

* ``gdn`` -- the float student (GDN/IGDN in float);
* ``fixed`` -- the same weights, every GDN/IGDN replaced by the fixed-point kernel
  (``FixedPointGDN``: int8 in/out with per-tensor scales, 32-bit normalisation), the rest
  float: the cost of the GDN arithmetic alone (BD-rate over the lambdas given);
* ``gdn, int8 network`` / ``simplified, int8 network`` -- the whole network quantised
  (Brevitas PTQ: calibration, no QAT), standard vs simplified GDN students trained the
  same way (single lambda): the variants compared *after quantisation*.

Arithmetic cost per pixel for C channels is counted from the kernels' definitions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, resolve_checkpoint
from .qat import calibrate, quantize_student
from .train import RandomCrops
from .zoo import build_model


def arithmetic_cost(c: int) -> list[dict]:
    """Multipliers per pixel (and their widths) of one C-channel GDN layer."""
    return [
        {"variant": "gdn (float)", "squares": f"{c} x fp32", "channel_mix": f"{c * c} fp32 MAC",
         "per_channel": "sqrt + divide (fp32)", "multipliers": c + c * c + c,
         "widths": "fp32 (24-bit mantissa) everywhere"},
        {"variant": "simplified GDN1 (float)", "squares": "none (|x|)", "channel_mix": f"{c * c} fp32 MAC",
         "per_channel": "divide (fp32)", "multipliers": c * c + c, "widths": "fp32"},
        {"variant": "fixed-point GDN (kernel)", "squares": f"{c} x 8x8->u15", "channel_mix": f"{c * c} x u16*u15->u31, u32 acc",
         "per_channel": "CLZ, 64x17 LUT, Newton: 17x17, 18x18, 17x18; out 8x18",
         "multipliers": c + c * c + 4 * c, "widths": "<= 18x18 (one DSP48E2 each), 32-bit accumulator"},
        {"variant": "fixed-point IGDN (kernel)", "squares": f"{c} x 8x8->u15", "channel_mix": f"{c * c} x u16*u15->u31",
         "per_channel": "as GDN + sqrt step 18x18", "multipliers": c + c * c + 5 * c, "widths": "<= 18x18"},
        {"variant": "fixed-point GDN1 (kernel)", "squares": "none (|q|)", "channel_mix": f"{c * c} x u16*u8->u24",
         "per_channel": "CLZ, LUT, Newton 18x17, 17x18; out 8x18", "multipliers": c * c + 3 * c,
         "widths": "<= 18x18, 32-bit accumulator"},
    ]


def _estimate(model, images: list[np.ndarray]) -> dict:
    bits = px = 0.0
    mse = []
    with torch.no_grad():
        for img in images:
            x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
            out = model(x)
            bits += sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
            px += img.shape[0] * img.shape[1]
            rec = out["x_hat"].clamp(0, 1).mul(255).round()
            mse.append(float(((rec - x * 255) ** 2).mean()))
    return {"bpp": bits / px, "psnr": float(np.mean([10 * np.log10(255**2 / m) for m in mse]))}


def _with_fixed_gdn(path):
    model, state = load_model(resolve_checkpoint(path), update=True)
    fixed = build_model(state["arch"], **{**state["kwargs"], "gdn": "fixed"})
    fixed.load_state_dict(model.state_dict())
    return model.eval(), fixed.eval()


def _ptq(path, calib, po2: bool = False, bits: dict | None = None):
    model, _ = load_model(resolve_checkpoint(path), update=True)
    q = quantize_student(model, bits, po2)
    calibrate(q, calib)
    return q.eval()


def main(argv=None) -> Path:
    from licfpga.host.evaluate import load_images
    from licfpga.host.rd import bd_rate

    p = argparse.ArgumentParser(prog="gdn_variants", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", nargs="+", required=True, help="float GDN students, one per lambda")
    p.add_argument("--simplified", required=True, help="simplified-GDN student (one lambda)")
    p.add_argument("--reference", required=True, help="GDN student at the simplified one's lambda and steps")
    p.add_argument("--data", default="../shared/data/kodak")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--channels", type=int, default=30)
    p.add_argument("--out", default="results/students")
    a = p.parse_args(argv)
    images = [img for _, img in load_images(a.data, a.limit)]
    crops = RandomCrops("../shared/data/train", 128, seed=99)
    calib = [crops.batch(8) for _ in range(4)]
    float_pts, fixed_pts = [], []
    for s in a.students:
        f, x = _with_fixed_gdn(s)
        float_pts.append(_estimate(f, images))
        fixed_pts.append(_estimate(x, images))
    bd_fixed = bd_rate([r["bpp"] for r in float_pts], [r["psnr"] for r in float_pts],
                       [r["bpp"] for r in fixed_pts], [r["psnr"] for r in fixed_pts])
    rows = {"gdn float (student)": _estimate(_with_fixed_gdn(a.reference)[0], images),
            "gdn, int8 network (PTQ)": _estimate(_ptq(a.reference, calib), images),
            "simplified float (student)": _estimate(load_model(resolve_checkpoint(a.simplified))[0], images),
            "simplified, int8 network (PTQ)": _estimate(_ptq(a.simplified, calib), images),
            # quantiser choices on the GDN student (same calibration, no QAT):
            "gdn, int8 network, power-of-two scales (PTQ)": _estimate(_ptq(a.reference, calib, po2=True), images),
            "gdn, int8 g_a/g_s + 6-bit h_a/h_s weights (PTQ)": _estimate(
                _ptq(a.reference, calib, bits={"h_a.*": 6, "h_s.*": 6}), images),
            "gdn, 6-bit weights everywhere (PTQ)": _estimate(_ptq(a.reference, calib, bits={"*": 6}), images)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"bd_rate_fixed_vs_float_gdn": bd_fixed, "float_points": float_pts, "fixed_points": fixed_pts,
            "single_lambda": rows, "arithmetic": arithmetic_cost(a.channels), "images": len(images)}
    (out / "gdn_variants.json").write_text(json.dumps(data, indent=1))
    lines = [f"Kodak ({len(images)} images), estimated rate (likelihoods) for every row.", "",
             f"**Fixed-point GDN/IGDN vs float GDN** (same weights, {len(a.students)} lambdas): "
             f"BD-rate {bd_fixed:+.2f} % (PSNR).", "",
             "| variant (λ of the simplified student) | bpp | PSNR dB |", "|---|---|---|"]
    lines += [f"| {k} | {v['bpp']:.4f} | {v['psnr']:.2f} |" for k, v in rows.items()]
    lines += ["", f"Arithmetic per pixel of one GDN layer with C = {a.channels}:", "",
              "| variant | squares | channel mix | per channel | multipliers/px | widths |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['squares']} | {r['channel_mix']} | {r['per_channel']} | {r['multipliers']} | {r['widths']} |"
              for r in arithmetic_cost(a.channels)]
    (out / "gdn_variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out / "gdn_variants.md"


if __name__ == "__main__":
    main()
