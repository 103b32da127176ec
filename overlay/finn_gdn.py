"""Our fixed-point GDN / IGDN as a FINN+ hardware layer (runs in ``.venv-finn`` only).

* :class:`GDN` (domain ``finn.custom_op.fpgadataflow``): the abstract hardware layer. int8
  in, int8 out, NHWC, ``PE`` channels per stream beat (folding: ``C % PE == 0``).
  ``execute_node`` is :func:`licfpga.model.golden.gdn.gdn_int` (bit-exact with
  ``hls/gdn/gdn_axis.sv``); ``get_exp_cycles`` = ``C*C/PE`` per pixel (the kernel's measured
  steady-state throughput, hls/gdn/README.md); resource estimates fitted to the Yosys
  ``synth_xilinx -family xcup`` numbers of hls/gdn/README.md (estimates, not Vivado).
* :class:`GDN_rtl` (domain ``finn.custom_op.fpgadataflow.rtl``): the RTL backend.
  ``generate_hdl`` copies ``hls/gdn/gdn_axis.sv``, writes the ``$readmemh`` ROMs with
  :func:`licfpga.model.golden.gdn.write_memh` and a FINN-style wrapper module
  (``ap_clk``/``ap_rst_n``, ``in0_V``/``out0_V`` AXI-Stream) into ``code_gen_dir_ipgen``.

FINN recognises hardware nodes by these two domains, so the classes are registered there
with ``qonnx.custom_op.registry.add_op_to_domain`` when this module is imported
(:mod:`licfpga.overlay.finn_flow` imports it before loading any model).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import add_op_to_domain

from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from licfpga.model.golden import gdn as golden_gdn

from .custom_op import GDN_PARAM_ATTRS, gdn_int_layout, params_from_attrs
from .finn_rtl import EstimatesFromResources, KernelRTLBackend, wrapper

RTL_SRC = Path(__file__).resolve().parent.parent / "hls" / "gdn" / "gdn_axis.sv"
# R whole pixels in parallel (round-robin over R gdn_axis; R = 1: one gdn_axis, no extra logic)
RTL_REPLICATED = RTL_SRC.parent / "gdn_replicated_axis.sv"

# Yosys 0.23 synth_xilinx -family xcup (hls/gdn/README.md): (C, PE, inverse) -> LUT, FF, DSP, BRAM36
YOSYS_POINTS = {(64, 8, 0): (1951, 2558, 14, 2), (64, 8, 1): (1837, 2559, 16, 2), (192, 16, 0): (4747, 5761, 22, 18)}


def gdn_resources(c: int, pe: int, inverse: bool) -> dict[str, int]:
    """Resource estimate of one gdn_axis instance, fitted to the Yosys points above:
    LUT ~ 138*PE + 13.2*C (+ 40 LUTRAM), FF ~ 16*C (two pixel buffers) + 144*PE + 382,
    DSP = PE + 6 (GDN) / PE + 8 (IGDN) as measured (README: PE lanes + square + post), BRAM36 = ceil(16*C*C / 32768)
    (gamma ROM; a ROM under 4 Kib is assumed in LUTRAM: 0 BRAM). Reproduces the three
    measured points within 4 % (LUT, FF) and exactly (DSP, BRAM)."""
    lut = int(round(138.3 * pe + 13.2 * c + 40))
    ff = int(round(16 * c + 144 * pe + 382))
    dsp = pe + (8 if inverse else 6)
    rom_bits = 16 * c * c
    bram = 0 if rom_bits < 4096 else math.ceil(rom_bits / 32768)
    return {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM_18K": 2 * bram, "URAM": 0}


class GDN(EstimatesFromResources, HWCustomOp):
    """Fixed-point GDN / IGDN hardware layer (int8 NHWC stream in and out)."""

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            **GDN_PARAM_ATTRS,
            "PE": ("i", False, 1),
            "REPLICAS": ("i", False, 1),               # pixel-parallel gdn_axis instances
            "numInputVectors": ("ints", False, [1]),      # [N, H, W]
            "in_scale": ("f", False, 1.0),     # informative: the integers' float scales
            "out_scale": ("f", False, 1.0),
            "inputDataType": ("s", False, "INT8"),
            "outputDataType": ("s", False, "INT8"),
        })
        return attrs

    # -- shapes and streams
    def params(self) -> golden_gdn.GDNIntParams:
        return params_from_attrs(self)

    def _pixels(self) -> int:
        return int(np.prod(self.get_nodeattr("numInputVectors")))

    def get_normal_input_shape(self, ind=0):
        return tuple(self.get_nodeattr("numInputVectors")) + (self.get_nodeattr("channels"),)

    def get_normal_output_shape(self, ind=0):
        return self.get_normal_input_shape()

    def get_folded_input_shape(self, ind=0):
        c, pe = self.get_nodeattr("channels"), self.get_nodeattr("PE")
        return tuple(self.get_nodeattr("numInputVectors")) + (c // pe, pe)

    def get_folded_output_shape(self, ind=0):
        return self.get_folded_input_shape()

    def get_input_datatype(self, ind=0):
        return DataType[self.get_nodeattr("inputDataType")]

    def get_output_datatype(self, ind=0):
        return DataType[self.get_nodeattr("outputDataType")]

    def get_instream_width(self, ind=0):
        return 8 * self.get_nodeattr("PE")

    def get_outstream_width(self, ind=0):
        return 8 * self.get_nodeattr("PE")

    def get_number_output_values(self):
        return int(np.prod(self.get_folded_output_shape()[:-1]))

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["INT8"])

    def verify_node(self):
        info = []
        c, pe = self.get_nodeattr("channels"), self.get_nodeattr("PE")
        info.append("PE divides C" if c % pe == 0 else f"PE={pe} does not divide C={c}")
        try:
            self.params()
            info.append("GDN parameters consistent")
        except Exception as exc:  # noqa: BLE001
            info.append(f"GDN parameters invalid: {exc}")
        return info

    # -- execution: the golden integer kernel
    def execute_node(self, context, graph):
        node = self.onnx_node
        q = np.asarray(context[node.input[0]])
        if not np.array_equal(q, np.round(q)) or q.min() < -128 or q.max() > 127:
            raise ValueError(f"{node.name}: input is not int8")
        y = gdn_int_layout(q.astype(np.int64), self.params(), "NHWC")
        context[node.output[0]] = y.astype(np.float32)

    # -- estimates
    def get_exp_cycles(self):
        c, pe, r = self.get_nodeattr("channels"), self.get_nodeattr("PE"), self.get_nodeattr("REPLICAS")
        return -(-self._pixels() * c * c // (pe * r))

    def get_op_and_param_counts(self):
        c = self.get_nodeattr("channels")
        return {f"op_mac_{self.onnx_node.name}": self._pixels() * c * c, f"param_gamma_{self.onnx_node.name}": c * c}

    def _res(self):
        """One gdn_axis x REPLICAS (each has its own ROMs) + the split/merge muxes, ~0.75 LUT
        per output bit per extra replica (Yosys: C=30, PE=30, R=3 is 14 310 LUT = 3 x 4 659
        + 333)."""
        one = gdn_resources(self.get_nodeattr("channels"), self.get_nodeattr("PE"), bool(self.get_nodeattr("inverse")))
        r = self.get_nodeattr("REPLICAS")
        res = {k: v * r for k, v in one.items()}
        if r > 1:
            res["LUT"] += int(0.75 * 8 * self.get_nodeattr("PE") * (r - 1))
        return res


INSTANCE = """    wire unused_tlast;
    gdn_replicated_axis #(
        .C({c}), .PE({pe}), .R({r}), .INVERSE({inv}), .SIMPLIFIED({simp}),
        .GAMMA_BITS({gb}), .ACC_BITS({ab}),
        .GAMMA_FILE("{GAMMA_FILE}"), .BETA_FILE("{BETA_FILE}"),
        .SHIFT_FILE("{SHIFT_FILE}"), .LUT_FILE("{LUT_FILE}")
    ) core (
        .clk(ap_clk), .rst_n(ap_rst_n),
        .s_axis_tdata(in0_V_TDATA), .s_axis_tvalid(in0_V_TVALID), .s_axis_tready(in0_V_TREADY),
        .s_axis_tlast(1'b0),
        .m_axis_tdata(out0_V_TDATA), .m_axis_tvalid(out0_V_TVALID), .m_axis_tready(out0_V_TREADY),
        .m_axis_tlast(unused_tlast)
    );
"""


class GDN_rtl(GDN, KernelRTLBackend):  # noqa: N801 - FINN's <op>_rtl naming
    """RTL backend: hls/gdn/gdn_axis.sv + gdn_replicated_axis.sv + ROM images + wrapper."""

    KERNEL_SOURCES = (RTL_SRC, RTL_REPLICATED)

    def get_nodeattr_types(self):
        attrs = GDN.get_nodeattr_types(self)
        attrs.update(KernelRTLBackend.get_nodeattr_types(self))
        return attrs

    def wrapper_text(self, top, code_gen_dir):
        p = self.params()
        roms = golden_gdn.write_memh(p, code_gen_dir, self.get_nodeattr("PE"))
        body = INSTANCE.format(c=p.channels, pe=self.get_nodeattr("PE"), r=self.get_nodeattr("REPLICAS"),
                               inv=int(p.inverse), simp=int(p.variant == "simplified"), gb=p.gamma_bits,
                               ab=p.acc_bits, **roms)
        return wrapper(top, f"Generated by licfpga.overlay.finn_gdn for FINN node {self.onnx_node.name}:\n"
                       "gdn_replicated_axis in FINN's stream naming. ROM images beside this file.",
                       self.get_instream_width(), body)

    def execute_node(self, context, graph):
        # rtlsim needs Vivado's xsim (FINN's finnxsi); the cocotb/Verilator bench of
        # gdn_axis.sv (tests/hw) proves the RTL equal to this golden model
        GDN.execute_node(self, context, graph)


add_op_to_domain("finn.custom_op.fpgadataflow", GDN)
add_op_to_domain("finn.custom_op.fpgadataflow.rtl", GDN_rtl)
