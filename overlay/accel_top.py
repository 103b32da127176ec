"""The encoder and the decoder accelerator as one design each (plain Python, either venv).

Input: the per-transform stitched RTL that :mod:`licfpga.overlay.rtl_stitch` writes
(``<dir>/stitch.json``, ``<transform>_top.sv`` and the files it lists), one directory per
transform. Output, in one directory:

* ``encoder_top.sv`` -- pixels in, three streams out; the PS only entropy-codes::

      s_axis_0 (RGB) -> g_a_top -> y -> axis_broadcast -+-> m_axis_0 (y, int8)
                                                         +-> axis_abs -> h_a_top -> z -> axis_broadcast -+-> m_axis_1 (z, int8)
                                                                                                         +-> h_s_top -> m_axis_2 (scale codes, uint8)

  ``|y|`` is taken on chip (``IntegerModel.run_transform``: h_a's first op is ``abs``; the
  QONNX/FINN h_a starts after it, its input is UINT8) and h_s's input is z itself
  (``IntegerModel.scale_codes(z)``, what ``host/integer_codec.py`` codes with).
* ``decoder_top.sv`` -- two independent pipelines in one top: ``s_axis_0`` (z) -> h_s_top
  -> ``m_axis_0`` (scale codes), ``s_axis_1`` (y hat) -> g_s_top -> ``m_axis_1`` (RGB).
* ``filelist.f`` / ``filelist.sim.f`` -- one combined list (Vivado's / Verilator's with
  rtl_stitch's simulation-only patch copies), packages first, every file once.
* ``accel.json`` -- streams (port, shape, datatype, beats/frame), per-transform FINN cycle
  estimates and bottleneck, the design's estimate (max over every layer of every
  transform: the pipelines run concurrently), the module renames, the files.

**Module names.** Every FINN build names its nodes ``MVAU_rtl_0``, ``Thresholding_rtl_0``,
``StreamingFIFO_rtl_0``, ... and its generated modules after them (``MVAU_rtl_0``,
``MVAU_rtl_0_memstream_wrapper``, ``ConvolutionInputGenerator_rtl_0_impl``, ...), so the
g_a, h_a and h_s builds define the same module names with different parameters and
weights: one design cannot hold them. Each transform's *generated* files (those in its
FINN ``ip/`` directories, and its ``<t>_top.sv``) are copied with every module they define
prefixed by ``<transform>_`` (whole-word replacement in those copies only). Not renamed,
because they are the same source in every build (content checked): finn-rtllib, the
simulation patch copies, and our kernels copied from hls/ (``gdn_axis.sv``, ...).
FINN's thresholding RTL opens its memory images by a *relative* path
(``THRESHOLDS_PATH = "./Thresholding_rtl_0_"``), which would also collide in a simulator's
working directory: the copies point at the images in the build's own ``ip/`` directory by
absolute path (as FINN's MVAU weight images already are), so no ``meminit`` copying is
needed. The FINN builds themselves are untouched.

    python -m licfpga.overlay.accel_top encoder --g_a B/g_a/rtl --h_a B/h_a/rtl --h_s B/h_s/rtl --out B/enc
    python -m licfpga.overlay.accel_top decoder --h_s B/h_s/rtl --g_s B/g_s/rtl --out B/dec
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = {"axis_broadcast": ROOT / "hls" / "axis_broadcast" / "axis_broadcast.sv",
           "axis_abs": ROOT / "hls" / "axis_abs" / "axis_abs.sv"}
SIDES = {"encoder": ("g_a", "h_a", "h_s"), "decoder": ("h_s", "g_s")}
_MODULE = re.compile(r"^\s*module\s+(\w+)", re.M)
_REL_PATH = re.compile(r'"\./([^"/]*)"')
_STRING = re.compile(r'("(?:[^"\\\n]|\\.)*")')      # a Verilog string literal (capturing: split keeps it)


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _hls_sources() -> dict[str, str]:
    """sha256 -> path of every kernel source of ours under hls/ (copied into FINN ip dirs)."""
    return {_sha(p): str(p) for p in sorted((ROOT / "hls").glob("*/*.sv"))}


def _shared(f: Path, hls: dict[str, str]) -> bool:
    """A file that is the same source in every build: finn-rtllib, a sim patch copy, a kernel of ours."""
    return "finn-rtllib" in str(f) or f.parent.name == "sim_patches" or _sha(f) in hls


def prefixed_copies(info: dict, prefix: str, out: Path) -> dict:
    """Copy the transform's generated files (per ``info`` = its stitch.json) into ``out``
    with every module they define prefixed; relative memory paths made absolute. Returns
    {"files": [...], "sim_files": [...], "renames": {old: new}, "top": the top's name (kept)}."""
    hls = _hls_sources()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    mine = [Path(f) for f in dict.fromkeys(info["files"] + info["sim_files"]) if not _shared(Path(f), hls)]
    names = set()
    for f in mine:
        names.update(_MODULE.findall(Path(f).read_text(errors="replace")))
    names.discard(info["top"])          # <transform>_top: already unique
    renames = {n: prefix + n for n in sorted(names)}
    word = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")\b")
    mems = [Path(m) for m in info.get("meminit", [])]
    copies = {}
    for f in mine:
        text = Path(f).read_text(errors="replace")

        def absolute(m: re.Match) -> str:
            hits = {str(p.parent) for p in mems if p.name.startswith(m.group(1))} if m.group(1) else set()
            if len(hits) != 1:
                raise RuntimeError(f"{f}: relative path {m.group(0)} matches {len(hits)} memory image dirs")
            return f'"{hits.pop()}/{m.group(1)}"'

        # module names renamed outside string literals only (paths such as the MVAU weight
        # images' ".../ip/MVAU_rtl_0/memblock.dat" keep FINN's directory names)
        parts = _STRING.split(text)
        text = "".join(_REL_PATH.sub(absolute, seg) if i % 2 else word.sub(lambda m: renames[m.group(1)], seg)
                       for i, seg in enumerate(parts))
        for lit in _STRING.findall(text):
            if lit.startswith('"/') and re.search(r"\.(dat|mem|hex)\"$", lit) and not Path(lit[1:-1]).is_file():
                raise RuntimeError(f"{f}: memory image {lit} does not exist")
        dst = out / (f.name if f.name.startswith(prefix) else prefix + f.name)
        if dst in copies.values():
            raise RuntimeError(f"two generated files named {f.name} in one build")
        dst.write_text(text)
        copies[str(f)] = dst
    pick = lambda lst: [str(copies.get(str(f), f)) for f in lst]   # noqa: E731
    return {"files": pick(info["files"]), "sim_files": pick(info["sim_files"]), "renames": renames,
            "top": info["top"]}


def merge_file_lists(lists: list[list[str]]) -> list[str]:
    """One list, every file once (same path, or the same basename with identical content:
    the per-build copies of one kernel), packages first; a basename with two contents fails."""
    files, by_name = [], {}
    for lst in lists:
        for f in lst:
            f = str(Path(f).resolve())
            name = Path(f).name
            if f in files:
                continue
            if name in by_name:
                if _sha(Path(by_name[name])) != _sha(Path(f)):
                    raise RuntimeError(f"two different {name}: {by_name[name]} and {f}")
                continue
            by_name[name] = f
            files.append(f)
    pkgs = [f for f in files if f.endswith("_pkg.sv")]
    return pkgs + [f for f in files if f not in pkgs]


# ---- the tops --------------------------------------------------------------------------------
def _port(d: str, width: int, name: str) -> str:
    return f"    {d} wire {'[' + str(width - 1) + ':0] ' if width > 1 else ''}{name}"


def _bus(ports: list[str], name: str, width: int, slave: bool) -> None:
    i, o = ("input ", "output") if slave else ("output", "input ")
    ports += [_port(i, width, f"{name}_tdata"), _port(i, 1, f"{name}_tvalid"), _port(o, 1, f"{name}_tready")]


def _wires(name: str, width: int) -> str:
    return f"    wire [{width - 1}:0] {name}_tdata;  wire {name}_tvalid, {name}_tready;"


def _conn(port: str, net: str) -> list[str]:
    return [f"        .{port}_tdata({net}_tdata), .{port}_tvalid({net}_tvalid), .{port}_tready({net}_tready)"]


def _inst(module: str, inst: str, params: dict | None, conns: list[tuple[str, str]]) -> list[str]:
    """An instance; ``params`` None: a stitched transform top (FINN's ap_clk / ap_rst_n),
    else one of our kernels (clk / rst_n) with these parameters."""
    p = ("#(" + ", ".join(f".{k}({v})" for k, v in params.items()) + ") ") if params else ""
    clk, rst = ("ap_clk", "ap_rst_n") if params is None else ("clk", "rst_n")
    body = [f"        .{clk}(ap_clk), .{rst}(ap_rst_n)"]
    for port, net in conns:
        body += _conn(port, net)
    return [f"    {module} {p}{inst} ("] + [",\n".join(body)] + ["    );", ""]


def _header(top: str, what: str, ins: list[tuple[str, int]], outs: list[tuple[str, int]]) -> list[str]:
    ports = [_port("input ", 1, "ap_clk"), _port("input ", 1, "ap_rst_n")]
    for n, w in ins:
        _bus(ports, n, w, True)
    for n, w in outs:
        _bus(ports, n, w, False)
    return ([f"// Generated by licfpga.overlay.accel_top: {what}",
             "// Glue only: the per-transform stitched tops (overlay/rtl_stitch.py, modules prefixed) and",
             "// hls/axis_broadcast, hls/axis_abs. No TLAST (FINN streams have none; vivado/ adds axis_frame_tlast).",
             "`default_nettype wire", f"module {top} ("] + [",\n".join(ports)] + [");"])


def encoder_top(t: dict, top: str = "encoder_top") -> str:
    """``t``: transform -> {"top": prefixed module, "stitch": stitch.json}."""
    ga, ha, hs = (t[k]["stitch"] for k in ("g_a", "h_a", "h_s"))
    wy, wz, ws = ga["output"]["stream_width"], ha["output"]["stream_width"], hs["output"]["stream_width"]
    if ha["input"]["stream_width"] != wy or hs["input"]["stream_width"] != wz:
        raise RuntimeError(f"stream widths differ: g_a out {wy} / h_a in {ha['input']['stream_width']}, "
                           f"h_a out {wz} / h_s in {hs['input']['stream_width']} (fold so they match)")
    eb = ga["output"]["elem_bits"]
    if ga["output"]["datatype"] != "INT8" or ha["input"]["datatype"] != "UINT8" or ha["input"]["elem_bits"] != eb:
        raise RuntimeError(f"expected int8 y -> |y| uint8 into h_a, got {ga['output']['datatype']} -> {ha['input']['datatype']}")
    if ha["output"]["datatype"] != hs["input"]["datatype"]:
        raise RuntimeError(f"z: h_a gives {ha['output']['datatype']}, h_s takes {hs['input']['datatype']}")
    lines = _header(top, "the whole encoder (g_a -> y; |y| -> h_a -> z; z -> h_s -> scale codes)",
                    [("s_axis_0", ga["input"]["stream_width"])], [("m_axis_0", wy), ("m_axis_1", wz), ("m_axis_2", ws)])
    lines += [_wires("y", wy), _wires("y_h_a", wy), _wires("abs_y", wy), _wires("z", wz), _wires("z_h_s", wz), ""]
    lines += _inst(t["g_a"]["top"], "u_g_a", None, [("s_axis_0", "s_axis_0"), ("m_axis_0", "y")])
    lines += _inst("axis_broadcast", "u_dup_y", {"DW": wy}, [("s_axis", "y"), ("m0_axis", "m_axis_0"), ("m1_axis", "y_h_a")])
    lines += _inst("axis_abs", "u_abs_y", {"LANES": wy // eb, "EW": eb}, [("s_axis", "y_h_a"), ("m_axis", "abs_y")])
    lines += _inst(t["h_a"]["top"], "u_h_a", None, [("s_axis_0", "abs_y"), ("m_axis_0", "z")])
    lines += _inst("axis_broadcast", "u_dup_z", {"DW": wz}, [("s_axis", "z"), ("m0_axis", "m_axis_1"), ("m1_axis", "z_h_s")])
    lines += _inst(t["h_s"]["top"], "u_h_s", None, [("s_axis_0", "z_h_s"), ("m_axis_0", "m_axis_2")])
    return "\n".join(lines + ["endmodule"]) + "\n"


def decoder_top(t: dict, top: str = "decoder_top") -> str:
    hs, gs = t["h_s"]["stitch"], t["g_s"]["stitch"]
    lines = _header(top, "the decoder (z -> h_s -> scale codes; y hat -> g_s -> RGB), two independent pipelines",
                    [("s_axis_0", hs["input"]["stream_width"]), ("s_axis_1", gs["input"]["stream_width"])],
                    [("m_axis_0", hs["output"]["stream_width"]), ("m_axis_1", gs["output"]["stream_width"])])
    lines += [""] + _inst(t["h_s"]["top"], "u_h_s", None, [("s_axis_0", "s_axis_0"), ("m_axis_0", "m_axis_0")])
    lines += _inst(t["g_s"]["top"], "u_g_s", None, [("s_axis_0", "s_axis_1"), ("m_axis_0", "m_axis_1")])
    return "\n".join(lines + ["endmodule"]) + "\n"


def _stream(port: str, what: str, s: dict) -> dict:
    return {"port": port, "tensor": what, "shape": s["shape"], "datatype": s["datatype"], "stream_width": s["stream_width"],
            "elem_bits": s["elem_bits"], "beats_per_frame": int(_prod(s["folded_shape"][:-1]))}


def _prod(v) -> int:
    p = 1
    for x in v:
        p *= int(x)
    return p


def build(side: str, rtl_dirs: dict, out) -> dict:
    """Write ``<side>_top.sv``, the file lists and ``accel.json`` into ``out``; ``rtl_dirs``:
    transform -> rtl_stitch output directory. Returns the description (accel.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = {}
    for name in SIDES[side]:
        st = json.loads((Path(rtl_dirs[name]) / "stitch.json").read_text())
        t[name] = {"stitch": st, **prefixed_copies(st, f"{name}_", out / name)}
    top = f"{side}_top"
    text = encoder_top(t, top) if side == "encoder" else decoder_top(t, top)
    (out / f"{top}.sv").write_text(text)
    kern = [str(KERNELS[k]) for k in (("axis_broadcast", "axis_abs") if side == "encoder" else ())]
    files = merge_file_lists([t[n]["files"] for n in t] + [kern, [str(out / f"{top}.sv")]])
    sim = merge_file_lists([t[n]["sim_files"] for n in t] + [kern, [str(out / f"{top}.sv")]])
    (out / "filelist.f").write_text("\n".join(files) + "\n")
    (out / "filelist.sim.f").write_text("\n".join(sim) + "\n")
    if side == "encoder":
        ga, ha, hs = (t[k]["stitch"] for k in ("g_a", "h_a", "h_s"))
        streams = {"in": [_stream("s_axis_0", "x (RGB, NHWC)", ga["input"])],
                   "out": [_stream("m_axis_0", "y", ga["output"]), _stream("m_axis_1", "z", ha["output"]),
                           _stream("m_axis_2", "scale codes", hs["output"])]}
    else:
        hs, gs = t["h_s"]["stitch"], t["g_s"]["stitch"]
        streams = {"in": [_stream("s_axis_0", "z", hs["input"]), _stream("s_axis_1", "y hat", gs["input"])],
                   "out": [_stream("m_axis_0", "scale codes", hs["output"]), _stream("m_axis_1", "x hat (RGB, NHWC)", gs["output"])]}
    per = {n: {"top": t[n]["top"], "source": t[n]["stitch"]["source"], "max_exp_cycles": t[n]["stitch"]["max_exp_cycles"],
               "bottleneck": t[n]["stitch"]["bottleneck"], "nodes": len(t[n]["stitch"]["nodes"]),
               "folding": {nd["name"]: nd["folding"] for nd in t[n]["stitch"]["nodes"] if nd["folding"]},
               "exp_cycles": {nd["name"]: nd["exp_cycles"] for nd in t[n]["stitch"]["nodes"]},
               "renamed_modules": len(t[n]["renames"])} for n in t}
    slow = max(per, key=lambda n: per[n]["max_exp_cycles"])
    info = {"side": side, "top": top, "streams": streams, "transforms": per,
            # the pipelines run concurrently (dataflow): the frame interval is the slowest layer of any
            "max_exp_cycles": per[slow]["max_exp_cycles"], "bottleneck": f"{slow}/{per[slow]['bottleneck']}",
            "kernels": kern, "files": files, "sim_files": sim, "renames": {n: t[n]["renames"] for n in t}}
    (out / "accel.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m licfpga.overlay.accel_top", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("side", choices=list(SIDES))
    for n in ("g_a", "h_a", "h_s", "g_s"):
        p.add_argument(f"--{n}", help=f"rtl_stitch output directory of {n}")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    dirs = {n: getattr(a, n) for n in SIDES[a.side]}
    missing = [n for n, d in dirs.items() if not d]
    if missing:
        p.error(f"{a.side} needs --{' --'.join(missing)}")
    info = build(a.side, dirs, a.out)
    print(json.dumps({k: info[k] for k in ("top", "max_exp_cycles", "bottleneck")}))


if __name__ == "__main__":
    main()
