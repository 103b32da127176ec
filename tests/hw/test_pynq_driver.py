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
        """A whole-side overlay (overlay.json format 2): MultiStreamAccelerator, then the codec."""
        from licfpga.host.integer_codec import FpgaIntegerCodec

        side = str(case["side"])
        codec = FpgaIntegerCodec(str(case["artifact"]), overlay="licfpga.bit", tile=int(case["tile"]), pynq=cocotbpynq)
        acc = codec.accelerator
        first = "x" if side == "encoder" else "z"
        assert codec.v2 and codec.transforms == (("g_a", "h_a", "h_s") if side == "encoder" else ("h_s", "g_s"))
        try:
            acc.run({first: case[first][0][:-1]})
            raise AssertionError("a frame of the wrong shape was accepted")
        except ValueError:
            pass
        out = {}
        if side == "encoder":                                      # the driver alone
            got = [acc.run({"x": f}) for f in case["x"]]
        else:                                                      # each pipeline alone, then both at once
            got = [{**acc.run({"z": z}), **acc.run({"y_hat": y})} for z, y in zip(case["z"], case["y"])]
            both = [acc.run({"z": z, "y_hat": y}) for z, y in zip(case["z"], case["y"])]
            out.update({f"both_{n}": np.stack([g[n] for g in both]) for n in both[0]})
        out.update({n: np.stack([g[n] for g in got]) for n in got[0]})
        np.savez(os.environ["PYNQ_CASE"] + ".out.npz", **out)
        runs = acc.frames
        if side == "encoder":                                      # the whole codec
            with open(os.environ["PYNQ_CASE"] + ".lic", "wb") as fh:
                fh.write(codec.encode(case["img"]))
        else:
            rgb, _ = codec.decode(bytes(case["lic"]))
            np.save(os.environ["PYNQ_CASE"] + ".rgb.npy", rgb)
        assert (codec.fpga_tiles, codec.cpu_tiles) == (int(case["fpga_tiles"]), int(case["cpu_tiles"])), \
            (codec.fpga_tiles, codec.cpu_tiles)
        # a decoder tile is two runs (h_s, then g_s on the y decoded with its scale codes)
        assert acc.frames == runs + codec.fpga_tiles * (1 if side == "encoder" else 2)

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


# the DMA-side tops of the whole-side designs, and their parameter prefix per accel_top port
SIDE_TOPS = {"encoder": ("pynq_encoder_sim_top", {"s_axis_0": "IN", "m_axis_0": "Y", "m_axis_1": "Z", "m_axis_2": "S"}),
             "decoder": ("pynq_decoder_sim_top", {"s_axis_0": "Z", "s_axis_1": "Y", "m_axis_0": "S", "m_axis_1": "X"})}


def _side_wrap(side: str):
    """pynq_<side>_sim_top around <side>_top: stream widths, 32-bit words per output frame."""
    top, prefix = SIDE_TOPS[side]

    def wrap(accel, flows):
        dwc = Path(next(iter(flows.values()))["rtllib"]) / "dwc" / "hdl"
        params = {}
        for d in ("in", "out"):
            for s in accel["streams"][d]:
                params[f"{prefix[s['port']]}_BITS"] = s["stream_width"]
                if d == "out":
                    params[f"{prefix[s['port']]}_WORDS"] = s["beats_per_frame"] * -(-s["stream_width"] // 8) // 4
        return ([dwc / "vpc.sv", dwc / "dwc_axi.sv", ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv",
                 HERE / "pynq_out_path.sv", HERE / f"{top}.sv"], top, params)
    return wrap


@pytest.fixture(scope="module", params=["encoder", "decoder"])
def side_overlay(request, verilator_env):
    """The stitched encoder / decoder (test_encoder_rtl's / test_decoder_rtl's build: same
    frame size, folding and FIFOs) inside pynq_<side>_sim_top: DMA-side 32-bit streams, one
    DMA per stream pair."""
    import test_decoder_rtl as dec
    import test_encoder_rtl as enc

    side = request.param
    mod = enc if side == "encoder" else dec
    return side, build_side_rtl(side, mod.TRANSFORMS, mod.FIFO_DEPTH)


def build_side_rtl(side: str, transforms, fifo_depth: int):
    from test_encoder_rtl import SIZE as SIDE_SIZE, TARGET_CYCLES as SIDE_TARGET, build_side

    return build_side(side, BUILD / side, transforms, SIDE_SIZE, SIDE_TARGET, fifo_depth, wrap=_side_wrap(side))


@pytest.mark.slow                    # 2-3 FINN flows + one Verilator build + simulation: minutes on 2 cores
def test_pynq_driver_whole_side_overlay(side_overlay, tmp_path):
    """A whole-side overlay (overlay.json format 2, one DMA per stream pair) through
    MultiStreamAccelerator: encoder: y, z and scale codes == IntegerModel, ``--backend fpga``
    compress of a 192x256 image in 128-px tiles == ``--backend integer``'s bytes (the two
    128x128 tiles on the FPGA, the two 64-row ones -- padded to 64x128, not the overlay's
    frame -- on the CPU). Decoder: scale codes (h_s) and RGB (g_s) == IntegerModel, each
    pipeline alone and both at once; ``--backend fpga`` decompress == ``--backend integer``'s
    pixels, same tile split."""
    from test_encoder_rtl import SIZE as SIDE_SIZE, crops

    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.model.golden.network import IntegerModel
    from licfpga.overlay.vivado import finn_build, overlay_description_v2, stream_dma

    side, (built, integer, _) = side_overlay
    top = SIDE_TOPS[side][0]
    accel = built["accel"]
    im = IntegerModel.load(integer)
    cr = crops(4, SIDE_SIZE)
    img = np.ascontiguousarray(np.concatenate([np.concatenate(cr[:2], axis=1), np.concatenate(cr[2:], axis=1)])[:192])
    assert img.shape == (192, 256, 3)
    ref = IntegerCodec(integer, tile=SIDE_SIZE)
    lic = ref.encode(img)
    want = {"x": [], "y": [], "z": [], "scale_codes": [], "x_hat": []}
    for c in cr[:N_FRAMES]:
        y, z = im.analysis(c)
        for n, v in (("x", c), ("y", np.moveaxis(y, 0, -1)), ("z", np.moveaxis(z, 0, -1)),
                     ("scale_codes", np.moveaxis(im.scale_codes(z), 0, -1)), ("x_hat", im.synthesis(y))):
            want[n].append(v)
    want = {n: np.stack(v) for n, v in want.items()}
    builds = {t: finn_build(BUILD / side / t / "finn", "kv260", t) for t in accel["transforms"]}
    desc = overlay_description_v2(accel, builds)
    ins = {stream_dma(s["port"]): s["port"] for s in accel["streams"]["in"]}
    dmas = [(stream_dma(s["port"]), ins.get(stream_dma(s["port"])), s["port"]) for s in accel["streams"]["out"]]
    assert [d[0] for d in dmas] == [s["dma"] for s in desc["streams"]["out"]]
    case = tmp_path / "case.npz"
    np.savez(case, side=side, img=img, lic=np.frombuffer(lic, dtype=np.uint8), artifact=str(integer), tile=SIDE_SIZE,
             fpga_tiles=2, cpu_tiles=2, **{n: v.astype(np.uint8 if n in ("x", "scale_codes", "x_hat") else np.int8)
                                          for n, v in want.items()})
    (tmp_path / "licfpga.hwh").write_text(hwh(top, dmas))
    (tmp_path / "overlay.json").write_text(json.dumps(desc))
    run_cocotb(built["runner"], BUILD / side / "verilator", tmp_path, "test_pynq_driver", top, None, 5,
               {"PYNQ_CASE": str(case), "HWH_LOCATION_DIR": str(tmp_path), "COCOTB_SYS_ARGV": "pynq"},
               BUILD / side / "sim.log")
    got = np.load(str(case) + ".out.npz")
    assert sorted(got.files) == sorted(["y", "z", "scale_codes"] if side == "encoder"
                                       else ["scale_codes", "x_hat", "both_scale_codes", "both_x_hat"])
    for n in got.files:
        ref_v = want[n.removeprefix("both_")].astype(got[n].dtype)
        bad = np.argwhere(got[n] != ref_v)
        assert bad.size == 0, f"{n}: {len(bad)} values differ, first (frame, row, col, ch): {bad[:5].tolist()}"
    if side == "encoder":       # --backend fpga wrote the very bytes --backend integer writes
        data = Path(str(case) + ".lic").read_bytes()
        assert data == lic, f"fpga backend file differs from the integer backend's ({len(data)} vs {len(lic)} bytes)"
    else:                       # --backend fpga decoded the very pixels --backend integer decodes
        assert np.array_equal(np.load(str(case) + ".rgb.npy"), ref.decode(lic)[0])


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
