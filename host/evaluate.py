"""RD evaluation: our checkpoints and classical codecs on the same images, in one run.

Every figure comes from real files: our ``.lic`` bytes (header and CRC included) and the
classical codecs' bitstreams, each decoded again before PSNR / MS-SSIM are measured.
Checkpoints of one architecture and width form one RD curve (one point per lambda); so do
integer artifacts (``int-student-*``, the bit-exact model the FPGA computes), through the
integer backend.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licfpga.model.checkpoint import resolve_checkpoint, shipped_checkpoints

from . import classical
from .codec import Codec
from .images import load_image
from .metrics import bpp, ms_ssim, psnr
from .rd import bd_rate, plot_rd, results_json

IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


def load_images(folder, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"evaluation folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise FileNotFoundError(f"no lossless images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return [(p.stem, load_image(p)[0]) for p in files]


def load_codec(name: str):
    """A float checkpoint (name or path) through :class:`Codec`; an integer artifact
    (``int-*`` or a ``.json`` path) through the torch-free :class:`IntegerCodec`."""
    from licfpga.model.golden.network import ArtifactError

    from .integer_codec import IntegerCodec, resolve_artifact

    try:                    # an integer artifact of that name or path exists: integer backend
        art = resolve_artifact(name)
    except ArtifactError:
        return Codec.load(resolve_checkpoint(name))
    return IntegerCodec(art)


def curve_label(codec) -> str:
    if "kwargs" not in codec.state:          # an integer artifact: widths from its schema
        cfg = codec.model.schema["model"]
        return f"integer hyperprior N{cfg['N']}/M{cfg['M']} (ours)"
    kw = codec.state["kwargs"]
    widths = "/".join(f"{k}{v}" for k, v in kw.items() if k != "gdn")
    return f"{codec.state['arch']} {widths} (ours)"


def measure_learned(codec: Codec, name: str, img: np.ndarray) -> tuple[dict, bytes, np.ndarray]:
    """Encode and decode ``img``; return (metrics row, the .lic bytes, the reconstruction)."""
    data = codec.encode(img)
    rec, _ = codec.decode(data)
    h, w = img.shape[:2]
    row = {"image": name, "lambda": codec.state.get("meta", {}).get("lambda"), "bytes": len(data),
           "bpp": bpp(len(data), h, w), "psnr": psnr(img, rec), "ms_ssim": ms_ssim(img, rec),
           "encode_ms": codec.timing.encode_ms, "decode_ms": codec.timing.decode_ms}
    return row, data, rec


def evaluate(images, checkpoints, codec_names=None, anchors=("jpeg", "heif"), progress=True) -> dict:
    """Return ``{"curves": {label: results_json}, "bd_rate": ..., "unavailable": ...}``."""
    available, unavailable = classical.available_codecs()
    if codec_names is None:
        codec_names = list(available)
    unknown = [c for c in codec_names if c not in classical.CODEC_NAMES]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {list(classical.CODEC_NAMES)}")
    skipped = {c: unavailable[c] for c in codec_names if c not in available}
    classical_names = [c for c in codec_names if c in available]

    codecs = [load_codec(c) for c in checkpoints]
    rows: dict[str, list] = defaultdict(list)
    bar = tqdm(images, desc="evaluate", unit="img", disable=not progress)
    for name, img in bar:
        for codec in codecs:
            bar.set_postfix_str(codec.name)
            rows[curve_label(codec)].append(measure_learned(codec, name, img)[0])
        for cname in classical_names:
            bar.set_postfix_str(cname)
            c = available[cname]
            rows[c.label].extend({"image": name, **r} for r in classical.rd_curve(c, img))
    curves = {}
    for label, r in rows.items():
        key = "lambda" if "(ours)" in label else "quality"
        curves[label] = results_json(label, r, point_key=key)
        if key == "lambda":
            curves[label]["results"]["encode_ms"] = _mean_by(r, "lambda", "encode_ms", curves[label]["results"]["lambda"])
            curves[label]["results"]["decode_ms"] = _mean_by(r, "lambda", "decode_ms", curves[label]["results"]["lambda"])
    anchor_labels = {a: available[a].label for a in anchors if a in available and available[a].label in curves}
    return {"images": [n for n, _ in images], "curves": curves, "bd_rate": bd_table(curves, anchor_labels),
            "unavailable": {**skipped, **{a: unavailable.get(a, "not evaluated") for a in anchors
                                          if a not in anchor_labels}}}


def _mean_by(rows, key, field, order) -> list[float]:
    return [float(np.mean([r[field] for r in rows if r[key] == k])) for k in order]


def bd_table(curves: dict, anchors: dict) -> dict:
    """BD-rate (%) of every curve against every anchor, in PSNR and MS-SSIM (dB)."""
    table = {}
    for anchor_name, anchor_label in anchors.items():
        a = curves[anchor_label]["results"]
        for label, c in curves.items():
            if label == anchor_label:
                continue
            r = c["results"]
            entry = {}
            for metric, key in (("psnr", "psnr-rgb"), ("ms-ssim", "ms-ssim-rgb-db")):
                try:
                    entry[metric] = bd_rate(a["bpp"], a[key], r["bpp"], r[key])
                except (ValueError, TypeError) as exc:
                    entry[metric] = None
                    entry[f"{metric}_note"] = str(exc)
            table.setdefault(anchor_name, {})[label] = entry
    return table


def _fmt(v, spec=".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def summary_markdown(result: dict) -> str:
    lines = [f"Images: {len(result['images'])}", "", "| codec | point | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) |",
             "|---|---|---|---|---|---|"]
    for label, c in result["curves"].items():
        r = c["results"]
        pk = "lambda" if "lambda" in r else "quality"
        for i in range(len(r["bpp"])):
            lines.append(f"| {label} | {pk} {r[pk][i]} | {_fmt(r['bpp'][i], '.4f')} | {_fmt(r['psnr-rgb'][i])} | "
                         f"{_fmt(r['ms-ssim-rgb'][i], '.4f')} | {_fmt(r['ms-ssim-rgb-db'][i])} |")
    for anchor, rows in result["bd_rate"].items():
        lines += ["", f"BD-rate vs {anchor} (negative = fewer bits for the same quality):", "",
                  "| codec | BD-rate PSNR | BD-rate MS-SSIM |", "|---|---|---|"]
        for label, e in rows.items():
            lines.append(f"| {label} | {_pct(e['psnr'])} | {_pct(e['ms-ssim'])} |")
    if result["unavailable"]:
        lines += ["", "Unavailable: " + "; ".join(f"{k} ({v})" for k, v in result["unavailable"].items())]
    return "\n".join(lines)


def write_outputs(result: dict, out, title: str) -> dict:
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    for label, c in result["curves"].items():
        fname = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label).strip("_") + ".json"
        (out / "results" / fname).write_text(json.dumps(c, indent=2))
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    md = summary_markdown(result)
    (out / "summary.md").write_text(md + "\n")
    ours = [label for label in result["curves"] if "(ours)" in label]
    paths = {"psnr": plot_rd(result["curves"], out / "rd_psnr.png", "psnr", title=f"{title}: PSNR", highlight=ours),
             "ms-ssim": plot_rd(result["curves"], out / "rd_msssim.png", "ms-ssim", title=f"{title}: MS-SSIM",
                                highlight=ours)}
    return {"markdown": md, "plots": paths}


def main(args) -> None:
    images = load_images(args.data, args.limit)
    checkpoints = args.models or [p.stem for p in shipped_checkpoints()]
    if not checkpoints:
        raise FileNotFoundError("no checkpoints given and none shipped in model/checkpoints")
    result = evaluate(images, checkpoints, args.codecs, tuple(args.anchor))
    written = write_outputs(result, args.out, f"{Path(args.data).name} ({len(images)} images)")
    print(written["markdown"])
    print(f"\nwrote {args.out}/summary.json, summary.md, results/*.json, "
          f"{written['plots']['psnr'].name}, {written['plots']['ms-ssim'].name}")

