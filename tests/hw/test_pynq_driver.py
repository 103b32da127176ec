"""The PYNQ driver (licfpga.host.pynq_driver.StreamAccelerator) against the RTL it drives.

No board here: cocotbpynq (a drop-in for PYNQ's ``Overlay``/``allocate``/DMA that acts on a
cocotb simulation) stands in for ``pynq``, so the driver's own code -- word packing, receive
armed before send, waits, unpacking -- runs unchanged against Verilator simulating
tests/hw/pynq_sim_top.sv: the DMA-side 32-bit streams, the width converters, the stitched
g_a of the shipped student (FINN's RTL layers + our GDN kernels, as tests/hw/test_g_a_rtl.py
builds it) and axis_frame_tlast. The overlay description cocotbpynq reads (a ``.hwh``) is
written by this test: Vivado makes the real one, and there is no Vivado here. cocotbpynq
only knows Zynq-7000 handoff files, so the PS is declared as ``processing_system7``; the PS
plays no part in the stream path being tested.

Checked: y for 64x64 crops equals the integer model's g_a, frame after frame through the
same buffers; a frame of the wrong shape is refused before anything is sent; and the codec's
``--backend fpga`` (integer_codec.FpgaIntegerCodec: g_a on the overlay) writes a .lic file
byte-identical to ``--backend integer``'s for a 96x128 image in 64-px tiles.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import run_cocotb, verilator_env

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

    def pynq_g_a(dut=None):
        """Plain synchronous PYNQ-style code (cocotbpynq.synctest runs it inside cocotb)."""
        from licfpga.host.integer_codec import FpgaIntegerCodec

        case = np.load(os.environ["PYNQ_CASE"])
        x, img = case["x"], case["img"]
        # the codec's --backend fpga path: one overlay, one DMA, g_a on the "FPGA"
        codec = FpgaIntegerCodec(str(case["artifact"]), overlay="licfpga.bit", tile=int(case["tile"]), pynq=cocotbpynq)
        acc = codec.accelerator
        try:
            acc.run(x[0][:-1])
            raise AssertionError("a frame of the wrong shape was accepted")
        except ValueError:
            pass
        got = np.stack([acc.run(frame) for frame in x])          # the driver alone
        np.save(os.environ["PYNQ_CASE"] + ".out.npy", got)
        data = codec.encode(img)                                   # the whole codec
        with open(os.environ["PYNQ_CASE"] + ".lic", "wb") as fh:
            fh.write(data)
        assert codec.cpu_tiles == 0 and codec.fpga_tiles == int(case["tiles"]), (codec.fpga_tiles, codec.cpu_tiles)
        assert acc.frames == len(x) + codec.fpga_tiles

    pynq_g_a = cocotbpynq.synctest(pynq_g_a)


# ==================================================================== pytest side
def hwh(top: str) -> str:
    """A minimal hardware handoff: PS (memory map naming the DMA), the DMA and the
    accelerator's two streams wired to it, clock and active-low reset of the accelerator."""
    def axis(busname, name, kind, prefix):
        maps = "".join(f'<PORTMAP LOGICAL="{s}" PHYSICAL="{prefix}_{s.lower()}"/>'
                       for s in ("TDATA", "TVALID", "TREADY", "TLAST"))
        return (f'<BUSINTERFACE BUSNAME="{busname}" NAME="{name}" TYPE="{kind}" '
                f'VLNV="xilinx.com:interface:axis:1.0"><PORTMAPS>{maps}</PORTMAPS></BUSINTERFACE>')
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="handwritten by tests/hw/test_pynq_driver.py" VIVADOVERSION="none">
  <SYSTEMINFO ARCH="zynq" DEVICE="simulation" NAME="licfpga" PACKAGE="none" SPEEDGRADE="-1"/>
  <MODULES>
    <MODULE FULLNAME="/ps" INSTANCE="ps" MODTYPE="processing_system7" VLNV="xilinx.com:ip:processing_system7:5.5">
      <MEMORYMAP>
        <MEMRANGE ADDRESSBLOCK="Reg" BASENAME="C_BASEADDR" BASEVALUE="0x40400000" HIGHNAME="C_HIGHADDR"
                  HIGHVALUE="0x4040FFFF" INSTANCE="dma" IS_DATA="TRUE" IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="M_AXI_GP0"
                  MEMTYPE="REGISTER" SLAVEBUSINTERFACE="S_AXI_LITE"/>
      </MEMORYMAP>
    </MODULE>
    <MODULE FULLNAME="/dma" INSTANCE="dma" MODTYPE="axi_dma" VLNV="xilinx.com:ip:axi_dma:7.1">
      <BUSINTERFACES>
        <BUSINTERFACE BUSNAME="dma_M_AXIS_MM2S" NAME="M_AXIS_MM2S" TYPE="INITIATOR" VLNV="xilinx.com:interface:axis:1.0"/>
        <BUSINTERFACE BUSNAME="accel_m_axis" NAME="S_AXIS_S2MM" TYPE="TARGET" VLNV="xilinx.com:interface:axis:1.0"/>
      </BUSINTERFACES>
    </MODULE>
    <MODULE FULLNAME="/accel" INSTANCE="accel" MODTYPE="{top}" VLNV="licfpga:sim:{top}:1.0">
      <PORTS>
        <PORT DIR="I" NAME="clk" SIGIS="clk"/>
        <PORT DIR="I" NAME="rst_n" POLARITY="ACTIVE_LOW" SIGIS="rst"/>
      </PORTS>
      <BUSINTERFACES>
        {axis("dma_M_AXIS_MM2S", "s_axis", "TARGET", "s_axis")}
        {axis("accel_m_axis", "m_axis", "INITIATOR", "m_axis")}
      </BUSINTERFACES>
    </MODULE>
  </MODULES>
</EDKSYSTEM>
"""


@pytest.fixture(scope="module")
def pynq_sim():
    """FINN flow + stitch of g_a (as test_g_a_rtl), then a Verilator build of pynq_sim_top."""
    import torch
    from test_g_a_rtl import _artifacts, _finn, _runner

    from licfpga.overlay import export_qonnx as E

    qat, integer = _artifacts()
    env = verilator_env()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    torch.set_num_threads(1)
    onnx = E.export_transform(E.load_model(qat=str(qat)), "g_a", BUILD / "qonnx" / "g_a.onnx", size=SIZE)
    out = _finn(
        "import json, os\n"
        "from finn.util.settings import initialize_dummy_settings\n"
        "from licfpga.overlay.finn_flow import run_flow\n"
        "from licfpga.overlay.rtl_stitch import stitch\n"
        f"r = run_flow({str(onnx)!r}, 'kv260', out_root={str(BUILD / 'finn')!r}, target_cycles={TARGET_CYCLES},"
        f" fifo_depth=256, golden={str(integer)!r}, codegen=True)\n"
        f"s = stitch({str(BUILD / 'finn' / 'kv260' / 'g_a' / 'g_a_final.onnx')!r}, {str(BUILD / 'rtl')!r})\n"
        "initialize_dummy_settings()\n"
        "from finn.util.settings import get_settings\n"
        "print(json.dumps({'stitch': s, 'rtllib': str(get_settings().finn_rtllib),"
        " 'out': r['output_stream'], 'in': r['input_stream']}, default=str))")
    info = json.loads(out.strip().splitlines()[-1])
    st = info["stitch"]
    dwc = Path(info["rtllib"]) / "dwc" / "hdl"
    vlt = BUILD / "rtl" / "public.vlt"
    vlt.write_text('`verilator_config\npublic_flat_rw -module "%s" -var "*"\n' % TOP)
    sources = ([Path(f) for f in st["sim_files"]] + [dwc / "vpc.sv", dwc / "dwc_axi.sv",
               ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv", HERE / "pynq_sim_top.sv", vlt])
    out_bytes = info["out"]["beats_per_frame"] * info["out"]["width_bits"] // 8
    params = {"IN_BITS": st["input"]["stream_width"], "OUT_BITS": st["output"]["stream_width"],
              "OUT_WORDS": out_bytes // 4}
    runner = _runner()
    os.environ["MAKEFLAGS"] = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include"
    runner.build(sources=sources, hdl_toplevel=TOP, build_dir=BUILD / "verilator", parameters=params,
                 defines={"ACCEL": st["top"]}, timescale=("1ns", "1ps"),
                 build_args=["--no-timing", "-Wno-fatal", "-Wno-WIDTH", "-Wno-UNSIGNED", "-Wno-INITIALDLY",
                             "-Wno-LATCH", "-Wno-SELRANGE"],
                 log_file=BUILD / "verilator_build.log")
    yield runner, st, integer, out_bytes
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_pynq_driver_runs_g_a_bit_exact(pynq_sim, tmp_path):
    from test_g_a_rtl import _crops

    from licfpga.model.golden.network import IntegerModel

    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.overlay.vivado import finn_build, overlay_description

    runner, st, integer, out_bytes = pynq_sim
    im = IntegerModel.load(integer)
    # a 96x128 image in 64-px tiles: 4 tiles, each padded to the overlay's 64x64 frame
    c = _crops(4)
    img = np.ascontiguousarray(np.concatenate([np.concatenate(c[:2], axis=1), np.concatenate(c[2:], axis=1)])[16:112])
    assert img.shape == (96, 128, 3)
    expected = IntegerCodec(integer, tile=SIZE).encode(img)
    x = np.stack(_crops(N_FRAMES))
    y = np.stack([np.moveaxis(im.run_transform("g_a", c.transpose(2, 0, 1).astype(np.int64)), 0, -1)
                  for c in x]).astype(np.int8)
    assert y.nbytes // N_FRAMES == out_bytes
    case = tmp_path / "case.npz"
    np.savez(case, x=x.astype(np.uint8), y=y.astype(np.int8), img=img, artifact=str(integer), tile=SIZE, tiles=4)
    (tmp_path / "licfpga.hwh").write_text(hwh(TOP))
    (tmp_path / "overlay.json").write_text(json.dumps(overlay_description(
        finn_build(BUILD / "finn", "kv260", "g_a"), "g_a")))
    for m in st["meminit"]:
        shutil.copy(m, tmp_path / Path(m).name)
    run_cocotb(runner, BUILD / "verilator", tmp_path, "test_pynq_driver", TOP, None, 3,
               {"PYNQ_CASE": str(case), "HWH_LOCATION_DIR": str(tmp_path), "COCOTB_SYS_ARGV": "pynq_g_a"},
               BUILD / "sim.log")
    got = np.load(str(case) + ".out.npy")
    bad = np.argwhere(got != y)
    assert bad.size == 0, f"{len(bad)} latents differ, first (frame, row, col, ch): {bad[:5].tolist()}"
    # --backend fpga wrote the very bytes --backend integer writes
    data = Path(str(case) + ".lic").read_bytes()
    assert data == expected, f"fpga backend file differs from the integer backend's ({len(data)} vs {len(expected)} bytes)"
