"""QONNX export of the QAT student (overlay/export_qonnx.py, overlay/custom_op.py).

The exported transforms must execute in qonnx' ``execute_onnx`` (our GDN node through our
Python implementation) and give the QAT model's eval output. Both sides compute the
convolutions in float32 on exactly the same integer-grid values, so the only possible
difference is the summation order of the float32 accumulation (PyTorch's conv vs
onnxruntime's), which can move a pre-activation lying within float32 rounding error of a
.5 boundary by one quantisation step. Per layer (each layer fed the same input) that is
rare: every activation tensor >= 99.9 % equal, the rest 1 LSB (measured 1 flip in 7680 on
g_a's third conv, none elsewhere). A flip then propagates through the following layers
(one flipped input touches k*k*C outputs of the next conv, a few of them cross a boundary
too), so the end-to-end bound is looser: >= 99 % of y equal, rest within 1 LSB (measured
99.87 % on the test model; h_a, h_s, g_s 100 %).
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

from licfpga.model.golden import gdn as golden_gdn
from licfpga.overlay import export_qonnx as E
from licfpga.overlay.custom_op import DOMAIN, GDN, params_from_attrs

SAMPLE = Path(__file__).resolve().parent.parent / "host" / "samples" / "kodim23.png"


def lively_model():
    """Random-weight student whose latents span the int8 range (an untrained model's y
    would round to almost all zeros on its scale-1 grid): the last conv of g_a and h_a are
    scaled up before calibration. Deterministic."""
    from licfpga.model.qat import calibrate, quantize_student
    from licfpga.model.zoo import ScaleHyperprior

    torch.manual_seed(0)
    s = ScaleHyperprior(30, 48)
    with torch.no_grad():
        s.g_a[-1].weight.mul_(300.0)
        s.h_a[-1].weight.mul_(10.0)
    q = quantize_student(s)
    calibrate(q, [torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))])
    return q.eval()


def image(size=128):
    from PIL import Image
    a = np.asarray(Image.open(SAMPLE).convert("RGB"))[:size, :size]
    return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    q = lively_model()
    out = tmp_path_factory.mktemp("qonnx")
    paths = E.export_all(q, out, size=128)
    return q, paths


def run(path, x):
    m = ModelWrapper(str(path))
    return execute_onnx(m, {m.graph.input[0].name: np.asarray(x, dtype=np.float32)})[m.graph.output[0].name]


def check_close(out, ref, scale, min_equal=0.999):
    a, b = np.round(out / scale), np.round(ref / scale)
    assert np.allclose(a * scale, out, atol=1e-4 * scale), "output off the integer grid"
    eq = float((a == b).mean())
    assert eq >= min_equal, f"only {eq:.4%} equal"
    assert np.abs(a - b).max() <= 1
    return eq


def gdn_nodes(path):
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == "GDN"]


def test_g_a_matches_qat(exported):
    q, paths = exported
    x = image()
    y = run(paths["g_a"], x)
    ref = E.reference_output(q, "g_a", x)
    assert y.shape == ref.shape == (1, 48, 8, 8)
    assert np.abs(ref).max() >= 20, "test model latents too small to be meaningful"
    check_close(y, ref, 1.0, min_equal=0.99)        # y is on the integer grid (scale 1)


def test_g_a_layerwise(exported):
    """Every quantiser / GDN output of the QONNX graph vs the QAT layer fed the same input."""
    q, paths = exported
    m = ModelWrapper(str(paths["g_a"]))
    x = image()
    ctx = execute_onnx(m, {m.graph.input[0].name: x.numpy()}, return_full_exec_context=True)
    # activation Quant nodes in graph order: the graph input's, and those after Conv / GDN
    acts = [n for n in m.graph.node if n.op_type == "Quant" and (
        n.input[0] == m.graph.input[0].name
        or (m.find_producer(n.input[0]) is not None and m.find_producer(n.input[0]).op_type in ("Conv", "GDN")))]
    seq = E.transform_module(q, "g_a")
    quants = [mod for mod in seq if not isinstance(mod, torch.nn.Conv2d)]
    assert len(acts) == len(quants) == 8
    it = iter(acts)
    h = x
    with torch.no_grad():
        for mod in seq:
            h = mod(h)
            if isinstance(mod, torch.nn.Conv2d):
                continue
            onnx_out = ctx[next(it).output[0]]
            check_close(onnx_out, E._value(h).numpy(), float(h.scale))
            requant = mod.out_quant if hasattr(mod, "out_quant") else mod
            h = requant(torch.from_numpy(onnx_out))        # continue from the QONNX value


def test_gdn_nodes_survive_cleanup(exported):
    _, paths = exported
    want = {"g_a": (3, 0), "h_a": (0, 0), "h_s": (0, 0), "g_s": (3, 1)}
    for t, (count, inverse) in want.items():
        nodes = gdn_nodes(paths[t])
        assert len(nodes) == count, t
        for n in nodes:
            assert n.domain == DOMAIN
            op = getCustomOp(n)
            assert isinstance(op, GDN)
            assert op.get_nodeattr("inverse") == inverse
            assert op.verify_node() == ["GDN parameters consistent"]
            p = params_from_attrs(op)
            assert p.gamma.shape == (30, 30) and p.variant == "gdn"
    # the cleaned model still has a single input/output and shapes for every tensor
    m = ModelWrapper(str(paths["g_a"]))
    assert m.get_tensor_shape(m.graph.output[0].name) == [1, 48, 8, 8]
    assert {n.op_type for n in m.graph.node} == {"Quant", "Conv", "GDN"}
    assert {n.op_type for n in ModelWrapper(str(paths["g_s"])).graph.node} == {"Quant", "ConvTranspose", "GDN"}


def test_gdn_node_is_gdn_int(exported):
    """The custom op alone: float in -> gdn_int on round(x/in_scale) -> * out_scale."""
    _, paths = exported
    node = gdn_nodes(paths["g_a"])[0]
    op = getCustomOp(node)
    p = params_from_attrs(op)
    rng = np.random.default_rng(0)
    qin = rng.integers(-128, 128, size=(2, 30, 3, 5))
    ctx = {node.input[0]: (qin * np.float32(p.in_scale)).astype(np.float32)}
    op.execute_node(ctx, None)
    want = np.stack([golden_gdn.gdn_int(qin[n].astype(np.int8), p) for n in range(2)])
    np.testing.assert_array_equal(np.round(ctx[node.output[0]] / np.float32(p.out_scale)), want)
    # NHWC layout (after FINN's channels-last conversion) gives the same numbers
    op.set_nodeattr("data_layout", "NHWC")
    ctx = {node.input[0]: np.moveaxis(qin * np.float32(p.in_scale), 1, -1).astype(np.float32)}
    op.execute_node(ctx, None)
    np.testing.assert_array_equal(np.round(np.moveaxis(ctx[node.output[0]], -1, 1) / np.float32(p.out_scale)), want)


def test_h_a_h_s_g_s_match_qat(exported):
    q, paths = exported
    y = E.reference_output(q, "g_a", image())
    z = run(paths["h_a"], np.abs(y))
    z_ref = E.reference_output(q, "h_a", torch.from_numpy(np.abs(y)))
    check_close(z, z_ref, 1.0)
    s = run(paths["h_s"], z_ref)
    s_ref = E.reference_output(q, "h_s", torch.from_numpy(z_ref))
    assert s.shape == (1, 48, 8, 8)
    check_close(s, s_ref, float(np.unique(s_ref)[1] - np.unique(s_ref)[0]) if len(np.unique(s_ref)) > 1 else 1.0)
    x_hat = run(paths["g_s"], y)
    x_ref = E.reference_output(q, "g_s", torch.from_numpy(y))
    assert x_hat.shape == (1, 3, 128, 128)
    assert len(np.unique(x_ref)) > 10
    check_close(x_hat, x_ref, 1.0 / 255.0)


def test_matches_integer_golden_model(exported, tmp_path):
    """QONNX g_a == the integer artifact's NumPy model (model/golden/network.py)."""
    from licfpga.model.export_int import export_integer
    from licfpga.model.golden.network import IntegerModel

    q, paths = exported
    art = IntegerModel.load(export_integer(q, tmp_path / "int"))
    x = image()
    pix = np.round(x.numpy()[0] * 255).astype(np.int64)
    y_gold = art.run_transform("g_a", pix)
    y = run(paths["g_a"], x)[0]
    eq = float((y == y_gold).mean())
    assert eq >= 0.99 and np.abs(y - y_gold).max() <= 1, eq
