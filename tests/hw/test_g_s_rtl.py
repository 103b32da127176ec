"""The whole synthesis transform g_s (the decoder) in RTL: FINN's generated layers + our
IGDN (hls/gdn/) and depth-to-space (hls/depth_to_space/) kernels, stitched
(overlay/rtl_stitch.py), simulated by Verilator under cocotb, bit-exact with the integer
model.

The decoder's four transposed convolutions run as sub-pixel convolutions (FINN MVAUs with
4*C_out outputs) followed by our DepthToSpace_rtl (overlay/finn_flow.py SubPixelDeconv,
overlay/finn_d2s.py). Pytest side, once per session: export g_s of the shipped QAT student
for a 64x64 image (y: 4x4x48), the FINN+ flow (golden thresholds, StreamingFIFO_rtl of depth
``FIFO_DEPTH`` on every edge, RTL of every layer), stitch, Verilator build (tests/hw/stitched.py). Stimulus: the latents y that the integer model's g_a gives for 64x64 crops
of the shipped samples; expected: the integer model's g_s of them (uint8 RGB).

cocotb side (``g_s_stream``): ``N_FREE`` frames back to back with no idle and no
back-pressure (steady-state interval between the last output beats of consecutive frames,
compared with FINN's estimate: the slowest layer's ``get_exp_cycles``), then one frame with
random idle cycles on the source and random back-pressure on the sink.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import run_cocotb
from stitched import export_flow_stitch, verilator_build

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(__file__).resolve().parent / "sim_build" / "g_s"
SIZE = 64                  # image size: y is SIZE/16 x SIZE/16 x M
TARGET_CYCLES = 50_000     # folding target, cycles/frame (short simulation)
FIFO_DEPTH = 256
N_FREE = 3
TOP = "g_s_top"

try:
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge
except ImportError:  # pragma: no cover - the pytest side reports the missing package
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def g_s_stream(dut):
        from cocotb_util import axis_endpoints, pause_gen, receive_bytes
        from cocotbext.axi import AxiStreamFrame

        case = np.load(os.environ["G_S_CASE"])
        y, x = case["y"], case["x"]                  # [F, h, w, M] int8 in, [F, H, W, 3] uint8 out
        out_len = int(np.prod(x.shape[1:]))
        rng = random.Random(int(case["seed"]))
        src, sink = axis_endpoints(dut, dut.ap_clk, dut.ap_rst_n, 5, "s_axis_0", "m_axis_0")
        out_cycles: list[int] = []
        cycle = 0

        async def monitor():
            nonlocal cycle
            while True:
                await RisingEdge(dut.ap_clk)
                cycle += 1
                if dut.m_axis_0_tvalid.value == 1 and dut.m_axis_0_tready.value == 1:
                    out_cycles.append(cycle)

        dut.ap_rst_n.value = 0
        await ClockCycles(dut.ap_clk, 32)          # > the DSPs' 100 ns start-up (mvu.sv)
        dut.ap_rst_n.value = 1
        await ClockCycles(dut.ap_clk, 4)
        cocotb.start_soon(monitor())
        out_beat_bytes = int(case["out_bytes"])

        async def receive(n_bytes: int, timeout_cycles: int) -> bytes:
            return await receive_bytes(dut.ap_clk, sink, n_bytes, timeout_cycles)

        def check(got: bytes, k: int, what: str):
            g = np.frombuffer(got, dtype=np.uint8).reshape(x.shape[1:])
            bad = np.argwhere(g != x[k])
            assert bad.size == 0, (f"frame {k} ({what}): {len(bad)} of {g.size} pixels differ, first "
                                   "(row, col, ch, got, expected): " + ", ".join(
                                       f"({r},{c},{ch},{g[r, c, ch]},{x[k][r, c, ch]})" for r, c, ch in bad[:8]))

        timeout = 20 * int(case["est_cycles"]) + 200_000
        for k in range(N_FREE):
            await src.send(AxiStreamFrame(y[k].astype(np.int8).tobytes()))
        ends = []
        for k in range(N_FREE):
            check(await receive(out_len, timeout), k, "free running")
            ends.append(out_cycles[-1])
        await ClockCycles(dut.ap_clk, 200)
        assert sink.empty() and len(out_cycles) * out_beat_bytes == N_FREE * out_len, "extra output beats"
        src.set_pause_generator(pause_gen(rng, 0.3))
        sink.set_pause_generator(pause_gen(rng, 0.5))
        await src.send(AxiStreamFrame(y[N_FREE].astype(np.int8).tobytes()))
        check(await receive(out_len, timeout), N_FREE, "idle + back-pressure")
        await ClockCycles(dut.ap_clk, 200)
        assert sink.empty() and len(out_cycles) * out_beat_bytes == (N_FREE + 1) * out_len, "extra output beats"
        res = {"frame_end_cycles": ends, "intervals": list(np.diff(ends).tolist()), "total_cycles": cycle}
        dut._log.info("g_s RTL: %s", res)
        with open(os.environ["G_S_CASE"] + ".json", "w") as fh:
            json.dump(res, fh)


# ==================================================================== pytest side
@pytest.fixture(scope="module")
def g_s_rtl(verilator_env):
    """Export -> FINN flow -> RTL codegen -> stitch -> Verilator build."""
    info, integer, t = export_flow_stitch("g_s", BUILD, SIZE, TARGET_CYCLES, FIFO_DEPTH, top=TOP)
    t0 = time.time()
    runner = verilator_build([Path(f) for f in info["stitch"]["sim_files"]], TOP, BUILD / "verilator",
                             f'public_flat_rw -module "{TOP}" -var "*"\n')
    t["verilator_build_s"] = time.time() - t0
    return runner, info, t, integer


@pytest.mark.slow                    # RTL simulation (Verilator build + cocotb): minutes on 2 cores
def test_g_s_rtl_bit_exact(g_s_rtl, tmp_path):
    """y (4x4x48 int8) -> 64x64 RGB through the stitched decoder RTL == IntegerModel; the
    measured cycles/frame within 5 % of FINN's estimate."""
    from test_g_a_rtl import _crops

    from licfpga.model.golden.network import IntegerModel

    runner, info, timings, integer = g_s_rtl
    flow, st = info["flow"], info["stitch"]
    assert flow["codegen"]["rtl_failed"] == {} and flow["codegen"]["hls_not_generated"] == []
    kinds = [n["op_type"] for n in st["nodes"]]
    assert set(kinds) <= {"FMPadding_rtl", "ConvolutionInputGenerator_rtl", "StreamingDataWidthConverter_rtl",
                          "StreamingFIFO_rtl", "MVAU_rtl", "Thresholding_rtl", "GDN_rtl", "DepthToSpace_rtl"}, kinds
    assert kinds.count("DepthToSpace_rtl") == 4 and kinds.count("GDN_rtl") == 3 and kinds.count("MVAU_rtl") == 4
    proof = flow["threshold_proof"]
    assert proof["exact"] and all(proof["rtl_memories_equal"].values())
    ours = sorted(Path(f).name for f in st["sim_files"] if "finn-rtllib" not in f and "/ip/" not in f)
    assert ours == sorted([f"{TOP}.sv", "add_multi.sv", "fifo.sv"]), ours

    im = IntegerModel.load(integer)
    crops = _crops(N_FREE + 1)
    y = np.stack([im.run_transform("g_a", c.transpose(2, 0, 1).astype(np.int64)) for c in crops])   # [F, M, h, w]
    x = np.stack([np.moveaxis(im.run_transform("g_s", yy), 0, -1) for yy in y])                     # [F, H, W, 3]
    assert x.shape == (N_FREE + 1, SIZE, SIZE, 3) and x.min() >= 0 and x.max() <= 255
    case = tmp_path / "case.npz"
    est = st["max_exp_cycles"]
    np.savez(case, y=np.moveaxis(y, 1, -1).astype(np.int8), x=x.astype(np.uint8), seed=29, est_cycles=est,
             out_bytes=st["output"]["stream_width"] // 8)
    for m in st["meminit"]:
        shutil.copy(m, tmp_path / Path(m).name)
    t0 = time.time()
    run_cocotb(runner, BUILD / "verilator", tmp_path, "test_g_s_rtl", TOP, "g_s_stream", 29, {"G_S_CASE": str(case)},
               BUILD / "sim.log")
    timings["simulation_s"] = time.time() - t0
    res = json.loads(Path(str(case) + ".json").read_text())
    ii = float(np.mean(res["intervals"]))
    report = {"bit_exact_frames": N_FREE + 1, "est_cycles_per_frame": est, "bottleneck": st["bottleneck"],
              "measured_cycles_per_frame": ii, "intervals": res["intervals"], "ratio": ii / est, **timings}
    (BUILD / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    assert abs(ii - est) <= 0.05 * est, f"cycles/frame measured {ii} vs estimate {est} ({st['bottleneck']})"
