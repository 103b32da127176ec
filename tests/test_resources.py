"""overlay/resources.py: the arithmetic of each counted item, the totals, the % of the board,
and agreement with FINN's own estimators (where .venv-finn exists) and with the committed
results/resources/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from .conftest import require

from licfpga.overlay import resources as R

ROOT = Path(__file__).resolve().parents[1]
FINN_PY = ROOT / ".venv-finn" / "bin" / "python"
TLAST_FIXED = {f"{t}.out": {"LUT": 10.0, "FF": 5.0, "DSP": 0, "BRAM36": 0, "URAM": 0} for t in R.TRANSFORMS}


def KERNEL_FIXED(module, params):
    return {"LUT": 7.0, "FF": 3.0, "DSP": 0, "BRAM36": 0, "URAM": 0}


@pytest.fixture(scope="module")
def inputs():
    return R.load_inputs()


def test_weight_lutram_is_64_bits_per_lut():
    # 1 PE x 1 SIMD x 8 bit, 64 words deep: 8 bit lanes of one RAM64X1 each
    assert R.weight_lutram_luts(1, 1, 8, 64) == 8
    # one word more needs a second LUT per lane
    assert R.weight_lutram_luts(1, 1, 8, 65) == 16
    # g_a's first MVAU at 1080p30: PE 10, SIMD 25, INT8, 9 words -> 2000 LUT
    assert R.weight_lutram_luts(10, 25, 8, 9) == 2000
    with pytest.raises(R.ResourceError, match="positive"):
        R.weight_lutram_luts(1, 1, 8, 0)


def test_fifo_depth_2_vs_1024():
    shallow, deep = R.fifo_cost(2, 8), R.fifo_cost(1024, 8)
    # depth 2: an SRL (4 stages minimum -> 1 SRLC32E per bit) + 5*cw - 7 control, cw = clog2(3)+1 = 3
    assert shallow == {"LUT": 8 + 5 * 3 - 7, "BRAM18": 0, "URAM": 0, "style": "srl"}
    # depth 1024 x 8 bit: one RAMB18 (1024 rows x 18 bit aspect) + 54 + 3 + 0 control LUTs
    assert deep == {"LUT": 57, "BRAM18": 1, "URAM": 0, "style": "block"}
    # LUTRAM FIFO: 256 rows x 8 bit = ceil(256/32)*ceil(8/2)*5/4 + 2*4 (mux) + 8*cw - 15, cw = clog2(201)+1 = 9
    assert R.fifo_cost(200, 8) == {"LUT": 40 + 8 + 8 * 9 - 15, "BRAM18": 0, "URAM": 0, "style": "distributed"}
    # a URAM-deep FIFO on a part without URAM is costed in BRAM
    assert R.fifo_cost(3000, 32)["style"] == "ultra" and R.fifo_cost(3000, 32, has_uram=False)["style"] == "block"
    with pytest.raises(R.ResourceError, match="width"):
        R.fifo_cost(4, 0)


def test_fifo_port_matches_finn():
    require(FINN_PY.exists(), ".venv-finn (make finn-env) for FINN's own fifo cost model")
    cases = [(2, 8), (5, 1), (34, 11), (64, 12), (78, 600), (257, 4), (257, 8), (258, 8), (300, 3), (1024, 8), (2028, 37),
             (3000, 32), (5000, 72), (20000, 144)]
    code = ("import json,sys\nfrom finn.util.resource_models import _fifo_cost,_resolve\n"
            "print(json.dumps([list(_fifo_cost(d,w,_resolve(d,w,'auto'))) for d,w in json.loads(sys.argv[1])]))")
    r = subprocess.run([str(FINN_PY), "-c", code, json.dumps(cases)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    finn = json.loads(r.stdout.strip().splitlines()[-1])
    ours = [[c["BRAM18"], c["URAM"], c["LUT"]] for c in (R.fifo_cost(d, w) for d, w in cases)]
    assert ours == finn


def test_mvau_logic_plus_weights_is_finn_hls_estimate(inputs):
    """The pure-Python MVAU terms reproduce FINN's HLS-MVAU lut_estimation (resType=dsp),
    recorded per node by --extract."""
    n_checked = 0
    for t in R.TRANSFORMS:
        for n in inputs["transforms"][t]["nodes"]:
            if not n["op_type"].startswith("MVAU"):
                continue
            ours = R.mvau_logic_luts(n["PE"], n["SIMD"], n["MW"], n["W"], n["A"], n["A_signed"], n["acc_bits"])
            if n["ram_style"] == "distributed":
                ours += R.weight_lutram_luts(n["PE"], n["SIMD"], n["W"], n["WMEM"])
            assert ours == n["finn_hls_lut_dsp"], (t, n["name"])
            n_checked += 1
    assert n_checked == 14


def _plain_adder_tree(n: int, w: int, signed: bool) -> str:
    """add_multi.sv's tree written out in plain Verilog (Yosys 0.23 cannot read finn-rtllib):
    heap order, node i the sum of nodes 2i+1 and 2i+2, every node registered, each as wide
    as mvu_pkg's sumwidth of the leaves below it (leaves: w bits, or [-1, 1] if signed)."""
    load = [0] * (n - 1) + [1] * n
    for i in range(n - 2, -1, -1):
        load[i] = load[2 * i + 1] + load[2 * i + 2]
    width = [(2 * k).bit_length() + 1 if signed else (k - 1).bit_length() + w for k in load]   # clog2(k) + w
    sg = "signed " if signed else ""
    v = [f"module tree(input clk, input [{n * w - 1}:0] a, output [{width[0] - 1}:0] s);"]
    v += [f"  wire {sg}[{width[i] - 1}:0] t{i};" for i in range(2 * n - 1)]
    v += [f"  assign t{i} = a[{(i - n + 1) * w}+:{w}];" for i in range(n - 1, 2 * n - 1)]
    v += [f"  reg {sg}[{width[i] - 1}:0] r{i}; always @(posedge clk) r{i} <= t{2 * i + 1} + t{2 * i + 2};"
          f" assign t{i} = r{i};" for i in range(n - 1)]
    return "\n".join(v + ["  assign s = t0;", "endmodule", ""])


@pytest.mark.parametrize("n, w, signed", [(5, 18, False), (8, 23, False), (75, 18, False), (16, 2, True)])
def test_add_multi_luts_is_yosys_on_the_same_tree(tmp_path, n, w, signed):
    """One LUT per sum bit but the carry out, as Yosys synth_xilinx maps the tree."""
    require(shutil.which("yosys"), "Debian yosys (make yosys)")
    (tmp_path / "tree.v").write_text(_plain_adder_tree(n, w, signed))
    r = subprocess.run(["yosys", "-q", "-p", "read_verilog tree.v; synth_xilinx -family xcup -top tree; "
                        "tee -o stat.txt stat"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    luts = sum(int(m) for m in re.findall(r"^\s+LUT[1-6]\s+(\d+)\s*$", (tmp_path / "stat.txt").read_text(), re.M))
    ours = R.add_multi_luts(n, 2, -1, 1) if signed else R.add_multi_luts(n, w)
    assert abs(ours - luts) <= 0.03 * luts, (ours, luts)     # dropping the carry-out rule is 4-8 % off


def test_rtl_mvu_lanes_fit_the_dsp():
    """mvu.sv's lane slicing: every lane but the last holds a full W x A product (cross-lane
    overflow confined to +-1), the low lanes fit the 27-bit A port beside the top weight and
    its sign bit, the last lane is ACCU_WIDTH wide up to the 48-bit P port; 2 int8 lanes per
    DSP48E2, 4 at 4 bit (mvu_vvu_axi.sv's header)."""
    for w in range(2, 13):
        for a in range(2, 13):
            lanes = R.rtl_mvu_lanes(w, a, 20)
            assert all(lw >= w + a - 1 for lw in lanes[:-1]), (w, a, lanes)
            assert sum(lanes[:-1]) + 1 + w <= R.DSP48E2_A_BITS, (w, a, lanes)
            assert lanes[-1] == min(20, R.DSP48E2_P_BITS - sum(lanes[:-1])), (w, a, lanes)
    assert len(R.rtl_mvu_lanes(8, 8, 20)) == 2 and len(R.rtl_mvu_lanes(4, 4, 20)) == 4
    assert R.rtl_mvu_lanes(8, 8, 40) == [18, 30]                          # the top lane ends at P bit 48


def test_rtl_mvu_fabric_luts_by_hand():
    """Counted by hand from mvu.sv, int8 x int8 on DSP48E2, ACCU_WIDTH 17: lane 0 is 18 bit
    (15 + the 3 slack bits of the 27-bit A port), lane 1 ACCU_WIDTH = 17 wide. PE 2, SIMD 2:
    one DSP column, trees over 2 leaves 19 - 1 and 18 - 1 LUTs, no overflow tree (17 <= 18),
    lane totals 2 x 17, canaries 2 SIMD x 1 extra PE x 5: 18 + 17 + 34 + 10 = 79. PE 1: only
    the top lane is built (PE_REM): 17 + 17 = 34."""
    assert R.rtl_mvu_lanes(8, 8, 17) == [18, 17]
    assert R.rtl_mvu_fabric_luts(2, 2, 8, 8, 17) == 79
    assert R.rtl_mvu_fabric_luts(1, 2, 8, 8, 17) == 34
    assert R.rtl_mvu_fabric_luts(3, 2, 8, 8, 17) == 79 + 34 and R.rtl_mvu_fabric_luts(4, 2, 8, 8, 17) == 2 * 79
    assert R.rtl_mvu_fabric_luts(2, 4, 8, 8, 17) > R.rtl_mvu_fabric_luts(2, 2, 8, 8, 17)


def test_threshold_comparators():
    assert R.threshold_comparator_luts(3, 21) == 63


def test_infra_rows_read_from_the_table(inputs):
    d = R.DESIGNS["whole encoder g_a+h_a+h_s (one design)"]
    rows = {it["item"].split(" x")[0]: it for it in R.infra_items(d, inputs, TLAST_FIXED)}
    # one input (RGB) and three outputs (y, z, scale codes): three DMAs
    assert rows["axi_dma"]["LUT"] == 3 * R.INFRA["axi_dma"]["LUT"]
    assert rows["axi_dma"]["BRAM36"] == 3 * R.INFRA["axi_dma"]["BRAM36"]
    assert rows["axi_dma"]["source"].startswith("assumption")
    assert rows["axis_frame_tlast"]["LUT"] == 3 * 10.0
    # the DMA streams are 32 bit, every transform stream here is 8 bit: 4 converters
    assert rows["axis_dwidth_converter"]["LUT"] == 4 * R.INFRA["axis_dwidth_converter"]["LUT"]


def _summary_row(board: str, transform: str) -> tuple[int, int, int]:
    """(LUT, DSP, BRAM18) of one transform's row in the committed FINN summary, read by a regex
    of its own (not resources.parse_finn_summary, which the tests check)."""
    text = (ROOT / "results" / "finn" / f"{board}_1080p30.md").read_text()
    m = re.search(rf"^\| {transform} \| {board} \|(?:[^|]*\|){{4}} ([\d,]+) \| (\d+) \| (\d+) \|", text, re.M)
    assert m, (board, transform)
    return tuple(int(g.replace(",", "")) for g in m.groups())


def test_totals_are_sums_and_percent_of_board(inputs):
    rep = R.account("kv260", inputs, tlast=TLAST_FIXED, kernel_cost=KERNEL_FIXED)
    board = json.loads((ROOT / "vivado" / "boards" / "kv260.json").read_text())["resources"]
    for name, d in rep["designs"].items():
        for k in R.KEYS:
            assert d["total"][k] == pytest.approx(sum(it[k] for it in d["items"])), (name, k)
            assert d["percent"][k] == pytest.approx(d["total"][k] / board[k]), (name, k)
        assert d["fits_90"] == all(d["percent"][k] <= 0.9 for k in ("LUT", "DSP", "BRAM36", "URAM"))
    # the base item is the FINN summary's per-transform figure (results/finn/kv260_1080p30.md)
    enc = rep["designs"]["encoder overlay, g_a only (format 1)"]
    row = _summary_row("kv260", "g_a")
    assert (enc["items"][0]["LUT"], enc["items"][0]["DSP"], enc["items"][0]["BRAM36"]) == (row[0], row[1], row[2] / 2)


def test_fits_and_percent_rules():
    res = {"LUT": 100, "FF": 100, "DSP": 10, "BRAM36": 10, "URAM": 0}
    pct = R.percent({"LUT": 90, "FF": 500, "DSP": 9, "BRAM36": 9, "URAM": 0}, res)
    assert pct["LUT"] == 0.9 and R.fits(pct)                      # exactly 90 % fits; FF is not checked
    assert not R.fits(R.percent({"LUT": 91, "FF": 0, "DSP": 0, "BRAM36": 0, "URAM": 0}, res))
    assert R.over(R.percent({"LUT": 0, "FF": 0, "DSP": 0, "BRAM36": 0, "URAM": 1}, res)) == ["URAM"]


def test_finn_summary_parse_and_uram_agree_with_side_totals(inputs):
    text = (ROOT / "results" / "finn" / "kv260_1080p30.md").read_text()
    finn = R.parse_finn_summary(text, "kv260")
    assert finn["g_s"] == dict(zip(("LUT", "DSP", "BRAM18"), _summary_row("kv260", "g_s")))
    # URAM per transform (from the build's per-node estimates) sums to the summary's side rows
    uram = {t: sum(n["finn"]["URAM"] for n in inputs["transforms"][t]["nodes"]) for t in R.TRANSFORMS}
    assert uram["g_a"] + uram["h_a"] + uram["h_s"] == 34 and uram["h_s"] + uram["g_s"] == 11
    with pytest.raises(R.ResourceError, match="no row"):
        R.parse_finn_summary(text.replace("| h_a |", "| x |"), "kv260")


def test_sim_depths_mapped_onto_1080p_edges(inputs):
    edges = R.fifo_plan(inputs["transforms"]["g_a"]["nodes"], inputs["g_a_sim_edges"])
    depths = json.loads((ROOT / "tests" / "hw" / "g_a_fifo_depths.json").read_text())
    by_edge = {e["edge"]: e for e in edges}
    # the FIFO before the first MVAU (StreamingFIFO_rtl_4 in the CI build) keeps its simulated depth
    assert by_edge["MVAU_rtl_0"]["depth"] == depths["StreamingFIFO_rtl_4"]
    assert by_edge["FMPadding_rtl_0"]["depth"] == depths["StreamingFIFO_rtl_0"]
    # a width converter's edge is named after the compute node feeding it (CI and 1080p number
    # their converters differently): the one after the first MVAU is StreamingFIFO_rtl_5
    assert by_edge["dwc_after:MVAU_rtl_0:1"]["depth"] == depths["StreamingFIFO_rtl_5"]
    assert sum(e["source"].startswith("simulated") for e in edges) >= 30


def test_tlast_counter_yosys():
    require(shutil.which("yosys"), "Debian yosys (make yosys)")
    small, big = R.tlast_yosys(8, 16), R.tlast_yosys(8, 46080)
    assert 0 < small["LUT"] < big["LUT"] < 100      # a 16-bit beat counter costs more than a 4-bit one
    assert big["FF"] >= 16


def test_whole_encoder_counts_its_on_chip_kernels(inputs):
    """The whole encoder holds two axis_broadcast (y, z) and one axis_abs (|y|) that no FINN
    build counts: each is an item, at the stream widths accel_top.py wires them with."""
    require(shutil.which("yosys"), "Debian yosys (make yosys)")
    enc = R.DESIGNS["whole encoder g_a+h_a+h_s (one design)"]
    items = R.kernel_items(enc, inputs)
    assert [it["item"].split(" ")[0] for it in items] == ["axis_broadcast", "axis_abs", "axis_broadcast"]
    y_bits = inputs["transforms"]["g_a"]["output_stream"]["width_bits"]
    assert f"DW={y_bits}" in items[0]["item"] and f"LANES={y_bits // 8}" in items[1]["item"]
    # |x| of int8 lanes is logic (LUTs), the broadcast's two done flags are FFs
    assert all(it["source"].startswith("Yosys") for it in items)
    assert items[1]["LUT"] >= y_bits // 8 and items[0]["FF"] >= 2
    # they are in the design's total; the one-transform designs hold none
    rep = R.account("kv260", inputs, tlast=TLAST_FIXED, kernel_cost=KERNEL_FIXED)
    names = [it["item"] for it in rep["designs"]["whole encoder g_a+h_a+h_s (one design)"]["items"]]
    assert sum(n.startswith(("axis_broadcast", "axis_abs")) for n in names) == 3
    assert not any(n.startswith("axis_broadcast") for n in
                   (it["item"] for it in rep["designs"]["encoder overlay, g_a only (format 1)"]["items"]))


def test_results_match_committed(tmp_path):
    require(shutil.which("yosys"), "Debian yosys (make yosys)")
    R.main(["--out", str(tmp_path)])
    committed = (ROOT / "results" / "resources" / "README.md").read_text()
    assert (tmp_path / "README.md").read_text() == committed, "rerun `make resources`"
