"""Depth-to-space as a FINN+ hardware layer (runs in ``.venv-finn`` only).

The decoder's stride-2 transposed convolutions become a stride-1 convolution with
``S*S*C`` outputs + depth-to-space (:mod:`licfpga.overlay.deconv`, order DCR); FINN has no
depth-to-space layer, so this is ours:

* :class:`DepthToSpace` (domain ``finn.custom_op.fpgadataflow``): NHWC ``[N, H, W, S*S*C]``
  -> ``[N, S*H, S*W, C]``, ``SIMD`` channels per beat (``C % SIMD == 0``). ``execute_node``
  is the golden :func:`licfpga.overlay.deconv.depth_to_space_nhwc`; ``get_exp_cycles`` =
  input beats x ``(2S-1)/S`` (the input waits while a row's buffered part drains; measured
  by ``tests/hw/test_depth_to_space_axis.py``).
* :class:`DepthToSpace_rtl`: ``hls/depth_to_space/depth_to_space_axis.sv`` + a FINN-named
  wrapper (``ap_clk``, ``in0_V_*``, ``out0_V_*``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import add_op_to_domain

from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp

from .deconv import depth_to_space_nhwc
from .finn_rtl import EstimatesFromResources, KernelRTLBackend, wrapper

RTL_SRC = Path(__file__).resolve().parent.parent / "hls" / "depth_to_space" / "depth_to_space_axis.sv"


RAMB18_ASPECTS = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))   # depth x width


def d2s_resources(c: int, s: int, w: int, simd: int, bits: int) -> dict[str, int]:
    """Estimate of one depth_to_space_axis: the row buffer of ``(S-1)*W*S*C`` elements as
    RAMB18s in their best aspect ratio (what Yosys/Vivado do; LUTRAM below 4 Kib), ~90 LUT of
    counters/control + 3 LUT per data bit (output queue and muxes). Checked against Yosys
    ``synth_xilinx -family xcup`` (hls/synth.py d2s; overlay/README.md)."""
    width = simd * bits
    depth = (s - 1) * w * s * c // simd
    mem_bits = depth * width
    if mem_bits < 4096:
        bram18, lutram = 0, math.ceil(mem_bits / 64)
    else:
        bram18 = min(math.ceil(width / aw) * math.ceil(depth / ad) for ad, aw in RAMB18_ASPECTS)
        lutram = 0
    return {"LUT": 90 + 3 * width + lutram, "DSP": 0, "BRAM_18K": bram18, "URAM": 0}


class DepthToSpace(EstimatesFromResources, HWCustomOp):
    """Depth-to-space (DCR, block S) on an NHWC stream."""

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            "NumChannels": ("i", True, 0),             # C (output channels)
            "BlockSize": ("i", False, 2),              # S
            "numInputVectors": ("ints", True, []),     # [N, H, W] of the input
            "SIMD": ("i", False, 1),
            "dataType": ("s", True, ""),
        })
        return attrs

    def _nhw(self):
        return tuple(self.get_nodeattr("numInputVectors"))

    def get_normal_input_shape(self, ind=0):
        s, c = self.get_nodeattr("BlockSize"), self.get_nodeattr("NumChannels")
        return self._nhw() + (s * s * c,)

    def get_normal_output_shape(self, ind=0):
        s, c = self.get_nodeattr("BlockSize"), self.get_nodeattr("NumChannels")
        n, h, w = self._nhw()
        return (n, s * h, s * w, c)

    def get_folded_input_shape(self, ind=0):
        simd = self.get_nodeattr("SIMD")
        sh = self.get_normal_input_shape()
        return sh[:-1] + (sh[-1] // simd, simd)

    def get_folded_output_shape(self, ind=0):
        simd = self.get_nodeattr("SIMD")
        sh = self.get_normal_output_shape()
        return sh[:-1] + (sh[-1] // simd, simd)

    def get_input_datatype(self, ind=0):
        return DataType[self.get_nodeattr("dataType")]

    def get_output_datatype(self, ind=0):
        return DataType[self.get_nodeattr("dataType")]

    def get_instream_width(self, ind=0):
        return self.get_nodeattr("SIMD") * self.get_input_datatype().bitwidth()

    def get_outstream_width(self, ind=0):
        return self.get_instream_width()

    def get_number_output_values(self):
        return int(np.prod(self.get_folded_output_shape()[:-1]))

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], self.get_input_datatype())

    def verify_node(self):
        c, simd, s = (self.get_nodeattr(k) for k in ("NumChannels", "SIMD", "BlockSize"))
        return ["SIMD divides C" if c % simd == 0 else f"SIMD={simd} does not divide C={c}",
                "block size >= 2" if s >= 2 else f"block size {s} < 2"]

    def execute_node(self, context, graph):
        node = self.onnx_node
        x = np.asarray(context[node.input[0]])
        if tuple(x.shape) != self.get_normal_input_shape():
            raise ValueError(f"{node.name}: input {x.shape}, expected {self.get_normal_input_shape()}")
        context[node.output[0]] = depth_to_space_nhwc(x, self.get_nodeattr("BlockSize"), "dcr").astype(np.float32)

    def get_exp_cycles(self):
        s = self.get_nodeattr("BlockSize")
        beats = int(np.prod(self.get_folded_input_shape()[:-1]))
        return beats * (2 * s - 1) // s

    def _res(self):
        _, _, w = self._nhw()
        return d2s_resources(self.get_nodeattr("NumChannels"), self.get_nodeattr("BlockSize"), w,
                             self.get_nodeattr("SIMD"), self.get_input_datatype().bitwidth())


INSTANCE = """    depth_to_space_axis #(.C({c}), .S({s}), .W({width}), .SIMD({simd}), .EW({ew})) core (
        .clk(ap_clk), .rst_n(ap_rst_n),
        .s_axis_tdata(in0_V_TDATA), .s_axis_tvalid(in0_V_TVALID), .s_axis_tready(in0_V_TREADY),
        .m_axis_tdata(out0_V_TDATA), .m_axis_tvalid(out0_V_TVALID), .m_axis_tready(out0_V_TREADY)
    );
"""


class DepthToSpace_rtl(DepthToSpace, KernelRTLBackend):  # noqa: N801 - FINN's <op>_rtl naming
    """RTL backend: hls/depth_to_space/depth_to_space_axis.sv + FINN-style wrapper."""

    KERNEL_SOURCES = (RTL_SRC,)

    def get_nodeattr_types(self):
        attrs = DepthToSpace.get_nodeattr_types(self)
        attrs.update(KernelRTLBackend.get_nodeattr_types(self))
        return attrs

    def wrapper_text(self, top, code_gen_dir):
        body = INSTANCE.format(c=self.get_nodeattr("NumChannels"), s=self.get_nodeattr("BlockSize"),
                               width=self._nhw()[2], simd=self.get_nodeattr("SIMD"),
                               ew=self.get_input_datatype().bitwidth())
        return wrapper(top, f"Generated by licfpga.overlay.finn_d2s for FINN node {self.onnx_node.name}:\n"
                       "depth_to_space_axis in FINN's stream naming.", self.get_instream_width(), body)

    def execute_node(self, context, graph):
        # rtlsim needs Vivado's xsim; tests/hw/test_depth_to_space_axis.py proves the RTL
        # equal to this golden model under cocotb + Verilator
        DepthToSpace.execute_node(self, context, graph)


add_op_to_domain("finn.custom_op.fpgadataflow", DepthToSpace)
add_op_to_domain("finn.custom_op.fpgadataflow.rtl", DepthToSpace_rtl)
