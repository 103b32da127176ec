"""Proof that FINN's threshold requantisation equals the golden integer requantisation for
*every* accumulator value (run in ``.venv-finn``).

FINN turns each requantisation ``Mul(scale) -> Quant`` into a MultiThreshold with
thresholds derived from float32 scales (Streamline, RoundAndClipThresholds); the golden
model (:mod:`licfpga.model.golden.network`) requantises with integers:
``R(acc) = clamp((acc*mult + 2**(shift-1)) >> shift, lo, hi)`` per output channel. This
module checks, for each conv layer of a transform, the FINN model's (MVAU, Thresholding)
pair against the golden layer:

1. **Weights.** The MVAU weight matrix ``W[MW, MH]`` equals the golden ``w[Co, Ci, k, k]``
   in FINN's im2col order ``MW = (ky, kx, ci)`` (exactly, as integers). So the MVAU output
   is ``acc_finn = sum(x*w) = acc_gold - b[c]``: the golden bias was absorbed into the
   thresholds by streamlining.
2. **Execution cross-check** (optional, ``x`` given): the hardware-layer graph (before
   specialisation: it still executes in Python) is executed with its full context and
   every MVAU output is compared with the golden ``conv2d_acc(input) - b`` -- confirming
   the mapping of 1. on real data, including FINN's im2col/padding.
3. **Domain.** ``acc_gold`` lies in ``D_c = [b + sum_j min(w*lo_in, w*hi_in), b + sum_j
   max(...)]`` for any input in the layer's input range (worst case per weight).
4. **Thresholds.** FINN's Thresholding computes ``y = ActVal + #{k : T[c,k] <= acc_finn}``
   (``thresholding.sv``: ``y = sum(T_i <= x)`` + BIAS; MultiThreshold is the same). With
   ``t_k = T[c,k] + b[c]`` (golden accumulator units), ``R`` monotone (``mult > 0``) and
   ``#thresholds = hi - lo``, ``ActVal = lo``, FINN equals ``R`` on all of ``D_c`` iff for
   every k = 1..hi-lo: ``R(t_k - 1) < lo + k <= R(t_k)`` when ``t_k`` lies inside ``D_c``;
   ``R(min D_c) >= lo + k`` when ``t_k <= min D_c``; ``R(max D_c) < lo + k`` when
   ``t_k > max D_c``. Then ``y = lo + sum_k [R(a) >= lo+k] = R(a)`` for every ``a`` in
   ``D_c``: bit-exact for every possible input, not just tested ones.
5. **Widths.** The MVAU's accumulator and output datatypes hold all of ``D_c - b`` and
   every threshold fits the Thresholding's threshold datatype (nothing wraps in the RTL).

:class:`GoldenThresholds` is the fix should a threshold disagree (float-derived rounding
at an exact tie): it overwrites every Thresholding node's thresholds with ``t*_k - b``
where ``t*_k = min{a : R(a) >= lo+k}`` computed from the artifact's mult/shift.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from . import finn_gdn  # noqa: F401 - registers GDN / GDN_rtl

THRESH_OPS = ("Thresholding", "Thresholding_rtl", "Thresholding_hls")
MVAU_OPS = ("MVAU", "MVAU_rtl", "MVAU_hls")


def _requant(a, mult, shift, lo, hi):
    """Golden requantisation of integer(s) ``a`` (Python ints: exact at any width)."""
    a = np.asarray(a, dtype=object)
    r = (a * int(mult) + (1 << (int(shift) - 1))) >> int(shift)
    return np.clip(r, lo, hi).astype(np.int64)


def golden_thresholds(mult: int, shift: int, lo: int, hi: int, b: int) -> np.ndarray:
    """FINN thresholds (MVAU-output units, bias removed) of the golden requantisation:
    ``t*_k - b`` with ``t*_k = min{a : (a*mult + 2**(shift-1)) >> shift >= lo + k}``,
    k = 1..hi-lo. (a*m + h) >> s >= v  <=>  a*m + h >= v*2**s  <=>  a >= ceil((v*2**s - h)/m)."""
    h = 1 << (int(shift) - 1)
    out = []
    for k in range(1, hi - lo + 1):
        v = lo + k
        num = v * (1 << int(shift)) - h
        out.append(-((-num) // int(mult)) - int(b))           # ceil division, Python ints
    return np.array(out, dtype=np.int64)


def conv_layers(schema: dict, transform: str) -> list[dict]:
    return [ly for ly in schema["transforms"][transform] if ly["op"] in ("conv", "deconv")]


def as_conv(ly: dict, arrays) -> dict:
    """The golden layer as the convolution FINN runs: a conv as is; a transposed conv as its
    sub-pixel conv (:func:`licfpga.overlay.deconv.subpixel_weights`, order DCR, as the flow's
    SubPixelDeconv builds it) with bias, mult and shift tiled over the S*S phases.
    Returns int64 ``weight [Co, Ci, k, k]``, ``bias``, ``mult``, ``shift`` and ``stride``,
    ``padding``."""
    w, b, mult, shift = (np.asarray(arrays[ly[k]]).astype(np.int64) for k in ("weight", "bias", "mult", "shift"))
    if ly["op"] == "conv":
        return {"weight": w, "bias": b, "mult": mult, "shift": shift, "stride": ly["stride"], "padding": ly["padding"]}
    from .deconv import subpixel_weights
    s = ly["stride"]
    cw, pads = subpixel_weights(w, s, ly["padding"], ly["output_padding"], order="dcr")
    rep = s * s
    return {"weight": cw, "bias": np.tile(b, rep), "mult": np.tile(mult, rep), "shift": np.tile(shift, rep),
            "stride": 1, "padding": pads[0]}


def _pairs(model: ModelWrapper) -> list[tuple]:
    """(MVAU node, Thresholding node) in graph order; the Thresholding may follow through
    width converters / FIFOs (stream plumbing, no arithmetic)."""
    pairs = []
    for n in model.graph.node:
        if n.op_type not in MVAU_OPS:
            continue
        op = getCustomOp(n)
        if op.get_nodeattr("noActivation") == 0:
            pairs.append((n, n))                       # thresholds inside the MVAU
            continue
        c = model.find_consumer(n.output[0])
        while c is not None and c.op_type.startswith(("StreamingDataWidthConverter", "StreamingFIFO")):
            c = model.find_consumer(c.output[0])
        if c is None or c.op_type not in THRESH_OPS:
            raise RuntimeError(f"{n.name}: no Thresholding after it (found {c and c.op_type})")
        pairs.append((n, c))
    return pairs


def _finn_weight_as_conv(wm: np.ndarray, co: int, ci: int, k: int) -> np.ndarray:
    """FINN MVAU weights [MW=(ky,kx,ci), MH=co] -> golden layout [co, ci, ky, kx]."""
    return np.transpose(wm.reshape(k, k, ci, co), (3, 2, 0, 1))


def prove(model: ModelWrapper, schema: dict, arrays, transform: str = "g_a") -> dict:
    """Check every (MVAU, Thresholding) pair of ``model`` against the golden conv layers.
    Returns a report; ``report["exact"]`` is the proof's verdict."""
    layers = conv_layers(schema, transform)
    pairs = _pairs(model)
    if len(pairs) != len(layers):
        raise RuntimeError(f"{len(pairs)} MVAU/Thresholding pairs vs {len(layers)} golden conv layers")
    rep = {"transform": transform, "layers": [], "exact": True}
    for (mv, th), ly in zip(pairs, layers):
        cv = as_conv(ly, arrays)
        w, b, mult, shift = cv["weight"], cv["bias"], cv["mult"], cv["shift"]
        lo, hi = ly["out_range"]
        ilo, ihi = ly["in_range"]
        co, ci, k, _ = w.shape
        wm = model.get_initializer(mv.input[1])
        wf = _finn_weight_as_conv(np.asarray(wm), co, ci, k)
        weights_equal = bool(np.array_equal(wf.astype(np.int64), w))
        top = getCustomOp(th)
        T = np.asarray(model.get_initializer(th.input[1] if th is not mv else mv.input[2]), dtype=np.float64)
        if T.shape[0] == 1 and co > 1:
            T = np.broadcast_to(T, (co, T.shape[1]))
        actval = int(top.get_nodeattr("ActVal"))
        entry = {"golden": ly["name"], "mvau": mv.name, "thresholding": th.name, "weights_equal": weights_equal,
                 "mult_positive": bool((mult > 0).all()), "n_thresholds": int(T.shape[1]),
                 "n_expected": hi - lo, "act_val": actval, "out_range": [lo, hi],
                 "thresholds_integer": bool(np.array_equal(T, np.round(T))), "checked": 0, "mismatches": []}
        ok = weights_equal and entry["mult_positive"] and T.shape[1] == hi - lo and actval == lo \
            and entry["thresholds_integer"] and T.shape[0] == co
        if ok:
            wr = w.reshape(co, -1)
            dmin = b + np.minimum(wr * ilo, wr * ihi).sum(1)
            dmax = b + np.maximum(wr * ilo, wr * ihi).sum(1)
            entry["acc_domain"] = [int(dmin.min()), int(dmax.max())]
            # the hardware's widths hold every value: MVAU accumulator/output type covers
            # D_c - b, the thresholds fit the Thresholding's threshold type
            from qonnx.core.datatype import DataType
            mop = getCustomOp(mv)
            adt = DataType[mop.get_nodeattr("accDataType")]
            odt = DataType[mop.get_nodeattr("outputDataType")]
            tdt = DataType[top.get_nodeattr("weightDataType")] if th is not mv else adt
            entry["acc_dtype"], entry["threshold_dtype"] = adt.name, tdt.name
            entry["widths_ok"] = bool(all(d.min() <= int((dmin - b).min()) and int((dmax - b).max()) <= d.max()
                                          for d in (adt, odt)) and tdt.allowed(T).all())
            ok = ok and entry["widths_ok"]
            ideal = np.stack([golden_thresholds(mult[c], shift[c], lo, hi, b[c]) for c in range(co)])
            for c in range(co):
                m_, s_ = int(mult[c]), int(shift[c])
                for kk in range(1, hi - lo + 1):
                    t = int(T[c, kk - 1]) + int(b[c])
                    v = lo + kk
                    if dmin[c] < t <= dmax[c]:
                        good = _requant(t - 1, m_, s_, lo, hi) < v <= _requant(t, m_, s_, lo, hi)
                    elif t <= dmin[c]:
                        good = _requant(int(dmin[c]), m_, s_, lo, hi) >= v
                    else:
                        good = _requant(int(dmax[c]), m_, s_, lo, hi) < v
                    entry["checked"] += 1
                    if not good:
                        entry["mismatches"].append({"channel": c, "k": kk, "finn_t": int(T[c, kk - 1]),
                                                    "golden_t": int(ideal[c, kk - 1])})
            # thresholds reachable in D_c must equal the ideal ones exactly (a stricter,
            # redundant form of the check above: both are integers)
            inside = (ideal + b[:, None] > dmin[:, None]) & (ideal + b[:, None] <= dmax[:, None])
            entry["equal_to_golden_thresholds_in_domain"] = bool(np.array_equal(T[inside], ideal[inside]))
            entry["thresholds_in_domain"] = int(inside.sum())
        entry["exact"] = bool(ok and not entry["mismatches"] and entry.get("widths_ok", False))
        rep["exact"] &= entry["exact"]
        rep["layers"].append(entry)
    return rep


def cross_check(model_hw: ModelWrapper, im, transform: str, x_nhwc: np.ndarray) -> list[dict]:
    """Execute the hardware-layer graph (before specialisation) on ``x_nhwc``; per conv layer
    take FINN's own layer input (the input of the layer's FMPadding), compute the golden
    accumulator on it and compare it minus the bias with the MVAU output (mapping 1. on data),
    and count the Thresholding outputs that differ from the golden requantisation of it."""
    from qonnx.core.onnx_exec import execute_onnx

    from licfpga.model.golden.network import conv2d_acc, requantize

    ctx = execute_onnx(model_hw, {model_hw.graph.input[0].name: x_nhwc.astype(np.float32)},
                       return_full_exec_context=True)
    pads = [n for n in model_hw.graph.node if n.op_type.startswith("FMPadding")]
    pairs = _pairs(model_hw)
    layers = conv_layers(im.schema, transform)
    if not (len(pads) == len(pairs) == len(layers)):
        raise RuntimeError("expected one FMPadding, MVAU and Thresholding per conv layer")
    out = []
    for pad, (mv, th), ly in zip(pads, pairs, layers):
        xin = np.transpose(ctx[pad.input[0]][0], (2, 0, 1)).astype(np.int64)
        cv = as_conv(ly, im.arrays)
        b = cv["bias"]
        acc = conv2d_acc(xin, cv["weight"], np.zeros_like(b), cv["stride"], cv["padding"])
        finn = np.transpose(ctx[mv.output[0]][0], (2, 0, 1))
        req = requantize(acc + b[:, None, None], cv["mult"], cv["shift"], *ly["out_range"])
        y = np.transpose(ctx[th.output[0]][0], (2, 0, 1))
        out.append({"mvau": mv.name, "golden": ly["name"], "values": int(acc.size),
                    "mvau_out_equals_golden_acc_minus_bias": bool(np.array_equal(finn, acc)),
                    "thresholding_out_differs_from_golden": int((y != req).sum())})
    return out


def rtl_threshold_memories(model: ModelWrapper) -> dict:
    """Do the memory images the RTL reads (``<node>_threshs_<pe>_<stage>.dat`` of every
    Thresholding_rtl, after code generation) hold exactly the model's thresholds, i.e. the
    ones :func:`prove` proved? thresholding.sv searches a binary tree: stage s holds, per
    channel, the 2**s thresholds of in-order index (2j+1)*2**(B-1-s) - 1 (B output bits;
    the threshold list padded with 0 to 2**B - 1 as FINN pads it), channels in order, one
    file per PE (channels pe, pe+PE, ...), values in two's complement hex of the threshold
    datatype's width. Returns {node: bool}."""
    from qonnx.core.datatype import DataType

    out = {}
    for n in model.graph.node:
        if n.op_type != "Thresholding_rtl":
            continue
        op = getCustomOp(n)
        T = np.asarray(model.get_initializer(n.input[1])).astype(np.int64)
        bits = DataType[op.get_nodeattr("weightDataType")].bitwidth()
        ob = DataType[op.get_nodeattr("outputDataType")].bitwidth()
        pe = op.get_nodeattr("PE")
        if T.shape[0] == 1:
            T = np.broadcast_to(T, (op.get_nodeattr("NumChannels"), T.shape[1]))
        full = np.zeros((T.shape[0], 2**ob - 1), dtype=np.int64)
        full[:, :T.shape[1]] = T
        d = Path(op.get_nodeattr("code_gen_dir_ipgen"))
        ok = True
        for p in range(pe):
            for st in range(ob):
                f = d / f"{n.name}_threshs_{p}_{st}.dat"
                if not f.is_file():
                    ok = False
                    continue
                v = np.array([int(t, 16) for t in f.read_text().split()], dtype=np.int64)
                v = np.where(v >= 2**(bits - 1), v - 2**bits, v)
                idx = [(2 * j + 1) * 2**(ob - 1 - st) - 1 for j in range(2**st)]
                ok &= bool(np.array_equal(v, full[p::pe][:, idx].reshape(-1)))
        out[n.name] = bool(ok)
    return out


class GoldenThresholds(Transformation):
    """Overwrite each Thresholding node's thresholds (paired with the golden conv layers of
    ``transform`` in graph order) with those computed from the artifact's integer
    mult/shift (:func:`golden_thresholds`). Apply right after FINN's InferThresholdingLayer /
    InferQuantizedMatrixVectorActivation, before RoundAndClipThresholds."""

    def __init__(self, schema: dict, arrays, transform: str = "g_a"):
        super().__init__()
        self.schema, self.arrays, self.transform = schema, arrays, transform

    def apply(self, model):
        for (mv, th), ly in zip(_pairs(model), conv_layers(self.schema, self.transform)):
            lo, hi = ly["out_range"]
            cv = as_conv(ly, self.arrays)
            b, mult, shift = cv["bias"], cv["mult"], cv["shift"]
            T = np.stack([golden_thresholds(mult[c], shift[c], lo, hi, b[c]) for c in range(len(b))])
            if np.abs(T).max() >= 2**24:
                raise RuntimeError(f"{th.name}: golden thresholds not exact in float32")
            old = model.get_initializer(th.input[1])
            if old is None or old.shape != T.shape:
                raise RuntimeError(f"{th.name}: thresholds {None if old is None else old.shape} vs golden {T.shape}")
            # FINN's RoundAndClipThresholds (next) clips them to the input range as usual
            model.set_initializer(th.input[1], T.astype(np.float32))
        return model, False


def main(argv=None):
    import argparse

    from licfpga.model.golden.network import IntegerModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="FINN model with hardware layers (e.g. <t>_final.onnx)")
    p.add_argument("artifact", help="integer artifact (model/checkpoints/int-student-0.013)")
    p.add_argument("--transform", default="g_a")
    p.add_argument("--hw-model", help="model before specialisation (<t>_07_to_hw.onnx) for the execution cross-check")
    a = p.parse_args(argv)
    im = IntegerModel.load(a.artifact)
    rep = prove(ModelWrapper(a.model), im.schema, im.arrays, a.transform)
    if a.hw_model:
        m = ModelWrapper(a.hw_model)
        shp = m.get_tensor_shape(m.graph.input[0].name)
        x = np.random.default_rng(0).integers(0, 256, size=shp)
        rep["cross_check"] = cross_check(m, im, a.transform, x)
    print(json.dumps(rep, default=str))


if __name__ == "__main__":
    main()
