"""Vivado project inputs for a board, and the Vivado run itself where Vivado exists.

    python -m licfpga.overlay.vivado --board kv260 [--build-dir overlay/build] [--jobs N]

Writes ``<build-dir>/<board>/``: ``board.tcl`` (the board file's parameters as Tcl ``set``
commands, so the Tcl never parses JSON, + the accelerator's output beats per frame from the
FINN build), ``axis_frame_tlast.sv`` (TLAST for the DMA), ``deploy/overlay.json`` (for the
PYNQ driver: transform, frame shapes, integer artifact; Vivado adds ``licfpga.bit`` and
``licfpga.hwh`` beside it), ``build_overlay.tcl`` (a copy of vivado/build_overlay.tcl, so
the directory is self-contained on a Vivado machine) and ``run_vivado.sh`` (the exact
command). The accelerator IP is expected in ``<build-dir>/<board>/stitched_ip`` (FINN's
stitched IP: :mod:`licfpga.overlay.finn_stitch`).

If ``vivado`` is on PATH it runs it (its exit status: 1 on a failed build or unmet timing).
Otherwise it makes a **recorded dry run** (:func:`dry_run`): the same Tcl under plain
``tclsh`` with every Vivado command recorded by vivado/vivado_shim.tcl, in
``<board>/dry_run/`` (log: ``dry_run/vivado_commands.log``), says so, and exits with status
3 (no bitstream was made) -- or 1 if the dry run itself failed (the Tcl stopped with an
error: it would stop in Vivado too). Unknown board: 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .boards import BoardError, list_boards, load_board

TCL_SOURCE = Path(__file__).resolve().parent.parent / "vivado" / "build_overlay.tcl"
# the recorded-dry-run stand-in for Vivado (a `vivado` wrapper around vivado_shim.tcl)
SHIM_DIR = Path(__file__).resolve().parent.parent / "vivado" / "shim"
DRY_RUN_LABEL = ("# NEVER RUN HERE: a dry run with Vivado absent. Each numbered line is a Vivado Tcl command\n"
                 "# the flow would run, in order, recorded by vivado/vivado_shim.tcl under plain tclsh; nothing\n"
                 "# was synthesised, placed, routed or timed. `=> x (placeholder)` values and `creates`\n"
                 "# files are the shim's stand-ins, not results.\n")
# raises TLAST on the accelerator's last output beat of a frame (FINN streams have none; the
# DMA's S2MM channel needs it): copied beside the Tcl, instantiated as a module reference
TLAST_RTL = Path(__file__).resolve().parent.parent / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv"
EXIT_NO_VIVADO = 3


def tcl_quote(value) -> str:
    """A Tcl word in braces (no substitution); our values never contain braces."""
    text = str(value)
    if any(c in text for c in "{}\\\n"):
        raise ValueError(f"value not representable as a braced Tcl word: {text!r}")
    return "{" + text + "}"


def finn_build(build_dir: Path, board: str, transform: str) -> dict:
    """finn_flow's ``estimates.json`` of ``transform`` for ``board`` ({} if not built yet)."""
    f = Path(build_dir) / board / transform / "estimates.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def overlay_description(build: dict, transform: str) -> dict:
    """``overlay.json``, copied to the board beside ``licfpga.bit``: what the PYNQ driver
    (licfpga.host.pynq_driver / integer_codec.FpgaIntegerCodec) needs to use the overlay --
    the transform, the frame in and out (NHWC integers), and the integer artifact the
    accelerator's numbers were proven equal to (name + digest: a codec refuses another)."""
    return {"format": "licfpga-overlay/1", "transform": transform, "io": build.get("io"),
            "input_stream": build.get("input_stream"), "output_stream": build.get("output_stream"),
            "golden": build.get("golden"), "board": build.get("board"), "clk_ns": build.get("clk_ns"),
            # FINN's estimate of frames/s for this frame (the driver's DMA timeout scales with it)
            "est_fps": build.get("est_fps")}


# format 2: a whole-side design (overlay/accel_top.py's accel.json). Stream names (what the
# driver and FpgaIntegerCodec use) by port; stream k (s_axis_k / m_axis_k) goes through DMA
# dma_k (its MM2S / S2MM channel): encoder dma_0 = RGB in + y out, dma_1 = z out, dma_2 =
# scale codes out (S2MM only); decoder dma_0 = z in + scale codes out, dma_1 = y hat in + RGB out
V2_STREAMS = {"encoder": {"s_axis_0": "x", "m_axis_0": "y", "m_axis_1": "z", "m_axis_2": "scale_codes"},
              "decoder": {"s_axis_0": "z", "m_axis_0": "scale_codes", "s_axis_1": "y_hat", "m_axis_1": "x_hat"}}
# what one run sends and receives: the encoder is one pipeline, the decoder two independent ones
V2_PIPELINES = {"encoder": [{"transforms": ["g_a", "h_a", "h_s"], "in": ["x"], "out": ["y", "z", "scale_codes"]}],
                "decoder": [{"transforms": ["h_s"], "in": ["z"], "out": ["scale_codes"]},
                            {"transforms": ["g_s"], "in": ["y_hat"], "out": ["x_hat"]}]}


def stream_dma(port: str) -> str:
    """The DMA of stream ``port`` (s_axis_k / m_axis_k -> dma_k)."""
    return "dma_" + port.rsplit("_", 1)[1]


def overlay_description_v2(accel: dict, builds: dict) -> dict:
    """``overlay.json`` (format 2) of a whole-encoder / whole-decoder design: ``accel`` is
    overlay/accel_top.py's accel.json, ``builds`` transform -> its FINN ``estimates.json``
    (the golden artifact, board and clock; every transform must share one artifact)."""
    side = accel["side"]
    golden = {json.dumps(b.get("golden"), sort_keys=True) for b in builds.values()}
    if len(golden) != 1:
        raise ValueError(f"the {side} transforms were built from different artifacts: {sorted(golden)}")
    any_build = next(iter(builds.values()))
    clk_ns = any_build.get("clk_ns")
    names = V2_STREAMS[side]
    streams = {d: [{"name": names[s["port"]], "port": s["port"], "tensor": s["tensor"], "shape": s["shape"],
                    "datatype": s["datatype"], "dma": stream_dma(s["port"]), "stream_width": s["stream_width"],
                    "beats_per_frame": s["beats_per_frame"]} for s in accel["streams"][d]] for d in ("in", "out")}
    return {"format": "licfpga-overlay/2", "side": side, "top": accel["top"],
            "transforms": list(accel["transforms"]), "streams": streams, "pipelines": V2_PIPELINES[side],
            "golden": any_build.get("golden"), "board": any_build.get("board"), "clk_ns": clk_ns,
            # the pipelines run concurrently: the slowest layer of any sets the frame interval
            "est_fps": 1e9 / (clk_ns * accel["max_exp_cycles"]) if clk_ns and accel.get("max_exp_cycles") else None}


def dma_plan(board: dict, out_beats: int = 0, accel: dict | None = None) -> list[tuple]:
    """The block design's DMAs: (name, cell suffix, accelerator input port or "", output
    port, output beats per frame). One transform: one DMA ``dma`` (FINN's stitched IP's
    ports, ``out_beats`` from its build); a whole-side design (``accel``: accel.json): stream
    k through ``dma_k`` (:func:`stream_dma`), the encoder's dma_1 / dma_2 S2MM only."""
    if accel is None:
        acc = board.get("accelerator", {})
        return [("dma", "", acc.get("s_axis", "s_axis_0"), acc.get("m_axis", "m_axis_0"), out_beats)]
    ins = {stream_dma(s["port"]): s["port"] for s in accel["streams"]["in"]}
    return [(stream_dma(s["port"]), "_" + stream_dma(s["port"]).split("_")[1], ins.get(stream_dma(s["port"]), ""),
             s["port"], int(s["beats_per_frame"])) for s in accel["streams"]["out"]]


def board_tcl(board: dict, jobs: int, out_beats: int = 0, accel: dict | None = None) -> str:
    """The board's parameters as Tcl ``set`` commands; ``accel``: a whole-side design's
    accel.json (overlay/accel_top.py, in ``<board dir>/<side>/``), else FINN's stitched IP."""
    ps, dma = board["ps"], board["dma"]
    conns = " ".join(f"{k} {v}" for k, v in board.get("board_connections", {}).items())
    ps_cfg = " \\\n    ".join(f"{k} {tcl_quote(v)}" for k, v in ps["config"].items())
    acc = board.get("accelerator", {})
    values = [
        ("board", board["name"]),
        ("part", board["part"]),
        ("board_part", board["board_part"]),
        ("board_connections", conns),
        ("fclk_mhz", board["clock_mhz"]),
        ("ps_pl_clk", ps["pl_clk"]),
        ("ps_ctrl_port", ps["ctrl_port"]),
        ("ps_dma_port", ps["dma_port"]),
        ("ps_irq_port", ps["irq_port"]),
        ("dma_mm_width", dma["mm_data_width"]),
        ("dma_stream_width", dma["stream_data_width"]),
        ("dma_len_width", dma["buffer_length_width"]),
        # FINN's stitched IP interface names (FINN >= 0.9: s_axis_0 / m_axis_0; an
        # AXI-Lite port only with runtime-writeable weights, e.g. weights in URAM).
        ("accel_s_axis", acc.get("s_axis", "s_axis_0")),
        ("accel_m_axis", acc.get("m_axis", "m_axis_0")),
        ("accel_s_axilite", acc.get("s_axilite", "")),
        # beats per output frame: axis_frame_tlast raises TLAST on the last one
        ("accel_out_beats", out_beats),
        ("jobs", jobs),
    ]
    lines = [f"# generated by licfpga.overlay.vivado from vivado/boards/{board['name']}.json",
             "# do not edit: regenerate with python -m licfpga.overlay.vivado --board "
             + board["name"]]
    lines += [f"set {name} {tcl_quote(value)}" for name, value in values]
    # Paths relative to this file: the directory can be copied to a Vivado machine as is.
    lines += ["set here [file dirname [file normalize [info script]]]",
              "set stitched_ip_dir [file join $here stitched_ip]",
              "set proj_dir [file join $here vivado_project]",
              "set out_dir [file join $here deploy]"]
    lines.append(f"set ps_config [list \\\n    {ps_cfg}]")
    # one {name suffix in_port out_port out_beats} per DMA (build_overlay.tcl's streams)
    lines.append("set accel_dmas [list " + " ".join("[list " + " ".join(tcl_quote(v) for v in d) + "]"
                                                      for d in dma_plan(board, out_beats, accel)) + "]")
    side = accel["side"] if accel else ""
    lines.append(f"set accel_top {tcl_quote(accel['top'] if accel else '')}")
    lines.append(f"set accel_filelist [file join $here {tcl_quote(side)} filelist.f]")
    return "\n".join(lines) + "\n"


VIVADO_COMMAND = ["vivado", "-mode", "batch", "-nojournal", "-log", "vivado.log",
                  "-source", "build_overlay.tcl", "-tclargs", "board.tcl"]   # run in the board dir


def side_design(build_dir: Path, board: str, side: str) -> dict:
    """accel.json of the whole-side design in ``<build_dir>/<board>/<side>/`` (written there by
    ``python -m licfpga.overlay.accel_top <side> ... --out <that dir>``)."""
    f = Path(build_dir) / board / side / "accel.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f} missing: run python -m licfpga.overlay.accel_top {side} ... --out {f.parent}")
    return json.loads(f.read_text())


def write_project(board: dict, build_dir: Path, jobs: int = 2, transform: str = "g_a", side: str | None = None) -> Path:
    """Write board.tcl, build_overlay.tcl, axis_frame_tlast.sv and run_vivado.sh; return the
    board directory. ``transform``: the FINN build whose stitched IP is the accelerator; or
    ``side`` ("encoder" / "decoder"): the whole-side design of :func:`side_design` (overlay.json
    format 2, one DMA per stream pair)."""
    d = Path(build_dir) / board["name"]
    d.mkdir(parents=True, exist_ok=True)
    if side:
        accel = side_design(build_dir, board["name"], side)
        builds = {t: finn_build(build_dir, board["name"], t) for t in accel["transforms"]}
        (d / "board.tcl").write_text(board_tcl(board, jobs, accel=accel))
        desc = overlay_description_v2(accel, builds) if all(builds.values()) else None
    else:
        build = finn_build(build_dir, board["name"], transform)
        # beats per output frame for the TLAST counter (0 until the FINN step has run)
        out_beats = int(build.get("output_stream", {}).get("beats_per_frame", 0))
        (d / "board.tcl").write_text(board_tcl(board, jobs, out_beats))
        desc = overlay_description(build, transform) if build else None
    if desc:
        (d / "deploy").mkdir(exist_ok=True)
        (d / "deploy" / "overlay.json").write_text(json.dumps(desc, indent=1))
    shutil.copyfile(TCL_SOURCE, d / "build_overlay.tcl")
    shutil.copyfile(TLAST_RTL, d / TLAST_RTL.name)
    script = d / "run_vivado.sh"
    script.write_text("#!/usr/bin/env bash\n"
                      "# generated by licfpga.overlay.vivado: run on a machine with Vivado "
                      "(2024.2 / 2025.1) on PATH\nset -euo pipefail\n"
                      'cd "$(dirname "$0")"\n' + shlex.join(VIVADO_COMMAND) + "\n")
    script.chmod(0o755)
    return d


def shim_props(board: dict, build: dict, accel: dict | None = None) -> str:
    """Values the dry run's ``get_property`` returns for the stream widths (bytes) that
    build_overlay.tcl compares to place width converters: the DMA side from the board file,
    the accelerator side from the FINN build (FINN pads stream widths to whole bytes) or from
    a whole-side design's accel.json."""
    dma_b = int(board["dma"]["stream_data_width"]) // 8
    if accel is None:
        width = {"in": build.get("input_stream", {}).get("width_bits", 8),
                 "out": build.get("output_stream", {}).get("width_bits", 8)}
        ports = dict(zip(("in", "out"), dma_plan(board)[0][2:4]))
        width = {ports[k]: v for k, v in width.items()}
    else:
        width = {s["port"]: s["stream_width"] for d in ("in", "out") for s in accel["streams"][d]}
    rows = []
    for name, sfx, in_port, out_port, _ in dma_plan(board, accel=accel):
        out_b = -(-int(width[out_port]) // 8)
        rows += [(f"{name}/M_AXIS_MM2S", dma_b), (f"{name}/S_AXIS_S2MM", dma_b)]
        rows += [(f"accel/{in_port}", -(-int(width[in_port]) // 8))] if in_port else []
        rows += [(f"accel/{out_port}", out_b), (f"tlast{sfx}/m_axis", out_b)]
    return "".join(f"prop {{CONFIG.TDATA_NUM_BYTES {pin}}} {v}\n" for pin, v in rows)


def dry_run(d: Path, board: dict, transform: str = "g_a", wns: str | None = None, whs: str | None = None,
            side: str | None = None):
    """Recorded dry run of ``run_vivado.sh`` in ``d/dry_run/`` (a copy of the project files, so
    the shim's placeholder bitstream never lands in ``d/deploy``): ``vivado`` is the shim
    (vivado/shim/vivado), the accelerator IP is ``dry_run/stitched_ip`` (made by the FINN
    step's own dry run, :mod:`licfpga.overlay.finn_stitch`, whose recorded commands
    ``dry_run/finn_stitch_commands.log`` come first in the log). ``wns``/``whs``: the worst
    slack the shim reports (default 0.0). ``side``: a whole-side design (its file list, in
    ``d/<side>/``, copied along). Returns (exit status, log path, last output line)."""
    d = Path(d).resolve()                     # the shim runs in dry_run/: absolute paths
    dr = d / "dry_run"
    dr.mkdir(exist_ok=True)
    for name in ("board.tcl", "build_overlay.tcl", TLAST_RTL.name):
        shutil.copyfile(d / name, dr / name)
    shutil.rmtree(dr / "deploy", ignore_errors=True)
    shutil.rmtree(dr / "vivado_project", ignore_errors=True)
    if (d / "deploy" / "overlay.json").is_file():
        (dr / "deploy").mkdir()
        shutil.copyfile(d / "deploy" / "overlay.json", dr / "deploy" / "overlay.json")
    accel = None
    if side:
        accel = side_design(d.parent, board["name"], side)
        (dr / side).mkdir(exist_ok=True)
        shutil.copyfile(d / side / "filelist.f", dr / side / "filelist.f")
    build = finn_build(d.parent, board["name"], transform)
    (dr / "shim_props.tcl").write_text(shim_props(board, build, accel))
    log = dr / "vivado_commands.log"
    finn_log = dr / "finn_stitch_commands.log"
    log.write_text(DRY_RUN_LABEL + f"# board {board['name']}, {'design ' + side if side else 'transform ' + transform}\n"
                   + (finn_log.read_text() if finn_log.is_file() else
                      "# (no FINN stitched-IP dry run in dry_run/: python -m licfpga.overlay.finn_stitch)\n"))
    env = dict(os.environ, LICFPGA_SHIM_LOG=str(log), LICFPGA_SHIM_PROPS=str(dr / "shim_props.tcl"),
               LICFPGA_SHIM_STRICT="1", PATH=f"{SHIM_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    for k, v in (("LICFPGA_SHIM_WNS", wns), ("LICFPGA_SHIM_WHS", whs)):
        if v is not None:
            env[k] = str(v)
    # what run_vivado.sh runs, with vivado = the shim (vivado/shim/vivado is this same call)
    p = subprocess.run([shutil.which("tclsh") or "tclsh", str(SHIM_DIR.parent / "vivado_shim.tcl")]
                       + VIVADO_COMMAND[1:], cwd=dr, env=env, capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip().splitlines()
    (dr / "vivado.log").write_text(p.stdout + p.stderr)
    return p.returncode, log, (out[-1] if out else "")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m licfpga.overlay.vivado",
                                 description="Write the Vivado project inputs for a board and "
                                             "run Vivado if it is installed.")
    ap.add_argument("--board", default="kv260", help=f"one of: {', '.join(list_boards())}")
    ap.add_argument("--build-dir", type=Path, default=Path("overlay/build"))
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--transform", default="g_a", choices=["g_a", "h_a", "h_s", "g_s"],
                    help="the FINN build (overlay/build/<board>/<transform>) that is the accelerator")
    ap.add_argument("--side", choices=["encoder", "decoder"],
                    help="instead: the whole-side design of overlay/accel_top.py in overlay/build/<board>/<side> "
                         "(overlay.json format 2, one DMA per stream pair)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        board = load_board(args.board)
    except BoardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        d = write_project(board, args.build_dir, args.jobs, args.transform, args.side)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmd = VIVADO_COMMAND
    print(f"wrote {d}/board.tcl, build_overlay.tcl, run_vivado.sh")
    if shutil.which("vivado") is None:
        print("vivado is not on PATH: no bitstream was made. On a machine with Vivado "
              "(2024.2 / 2025.1), after the FINN step has filled "
              f"{d / 'stitched_ip'}, run:\n  {d / 'run_vivado.sh'}\nwhich is:\n  cd {d} && {shlex.join(cmd)}\n"
              f"The bitstream, licfpga.hwh and overlay.json then land in {d / 'deploy'}.",
              file=sys.stderr)
        if shutil.which("tclsh") is None:
            print("tclsh is not installed either (make tclsh): no dry run.", file=sys.stderr)
            return EXIT_NO_VIVADO
        rc, log, last = dry_run(d, board, args.transform, side=args.side)
        if rc != 0:
            print(f"dry run FAILED (the Tcl stopped; it would stop in Vivado too): {last}\n"
                  f"  recorded commands: {log}", file=sys.stderr)
            return 1
        print(f"dry run (Vivado absent, nothing built): the Vivado commands the flow would run are "
              f"recorded in {log}", file=sys.stderr)
        return EXIT_NO_VIVADO
    return subprocess.call(cmd, cwd=d)


if __name__ == "__main__":
    sys.exit(main())
