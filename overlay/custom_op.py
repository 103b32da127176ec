"""QONNX custom op ``GDN`` (domain ``licfpga.overlay.custom_op``): our fixed-point GDN / IGDN.

qonnx resolves a node's ``domain`` by importing the module of that name and looking up a
:class:`qonnx.custom_op.base.CustomOp` subclass named like the ``op_type``
(``qonnx.custom_op.registry``), so a node ``GDN`` in domain ``licfpga.overlay.custom_op``
is executed by the class :class:`GDN` below, in ``qonnx.core.onnx_exec.execute_onnx`` and
in every FINN+ transformation that calls ``getCustomOp``.

Semantics (float tensors in and out, like every QONNX op between ``Quant`` nodes)::

    q     = clip(round(x / in_scale), -128, 127)            int8 input of the kernel
    y_int = licfpga.model.golden.gdn.gdn_int(q, params)     bit-exact hls/gdn/gdn_axis.sv
    y     = y_int * out_scale

The integer parameters travel as node attributes: ``gamma`` (C*C ints, row = output
channel), ``beta`` (C ints), ``shift`` (C ints, the s8 shift bases), plus ``channels``,
``inverse``, ``variant`` ("gdn" | "simplified"), ``gamma_bits``, ``acc_bits``,
``in_scale``, ``out_scale`` and ``data_layout`` ("NCHW" as exported, "NHWC" after FINN's
channels-last conversion). NumPy + qonnx only: importable without torch.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from licfpga.model.golden import gdn as golden_gdn

DOMAIN = "licfpga.overlay.custom_op"

__all__ = ["GDN", "DOMAIN", "gdn_attrs", "params_from_attrs"]


def gdn_attrs(p: golden_gdn.GDNIntParams, data_layout: str = "NCHW") -> dict:
    """Node attributes of a ``GDN`` node carrying the integer parameters ``p``."""
    return {
        "channels": int(p.channels), "inverse": int(p.inverse), "variant": p.variant,
        "gamma": [int(v) for v in p.gamma.reshape(-1)], "beta": [int(v) for v in p.beta],
        "shift": [int(v) for v in p.shift], "gamma_bits": int(p.gamma_bits), "acc_bits": int(p.acc_bits),
        "in_scale": float(p.in_scale), "out_scale": float(p.out_scale), "data_layout": data_layout,
    }


# The kernel's integer parameters as node attributes: read by ``params_from_attrs``, shared
# by this QONNX op and the FINN hardware layer (overlay/finn_gdn.py).
GDN_PARAM_ATTRS = {
    "channels": ("i", True, 0),
    "inverse": ("i", True, 0, {0, 1}),
    "variant": ("s", False, "gdn", {"gdn", "simplified"}),
    "gamma": ("ints", True, []),
    "beta": ("ints", True, []),
    "shift": ("ints", True, []),
    "gamma_bits": ("i", False, 16),
    "acc_bits": ("i", False, 32),
}


def params_from_attrs(op: CustomOp) -> golden_gdn.GDNIntParams:
    """The :class:`GDNIntParams` of a ``GDN`` custom-op instance (or of a FINN GDN layer)."""
    c = int(op.get_nodeattr("channels"))
    variant = op.get_nodeattr("variant")
    p = golden_gdn.GDNIntParams(
        inverse=bool(op.get_nodeattr("inverse")), variant=variant,
        gamma=np.asarray(op.get_nodeattr("gamma"), dtype=np.int64).reshape(c, c),
        beta=np.asarray(op.get_nodeattr("beta"), dtype=np.int64),
        shift=np.asarray(op.get_nodeattr("shift"), dtype=np.int64),
        lut=golden_gdn.core_lut(variant),
        in_scale=float(op.get_nodeattr("in_scale")), out_scale=float(op.get_nodeattr("out_scale")),
        gamma_bits=int(op.get_nodeattr("gamma_bits")), acc_bits=int(op.get_nodeattr("acc_bits")))
    golden_gdn.check_ranges(p)
    return p


def gdn_int_layout(q: np.ndarray, p: golden_gdn.GDNIntParams, layout: str) -> np.ndarray:
    """``gdn_int`` on an int8 batch in NCHW or NHWC (any number of spatial dims)."""
    q = np.asarray(q)
    if layout == "NHWC":
        q = np.moveaxis(q, -1, 1)
    out = np.stack([golden_gdn.gdn_int(q[n].astype(np.int8), p) for n in range(q.shape[0])])
    if layout == "NHWC":
        out = np.moveaxis(out, 1, -1)
    return out


class GDN(CustomOp):
    """Fixed-point GDN / IGDN (see the module docstring)."""

    def get_nodeattr_types(self):
        return {
            **GDN_PARAM_ATTRS,
            "in_scale": ("f", True, 1.0),
            "out_scale": ("f", True, 1.0),
            "data_layout": ("s", False, "NCHW", {"NCHW", "NHWC"}),
        }

    def make_shape_compatible_op(self, model):
        node = self.onnx_node
        return helper.make_node("Identity", [node.input[0]], [node.output[0]])

    def infer_node_datatype(self, model):
        # float in, float out (the Quant node after it puts the output on its int8 grid)
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        p = params_from_attrs(self)
        x = np.asarray(context[node.input[0]], dtype=np.float64)
        q = np.clip(np.floor(x / np.float32(p.in_scale) + 0.5), -128, 127).astype(np.int64)
        y = gdn_int_layout(q, p, self.get_nodeattr("data_layout"))
        context[node.output[0]] = (y.astype(np.float32) * np.float32(p.out_scale)).astype(np.float32)

    def verify_node(self):
        info = []
        try:
            params_from_attrs(self)
            info.append("GDN parameters consistent")
        except Exception as exc:  # noqa: BLE001 - report, as qonnx's verify_node does
            info.append(f"GDN parameters invalid: {exc}")
        return info
