"""hls/axis_frame_tlast/axis_frame_tlast.sv: TLAST exactly on every BEATS-th beat, data and
handshake passed through unchanged, under random idle cycles and back-pressure (cocotb +
Verilator). The reference is the frame structure itself: the sink (cocotbext-axi) splits the
stream into frames at TLAST, so every received frame must be exactly one sent frame."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RTL = ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv"
BUILD = Path(__file__).resolve().parent / "sim_build" / "axis_frame_tlast"
TOP = "axis_frame_tlast"
CONFIGS = {"beats7_dw24": dict(BEATS=7, DW=24), "beats1_dw8": dict(BEATS=1, DW=8), "beats64_dw32": dict(BEATS=64, DW=32)}

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles
except ImportError:  # pragma: no cover
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def tlast_frames(dut):
        from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
        from test_g_a_rtl import _pause_gen

        beats, nbytes = int(os.environ["BEATS"]), int(os.environ["DW"]) // 8
        rng = random.Random(beats)
        nrng = np.random.default_rng(beats)
        Clock(dut.clk, 10, unit="ns").start()
        src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst_n, reset_active_level=False)
        sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst_n, reset_active_level=False)
        src.log.setLevel(logging.WARNING)
        sink.log.setLevel(logging.WARNING)
        dut.rst_n.value = 0
        await ClockCycles(dut.clk, 3)
        dut.rst_n.value = 1
        frames = [nrng.integers(0, 256, beats * nbytes, dtype=np.uint8).tobytes() for _ in range(6)]
        # the source sends one untagged stream (no tlast on the input: FINN has none); the
        # sink's frames come from this module's tlast alone
        src.set_pause_generator(_pause_gen(rng, 0.3))
        sink.set_pause_generator(_pause_gen(rng, 0.4))
        await src.send(AxiStreamFrame(b"".join(frames)))
        for k, f in enumerate(frames):
            got = await cocotb.triggers.with_timeout(sink.recv(), 100 * beats + 2000, "ns")
            assert bytes(got.tdata) == f, f"frame {k}: {len(got.tdata)} bytes, expected {len(f)} (tlast misplaced or data changed)"
        await ClockCycles(dut.clk, 20)
        assert sink.empty()


sys.path.insert(0, str(Path(__file__).resolve().parent))
_BUILT: dict = {}


@pytest.fixture(scope="module")
def verilator_env():
    from test_gdn_axis import _verilator_env
    env = _verilator_env()
    env["MAKEFLAGS"] = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("name", list(CONFIGS))
def test_axis_frame_tlast(name, verilator_env, tmp_path):
    from test_gdn_axis import _runner

    cfg = CONFIGS[name]
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *[f"-G{k}={v}" for k, v in cfg.items()], str(RTL)],
                       capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    bdir = BUILD / name
    bdir.mkdir(parents=True, exist_ok=True)
    runner = _runner()
    runner.build(sources=[RTL], hdl_toplevel=TOP, parameters=dict(cfg), build_dir=bdir, timescale=("1ns", "1ps"),
                 log_file=bdir / "build.log")
    log = bdir / "sim.log"
    try:
        runner.test(test_module="test_axis_frame_tlast", hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                    testcase="tlast_frames", build_dir=bdir, test_dir=tmp_path,
                    extra_env={k: str(v) for k, v in cfg.items()}, log_file=log, seed=1)
    except (SystemExit, RuntimeError) as exc:
        text = log.read_text(errors="replace") if log.exists() else ""
        pytest.fail(f"cocotb simulation failed ({exc!r}); see {log}\n"
                    + "\n".join(ln for ln in text.splitlines() if "Error" in ln or "assert" in ln.lower())[-3000:],
                    pytrace=False)
