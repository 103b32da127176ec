"""Kodak point of the campaign teacher beside the shipped teacher it started from (report only:
Kodak is the test set, never used for a choice). Real .lic files (header + CRC included),
decoded again; mean bpp and PSNR over the 24 images. "vs JPEG at that PSNR": the rate JPEG
needs for the same mean PSNR, interpolated (log-rate, linear in PSNR) on the JPEG curve coded
in the same run with the project's classical-codec wrapper (Pillow, 4:2:0).

    .venv/bin/python runs/campaign_kodak.py [--out results/training/campaign/kodak.json]
"""
import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from licfpga.host import classical
from licfpga.host.codec import Codec
from licfpga.host.evaluate import load_images, measure_learned

p = argparse.ArgumentParser()
p.add_argument("--data", default="../shared/data/kodak")
p.add_argument("--models", nargs="+", default=["mean-scale-0.013", "model/checkpoints/campaign/teacher-ms64-0.013.pt"])
p.add_argument("--out", default="results/training/campaign/kodak.json")
a = p.parse_args()
images = load_images(a.data)
rows = {}
for m in a.models:
    codec = Codec.load(m)
    r = [measure_learned(codec, n, img)[0] for n, img in images]
    rows[m] = {"bpp": float(np.mean([x["bpp"] for x in r])), "psnr": float(np.mean([x["psnr"] for x in r])),
               "step_pixels": codec.state["meta"].get("pixels")}
jpeg = classical.get_codec("jpeg")
from licfpga.host.metrics import bpp, psnr
curve = []
for q in (10, 20, 30, 40, 55):
    b, d = [], []
    for _, img in images:
        data = jpeg.encode(img, q)
        b.append(bpp(len(data), *img.shape[:2]))
        d.append(psnr(img, jpeg.decode(data)))
    curve.append((float(np.mean(b)), float(np.mean(d))))
rate, dist = np.log([c[0] for c in curve]), np.array([c[1] for c in curve])
for m, r in rows.items():
    jpeg_bpp = float(np.exp(np.interp(r["psnr"], dist, rate)))
    r["jpeg_bpp_at_same_psnr"] = jpeg_bpp
    r["vs_jpeg_at_same_psnr"] = r["bpp"] / jpeg_bpp - 1
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
out = {"images": len(images), "commit": commit, "command": "runs/campaign_kodak.py", "jpeg_curve": curve, "models": rows}
Path(a.out).write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
