"""Bit flips in the RTL's parameter memories, simulated cycle-accurately (Verilator +
cocotb), against the fault model of licfpga.host.faults: the golden model given the same
flipped parameter predicts the RTL output bit for bit.

1. ``test_gdn_rom_flips_match_golden`` (our GDN kernel, hls/gdn/gdn_axis.sv, alone): the
   shipped g_a.2 GDN (C=30, PE=6); one flip in each ROM image the RTL reads with
   $readmemh -- gamma (bit 15 of a small gamma: the u32 accumulator of one channel wraps
   for large inputs), beta (bit 31: wraps for every input), the shift base (sign bit: the
   output shift goes negative and saturates) and the (r)sqrt seed LUT (bit 16 of an
   entry). Inputs: the real g_a.2 input of a 64x64 crop + extreme pixels. Expected: the
   hardware-faithful ``faults.gdn_hw`` with the same flipped parameters; ``gdn_int`` (the
   golden kernel, which asserts its ranges) refuses these parameters.
2. ``test_g_a_memory_flips_match_golden`` (slow: FINN flow + stitched g_a, minutes): the
   whole FINN g_a (tests/hw/stitched.py) with three memory images edited after the build,
   one 64x64 frame: the sign bit of one g_a.3 weight in the MVAU's ``memblock.dat``
   (located by letting FINN's own ``make_weight_file`` write the flipped weight matrix and
   diffing: exactly one bit differs), a high bit of the root of one g_a.6 channel's
   threshold tree (``Thresholding_rtl_2_threshs_<pe>_0.dat``: a binary-search tree, so the
   corrupted root sends a whole value range into the wrong half) and bit 15 of one g_a.5
   gamma (``gamma.mem``). Expected: ``FaultyModel`` with FINN's own threshold trees (read
   from the .dat files), the same three flips, binary search as thresholding.sv. Also
   checked: the prediction differs from the clean output, and the naive threshold model
   (count of thresholds <= x) would NOT match the RTL.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from cocotb_util import run_cocotb
from cocotb_util import runner as cocotb_runner

ROOT = Path(__file__).resolve().parents[2]
HW = Path(__file__).resolve().parent
RTL = ROOT / "hls" / "gdn" / "gdn_axis.sv"
BUILD = HW / "sim_build"
ART = ROOT / "model" / "checkpoints" / "int-student-0.013"

# ==================================================================== cocotb test (in the simulator)
try:
    import cocotb
    from cocotb.triggers import ClockCycles
except ImportError:  # pragma: no cover - the pytest side reports the missing package
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def stream_frames(dut):
        """Send each frame of the case file, collect the output bytes, save them."""
        from cocotb_util import axis_endpoints, receive_bytes
        from cocotbext.axi import AxiStreamFrame

        case = np.load(os.environ["FAULT_CASE"])
        clk, rst = getattr(dut, str(case["clk"])), getattr(dut, str(case["rst"]))
        src, sink = axis_endpoints(dut, clk, rst, 5, str(case["s"]), str(case["m"]))
        rst.value = 0
        await ClockCycles(clk, 32)
        rst.value = 1
        await ClockCycles(clk, 4)
        out = []
        for x in case["x"]:
            await src.send(AxiStreamFrame(x.tobytes()))
            out.append(await receive_bytes(clk, sink, int(case["out_bytes"]), int(case["timeout"])))
        np.save(os.environ["FAULT_CASE"] + ".out.npy", np.frombuffer(b"".join(out), dtype=np.int8))


# ==================================================================== helpers
def _run(runner, bdir: Path, tmp: Path, top: str, case: dict, log: Path) -> np.ndarray:
    f = tmp / "case.npz"
    np.savez(f, **case)
    run_cocotb(runner, bdir, tmp, "test_fault_rtl", top, "stream_frames", 12, {"FAULT_CASE": str(f)}, log)
    return np.load(str(f) + ".out.npy")


def _flip_hex_line(path: Path, line: int, bit: int) -> tuple[str, str]:
    """Invert bit ``bit`` of the hex word on line ``line`` of a $readmemh image."""
    lines = path.read_text().split()
    old = lines[line]
    new = f"{int(old, 16) ^ (1 << bit):0{len(old)}x}"
    assert len(new) == len(old), "bit outside the word"
    lines[line] = new
    path.write_text("\n".join(lines) + "\n")
    return old, new


# ==================================================================== 1. GDN kernel alone
@pytest.mark.slow   # ~35 s on 2 cores (Verilator build)
def test_gdn_rom_flips_match_golden(verilator_env, tmp_path):
    from licfpga.host import faults as F
    from licfpga.model.golden import gdn as G
    from licfpga.model.golden.network import IntegerModel

    im = IntegerModel.load(ART)
    name, pe = "g_a.2", 6
    p = im._gdn[name]
    c = p.channels
    # inputs: the real g_a.2 input of a 64x64 crop (g_a.0's output) + extreme pixels
    from licfpga.host.images import load_image
    rgb, _ = load_image(ROOT / "host" / "samples" / "kodim23.png")
    h, w = rgb.shape[:2]
    crop = np.ascontiguousarray(rgb[(h - 64) // 2:(h + 64) // 2, (w - 64) // 2:(w + 64) // 2])
    tr: dict = {}
    im.run_transform("g_a", crop.transpose(2, 0, 1), trace=tr)
    real = tr["g_a.0"].reshape(c, -1).T[:192]
    ext = np.stack([np.full(c, -128), np.full(c, 127), np.zeros(c, int), np.full(c, 64), np.full(c, -3)])
    x = np.concatenate([real, ext]).astype(np.int8)                          # [px, C]

    # the flips, as (ROM image, line, bit) and as the parameter they change
    i_g = int(np.argmax(p.beta))                     # the channel with the largest beta (~0.9 * 2**32) ...
    j_g = int(np.argmin(np.where(np.arange(c) == i_g, 2**20, p.gamma[i_g])))   # ... its smallest gamma
    assert p.gamma[i_g, j_g] < 2**15
    # pixels whose channel i_g is small while channel j_g is -128: with the flipped gamma the
    # u32 accumulator of i_g wraps to a small value -> a large, unsaturated output (a
    # saturating accumulator would give about the clean output instead)
    probe = np.zeros((6, c), dtype=np.int64)
    probe[:, j_g] = -128
    probe[:, i_g] = [1, 2, 3, 5, -4, -9]
    x = np.concatenate([x, probe]).astype(np.int8)
    i_s = 17 if i_g != 17 else 16
    # the largest beta with bit 31 clear (another channel): setting bit 31 adds 2**31
    i_b = int(np.argmax(np.where((p.beta < 2**31) & (np.arange(c) != i_g) & (np.arange(c) != i_s), p.beta, -1)))
    mh, _ = G.normalize(G.accumulate(x.astype(np.int64), p), p.variant, p.acc_bits)
    seg = np.bincount((mh >> 12).reshape(-1), minlength=64)
    k_lut = int(np.argmax(seg))                      # the LUT segment most inputs use
    bdir = BUILD / "fault_gdn_c30_pe6"
    mem = bdir / "mem"
    mem.mkdir(parents=True, exist_ok=True)
    roms = G.write_memh(p, mem, pe)
    flips = [("GAMMA_FILE", (i_g // pe) * c + j_g, (i_g % pe) * p.gamma_bits + 15),
             ("BETA_FILE", i_b, 31), ("SHIFT_FILE", i_s, 7), ("LUT_FILE", k_lut, 16)]
    edits = {k: _flip_hex_line(Path(roms[k]), line, bit) for k, line, bit in flips}
    gamma = p.gamma.copy()
    gamma[i_g, j_g] ^= 1 << 15
    beta = p.beta.copy()
    beta[i_b] ^= 1 << 31
    shift = F.flip_bits(p.shift, [i_s], [7], 8, True)
    lut = p.lut.copy()
    lut[k_lut] ^= 1 << 16
    import dataclasses
    pf = dataclasses.replace(p, gamma=gamma, beta=beta, shift=shift, lut=lut)
    with pytest.raises((AssertionError, ValueError)):
        G.check_ranges(pf)                           # the golden kernel's own range check refuses them
    exp = F.gdn_hw(x.T[:, :, None], pf)[:, :, 0].T.astype(np.int8)
    clean = G.gdn_int(x, p)
    assert np.array_equal(F.gdn_hw(x.T[:, :, None], p)[:, :, 0].T, clean)
    acc = (x.astype(np.int64) ** 2) @ gamma.T + beta
    assert (acc >= 2**32).any(), "no accumulator wraps: the gamma/beta flips test nothing"

    params = {"C": c, "PE": pe, "INVERSE": 0, "SIMPLIFIED": 0}
    params.update({k: f'"{v}"' for k, v in roms.items()})
    runner = cocotb_runner()
    runner.build(sources=[RTL], hdl_toplevel="gdn_axis", parameters=params, build_dir=bdir, timescale=("1ns", "1ps"),
                 build_args=["-Wno-fatal"], log_file=bdir / "build.log")
    case = {"x": x[None], "clk": "clk", "rst": "rst_n", "s": "s_axis", "m": "m_axis", "out_bytes": x.size,
            "timeout": 200 * x.shape[0] * c // pe + 10_000}
    got = _run(runner, bdir, tmp_path, "gdn_axis", case, bdir / "sim_fault.log").reshape(x.shape)
    bad = np.argwhere(got != exp)
    report = {"edits": {k: list(v) for k, v in edits.items()}, "pixels": int(x.shape[0]),
              "outputs_changed_by_flips": int((exp != clean).sum()), "rtl_vs_fault_model_mismatches": int(len(bad)),
              "rtl_vs_clean_golden_differences": int((got != clean).sum()),
              "channels_changed": sorted(set(np.argwhere(exp != clean)[:, 1].tolist())), "lut_entry": k_lut,
              "gamma_flip": [i_g, j_g, 15], "beta_flip": [i_b, 31], "shift_flip": [i_s, 7], "lut_flip": [k_lut, 16]}
    (bdir / "fault_report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    assert bad.size == 0, f"{len(bad)} RTL outputs differ from the fault model, first (px, ch): {bad[:8].tolist()}"
    assert report["outputs_changed_by_flips"] > 50
    assert {i_g, i_b, i_s} <= set(report["channels_changed"])
    assert len(report["channels_changed"]) > 3, "the LUT flip changed nothing"


# ==================================================================== 2. stitched FINN g_a
FINN_INFO = r'''
import json, os, sys, tempfile
import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
import licfpga.overlay.finn_gdn  # noqa: registers GDN
m = ModelWrapper(sys.argv[1])
co_ci_k, flip = json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = {"mvau": [], "thresholding": [], "gdn": []}
for n in m.graph.node:
    op = getCustomOp(n)
    d = op.get_nodeattr("code_gen_dir_ipgen") if "code_gen_dir_ipgen" in op.get_nodeattr_types() else None
    if n.op_type == "MVAU_rtl":
        out["mvau"].append({"name": n.name, "dir": d, "acc": op.get_nodeattr("accDataType"),
                            "out": op.get_nodeattr("outputDataType"), "PE": op.get_nodeattr("PE"),
                            "SIMD": op.get_nodeattr("SIMD"), "mem_mode": op.get_nodeattr("mem_mode")})
    elif n.op_type == "Thresholding_rtl":
        out["thresholding"].append({"name": n.name, "dir": d, "PE": op.get_nodeattr("PE"),
                                    "bits": DataType[op.get_nodeattr("weightDataType")].bitwidth(),
                                    "out_bits": DataType[op.get_nodeattr("outputDataType")].bitwidth(),
                                    "in": op.get_nodeattr("inputDataType"), "act_val": op.get_nodeattr("ActVal"),
                                    "C": op.get_nodeattr("NumChannels"),
                                    "n": int(m.get_initializer(n.input[1]).shape[1])})
    elif n.op_type == "GDN_rtl":
        out["gdn"].append({"name": n.name, "dir": d, "PE": op.get_nodeattr("PE")})
# the weight flip: FINN writes the flipped matrix itself; the diff locates the bit
mv = [n for n in m.graph.node if n.op_type == "MVAU_rtl"][flip["mvau"]]
op = getCustomOp(mv)
W = np.array(m.get_initializer(mv.input[1]))
co, ci, k = co_ci_k
r = (flip["ky"] * k + flip["kx"]) * ci + flip["ci"]
W2 = W.copy()
v = int(W2[r, flip["co"]])
W2[r, flip["co"]] = v - 128 if v >= 0 else v + 128          # sign bit of the int8 word
src = os.path.join(op.get_nodeattr("code_gen_dir_ipgen"), "memblock.dat")
tmp = tempfile.mktemp(suffix=".dat")
op.make_weight_file(W2, "decoupled_verilog_dat", tmp)
a, b = open(src).read().split(), open(tmp).read().split()
diff = [(i, int(x, 16) ^ int(y, 16)) for i, (x, y) in enumerate(zip(a, b)) if x != y]
out["weight_flip"] = {"file": src, "flipped_file": tmp, "old": v, "new": int(W2[r, flip["co"]]), "lines": len(a),
                      "diff": [(i, int(x).bit_length() - 1, bin(x).count("1")) for i, x in diff]}
print(json.dumps(out))
'''


def _bits(dtype: str) -> int:
    """Bit width of a FINN integer datatype name (INT22, UINT8)."""
    return int("".join(ch for ch in dtype if ch.isdigit()))


def _finn_tree(th: dict) -> np.ndarray:
    """FINN's threshold tree of one Thresholding_rtl, in in-order index: [C, 2**B - 1]."""
    from licfpga.host import faults as F

    c, pe, ob, bits = th["C"], th["PE"], th["out_bits"], th["bits"]
    tree = np.zeros((c, 2**ob - 1), dtype=np.int64)
    for p in range(pe):
        for st in range(ob):
            f = Path(th["dir"]) / f"{th['name']}_threshs_{p}_{st}.dat"
            v = F.from_word(np.array([int(t, 16) for t in f.read_text().split()], dtype=np.int64), bits, True)
            idx = [(2 * j + 1) * 2**(ob - 1 - st) - 1 for j in range(2**st)]
            tree[p::pe][:, idx] = v.reshape(-1, 2**st)
    return tree


@pytest.mark.slow
def test_g_a_memory_flips_match_golden(verilator_env, tmp_path):
    import subprocess

    from stitched import FINN_PY, export_flow_stitch, verilator_build

    from licfpga.host import faults as F
    from licfpga.host.images import load_image
    from licfpga.model.golden.network import IntegerModel

    t = {}
    t0 = time.time()
    build = BUILD / "fault_g_a"
    info, integer, tt = export_flow_stitch("g_a", build, 64, 50_000, 0, None, top="g_a_top")
    t.update(tt)
    st = info["stitch"]
    t0 = time.time()
    runner = verilator_build([Path(f) for f in st["sim_files"]], "g_a_top", build / "verilator",
                             'public_flat_rw -module "g_a_top" -var "*"\n')
    t["verilator_build_s"] = time.time() - t0
    im = IntegerModel.load(integer)
    g_a = {ly["name"]: ly for ly in im.schema["transforms"]["g_a"]}
    w3 = im.arrays[g_a["g_a.3"]["weight"]]
    # the g_a.3 weight: the smallest |w| of output channel 5 (its sign flip: |w| -> ~128)
    co = 5
    ci, ky, kx = np.unravel_index(int(np.argmin(np.abs(w3[co]))), w3[co].shape)
    flip = {"mvau": 1, "co": co, "ci": int(ci), "ky": int(ky), "kx": int(kx)}
    final = build / "finn" / "kv260" / "g_a" / "g_a_final.onnx"
    r = subprocess.run([str(FINN_PY), "-c", FINN_INFO, str(final), json.dumps([30, 30, 5]), json.dumps(flip)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    fi = json.loads(r.stdout.strip().splitlines()[-1])
    wf = fi["weight_flip"]
    assert len(wf["diff"]) == 1 and wf["diff"][0][2] == 1, f"not a single bit: {wf['diff']}"   # one line, one bit
    th = fi["thresholding"][2]                       # g_a.6's
    gd = fi["gdn"][1]                                # g_a.5's
    mv = fi["mvau"][1]                               # g_a.3's

    # ---- the fault model: FINN's own threshold trees for the four layers, the same flips
    fm = F.FaultyModel(im, [])
    lys = [g_a[n] for n in ("g_a.0", "g_a.3", "g_a.6", "g_a.9")]
    trees = {}
    for ly, tinfo in zip(lys, fi["thresholding"]):
        lo, hi = ly["out_range"]
        assert tinfo["act_val"] == lo and tinfo["n"] == hi - lo and tinfo["C"] == ly["out_channels"]
        trees[ly["name"]] = F.ThresholdLayer(_finn_tree(tinfo)[None], hi - lo, lo, tinfo["bits"],
                                             im.arrays[ly["bias"]].astype(np.int64), 1, _bits(tinfo["in"]))
        ours = F.threshold_layer(ly, im.arrays)
        dmin, dmax = F.accumulator_domain(ly, im.arrays)
        inside = (ours.tree[0] + ours.bias[:, None] > dmin[:, None]) & (ours.tree[0] + ours.bias[:, None] <= dmax[:, None])
        inside[:, hi - lo:] = False
        assert np.array_equal(trees[ly["name"]].tree[0][inside], ours.tree[0][inside]), ly["name"]
    # the weight flip (artifact coordinates [co, ci, ky, kx]) ...
    site_w = next(s for s in F.param_sites(im, layer_names={"g_a.3"}, kinds={"weight"}))
    word_w = int(np.ravel_multi_index((co, flip["ci"], flip["ky"], flip["kx"]), w3.shape))
    # ... the gamma flip (g_a.5: gamma[i, j] bit 15 = gamma.mem line (i//PE)*C + j, lane i%PE) ...
    p5 = im._gdn["g_a.5"]
    i_g = 8
    j_g = int(np.argmin(p5.gamma[i_g] + (np.arange(p5.channels) == i_g) * 2**20))
    site_g = next(s for s in F.param_sites(im, layer_names={"g_a.5"}, kinds={"gamma"}))
    fm = F.FaultyModel(im, [F.Flips(site_w, np.array([word_w]), np.array([7])),
                            F.Flips(site_g, np.array([i_g * p5.channels + j_g]), np.array([15]))])
    assert int(fm.arrays[site_w.key].reshape(-1)[word_w]) == wf["new"] and int(w3.reshape(-1)[word_w]) == wf["old"]
    # ... and the threshold flip: the root (in-order index 2**(B-1) - 1, stage 0) of g_a.6 channel c_t
    c_t, bit_t = 3, th["bits"] - 2
    root = 2 ** (th["out_bits"] - 1) - 1
    clean_trees = {k: F.ThresholdLayer(v.tree.copy(), v.n, v.lo, v.bits, v.bias, 1, v.in_bits) for k, v in trees.items()}
    trees["g_a.6"].tree[0, c_t, root] = F.flip_bits(trees["g_a.6"].tree[0, c_t, root:root + 1], [0], [bit_t],
                                                    th["bits"], True)[0]
    fm.thresholds = trees
    fm._first["g_a"] = 0
    # no accumulator can leave the MVAU's accumulator type (else the RTL would wrap where we do not)
    abits = _bits(mv["acc"])
    lyf = dict(g_a["g_a.3"])
    dmin, dmax = F.accumulator_domain(lyf, fm.arrays)
    b3 = im.arrays[lyf["bias"]]
    assert mv["acc"].startswith("INT") and (dmin - b3).min() >= -2**(abits - 1) and (dmax - b3).max() < 2**(abits - 1), \
        f"flipped g_a.3 worst case [{(dmin - b3).min()}, {(dmax - b3).max()}] exceeds {mv['acc']}"

    rgb, _ = load_image(ROOT / "host" / "samples" / "kodim23.png")
    h, w = rgb.shape[:2]
    x = np.ascontiguousarray(rgb[(h - 64) // 2:(h + 64) // 2, (w - 64) // 2:(w + 64) // 2])
    exp = np.moveaxis(fm.run_transform("g_a", x.transpose(2, 0, 1)), 0, -1)
    clean = np.moveaxis(im.run_transform("g_a", x.transpose(2, 0, 1)), 0, -1)
    fm_clean = F.FaultyModel(im, [])
    fm_clean.thresholds, fm_clean._first["g_a"] = clean_trees, 0
    assert np.array_equal(np.moveaxis(fm_clean.run_transform("g_a", x.transpose(2, 0, 1)), 0, -1), clean)
    # the naive threshold model: count of thresholds <= x instead of the binary search
    naive = F.FaultyModel(im, fm_flips := [F.Flips(site_w, np.array([word_w]), np.array([7])),
                                           F.Flips(site_g, np.array([i_g * p5.channels + j_g]), np.array([15]))])
    del fm_flips
    cnt = {k: F.ThresholdLayer(v.tree.copy(), v.n, v.lo, v.bits, v.bias, 1, v.in_bits) for k, v in trees.items()}

    class _Count(F.ThresholdLayer):
        def apply(self, acc):
            a = F.wrap(acc - self.bias[:, None, None], self.in_bits)
            a = np.clip(a, -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1)
            t = self.tree[0][:, :self.n]
            return (t[:, :, None] <= a.reshape(a.shape[0], 1, -1)).sum(1).reshape(a.shape) + self.lo

    naive.thresholds = {k: _Count(**{f: getattr(v, f) for f in ("tree", "n", "lo", "bits", "bias", "stride", "in_bits")})
                        for k, v in cnt.items()}
    naive._first["g_a"] = 0
    naive_y = np.moveaxis(naive.run_transform("g_a", x.transpose(2, 0, 1)), 0, -1)

    # ---- edit the memory images: thresholds are read from the simulation's cwd (copies),
    # MVAU weights and GDN ROMs by absolute path (edited in place, restored afterwards)
    for m_ in st["meminit"]:
        shutil.copy(m_, tmp_path / Path(m_).name)
    tfile = tmp_path / f"{th['name']}_threshs_{c_t % th['PE']}_0.dat"
    t_edit = _flip_hex_line(tfile, c_t // th["PE"], bit_t)
    wfile, gfile = Path(wf["file"]), Path(gd["dir"]) / "gamma.mem"
    backups = {f: f.read_bytes() for f in (wfile, gfile)}
    try:
        shutil.copy(wf["flipped_file"], wfile)
        g_edit = _flip_hex_line(gfile, (i_g // gd["PE"]) * p5.channels + j_g, (i_g % gd["PE"]) * p5.gamma_bits + 15)
        case = {"x": x[None].astype(np.uint8), "clk": "ap_clk", "rst": "ap_rst_n", "s": "s_axis_0", "m": "m_axis_0",
                "out_bytes": exp.size, "timeout": 20 * int(st["max_exp_cycles"]) + 200_000}
        t0 = time.time()
        got = _run(runner, build / "verilator", tmp_path, "g_a_top", case, build / "sim_fault.log").reshape(exp.shape)
        t["simulation_s"] = time.time() - t0
    finally:
        for f, b in backups.items():
            f.write_bytes(b)
    bad = np.argwhere(got != exp)
    report = {"frame": "kodim23 64x64 centre crop", "latents": int(exp.size),
              "weight_flip": {"layer": "g_a.3", "index_co_ci_ky_kx": [co, flip["ci"], flip["ky"], flip["kx"]],
                              "bit": 7, "old": wf["old"], "new": wf["new"], "memblock_line_bit": wf["diff"][0][:2],
                              "mvau": mv},
              "threshold_flip": {"layer": "g_a.6", "node": th["name"], "channel": c_t, "tree_node": "root (stage 0)",
                                 "bit": bit_t, "word_bits": th["bits"], "file": tfile.name, "hex": list(t_edit)},
              "gamma_flip": {"layer": "g_a.5", "i": i_g, "j": j_g, "bit": 15, "hex": list(g_edit), "PE": gd["PE"]},
              "latents_changed_by_flips": int((exp != clean).sum()),
              "rtl_vs_fault_model_mismatches": int(len(bad)),
              "rtl_vs_clean_golden_differences": int((got != clean).sum()),
              "rtl_vs_naive_count_threshold_model_differences": int((got != naive_y).sum()), **t}
    (build / "fault_report.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, default=str))
    assert bad.size == 0, f"{len(bad)} latents differ from the fault model, first (row, col, ch): {bad[:8].tolist()}"
    assert report["latents_changed_by_flips"] > 0
    assert report["rtl_vs_naive_count_threshold_model_differences"] > 0
