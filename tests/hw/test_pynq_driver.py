"""The PYNQ driver (licfpga.host.pynq_driver.StreamAccelerator) against the RTL it drives.

No board here: cocotbpynq (a drop-in for PYNQ's ``Overlay``/``allocate``/DMA that acts on a
cocotb simulation) stands in for ``pynq``, so the driver's own code -- word packing, receive
armed before send, waits, unpacking -- runs unchanged against Verilator simulating
tests/hw/pynq_sim_top.sv: the DMA-side 32-bit streams, the width converters, the stitched
RTL of one transform of the shipped student (g_a: an encoder overlay; g_s: a decoder
overlay -- FINN's RTL layers + our GDN and depth-to-space kernels, as tests/hw/test_g_a_rtl.py
and test_g_s_rtl.py build them) and axis_frame_tlast. The overlay description cocotbpynq
reads (a ``.hwh``) is written by this test: Vivado makes the real one, and there is no
Vivado here. cocotbpynq only knows Zynq-7000 handoff files, so the PS is declared as
``processing_system7``; the PS plays no part in the stream path being tested.

Checked, per overlay: the driver's output frames equal the integer model's transform, frame
after frame through the same buffers; a frame of the wrong shape is refused before anything
is sent; the codec's ``--backend fpga`` (integer_codec.FpgaIntegerCodec) on a 96x128 image in
64-px tiles writes the same .lic bytes as ``--backend integer`` (g_a overlay) / decodes the
same pixels (g_s overlay), every tile on the "FPGA".
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import run_cocotb
from stitched import export_flow_stitch, verilator_build

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(__file__).resolve().parent / "sim_build" / "pynq"
HERE = Path(__file__).resolve().parent
SIZE = 64
TARGET_CYCLES = 50_000
TOP = "pynq_sim_top"
N_FRAMES = 2

# ==================================================================== in the simulator
if os.environ.get("PYNQ_CASE"):
    import cocotbpynq

    def pynq_overlay(dut=None):
        """Plain synchronous PYNQ-style code (cocotbpynq.synctest runs it inside cocotb)."""
        from licfpga.host.integer_codec import FpgaIntegerCodec

        case = np.load(os.environ["PYNQ_CASE"])
        if "side" in case:
            return pynq_side(case)
        frames = case["frames"]
        # the codec's --backend fpga path: one overlay, one DMA, the transform on the "FPGA"
        codec = FpgaIntegerCodec(str(case["artifact"]), overlay="licfpga.bit", tile=int(case["tile"]), pynq=cocotbpynq)
        acc = codec.accelerator
        try:
            acc.run(frames[0][:-1])
            raise AssertionError("a frame of the wrong shape was accepted")
        except ValueError:
            pass
        got = np.stack([acc.run(frame) for frame in frames])      # the driver alone
        np.save(os.environ["PYNQ_CASE"] + ".out.npy", got)
        if codec.transform == "g_a":                               # the whole codec
            with open(os.environ["PYNQ_CASE"] + ".lic", "wb") as fh:
                fh.write(codec.encode(case["img"]))
        else:
            rgb, _ = codec.decode(bytes(case["lic"]))
            np.save(os.environ["PYNQ_CASE"] + ".rgb.npy", rgb)
        assert codec.cpu_tiles == 0 and codec.fpga_tiles == int(case["tiles"]), (codec.fpga_tiles, codec.cpu_tiles)
        assert acc.frames == len(frames) + codec.fpga_tiles

    def pynq_side(case):
        """A whole-side overlay (overlay.json format 2): MultiStreamAccelerator through the codec."""
        from licfpga.host.integer_codec import FpgaIntegerCodec

        codec = FpgaIntegerCodec(str(case["artifact"]), overlay="licfpga.bit", tile=int(case["tile"]), pynq=cocotbpynq)
        acc, frames = codec.accelerator, case["frames"]
        assert codec.v2 and codec.transforms == ("g_a", "h_a", "h_s"), codec.transforms
        try:
            acc.run({"x": frames[0][:-1]})
            raise AssertionError("a frame of the wrong shape was accepted")
        except ValueError:
            pass
        got = [acc.run({"x": f}) for f in frames]                  # the driver alone
        np.savez(os.environ["PYNQ_CASE"] + ".out.npz", **{n: np.stack([g[n] for g in got]) for n in got[0]})
        with open(os.environ["PYNQ_CASE"] + ".lic", "wb") as fh:   # the whole codec
            fh.write(codec.encode(case["img"]))
        assert (codec.fpga_tiles, codec.cpu_tiles) == (int(case["fpga_tiles"]), int(case["cpu_tiles"])), \
            (codec.fpga_tiles, codec.cpu_tiles)
        assert acc.frames == len(frames) + codec.fpga_tiles

    pynq_overlay = cocotbpynq.synctest(pynq_overlay)


# ==================================================================== pytest side
def hwh(top: str, dmas=(("dma", "s_axis", "m_axis"),)) -> str:
    """A minimal hardware handoff: PS (memory map naming the DMAs), the DMAs and the
    accelerator's streams wired to them, clock and active-low reset of the accelerator.
    ``dmas``: (name, the accelerator's input stream prefix or None, its output stream prefix
    or None) per DMA: its MM2S channel feeds the input, its S2MM channel takes the output."""
    def axis(busname, name, kind, prefix):
        maps = "".join(f'<PORTMAP LOGICAL="{s}" PHYSICAL="{prefix}_{s.lower()}"/>'
                       for s in ("TDATA", "TVALID", "TREADY", "TLAST"))
        return (f'<BUSINTERFACE BUSNAME="{busname}" NAME="{name}" TYPE="{kind}" '
                f'VLNV="xilinx.com:interface:axis:1.0"><PORTMAPS>{maps}</PORTMAPS></BUSINTERFACE>')
    ranges, modules, accel = [], [], []
    for k, (dma, sin, sout) in enumerate(dmas):
        base = 0x40400000 + 0x10000 * k
        ranges.append(f'<MEMRANGE ADDRESSBLOCK="Reg" BASENAME="C_BASEADDR" BASEVALUE="{base:#x}" HIGHNAME="C_HIGHADDR" '
                      f'HIGHVALUE="{base + 0xFFFF:#x}" INSTANCE="{dma}" IS_DATA="TRUE" IS_INSTRUCTION="TRUE" '
                      'MASTERBUSINTERFACE="M_AXI_GP0" MEMTYPE="REGISTER" SLAVEBUSINTERFACE="S_AXI_LITE"/>')
        bus = []
        if sin:
            bus.append(f'<BUSINTERFACE BUSNAME="{dma}_M_AXIS_MM2S" NAME="M_AXIS_MM2S" TYPE="INITIATOR" '
                       'VLNV="xilinx.com:interface:axis:1.0"/>')
            accel.append(axis(f"{dma}_M_AXIS_MM2S", sin, "TARGET", sin))
        if sout:
            bus.append(f'<BUSINTERFACE BUSNAME="accel_{sout}" NAME="S_AXIS_S2MM" TYPE="TARGET" '
                       'VLNV="xilinx.com:interface:axis:1.0"/>')
            accel.append(axis(f"accel_{sout}", sout, "INITIATOR", sout))
        modules.append(f'<MODULE FULLNAME="/{dma}" INSTANCE="{dma}" MODTYPE="axi_dma" VLNV="xilinx.com:ip:axi_dma:7.1">'
                       f'<BUSINTERFACES>{"".join(bus)}</BUSINTERFACES></MODULE>')
    nl = "\n    "
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="handwritten by tests/hw/test_pynq_driver.py" VIVADOVERSION="none">
  <SYSTEMINFO ARCH="zynq" DEVICE="simulation" NAME="licfpga" PACKAGE="none" SPEEDGRADE="-1"/>
  <MODULES>
    <MODULE FULLNAME="/ps" INSTANCE="ps" MODTYPE="processing_system7" VLNV="xilinx.com:ip:processing_system7:5.5">
      <MEMORYMAP>{"".join(ranges)}</MEMORYMAP>
    </MODULE>
    {nl.join(modules)}
    <MODULE FULLNAME="/accel" INSTANCE="accel" MODTYPE="{top}" VLNV="licfpga:sim:{top}:1.0">
      <PORTS>
        <PORT DIR="I" NAME="clk" SIGIS="clk"/>
        <PORT DIR="I" NAME="rst_n" POLARITY="ACTIVE_LOW" SIGIS="rst"/>
      </PORTS>
      <BUSINTERFACES>
        {"".join(accel)}
      </BUSINTERFACES>
    </MODULE>
  </MODULES>
</EDKSYSTEM>
"""


_SIMS: dict = {}


def _build(transform: str):
    """The stitched ``transform`` (tests/hw/stitched.py, as test_g_a_rtl / test_g_s_rtl)
    inside pynq_sim_top, built once per session."""
    if transform not in _SIMS:
        build = BUILD / transform
        info, integer, _ = export_flow_stitch(transform, build, SIZE, TARGET_CYCLES, 256)
        st, out = info["stitch"], info["flow"]["output_stream"]
        dwc = Path(info["rtllib"]) / "dwc" / "hdl"
        sources = ([Path(f) for f in st["sim_files"]] + [dwc / "vpc.sv", dwc / "dwc_axi.sv",
                   ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv", HERE / "pynq_sim_top.sv"])
        out_bytes = out["beats_per_frame"] * out["width_bits"] // 8
        params = {"IN_BITS": st["input"]["stream_width"], "OUT_BITS": st["output"]["stream_width"],
                  "OUT_WORDS": out_bytes // 4}
        runner = verilator_build(sources, TOP, build / "verilator", f'public_flat_rw -module "{TOP}" -var "*"\n',
                                 parameters=params, defines={"ACCEL": st["top"]})
        _SIMS[transform] = (runner, st, integer, out_bytes, build)
    return _SIMS[transform]


@pytest.mark.slow                    # RTL simulation (Verilator build + cocotb): minutes on 2 cores
@pytest.mark.parametrize("transform", ["g_a", "g_s"])
def test_pynq_driver_and_fpga_backend(transform, verilator_env, tmp_path):
    """g_a overlay: the driver's y == integer model, ``--backend fpga`` compress == integer
    backend's bytes. g_s overlay: the driver's RGB == integer model, ``--backend fpga``
    decompress == integer backend's pixels."""
    from test_g_a_rtl import _crops

    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.model.golden.network import IntegerModel
    from licfpga.overlay.vivado import finn_build, overlay_description

    runner, st, integer, out_bytes, build = _build(transform)
    im = IntegerModel.load(integer)
    crops = _crops(4)
    # a 96x128 image in 64-px tiles: 4 tiles, each padded to the overlay's 64x64 frame
    img = np.ascontiguousarray(np.concatenate([np.concatenate(crops[:2], axis=1),
                                               np.concatenate(crops[2:], axis=1)])[16:112])
    assert img.shape == (96, 128, 3)
    ref = IntegerCodec(integer, tile=SIZE)
    lic = ref.encode(img)
    y = [np.moveaxis(im.run_transform("g_a", c.transpose(2, 0, 1).astype(np.int64)), 0, -1) for c in crops[:N_FRAMES]]
    if transform == "g_a":
        frames, want = np.stack(crops[:N_FRAMES]), np.stack(y).astype(np.int8)
    else:
        frames = np.stack(y).astype(np.int8)
        want = np.stack([np.moveaxis(im.run_transform("g_s", np.moveaxis(v, -1, 0)), 0, -1) for v in y]).astype(np.uint8)
    assert want.nbytes // N_FRAMES == out_bytes
    case = tmp_path / "case.npz"
    np.savez(case, frames=frames, img=img, lic=np.frombuffer(lic, dtype=np.uint8), artifact=str(integer),
             tile=SIZE, tiles=4)
    (tmp_path / "licfpga.hwh").write_text(hwh(TOP))
    (tmp_path / "overlay.json").write_text(json.dumps(overlay_description(
        finn_build(build / "finn", "kv260", transform), transform)))
    for m in st["meminit"]:
        shutil.copy(m, tmp_path / Path(m).name)
    run_cocotb(runner, build / "verilator", tmp_path, "test_pynq_driver", TOP, None, 3,
               {"PYNQ_CASE": str(case), "HWH_LOCATION_DIR": str(tmp_path), "COCOTB_SYS_ARGV": "pynq"},
               build / "sim.log")
    got = np.load(str(case) + ".out.npy")
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} values differ, first (frame, row, col, ch): {bad[:5].tolist()}"
    if transform == "g_a":      # --backend fpga wrote the very bytes --backend integer writes
        data = Path(str(case) + ".lic").read_bytes()
        assert data == lic, f"fpga backend file differs from the integer backend's ({len(data)} vs {len(lic)} bytes)"
    else:                       # --backend fpga decoded the very pixels --backend integer decodes
        rgb = np.load(str(case) + ".rgb.npy")
        assert np.array_equal(rgb, ref.decode(lic)[0])


ENC_TOP = "pynq_encoder_sim_top"


def _encoder_wrap(accel, flows):
    """pynq_encoder_sim_top around encoder_top: widths and 32-bit words per output frame."""
    st = {s["port"]: s for s in accel["streams"]["in"] + accel["streams"]["out"]}
    dwc = Path(next(iter(flows.values()))["rtllib"]) / "dwc" / "hdl"
    params = {"IN_BITS": st["s_axis_0"]["stream_width"]}
    for k, n in enumerate("YZS"):
        s = st[f"m_axis_{k}"]
        params[f"{n}_BITS"] = s["stream_width"]
        params[f"{n}_WORDS"] = s["beats_per_frame"] * -(-s["stream_width"] // 8) // 4
    return ([dwc / "vpc.sv", dwc / "dwc_axi.sv", ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv",
             HERE / "pynq_encoder_sim_top.sv"], ENC_TOP, params)


@pytest.fixture(scope="module")
def encoder_overlay(verilator_env):
    """The stitched encoder (test_encoder_rtl's build: same frame size, folding and FIFOs)
    inside pynq_encoder_sim_top: DMA-side 32-bit streams, one DMA per stream pair."""
    from test_encoder_rtl import FIFO_DEPTH, SIZE as ENC_SIZE, TARGET_CYCLES as ENC_TARGET, TRANSFORMS, build_side

    return build_side("encoder", BUILD / "encoder", TRANSFORMS, ENC_SIZE, ENC_TARGET, FIFO_DEPTH, wrap=_encoder_wrap)


@pytest.mark.slow                    # 3 FINN flows + one Verilator build + simulation: minutes on 2 cores
def test_pynq_driver_encoder_overlay(encoder_overlay, tmp_path):
    """A whole-encoder overlay (overlay.json format 2, three DMAs): MultiStreamAccelerator's
    y, z and scale codes == IntegerModel; ``--backend fpga`` compress of a 192x256 image in
    128-px tiles == ``--backend integer``'s bytes, the two 128x128 tiles on the FPGA, the two
    64-row ones (padded to 64x128, not the overlay's frame) on the CPU."""
    from test_encoder_rtl import SIZE as ENC_SIZE, crops

    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.model.golden.network import IntegerModel
    from licfpga.overlay.vivado import finn_build, overlay_description_v2, stream_dma

    built, integer, _ = encoder_overlay
    accel = built["accel"]
    im = IntegerModel.load(integer)
    cr = crops(4, ENC_SIZE)
    img = np.ascontiguousarray(np.concatenate([np.concatenate(cr[:2], axis=1), np.concatenate(cr[2:], axis=1)])[:192])
    assert img.shape == (192, 256, 3)
    lic = IntegerCodec(integer, tile=ENC_SIZE).encode(img)
    frames = np.stack(cr[:N_FRAMES])
    want = {"y": [], "z": [], "scale_codes": []}
    for c in frames:
        y, z = im.analysis(c)
        for n, v in (("y", y), ("z", z), ("scale_codes", im.scale_codes(z))):
            want[n].append(np.moveaxis(v, 0, -1))
    builds = {t: finn_build(BUILD / "encoder" / t / "finn", "kv260", t) for t in accel["transforms"]}
    desc = overlay_description_v2(accel, builds)
    assert [s["dma"] for s in desc["streams"]["in"] + desc["streams"]["out"]] == ["dma_0", "dma_0", "dma_1", "dma_2"]
    case = tmp_path / "case.npz"
    np.savez(case, side="encoder", frames=frames, img=img, artifact=str(integer), tile=ENC_SIZE, fpga_tiles=2,
             cpu_tiles=2)
    dmas = [(stream_dma(p), "s_axis_0" if p == "m_axis_0" else None, p) for p in ("m_axis_0", "m_axis_1", "m_axis_2")]
    (tmp_path / "licfpga.hwh").write_text(hwh(ENC_TOP, dmas))
    (tmp_path / "overlay.json").write_text(json.dumps(desc))
    run_cocotb(built["runner"], BUILD / "encoder" / "verilator", tmp_path, "test_pynq_driver", ENC_TOP, None, 5,
               {"PYNQ_CASE": str(case), "HWH_LOCATION_DIR": str(tmp_path), "COCOTB_SYS_ARGV": "pynq"},
               BUILD / "encoder" / "sim.log")
    got = np.load(str(case) + ".out.npz")
    for n, v in want.items():
        ref = np.stack(v).astype(got[n].dtype)
        bad = np.argwhere(got[n] != ref)
        assert bad.size == 0, f"{n}: {len(bad)} values differ, first (frame, row, col, ch): {bad[:5].tolist()}"
    data = Path(str(case) + ".lic").read_bytes()
    assert data == lic, f"fpga backend file differs from the integer backend's ({len(data)} vs {len(lic)} bytes)"


# ==================================================================== DMA deadline (no simulator)
class _StuckChannel:
    """A PYNQ-like DMA channel (``idle``, ``error``, ``transferred``, ``wait``) whose transfer
    never completes, unless ``done_after`` polls have passed; ``wait()`` as PYNQ's: it would
    spin forever while not idle, so here it fails the test if called too early."""

    def __init__(self, done_after=None):
        self.polls, self.done_after, self.transferred, self.error, self.waited = 0, done_after, 0, False, False

    @property
    def idle(self):
        self.polls += 1
        return self.done_after is not None and self.polls > self.done_after

    def transfer(self, buf):
        self.transferred = 0

    def wait(self):
        assert self.idle, "wait() called on a busy channel: PYNQ's wait() would block forever here"
        self.waited = True


def _fake_pynq(send, recv):
    import types

    dma = types.SimpleNamespace(sendchannel=send, recvchannel=recv)
    return types.SimpleNamespace(Overlay=lambda bitfile: types.SimpleNamespace(dma=dma),
                                 allocate=lambda shape, dtype: np.zeros(shape, dtype))


def test_stuck_dma_fails_clearly_in_bounded_time():
    """A receive channel that never finishes: one DmaTimeout (an FpgaUnavailable) naming the
    channel, the bytes and the seconds waited, after about the deadline -- not a hang. A
    channel that finishes after a few polls: the frame comes back, PYNQ's wait() is called
    once idle (it does the cache invalidation). The default deadline grows with the frame."""
    import time

    from licfpga.host.pynq_driver import DmaTimeout, FpgaUnavailable, StreamAccelerator, dma_timeout

    frame = np.zeros((64, 64, 3), np.uint8)
    send, recv = _StuckChannel(done_after=3), _StuckChannel()
    acc = StreamAccelerator("x.bit", frame.shape, np.uint8, (16, 16, 192), np.int8,
                            pynq=_fake_pynq(send, recv), timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(DmaTimeout) as e:
        acc.run(frame)
    waited = time.monotonic() - t0
    assert isinstance(e.value, FpgaUnavailable)
    msg = str(e.value)
    assert msg.startswith("DMA receive channel (S2MM) stuck after 0.3 s: 0 of 49152 bytes"), msg
    assert "\n" not in msg and 0.3 <= waited < 3.0, (msg, waited)
    assert send.waited and not recv.waited and acc.frames == 0

    send, recv = _StuckChannel(done_after=2), _StuckChannel(done_after=5)
    acc = StreamAccelerator("x.bit", frame.shape, np.uint8, (16, 16, 192), np.int8, pynq=_fake_pynq(send, recv))
    assert acc.timeout == dma_timeout(49152) == 1.0
    assert acc.run(frame).shape == (16, 16, 192) and send.waited and recv.waited and acc.frames == 1
    # a 1080p frame at 30 fps: 1 s; at 5 fps: 10 frame times + 6.3 MB at 100 MB/s
    assert dma_timeout(1920 * 1088 * 3, 30.0) == 1.0
    assert dma_timeout(1920 * 1088 * 3, 5.0) == pytest.approx(10 * (1 / 5 + 1920 * 1088 * 3 / 100e6))
    assert dma_timeout(1920 * 1088 * 3, "5") == dma_timeout(1920 * 1088 * 3, None) == 1.0   # a broken est_fps
    with pytest.raises(ValueError, match="DMA timeout must be a positive number"):
        StreamAccelerator("x.bit", frame.shape, np.uint8, (16, 16, 192), np.int8, pynq=_fake_pynq(send, recv), timeout=0)
