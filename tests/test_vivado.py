"""Vivado project generation (licfpga.overlay.vivado): files, parameters, exit codes, Tcl syntax.

Vivado itself is never run here (not installed); tclsh checks what plain Tcl can check.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from licfpga.overlay import vivado
from licfpga.overlay.boards import list_boards, load_board

from .conftest import require

TCLSH = shutil.which("tclsh")


def _no_vivado_path(monkeypatch, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_boards_listed():
    assert list_boards() == ["kv260", "zcu102"]
    kv = load_board("kv260")
    assert kv["part"] == "xck26-sfvc784-2LV-c"
    assert kv["resources"] == {"LUT": 117120, "FF": 234240, "DSP": 1248, "BRAM36": 144, "URAM": 64}
    zcu = load_board("zcu102")
    assert zcu["part"] == "xczu9eg-ffvb1156-2-e" and zcu["board_part"] == "xilinx.com:zcu102:part0:3.4"
    assert zcu["resources"]["URAM"] == 0


@pytest.mark.parametrize("board", ["kv260", "zcu102"])
def test_generates_project_without_vivado(board, tmp_path, monkeypatch, capsys):
    _no_vivado_path(monkeypatch, tmp_path)
    rc = vivado.main(["--board", board, "--build-dir", str(tmp_path / "build")])
    assert rc == vivado.EXIT_NO_VIVADO == 3
    d = tmp_path / "build" / board
    tcl = (d / "board.tcl").read_text()
    b = load_board(board)
    assert f"set part {{{b['part']}}}" in tcl
    assert f"set board_part {{{b['board_part']}}}" in tcl
    assert "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {200}" in tcl
    assert (d / "build_overlay.tcl").read_text() == vivado.TCL_SOURCE.read_text()
    run = (d / "run_vivado.sh").read_text()
    assert "vivado -mode batch -nojournal -log vivado.log -source build_overlay.tcl -tclargs board.tcl" in run
    err = capsys.readouterr().err
    assert "no bitstream was made" in err and "run_vivado.sh" in err


def test_wrong_board(tmp_path, capsys):
    assert vivado.main(["--board", "x", "--build-dir", str(tmp_path)]) == 2
    assert "unknown board 'x'; available: kv260, zcu102" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("board", ["kv260", "zcu102"])
def test_tcl_parses(board, tmp_path):
    require(TCLSH is not None, "tclsh not installed (Debian: apt-get install tcl)")
    d = vivado.write_project(load_board(board), tmp_path)
    check = tmp_path / "check.tcl"
    check.write_text(
        "source [lindex $argv 0]\n"
        "foreach v {part board_part ps_config ps_ctrl_port ps_dma_port ps_irq_port ps_pl_clk\n"
        "           stitched_ip_dir proj_dir out_dir accel_s_axis accel_m_axis accel_out_beats here jobs} {\n"
        "    if {![info exists $v]} { error \"board.tcl does not set $v\" } }\n"
        "if {[llength $ps_config] % 2} { error \"ps_config is not a key/value list\" }\n"
        "set f [open [lindex $argv 1]]; set t [read $f]; close $f\n"
        "if {![info complete $t]} { error \"build_overlay.tcl: unbalanced braces/quotes\" }\n"
        "puts \"$part [file tail $stitched_ip_dir] [expr {[llength $ps_config] / 2}]\"\n")
    out = subprocess.run([TCLSH, str(check), str(d / "board.tcl"), str(d / "build_overlay.tcl")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [load_board(board)["part"], "stitched_ip", str(len(load_board(board)["ps"]["config"]))]


def test_tlast_frame_length_from_the_finn_build(tmp_path):
    """board.tcl carries the accelerator's output beats per frame from the FINN build's
    estimates.json (0 -- and a clear Tcl error at run time -- without one), and the TLAST
    module the Tcl instantiates is copied beside it."""
    import json

    b = load_board("kv260")
    d = vivado.write_project(b, tmp_path / "build")
    assert "set accel_out_beats {0}" in (d / "board.tcl").read_text()
    assert (d / "axis_frame_tlast.sv").read_text() == vivado.TLAST_RTL.read_text()
    assert "axis_frame_tlast" in vivado.TCL_SOURCE.read_text()
    g = tmp_path / "build" / "kv260" / "g_a"
    g.mkdir(parents=True)
    io = {"input": {"shape": [1, 64, 64, 3], "datatype": "UINT8"}, "output": {"shape": [1, 4, 4, 48], "datatype": "INT8"}}
    (g / "estimates.json").write_text(json.dumps({"output_stream": {"width_bits": 8, "beats_per_frame": 768},
                                                  "io": io, "golden": {"name": "int-x", "digest": "ab"}}))
    d = vivado.write_project(b, tmp_path / "build")
    assert "set accel_out_beats {768}" in (d / "board.tcl").read_text()
    # overlay.json for the PYNQ driver: transform, frames, the artifact the overlay computes
    desc = json.loads((d / "overlay.json").read_text())
    assert desc["transform"] == "g_a" and desc["io"] == io and desc["golden"]["digest"] == "ab"


def test_fpga_backend_refuses_clearly(tmp_path, capsys):
    """licfpga compress --backend fpga: exit 2 with the reason -- no overlay.json beside the
    bitstream, an overlay built from another artifact, no pynq on this machine."""
    import json

    from licfpga.host import cli
    from licfpga.model.golden.network import IntegerModel

    img = str(Path(__file__).resolve().parent.parent / "host" / "samples" / "kodim23.png")
    bit = tmp_path / "licfpga.bit"
    args = ["compress", img, str(tmp_path / "o.lic"), "--backend", "fpga", "--overlay", str(bit)]
    assert cli.main(args) == 2
    assert "overlay.json missing" in capsys.readouterr().err
    io = {"input": {"shape": [1, 64, 64, 3], "datatype": "UINT8"}, "output": {"shape": [1, 4, 4, 48], "datatype": "INT8"}}
    desc = {"transform": "g_a", "io": io, "golden": {"name": "int-other", "digest": "00"}}
    (tmp_path / "overlay.json").write_text(json.dumps(desc))
    assert cli.main(args) == 2
    assert "was built from int-other" in capsys.readouterr().err
    desc["golden"]["digest"] = IntegerModel.load(Path(__file__).resolve().parent.parent / "model" / "checkpoints"
                                                 / "int-student-0.013").digest().hex()
    (tmp_path / "overlay.json").write_text(json.dumps(desc))
    assert cli.main(args) == 2
    assert "pynq is not usable here" in capsys.readouterr().err
    assert not (tmp_path / "o.lic").exists()
