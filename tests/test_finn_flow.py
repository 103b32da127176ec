"""FINN+ flow of g_a (overlay/finn_flow.py, overlay/finn_gdn.py), run in .venv-finn.

FINN+ 1.6.1 pins numpy 2 / onnx 1.21, which conflict with the main venv (CompressAI needs
numpy<2), so the flow runs in its own environment ``.venv-finn`` (``make finn-env``). This
test exports g_a with the main venv and runs the flow with ``.venv-finn/bin/python``; it
fails (does not skip) when that environment is missing: ``make test`` must build it first.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
FINN_PY = ROOT / os.environ.get("FINN_VENV", ".venv-finn") / "bin" / "python"


def finn_python() -> Path:
    if not FINN_PY.exists():
        pytest.fail(f"{FINN_PY} missing: run `make finn-env` (the FINN+ flow runs in its own venv)")
    return FINN_PY


def run_finn(code: str, timeout=600) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(finn_python()), "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


@pytest.fixture(scope="module")
def g_a_qonnx(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from test_qonnx_export import lively_model

    from licfpga.overlay import export_qonnx as E
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("finn")
    path = E.export_transform(lively_model(), "g_a", out / "g_a.onnx", size=64)
    return path, out


@pytest.mark.slow                    # a whole FINN flow in .venv-finn
def test_finn_flow_g_a(g_a_qonnx):
    path, out = g_a_qonnx
    stdout = run_finn(
        "import json; from licfpga.overlay.finn_flow import run_flow\n"
        f"r = run_flow({str(path)!r}, 'kv260', fps=30.0, out_root={str(out / 'build')!r})\n"
        "print(json.dumps(r, default=str))")
    r = json.loads(stdout.strip().splitlines()[-1])
    # ConvertQONNXtoFINN re-associates the float scale arithmetic (Mul/Div/Add around the
    # thresholds), which moves values within float32 error of a rounding boundary by one
    # LSB, and such a flip propagates (see tests/test_qonnx_export.py): y stays within 1 LSB
    # of the exported graph. From streamlining on the graph is integer: every later step
    # (lowering, our GDN layer, FINN hardware layers) reproduces it exactly.
    verified = [s for s in r["steps"] if "equal_fraction" in s]
    assert [s["step"] for s in verified] == ["tidy", "qonnx_to_finn", "streamline", "subpixel", "lower", "gdn_to_hw",
                                             "to_hw"]
    assert verified[0]["equal_fraction"] == 1.0
    for s in verified:
        assert s["equal_fraction"] >= 0.95 and s["max_abs_diff"] <= 1, s
    for s in verified[3:]:
        assert s["equal_to_previous_step"] == 1.0, s
    # all layers are FINN hardware layers with RTL backends; our GDN is among them
    final = r["steps"][-1]["nodes"]
    assert r["non_hw_nodes"] == []
    assert final.count("GDN_rtl") == 3
    assert all(n.endswith("_rtl") for n in final), final
    assert final.count("MVAU_rtl") == 4
    # GDN cycles = pixels * C*C/PE (C=30 for this student; g_a's GDNs see 32x32, 16x16, 8x8)
    cyc = r["cycles_per_layer"]
    for name, pix in (("GDN_rtl_0", 32 * 32), ("GDN_rtl_1", 16 * 16), ("GDN_rtl_2", 8 * 8)):
        pe = r["folding"][name]["PE"]
        assert cyc[name] == pix * 30 * 30 // pe
    assert r["max_cycles"] <= r["target_cycles_per_frame"]
    assert r["resources_per_layer"]["GDN_rtl_0"]["DSP"] == r["folding"]["GDN_rtl_0"]["PE"] + 6
    # stream ports (the Vivado step's TLAST counter uses the output beats): all bits of a frame
    assert r["input_stream"]["beats_per_frame"] * r["input_stream"]["width_bits"] == 64 * 64 * 3 * 8
    assert r["output_stream"]["beats_per_frame"] * r["output_stream"]["width_bits"] == 4 * 4 * 48 * 8
    # RTL generated for every layer, GDN = gdn_axis.sv + ROMs + wrapper
    assert r["codegen"]["rtl_failed"] == {} and r["codegen"]["hls_not_generated"] == []
    ip = out / "build" / "kv260" / "g_a" / "ip" / "GDN_rtl_0"
    for f in ("gdn_axis.sv", "GDN_rtl_0_wrapper.v", "gamma.mem", "beta.mem", "shift.mem", "lut.mem"):
        assert (ip / f).is_file(), f
    assert "module GDN_rtl_0_wrapper" in (ip / "GDN_rtl_0_wrapper.v").read_text()


def test_finn_gdn_layer_is_gdn_int():
    """The FINN GDN layer alone: execute_node == gdn_int, folded shapes, cycles (resources:
    test_gdn_resource_estimate_against_yosys)."""
    out = run_finn(r'''
import numpy as np
from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from licfpga.model.golden import gdn as G
from licfpga.overlay import finn_gdn
from licfpga.overlay.custom_op import gdn_attrs
rng = np.random.default_rng(0)
C = 12
p = G.quantize_gdn_params(rng.uniform(0.5, 2, C), rng.uniform(0, 0.3, (C, C)), 0.05, 0.04, False)
a = gdn_attrs(p); a.pop("data_layout")
n = helper.make_node("GDN_rtl", ["x"], ["y"], domain="finn.custom_op.fpgadataflow.rtl", backend="fpgadataflow",
                     numInputVectors=[1, 3, 5], PE=4, name="g", **a)
op = getCustomOp(n)
q = rng.integers(-128, 128, (1, 3, 5, C))
ctx = {"x": q.astype(np.float32)}
op.execute_node(ctx, None)
want = np.moveaxis(G.gdn_int(np.moveaxis(q[0], -1, 0).astype(np.int8), p), 0, -1)[None]
assert np.array_equal(ctx["y"], want)
assert op.get_folded_input_shape() == (1, 3, 5, 3, 4) and op.get_instream_width() == 32
assert op.get_exp_cycles() == 15 * C * C // 4
assert op.verify_node() == ["PE divides C", "GDN parameters consistent"]
print("ok")
''')
    assert out.strip().endswith("ok")


def _yosys_gdn(c: int, pe: int, inverse: bool) -> dict:
    """hls/synth.py's Yosys count of one gdn_axis (hls/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("licfpga_hls_synth", ROOT / "hls" / "synth.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    return synth.synth_report(c, pe, inverse)


@pytest.mark.slow
@pytest.mark.parametrize("c,pe,inverse", [(30, 10, False), (30, 6, True)])
def test_gdn_resource_estimate_against_yosys(c, pe, inverse):
    """The GDN layer's resource estimate (overlay/finn_gdn.gdn_resources, fitted to the three
    Yosys points of YOSYS_POINTS) against a fresh Yosys synthesis of hls/gdn/gdn_axis.sv at
    configurations *not* among those points (C = 30: the shipped student's GDN width):
    DSPs exact (PE MAC lanes + square + post pipeline), FFs within 10 %.
    LUTs and BRAM are deliberately not asserted: there the estimate is off at C = 30
    (measured, Yosys 0.23: GDN PE=10 2596 LUT vs 1819 estimated, IGDN PE=6 2072 vs 1266;
    Yosys maps the 14.4 Kib gamma ROM to LUTs, the estimate counts one BRAM36 for it)."""
    require(shutil.which("yosys"), "native yosys (Debian: apt-get install yosys); the YoWASP "
                                   "build stops before LUT mapping and counts other FFs")
    measured = _yosys_gdn(c, pe, inverse)
    est = json.loads(run_finn(
        "import json; from licfpga.overlay.finn_gdn import gdn_resources\n"
        f"print(json.dumps(gdn_resources({c}, {pe}, {inverse})))").strip().splitlines()[-1])
    print(f"C={c} PE={pe} inverse={inverse}: yosys {measured}, estimate {est}")
    assert est["DSP"] == measured["DSP"]
    assert abs(est["FF"] / measured["FF"] - 1) <= 0.10, (est["FF"], measured["FF"])


SHIPPED_QAT = ROOT / "model" / "checkpoints" / "qat" / "qat-student-0.013.pt"
SHIPPED_INT = ROOT / "model" / "checkpoints" / "int-student-0.013"


@pytest.mark.slow                    # a whole FINN flow in .venv-finn
def test_thresholds_proven_equal_to_golden_requantisation(tmp_path):
    """Every threshold of every Thresholding layer of the shipped student's g_a equals the
    golden integer requantisation clamp((acc*mult + 2**(shift-1)) >> shift, lo, hi) for
    *every* accumulator value the layer can produce (overlay/threshold_proof.py: weights equal,
    MVAU output = golden acc - bias, checked by execution, thresholds k: R(t_k-1) < lo+k <= R(t_k),
    widths hold the whole accumulator range). FINN's own float-derived thresholds do not
    (off by one at a few hundred of the 35 142 thresholds); the flow replaces them with the
    artifact's (GoldenThresholds) and proves the result."""
    import torch

    from licfpga.overlay import export_qonnx as E
    torch.set_num_threads(1)
    onnx = E.export_transform(E.load_model(qat=str(SHIPPED_QAT)), "g_a", tmp_path / "g_a.onnx", size=64)
    stdout = run_finn(
        "import json\n"
        "from qonnx.core.modelwrapper import ModelWrapper\n"
        "from licfpga.model.golden.network import IntegerModel\n"
        "from licfpga.overlay.finn_flow import run_flow\n"
        "from licfpga.overlay.threshold_proof import prove, cross_check\n"
        "import numpy as np\n"
        f"im = IntegerModel.load({str(SHIPPED_INT)!r})\n"
        f"plain = run_flow({str(onnx)!r}, 'kv260', out_root={str(tmp_path / 'plain')!r}, target_cycles=50000, codegen=False)\n"
        f"d = {str(tmp_path / 'plain' / 'kv260' / 'g_a')!r}\n"
        "p0 = prove(ModelWrapper(d + '/g_a_final.onnx'), im.schema, im.arrays, 'g_a')\n"
        "m = ModelWrapper(d + '/g_a_07_to_hw.onnx')\n"
        "x = np.random.default_rng(1).integers(0, 256, size=m.get_tensor_shape(m.graph.input[0].name))\n"
        "cc = cross_check(m, im, 'g_a', x)\n"
        f"g = run_flow({str(onnx)!r}, 'kv260', out_root={str(tmp_path / 'gold')!r}, target_cycles=50000, codegen=False,"
        f" golden={str(SHIPPED_INT)!r})\n"
        "print(json.dumps({'plain': p0, 'cross': cc, 'golden': g['threshold_proof'], 'steps': g['steps']}, default=str))")
    r = json.loads(stdout.strip().splitlines()[-1])
    # the mapping FINN MVAU output == golden accumulator - bias, on executed data
    assert len(r["cross"]) == 4 and all(c["mvau_out_equals_golden_acc_minus_bias"] for c in r["cross"])
    # FINN's own thresholds: structurally right, but some are off by one against the golden
    plain = r["plain"]
    assert all(ly["weights_equal"] and ly["widths_ok"] for ly in plain["layers"])
    bad = [len(ly["mismatches"]) for ly in plain["layers"]]
    print("FINN float-derived thresholds differing from golden per layer:", bad)
    assert not plain["exact"] and sum(bad) > 0
    hit = [c["thresholding_out_differs_from_golden"] for c in r["cross"]]
    print("... activations of one random 64x64 input where FINN's thresholds differ from golden:", hit)
    assert all(abs(m["finn_t"] - m["golden_t"]) == 1 for ly in plain["layers"] for m in ly["mismatches"])
    # with GoldenThresholds: proven for all accumulators, and the graph == IntegerModel
    gold = r["golden"]
    assert gold["exact"], gold
    assert [ly["checked"] for ly in gold["layers"]] == [30 * 255, 30 * 255, 30 * 255, 48 * 254]
    assert all(ly["equal_to_golden_thresholds_in_domain"] for ly in gold["layers"])
    # (earlier, float steps are the exported QONNX: within 1 LSB of golden, see above)
    to_hw = next(s for s in r["steps"] if s["step"] == "to_hw")
    assert to_hw["equal_to_golden"] == 1.0, to_hw


# export size per transform: h_s sees z at size/64, and FINN's Im2Col needs z of at least 2x2
FLOW_SIZES = {"h_a": 128, "h_s": 128, "g_s": 64}


@pytest.mark.slow                    # a whole FINN flow in .venv-finn
@pytest.mark.parametrize("transform", ["h_a", "h_s", "g_s"])
def test_finn_flow_hyper_and_synthesis_transforms(transform, tmp_path):
    """h_a, h_s and g_s of the shipped student through the whole flow for both boards:
    every verified step equal to the exported QONNX *and* to the golden IntegerModel, every
    node a FINN hardware layer with an RTL backend, thresholds proven equal to the golden
    requantisation for every accumulator value, RTL generated for every layer. The decoder's
    transposed convs run as sub-pixel convs (SubPixelDeconv) + our DepthToSpace layer;
    FINN's own thresholds are off by one at a few hundred (see the g_a proof above),
    GoldenThresholds replaces them."""
    import torch

    from licfpga.overlay import export_qonnx as E
    torch.set_num_threads(1)
    onnx = E.export_transform(E.load_model(qat=str(SHIPPED_QAT)), transform, tmp_path / f"{transform}.onnx",
                              size=FLOW_SIZES[transform])
    stdout = run_finn(
        "import json\n"
        "from licfpga.overlay.finn_flow import run_flow\n"
        f"rs = [run_flow({str(onnx)!r}, b, fps=30.0, out_root={str(tmp_path / 'build')!r}, golden={str(SHIPPED_INT)!r})"
        " for b in ('kv260', 'zcu102')]\n"
        "print(json.dumps(rs, default=str))")
    for r in json.loads(stdout.strip().splitlines()[-1]):
        verified = [s for s in r["steps"] if "equal_fraction" in s]
        assert [s["step"] for s in verified] == ["tidy", "qonnx_to_finn", "streamline", "subpixel", "lower",
                                                 "gdn_to_hw", "to_hw"]
        # equal_fraction / max_abs_diff compare with the *exported float* QONNX graph, which itself
        # sits within float32 error of the golden model: values near a rounding boundary move by
        # one LSB in an intermediate layer and may grow to 2 output LSB through the later ones
        # (the session-8 student: 0.2-0.33 % of g_s's pixels, at every step incl. to_hw, where the
        # graph already *is* the golden model). The exact claim is equal_to_golden == 1.0 (below).
        lsb = 1 / 255 if transform == "g_s" else 1.0
        for s in verified:
            assert s["equal_fraction"] >= 0.99 and s["max_abs_diff"] <= 2 * lsb * (1 + 1e-6), s
            assert s["equal_to_golden"] >= 0.99, s
        assert verified[-1]["step"] == "to_hw" and verified[-1]["equal_to_golden"] == 1.0, verified[-1]
        # every stream edge a whole width ratio (no generic width converter: *WholeRatio in the fold step)
        assert r["folding_warnings"] == [], r["folding_warnings"]
        nodes = r["steps"][-1]["nodes"]
        assert r["non_hw_nodes"] == [] and all(n.endswith("_rtl") for n in nodes), nodes
        n_deconv = {"h_a": 0, "h_s": 2, "g_s": 4}[transform]
        assert nodes.count("MVAU_rtl") == 3 + (transform == "g_s")
        assert nodes.count("DepthToSpace_rtl") == n_deconv
        assert nodes.count("GDN_rtl") == (3 if transform == "g_s" else 0)
        proof = r["threshold_proof"]
        assert proof["exact"] and all(ly["equal_to_golden_thresholds_in_domain"] for ly in proof["layers"])
        # deconv layers are proven as sub-pixel convs: 4x the channels of the golden layer
        co = {"h_a": [30, 30, 30], "h_s": [120, 120, 48], "g_s": [120, 120, 120, 12]}[transform]
        assert [len(ly["mismatches"]) for ly in proof["layers"]] == [0] * len(co)
        assert [ly["checked"] // ly["n_thresholds"] for ly in proof["layers"]] == co
        assert all(proof["rtl_memories_equal"].values())
        assert r["codegen"]["rtl_failed"] == {} and r["codegen"]["hls_not_generated"] == []
        assert r["max_cycles"] <= r["target_cycles_per_frame"]
        if n_deconv:
            ip = tmp_path / "build" / r["board"] / transform / "ip" / "DepthToSpace_rtl_0"
            assert (ip / "depth_to_space_axis.sv").is_file()
            assert "depth_to_space_axis #(" in (ip / "DepthToSpace_rtl_0_wrapper.v").read_text()


def test_elementwise_layers_get_whole_stream_ratios():
    """ElementwiseWholeRatio on the KV260 1080p30 g_s chain that ran 20.8 % slow: a producer of
    8 channels a beat (the MVAU, PE 8) -> thresholds PE 3 -> depth-to-space SIMD 5 (24 -> 40 and
    64 -> 24 bit: generic converters). The thresholds get the smallest PE whole with both
    neighbours that meets the target (40 for SIMD 5, 24 for SIMD 3); an edge already whole and
    a layer with no hardware producer stay as they are."""
    out = run_finn(r'''
import json
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model
from licfpga.overlay.finn_flow import ElementwiseWholeRatio
H = W = 8
def thr(name, i, o, pe, idt):
    return helper.make_node("Thresholding_rtl", [i, name + "_T"], [o], name=name, domain="finn.custom_op.fpgadataflow.rtl",
                            NumChannels=120, PE=pe, numSteps=255, inputDataType=idt, weightDataType=idt,
                            outputDataType="UINT8", numInputVectors=[1, H, W], ActVal=0)
def build(d2s_simd, t1_pe=3, producer=True):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, H, W, 120])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * H, 2 * W, 30])
    nodes = ([thr("T0", "x", "a", 8, "INT21")] if producer else [helper.make_node("Relu", ["x"], ["a"], name="R")]) + [
             thr("T1", "a", "b", t1_pe, "UINT8"),
             helper.make_node("DepthToSpace_rtl", ["b"], ["y"], name="D", domain="finn.custom_op.fpgadataflow.rtl",
                              NumChannels=30, BlockSize=2, numInputVectors=[1, H, W], SIMD=d2s_simd, dataType="UINT8")]
    return ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [x], [y])))
res = {}
for key, d2s, pe, prod in (("d2s_5", 5, 3, True), ("d2s_3", 3, 3, True), ("already_whole", 5, 4, True),
                           ("no_hw_producer", 5, 3, False)):
    m = build(d2s, pe, prod).transform(ElementwiseWholeRatio(120 // 3 * H * W))    # the target PE 3 meets
    res[key] = {n.name: getCustomOp(n).get_nodeattr("PE" if n.op_type.startswith("Thr") else "SIMD")
                for n in m.graph.node if n.op_type != "Relu"}
print(json.dumps(res))
''')
    r = json.loads(out.strip().splitlines()[-1])
    assert r["d2s_5"] == {"T0": 8, "T1": 40, "D": 5}                  # 8 | 40 and 5 | 40
    assert r["d2s_3"] == {"T0": 8, "T1": 24, "D": 3}
    assert r["already_whole"] == {"T0": 8, "T1": 4, "D": 5}           # 8 -> 4 is a pure serialiser: kept
    assert r["no_hw_producer"] == {"T1": 3, "D": 6}                   # T1 kept; D then whole with it


def test_subpixel_deconv_rewrite_alone():
    """SubPixelDeconv on a one-layer graph ConvTranspose(k5, s2, p2, op1) -> MultiThreshold
    equals the original graph exactly (integer weights and inputs), for odd sizes, and the
    FINN DepthToSpace layer equals the ONNX DepthToSpace."""
    out = run_finn(r'''
import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model
from licfpga.overlay.finn_flow import SubPixelDeconv
rng = np.random.default_rng(0)
ci, co, h, w = 3, 4, 5, 7
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ci, h, w])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, co, 2 * h, 2 * w])
nodes = [helper.make_node("ConvTranspose", ["x", "W"], ["a"], kernel_shape=[5, 5], strides=[2, 2], pads=[2, 2, 2, 2],
                          output_padding=[1, 1]),
         helper.make_node("MultiThreshold", ["a", "T"], ["y"], domain="qonnx.custom_op.general", out_dtype="INT4",
                          out_bias=-8.0)]
m = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)]))
m.set_initializer("W", rng.integers(-8, 8, (ci, co, 5, 5)).astype(np.float32))
m.set_initializer("T", np.sort(rng.integers(-300, 300, (co, 15)), axis=1).astype(np.float32))
m.set_tensor_datatype("W", DataType["INT4"])
m.set_tensor_shape("a", [1, co, 2 * h, 2 * w])
xv = rng.integers(-128, 128, (1, ci, h, w)).astype(np.float32)
ref = execute_onnx(m, {"x": xv})["y"]
m2 = m.transform(SubPixelDeconv())
ops = [n.op_type for n in m2.graph.node]
assert ops == ["Conv", "MultiThreshold", "DepthToSpace"], ops
assert m2.get_initializer(m2.graph.node[0].input[1]).shape == (4 * co, ci, 3, 3)
got = execute_onnx(m2, {"x": xv})["y"]
assert np.array_equal(got, ref), np.abs(got - ref).max()
assert len(np.unique(ref)) > 8          # the thresholds are exercised, not all clipped
# our NHWC hardware DepthToSpace == ONNX DepthToSpace (DCR) on the same data
a = rng.integers(-128, 128, (1, 4 * co, 3, 4)).astype(np.float32)
dm = ModelWrapper(qonnx_make_model(helper.make_graph(
    [helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2, mode="DCR")], "d",
    [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4 * co, 3, 4])],
    [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, co, 6, 8])]), opset_imports=[helper.make_opsetid("", 13)]))
onnx_ref = execute_onnx(dm, {"a": a})["b"]
from licfpga.overlay import finn_d2s
n = helper.make_node("DepthToSpace_rtl", ["i"], ["o"], domain="finn.custom_op.fpgadataflow.rtl", backend="fpgadataflow",
                     NumChannels=co, BlockSize=2, numInputVectors=[1, 3, 4], SIMD=2, dataType="INT8", name="d")
op = getCustomOp(n)
ctx = {"i": np.ascontiguousarray(a.transpose(0, 2, 3, 1))}
op.execute_node(ctx, None)
assert np.array_equal(ctx["o"].transpose(0, 3, 1, 2), onnx_ref)
assert op.get_folded_input_shape() == (1, 3, 4, 8, 2) and op.get_instream_width() == 16
assert op.get_exp_cycles() == 3 * 4 * 8 * 3 // 2     # input beats * (2S-1)/S
print("ok")
''')
    assert out.strip().endswith("ok")


def test_gdn_replicas_folding_dsp_lanes_and_totals():
    """FoldGDN: PE up to C, then pixel-parallel REPLICAS until the target is met (capped at
    C); cycles and resources scale by 1/R and R; the HDL wrapper instantiates
    gdn_replicated_axis with that R. mvu_rtl_dsps follows mvu.sv's lane packing (2 lanes
    for int8 x int8 on DSP48E2). side_totals sums a side against the board."""
    out = run_finn(r'''
import numpy as np, tempfile
from pathlib import Path
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model
from licfpga.model.golden import gdn as G
from licfpga.overlay.custom_op import gdn_attrs
from licfpga.overlay.finn_flow import FoldGDN, mvu_rtl_dsps, side_totals
rng = np.random.default_rng(0)
C, H, W = 6, 40, 50
p = G.quantize_gdn_params(rng.uniform(0.5, 2, C), rng.uniform(0, 0.3, (C, C)), 0.05, 0.04, False)
a = gdn_attrs(p); a.pop("data_layout")
node = helper.make_node("GDN_rtl", ["x"], ["y"], domain="finn.custom_op.fpgadataflow.rtl", backend="fpgadataflow",
                        numInputVectors=[1, H, W], PE=1, name="GDN_rtl_0", **a)
vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, H, W, C]) for n in "xy"]
m = ModelWrapper(qonnx_make_model(helper.make_graph([node], "g", vi[:1], vi[1:])))
pix = H * W
for target, pe, r in ((pix * C * C, 1, 1), (pix * C * C // 3, 3, 1), (pix * C, 6, 1), (pix * C // 4, 6, 4),
                      (pix * C // 5 + 1, 6, 5), (10, 6, 6)):
    m = m.transform(FoldGDN(target))
    op = getCustomOp(m.graph.node[0])
    assert (op.get_nodeattr("PE"), op.get_nodeattr("REPLICAS")) == (pe, r), (target, op.get_nodeattr("PE"), op.get_nodeattr("REPLICAS"))
    assert op.get_exp_cycles() == -(-pix * C * C // (pe * r))
    if r < C:
        assert op.get_exp_cycles() <= target
one = getCustomOp(m.graph.node[0])
res = one.node_res_estimation("xck26-sfvc784-2LV-c")
assert res["DSP"] == 6 * (6 + 6)                       # R x (PE + 6)
d = Path(tempfile.mkdtemp())
one.set_nodeattr("code_gen_dir_ipgen", str(d))
one.generate_hdl(m, "xck26-sfvc784-2LV-c", 5.0)
v = (d / "GDN_rtl_0_wrapper.v").read_text()
assert "gdn_replicated_axis #(" in v and ".R(6)" in v
assert (d / "gdn_replicated_axis.sv").is_file() and (d / "gdn_axis.sv").is_file()
# RTL MVU DSPs: int8 x int8 -> 2 lanes per DSP48E2
class Op:
    def __init__(self, **k): self.k = k
    def get_nodeattr(self, n): return self.k[n]
assert mvu_rtl_dsps(Op(weightDataType="INT8", inputDataType="INT8", PE=3, SIMD=10)) == 20
assert mvu_rtl_dsps(Op(weightDataType="INT4", inputDataType="UINT4", PE=8, SIMD=2)) == 4   # 4 lanes
# side totals against the board file
row = lambda t, lut, dsp, bram, fps: {"transform": t, "board": "kv260", "est_fps": fps, "est_fps_at_resolution": fps,
                                      "resources_total": {"LUT": lut, "DSP": dsp, "BRAM_18K": bram, "URAM": 0}}
txt = side_totals([row("g_a", 10000, 100, 20, 31.0), row("h_a", 1000, 10, 2, 40.0), row("h_s", 1000, 10, 2, 29.5),
                   row("g_s", 5000, 50, 10, 35.0)])
enc = next(l for l in txt.splitlines() if "encoder" in l)
assert "| 29.5 |" in enc and "12,000 (10%)" in enc and "| 120 (10%)" in enc, enc
print("ok")
''')
    assert out.strip().endswith("ok")


def test_fold_for_a_frame_resolution(tmp_path):
    """--resolution: a 64x64 export folded for 1920x1080 at 30 fps (target cycles scaled by
    64*64 / (1920*1088)): the first GDN needs pixel-parallel replicas, and the scaled-back
    fps estimate meets the target."""
    import torch

    from licfpga.overlay import export_qonnx as E
    torch.set_num_threads(1)
    onnx = E.export_transform(E.load_model(qat=str(SHIPPED_QAT)), "g_a", tmp_path / "g_a.onnx", size=64)
    stdout = run_finn(
        "import json\n"
        "from licfpga.overlay.finn_flow import run_flow\n"
        f"r = run_flow({str(onnx)!r}, 'kv260', fps=30.0, out_root={str(tmp_path / 'b')!r}, codegen=False,"
        " resolution=(1920, 1080), verify=False)\n"
        "print(json.dumps(r, default=str))")
    r = json.loads(stdout.strip().splitlines()[-1])
    assert r["target_cycles_per_frame"] == int(200e6 / 30 * 64 * 64 / (1920 * 1088))
    assert r["est_fps_at_resolution"] >= 30.0
    assert abs(r["est_fps_at_resolution"] - r["est_fps"] * 64 * 64 / (1920 * 1088)) < 1e-6
    # the first GDN sees 32x32 pixels: at PE = C = 30 alone (30 cycles/pixel) it would miss
    # the target, so it gets R = ceil(32*32*30 / target) replicas of PE + 6 DSPs each
    reps = -(-32 * 32 * 30 // r["target_cycles_per_frame"])
    assert reps > 1
    assert r["folding"]["GDN_rtl_0"] == {"PE": 30, "REPLICAS": reps}
    assert r["cycles_per_layer"]["GDN_rtl_0"] <= r["target_cycles_per_frame"]
    assert r["resources_per_layer"]["GDN_rtl_0"]["DSP"] == reps * 36


# ---- the flow as a FINN build: folding_config.json, --folding-config (issue 10) ------------
FOLD_TARGET = 50_000          # cycles/frame of the 64x64 g_a export (the RTL test's folding)


def _conv_layers(onnx_path: Path, size: int) -> list[dict]:
    """Per conv of the exported QONNX (read with onnx, not FINN): MW = k*k*C_in, MH = C_out and
    the output pixels, from the weight shapes and the conv attributes."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    layers, h = [], size
    for n in g.node:
        if n.op_type != "Conv":
            continue
        w = n.input[1] if n.input[1] in inits else prod[n.input[1]].input[0]     # behind its weight Quant
        co, ci, k, _ = inits[w].shape
        a = {x.name: list(x.ints) for x in n.attribute}
        h = (h + a["pads"][0] + a["pads"][2] - k) // a["strides"][0] + 1
        layers.append({"MW": k * k * ci, "MH": co, "pixels": h * h})
    return layers


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _expected_mvau_folding(mw: int, mh: int, pix: int, target: int, wwidth_max: int = 1024) -> tuple[int, int]:
    """FINN's SetFolding rule for an MVAU (SIMD first: smallest divisor of MW meeting the target
    while SIMD*8 weight bits <= mvau_wwidth_max, then PE likewise), then our
    GuardMVUOutputQueue (SIMD = MW, not a power of two -> next smaller SIMD, PE raised to keep
    the cycles). Cycles: FINN's MH/PE * MW/SIMD * pixels."""
    cyc = lambda pe, simd: mh // pe * (mw // simd) * pix      # noqa: E731
    simd = 1
    for d in _divisors(mw):
        if 8 * d > wwidth_max:
            break
        simd = d
        if cyc(1, d) <= target:
            break
    pe = next((d for d in _divisors(mh) if cyc(d, simd) <= target), mh)
    if simd == mw and simd > 1 and simd & (simd - 1):
        before = cyc(pe, simd)
        simd = max(d for d in _divisors(mw) if d < mw)
        pe = next(d for d in _divisors(mh) if d >= pe and cyc(d, simd) <= before)
    return pe, simd


@pytest.fixture(scope="module")
def folding_builds(tmp_path_factory):
    """The shipped student's g_a (64x64) through run_flow = FINN's build_dataflow_cfg: (1) the
    base build for FOLD_TARGET with the golden thresholds; (2) its folding_config.json passed
    back unchanged to a build for a 10x looser target, (3) that looser target without it, and
    the base build again from its build_config.json; (4) an edit: one MVAU's PE raised to the
    next divisor of MH; (5) two bad configs."""
    import torch

    from licfpga.overlay import export_qonnx as E
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("folding")
    onnx = E.export_transform(E.load_model(qat=str(SHIPPED_QAT)), "g_a", tmp / "g_a.onnx", size=64)
    stdout = run_finn(
        "import json\n"
        "from pathlib import Path\n"
        "from licfpga.overlay.finn_flow import run_flow\n"
        f"T, onnx, tmp = {FOLD_TARGET}, {str(onnx)!r}, Path({str(tmp)!r})\n"
        "kw = dict(codegen=False, verify=False)\n"
        f"base = run_flow(onnx, 'kv260', out_root=tmp / 'base', target_cycles=T, codegen=False, golden={str(SHIPPED_INT)!r})\n"
        "fc = tmp / 'base' / 'kv260' / 'g_a' / 'folding_config.json'\n"
        "conf = json.loads(fc.read_text())\n"
        "back = run_flow(onnx, 'kv260', out_root=tmp / 'back', target_cycles=10 * T, folding_config=fc, **kw)\n"
        "auto = run_flow(onnx, 'kv260', out_root=tmp / 'auto', target_cycles=10 * T, **kw)\n"
        "from licfpga.overlay.finn_flow import LicfpgaBuildConfig, build\n"
        "c = LicfpgaBuildConfig.from_json((tmp / 'base' / 'kv260' / 'g_a' / 'build_config.json').read_text())\n"
        "c.output_dir, c.verify = str(tmp / 'fromjson'), False\n"
        "fromjson = build(onnx, c)\n"
        "from qonnx.core.modelwrapper import ModelWrapper\n"
        "from qonnx.custom_op.registry import getCustomOp\n"
        "m = ModelWrapper(str(tmp / 'base' / 'kv260' / 'g_a' / 'g_a_final.onnx'))\n"
        "mv = [n for n in m.graph.node if n.op_type == 'MVAU_rtl']\n"
        "edited = mv[-1].name\n"
        "mh, pe = getCustomOp(mv[-1]).get_nodeattr('MH'), conf[edited]['PE']\n"
        "conf[edited]['PE'] = next(d for d in range(pe + 1, mh + 1) if mh % d == 0)\n"
        "(tmp / 'edit.json').write_text(json.dumps(conf))\n"
        "edit = run_flow(onnx, 'kv260', out_root=tmp / 'edit', target_cycles=T, folding_config=tmp / 'edit.json', **kw)\n"
        "errors = {}\n"
        "for key, bad in (('unknown', {'MVAU_rtl_99': {'PE': 2}}), ('divides', {edited: {'PE': mh + 1}})):\n"
        "    (tmp / f'{key}.json').write_text(json.dumps(bad))\n"
        "    try:\n"
        "        run_flow(onnx, 'kv260', out_root=tmp / key, target_cycles=T, folding_config=tmp / f'{key}.json', **kw)\n"
        "        errors[key] = None\n"
        "    except Exception as exc:\n"
        "        errors[key] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps({'base': base, 'back': back, 'auto': auto, 'fromjson': fromjson, 'edit': edit, 'edited': edited, 'errors': errors,"
        " 'mh': mh}, default=str))", timeout=900)
    r = json.loads(stdout.strip().splitlines()[-1])
    r["tmp"], r["onnx"] = tmp, onnx
    return r


def _compute_layers(report: dict) -> dict:
    """Folding per layer except FINN's width converters (inserted after folding, renumbered)."""
    return {n: f for n, f in report["folding"].items() if not n.startswith("StreamingDataWidthConverter")}


@pytest.mark.slow                    # five FINN builds in .venv-finn (~1 min)
def test_build_dataflow_folding_cycles_and_thresholds(folding_builds):
    """run_flow through FINN's build_dataflow_cfg: FINN's SetFolding step + our steps give every
    MVAU SetFolding's (PE, SIMD) after our output-queue guard and every GDN the smallest PE
    meeting the target, with FINN's cycle formulas computed here from the exported convs; FINN's
    own reports (auto_folding_config.json, estimate_layer_cycles.json) agree; the thresholds
    are proven; every verified step equals the golden model."""
    r, tmp = folding_builds["base"], folding_builds["tmp"]
    layers = _conv_layers(folding_builds["onnx"], 64)
    assert len(layers) == 4
    fold, cyc = r["folding"], r["cycles_per_layer"]
    build = tmp / "base" / "kv260" / "g_a"
    auto = json.loads((build / "report" / "auto_folding_config.json").read_text())       # FINN's SetFolding
    refolded, conf = 0, json.loads((build / "folding_config.json").read_text())
    for i, ly in enumerate(layers):
        name, swg = f"MVAU_rtl_{i}", conf[f"ConvolutionInputGenerator_rtl_{i}"]
        pe, simd = _expected_mvau_folding(ly["MW"], ly["MH"], ly["pixels"], FOLD_TARGET)
        got = (fold[name]["PE"], fold[name]["SIMD"])
        if swg["parallel_window"] or simd % swg["SIMD"] == 0 or swg["SIMD"] % simd == 0:
            assert got == (pe, simd), (name, fold[name], pe, simd)
        else:       # WindowToMVAUWholeRatio: a whole window:MVAU SIMD ratio, the target met, no more DSPs
            refolded += 1
            assert fold[name]["SIMD"] % swg["SIMD"] == 0 or swg["SIMD"] % fold[name]["SIMD"] == 0, (name, swg, got)
            assert ly["MH"] // got[0] * (ly["MW"] // got[1]) * ly["pixels"] <= FOLD_TARGET
            assert -(-got[0] // 2) * got[1] <= -(-pe // 2) * simd, (name, got, (pe, simd))   # int8: 2 lanes/DSP
            pe, simd = got
        assert cyc[name] == ly["MH"] // pe * (ly["MW"] // simd) * ly["pixels"]
        if (auto[name]["PE"], auto[name]["SIMD"]) != (pe, simd):        # only our guards change SetFolding's choice
            assert auto[name]["SIMD"] == ly["MW"] or (auto[name]["SIMD"] % swg["SIMD"] and swg["SIMD"] % auto[name]["SIMD"]), \
                (name, auto[name])
        if i < 3:                   # GDN after the first three convs: C*C/PE cycles per pixel
            c, gname = ly["MH"], f"GDN_rtl_{i}"
            gpe = next(d for d in _divisors(c) if ly["pixels"] * c * c // d <= FOLD_TARGET)
            assert fold[gname] == {"PE": gpe, "REPLICAS": 1}
            assert cyc[gname] == ly["pixels"] * c * c // gpe
    assert r["max_cycles"] <= FOLD_TARGET
    assert refolded >= 1            # g_a's first conv: window SIMD 3 (its C_in), SetFolding's MVAU SIMD 25
    assert not r["folding_warnings"], r["folding_warnings"]
    # FINN's estimate step ran on the same final model
    finn_cycles = json.loads((build / "report" / "estimate_layer_cycles.json").read_text())
    assert finn_cycles == cyc
    assert r["step_times_s"]["step_target_fps_parallelization"] >= 0 and "step_lic_codegen" in r["step_times_s"]
    # the written config is FINN's ApplyConfig format and holds the final folding
    for name, f in _compute_layers(r).items():
        assert {k: conf[name][k] for k in f} == f, name
    # thresholds proven, steps equal to the golden model, as before the builder ran them
    proof = r["threshold_proof"]
    assert proof["exact"] and [ly["checked"] for ly in proof["layers"]] == [ly["MH"] * (255 if i < 3 else 254)
                                                                            for i, ly in enumerate(layers)]
    verified = [s for s in r["steps"] if "equal_fraction" in s]
    assert [s["step"] for s in verified] == ["tidy", "qonnx_to_finn", "streamline", "subpixel", "lower", "gdn_to_hw",
                                             "to_hw"]
    assert [s["step"] for s in r["steps"][7:]] == ["specialize", "fold", "stitch_prep"]
    assert next(s for s in verified if s["step"] == "to_hw")["equal_to_golden"] == 1.0


@pytest.mark.slow
def test_folding_config_passed_back_reproduces_the_build(folding_builds):
    """folding_config.json of a build, passed back unchanged to a build for a 10x looser target,
    gives the first build's folding, cycles and resources -- not what that target alone gives.
    Its build_config.json (FINN's DataflowBuildConfig as JSON) rebuilds it too."""
    base, back, auto = folding_builds["base"], folding_builds["back"], folding_builds["auto"]
    assert _compute_layers(auto) != _compute_layers(base)          # the looser target folds differently
    assert _compute_layers(back) == _compute_layers(base)
    assert back["cycles_per_layer"] == base["cycles_per_layer"]
    assert back["resources_total"] == base["resources_total"]
    assert back["folding_config_applied"].endswith("base/kv260/g_a/folding_config.json")
    tmp = folding_builds["tmp"]
    assert (tmp / "back" / "kv260" / "g_a" / "report" / "applied_folding_config.json").is_file()   # FINN's confirmation
    assert json.loads((tmp / "back" / "kv260" / "g_a" / "folding_config.json").read_text()) == \
        json.loads((tmp / "base" / "kv260" / "g_a" / "folding_config.json").read_text())
    fromjson = folding_builds["fromjson"]
    assert _compute_layers(fromjson) == _compute_layers(base) and fromjson["cycles_per_layer"] == base["cycles_per_layer"]
    assert fromjson["threshold_proof"]["exact"] and fromjson["finn_output_dir"] == str(tmp / "fromjson")


@pytest.mark.slow
def test_edited_folding_config_changes_exactly_that_layer(folding_builds):
    """One MVAU's PE raised to the next divisor of MH in the config: that layer's folding and its
    cycles (FINN's MH/PE * MW/SIMD * pixels) change, every other layer keeps its folding and
    cycles (the user's value wins over the automatic folding)."""
    base, edit, name = folding_builds["base"], folding_builds["edit"], folding_builds["edited"]
    layers = _conv_layers(folding_builds["onnx"], 64)
    ly = layers[int(name.rsplit("_", 1)[1])]
    b, e = _compute_layers(base), _compute_layers(edit)
    assert [n for n in b if b[n] != e[n]] == [name]
    assert e[name]["SIMD"] == b[name]["SIMD"] and e[name]["PE"] > b[name]["PE"] and ly["MH"] % e[name]["PE"] == 0
    assert edit["cycles_per_layer"][name] == ly["MH"] // e[name]["PE"] * (ly["MW"] // e[name]["SIMD"]) * ly["pixels"]
    assert edit["cycles_per_layer"][name] < base["cycles_per_layer"][name]
    others = [n for n in b if n != name]
    assert all(edit["cycles_per_layer"][n] == base["cycles_per_layer"][n] for n in others)


@pytest.mark.slow
def test_bad_folding_config_one_line_errors(folding_builds):
    """A config naming a node the graph lacks, or a PE that does not divide the MVAU's output
    channels: FoldingConfigError naming file, node and numbers (checked before FINN asserts
    somewhere inside a layer); the command line prints it as one line and exits 2."""
    err, name, mh = folding_builds["errors"], folding_builds["edited"], folding_builds["mh"]
    tmp = folding_builds["tmp"]
    assert err["unknown"].startswith("FoldingConfigError: ") and err["divides"].startswith("FoldingConfigError: "), err
    assert "'MVAU_rtl_99'" in err["unknown"] and str(tmp / "unknown.json") in err["unknown"]
    assert "MVAU_rtl_0" in err["unknown"]          # lists the layers it does have
    assert f"{name}: PE {mh + 1} does not divide MH = {mh}" in err["divides"]
    r = subprocess.run([str(finn_python()), "-m", "licfpga.overlay.finn_flow", str(folding_builds["onnx"]),
                        "--target-cycles", str(FOLD_TARGET), "--no-codegen", "--out", str(tmp / "cli"),
                        "--folding-config", str(tmp / "divides.json")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m licfpga.overlay.finn_flow: error: folding config "), lines
    assert "does not divide" in lines[0]
