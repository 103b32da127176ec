"""Planner (licfpga.overlay.plan / costmodel): folding rules, cycle formula, budget, verdicts."""

import json

import pytest

from licfpga.overlay import deconv
from licfpga.overlay import plan as planmod
from licfpga.overlay.boards import BoardError, load_board
from licfpga.overlay.costmodel import (Layer, budget_of, fold, side_layers, subpixel_kernel,
                                       usage)


def test_cycles_formula_hand_computed():
    # g_a.2 of N=32 at 1920x1088: input 544x960x32 -> 272x480x32, MW = 5*5*32 = 800, MH = 32.
    layer = Layer("g_a.2", "conv", 32, 32, 5, 2, 544, 960, pe=4, simd=20)
    assert (layer.h_out, layer.w_out, layer.mw, layer.mh) == (272, 480, 800, 32)
    assert layer.cycles == 272 * 480 * (800 // 20) * (32 // 4) == 41_779_200
    # sub-pixel transposed conv: 3x3 over the *input*, 4*Cout outputs
    d = Layer("g_s.0", "deconv", 48, 30, 5, 2, 68, 120, pe=2, simd=9)
    assert (d.mw, d.mh, d.h_out, d.w_out) == (9 * 48, 4 * 30, 136, 240)
    assert d.cycles == 68 * 120 * (432 // 9) * (120 // 2)
    # GDN: C*C/PE cycles per pixel (measured in RTL simulation), replicas split pixels
    g = Layer("g_a.1", "gdn", 64, 64, 1, 1, 10, 10, pe=8, replicas=2)
    assert g.cycles == 100 * 64 * 64 // (8 * 2)


def test_subpixel_kernel_matches_deconv_module():
    for k, s in [(5, 2), (3, 2), (3, 1), (7, 2)]:
        assert subpixel_kernel(k, s) == deconv.subpixel_geometry(k, s, k // 2, s - 1).sub_kernel
    m = deconv.mac_counts(48, 30, 5, 2, 17, 30)
    assert Layer("x", "deconv", 48, 30, 5, 2, 17, 30).macs == m["subpixel"]


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_folding_legal_and_within_budget(side):
    budget = budget_of(load_board("kv260")["resources"], 0.9)
    f = fold(side_layers(side, 30, 48, 1088, 1920), 200_000_000 // 30, budget)
    for layer in f.layers:
        assert layer.legal()
        if not layer.is_gdn:
            assert layer.mh % layer.pe == 0 and layer.mw % layer.simd == 0
        else:
            assert layer.cin % layer.pe == 0
    assert f.usage.fits(budget)
    assert f.usage.total == usage(f.layers, budget).total
    if f.meets:
        assert f.max_cycles <= f.target_cycles


def test_plan_respects_budget_fraction():
    p = planmod.plan("kv260", 1280, 720, 30, "encoder", budget_fraction=0.5)
    for r in p["widths"]:
        if r["limit"] != "no-fit":
            assert all(r["total"][k] <= r["budget"][k] for k in r["budget"])
    assert p["widths"][0]["budget"]["DSP"] == int(1248 * 0.5)


def test_infeasible_message():
    p = planmod.plan("kv260", 3840, 2160, 240, "encoder")
    assert p["chosen_N"] is None
    assert p["verdict"].startswith("infeasible: best achievable ")
    assert "fps at width N=" in p["verdict"]


def test_feasible_small_target_picks_widest():
    p = planmod.plan("zcu102", 1280, 720, 1, "decoder", widths=(16, 32, 64))
    assert p["verdict"].startswith("meets 1 fps")
    ok = [r["N"] for r in p["widths"] if r["meets"]]
    assert p["chosen_N"] == max(ok)


def test_unknown_board(capsys):
    with pytest.raises(BoardError, match="unknown board 'x'; available: kv260, zcu102"):
        planmod.plan("x", 1920, 1080, 30)
    assert planmod.main(["--board", "x"]) == 2
    assert "available: kv260, zcu102" in capsys.readouterr().err


def test_cli_writes_json_and_md(tmp_path, capsys):
    js, md = tmp_path / "p.json", tmp_path / "p.md"
    rc = planmod.main(["--board", "zcu102", "--resolution", "1280x720", "--fps", "30",
                       "--widths", "16,24", "--json", str(js), "--md", str(md)])
    assert rc == 0
    data = json.loads(js.read_text())
    assert data["board"] == "zcu102" and [r["N"] for r in data["widths"]] == [16, 24]
    assert "Verdict:" in md.read_text() and "Verdict:" in capsys.readouterr().out


def test_build_parser_defaults():
    args = planmod.build_parser().parse_args([])
    assert (args.board, args.resolution, args.fps, args.budget) == ("kv260", (1920, 1080), 30.0, 0.9)


def test_fastest_at_width_stops_at_the_budget_and_slows_with_the_frame():
    """The deployed-width table: each side folded until the next step would exceed the
    budget, so it is at least as fast as the 30-fps folding, within budget, and its fps
    falls as the padded frame grows (720p > 1080p > 4K)."""
    N = planmod.shipped_width()
    assert N == json.loads((planmod.REPO / "model" / "checkpoints" / "int-student-0.013.json").read_text()
                           )["meta"]["student_kwargs"]["N"]
    fps = []
    for w, h in ((1280, 720), (1920, 1080), (3840, 2160)):
        r = planmod.fastest_at_width("kv260", N, w, h, "encoder")
        assert r["limit"] in ("resources", "throughput") and r["N"] == N
        assert all(r["total"][k] <= r["budget"][k] for k in r["budget"])
        at30 = planmod.plan("kv260", w, h, 30, "encoder", widths=(N,))["widths"][0]
        assert r["fps"] >= at30["fps"]
        fps.append(r["fps"])
    assert fps[0] > fps[1] > fps[2]
    # the one step the folding refused would have exceeded the budget it names
    if r["limit"] == "resources":
        assert r["blocked_by"]


def test_planner_vs_full_count_quotes_the_committed_resources():
    text = " ".join(planmod.planner_vs_full_count(planmod.shipped_width()))
    full = json.loads((planmod.REPO / "results" / "resources" / "resources.json").read_text())
    kv = next(r for r in full["reports"] if r["board"] == "kv260")
    enc = kv["designs"]["whole encoder g_a+h_a+h_s (one design)"]
    assert f"{enc['total']['LUT']:,.0f}" in text and f"{enc['total_mvau_structural']['LUT']:,.0f}" in text
    planner = planmod.plan("kv260", 1920, 1080, 30, "encoder", widths=(planmod.shipped_width(),))["widths"][0]
    assert f"{planner['total']['LUT']:,}" in text
    agree = planner["meets"] == enc["fits_90"]          # the same assumption: MVAU logic at FINN's HLS estimate
    assert ("Both say" in text) == agree and ("disagree" in text) == (not agree)
    assert ("undecided" in text) == (enc["fits_90"] != enc["fits_90_mvau_structural"])


def test_requantisers_are_thresholds_as_the_flow_builds_them():
    """FINN builds a Thresholding_rtl layer after every MVAU (255 thresholds per channel in
    LUTRAM), not a multiply-shift in DSPs: the planner counts those LUTs and no requantiser
    DSP. Checked against FINN's estimates of the compiled 1080p30 build's threshold layers."""
    from licfpga.overlay.costmodel import threshold_luts
    inputs = json.loads((planmod.REPO / "results" / "resources" / "inputs_1080p30.json").read_text())
    ours = finn = 0
    for t in inputs["transforms"].values():
        for n in t["nodes"]:
            if n["op_type"].startswith("Thresholding"):
                o = threshold_luts(n["NumChannels"], n["PE"], n["A"])
                # per layer within 15 %: FINN stores thresholds at a width it picks from their values,
                # the planner at the accumulator's (h_a's last layer: 25-bit thresholds, 22-bit acc)
                assert o >= 0.85 * n["finn"]["LUT"], n["name"]
                ours, finn = ours + o, finn + n["finn"]["LUT"]
    assert finn <= ours <= 1.5 * finn
    # an MVAU's DSPs are its multipliers only (2 int8 lanes per DSP48E2), LUTs include the thresholds
    layer = Layer("x", "conv", 30, 30, 5, 2, 64, 64, pe=4, simd=25)
    r = layer.compute()
    assert r["DSP"] == 2 * 25
    assert r["LUT"] > threshold_luts(30, 4, 23)
