"""Stitch FINN's per-layer RTL into one SystemVerilog top, without Vivado (run in ``.venv-finn``).

FINN's ``CreateStitchedIP`` builds the dataflow accelerator as a Vivado IP Integrator block
design; without Vivado there is no stitched design to simulate. This module reads the FINN
model after RTL code generation (``<transform>_final.onnx`` of :mod:`licfpga.overlay.finn_flow`)
and writes the same chain as plain RTL:

* ``<top>.sv``   -- the only file of ours: one instance per FINN node in graph order, each
  node's ``out0_V`` AXI-Stream wired to the next node's ``in0_V``; the first node's
  ``in0_V`` is the top's ``s_axis_0``, the last node's ``out0_V`` the top's ``m_axis_0``
  (the port names of FINN's stitched IP), plus ``ap_clk`` / ``ap_rst_n``.
* ``filelist.f`` -- the HDL files, exactly the ``add_files`` list of every node's
  ``code_generation_ipi()`` (what FINN hands to Vivado): FINN-generated wrappers in the
  node's ``code_gen_dir_ipgen``, the installed ``finn-rtllib`` sources, and our
  ``gdn_axis.sv``; packages first, duplicates (same path, or the same ``gdn_axis.sv``
  copied into several GDN directories: identical content checked) once.
* ``meminit.txt`` -- memory images that FINN's RTL opens by a *relative* path
  (``Thresholding_rtl``: ``THRESHOLDS_PATH = "./<node>_"``); a simulator must run in a
  directory holding them (Vivado imports them into the project). Images opened by an
  absolute path (``memblock.dat`` of the MVAU weight streamers, GDN ROMs) stay in place.
* ``stitch.json`` -- nodes, modules, stream widths, folded shapes, the FINN cycle
  estimates, the input/output tensor layout: what a testbench needs.

Hierarchical nodes are wired as FINN's IPI Tcl wires them: the parsed
``connect_bd_intf_net`` lines of ``code_generation_ipi()`` connect, inside an MVAU in
``internal_decoupled`` mode, the weight streamer ``<node>_wstrm/m_axis_0`` to the MVU's
``in1_V``; ``ap_clk2x`` is tied to ``ap_clk`` (no double pumping); the AXI-lite ports of
the weight streamers and thresholds (run-time weight updates, unused: FINN leaves them
unconnected unless ``runtime_writeable_weights``) are tied off -- inputs 0, outputs open.

    .venv-finn/bin/python -m licfpga.overlay.rtl_stitch overlay/build/kv260/g_a/g_a_final.onnx \\
        --out overlay/build/kv260/g_a/rtl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from . import finn_d2s, finn_gdn  # noqa: F401 - registers DepthToSpace_rtl, GDN_rtl

STREAM_SIGS = ("TDATA", "TVALID", "TREADY")


# ---- Verilog port lists ---------------------------------------------------------------------
def _strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"\(\*.*?\*\)", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def module_ports(files: list[Path], module: str) -> dict[str, str]:
    """Port name -> direction ('input'/'output') of ``module``, parsed from its header."""
    pat = re.compile(r"\bmodule\s+" + re.escape(module) + r"\b")
    for f in files:
        text = _strip(Path(f).read_text(errors="replace"))
        m = pat.search(text)
        if not m:
            continue
        body = text[m.end():]
        # skip the parameter list #( ... ) if any, then take the port list ( ... );
        i = 0
        if body.lstrip().startswith("#"):
            i = body.index("(")
            depth = 0
            for j in range(i, len(body)):
                depth += body[j] == "("
                depth -= body[j] == ")"
                if depth == 0:
                    i = j + 1
                    break
        start = body.index("(", i)
        depth, end = 0, None
        for j in range(start, len(body)):
            depth += body[j] == "("
            depth -= body[j] == ")"
            if depth == 0:
                end = j
                break
        ports = {}
        for decl in re.finditer(r"\b(input|output|inout)\b((?:\s+(?:wire|logic|reg|uwire|signed))*)\s*"
                                r"(\[[^\]]*\]\s*)*(\w+)", body[start + 1:end]):
            ports[decl.group(4)] = decl.group(1)
        return ports
    raise RuntimeError(f"module {module} not found in {[str(f) for f in files]}")


# ---- simulation-only source patches (Verilator) ----------------------------------------------
# finn-rtllib/mvu/add_multi.sv (finn-plus 1.6.1) declares the constant function
# init_leaf_loads() -- and its return typedef -- inside the generate block genTree and calls
# it for a localparam. IEEE 1800-2023 13.4.3 forbids constant functions declared under a
# generate, and Verilator (since 4.210, verilator/verilator#3103) makes that a hard
# %Error ("Constant function may not be declared under generate", add_multi.sv:64), not a
# lint warning: no -Wno-* or lint_off can waive it. Vivado accepts it. The patch hoists the
# typedef + function, unchanged, to module scope in front of the generate (they use only
# the module parameter N; for N = 1 the function is simply never called). Same
# computation, same LEAF_LOAD, same netlist. It is written as a *copy* into the simulation
# file list (``filelist.sim.f``); ``filelist.f`` (the Vivado list) and the installed
# finn-rtllib keep the original. The patch matches the exact 1.6.1 text and fails loudly
# if FINN's file changes.
_ADD_MULTI_FUNC = (
    "\t\t// Compute the count of decendents for all nodes in the reduction trees.\n"
    "\t\ttypedef int unsigned  leaf_load_t[2*N-1];\n"
    "\t\tfunction leaf_load_t init_leaf_loads();\n"
    "\t\t\tautomatic leaf_load_t  res;\n"
    "\t\t\tfor(int unsigned  i = 2*N-1; i-- > N-1;)  res[i] = 1;\n"
    "\t\t\tfor(int unsigned  i =   N-1; i-- >   0;)  res[i] = res[2*i+1] + res[2*i+2];\n"
    "\t\t\treturn  res;\n"
    "\t\tendfunction : init_leaf_loads\n")
_ADD_MULTI_ANCHOR = "\tuwire [SUM_WIDTH-1:0]  sum0;\n"


def _patch_add_multi(text: str) -> str:
    if text.count(_ADD_MULTI_FUNC) != 1 or text.count(_ADD_MULTI_ANCHOR) != 1:
        raise RuntimeError("add_multi.sv is not the finn-plus 1.6.1 text the Verilator patch expects")
    text = text.replace(_ADD_MULTI_FUNC, "\t\t// [licfpga sim patch] init_leaf_loads() hoisted to module scope\n")
    hoisted = "".join(line[1:] + "\n" for line in _ADD_MULTI_FUNC.splitlines())   # one tab less
    return text.replace(_ADD_MULTI_ANCHOR, "\t// [licfpga sim patch] hoisted out of genTree (IEEE 1800 13.4.3)\n"
                        + hoisted + "\n" + _ADD_MULTI_ANCHOR)


# finn-rtllib/fifo/hdl/fifo.sv (finn-plus 1.6.1, StreamingFIFO_rtl) computes its memory
# address split with the constant function INIT_ABITS() returning a struct abits_t
# {lo, hi}, used for the localparam ABITS (fifo.sv:130). Verilator 5.48 cannot evaluate a
# struct-valued constant function ("%Error: Expecting expression to be constant, but can't
# determine constant for FUNCREF 'INIT_ABITS'"); Vivado can. The patch computes the same
# two numbers with two int-valued constant functions (the identical statements, each
# returning one field) into the localparams ABITS_LO / ABITS_HI, and rewrites every
# ``ABITS.lo`` / ``ABITS.hi`` to them. Same parameters, same netlist; copy only
# (``filelist.sim.f``), exact 1.6.1 text or a loud failure.
_FIFO_OLD = (
    "\ttypedef struct {\n"
    "\t\tint unsigned  lo;\n"
    "\t\tint unsigned  hi;\n"
    "\t} abits_t;\n"
    "\tfunction abits_t INIT_ABITS();\n"
    "\t\tautomatic abits_t  abits = '{ lo: $clog2(DEPTH_REQ), hi: 0 };\n"
    "\t\tif(abits.lo > MIN_ABITS) begin\n"
    "\t\t\t// Consider Decomposition into lo + hi\n"
    "\t\t\tautomatic int unsigned  hi_abits = $clog2(DEPTH_REQ - 2**(abits.lo-1));\n"
    "\t\t\tif(hi_abits < abits.lo - 1) begin\n"
    "\t\t\t\tabits.lo--;\n"
    "\t\t\t\tabits.hi = hi_abits < 1? 1 : hi_abits;\n"
    "\t\t\tend\n"
    "\t\tend\n"
    "\t\treturn  abits;\n"
    "\tendfunction : INIT_ABITS\n"
    "\tlocalparam abits_t       ABITS      = INIT_ABITS();\n")
_FIFO_NEW = (
    "\t// [licfpga sim patch] INIT_ABITS() returned a struct, which Verilator cannot\n"
    "\t// evaluate as a constant: the same computation, one int-valued function per field\n"
    "\tfunction int unsigned INIT_ABITS_LO();\n"
    "\t\tautomatic int unsigned  lo = $clog2(DEPTH_REQ);\n"
    "\t\tif(lo > MIN_ABITS) begin\n"
    "\t\t\tautomatic int unsigned  hi_abits = $clog2(DEPTH_REQ - 2**(lo-1));\n"
    "\t\t\tif(hi_abits < lo - 1)  lo--;\n"
    "\t\tend\n"
    "\t\treturn  lo;\n"
    "\tendfunction : INIT_ABITS_LO\n"
    "\tfunction int unsigned INIT_ABITS_HI();\n"
    "\t\tautomatic int unsigned  lo = $clog2(DEPTH_REQ);\n"
    "\t\tautomatic int unsigned  hi = 0;\n"
    "\t\tif(lo > MIN_ABITS) begin\n"
    "\t\t\tautomatic int unsigned  hi_abits = $clog2(DEPTH_REQ - 2**(lo-1));\n"
    "\t\t\tif(hi_abits < lo - 1)  hi = hi_abits < 1? 1 : hi_abits;\n"
    "\t\tend\n"
    "\t\treturn  hi;\n"
    "\tendfunction : INIT_ABITS_HI\n"
    "\tlocalparam int unsigned  ABITS_LO   = INIT_ABITS_LO();\n"
    "\tlocalparam int unsigned  ABITS_HI   = INIT_ABITS_HI();\n")


def _patch_fifo(text: str) -> str:
    if text.count(_FIFO_OLD) != 1:
        raise RuntimeError("fifo.sv is not the finn-plus 1.6.1 text the Verilator patch expects")
    text = text.replace(_FIFO_OLD, _FIFO_NEW)
    return text.replace("ABITS.lo", "ABITS_LO").replace("ABITS.hi", "ABITS_HI")


SIM_PATCHES = {"add_multi.sv": _patch_add_multi, "fifo.sv": _patch_fifo}


def sim_file_list(files: list[Path], out: Path) -> tuple[list[Path], dict]:
    """``files`` with the sources of :data:`SIM_PATCHES` replaced by patched copies in
    ``out/sim_patches/``; returns the list and {original: patched copy}."""
    pdir = out / "sim_patches"
    res, done = [], {}
    for f in files:
        fn = SIM_PATCHES.get(Path(f).name)
        if fn is None or "finn-rtllib" not in str(f):
            res.append(f)
            continue
        pdir.mkdir(parents=True, exist_ok=True)
        dst = pdir / Path(f).name
        dst.write_text(fn(Path(f).read_text()))
        done[str(f)] = str(dst)
        res.append(dst)
    return res, done


# ---- FINN nodes -----------------------------------------------------------------------------
def _ipi(op) -> dict:
    """Files, cells and intra-node connections from FINN's IPI Tcl of one node."""
    files, cells, conns = [], {}, []
    node = op.onnx_node.name
    for cmd in op.code_generation_ipi():
        if cmd.startswith("add_files"):
            files.append(Path(cmd.split()[-1]))
            continue
        m = re.match(r"create_bd_cell -type (?:module|hier) -reference (\S+) (\S+)", cmd)
        if m:
            cells[m.group(2).strip("/").split("/")[-1]] = m.group(1)
            continue
        m = re.match(r"connect_bd_intf_net \[get_bd_intf_pins (\S+)\] \[get_bd_intf_pins (\S+)\]", cmd)
        if m:
            a, b = (p.split("/") for p in (m.group(1), m.group(2)))
            if len(a) == 3 and len(b) == 3 and a[0] == node and b[0] == node:     # cell-to-cell
                conns.append(((a[1], a[2]), (b[1], b[2])))
    return {"files": files, "cells": cells, "conns": conns}


def _padded(w: int) -> int:
    return (int(w) + 7) // 8 * 8


def collect(model: ModelWrapper) -> list[dict]:
    from finn.util.fpgadataflow import is_rtl_node

    nodes = []
    for n in model.graph.node:
        if not is_rtl_node(n):
            raise RuntimeError(f"{n.name} ({n.op_type}) is not an RTL node: cannot stitch without Vivado/HLS")
        op = getCustomOp(n)
        ipi = _ipi(op)
        intf = op.get_verilog_top_module_intf_names()
        if len(intf["s_axis"]) != 1 or len(intf["m_axis"]) != 1:
            raise RuntimeError(f"{n.name}: expected one input and one output stream, got {intf}")
        main = ipi["cells"].get(n.name)
        if main is None:
            raise RuntimeError(f"{n.name}: no IPI cell of that name in {ipi['cells']}")
        nodes.append({"name": n.name, "op_type": n.op_type, "op": op, "module": main, **ipi,
                      "in_width": _padded(intf["s_axis"][0][1]), "out_width": _padded(intf["m_axis"][0][1]),
                      "in_port": intf["s_axis"][0][0], "out_port": intf["m_axis"][0][0]})
    for a, b in zip(nodes, nodes[1:]):
        if a["out_width"] != b["in_width"]:
            raise RuntimeError(f"{a['name']} -> {b['name']}: stream widths {a['out_width']} != {b['in_width']}"
                               " (run InsertDWC)")
    return nodes


def _conn_width(node: dict, cell: str, port: str) -> int:
    """Width of an intra-node stream (weight stream of an MVAU: PE*SIMD*wbits, byte padded)."""
    op = node["op"]
    if port.startswith("in1"):
        return _padded(op.get_instream_width(1))
    raise RuntimeError(f"{node['name']}: unknown internal stream {cell}/{port}")


# ---- writer ---------------------------------------------------------------------------------
def _instance(module: str, inst: str, ports: dict[str, str], conn: dict[str, str]) -> list[str]:
    lines = [f"    {module} {inst} ("]
    items = []
    for p, d in ports.items():
        if p in conn:
            items.append(f"        .{p}({conn[p]})")
        elif d == "input":
            items.append(f"        .{p}('0)")            # unused control input (AXI-lite, set select)
        else:
            items.append(f"        .{p}()")
    lines.append(",\n".join(items))
    lines.append("    );")
    return lines


def write_top(nodes: list[dict], top: str, source: str) -> str:
    w_in, w_out = nodes[0]["in_width"], nodes[-1]["out_width"]
    out = [f"// Generated by licfpga.overlay.rtl_stitch from {source}.",
           "// Glue only: FINN's nodes chained in graph order (what CreateStitchedIP does in Vivado IPI).",
           "`default_nettype wire",
           f"module {top} (",
           "    input  wire ap_clk,",
           "    input  wire ap_rst_n,",
           f"    input  wire [{w_in - 1}:0] s_axis_0_tdata,",
           "    input  wire s_axis_0_tvalid,",
           "    output wire s_axis_0_tready,",
           f"    output wire [{w_out - 1}:0] m_axis_0_tdata,",
           "    output wire m_axis_0_tvalid,",
           "    input  wire m_axis_0_tready",
           ");"]
    # stream k: input of node k (k = 0 .. len(nodes)); stream len(nodes) is the output
    for k, nd in enumerate(nodes):
        out.append(f"    wire [{nd['in_width'] - 1}:0] s{k}_tdata;  wire s{k}_tvalid, s{k}_tready;   // -> {nd['name']}")
    out.append(f"    wire [{w_out - 1}:0] s{len(nodes)}_tdata;  wire s{len(nodes)}_tvalid, s{len(nodes)}_tready;")
    out += ["    assign s0_tdata = s_axis_0_tdata;", "    assign s0_tvalid = s_axis_0_tvalid;",
            "    assign s_axis_0_tready = s0_tready;",
            f"    assign m_axis_0_tdata = s{len(nodes)}_tdata;", f"    assign m_axis_0_tvalid = s{len(nodes)}_tvalid;",
            f"    assign s{len(nodes)}_tready = m_axis_0_tready;", ""]
    for k, nd in enumerate(nodes):
        files = [Path(f) for f in nd["files"]]
        inner: dict[tuple[str, str], str] = {}
        decl = []
        for (ca, pa), (cb, pb) in nd["conns"]:
            wname = f"{nd['name']}__{pb}"
            width = _conn_width(nd, cb, pb)
            decl.append(f"    wire [{width - 1}:0] {wname}_TDATA;  wire {wname}_TVALID, {wname}_TREADY;")
            inner[(ca, pa)] = wname
            inner[(cb, pb)] = wname
        out.append(f"    // ---- {nd['name']} ({nd['op_type']})")
        out += decl
        for cell, module in nd["cells"].items():
            ports = module_ports(files, module)
            conn = {}
            for p in ports:
                if p in ("ap_clk", "ap_clk2x"):
                    conn[p] = "ap_clk"
                elif p == "ap_rst_n":
                    conn[p] = "ap_rst_n"
            if cell == nd["name"]:
                for s in STREAM_SIGS:
                    conn[f"{nd['in_port']}_{s}"] = f"s{k}_{s.lower()}"
                    conn[f"{nd['out_port']}_{s}"] = f"s{k + 1}_{s.lower()}"
            for (c, p), wname in inner.items():
                if c != cell:
                    continue
                for s in STREAM_SIGS:
                    for cand in (f"{p}_{s}", f"{p}_{s.lower()}"):
                        if cand in ports:
                            conn[cand] = f"{wname}_{s}"
            missing = [f"{p}_{s}" for p in (nd["in_port"], nd["out_port"]) for s in STREAM_SIGS
                       if cell == nd["name"] and f"{p}_{s}" not in ports]
            if missing:
                raise RuntimeError(f"{nd['name']}: module {module} lacks ports {missing}")
            out += _instance(module, cell, ports, conn)
        out.append("")
    out.append("endmodule")
    return "\n".join(out) + "\n"


def file_list(nodes: list[dict]) -> list[Path]:
    files, by_name = [], {}
    for nd in nodes:
        for f in nd["files"]:
            f = Path(f).resolve()
            if f in files:
                continue
            if f.name in by_name:                 # a copy of the same source (gdn_axis.sv per GDN node)
                h = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (by_name[f.name], f)]
                if h[0] != h[1]:
                    raise RuntimeError(f"two different {f.name}: {by_name[f.name]} and {f}")
                continue
            by_name[f.name] = f
            files.append(f)
    pkgs = [f for f in files if f.name.endswith("_pkg.sv")]
    return pkgs + [f for f in files if f not in pkgs]


def mem_files(nodes: list[dict]) -> list[Path]:
    """Memory images FINN's RTL opens relative to the simulator's working directory."""
    out = []
    for nd in nodes:
        op = nd["op"]
        if hasattr(op, "get_all_meminit_filenames"):
            out += [Path(f) for f in op.get_all_meminit_filenames(abspath=True)]
    return out


def stitch(model_path, out_dir, top: str = "g_a_top") -> dict:
    from finn.util.settings import initialize_dummy_settings

    initialize_dummy_settings()       # finn_rtllib location; FINN's CLI would set this up
    model = ModelWrapper(str(model_path))
    nodes = collect(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{top}.sv").write_text(write_top(nodes, top, Path(model_path).name))
    files = file_list(nodes) + [out / f"{top}.sv"]
    (out / "filelist.f").write_text("\n".join(str(f) for f in files) + "\n")
    sim_files, patched = sim_file_list(files, out)
    (out / "filelist.sim.f").write_text("\n".join(str(f) for f in sim_files) + "\n")
    mems = mem_files(nodes)
    (out / "meminit.txt").write_text("".join(f"{m}\n" for m in mems))
    inp, outp = model.graph.input[0].name, model.graph.output[0].name
    first, last = nodes[0]["op"], nodes[-1]["op"]
    info = {
        "top": top, "source": str(Path(model_path).resolve()), "files": [str(f) for f in files],
        "sim_files": [str(f) for f in sim_files], "sim_patches": patched,
        "meminit": [str(m) for m in mems],
        "nodes": [{"name": nd["name"], "op_type": nd["op_type"], "module": nd["module"],
                   "cells": nd["cells"], "in_width": nd["in_width"], "out_width": nd["out_width"],
                   "exp_cycles": int(nd["op"].get_exp_cycles()),
                   "depth": (int(nd["op"].get_nodeattr("depth")) if "depth" in nd["op"].get_nodeattr_types() else None),
                   "folding": {k: nd["op"].get_nodeattr(k) for k in ("PE", "SIMD")
                               if k in nd["op"].get_nodeattr_types()}} for nd in nodes],
        "input": {"name": inp, "shape": list(model.get_tensor_shape(inp)),
                  "datatype": model.get_tensor_datatype(inp).name, "stream_width": nodes[0]["in_width"],
                  "folded_shape": [int(v) for v in first.get_folded_input_shape()],
                  "elem_bits": int(first.get_input_datatype().bitwidth())},
        "output": {"name": outp, "shape": list(model.get_tensor_shape(outp)),
                   "datatype": model.get_tensor_datatype(outp).name, "stream_width": nodes[-1]["out_width"],
                   "folded_shape": [int(v) for v in last.get_folded_output_shape()],
                   "elem_bits": int(last.get_output_datatype().bitwidth())},
    }
    info["max_exp_cycles"] = max(n["exp_cycles"] for n in info["nodes"])
    info["bottleneck"] = max(info["nodes"], key=lambda n: n["exp_cycles"])["name"]
    (out / "stitch.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m licfpga.overlay.rtl_stitch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="FINN model after RTL codegen (finn_flow's <transform>_final.onnx)")
    p.add_argument("--out", required=True, help="directory for <top>.sv, filelist.f, meminit.txt, stitch.json")
    p.add_argument("--top", default="g_a_top")
    a = p.parse_args(argv)
    info = stitch(a.model, a.out, a.top)
    print(json.dumps({k: info[k] for k in ("top", "max_exp_cycles", "bottleneck")}))
    print(f"{len(info['nodes'])} nodes, {len(info['files'])} files -> {a.out}")


if __name__ == "__main__":
    np.set_printoptions(linewidth=200)
    main()
