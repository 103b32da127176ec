"""The whole encoder accelerator as ONE design in RTL: g_a -> y; |y| -> h_a -> z; z -> h_s ->
scale codes, y duplicated and |y| taken on chip (hls/axis_broadcast, hls/axis_abs), y, z and
the scale codes out of three AXI-Stream ports (overlay/accel_top.py, ``encoder_top.sv``);
Verilator + cocotb, bit-exact with the integer model.

pytest side, once per module: the shared pipeline of tests/hw/stitched.py for each of g_a,
h_a, h_s (export of the shipped QAT student at ``SIZE`` x ``SIZE``, the FINN+ flow with the
golden artifact's proven thresholds, StreamingFIFO_rtl of depth ``FIFO_DEPTH`` on every
edge, RTL of every layer, overlay/rtl_stitch.py), folded for ``TARGET_CYCLES`` cycles/frame
each; then overlay/accel_top.py (module names of each build prefixed, one file list) and
one Verilator build. Expected: ``IntegerModel.analysis`` (y, z; h_a's |y| included) and
``IntegerModel.scale_codes(z)`` of crops of the shipped samples.

cocotb side (``encoder_stream``): ``N_FREE`` frames back to back with no idle and no
back-pressure -- the interval between the last beats of consecutive frames on each output
is the measured initiation interval, compared with the design's estimate (max
``get_exp_cycles`` over every layer of the three transforms: they run concurrently); then
``N_BP`` frames with random idle cycles on the source and independent random back-pressure
on the three sinks. Every y, z and scale-code tensor is compared.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import run_cocotb
from stitched import export_flow_stitch, verilator_build

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(__file__).resolve().parent / "sim_build" / "encoder"
SIZE = 128                 # y 8x8x48, z 2x2x30: a hyper-latent larger than 1x1
TARGET_CYCLES = 200_000    # folding target of each transform, cycles/frame at SIZE x SIZE
FIFO_DEPTH = 256
N_FREE = 3                 # back-to-back frames (N_FREE - 1 intervals)
N_BP = 2                   # frames under idle + back-pressure
TOP = "encoder_top"
TRANSFORMS = ("g_a", "h_a", "h_s")
OUTS = (("m_axis_0", "y", np.int8), ("m_axis_1", "z", np.int8), ("m_axis_2", "s", np.uint8))

try:
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge
except ImportError:  # pragma: no cover - the pytest side reports the missing package
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def encoder_stream(dut):
        import logging

        from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink
        from cocotb_util import axis_endpoints, pause_gen, receive_bytes

        case = np.load(os.environ["ENC_CASE"])
        x = case["x"]
        n_frames = x.shape[0]
        rng = random.Random(int(case["seed"]))
        src, sink0 = axis_endpoints(dut, dut.ap_clk, dut.ap_rst_n, 5, "s_axis_0", "m_axis_0")
        sinks = [sink0]
        for port in ("m_axis_1", "m_axis_2"):
            s = AxiStreamSink(AxiStreamBus.from_prefix(dut, port), dut.ap_clk, dut.ap_rst_n, reset_active_level=False)
            s.log.setLevel(logging.WARNING)
            sinks.append(s)
        beats = {p: [] for p, _, _ in OUTS}          # cycle of every accepted output beat, per port
        cycle = 0

        async def monitor():
            nonlocal cycle
            sig = [(p, getattr(dut, f"{p}_tvalid"), getattr(dut, f"{p}_tready")) for p, _, _ in OUTS]
            while True:
                await RisingEdge(dut.ap_clk)
                cycle += 1
                for p, v, r in sig:
                    if v.value == 1 and r.value == 1:
                        beats[p].append(cycle)

        dut.ap_rst_n.value = 0
        await ClockCycles(dut.ap_clk, 32)          # > the DSPs' 100 ns start-up (mvu.sv)
        dut.ap_rst_n.value = 1
        await ClockCycles(dut.ap_clk, 4)
        cocotb.start_soon(monitor())
        timeout = 20 * int(case["est_cycles"]) + 200_000

        def per_frame(name: str) -> int:
            return int(np.prod(case[name].shape[1:])) // int(case[f"{name}_beat_bytes"])

        async def receive_frame(k: int, what: str):
            for (port, name, dt), sink in zip(OUTS, sinks):
                ref = case[name][k]
                got = np.frombuffer(await receive_bytes(dut.ap_clk, sink, ref.size, timeout), dtype=dt).reshape(ref.shape)
                bad = np.argwhere(got != ref)
                assert bad.size == 0, (f"frame {k} ({what}), {name} ({port}): {len(bad)} of {got.size} differ, first "
                                       "(row, col, ch, got, expected): " + ", ".join(
                                           f"({r},{c},{ch},{got[r, c, ch]},{ref[r, c, ch]})" for r, c, ch in bad[:6]))

        def expect_beats(frames: int):
            for port, name, _ in OUTS:
                n = frames * per_frame(name)
                assert len(beats[port]) == n, f"{port}: {len(beats[port])} output beats, expected {n}"
            assert all(s.empty() for s in sinks), "extra output data"

        # ---- free running, back to back: the initiation interval
        for k in range(N_FREE):
            await src.send(AxiStreamFrame(x[k].tobytes()))
        for k in range(N_FREE):
            await receive_frame(k, "free running")
        await ClockCycles(dut.ap_clk, 200)
        expect_beats(N_FREE)
        # frame k ends with output beat (k+1)*beats_per_frame - 1 of each port (the sinks keep
        # receiving while the bench waits on another port, so "the last beat seen" is not it)
        res = {"frame_end_cycles": {p: [beats[p][(k + 1) * per_frame(n) - 1] for k in range(N_FREE)] for p, n, _ in OUTS}}
        res["intervals"] = {p: np.diff(v).tolist() for p, v in res["frame_end_cycles"].items()}
        res["latency_first_frame"] = {p: v[0] for p, v in res["frame_end_cycles"].items()}
        # ---- random idle on the source, random back-pressure on every sink
        src.set_pause_generator(pause_gen(rng, 0.3))
        for s, p in zip(sinks, (0.5, 0.7, 0.3)):
            s.set_pause_generator(pause_gen(rng, p))
        for k in range(N_FREE, n_frames):
            await src.send(AxiStreamFrame(x[k].tobytes()))
        for k in range(N_FREE, n_frames):
            await receive_frame(k, "idle + back-pressure")
        await ClockCycles(dut.ap_clk, 400)
        expect_beats(n_frames)
        res["total_cycles"] = cycle
        dut._log.info("encoder RTL: %s", res)
        with open(os.environ["ENC_CASE"] + ".json", "w") as fh:
            json.dump(res, fh)


# ==================================================================== pytest side
def crops(n: int, size: int) -> list[np.ndarray]:
    """``size`` x ``size`` centre crops of kodim23, then of the other shipped samples (shifted on repeat)."""
    from licfpga.host.images import load_image

    names = ["kodim23.png"] + sorted(p.name for p in (ROOT / "host" / "samples").glob("*.png") if p.name != "kodim23.png")
    out = []
    for k in range(n):
        rgb, _ = load_image(ROOT / "host" / "samples" / names[k % len(names)])
        h, w = rgb.shape[:2]
        y0, x0 = (h - size) // 2 + 37 * (k // len(names)), (w - size) // 2 + 53 * (k // len(names))
        out.append(np.ascontiguousarray(rgb[y0:y0 + size, x0:x0 + size]))
    return out


def build_side(side: str, build: Path, transforms, size: int, target: int, fifo_depth: int,
               wrap=None) -> tuple[dict, Path, dict]:
    """The shared pipeline (tests/hw/stitched.py) for each transform, then overlay/accel_top.py
    and one Verilator build. ``wrap(accel, flows)`` -> (extra sources, top, parameters): a
    top around ``<side>_top`` to build instead (test_pynq_driver.py: the DMA-side streams).
    Returns ({"flows", "accel", "runner"}, integer artifact, timings)."""
    from licfpga.overlay import accel_top

    flows, t = {}, {}
    for name in transforms:
        info, integer, tt = export_flow_stitch(name, build / name, size, target, fifo_depth, top=f"{name}_top")
        flows[name] = info
        t[f"{name}_export_flow_stitch_s"] = round(sum(tt.values()), 1)
    accel = accel_top.build(side, {n: build / n / "rtl" for n in transforms}, build / "accel")
    shutil.rmtree(build / "verilator", ignore_errors=True)       # never a stale model (cocotb rebuilds by mtime only)
    t0 = time.time()
    extra, top, params = wrap(accel, flows) if wrap else ([], f"{side}_top", {})
    runner = verilator_build([Path(f) for f in accel["sim_files"]] + list(extra), top, build / "verilator",
                             f'public_flat_rw -module "{top}" -var "*"\n', parameters=params)
    t["verilator_build_s"] = round(time.time() - t0, 1)
    return {"flows": flows, "accel": accel, "runner": runner}, integer, t


def check_flows_and_files(flows: dict, accel: dict):
    """Every layer an RTL layer with its generated HDL, the thresholds the golden artifact's
    (proven, and in the RTL's memory images), no module defined twice in the combined list."""
    for name, info in flows.items():
        fl = info["flow"]
        assert fl["codegen"]["rtl_failed"] == {} and fl["codegen"]["hls_not_generated"] == [], name
        proof = fl["threshold_proof"]
        assert proof["exact"] and all(not ly["mismatches"] for ly in proof["layers"]), name
        assert proof["rtl_memories_equal"] and all(proof["rtl_memories_equal"].values()), name
    defined: dict[str, str] = {}
    for f in accel["sim_files"]:
        for m in re.findall(r"^\s*module\s+(\w+)", Path(f).read_text(errors="replace"), re.M):
            assert m not in defined, f"module {m} defined in {defined[m]} and {f}"
            defined[m] = f
    for name in flows:       # every FINN module of each build prefixed, the build's own files untouched
        assert accel["renames"][name] and all(v == f"{name}_{k}" for k, v in accel["renames"][name].items())


def assert_memories_loaded(log: Path):
    """Verilator only warns when a $readmemh file is missing (weights / thresholds then read
    as zeros): a failure here."""
    bad = [ln for ln in log.read_text(errors="replace").splitlines() if "$readmem" in ln]
    assert not bad, "memory images not loaded:\n" + "\n".join(bad[:8])


def write_report(build: Path, side: str, size: int, accel: dict, measured: dict, timings: dict, extra: dict) -> dict:
    """``report.json`` beside the build: cycles, estimate, sizes, folding, timings."""
    rep = {"side": side, "size": size, "est_cycles_per_frame": accel["max_exp_cycles"],
           "bottleneck": accel["bottleneck"], "measured": measured,
           "per_transform_est": {n: v["max_exp_cycles"] for n, v in accel["transforms"].items()},
           "folding": {n: v["folding"] for n, v in accel["transforms"].items()},
           "streams": accel["streams"], "renamed_modules": {n: len(v) for n, v in accel["renames"].items()},
           "files": len(accel["sim_files"]), **extra, "timings_s": timings}
    (build / "report.json").write_text(json.dumps(rep, indent=1))
    print(json.dumps({k: rep[k] for k in ("est_cycles_per_frame", "bottleneck", "measured", "timings_s")}))
    return rep


@pytest.fixture(scope="module")
def encoder_rtl(verilator_env):
    return build_side("encoder", BUILD, TRANSFORMS, SIZE, TARGET_CYCLES, FIFO_DEPTH)


@pytest.mark.slow                    # 3 FINN flows + one Verilator build + simulation: minutes on 2 cores
def test_encoder_rtl_bit_exact(encoder_rtl, tmp_path):
    """128x128 RGB -> y (8x8x48 int8), z (2x2x30 int8), scale codes (8x8x48 uint8) out of one
    encoder design == IntegerModel; every output's frame interval within 5 % of the estimate."""
    from licfpga.model.golden.network import IntegerModel

    t_start = time.time()
    built, integer, timings = encoder_rtl
    accel = built["accel"]
    check_flows_and_files(built["flows"], accel)
    st = {s["port"]: s for s in accel["streams"]["out"]}
    im = IntegerModel.load(integer)
    x = np.stack(crops(N_FREE + N_BP, SIZE))
    ys, zs, ss = [], [], []
    for img in x:
        y, z = im.analysis(img)                       # g_a, then h_a on |y| (its first op)
        ys.append(np.moveaxis(y, 0, -1))
        zs.append(np.moveaxis(z, 0, -1))
        ss.append(np.moveaxis(im.scale_codes(z), 0, -1))
    y, z, s = np.stack(ys), np.stack(zs), np.stack(ss)
    assert y.shape[1:] == (SIZE // 16, SIZE // 16, im.M) and z.shape[1:] == (SIZE // 64, SIZE // 64, im.z_channels)
    assert s.shape == y.shape and np.abs(y).max() <= 127 and np.abs(z).max() <= 127 and s.min() >= 0 and s.max() <= 255
    assert (y < 0).any() and (y > 0).any(), "y of one sign only: the on-chip |y| would not be exercised"
    est = accel["max_exp_cycles"]
    case = tmp_path / "case.npz"
    np.savez(case, x=x.astype(np.uint8), y=y.astype(np.int8), z=z.astype(np.int8), s=s.astype(np.uint8), seed=31,
             est_cycles=est, **{f"{n}_beat_bytes": st[p]["stream_width"] // 8 for p, n, _ in OUTS})
    t0 = time.time()
    run_cocotb(built["runner"], BUILD / "verilator", tmp_path, "test_encoder_rtl", TOP, "encoder_stream", 31,
               {"ENC_CASE": str(case)}, BUILD / "sim.log")
    timings["simulation_s"] = round(time.time() - t0, 1)
    assert_memories_loaded(BUILD / "sim.log")
    res = json.loads(Path(str(case) + ".json").read_text())
    measured = {p: {"intervals": res["intervals"][p], "cycles_per_frame": float(np.mean(res["intervals"][p])),
                    "ratio": float(np.mean(res["intervals"][p])) / est, "latency_first_frame": res["latency_first_frame"][p]}
                for p, _, _ in OUTS}
    timings["test_body_s"] = round(time.time() - t_start, 1)
    write_report(BUILD, "encoder", SIZE, accel, measured, timings,
                 {"bit_exact_frames": N_FREE + N_BP, "free_frames": N_FREE, "backpressure_frames": N_BP,
                  "fifo_depth": FIFO_DEPTH, "target_cycles": TARGET_CYCLES, "total_cycles": res["total_cycles"],
                  "artifact": str(integer)})
    for p, m in measured.items():
        assert abs(m["cycles_per_frame"] - est) <= 0.05 * est, \
            f"{p}: cycles/frame measured {m['cycles_per_frame']} vs estimate {est} ({accel['bottleneck']})"
