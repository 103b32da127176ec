"""FINN+ compiler flow for the student's transforms (run in ``.venv-finn``; ``make finn-env``).

Input: a QONNX file from :mod:`licfpga.overlay.export_qonnx` (the boundary between the two
environments). The flow is a FINN build: FINN's ``build_dataflow_cfg`` runs
:data:`BUILD_STEPS` with a :class:`LicfpgaBuildConfig` (FINN's ``DataflowBuildConfig`` + our
fields), our steps ``step_lic_*`` (``(model, cfg) -> model``) and FINN's own folding and
estimate steps. After each of our steps up to ``to_hw`` the graph is executed (qonnx
``execute_onnx``) and compared with the exported QONNX graph (and the golden integer model)
on the same input, so a step that changes the numbers fails at once (``verify=True``).

 1. ``reference``   — the exported graph executed: what every later step is compared with.
 2. ``tidy``        — our :class:`RaiseBiasZeroPoint` (qonnx' ExtractBiasFromConv cannot
    reshape Brevitas' scalar bias zero-point), shapes, datatypes.
 3. ``qonnx_to_finn`` — ConvertQONNXtoFINN (activation ``Quant`` -> MultiThreshold).
 4. ``streamline``  — FINN Streamline (scales moved into thresholds).
 5. ``subpixel``    — our :class:`SubPixelDeconv` (decoder transposed convs).
 6. ``lower``       — LowerConvsToMatMul + transpose absorption: NHWC between layers.
 7. ``gdn_to_hw``   — our GDN / DepthToSpace layers, integer IO, NHWC IO.
 8. ``to_hw``       — FINN's Infer* hardware layers, our GoldenThresholds (``golden``).
 9. ``specialize``  — our layers -> ``*_rtl``, FINN SpecializeLayers preferring RTL.
10. fold: our FoldGDN, **FINN's step_target_fps_parallelization** (SetFolding,
    ``report/auto_folding_config.json``), our FoldGDN/guards/whole window-to-MVAU width
    ratios/memory styles, **FINN's
    step_apply_folding_config** (a user's ``folding_config_file`` wins), our check that every
    PE/SIMD divides its channels; the final folding -> ``folding_config.json``.
11. ``stitch_prep`` — InsertDWC, FIFOs (``fifo_depth``), RTL.
12. **FINN's step_generate_estimate_reports** (``report/estimate_*.json``), our report
    ``estimates.json`` (DSP packing, threshold proof), our RTL codegen into ``ip/<node>/``.

    .venv-finn/bin/python -m licfpga.overlay.finn_flow overlay/build/qonnx/g_a.onnx --board kv260 \
        [--folding-config overlay/build/kv260/g_a/folding_config.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import GiveUniqueNodeNames
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

# FINN's build configuration (FINN+ 1.6.1 imports python-mip there, for its Multi-FPGA
# partitioner's types: installed without its 600 MB CBC binaries, see Makefile finn-env)
from finn.builder.build_dataflow_config import DataflowBuildConfig
from finn.util.exception import FINNUserError

from . import finn_d2s  # noqa: F401 - registers DepthToSpace / DepthToSpace_rtl in FINN's domains
from . import finn_gdn  # noqa: F401 - registers GDN / GDN_rtl in FINN's domains
from .boards import list_boards, load_board
from .costmodel import mvu_lanes
from .deconv import subpixel_geometry, subpixel_weights
from .custom_op import DOMAIN as GDN_DOMAIN
from .fifo_sizing import size_fifos  # noqa: F401 - re-exported: the depths SetFIFODepths takes
from .plan import pad, parse_resolution
from .threshold_proof import GoldenThresholds, prove, rtl_threshold_memories

ROOT = Path(__file__).resolve().parent.parent
BOARDS = list_boards()      # vivado/boards/*.json: one description for planner, FINN and Vivado


def finn_board(name: str) -> dict:
    """FINN's view of a board file: FPGA part, clock period (ns), URAM count."""
    b = load_board(name)
    return {"part": b["part"], "clk_ns": 1000.0 / float(b["clock_mhz"]), "uram": int(b["resources"]["URAM"])}


# ---- our transformations -----------------------------------------------------------------
class RaiseBiasZeroPoint(Transformation):
    """Brevitas exports the Int32Bias ``Quant``'s zero-point as a scalar; qonnx'
    ExtractBiasFromConv reshapes it unless it has shape (1,). Give it shape (1,)."""

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type != "Quant":
                continue
            cons = model.find_consumers(n.output[0]) or []
            if cons and all(c.op_type in ("Conv", "ConvTranspose") and len(c.input) > 2
                            and c.input[2] == n.output[0] for c in cons):
                z = model.get_initializer(n.input[2])
                if z is not None and z.shape == ():
                    model.set_initializer(n.input[2], z.reshape(1))
        return model, False


def _mt_is_identity(model, mt, scale: float, lo: int, hi: int) -> bool:
    """Does MultiThreshold ``mt`` map k*scale -> k for every integer k in [lo, hi]?"""
    op = getCustomOp(mt)
    c = model.get_tensor_shape(mt.input[0])[1]
    k = np.arange(lo, hi + 1, dtype=np.float64)
    x = np.broadcast_to((k * np.float32(scale)).astype(np.float32)[None, None, :, None], (1, c, k.size, 1)).copy()
    ctx = {mt.input[0]: x, mt.input[1]: model.get_initializer(mt.input[1])}
    op.execute_node(ctx, model.graph)
    return bool(np.array_equal(ctx[mt.output[0]], np.broadcast_to(k[None, None, :, None], x.shape)))


class InferGDNLayer(Transformation):
    """``Transpose(NHWC->NCHW) -> Mul(in_scale) -> GDN -> MultiThreshold -> Transpose(NCHW->NHWC)``
    -> one FINN ``GDN`` hardware layer on the int8 NHWC stream. The MultiThreshold must be
    the identity on the GDN's int8 output grid (checked), the Mul must be the GDN's input
    scale (checked)."""

    def apply(self, model):
        for gdn in model.graph.node:
            if gdn.op_type != "GDN" or gdn.domain != GDN_DOMAIN:
                continue
            mul = model.find_producer(gdn.input[0])
            tr_in = model.find_producer(mul.input[0]) if mul is not None else None
            mt = model.find_consumer(gdn.output[0])
            tr_out = model.find_consumer(mt.output[0]) if mt is not None else None
            ok = (mul is not None and mul.op_type == "Mul" and tr_in is not None and tr_in.op_type == "Transpose"
                  and mt is not None and mt.op_type == "MultiThreshold" and tr_out is not None
                  and tr_out.op_type == "Transpose")
            if not ok:
                raise RuntimeError(f"{gdn.name}: GDN not in the expected Transpose/Mul/GDN/MT/Transpose chain")
            g = getCustomOp(gdn)
            s_in = model.get_initializer(mul.input[1])
            if s_in is None or s_in.size != 1 or not np.isclose(float(s_in.reshape(-1)[0]), g.get_nodeattr("in_scale"), rtol=1e-6):
                raise RuntimeError(f"{gdn.name}: Mul before GDN is not its input scale")
            if list(helper.get_attribute_value(tr_in.attribute[0])) != [0, 3, 1, 2] or \
               list(helper.get_attribute_value(tr_out.attribute[0])) != [0, 2, 3, 1]:
                raise RuntimeError(f"{gdn.name}: unexpected transposes")
            if not _mt_is_identity(model, mt, g.get_nodeattr("out_scale"), -128, 127):
                raise RuntimeError(f"{gdn.name}: MultiThreshold after GDN is not the int8 identity")
            src = tr_in.input[0]
            if model.get_tensor_datatype(src) not in (DataType["INT8"],):
                raise RuntimeError(f"{gdn.name}: input stream {model.get_tensor_datatype(src)} is not INT8")
            shape = model.get_tensor_shape(src)          # [N, H, W, C]
            attrs = {a.name: helper.get_attribute_value(a) for a in gdn.attribute}
            attrs.pop("data_layout", None)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            hw = helper.make_node("GDN", [src], [tr_out.output[0]], domain="finn.custom_op.fpgadataflow",
                                  backend="fpgadataflow", numInputVectors=list(shape[:-1]), PE=1,
                                  inputDataType="INT8", outputDataType="INT8", name=gdn.name + "_hw", **attrs)
            idx = list(model.graph.node).index(tr_in)
            for n in (tr_in, mul, gdn, mt, tr_out):
                model.graph.node.remove(n)
            model.graph.node.insert(idx, hw)
            model.set_tensor_datatype(tr_out.output[0], DataType["INT8"])
            return model, True
        return model, False


class IntegerInput(Transformation):
    """The first MultiThreshold quantises the float input to integers: pixels x in [0, 1]
    with scale 1/255 (g_a), latents with scale 1 (h_s, g_s: int8, narrow range). Make the
    graph input the integers themselves (FINN datatype UINT8 / INT8) and drop that
    MultiThreshold (checked to be the identity on them)."""

    GRIDS = {"g_a": (1.0 / 255.0, 0, 255, "UINT8"), "h_a": (1.0, 0, 255, "UINT8"),
             "h_s": (1.0, -127, 127, "INT8"), "g_s": (1.0, -127, 127, "INT8")}

    def __init__(self, transform: str = "g_a"):
        super().__init__()
        self.scale, self.lo, self.hi, self.dtype = self.GRIDS[transform]

    def apply(self, model):
        inp = model.graph.input[0].name
        mt = model.find_consumer(inp)
        if mt is None or mt.op_type != "MultiThreshold":
            return model, False
        if not _mt_is_identity(model, mt, self.scale, self.lo, self.hi):
            raise RuntimeError(f"first MultiThreshold is not the {self.dtype} grid with scale {self.scale}")
        for n in model.find_consumers(mt.output[0]):
            for i, t in enumerate(n.input):
                if t == mt.output[0]:
                    n.input[i] = inp
        model.graph.node.remove(mt)
        model.set_tensor_datatype(inp, DataType[self.dtype])
        return model, False


class OutputAsInteger(Transformation):
    """A final scalar ``Mul`` turns the last MultiThreshold's integers into floats (g_s: the
    pixels' 1/255). The accelerator returns the integers: drop the Mul, and record its scale
    in the model's metadata (``output_scale``) so the flow can still compare with the float
    reference."""

    def apply(self, model):
        out = model.graph.output[0].name
        mul = model.find_producer(out)
        if mul is None or mul.op_type != "Mul":
            return model, False
        s = model.get_initializer(mul.input[1])
        prev = model.find_producer(mul.input[0])
        if s is None or s.size != 1 or prev is None:
            return model, False
        dt = model.get_tensor_datatype(mul.input[0])
        if not dt.is_integer():
            return model, False
        prev.output[:] = [out if t == mul.input[0] else t for t in prev.output]
        model.graph.node.remove(mul)
        model.set_tensor_datatype(out, dt)
        model.set_metadata_prop("output_scale", repr(float(s.reshape(-1)[0])))
        return model, False


class SubPixelDeconv(Transformation):
    """``ConvTranspose(k, s, p, output_padding) -> MultiThreshold`` (after streamlining: the
    bias and scales are in the thresholds) becomes ``Conv(k', stride 1, S*S*Co outputs) ->
    MultiThreshold (thresholds tiled S*S times) -> DepthToSpace(S, DCR)``
    (:func:`licfpga.overlay.deconv.subpixel_weights`, order ``"dcr"``). Exact: the integer
    accumulators are the same sums (the sub-pixel kernel only adds zero taps), and a
    per-channel MultiThreshold commutes with depth-to-space once its rows are tiled. FINN
    then lowers the Conv like any other; no multiplies by inserted zeros (unlike FINN's
    InferPixelPaddingDeconv, which also ignores output_padding)."""

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type != "ConvTranspose":
                continue
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            w = model.get_initializer(n.input[1])
            mt = model.find_consumer(n.output[0])
            if len(n.input) > 2 or w is None or mt is None or mt.op_type != "MultiThreshold":
                raise RuntimeError(f"{n.name}: expected ConvTranspose(x, W) -> MultiThreshold after streamlining")
            k = list(a["kernel_shape"])
            st, pads = list(a.get("strides", [1, 1])), list(a.get("pads", [0, 0, 0, 0]))
            op = list(a.get("output_padding", [0, 0]))
            if a.get("group", 1) != 1 or list(a.get("dilations", [1, 1])) != [1, 1] or len(set(k)) != 1 \
                    or len(set(st)) != 1 or len(set(pads)) != 1 or len(set(op)) != 1:
                raise RuntimeError(f"{n.name}: only square, ungrouped, symmetric transposed convs: {a}")
            s, p, opad = st[0], pads[0], op[0]
            g = subpixel_geometry(k[0], s, p, opad)
            if g.crop or g.pad_before != g.pad_after or g.pad_before < 0:
                raise RuntimeError(f"{n.name}: sub-pixel form needs a crop/asymmetric pad ({g}); not supported")
            cw, _ = subpixel_weights(w, s, p, opad, order="dcr")
            co = w.shape[1]
            xin = n.input[0]
            ishape = model.get_tensor_shape(xin)
            sub_shape = [ishape[0], co * s * s, ishape[2], ishape[3]]
            names = []
            for _ in range(3):        # each new name must exist before the next is drawn
                names.append(model.make_new_valueinfo_name())
                model.set_tensor_shape(names[-1], sub_shape)
            conv_out, mt_out, wname = names
            model.set_initializer(wname, cw.astype(np.float32))
            model.set_tensor_datatype(wname, model.get_tensor_datatype(n.input[1]))
            conv = helper.make_node("Conv", [xin, wname], [conv_out], kernel_shape=[g.sub_kernel] * 2,
                                    pads=[g.pad_before] * 4, strides=[1, 1], dilations=[1, 1], group=1,
                                    name=n.name + "_subpixel")
            T = model.get_initializer(mt.input[1])
            if T.shape[0] == co:
                model.set_initializer(mt.input[1], np.tile(T, (s * s, 1)))
            elif T.shape[0] != 1:
                raise RuntimeError(f"{mt.name}: thresholds {T.shape} for {co} channels")
            final = mt.output[0]
            mt.input[0] = conv_out
            mt.output[0] = mt_out
            d2s = helper.make_node("DepthToSpace", [mt_out], [final], blocksize=s, mode="DCR",
                                   name=n.name + "_d2s")
            model.set_tensor_datatype(mt_out, model.get_tensor_datatype(final))
            idx = list(model.graph.node).index(n)
            model.graph.node.remove(n)
            model.graph.node.insert(idx, conv)
            model.graph.node.insert(list(model.graph.node).index(mt) + 1, d2s)
            return model, True
        return model, False


class InferDepthToSpaceLayer(Transformation):
    """``Transpose(NHWC->NCHW) -> DepthToSpace(DCR)`` -> our NHWC ``DepthToSpace`` hardware
    layer (:mod:`licfpga.overlay.finn_d2s`) followed by the Transpose: depth-to-space of
    channels-last data keeps the stream channel-innermost."""

    def apply(self, model):
        for d in model.graph.node:
            if d.op_type != "DepthToSpace" or d.domain not in ("", "ai.onnx"):
                continue
            a = {x.name: helper.get_attribute_value(x) for x in d.attribute}
            mode = a.get("mode", b"DCR")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            tr = model.find_producer(d.input[0])
            if mode != "DCR" or tr is None or tr.op_type != "Transpose" or \
                    list(helper.get_attribute_value(tr.attribute[0])) != [0, 3, 1, 2]:
                raise RuntimeError(f"{d.name}: expected Transpose(0,3,1,2) -> DepthToSpace(DCR)")
            src = tr.input[0]
            n_, h, w, cs = model.get_tensor_shape(src)
            s = int(a["blocksize"])
            dt = model.get_tensor_datatype(src)
            mid = model.make_new_valueinfo_name()
            hw = helper.make_node("DepthToSpace", [src], [mid], domain="finn.custom_op.fpgadataflow",
                                  backend="fpgadataflow", NumChannels=cs // (s * s), BlockSize=s,
                                  numInputVectors=[n_, h, w], SIMD=1, dataType=dt.name, name=d.name + "_hw")
            new_tr = helper.make_node("Transpose", [mid], [d.output[0]], perm=[0, 3, 1, 2], name=d.name + "_tr")
            model.set_tensor_shape(mid, [n_, s * h, s * w, cs // (s * s)])
            model.set_tensor_datatype(mid, dt)
            idx = list(model.graph.node).index(d)
            model.graph.node.remove(d)
            model.graph.node.insert(idx, new_tr)
            model.graph.node.insert(idx, hw)
            if not model.find_consumers(tr.output[0]):
                model.graph.node.remove(tr)
            return model, True
        return model, False


class StripIOTransposes(Transformation):
    """After lowering, the graph starts with Transpose(NCHW->NHWC) and ends with
    Transpose(NHWC->NCHW). The accelerator streams NHWC (pixel-major, how images and the
    latent tiles are stored anyway): make the graph's input and output NHWC and drop both."""

    def apply(self, model):
        g = model.graph
        inp, outp = g.input[0], g.output[0]
        first = model.find_consumer(inp.name)
        if first is not None and first.op_type == "Transpose" and \
                list(helper.get_attribute_value(first.attribute[0])) == [0, 2, 3, 1]:
            dt = model.get_tensor_datatype(inp.name)
            shape = model.get_tensor_shape(first.output[0])
            for n in model.find_consumers(first.output[0]):
                n.input[:] = [inp.name if t == first.output[0] else t for t in n.input]
            g.node.remove(first)
            model.set_tensor_shape(inp.name, shape)
            model.set_tensor_datatype(inp.name, dt)
        last = model.find_producer(outp.name)
        if last is not None and last.op_type == "Transpose" and \
                list(helper.get_attribute_value(last.attribute[0])) == [0, 3, 1, 2]:
            prev = model.find_producer(last.input[0])
            shape = model.get_tensor_shape(last.input[0])
            dt = model.get_tensor_datatype(last.input[0])
            prev.output[:] = [outp.name if t == last.input[0] else t for t in prev.output]
            g.node.remove(last)
            model.set_tensor_shape(outp.name, shape)
            model.set_tensor_datatype(outp.name, dt)
        return model, False


class SpecializeOurLayers(Transformation):
    """FINN's SpecializeLayers picks variants from FINN's own registries; our layers (GDN,
    DepthToSpace) have one backend, RTL: ``<op>`` -> ``<op>_rtl`` in
    ``finn.custom_op.fpgadataflow.rtl``."""

    OPS = ("GDN", "DepthToSpace")

    def apply(self, model):
        for i, n in enumerate(model.graph.node):
            if n.op_type in self.OPS and n.domain == "finn.custom_op.fpgadataflow":
                new = helper.make_node(n.op_type + "_rtl", n.input, n.output, domain="finn.custom_op.fpgadataflow.rtl",
                                       name=n.name)
                new.attribute.extend(a for a in n.attribute if a.name != "preferred_impl_style")
                model.graph.node.remove(n)
                model.graph.node.insert(i, new)
                return model, True
        return model, False


class PreferRTL(Transformation):
    def apply(self, model):
        for n in model.graph.node:
            if n.domain == "finn.custom_op.fpgadataflow":
                getCustomOp(n).set_nodeattr("preferred_impl_style", "rtl")
        return model, False


def _fold_smallest_divisor(op, attr: str, c: int, target: int) -> None:
    """Set ``attr`` to the smallest divisor of ``c`` whose cycles meet ``target`` (else ``c``)."""
    for d in (d for d in range(1, c + 1) if c % d == 0):
        op.set_nodeattr(attr, d)
        if op.get_exp_cycles() <= target:
            return


class FoldGDN(Transformation):
    """Folding of our layers: PE of every GDN, the smallest divisor of C with
    pixels*C*C/PE <= target, then REPLICAS (pixel-parallel instances) if PE = C is not
    enough; SIMD of every DepthToSpace, the smallest divisor of C whose
    cycles meet the target."""

    def __init__(self, target_cycles: int):
        super().__init__()
        self.target = target_cycles

    def apply(self, model):
        for n in model.graph.node:
            if not n.domain.startswith("finn.custom_op.fpgadataflow"):
                continue
            if n.op_type.startswith("GDN"):
                op = getCustomOp(n)
                c = op.get_nodeattr("channels")
                op.set_nodeattr("REPLICAS", 1)
                _fold_smallest_divisor(op, "PE", c, self.target)
                # still too slow at PE = C: whole pixels in parallel (gdn_replicated_axis),
                # at most C replicas (the input stream carries one pixel beat per cycle)
                op.set_nodeattr("REPLICAS", min(c, max(1, -(-op.get_exp_cycles() // self.target))))
            elif n.op_type.startswith("DepthToSpace"):
                op = getCustomOp(n)
                _fold_smallest_divisor(op, "SIMD", op.get_nodeattr("NumChannels"), self.target)
        return model, False


class ShallowWeightsInLUTRAM(Transformation):
    """An MVAU whose weight memory is at most ``max_depth`` words deep (wide and shallow
    after folding, e.g. 90 words of 2 000 bits) gets ``ram_style = "distributed"``: Vivado
    maps such memories to LUTRAM, and FINN's estimate would otherwise count block RAMs
    for the width alone (139 RAMB18 for g_a's second conv at 1080p30). Same rule as the
    planner's cost model (overlay/costmodel.py)."""

    def __init__(self, max_depth: int = 128):
        super().__init__()
        self.max_depth = max_depth

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type in ("MVAU_rtl", "MVAU_hls"):
                op = getCustomOp(n)
                if op.calc_wmem() <= self.max_depth:
                    op.set_nodeattr("ram_style", "distributed")
        return model, False


class LineBufferMemory(Transformation):
    """Memory style of each sliding window's line buffer by its size: FINN leaves them
    ``distributed`` (LUTRAM), which at 1920-pixel rows costs ~30 k LUT for one layer. Above
    ``uram_bits`` -> ``ultra`` (URAM, if the board has any; line buffers need no
    initialisation, so URAM is free of the weight-loading caveat), above ``bram_bits`` ->
    ``block``, else ``distributed``."""

    def __init__(self, has_uram: bool, uram_bits: int = 64 * 1024, bram_bits: int = 4 * 1024):
        super().__init__()
        self.has_uram, self.uram_bits, self.bram_bits = has_uram, uram_bits, bram_bits

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type != "ConvolutionInputGenerator_rtl":
                continue
            op = getCustomOp(n)
            bits = op.get_buffer_depth() * op.get_nodeattr("SIMD") * op.get_input_datatype().bitwidth()
            style = ("ultra" if self.has_uram and bits > self.uram_bits else
                     "block" if bits > self.bram_bits else "distributed")
            op.set_nodeattr("ram_style", style)
        return model, False


class GuardMVUOutputQueue(Transformation):
    """Work around an output-queue overflow of FINN+ 1.6.1's RTL MVU (found in the stitched
    Verilator simulation, tests/hw/test_g_a_rtl.py): ``mvu_vvu_axi.sv`` sizes its output
    queue for ``CORE_PIPELINE_DEPTH = 3 + clog2(SIMD+1) + (SIMD==1)`` results in flight,
    but ``mvu.sv``'s pipeline is ``3 + clog2(SIMD) + (SIMD==1) + 1`` deep -- one stage more
    whenever SIMD is not a power of two. When the MVU emits a result every cycle
    (``SIMD == MW``) and its consumer back-pressures, one result too many arrives and the
    RTL's own assertion fires ("Overflowing output queue"; in hardware a result would be
    lost). With ``MW/SIMD >= 2`` at most every second cycle carries a result and the queue
    cannot fill. So: for such an MVAU take the next smaller SIMD dividing MW and raise PE
    (dividing MH) until the cycles are no worse than before."""

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type != "MVAU_rtl":
                continue
            op = getCustomOp(n)
            mw, mh, simd = op.get_nodeattr("MW"), op.get_nodeattr("MH"), op.get_nodeattr("SIMD")
            if simd != mw or simd <= 1 or simd & (simd - 1) == 0:
                continue
            before = op.get_exp_cycles()
            op.set_nodeattr("SIMD", max(d for d in range(1, mw) if mw % d == 0))
            for pe in (d for d in range(op.get_nodeattr("PE"), mh + 1) if mh % d == 0):
                op.set_nodeattr("PE", pe)
                if op.get_exp_cycles() <= before:
                    break
        return model, False


class WindowToMVAUWholeRatio(Transformation):
    """An MVAU fed by a sliding window whose SIMD neither divides nor is a multiple of the
    window's gets the cheapest (SIMD, PE) that is one of those and still meets the target.

    FINN's SetFolding folds the window and the MVAU each on its own; between them InsertDWC
    then puts a width converter, and finn-rtllib's generic converter (``vpc.sv``, neither width
    a multiple of the other) loses a cycle at every output whose fill overshoots, while FINN
    counts converters 0 cycles. The KV260 1080p30 g_a had window SIMD 15 -> MVAU SIMD 125: its
    120 -> 1000-bit converter delivered a word per 9.15 cycles instead of 8.33 and the whole
    encoder ran 8.4 % over FINN's estimate (results/accel). A whole ratio is a wire or a pure
    (de)serialiser, full rate. Cost: DSPs (finn-rtllib's lane packing, :func:`mvu_rtl_dsps`),
    then FINN's LUT estimate; SIMD = MW is skipped where GuardMVUOutputQueue would undo it."""

    def __init__(self, target_cycles: int, fpga_part: str):
        super().__init__()
        self.target, self.part = target_cycles, fpga_part

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type != "MVAU_rtl":
                continue
            src = model.find_producer(n.input[0])
            if src is None or not src.op_type.startswith("ConvolutionInputGenerator"):
                continue
            swg = getCustomOp(src)
            if swg.get_nodeattr("parallel_window"):
                continue                   # whole-window beats: FINN sizes the MVAU SIMD to them
            s = swg.get_nodeattr("SIMD")
            op = getCustomOp(n)
            mw, mh = op.get_nodeattr("MW"), op.get_nodeattr("MH")
            simd, pe = op.get_nodeattr("SIMD"), op.get_nodeattr("PE")
            if _whole_ratio(simd, s):
                continue
            best = None
            for sd in (d for d in range(1, mw + 1) if mw % d == 0 and _whole_ratio(d, s)):
                if sd == mw and sd > 1 and sd & (sd - 1):
                    continue
                for p in (d for d in range(1, mh + 1) if mh % d == 0):
                    op.set_nodeattr("SIMD", sd)
                    op.set_nodeattr("PE", p)
                    if op.get_exp_cycles() <= self.target:
                        cost = (mvu_rtl_dsps(op), op.lut_estimation(self.part), -sd)
                        if best is None or cost < best[0]:
                            best = (cost, sd, p)
                        break              # larger PE at this SIMD: only dearer
            sd, p = (best[1], best[2]) if best is not None else (simd, pe)   # none: keep FINN's
            op.set_nodeattr("SIMD", sd)
            op.set_nodeattr("PE", p)
        return model, False


def _whole_ratio(a: int, b: int) -> bool:
    return max(a, b) % min(a, b) == 0


class ElementwiseWholeRatio(Transformation):
    """The same rule as :class:`WindowToMVAUWholeRatio` for the cheap layers: a thresholding,
    depth-to-space or padding layer whose input stream and its producer's output stream are
    not whole multiples gets the smallest PE/SIMD (dividing its channels, meeting the target)
    that makes them so, preferring one that also fits its own consumer's input. The KV260
    1080p30 g_s had MVAU PE 8 -> thresholds PE 3 -> depth-to-space SIMD 5: two generic
    converters (168 -> 63, 24 -> 40 bit) that pass at most 0.8 and 0.71 of the beats FINN
    assumes (``vpc.sv``'s capacity counter), 890 528 vs 737 280 cycles/strip (results/accel).
    Layers in graph order (FINN keeps it topological), so a change is seen downstream."""

    ATTR = {"Thresholding_rtl": "PE", "DepthToSpace_rtl": "SIMD", "FMPadding_rtl": "SIMD"}

    def __init__(self, target_cycles: int):
        super().__init__()
        self.target = target_cycles

    def apply(self, model):
        for n in model.graph.node:
            attr = self.ATTR.get(n.op_type)
            src = model.find_producer(n.input[0]) if attr else None
            if src is None or not src.domain.startswith("finn.custom_op.fpgadataflow"):
                continue
            op, pw = getCustomOp(n), getCustomOp(src).get_outstream_width()
            if _whole_ratio(pw, op.get_instream_width()):
                continue
            dst = model.find_consumer(n.output[0])
            dw = getCustomOp(dst).get_instream_width() if dst is not None and dst.domain.startswith(
                "finn.custom_op.fpgadataflow") else None
            keep, ok, fits_next = op.get_nodeattr(attr), [], []
            c = op.get_nodeattr("NumChannels")
            for d in (d for d in range(1, c + 1) if c % d == 0):
                op.set_nodeattr(attr, d)
                if _whole_ratio(pw, op.get_instream_width()) and op.get_exp_cycles() <= self.target:
                    ok.append(d)
                    if dw is None or _whole_ratio(op.get_outstream_width(), dw):
                        fits_next.append(d)
            op.set_nodeattr(attr, (fits_next or ok or [keep])[0])          # none: keep (a converter stays)
        return model, False


# ---- the flow ------------------------------------------------------------------------------
class SetUniformFIFODepths(Transformation):
    """Every hardware layer's in/out FIFO depth = ``depth`` (then FINN's InsertFIFO puts a
    StreamingFIFO_rtl on every edge). FINN sizes FIFOs by simulating the stitched design
    (step_set_fifo_depths: Vivado xsim); this uniform depth is the stand-in without it."""

    def __init__(self, depth: int):
        super().__init__()
        self.depth = depth

    def apply(self, model):
        for n in model.graph.node:
            if n.domain.startswith("finn.custom_op.fpgadataflow"):
                op = getCustomOp(n)
                op.set_nodeattr("inFIFODepths", [self.depth] * len(op.get_nodeattr("inFIFODepths")))
                op.set_nodeattr("outFIFODepths", [self.depth] * len(op.get_nodeattr("outFIFODepths")))
        return model, False


class SetFIFODepths(Transformation):
    """Depth of named FIFOs (``{"StreamingFIFO_rtl_7": 34, ...}``, after InsertFIFO and
    naming), e.g. the characterised depths of :func:`licfpga.overlay.fifo_sizing.size_fifos`;
    other FIFOs keep theirs."""

    def __init__(self, depths: dict):
        super().__init__()
        self.depths = dict(depths)

    def apply(self, model):
        names = {n.name for n in model.graph.node if n.op_type.startswith("StreamingFIFO")}
        unknown = set(self.depths) - names
        if unknown:
            raise RuntimeError(f"no such FIFOs: {sorted(unknown)}")
        for n in model.graph.node:
            if n.name in self.depths:
                getCustomOp(n).set_nodeattr("depth", int(self.depths[n.name]))
        return model, False


def mvu_rtl_dsps(op) -> int:
    """DSP48E2 count of a FINN RTL MVAU from finn-rtllib's mvu.sv lane packing
    (:func:`licfpga.overlay.costmodel.mvu_lanes`, the planner's rule too): one DSP per lane
    group of PEs per SIMD element. FINN+ 1.6.1's own estimate (``ceil(PE/4)*SIMD``) assumes
    4 lanes, true for 4-bit operands only: for our int8 x int8 layers it is 2, so FINN
    undercounts whenever PE > 1."""
    lanes = mvu_lanes(DataType[op.get_nodeattr("weightDataType")].bitwidth(),
                      DataType[op.get_nodeattr("inputDataType")].bitwidth())
    return -(-op.get_nodeattr("PE") // lanes) * op.get_nodeattr("SIMD")


def _execute(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    return execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]


# ---- the flow as FINN build steps (run by FINN's build_dataflow_cfg) ------------------------
# What FINN's step_target_fps_parallelization / step_apply_folding_config write into
# (auto_|applied_)folding_config.json (a local list in FINN+ 1.6.1's steps), plus our GDN's
# pixel-parallel REPLICAS: the attributes of our folding_config.json (FINN's ApplyConfig format).
FOLDING_ATTRS = ["PE", "SIMD", "EmbFold", "SeqFold", "parallel_window", "ram_style", "ram_style_thresholds",
                 "ram_style_mask", "depth", "impl_style", "resType", "mac_resource", "mem_mode",
                 "runtime_writeable_weights", "depth_trigger_uram", "depth_trigger_bram", "REPLICAS"]
# (op_type prefix, folding attribute, the attribute it must divide, what that is)
FOLD_DIVIDES = (("MVAU", "PE", "MH", "output channels"), ("MVAU", "SIMD", "MW", "k*k*C_in"),
                ("ConvolutionInputGenerator", "SIMD", "IFMChannels", "input channels"),
                ("Thresholding", "PE", "NumChannels", "channels"), ("FMPadding", "SIMD", "NumChannels", "channels"),
                ("GDN", "PE", "channels", "channels"), ("DepthToSpace", "SIMD", "NumChannels", "output channels"))


class FoldingConfigError(FINNUserError):
    """A user's folding_config.json does not fit the graph (one line, names the file and node)."""


@dataclass
class LicfpgaBuildConfig(DataflowBuildConfig):
    """FINN's ``DataflowBuildConfig`` plus what our steps need. FINN's own fields keep their
    meaning (``output_dir``, ``fpga_part``, ``synth_clk_period_ns``, ``folding_config_file``,
    ``mvau_wwidth_max``, ``steps``, ...); ``build_config.json`` in the build folder is this
    object (``LicfpgaBuildConfig.from_json``)."""

    transform: str = "g_a"                   # g_a | h_a | h_s | g_s (integer IO grid, golden transform)
    board_name: str = "kv260"                # vivado/boards/<board_name>.json
    # FINN types target_fps as int; ours may be fractional (e.g. the fps of an explicit cycle target)
    target_fps: Optional[float] = None
    # the folding target; wins over target_fps (a frame resolution scales it, see run_flow)
    target_cycles_per_frame: Optional[int] = None
    resolution: Optional[list[int]] = None   # (W, H) the folding is for, or None: the export's size
    golden: Optional[str] = None             # integer artifact: golden thresholds, proof, comparison
    verify: bool = True                      # execute and compare after every step up to to_hw
    seed: int = 0                            # of the verification input
    codegen: bool = True                     # our RTL codegen step
    fifo_depth: int = 0                      # FINN StreamingFIFO of this depth on every edge (0: none)
    fifo_depths: Optional[dict[str, int]] = None   # then named FIFOs' depths

    def _resolve_cycles_per_frame(self):
        # FINN's step_target_fps_parallelization asks this for SetFolding's target
        if self.target_cycles_per_frame is not None:
            return int(self.target_cycles_per_frame)
        return super()._resolve_cycles_per_frame()


def _state(cfg) -> dict:
    """Per-build data our steps share (references, report): not a config field."""
    return cfg.__dict__.setdefault("_licfpga", {})


def _apply(model, transforms):
    for t in transforms:
        model = model.transform(t)
    return model


def _step(label: str | None = None, verify: bool = False):
    """Make ``fn(model, cfg) -> model`` a build step. With ``label``: nodes renamed (FINN's
    ``GiveUniqueNodeNames``), an entry in ``report["steps"]`` (with ``verify``: the graph executed
    and compared with the exported QONNX and the golden model) and the model saved as
    ``<transform>_NN_<label>.onnx``, as run_flow did before FINN's builder ran it. A failure is
    kept for run_flow to re-raise (FINN's builder logs it and returns -1)."""
    def deco(fn):
        @functools.wraps(fn)
        def step(model, cfg):
            try:
                model = fn(model, cfg)
                if label is not None:
                    model = model.transform(GiveUniqueNodeNames())
                    _record(model, cfg, label, verify and cfg.verify)
            except BaseException as exc:
                _state(cfg).setdefault("error", exc)
                raise
            return model
        return step
    return deco


def _record(model, cfg, label: str, verify: bool) -> None:
    st = _state(cfg)
    if "report" not in st:
        raise RuntimeError("licfpga's build steps start with step_lic_reference (start_step is not supported)")
    report, name = st["report"], cfg.transform
    entry = {"step": label, "nodes": [n.op_type for n in model.graph.node]}
    if verify:                  # not after specialize/fold/stitch_prep: RTL layers execute only in rtlsim (xsim)
        ishape, pixels, x_float, ref = st["ishape"], st["pixels"], st["x_float"], st["ref"]
        inp_dt = model.get_tensor_datatype(model.graph.input[0].name)
        x = pixels.astype(np.float32) if inp_dt == DataType["UINT8"] and name == "g_a" else x_float
        if list(model.get_tensor_shape(model.graph.input[0].name)) != list(ishape):
            x = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))      # NHWC input
        o = _execute(model, x)
        if o.shape != ref.shape:           # NHWC output: compare in NCHW
            o = np.transpose(o, (0, 3, 1, 2))
        # OutputAsInteger dropped the output scale (g_s: 1/255): compare in float units
        o = o.astype(np.float32) * np.float32(float(model.get_metadata_prop("output_scale") or 1.0))
        # after streamlining the output is the integer y; the reference is y*1 (scale 1)
        entry["equal_fraction"] = float((o == ref).mean())
        entry["max_abs_diff"] = float(np.abs(o - ref).max())
        entry["equal_to_previous_step"] = None if st.get("prev") is None else float((o == st["prev"]).mean())
        if st.get("gold") is not None:
            entry["equal_to_golden"] = float((np.rint(o / st["gold_scale"]) == st["gold"]).mean())
        st["prev"] = o
    report["steps"].append(entry)
    model.save(str(Path(cfg.output_dir) / f"{name}_{len(report['steps']):02d}_{label}.onnx"))


def _frame_ratio(name: str, ishape, resolution) -> float:
    """Pixels of the export relative to a full frame (the input of h_a/h_s/g_s is the latent
    grid, 16x/64x smaller than the image, but the ratio is the same for every layer)."""
    if resolution is None:
        return 1.0
    img_px = {"g_a": 1, "h_a": 16 * 16, "h_s": 64 * 64, "g_s": 16 * 16}[name] * ishape[2] * ishape[3]
    return img_px / (pad(int(resolution[0])) * pad(int(resolution[1])))


@_step()
def step_lic_reference(model, cfg):
    """The exported QONNX graph executed on a seeded input (and the golden IntegerModel): what
    every later step is compared with. Writes build_config.json. The model is unchanged."""
    st = _state(cfg)
    st.clear()
    name, board = cfg.transform, finn_board(cfg.board_name)
    ishape = model.get_tensor_shape(model.graph.input[0].name)
    rng = np.random.default_rng(cfg.seed)
    pixels = rng.integers(0, 256, size=ishape)
    # inputs: g_a pixels in [0, 1]; h_a |y| (taken before the graph, export_qonnx); h_s z, g_s y
    x_float = (pixels / 255.0).astype(np.float32) if name == "g_a" else rng.integers(-20, 21, size=ishape).astype(np.float32)
    if name == "h_a":
        x_float = np.abs(x_float)
    st.update(ishape=ishape, pixels=pixels, x_float=x_float, ref=_execute(model, x_float), gold=None, im=None,
              frame_ratio=_frame_ratio(name, ishape, cfg.resolution))
    if cfg.golden is not None:
        from licfpga.model.golden.network import IntegerModel
        im = IntegerModel.load(cfg.golden)
        x_int = pixels[0] if name == "g_a" else x_float[0]
        st.update(im=im, gold=im.run_transform(name, x_int.astype(np.int64))[None].astype(np.float32),  # NCHW
                  gold_scale=float(im.schema["transforms"][name][-1]["out_scale"]))
    out = Path(cfg.output_dir)
    st["report"] = {"transform": name, "board": cfg.board_name, "fpgapart": board["part"], "clk_ns": board["clk_ns"],
                    "target_fps": cfg.target_fps, "target_cycles_per_frame": cfg._resolve_cycles_per_frame(),
                    "input_shape": ishape, "steps": [], "finn_output_dir": str(out),
                    "build_config": str(out / "build_config.json"), "folding_config": str(out / "folding_config.json"),
                    "folding_config_applied": None if cfg.folding_config_file is None else str(cfg.folding_config_file)}
    (out / "build_config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    return model


@_step("tidy", verify=True)
def step_lic_tidy(model, cfg):
    return _apply(model, [RaiseBiasZeroPoint(), InferShapes(), InferDataTypes()])


@_step("qonnx_to_finn", verify=True)
def step_lic_qonnx_to_finn(model, cfg):
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    return _apply(model, [ConvertQONNXtoFINN()])


@_step("streamline", verify=True)
def step_lic_streamline(model, cfg):
    from finn.transformation.streamline import Streamline
    return _apply(model, [Streamline()])


@_step("subpixel", verify=True)
def step_lic_subpixel(model, cfg):
    from finn.transformation.streamline import Streamline
    return _apply(model, [SubPixelDeconv(), InferShapes(), InferDataTypes(), Streamline()])


@_step("lower", verify=True)
def step_lic_lower(model, cfg):
    from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes, AbsorbTransposeIntoMultiThreshold
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
    return _apply(model, [LowerConvsToMatMul(), AbsorbTransposeIntoMultiThreshold(), AbsorbConsecutiveTransposes(),
                          InferShapes(), InferDataTypes()])


@_step("gdn_to_hw", verify=True)
def step_lic_gdn_to_hw(model, cfg):
    from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes
    return _apply(model, [InferDepthToSpaceLayer(), AbsorbConsecutiveTransposes(), InferGDNLayer(),
                          IntegerInput(cfg.transform), OutputAsInteger(), StripIOTransposes(), InferShapes(),
                          InferDataTypes()])


@_step("to_hw", verify=True)
def step_lic_to_hw(model, cfg):
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import \
        InferQuantizedMatrixVectorActivation
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
    from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    im = _state(cfg)["im"]
    # golden: FINN's float-derived thresholds are replaced by the integer artifact's
    # (threshold_proof.GoldenThresholds) before FINN rounds/clips them and sizes widths
    return _apply(model, [InferThresholdingLayer(), InferConvInpGen(), InferQuantizedMatrixVectorActivation()]
                  + ([GoldenThresholds(im.schema, im.arrays, cfg.transform)] if im is not None else [])
                  + [RoundAndClipThresholds(), MinimizeWeightBitWidth(), MinimizeAccumulatorWidth(),
                     InferShapes(), InferDataTypes()])


@_step("specialize")
def step_lic_specialize(model, cfg):
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    return _apply(model, [SpecializeOurLayers(), PreferRTL(), SpecializeLayers(cfg.fpga_part), GiveUniqueNodeNames()])


@_step()
def step_lic_fold_gdn(model, cfg):
    """FoldGDN before FINN's SetFolding (step_target_fps_parallelization): SetFolding does not
    know GDN_rtl, and its two-pass relaxation reruns the whole folding with the slowest layer's
    cycles as the new target -- with the GDNs still at PE=1 that was the GDN's unfolded
    cycles, which left every MVAU at PE=1 and slower than the target (16.3 fps at 256x256)."""
    return _apply(model, [FoldGDN(cfg._resolve_cycles_per_frame())])


@_step()
def step_lic_fold(model, cfg):
    """After SetFolding: our GDN/DepthToSpace folding, the MVU output-queue guard, memory
    styles; then check that a user's folding config (applied next by FINN's
    step_apply_folding_config, so it wins) names only nodes and attributes of this graph."""
    model = _apply(model, [FoldGDN(cfg._resolve_cycles_per_frame()), GuardMVUOutputQueue(),
                           WindowToMVAUWholeRatio(cfg._resolve_cycles_per_frame(), cfg.fpga_part),
                           ElementwiseWholeRatio(cfg._resolve_cycles_per_frame()), ShallowWeightsInLUTRAM(),
                           LineBufferMemory(finn_board(cfg.board_name)["uram"] > 0)])
    if cfg.folding_config_file is not None:
        check_folding_config_names(model, read_folding_config(cfg.folding_config_file), cfg.folding_config_file)
    return model


@_step("fold")
def step_lic_folding_config(model, cfg):
    """After FINN's ApplyConfig: every PE/SIMD divides its channels (checked here, one line,
    before FINN asserts deep inside a layer); the folding written as folding_config.json."""
    from finn.util.config import extract_model_config_to_json
    check_folding_divides(model, cfg.folding_config_file)
    warn = []
    for n in model.graph.node:     # a user's SIMD may re-open the MVU output-queue bug (GuardMVUOutputQueue)
        if n.op_type == "MVAU_rtl":
            op = getCustomOp(n)
            simd, mw = op.get_nodeattr("SIMD"), op.get_nodeattr("MW")
            if simd == mw and simd > 1 and simd & (simd - 1):
                warn.append(f"{n.name}: SIMD = MW = {mw} (not a power of two): finn-plus 1.6.1's MVU output "
                            "queue can overflow under back-pressure (see GuardMVUOutputQueue)")
    for n in model.graph.node:     # a user's PE/SIMD may re-open a slow converter (*WholeRatio above)
        src = model.find_producer(n.input[0]) if n.domain.startswith("finn.custom_op.fpgadataflow") else None
        if src is not None and src.domain.startswith("finn.custom_op.fpgadataflow"):
            a, b = getCustomOp(src).get_outstream_width(), getCustomOp(n).get_instream_width()
            if not _whole_ratio(a, b):
                warn.append(f"{src.name} -> {n.name}: streams of {a} and {b} bits (neither a multiple of the other): "
                            "finn-rtllib's generic width converter between them runs slower than FINN's estimate "
                            "(see WindowToMVAUWholeRatio)")
    _state(cfg)["report"]["folding_warnings"] = warn
    extract_model_config_to_json(model, Path(cfg.output_dir) / "folding_config.json", FOLDING_ATTRS)
    return model


@_step("stitch_prep")
def step_lic_stitch_prep(model, cfg):
    """What FINN's build does before stitching: width converters where a producer's stream beat
    is not its consumer's (e.g. sliding window SIMD != MVAU SIMD), FIFOs, RTL."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    d = cfg.fifo_depth
    return _apply(model, [InsertDWC()]
                  + ([SetUniformFIFODepths(d), InsertFIFO(create_shallow_fifos=False)] if d > 2 else [])
                  + [PreferRTL(), SpecializeLayers(cfg.fpga_part), GiveUniqueNodeNames(), InferShapes()]
                  + ([SetFIFODepths(cfg.fifo_depths)] if cfg.fifo_depths else []))


@_step()
def step_lic_estimates(model, cfg):
    """Our report: FINN's per-layer cycles and resources (as FINN's step_generate_estimate_reports
    writes them into report/), with finn-rtllib's DSP packing for the RTL MVU, stream ports,
    and the threshold proof against the golden model."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    st = _state(cfg)
    report, im = st["report"], st["im"]
    clk_hz = 1e9 / cfg.synth_clk_period_ns
    cycles = exp_cycles_per_layer(model)
    res = {n: {k: v for k, v in r.items()} for n, r in res_estimation(model, cfg.fpga_part).items()}
    for n in model.graph.node:          # DSPs of the RTL MVU from its real lane packing
        if n.op_type == "MVAU_rtl" and n.name in res:
            res[n.name]["DSP_finn_estimate"] = res[n.name].get("DSP")
            res[n.name]["DSP"] = mvu_rtl_dsps(getCustomOp(n))
    folding = {}
    for n in model.graph.node:
        if n.domain.startswith("finn.custom_op.fpgadataflow"):
            op = getCustomOp(n)
            folding[n.name] = {k: op.get_nodeattr(k) for k in ("PE", "SIMD", "REPLICAS") if k in op.get_nodeattr_types()}
    total = {k: sum(float(r.get(k, 0)) for r in res.values()) for k in ("LUT", "DSP", "BRAM_18K", "URAM")}
    # the accelerator's frame as the host sees it (NHWC integers after StripIOTransposes)
    gi, go = model.graph.input[0].name, model.graph.output[0].name
    report["io"] = {"input": {"shape": list(model.get_tensor_shape(gi)), "datatype": model.get_tensor_datatype(gi).name},
                    "output": {"shape": list(model.get_tensor_shape(go)), "datatype": model.get_tensor_datatype(go).name}}
    if im is not None:
        report["golden"] = {"name": Path(str(cfg.golden)).name, "digest": im.digest().hex()}
    hw = [n for n in model.graph.node if n.domain.startswith("finn.custom_op.fpgadataflow")]
    if hw:        # the accelerator's stream ports (what the DMA and axis_frame_tlast need)
        first, last = getCustomOp(hw[0]), getCustomOp(hw[-1])
        report["input_stream"] = {"width_bits": int(first.get_instream_width()),
                                  "beats_per_frame": int(np.prod(first.get_folded_input_shape()[:-1]))}
        report["output_stream"] = {"width_bits": int(last.get_outstream_width()),
                                   "beats_per_frame": int(np.prod(last.get_folded_output_shape()[:-1]))}
    ratio = st["frame_ratio"]
    report.update({"cycles_per_layer": cycles, "max_cycles": max(cycles.values()) if cycles else 0,
                   "est_fps": clk_hz / max(cycles.values()) if cycles else None,
                   "resolution": list(cfg.resolution) if cfg.resolution else None,
                   "est_fps_at_resolution": clk_hz / max(cycles.values()) * ratio if cycles and cfg.resolution else None,
                   "resources_per_layer": res, "resources_total": total, "folding": folding,
                   "non_hw_nodes": [n.op_type for n in model.graph.node
                                    if not n.domain.startswith("finn.custom_op.fpgadataflow")]})
    if im is not None:
        report["threshold_proof"] = prove(model, im.schema, im.arrays, cfg.transform)
        if not report["threshold_proof"]["exact"]:
            raise RuntimeError("thresholds differ from the golden requantisation: "
                               + json.dumps(report["threshold_proof"], default=str)[:2000])
    return model


@_step()
def step_lic_codegen(model, cfg):
    """RTL of every layer into <output_dir>/ip/<node>/ (our step: FINN's step_hw_codegen would
    also prepare HLS layers for Vitis); the RTL threshold memories checked against the proof."""
    st = _state(cfg)
    if cfg.codegen:
        report = st["report"]
        report["codegen"] = codegen_rtl(model, {"part": cfg.fpga_part, "clk_ns": cfg.synth_clk_period_ns},
                                        Path(cfg.output_dir))
        if st["im"] is not None:
            # the RTL's threshold memory images hold exactly the proven thresholds
            mem = rtl_threshold_memories(model)
            report["threshold_proof"]["rtl_memories_equal"] = mem
            if not all(mem.values()):
                raise RuntimeError(f"RTL threshold memories differ from the proven thresholds: {mem}")
    out = Path(cfg.output_dir)
    model.save(str(out / f"{cfg.transform}_final.onnx"))
    (out / "estimates.json").write_text(json.dumps(st["report"], indent=1, default=str))
    return model


# FINN's own steps by their names (build_dataflow_steps), ours by import path: build_config.json
# stays JSON, and FINN's resolve_build_steps finds both.
_OURS = "licfpga.overlay.finn_flow."
BUILD_STEPS = [_OURS + s for s in ("step_lic_reference", "step_lic_tidy", "step_lic_qonnx_to_finn", "step_lic_streamline",
                                   "step_lic_subpixel", "step_lic_lower", "step_lic_gdn_to_hw", "step_lic_to_hw",
                                   "step_lic_specialize", "step_lic_fold_gdn")] \
    + ["step_target_fps_parallelization",       # FINN: SetFolding -> report/auto_folding_config.json
       _OURS + "step_lic_fold",
       "step_apply_folding_config",             # FINN: ApplyConfig(folding_config_file): the user's file wins
       _OURS + "step_lic_folding_config", _OURS + "step_lic_stitch_prep",
       "step_generate_estimate_reports",        # FINN: report/estimate_layer_*.json, estimate_network_performance.json
       _OURS + "step_lic_estimates", _OURS + "step_lic_codegen"]


def read_folding_config(path) -> dict:
    """A folding config in FINN's ApplyConfig format ({node: {attr: value}}, optional "Defaults")."""
    p = Path(path)
    if not p.is_file():
        raise FoldingConfigError(f"no such folding config: {p}")
    try:
        conf = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise FoldingConfigError(f"folding config {p}: not JSON ({exc})") from None
    if not isinstance(conf, dict) or not all(isinstance(v, dict) for v in conf.values()):
        raise FoldingConfigError(f"folding config {p}: expected FINN's folding config format {{node name: {{attribute: value}}}}")
    return conf


def check_folding_config_names(model, conf: dict, path) -> None:
    """Every node the file names is in the graph and has the attributes it sets; PE/SIMD/REPLICAS
    are positive integers."""
    nodes = {n.name: n for n in model.graph.node}
    for name, attrs in conf.items():
        if name == "Defaults":
            continue
        if name not in nodes:
            hw = [n for n in nodes if nodes[n].domain.startswith("finn.custom_op.fpgadataflow")]
            raise FoldingConfigError(f"folding config {path}: no node {name!r} in this graph (its layers: {', '.join(hw)})")
        op = getCustomOp(nodes[name])
        for k, v in attrs.items():
            if k not in op.get_nodeattr_types():
                raise FoldingConfigError(f"folding config {path}: {name} ({nodes[name].op_type}) has no attribute {k!r}")
            if k in ("PE", "SIMD", "REPLICAS") and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise FoldingConfigError(f"folding config {path}: {name}: {k} = {v!r} is not a positive integer")


def check_folding_divides(model, path=None) -> None:
    """FINN's folding rules (PE | output channels, SIMD | inputs, ...) for every layer."""
    where = f"folding config {path}: " if path is not None else ""
    for n in model.graph.node:
        if not n.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        op = getCustomOp(n)
        for prefix, attr, dim, what in FOLD_DIVIDES:
            if n.op_type.startswith(prefix) and attr in op.get_nodeattr_types():
                v, c = op.get_nodeattr(attr), op.get_nodeattr(dim)
                if c % v:
                    raise FoldingConfigError(f"{where}{n.name}: {attr} {v} does not divide {dim} = {c} ({what})")


def _finn_builder():
    """FINN+ 1.6.1's build_dataflow module, importable on a machine without Vivado. Two
    patches, both only when XILINX_VIVADO is unset, neither touches a step we run:
    (1) build_dataflow_steps does ``from finn.xsi import SimEngine`` (Vivado's xsim binding,
    used there only in a type annotation); finn.xsi resolves that name lazily and raises
    "XILINX_VIVADO environment variable not set": we bind a stand-in that refuses to run.
    (2) exit_buildflow records ``Path(get_vivado_root()).name`` in report/metadata_builder.json
    after the last step, and get_vivado_root raises without Vivado: "none" is recorded."""
    no_vivado = not os.environ.get("XILINX_VIVADO")
    if no_vivado:
        import finn.xsi
        if "SimEngine" not in vars(finn.xsi):
            class SimEngine:   # noqa: D401 - placeholder
                def __init__(self, *a, **k):
                    raise RuntimeError("Vivado xsim is not available here (licfpga.overlay.finn_flow)")
            finn.xsi.SimEngine = SimEngine
    import finn.builder.build_dataflow as bd
    if no_vivado:
        bd.get_vivado_root = lambda: "none"
    return bd


def build_config(qonnx_path, board_name: str = "kv260", out_dir=None, **fields) -> LicfpgaBuildConfig:
    """The build of one exported transform for a board, as FINN's DataflowBuildConfig: our steps
    and FINN's folding/estimate steps, estimates only (no Vivado/Vitis output is requested)."""
    from finn.builder.build_dataflow_config import DataflowOutputType, LogLevel
    board = finn_board(board_name)
    return LicfpgaBuildConfig(
        output_dir=str(out_dir), steps=list(BUILD_STEPS), transform=Path(qonnx_path).stem, board_name=board_name,
        fpga_part=board["part"], synth_clk_period_ns=board["clk_ns"], mvau_wwidth_max=1024,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        # run_flow re-raises a failed step's error itself; FINN's console copy would print it twice
        # (everything stays in <output_dir>/build_dataflow.log)
        console_log_level=LogLevel.NONE, **fields)


def build(qonnx_path, cfg: LicfpgaBuildConfig) -> dict:
    """FINN's ``build_dataflow_cfg(qonnx_path, cfg)``; returns our report (estimates.json) with
    FINN's step times added. FINN's builder redirects sys.stdout/stderr to its log for good:
    they are restored afterwards."""
    bd = _finn_builder()
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    saved = sys.stdout, sys.stderr
    try:
        rc = bd.build_dataflow_cfg(str(qonnx_path), cfg)
    finally:
        sys.stdout, sys.stderr = saved
    st = _state(cfg)
    if "error" in st:
        raise st["error"]
    if rc != 0 or "report" not in st:
        raise RuntimeError(f"FINN build failed ({rc}): see {Path(cfg.output_dir) / 'build_dataflow.log'}")
    report = st["report"]
    times = cfg.get_report_directory() / "time_per_step.json"
    if times.is_file():
        report["step_times_s"] = json.loads(times.read_text())
    (Path(cfg.output_dir) / "estimates.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def run_flow(qonnx_path, board_name: str = "kv260", fps: float = 30.0, out_root=None, verify: bool = True,
             codegen: bool = True, seed: int = 0, target_cycles: int | None = None, fifo_depth: int = 0,
             golden=None, fifo_depths: dict | None = None, resolution: tuple[int, int] | None = None,
             folding_config=None) -> dict:
    """Compile one exported transform through FINN's ``build_dataflow_cfg`` with our steps
    (:data:`BUILD_STEPS`, :func:`build_config`); returns the report (also written as
    ``estimates.json``; FINN's own reports are in ``<build>/report/``, the final folding in
    ``<build>/folding_config.json``).

    ``golden``: path of the integer artifact (``model/checkpoints/int-student-0.013``) the
    QONNX was exported from. Then FINN's thresholds are replaced by the artifact's
    (:class:`~licfpga.overlay.threshold_proof.GoldenThresholds`; FINN's float-derived ones
    differ by one at a few hundred of ~35 k thresholds of g_a), every verified step is also
    compared with the golden :class:`IntegerModel` (``equal_to_golden``), and the final
    model's thresholds are proven equal to the golden requantisation for every accumulator
    value (``report["threshold_proof"]``, :func:`~licfpga.overlay.threshold_proof.prove`).
    ``fifo_depth``: FINN FIFO of that depth on every edge; ``fifo_depths``: then override
    named FIFOs' depths (:class:`SetFIFODepths`, e.g. from :func:`size_fifos`).
    ``resolution`` ``(W, H)``: fold for ``fps`` at that frame size (padded to a multiple of
    64) instead of the export's: every layer's cycles scale with its pixel count, so the
    target cycles of the small export are ``clock/fps * export_pixels/frame_pixels``; the
    report's ``est_fps_at_resolution`` scales back the same way.
    ``folding_config``: a JSON file in FINN's ApplyConfig format (e.g. an edited
    ``folding_config.json`` of an earlier build), applied by FINN's step_apply_folding_config
    after our automatic folding, so its values win; a node the graph lacks, an attribute a
    node lacks or a PE/SIMD that does not divide its channels is a :class:`FoldingConfigError`."""
    board = finn_board(board_name)
    name = Path(qonnx_path).stem
    out = Path(out_root or ROOT / "overlay" / "build") / board_name / name
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINN_BUILD_DIR", str(out / "tmp"))
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)
    clk_hz = 1e9 / board["clk_ns"]
    if target_cycles is None:
        target_cycles = int(clk_hz / fps)
    elif resolution is None:                # an explicit cycles/frame target wins over fps
        fps = clk_hz / target_cycles
    if resolution is not None:
        m = ModelWrapper(str(qonnx_path))
        ishape = m.get_tensor_shape(m.graph.input[0].name)
        target_cycles = max(1, int(clk_hz / fps * _frame_ratio(name, ishape, resolution)))
    if folding_config is not None:
        folding_config = Path(folding_config).resolve()
        read_folding_config(folding_config)          # a missing / non-JSON file fails before the build
    cfg = build_config(qonnx_path, board_name, out, target_fps=fps, target_cycles_per_frame=target_cycles,
                       resolution=list(resolution) if resolution else None,
                       golden=None if golden is None else str(golden), verify=verify, seed=seed, codegen=codegen,
                       fifo_depth=fifo_depth, fifo_depths=dict(fifo_depths) if fifo_depths else None,
                       folding_config_file=folding_config)
    return build(qonnx_path, cfg)


def codegen_rtl(model: ModelWrapper, board: dict, out: Path) -> dict:
    """Generate HDL of every RTL layer into ``out/ip/<node>/`` (no Vivado needed).
    HLS layers are listed, not generated (their sources need finn-hlslib + Vitis HLS)."""
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node

    done, failed, hls = [], {}, []
    for n in model.graph.node:
        if is_rtl_node(n):
            op = getCustomOp(n)
            d = out / "ip" / n.name
            d.mkdir(parents=True, exist_ok=True)
            op.set_nodeattr("code_gen_dir_ipgen", str(d))
            try:
                op.generate_hdl(model, board["part"], board["clk_ns"])
                done.append(n.name)
            except Exception as exc:  # noqa: BLE001 - record and go on: a report, not a build
                failed[n.name] = f"{type(exc).__name__}: {exc}"
        elif is_hls_node(n):
            hls.append(n.name)
    return {"rtl_generated": done, "rtl_failed": failed, "hls_not_generated": hls}


SIDES = {"encoder (g_a + h_a + h_s)": ("g_a", "h_a", "h_s"), "decoder (h_s + g_s)": ("h_s", "g_s")}


def side_totals(rows: list[dict]) -> str:
    """Encoder / decoder per board: the slowest transform's fps (they run concurrently, one
    dataflow each) and the summed FINN resource estimates as a share of the board
    (vivado/boards/<board>.json). Markdown table."""
    out = ["| board | side | est. fps | LUT | DSP | BRAM36 | URAM |", "|---|---|---|---|---|---|---|"]
    for board in dict.fromkeys(r["board"] for r in rows):
        have = {r["transform"]: r for r in rows if r["board"] == board}
        cap = load_board(board)["resources"]
        for side, parts in SIDES.items():
            if not all(t in have for t in parts):
                continue
            fps = [have[t]["est_fps_at_resolution"] or have[t]["est_fps"] for t in parts]
            tot = {k: sum(float(have[t]["resources_total"].get(k, 0)) for t in parts) for k in ("LUT", "DSP", "BRAM_18K", "URAM")}
            used = {"LUT": tot["LUT"], "DSP": tot["DSP"], "BRAM36": tot["BRAM_18K"] / 2, "URAM": tot["URAM"]}
            # a resource the board lacks (ZCU102: no URAM) is 0 % when unused, inf % if used
            use = {k: v / cap[k] if cap[k] else (0.0 if v == 0 else float("inf")) for k, v in used.items()}
            out.append(f"| {board} | {side} | {min(fps):.1f} | {tot['LUT']:,.0f} ({use['LUT']:.0%}) | "
                       f"{tot['DSP']:.0f} ({use['DSP']:.0%}) | {tot['BRAM_18K'] / 2:.0f} ({use['BRAM36']:.0%}) | "
                       f"{tot['URAM']:.0f} ({use['URAM']:.0%}) |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m licfpga.overlay.finn_flow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("qonnx", nargs="+", help="exported transform(s) (export_qonnx), e.g. overlay/build/qonnx/g_a.onnx")
    p.add_argument("--board", choices=BOARDS, nargs="*", default=["kv260"])
    p.add_argument("--fps", type=float, default=30.0,
                   help="target frames/s (of the export's image size, or of --resolution)")
    p.add_argument("--resolution", type=parse_resolution, default=None,
                   help="WxH: fold for --fps at this frame size, e.g. 1920x1080")
    p.add_argument("--target-cycles", type=int, default=None,
                   help="folding target in cycles/frame (instead of --fps)")
    p.add_argument("--fifo-depth", type=int, default=0, help="StreamingFIFO depth on every edge (0: none)")
    p.add_argument("--out", default=None, help="build root (default overlay/build)")
    p.add_argument("--fifo-depths", default=None,
                   help="JSON {fifo node: depth} overriding --fifo-depth per FIFO (e.g. a characterisation's sizes)")
    p.add_argument("--no-codegen", action="store_true")
    p.add_argument("--golden", default=None,
                   help="integer artifact (e.g. model/checkpoints/int-student-0.013): golden thresholds + proof")
    p.add_argument("--folding-config", default=None, metavar="FILE",
                   help="FINN folding config (ApplyConfig JSON, e.g. an edited <build>/folding_config.json) "
                        "applied after the automatic folding: its PE/SIMD/ram_style/... win")
    a = p.parse_args(argv)
    for path in a.qonnx:
        if not Path(path).is_file():
            p.error(f"no such QONNX file: {path} (export it: python -m licfpga.overlay.export_qonnx)")
    rows = []
    for path in a.qonnx:
        for b in a.board:
            try:
                r = run_flow(path, b, a.fps, a.out, codegen=not a.no_codegen, target_cycles=a.target_cycles,
                             fifo_depth=a.fifo_depth, golden=a.golden, resolution=a.resolution,
                             fifo_depths=json.loads(Path(a.fifo_depths).read_text()) if a.fifo_depths else None,
                             folding_config=a.folding_config)
            except FoldingConfigError as exc:
                p.exit(2, f"{p.prog}: error: {exc}\n")
            rows.append(r)
            print(json.dumps({k: r[k] for k in ("transform", "board", "max_cycles", "est_fps", "est_fps_at_resolution",
                                                 "resources_total")}))
            for s in r["steps"]:
                print(f"  {s['step']:14s} equal={s.get('equal_fraction', '-')} golden={s.get('equal_to_golden', '-')}")
            for n, c in r["cycles_per_layer"].items():
                print(f"  {n:40s} {c:>9d} cycles  {r['folding'].get(n, {})}")
            for w in r.get("folding_warnings", []):        # a user's folding config we would not have chosen
                print(f"warning: {w}", file=sys.stderr)
    # one summary table (FINN estimates, not synthesis) beside the per-transform reports
    lines = ["| transform | board | layers | max cycles/frame | est. fps (export) | est. fps at resolution | LUT | DSP | BRAM18 | thresholds proven |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["resources_total"]
        fr = r["est_fps_at_resolution"]
        proof = r.get("threshold_proof", {}).get("exact")
        lines.append(f"| {r['transform']} | {r['board']} | {len(r['cycles_per_layer'])} | {r['max_cycles']:,} | "
                     f"{r['est_fps']:.1f} | {'-' if fr is None else f'{fr:.1f}'} | {t['LUT']:,.0f} | {t['DSP']:.0f} | "
                     f"{t['BRAM_18K']:.0f} | {'-' if proof is None else proof} |")
    print("\n".join(lines + ["", side_totals(rows)]))
    root = Path(a.out or ROOT / "overlay" / "build")
    for board in dict.fromkeys(r["board"] for r in rows):       # one summary per board
        mine = [r for r in rows if r["board"] == board]
        (root / board / "finn_summary.md").write_text(
            f"FINN+ flow on {board} (FINN estimates with licfpga's corrections, not synthesis): target "
            f"{a.fps} fps" + (" at {}x{}".format(*a.resolution) if a.resolution else " at the export size") + "\n\n"
            + "\n".join(lines[:2] + [ln for ln in lines[2:] if f"| {board} |" in ln]) + "\n\n"
            + side_totals(mine) + "\n")


if __name__ == "__main__":
    # one module object: FINN's builder imports our steps as licfpga.overlay.finn_flow
    from licfpga.overlay.finn_flow import main as _main
    _main()
