"""hls/axis_broadcast/axis_broadcast.sv: both outputs receive exactly the input stream, each
beat once, under random idle cycles on the source and independent random back-pressure on
the two sinks (cocotb + Verilator). Reference: the sent bytes themselves (NumPy arrays of
random data with the extremes 0x00/0xFF, -128/127 as int8, all-zero runs).

Besides the data, a monitor checks the handshake every cycle: the input beat is consumed
only in a cycle where each output has accepted it (now or earlier), no output runs more
than one beat ahead of the input, and with no idle and no back-pressure one beat passes
per cycle."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import lint, run_cocotb
from cocotb_util import runner as cocotb_runner

ROOT = Path(__file__).resolve().parents[2]
RTL = ROOT / "hls" / "axis_broadcast" / "axis_broadcast.sv"
BUILD = Path(__file__).resolve().parent / "sim_build" / "axis_broadcast"
TOP = "axis_broadcast"
CONFIGS = {"dw8": dict(DW=8), "dw24": dict(DW=24)}

try:
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge
except ImportError:  # pragma: no cover
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def broadcast_frames(dut):
        import logging

        from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink
        from cocotb_util import axis_endpoints, pause_gen, receive_bytes

        case = np.load(os.environ["BCAST_CASE"])
        frames, nbytes = case["frames"], int(case["beat_bytes"])        # [F, bytes] uint8
        rng = random.Random(int(case["seed"]))
        src, sink0 = axis_endpoints(dut, dut.clk, dut.rst_n, 10, "s_axis", "m0_axis")
        sink1 = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m1_axis"), dut.clk, dut.rst_n, reset_active_level=False)
        sink1.log.setLevel(logging.WARNING)
        n_in, n_out, errors = 0, [0, 0], []
        free_cycles: list[int] = []          # cycles with an input handshake while free running
        free = False

        async def monitor():
            nonlocal n_in
            while True:
                await RisingEdge(dut.clk)
                if not dut.rst_n.value:
                    continue
                take = [int(getattr(dut, f"m{i}_axis_tvalid").value) and int(getattr(dut, f"m{i}_axis_tready").value)
                        for i in (0, 1)]
                consumed = int(dut.s_axis_tvalid.value) and int(dut.s_axis_tready.value)
                for i in (0, 1):
                    n_out[i] += take[i]
                    if n_out[i] > n_in + 1:
                        errors.append(f"output {i} took beat {n_out[i]} before the input had beat {n_in + 1}")
                n_in += consumed
                if consumed and min(n_out) < n_in:
                    errors.append(f"input beat {n_in} consumed before both outputs took it ({n_out})")
                if consumed and free:
                    free_cycles.append(cocotb.utils.get_sim_time("ns"))

        dut.rst_n.value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst_n.value = 1
        cocotb.start_soon(monitor())
        timeout = 100 * frames.shape[1] + 2000
        # ---- idle + independent back-pressure on the two sinks (several patterns)
        for k, (p_src, p0, p1) in enumerate([(0.3, 0.5, 0.2), (0.0, 0.7, 0.0), (0.5, 0.0, 0.7), (0.2, 0.9, 0.9)]):
            src.set_pause_generator(pause_gen(rng, p_src))
            sink0.set_pause_generator(pause_gen(rng, p0))
            sink1.set_pause_generator(pause_gen(rng, p1))
            f = frames[k % frames.shape[0]].tobytes()
            await src.send(AxiStreamFrame(f))
            got0 = await receive_bytes(dut.clk, sink0, len(f), timeout)
            got1 = await receive_bytes(dut.clk, sink1, len(f), timeout)
            assert got0 == f, f"frame {k}: output 0 differs at byte {next(i for i in range(len(f)) if got0[i] != f[i])}"
            assert got1 == f, f"frame {k}: output 1 differs at byte {next(i for i in range(len(f)) if got1[i] != f[i])}"
        await ClockCycles(dut.clk, 20)
        assert sink0.empty() and sink1.empty(), "extra output beats"
        # ---- free running: one beat per cycle
        for s in (src, sink0, sink1):
            s.clear_pause_generator()
            s.pause = False
        await ClockCycles(dut.clk, 2)
        free = True
        f = frames[-1].tobytes()
        await src.send(AxiStreamFrame(f))
        assert await receive_bytes(dut.clk, sink0, len(f), timeout) == f
        assert await receive_bytes(dut.clk, sink1, len(f), timeout) == f
        free = False
        beats = len(f) // nbytes
        assert len(free_cycles) == beats
        assert (free_cycles[-1] - free_cycles[0]) / 10 + 1 == beats, "not one beat per cycle when free running"
        assert not errors, errors[:5]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_axis_broadcast_lint_clean(name, verilator_env):
    lint([RTL], CONFIGS[name])


@pytest.mark.slow                    # RTL simulation (Verilator build + cocotb)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_axis_broadcast(name, verilator_env, tmp_path):
    cfg = CONFIGS[name]
    nbytes = cfg["DW"] // 8
    seed = 40 + list(CONFIGS).index(name)
    rng = np.random.default_rng(seed)
    beats = 97
    frames = [rng.integers(0, 256, beats * nbytes, dtype=np.uint8),
              rng.choice(np.array([0x00, 0xFF, 0x80, 0x7F], dtype=np.uint8), beats * nbytes),   # 0, -1, -128, 127
              np.zeros(beats * nbytes, dtype=np.uint8),
              rng.integers(0, 256, beats * nbytes, dtype=np.uint8)]
    case = tmp_path / "case.npz"
    np.savez(case, frames=np.stack(frames), beat_bytes=nbytes, seed=seed)
    bdir = BUILD / name
    bdir.mkdir(parents=True, exist_ok=True)
    runner = cocotb_runner()
    runner.build(sources=[RTL], hdl_toplevel=TOP, parameters=dict(cfg), build_dir=bdir, timescale=("1ns", "1ps"),
                 log_file=bdir / "build.log")
    run_cocotb(runner, bdir, tmp_path, "test_axis_broadcast", TOP, "broadcast_frames", seed,
               {"BCAST_CASE": str(case)}, bdir / "sim.log")
