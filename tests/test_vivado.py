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
    assert "tclsh is not installed either (make tclsh): no dry run" in err     # PATH is empty here


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
    desc = json.loads((d / "deploy" / "overlay.json").read_text())
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


# ==================================================================== recorded dry run
# build_overlay.tcl under tclsh with every Vivado command recorded by vivado/vivado_shim.tcl
# (licfpga.overlay.vivado.dry_run; `make overlay` does this where Vivado is absent).
IO = {"input": {"shape": [1, 64, 64, 3], "datatype": "UINT8"}, "output": {"shape": [1, 4, 4, 48], "datatype": "INT8"}}
# the flow, in order: the Vivado commands that must appear (first word + a marker argument)
FLOW = [("create_project", "-part"), ("set_property", "ip_repo_paths"), ("get_ipdefs", "-all"),
        ("create_bd_design", "licfpga"), ("create_bd_cell", "xilinx.com:ip:zynq_ultra_ps_e"),
        ("create_bd_cell", "xilinx.com:ip:axi_dma"), ("create_bd_cell", "accel"),
        ("add_files", "axis_frame_tlast.sv"), ("create_bd_cell", "axis_frame_tlast"),
        ("assign_bd_address", None), ("validate_bd_design", None), ("make_wrapper", "-top"),
        ("generate_target", "all"), ("launch_runs", "impl_1"), ("wait_on_run", "impl_1"),
        ("open_run", "impl_1"), ("report_timing_summary", "-file"), ("get_timing_paths", "-setup"),
        ("get_timing_paths", "-hold"), ("write_bitstream", "-force")]


def _tclsh_only_path(monkeypatch, tmp_path):
    """PATH with tclsh and no vivado."""
    b = tmp_path / "bin"
    b.mkdir()
    (b / "tclsh").symlink_to(TCLSH)
    monkeypatch.setenv("PATH", str(b))


def _fake_finn(build, board="kv260", in_bits=24, out_bits=8, beats=768):
    """A FINN build's estimates.json, and the stitched IP's component.xml as FINN's own dry
    run leaves it (a placeholder naming finn_design) in <board>/dry_run/stitched_ip/ip/."""
    import json

    g = build / board / "g_a"
    g.mkdir(parents=True)
    (g / "estimates.json").write_text(json.dumps({
        "io": IO, "golden": {"name": "int-x", "digest": "ab"}, "est_fps": 4000.0,
        "input_stream": {"width_bits": in_bits, "beats_per_frame": 4096},
        "output_stream": {"width_bits": out_bits, "beats_per_frame": beats}}))
    ip = build / board / "dry_run" / "stitched_ip" / "ip"
    ip.mkdir(parents=True)
    (ip / "component.xml").write_text("<!-- test placeholder for the packaged IP finn_design -->\n")


def _commands(log_text: str, section: str = "build_overlay.tcl") -> list[list[str]]:
    """The recorded commands (as word lists) of the log's section that sources ``section``."""
    import shlex

    out, inside = [], False
    for line in log_text.splitlines():
        if line.startswith("# ---- source"):
            inside = line.split()[3].endswith(section)
        elif inside and line[:4].strip().isdigit():
            words = line[6:].split("  => ")[0]
            out.append(shlex.split(words.replace("{", "'").replace("}", "'")))
    return out


def _in_order(cmds, flow):
    it = iter(cmds)
    return all(any(c[0] == name and (marker is None or any(marker in w for w in c)) for c in it)
               for name, marker in flow)


@pytest.mark.parametrize("board", ["kv260", "zcu102"])
def test_dry_run_records_the_flow_in_order(board, tmp_path, monkeypatch, capsys):
    """Vivado absent, tclsh present: the Vivado commands of the whole flow are recorded in
    order, every file and IP directory they read exists, our Tcl uses no command the shim
    does not know, the placeholder bitstream lands in dry_run/deploy (never in deploy/),
    next to .hwh and overlay.json; exit 3 (no bitstream) and the log's path printed."""
    require(TCLSH is not None, "tclsh not installed (make tclsh)")
    build = tmp_path / "build"
    _fake_finn(build, board, in_bits=24, out_bits=32)
    _tclsh_only_path(monkeypatch, tmp_path)
    assert vivado.main(["--board", board, "--build-dir", str(build), "--jobs", "4"]) == vivado.EXIT_NO_VIVADO
    err = capsys.readouterr().err
    d = (build / board).resolve()
    log = d / "dry_run" / "vivado_commands.log"
    assert f"recorded in {log}" in err
    text = log.read_text()
    assert text.startswith("# NEVER RUN HERE: a dry run with Vivado absent")
    assert text.rstrip().endswith("# ---- exit 0") and "unchecked" not in text
    cmds = _commands(text)
    assert _in_order(cmds, FLOW), [c[0] for c in cmds]
    assert ["launch_runs", "impl_1", "-jobs", "4"] in cmds
    # every input the commands name exists (the Tcl itself, the TLAST RTL, the IP repository)
    for c in cmds:
        if c[0] == "add_files":
            assert all(Path(f).is_file() for f in c[1:] if not f.startswith("-")), c
        if c[:2] == ["set_property", "ip_repo_paths"]:
            assert Path(c[2]).is_dir() and Path(c[2]) == d / "dry_run" / "stitched_ip", c
    # 24-bit accelerator input vs the DMA's 32 bits: a width converter on the way in; the
    # 32-bit output goes straight to the DMA
    assert any(c[:4] == ["create_bd_cell", "-type", "ip", "-vlnv"] and c[-1] == "dw_in" for c in cmds)
    assert not any(c[0] == "create_bd_cell" and c[-1] == "dw_out" for c in cmds)
    assert sorted(p.name for p in (d / "dry_run" / "deploy").iterdir()) == \
        ["licfpga.bit", "licfpga.hwh", "overlay.json", "timing.rpt", "utilization.rpt"]
    assert (d / "dry_run" / "deploy" / "licfpga.bit").read_text().startswith("DRY RUN placeholder")
    assert sorted(p.name for p in (d / "deploy").iterdir()) == ["overlay.json"]


@pytest.mark.parametrize("wns,whs", [("-0.125", "0.02"), ("0.3", "-0.01"), ("none", "0.1")])
def test_dry_run_fails_on_unmet_timing(wns, whs, tmp_path):
    """Negative worst setup or hold slack (or no timed path): build_overlay.tcl prints the
    timing summary, names WNS/WHS, exits 1 and writes no bitstream."""
    require(TCLSH is not None, "tclsh not installed (make tclsh)")
    build = tmp_path / "build"
    _fake_finn(build)
    b = load_board("kv260")
    d = vivado.write_project(b, build)
    rc, log, last = vivado.dry_run(d, b, wns=wns, whs=whs)
    assert rc == 1
    assert last == (f"licfpga: ERROR: timing not met at 200 MHz: WNS {wns} ns, WHS {whs} ns "
                    f"(summary above, {d.resolve() / 'dry_run' / 'deploy' / 'timing.rpt'}); no bitstream written")
    out = (d / "dry_run" / "vivado.log").read_text()
    assert "(dry run: report_timing_summary has no content" in out          # the summary, printed
    cmds = _commands(log.read_text())
    assert ["report_timing_summary", "-max_paths", "10", "-return_string"] in cmds
    assert not any(c[0] == "write_bitstream" for c in cmds)
    assert not (d / "dry_run" / "deploy" / "licfpga.bit").exists()


@pytest.mark.parametrize("missing,message", [("stitched_ip", "no accelerator IP in"),
                                             ("overlay.json", "overlay.json missing: run the FINN step")])
def test_dry_run_stops_without_its_inputs(missing, message, tmp_path):
    """No FINN stitched IP (its step not run), or no overlay.json for deploy/: the dry run
    fails like Vivado would, exit 1, the reason in one line; overlay.json is checked before
    any Vivado command."""
    require(TCLSH is not None, "tclsh not installed (make tclsh)")
    build = tmp_path / "build"
    _fake_finn(build)
    b = load_board("kv260")
    d = vivado.write_project(b, build)
    if missing == "stitched_ip":
        shutil.rmtree(build / "kv260" / "dry_run" / "stitched_ip")
    else:
        (d / "deploy" / "overlay.json").unlink()
    rc, log, last = vivado.dry_run(d, b)
    assert rc == 1 and last.startswith("licfpga: ERROR: ") and message in last, last
    assert (missing == "overlay.json") == (_commands(log.read_text()) == [])


def test_committed_dry_run_log_matches_todays_tcl(tmp_path):
    """vivado/dry_run_kv260.log (make overlay BOARD=kv260 here: FINN's stitching Tcl, then
    ours) is labelled never-run, ran both scripts to the end, and its build_overlay.tcl
    commands are the ones today's Tcl records for the same stream widths and frame length."""
    require(TCLSH is not None, "tclsh not installed (make tclsh)")
    import re

    text = (vivado.TCL_SOURCE.parent / "dry_run_kv260.log").read_text()
    assert text.startswith("# NEVER RUN HERE: a dry run with Vivado absent")
    assert text.count("# ---- exit 0") == 2 and "make_project.tcl" in text and "ERROR" not in text
    old = _commands(text)
    width = {m[0]: int(m[1]) for m in re.findall(r"get_property CONFIG.TDATA_NUM_BYTES (accel/\w+)\s+=> (\d+)", text)}
    beats = int(re.search(r"CONFIG.BEATS (\d+)", text).group(1))
    jobs = next(c[3] for c in old if c[:2] == ["launch_runs", "impl_1"])
    build = tmp_path / "build"
    _fake_finn(build, in_bits=8 * width["accel/s_axis_0"], out_bits=8 * width["accel/m_axis_0"], beats=beats)
    b = load_board("kv260")
    d = vivado.write_project(b, build, jobs=int(jobs))
    rc, log, _ = vivado.dry_run(d, b)
    assert rc == 0
    def norm(cmds, root):
        return [[w.replace(root, "<board>") for w in c] for c in cmds]
    assert norm(_commands(log.read_text()), str(d.resolve())) == norm(old, "overlay/build/kv260")


def _fake_side(build, side, board="kv260"):
    """A whole-side design as overlay/accel_top.py leaves it in <board>/<side>/ (accel.json,
    filelist.f naming one existing file) and the FINN estimates of its transforms."""
    import json

    from .test_overlay_v2 import _accel

    accel = _accel(side, 48, 30)
    d = build / board / side
    d.mkdir(parents=True)
    (d / f"{side}_top.sv").write_text(f"module {side}_top; endmodule\n")
    (d / "filelist.f").write_text(str((d / f"{side}_top.sv").resolve()) + "\n")
    (d / "accel.json").write_text(json.dumps(accel))
    for t in accel["transforms"]:
        (build / board / t).mkdir(parents=True, exist_ok=True)
        (build / board / t / "estimates.json").write_text(json.dumps(
            {"golden": {"name": "int-x", "digest": "ab"}, "board": board, "clk_ns": 5.0}))
    return accel


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_dry_run_whole_side_design(side, tmp_path, monkeypatch, capsys):
    """--side encoder / decoder: overlay.json format 2 in deploy/ (what the driver reads), the
    design's RTL as a module reference, one AXI DMA per stream pair (the encoder's dma_1 and
    dma_2 S2MM only), a TLAST counter with that stream's beats on every output, every DMA
    channel on the memory SmartConnect and the interrupt concat; the dry run ends cleanly."""
    require(TCLSH is not None, "tclsh not installed (make tclsh)")
    from licfpga.host.pynq_driver import read_overlay_description

    build = tmp_path / "build"
    accel = _fake_side(build, side)
    _tclsh_only_path(monkeypatch, tmp_path)
    assert vivado.main(["--board", "kv260", "--build-dir", str(build), "--side", side]) == vivado.EXIT_NO_VIVADO
    d = (build / "kv260").resolve()
    desc = read_overlay_description(d / "deploy" / "overlay.json")
    assert desc["format"] == "licfpga-overlay/2" and desc["transforms"] == list(accel["transforms"])
    text = (d / "dry_run" / "vivado_commands.log").read_text()
    assert text.rstrip().endswith("# ---- exit 0"), text[-800:]
    cmds = _commands(text)
    outs = accel["streams"]["out"]
    dmas = [c[-1] for c in cmds if c[:4] == ["create_bd_cell", "-type", "ip", "-vlnv"] and "axi_dma" in c[4]]
    assert dmas == [f"dma_{k}" for k in range(len(outs))]
    s2mm_only = [c[-1] for c in cmds if c[:2] == ["set_property", "-dict"] and "CONFIG.c_include_mm2s" in c[2]]
    assert s2mm_only == (["dma_1", "dma_2"] if side == "encoder" else [])
    assert ["create_bd_cell", "-type", "module", "-reference", f"{side}_top", "accel"] in cmds
    assert not any(c[:2] == ["set_property", "ip_repo_paths"] for c in cmds)       # no FINN IP needed
    beats = [c[2] for c in cmds if c[:2] == ["set_property", "-dict"] and "CONFIG.BEATS" in c[2]]
    assert [int(b.split()[1]) for b in beats] == [s["beats_per_frame"] for s in outs]
    n_chan = len(outs) + len(accel["streams"]["in"])
    assert any(c[:2] == ["set_property", "-dict"] and f"CONFIG.NUM_SI {n_chan} " in c[2] + " " for c in cmds)
    assert ["set_property", "CONFIG.NUM_PORTS", str(n_chan), "irq"] in cmds
    for k in range(len(outs)):          # every output through its own TLAST counter to its DMA's S2MM
        assert ["connect_bd_intf_net", f"accel/m_axis_{k}", f"tlast_{k}/s_axis"] in cmds
        assert ["connect_bd_intf_net", f"dw_out_{k}/M_AXIS", f"dma_{k}/S_AXIS_S2MM"] in cmds
