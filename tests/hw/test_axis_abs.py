"""hls/axis_abs/axis_abs.sv vs NumPy: every output lane is |x| of its signed input lane as
an unsigned number of the same width (|-2^(EW-1)| = 2^(EW-1)), under random idle cycles on
the source and random back-pressure on the sink (cocotb + Verilator); random data, the
extremes (-128, -127, -1, 0, 1, 127 for 8-bit lanes; every 4-bit value), all zeros. A
free-running frame must pass one beat per cycle."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import lint, run_cocotb
from cocotb_util import runner as cocotb_runner

ROOT = Path(__file__).resolve().parents[2]
RTL = ROOT / "hls" / "axis_abs" / "axis_abs.sv"
BUILD = Path(__file__).resolve().parent / "sim_build" / "axis_abs"
TOP = "axis_abs"
CONFIGS = {"lanes1_ew8": dict(LANES=1, EW=8), "lanes3_ew8": dict(LANES=3, EW=8), "lanes2_ew4": dict(LANES=2, EW=4)}

try:
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge
except ImportError:  # pragma: no cover
    cocotb = None


def pack(lanes: np.ndarray, ew: int, n_lanes: int) -> bytes:
    """[beats * n_lanes] lane values (two's complement / unsigned, ew bits) -> beat bytes,
    lane k at bits [k*ew, (k+1)*ew) of its beat (little-endian bytes, cocotbext-axi's order)."""
    v = lanes.astype(np.int64) & ((1 << ew) - 1)
    beats = v.reshape(-1, n_lanes)
    words = np.zeros(beats.shape[0], dtype=object)
    for k in range(n_lanes):
        words = words + (beats[:, k].astype(object) << (k * ew))
    nb = (n_lanes * ew + 7) // 8
    return b"".join(int(w).to_bytes(nb, "little") for w in words)


def abs_reference(x: np.ndarray, ew: int) -> np.ndarray:
    """|x| of signed ew-bit lanes, as unsigned ew-bit lanes (np.abs in int64: no wrap)."""
    return np.abs(x.astype(np.int64))


if cocotb is not None:

    @cocotb.test()
    async def abs_frames(dut):
        from cocotbext.axi import AxiStreamFrame
        from cocotb_util import axis_endpoints, pause_gen, receive_bytes

        case = np.load(os.environ["ABS_CASE"])
        ins, outs, nbytes = case["ins"], case["outs"], int(case["beat_bytes"])      # packed bytes per frame
        rng = random.Random(int(case["seed"]))
        src, sink = axis_endpoints(dut, dut.clk, dut.rst_n, 10)
        beats_at: list[int] = []

        async def monitor():
            cycle = 0
            while True:
                await RisingEdge(dut.clk)
                cycle += 1
                if dut.m_axis_tvalid.value == 1 and dut.m_axis_tready.value == 1:
                    beats_at.append(cycle)

        dut.rst_n.value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst_n.value = 1
        cocotb.start_soon(monitor())
        timeout = 100 * ins.shape[1] + 2000
        for k in range(ins.shape[0] - 1):
            src.set_pause_generator(pause_gen(rng, 0.3))
            sink.set_pause_generator(pause_gen(rng, [0.5, 0.1, 0.8][k % 3]))
            await src.send(AxiStreamFrame(ins[k].tobytes()))
            got = np.frombuffer(await receive_bytes(dut.clk, sink, ins.shape[1], timeout), dtype=np.uint8)
            bad = np.flatnonzero(got != outs[k])
            assert bad.size == 0, f"frame {k}: {bad.size} bytes differ, first at byte {bad[0]} (beat {bad[0] // nbytes}): " \
                                  f"got {got[bad[0]]:#04x}, expected {outs[k][bad[0]]:#04x}"
        await ClockCycles(dut.clk, 20)
        assert sink.empty(), "extra output beats"
        src.clear_pause_generator()
        sink.clear_pause_generator()
        src.pause = sink.pause = False
        await ClockCycles(dut.clk, 2)
        first = len(beats_at)
        await src.send(AxiStreamFrame(ins[-1].tobytes()))
        got = await receive_bytes(dut.clk, sink, ins.shape[1], timeout)
        assert got == outs[-1].tobytes(), "free-running frame differs"
        t = beats_at[first:]
        assert len(t) == ins.shape[1] // nbytes and t[-1] - t[0] + 1 == len(t), "not one beat per cycle"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_axis_abs_lint_clean(name, verilator_env):
    lint([RTL], CONFIGS[name])


@pytest.mark.slow                    # RTL simulation (Verilator build + cocotb)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_axis_abs(name, verilator_env, tmp_path):
    cfg = CONFIGS[name]
    lanes, ew = cfg["LANES"], cfg["EW"]
    lo, hi = -(1 << (ew - 1)), (1 << (ew - 1)) - 1
    seed = 60 + list(CONFIGS).index(name)
    rng = np.random.default_rng(seed)
    n = 90 * lanes                          # lane values per frame (90 beats)
    extremes = np.array(sorted({lo, lo + 1, -1, 0, 1, hi - 1, hi}))
    frames = [rng.integers(lo, hi + 1, n), rng.choice(extremes, n), np.zeros(n, dtype=np.int64),
              np.resize(np.arange(lo, hi + 1), n),                                    # every value
              rng.integers(lo, hi + 1, n)]
    ins = np.stack([np.frombuffer(pack(f, ew, lanes), dtype=np.uint8) for f in frames])
    outs = np.stack([np.frombuffer(pack(abs_reference(f, ew), ew, lanes), dtype=np.uint8) for f in frames])
    assert abs_reference(np.array([lo]), ew)[0] == 1 << (ew - 1)      # the one value whose |x| needs the sign bit
    case = tmp_path / "case.npz"
    np.savez(case, ins=ins, outs=outs, beat_bytes=(lanes * ew + 7) // 8, seed=seed)
    bdir = BUILD / name
    bdir.mkdir(parents=True, exist_ok=True)
    runner = cocotb_runner()
    runner.build(sources=[RTL], hdl_toplevel=TOP, parameters=dict(cfg), build_dir=bdir, timescale=("1ns", "1ps"),
                 log_file=bdir / "build.log")
    run_cocotb(runner, bdir, tmp_path, "test_axis_abs", TOP, "abs_frames", seed, {"ABS_CASE": str(case)},
               bdir / "sim.log")
