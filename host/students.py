"""``licfpga students``: the frugal-student RD table, one run over the same images.

Rows, each measured here on every image:

* **teacher** -- the float mean-scale N=64/M=96 checkpoints (real ``.lic`` files);
* **student (float, distilled)** -- the float hyperprior students (real files);
* **QAT student** -- the Brevitas model in eval mode: int8 everywhere, fixed-point GDN;
  its integers are rANS-coded with the artifact's tables (real bytes, same container
  overhead as the integer file; the likelihood estimate is kept as ``bpp_estimate``);
* **integer model** -- the bit-exact golden network through ``--backend integer`` (real
  files, what the FPGA + host runtime produce);
* optional single-lambda rows: the from-scratch ablation student and the simplified-GDN
  student (``--extra name=checkpoint``).

BD-rates (PSNR and MS-SSIM) against the teacher and integer vs QAT, MACs/pixel and
parameter counts, and the integer-vs-QAT latent agreement (fraction of identical y
elements, max difference) are written to ``OUT/summary.md`` / ``summary.json`` with an RD
plot.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from licfpga.model.checkpoint import load_model, resolve_checkpoint
from licfpga.model.geometry import STRIDE
from licfpga.model.prune import macs_per_px
from licfpga.model.qat import load_qat

from .codec import Codec
from .evaluate import load_images, measure_learned
from .integer_codec import IntegerCodec
from .metrics import ms_ssim, psnr
from .rd import bd_rate, plot_rd, results_json

LAMBDAS = ("0.0035", "0.0067", "0.013", "0.025")


def _qat_row(model, name: str, img: np.ndarray, codec: IntegerCodec, int_data: bytes) -> tuple[dict, dict]:
    """QAT model on ``img``: its integers (y, z, scale codes) are coded with the artifact's
    rANS tables exactly as the integer backend codes its own, so both rows' rates are real
    payload bytes plus the same container overhead (header, per-tile CRC)."""
    from compressai.ans import RansEncoder

    from .container import unpack

    im = codec.model
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x)
    h, w = img.shape[:2]
    y = out["y_hat"][0].numpy().astype(np.int64)
    z = out["z_hat"][0].numpy().astype(np.int64)
    s_sc = im.schema["entropy"]["y_scale_code_scale"]
    idx = im.scale_indexes(np.rint(out["scales"][0].numpy() / s_sc).astype(np.int64))
    enc = RansEncoder()
    y_bytes = enc.encode_with_indexes(y.reshape(-1).tolist(), idx.reshape(-1).tolist(), *codec._y)
    z_bytes = enc.encode_with_indexes((z - codec._z_median[:, None, None]).reshape(-1).tolist(),
                                      codec._z_indexes(z.shape).reshape(-1).tolist(), *codec._z)
    f = unpack(int_data)
    overhead = len(int_data) - sum(len(p) for t in f.tiles for p in t.payloads)
    n_bytes = len(y_bytes) + len(z_bytes) + overhead
    bits_est = sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
    rec = (out["x_hat"][0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    row = {"image": name, "bpp": 8 * n_bytes / (h * w), "bpp_estimate": bits_est / (h * w),
           "psnr": psnr(img, rec), "ms_ssim": ms_ssim(img, rec)}
    yi, _ = im.analysis(img) if (h % STRIDE == 0 and w % STRIDE == 0) else (None, None)
    agree = {}
    if yi is not None:
        agree = {"equal": int((yi == y).sum()), "total": int(y.size), "max_diff": int(np.abs(yi - y).max())}
    return row, agree


def _params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "quantiles" not in n)


def run(images, teachers, students, qats, artifacts, extras=(), progress=True) -> dict:
    curves: dict[str, list[dict]] = defaultdict(list)
    info: dict[str, dict] = {}
    agreement = defaultdict(int)
    agreement["max_diff"] = 0
    n_img = len(images)

    def add(label, lam, rows):
        for r in rows:
            curves[label].append({**r, "lambda": float(lam)})

    total = (len(teachers) + len(students) + 2 * len(qats) + len(extras)) * n_img
    bar = tqdm(total=total, desc="students", unit="img", disable=not progress)
    float_runs = [("teacher (float, mean-scale N=64/M=96)", lam, ck) for lam, ck in teachers]
    float_runs += [("student (float, distilled)", lam, ck) for lam, ck in students]
    for label, lam, ck in float_runs + list(extras):
        codec = Codec.load(ck)
        info.setdefault(label, {"params": _params(codec.model), **macs_per_px(codec.model)})
        rows = []
        for name, img in images:
            rows.append(measure_learned(codec, name, img)[0])
            bar.update()
        add(label, lam, rows)
    qat_label, int_label = "QAT student (int8 + fixed-point GDN)", "integer model (golden, real files)"
    artifacts = dict(artifacts)
    for lam, ck in qats:
        model, _ = load_qat(ck)
        codec = IntegerCodec(artifacts[lam])
        info.setdefault(qat_label, {"params": _params(model), **macs_per_px(_float_view(model))})
        info.setdefault(int_label, dict(info[qat_label]))
        q_rows, i_rows = [], []
        for name, img in images:
            i_row, data, _ = measure_learned(codec, name, img)
            row, agree = _qat_row(model, name, img, codec, data)
            i_rows.append(i_row)
            q_rows.append(row)
            for k in ("equal", "total"):
                agreement[k] += agree.get(k, 0)
            agreement["max_diff"] = max(agreement["max_diff"], agree.get("max_diff", 0))
            bar.update(2)
        add(qat_label, lam, q_rows)
        add(int_label, lam, i_rows)
    bar.close()
    results = {label: results_json(label, rows, point_key="lambda") for label, rows in curves.items()}
    return {"images": [n for n, _ in images], "results": results, "info": info,
            "agreement": dict(agreement)}


def _float_view(qmodel):
    """A float ScaleHyperprior with the QAT model's shapes (for MAC counting)."""
    from licfpga.model.zoo import ScaleHyperprior

    return ScaleHyperprior(qmodel.N, qmodel.M, Nh=qmodel.Nh)


def _bd(res_a, res_b, key):
    try:
        return bd_rate(res_a["results"]["bpp"], res_a["results"][key], res_b["results"]["bpp"], res_b["results"][key])
    except (ValueError, KeyError, TypeError):
        return None


def summarize(result: dict) -> dict:
    res = result["results"]
    teacher = next((r for k, r in res.items() if k.startswith("teacher")), None)
    table = []
    for label, r in res.items():
        mean = r["results"]
        row = {"label": label, "points": len(mean["bpp"]), "bpp": mean["bpp"], "psnr": mean["psnr-rgb"],
               "ms_ssim_db": mean.get("ms-ssim-rgb-db"),
               "bd_psnr_vs_teacher": _bd(teacher, r, "psnr-rgb") if teacher and r is not teacher else None,
               "bd_msssim_vs_teacher": _bd(teacher, r, "ms-ssim-rgb-db") if teacher and r is not teacher else None,
               **result["info"].get(label, {})}
        table.append(row)
    qat = res.get("QAT student (int8 + fixed-point GDN)")
    integer = res.get("integer model (golden, real files)")
    student = res.get("student (float, distilled)")
    extra = {}
    if qat and integer:
        extra["integer_vs_qat_bd_psnr"] = _bd(qat, integer, "psnr-rgb")
    if student and qat:
        extra["qat_vs_float_student_bd_psnr"] = _bd(student, qat, "psnr-rgb")
    if student and integer:
        extra["integer_vs_float_student_bd_psnr"] = _bd(student, integer, "psnr-rgb")
    a = result["agreement"]
    if a.get("total"):
        extra["latent_equal_fraction"] = a["equal"] / a["total"]
        extra["latent_max_diff"] = a["max_diff"]
    return {"table": table, **extra}


def update(previous: dict, new: dict, note: str) -> dict:
    """Replace, in a previous result, the (curve, lambda) points that ``new`` measured again
    (same images); everything else is kept. ``note`` says why, and lands in the table."""
    if previous["images"] != new["images"]:
        raise ValueError("update: the runs used different images")
    results = dict(previous["results"])
    replaced = []
    for label, r in new["results"].items():
        lams = sorted({row["lambda"] for row in r["per_image"]})
        kept = [row for row in previous["results"].get(label, {}).get("per_image", []) if row["lambda"] not in lams]
        results[label] = results_json(label, kept + r["per_image"], point_key="lambda")
        replaced.append(f"{label} at λ {', '.join(map(str, lams))}")
    return {**previous, "results": results, "info": {**previous["info"], **new["info"]},
            "agreement": new["agreement"], "agreement_previous": previous["agreement"],
            "updated": {"note": note, "replaced": replaced}}


def _f(v, spec=".2f"):
    return "n/a" if v is None else format(v, spec)


def markdown(result: dict, summary: dict) -> str:
    teacher_macs = next((r.get("encoder", 0) + r.get("decoder", 0) for r in summary["table"]
                         if r["label"].startswith("teacher")), None)
    lines = [f"Kodak, {len(result['images'])} images, one run. Every rate is real coded bytes "
             "(`.lic` files; the QAT row's integers coded with the same tables and container overhead).", ""]
    if "updated" in result:
        u = result["updated"]
        lines += [f"**Updated:** {u['note']} Re-measured (same images, same code): {'; '.join(u['replaced'])}; "
                  "every other point is from the first run.", ""]
    lines += [
             "| model | λ points | bpp | PSNR dB | BD-rate vs teacher (PSNR) | (MS-SSIM) | MACs/px enc + dec | vs teacher | params |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["table"]:
        macs = r.get("encoder", 0) + r.get("decoder", 0)
        lines.append(
            f"| {r['label']} | {r['points']} | {' / '.join(_f(b, '.3f') for b in r['bpp'])} | "
            f"{' / '.join(_f(p) for p in r['psnr'])} | {_f(r['bd_psnr_vs_teacher'], '+.1f')} % | "
            f"{_f(r['bd_msssim_vs_teacher'], '+.1f')} % | {macs:,.0f} | "
            f"{_f(macs / teacher_macs if teacher_macs else None, '.3f')}x | {r.get('params', 0):,} |")
    lines += ["", f"- integer model vs QAT model, BD-rate (PSNR): {_f(summary.get('integer_vs_qat_bd_psnr'), '+.2f')} %",
              f"- QAT vs float student: {_f(summary.get('qat_vs_float_student_bd_psnr'), '+.2f')} %; "
              f"integer vs float student: {_f(summary.get('integer_vs_float_student_bd_psnr'), '+.2f')} %",
              f"- integer vs QAT latents y: {_f(100 * summary['latent_equal_fraction'] if 'latent_equal_fraction' in summary else None, '.4f')} % "
              f"identical, max difference {summary.get('latent_max_diff', 'n/a')} LSB"
              + (" (the re-measured models)" if "updated" in result else "")]
    p = result.get("agreement_previous")
    if p and p.get("total"):
        lines.append(f"- first run (all four λ, before the update): {100 * p['equal'] / p['total']:.4f} % identical, "
                     f"max difference {p['max_diff']} LSB")
    return "\n".join(lines) + "\n"


def write(result: dict, out) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    (out / "summary.json").write_text(json.dumps({**result, "summary": summary}, indent=1, default=float))
    (out / "summary.md").write_text(markdown(result, summary))
    plot_rd(result["results"], out / "rd_students.png", "psnr", title="Students on Kodak",
            highlight="integer model (golden, real files)")
    return summary


def _pairs(template: str, lambdas) -> list[tuple[str, str]]:
    return [(lam, template.format(lam=lam)) for lam in lambdas]


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="licfpga students", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/kodak")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--lambdas", nargs="+", default=list(LAMBDAS))
    p.add_argument("--teacher", default="mean-scale-{lam}", help="template, {lam} = lambda")
    p.add_argument("--student", default="student-{lam}")
    p.add_argument("--qat", default="model/checkpoints/qat/qat-student-{lam}.pt")
    p.add_argument("--artifact", default="int-student-{lam}")
    p.add_argument("--extra", nargs="*", default=[], metavar="LABEL=LAMBDA:CKPT",
                   help="single-lambda float rows, e.g. 'scratch=0.013:runs/st-0.013-scratch/final.pt'")
    p.add_argument("--out", default="results/students")
    p.add_argument("--update", default=None, metavar="SUMMARY_JSON",
                   help="replace only the points measured now in this earlier summary.json")
    p.add_argument("--note", default="", help="with --update: why the points were re-measured")
    a = p.parse_args(argv)
    images = load_images(a.data, a.limit)
    extras = []
    for e in a.extra:
        label, rest = e.split("=", 1)
        lam, ck = rest.split(":", 1)
        extras.append((label, lam, ck))
    result = run(images, _pairs(a.teacher, a.lambdas), _pairs(a.student, a.lambdas), _pairs(a.qat, a.lambdas),
                 _pairs(a.artifact, a.lambdas), extras)
    if a.update:
        previous = json.loads(Path(a.update).read_text())
        previous.pop("summary", None)
        result = update(previous, result, a.note)
    summary = write(result, a.out)
    print(markdown(result, summary))
    return Path(a.out) / "summary.md"


if __name__ == "__main__":
    main()
