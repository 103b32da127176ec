"""FPGA-suitability report (model/analyze.py): traced figures against closed forms."""

import json

import pytest
import torch.nn as nn

from licfpga.model.analyze import analyze_model, main, report, trace
from licfpga.model.layers import conv, deconv
from licfpga.model.zoo import MODELS, build_model

N, M = 16, 24
PROBE = 128  # every zoo model tiles a 128 x 128 probe exactly (wacnn: 16 x 8-pixel windows)


def _gdn_macs(c: int, simplified: bool = False) -> int:
    return c * c + (c if simplified else 2 * c)


def _g_a_macs(n: int, m: int, simplified: bool = False) -> float:
    """conv(3,N,5,2) + GDN + conv(N,N,5,2) + GDN + conv(N,N,5,2) + GDN + conv(N,M,5,2), per
    input pixel: a stride-2 conv's output has 1/4 of its input's pixels."""
    return (3 * n * 25 / 4 + n * n * 25 / 16 + n * n * 25 / 64 + n * m * 25 / 256
            + _gdn_macs(n, simplified) * (1 / 4 + 1 / 16 + 1 / 64))


def _g_s_macs(n: int, m: int) -> float:
    """Real transposed-conv MACs: in_ch * out_ch * 25 per *input* pixel of each deconv."""
    return (m * n * 25 / 256 + n * n * 25 / 64 + n * n * 25 / 16 + n * 3 * 25 / 4
            + _gdn_macs(n) * (1 / 64 + 1 / 16 + 1 / 4))


def test_single_conv_and_deconv_against_formula():
    # conv(3, 8, 5, 2): output has H/2 x W/2 pixels, each 8 * 3 * 25 MACs -> 150 MACs / input px;
    # deconv(8, 4, 5, 2) on that H/2 x W/2 map: 8 * 4 * 25 per input pixel -> 200 MACs / input px
    recs, _ = trace(nn.Sequential(conv(3, 8), deconv(8, 4)), probe=64)
    c, d = recs
    assert c["label"] == "Conv2d 5x5/s2" and c["macs"] / 64 ** 2 == 3 * 8 * 25 / 4
    assert d["label"] == "ConvTranspose2d 5x5/s2" and d["macs"] / 64 ** 2 == 8 * 4 * 25 / 4
    # sub-pixel decomposition: 4 phases of a 3x3 conv = 36/25 of the real MACs
    assert d["macs_subpixel"] == d["macs"] * 36 // 25
    # line buffers: conv 4 lines of its input (width 64, 3 ch); deconv 2 input lines (32 px, 8 ch)
    # + 1 depth-to-space output line (64 px, 4 ch)
    assert c["buffers"] == [("conv", 4, 64, 3)]
    assert d["buffers"] == [("deconv", 2, 32, 8), ("depth_to_space", 1, 64, 4)]


@pytest.mark.parametrize("gdn", ["gdn", "simplified"])
def test_factorized_matches_closed_form(gdn):
    r = analyze_model("factorized", {"N": N, "M": M, "gdn": gdn}, width=1920, height=1080, probe=PROBE)
    simplified = gdn == "simplified"
    assert r["transforms"]["g_a"]["macs_per_px"] == pytest.approx(_g_a_macs(N, M, simplified))
    assert r["encoder"]["macs_per_px"] == pytest.approx(_g_a_macs(N, M, simplified))
    if not simplified:
        assert r["decoder"]["macs_per_px"] == pytest.approx(_g_s_macs(N, M))
    # encoder line buffers: 4 lines x width x in_channels for each 5x5 conv (int8)
    w = 1920
    assert r["encoder"]["line_buffer_bytes"] == 4 * (w * 3 + w // 2 * N + w // 4 * N + w // 8 * N)
    model = build_model("factorized", N=N, M=M, gdn=gdn)
    assert r["encoder"]["weight_bytes"] == sum(p.numel() for p in model.g_a.parameters())
    assert r["serial"] == [] and r["unmapped"] == [] and r["verdict"].startswith("good")
    assert r["padded"] == [1920, 1088]


def test_hyperprior_matches_closed_form():
    r = analyze_model("hyperprior", {"N": N, "M": M}, probe=PROBE)
    h_a = M * N * 9 / 256 + N * N * 25 / 1024 + N * N * 25 / 4096   # conv(M,N,3,1), conv(N,N) x2
    h_s = N * N * 25 / 4096 + N * N * 25 / 1024 + N * M * 9 / 256   # deconv x2, conv(N,M,3,1)
    t = r["transforms"]
    assert t["g_a"]["macs_per_px"] == pytest.approx(_g_a_macs(N, M))
    assert t["h_a"]["macs_per_px"] == pytest.approx(h_a)
    assert t["h_s"]["macs_per_px"] == pytest.approx(h_s)
    assert r["encoder"]["macs_per_px"] == pytest.approx(_g_a_macs(N, M) + h_a + h_s)
    assert r["decoder"]["macs_per_px"] == pytest.approx(h_s + _g_s_macs(N, M))
    assert [s["kind"] for s in r["serial"]] == ["hyperprior"]


def test_figures_do_not_depend_on_probe_size():
    a = analyze_model("wacnn", {"N": N, "M": M}, probe=128)
    b = analyze_model("wacnn", {"N": N, "M": M}, probe=256)
    for side in ("encoder", "decoder"):
        assert a[side]["macs_per_px"] == pytest.approx(b[side]["macs_per_px"])
        assert a[side]["line_buffer_bytes"] == b[side]["line_buffer_bytes"]


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_parameter_count(arch):
    r = analyze_model(arch, {"N": N, "M": M}, probe=PROBE)
    model = build_model(arch, N=N, M=M)
    assert r["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert sum(r["params"]["per_transform"].values()) == r["params"]["total"]


def test_report_covers_every_zoo_model(tmp_path):
    md, data = report(None, probe=PROBE)  # default widths
    assert [r["arch"] for r in data["models"]] == list(MODELS) + ["hyperprior"]   # + the student width
    assert json.loads(json.dumps(data))["models"][0]["arch"] == "factorized"
    table = md.split("## ")[0]
    for arch in MODELS:
        assert f"| {arch} (" in table and f"## {arch} (" in md
    by = {r["arch"]: r for r in data["models"]}
    for r in data["models"]:
        assert r["encoder"]["macs_per_px"] > 0 and r["decoder"]["macs_per_px"] > 0 and r["verdict"]
    assert {"softmax", "attention matmul (QK^T, AV)", "GELU"} <= set(by["wacnn"]["unmapped"])
    assert "GELU" in by["channelwise"]["unmapped"] and "tanh" in by["channelwise"]["unmapped"]
    assert not by["mean-scale"]["unmapped"] and by["hyperprior"]["trivial"] == ["abs"]
    cw = next(s for s in by["channelwise"]["serial"] if s["kind"] == "slices")
    assert cw["slices"] == 4 and cw["latent_lines_per_slice"] == 6   # 3 + 3 stride-1 3x3 convs
    attn = next(s for s in by["wacnn"]["serial"] if s["kind"] == "attention")
    assert attn["blocks"] == 4 and attn["max_image_lines"] == 8 * 16
    # encoder needs every LRP net but the last one; the decoder never runs g_a / h_a
    assert "lrp.3" not in by["channelwise"]["encoder"]["transforms"]
    assert not {"g_a", "h_a"} & set(by["channelwise"]["decoder"]["transforms"])


def test_main_writes_files(tmp_path, capsys):
    assert main(["--models", f"factorized:N={N},M={M}", "mean-scale", "--width", "640", "--height",
                 "480", "--probe", str(PROBE), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "analyze.json").read_text())
    assert [r["label"] for r in data["models"]] == ["factorized (N=16, M=24, gdn=gdn)",
                                                    "mean-scale (N=64, M=96, gdn=gdn)"]
    assert data["width"] == 640 and "mean-scale" in (tmp_path / "analyze.md").read_text()
