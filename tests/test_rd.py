"""Rate-distortion utilities (licfpga.host.rd): Bjøntegaard deltas, results files, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from licfpga.host.rd import bd_psnr, bd_rate, plot_rd, results_json

ROOT = Path(__file__).resolve().parents[1]

# A realistic concave RD curve (bpp, PSNR) with uneven spacing.
R1 = np.array([0.12, 0.25, 0.47, 0.81, 1.35])
D1 = np.array([27.1, 29.4, 31.8, 34.0, 36.3])


# ----------------------------------------------------------------------------- BD-rate

def test_curve_against_itself_is_zero():
    assert bd_rate(R1, D1, R1, D1) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(R1, D1, R1, D1) == pytest.approx(0.0, abs=1e-9)


def test_half_and_double_rate():
    assert bd_rate(R1, D1, R1 / 2, D1) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(R1, D1, R1 * 2, D1) == pytest.approx(100.0, abs=1e-6)


def test_log_linear_curves_have_exact_answers():
    # d = a ln r + b  -> PCHIP is exact; shifting d by c is a rate factor exp(-c / a).
    r = np.array([0.1, 0.22, 0.5, 0.9, 1.6])
    a, b, c = 6.0, 35.0, 0.5
    d = a * np.log(r) + b
    assert bd_rate(r, d, r, d + c) == pytest.approx((math.exp(-c / a) - 1) * 100, abs=1e-6)
    assert bd_psnr(r, d, r, d + c) == pytest.approx(c, abs=1e-9)


def test_sign_convention():
    better = D1 + 0.4  # same rate, higher PSNR: curve 2 saves bits and gains dB
    assert bd_rate(R1, D1, R1, better) < 0 < bd_psnr(R1, D1, R1, better)
    worse = D1 - 0.4
    assert bd_rate(R1, D1, R1, worse) > 0 > bd_psnr(R1, D1, R1, worse)


def test_antisymmetry_and_order_invariance():
    r2, d2 = R1 * 0.8, D1 + 0.1 * np.sin(np.arange(5))
    ab, ba = bd_rate(R1, D1, r2, d2), bd_rate(r2, d2, R1, D1)
    assert (1 + ab / 100) * (1 + ba / 100) == pytest.approx(1.0, abs=1e-12)
    perm = [3, 0, 4, 1, 2]
    assert bd_rate(R1[perm], D1[perm], r2[::-1], d2[::-1]) == pytest.approx(ab, abs=1e-12)
    assert bd_rate(list(R1), list(D1), tuple(r2), tuple(d2)) == pytest.approx(ab, abs=1e-12)


def test_two_points_suffice():
    assert bd_rate(R1[:2], D1[:2], R1[:2] / 2, D1[:2]) == pytest.approx(-50.0, abs=1e-6)


@pytest.mark.parametrize("args,match", [
    ((R1[:1], D1[:1], R1, D1), "at least 2"),
    ((R1, D1, R1[:1], D1[:1]), "at least 2"),
    ((R1, D1, R1, D1 + 20), "do not overlap"),
    ((R1, D1, R1[:4], D1), "values"),
    ((np.r_[0.0, R1[1:]], D1, R1, D1), "positive"),
    ((np.r_[-1.0, R1[1:]], D1, R1, D1), "positive"),
    ((R1, np.r_[D1[:4], D1[3]], R1, D1), "repeated"),
    ((R1, np.r_[D1[:4], np.nan], R1, D1), "finite"),
])
def test_bad_input_raises(args, match):
    with pytest.raises(ValueError, match=match):
        bd_rate(*args)


def test_bd_psnr_no_rate_overlap_raises():
    with pytest.raises(ValueError, match="do not overlap"):
        bd_psnr(R1, D1, R1 * 100, D1)


# ----------------------------------------------------------------------------- results

def _rows():
    # 2 images x 3 qualities, given out of order.
    rows = []
    for img, scale in (("a.png", 1.0), ("b.png", 2.0)):
        for q, bpp, p, s in ((50, 0.5, 30.0, 0.95), (10, 0.1, 25.0, 0.90), (90, 1.5, 38.0, 0.99)):
            rows.append({"image": img, "quality": q, "bytes": 123, "bpp": bpp * scale,
                         "psnr": p + scale, "ms_ssim": s})
    return rows


def test_results_json_structure_and_means():
    out = results_json("JPEG", _rows())
    assert set(out) == {"name", "description", "results", "per_image"}
    assert out["name"] == "JPEG" and isinstance(out["description"], str) and out["description"]
    res = out["results"]
    assert set(res) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "quality"}
    assert all(len(v) == 3 for v in res.values())
    assert res["quality"] == [10, 50, 90]  # sorted by mean bpp
    assert res["bpp"] == pytest.approx([0.15, 0.75, 2.25])
    assert res["psnr-rgb"] == pytest.approx([26.5, 31.5, 39.5])
    assert res["ms-ssim-rgb"] == pytest.approx([0.90, 0.95, 0.99])
    assert res["ms-ssim-rgb-db"] == pytest.approx([10.0, -10 * math.log10(0.05), 20.0])
    assert len(out["per_image"]) == 6 and out["per_image"][0]["image"] == "a.png"
    json.loads(json.dumps(out, allow_nan=False))


def test_results_json_nan_becomes_null_and_checks_images():
    rows = _rows()
    for r in rows:
        r["ms_ssim"] = float("nan")  # e.g. images under 161 px
    out = results_json("tiny", rows)
    assert out["results"]["ms-ssim-rgb"] == [None, None, None]
    assert out["results"]["ms-ssim-rgb-db"] == [None, None, None]
    text = json.dumps(out, allow_nan=False)  # strict JSON
    assert "NaN" not in text
    with pytest.raises(ValueError, match="different numbers"):
        results_json("x", _rows()[:-1])
    rows = _rows()
    rows[0]["image"] = "c.png"
    with pytest.raises(ValueError, match="different images"):
        results_json("x", rows)
    with pytest.raises(ValueError):
        results_json("x", [])
    lam = [{"lambda": 0.0130, "bpp": 0.4, "psnr": 31.0, "ms_ssim": 0.97}]
    assert results_json("ours", lam)["results"]["lambda"] == [0.013]


# ----------------------------------------------------------------------------- plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curves():
    a = results_json("JPEG", _rows())
    rows = _rows()
    for r in rows:
        r["psnr"] += 2.0
        r["ms_ssim"] = 1 - (1 - r["ms_ssim"]) * 0.7
    b = results_json("Ours (lambda)", rows)
    return [a, b]


@pytest.mark.parametrize("metric", ["psnr", "ms-ssim"])
def test_plot_rd_writes_png(tmp_path, metric):
    path = plot_rd(_curves(), tmp_path / "sub" / f"rd_{metric}.png", metric=metric, highlight="Ours (lambda)")
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    with Image.open(path) as im:
        assert im.size[0] >= 800 and im.size[1] >= 500


def test_plot_rd_accepts_mapping_and_rejects_bad_input(tmp_path):
    curves = {"anchor": {"bpp": [0.1, 0.5, 1.0], "psnr-rgb": [26, 31, 35]}}
    assert plot_rd(curves, tmp_path / "m.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="unknown metric"):
        plot_rd(curves, tmp_path / "x.png", metric="vmaf")
    with pytest.raises(ValueError, match="no ms-ssim"):
        plot_rd(curves, tmp_path / "y.png", metric="ms-ssim")
    rows = _rows()
    for r in rows:
        r["ms_ssim"] = None
    with pytest.raises(ValueError, match="no finite"):
        plot_rd([results_json("tiny", rows)], tmp_path / "z.png", metric="ms-ssim")
    with pytest.raises(ValueError):
        plot_rd([], tmp_path / "e.png")
