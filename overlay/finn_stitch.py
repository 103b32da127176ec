"""FINN's stitched IP of the overlay's accelerator (run in ``.venv-finn``; needs Vivado).

    .venv-finn/bin/python -m licfpga.overlay.finn_stitch --board kv260 [--transform g_a]
                                                        [--build-dir overlay/build] [--dry-run]

Input: the FINN build of :mod:`licfpga.overlay.finn_flow` (``<build>/<board>/<transform>/
<transform>_final.onnx``: every layer specialised, folded, its RTL generated). Output: the
packaged IP ``finn_design`` (``component.xml``, streams ``s_axis_0``/``m_axis_0``) that
vivado/build_overlay.tcl instantiates, in ``<build>/<board>/stitched_ip``.

The steps are FINN's own, in the order of its ``step_hw_codegen`` / ``step_hw_ipgen`` /
``step_create_stitched_ip`` (finn.builder.build_dataflow_steps, FINN+ 1.6.1): ``PrepareIP``
(keeps the RTL the flow generated), ``HLSSynthIP`` (Vitis HLS for HLS layers; ours are all
RTL, so none), ``CreateStitchedIP(part, clk_ns)`` (writes ``make_project.tcl`` and runs
Vivado on it), then, as ``step_create_stitched_ip`` does, the Vivado project directory it
names (``vivado_stitch_proj``) is copied to ``stitched_ip``.

Without ``vivado`` on PATH (or with ``--dry-run``) the same transformations run with FINN
pointed (``FINN_TOOL_DIR_OVERRIDE``) at vivado/shim/, the recorded-dry-run stand-in for
Vivado: FINN's ``make_project.tcl`` is recorded command by command in
``<build>/<board>/dry_run/finn_stitch_commands.log`` and its placeholder output goes to
``<build>/<board>/dry_run/stitched_ip`` -- never to ``stitched_ip``. Exit 0 either way
(the Vivado step that follows says whether a bitstream was made); 1: FINN's stitching (or
its dry run) failed, naming the log; 2: no FINN build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIM_DIR = ROOT / "vivado" / "shim"


def _finn_environment(work: Path) -> None:
    """FINN's build directory and the finn-rtllib path its stitching Tcl reads."""
    os.environ.setdefault("FINN_BUILD_DIR", str(Path(work).resolve()))
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)
    from finn.util.settings import get_settings, initialize_dummy_settings

    try:
        rtllib = get_settings().finn_rtllib
    except Exception:  # noqa: BLE001 - FINN+ without a settings file: its defaults
        initialize_dummy_settings()
        rtllib = get_settings().finn_rtllib
    os.environ.setdefault("FINN_RTLLIB", str(rtllib))


class AbsoluteIPPaths:
    """The flow stores each layer's generated-RTL directories (``code_gen_dir_ipgen``,
    ``ipgen_path``, ``ip_path``) as given, relative to where it ran when ``--out`` was
    relative (``make finn-build``: the repository root). FINN runs its stitching Tcl in its
    own project directory, where those would not resolve: make them absolute (against
    ``base``, checked to exist)."""

    ATTRS = ("code_gen_dir_ipgen", "ipgen_path", "ip_path")

    def __init__(self, base: Path):
        self.base = Path(base)

    def __call__(self, model):
        from qonnx.custom_op.registry import getCustomOp

        for n in model.graph.node:
            op = getCustomOp(n)
            for a in self.ATTRS:
                try:
                    v = op.get_nodeattr(a)
                except AttributeError:
                    continue
                if v and not Path(v).is_absolute():
                    p = (self.base / v).resolve()
                    if not p.is_dir():
                        raise FileNotFoundError(f"{n.name}.{a} = {v}: no such directory under {self.base}")
                    op.set_nodeattr(a, str(p))
        return model


def stitch(build_dir: Path, board_name: str, transform: str = "g_a", dry_run: bool = False) -> Path:
    """FINN's stitched IP of ``transform``; returns the directory it was copied to."""
    from qonnx.core.modelwrapper import ModelWrapper
    from finn.transformation.fpgadataflow.create_stitched_ip import CreateStitchedIP
    from finn.transformation.fpgadataflow.hlssynth_ip import HLSSynthIP
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP

    from .finn_flow import finn_board   # registers our GDN / DepthToSpace layers with FINN

    build_dir = Path(build_dir).resolve()      # FINN runs its Tcl (and the shim) in its own directory
    src = build_dir / board_name / transform
    final = src / f"{transform}_final.onnx"
    if not final.is_file():
        raise FileNotFoundError(f"no FINN build at {final}: run make finn-build BOARD={board_name} first")
    board = finn_board(board_name)
    d = build_dir / board_name
    dest = d / ("dry_run" if dry_run else "") / "stitched_ip"
    _finn_environment(src / "tmp")
    if dry_run:
        log = d / "dry_run" / "finn_stitch_commands.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# FINN+ CreateStitchedIP({board['part']!r}, {board['clk_ns']}) of {final}: "
                       "FINN's make_project.tcl, run by the shim (not Vivado)\n")
        os.environ.update(FINN_TOOL_DIR_OVERRIDE=str(SHIM_DIR), LICFPGA_SHIM_LOG=str(log), LICFPGA_SHIM_STRICT="0")
    model = AbsoluteIPPaths(Path.cwd())(ModelWrapper(str(final)))
    model = model.transform(PrepareIP(board["part"], board["clk_ns"]))
    model = model.transform(HLSSynthIP(board["part"]))
    try:
        model = model.transform(CreateStitchedIP(board["part"], board["clk_ns"]))
    except Exception as exc:  # noqa: BLE001 - FINN reports a failed Vivado run as a missing wrapper
        where = "FINN's vivado.log in its vivado_stitch_proj_* directory under " + os.environ["FINN_BUILD_DIR"]
        if dry_run:
            errors = [ln for ln in log.read_text().splitlines() if ln.startswith("# ---- ERROR")]
            where = f"{log}: {errors[-1][len('# ---- '):] if errors else 'no error recorded'}"
        raise RuntimeError(f"FINN's CreateStitchedIP failed ({type(exc).__name__}); see {where}") from exc
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(model.get_metadata_prop("vivado_stitch_proj"), dest)
    model.save(str(src / f"{transform}_stitched.onnx"))
    return dest


def main(argv=None) -> int:
    from .boards import list_boards

    p = argparse.ArgumentParser(prog="python -m licfpga.overlay.finn_stitch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="kv260", choices=list_boards())
    p.add_argument("--transform", default="g_a", choices=["g_a", "h_a", "h_s", "g_s"])
    p.add_argument("--build-dir", type=Path, default=Path("overlay/build"))
    p.add_argument("--dry-run", action="store_true", help="record FINN's Vivado commands with the shim, even "
                                                          "where Vivado exists")
    a = p.parse_args(argv)
    dry = a.dry_run or shutil.which("vivado") is None
    try:
        dest = stitch(a.build_dir, a.board, a.transform, dry_run=dry)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if dry:
        print(f"vivado is not on PATH: FINN's stitched IP was NOT made (it needs Vivado). Dry run: FINN's "
              f"Vivado commands recorded in {dest.parent / 'finn_stitch_commands.log'}, placeholders in {dest}",
              file=sys.stderr)
    else:
        print(f"FINN stitched IP of {a.transform} for {a.board}: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
