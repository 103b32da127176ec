"""RTL backend plumbing shared by our FINN hardware layers (GDN, DepthToSpace).

Each of our layers' RTL is a kernel under ``hls/`` (its one source of truth) plus a
FINN-named wrapper module (``ap_clk``, ``ap_rst_n``, ``in0_V_*``, ``out0_V_*``) generated into
the node's ``code_gen_dir_ipgen``. :class:`KernelRTLBackend` copies the kernel sources there,
writes the wrapper, and gives FINN the file list and the IP-integrator commands, so a
stitched design (FINN's CreateStitchedIP in Vivado, or overlay/rtl_stitch.py here) gets
exactly these files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend


WRAPPER_PORTS = """module {top} (
    input  wire        ap_clk,
    input  wire        ap_rst_n,
    input  wire [{w}:0] in0_V_TDATA,
    input  wire        in0_V_TVALID,
    output wire        in0_V_TREADY,
    output wire [{w}:0] out0_V_TDATA,
    output wire        out0_V_TVALID,
    input  wire        out0_V_TREADY
);
"""


def wrapper(top: str, comment: str, in_width: int, body: str) -> str:
    """A FINN-named wrapper module: ``// comment`` lines, FINN's port list (stream width
    ``in_width`` in and out), ``body`` (the kernel instance), endmodule."""
    head = "".join(f"// {ln}\n" for ln in comment.splitlines())
    return head + WRAPPER_PORTS.format(top=top, w=in_width - 1) + body + "endmodule\n"


class EstimatesFromResources:
    """FINN's resource-estimate hooks of one of our layers, all read from its ``_res()``
    ({"LUT", "DSP", "BRAM_18K", "URAM"}). Mixin before HWCustomOp: ``class X(EstimatesFromResources, HWCustomOp)``."""

    def _res(self) -> dict:
        raise NotImplementedError

    def node_res_estimation(self, fpgapart):
        r = self._res()
        return {"BRAM_18K": r["BRAM_18K"], "BRAM_efficiency": 1.0, "LUT": r["LUT"], "URAM": r["URAM"],
                "URAM_efficiency": 1.0, "DSP": r["DSP"]}

    def lut_estimation(self, fpgapart=None):
        return self._res()["LUT"]

    def dsp_estimation(self, fpgapart=None):
        return self._res()["DSP"]

    def bram_estimation(self, fpgapart=None):
        return self._res()["BRAM_18K"]

    def uram_estimation(self, fpgapart=None):
        return self._res()["URAM"]


class KernelRTLBackend(RTLBackend):
    """Mixin after the layer class: ``class X_rtl(X, KernelRTLBackend)`` (FINN's order; the
    subclass merges ``X.get_nodeattr_types`` with ``RTLBackend.get_nodeattr_types`` as FINN's
    own ``*_rtl`` classes do). Subclasses set ``KERNEL_SOURCES`` (paths under hls/) and
    implement :meth:`wrapper_text`, which may also write files beside it (ROM images)."""

    KERNEL_SOURCES: tuple[Path, ...] = ()

    def wrapper_text(self, top: str, code_gen_dir: Path) -> str:
        raise NotImplementedError

    def generate_hdl(self, model, fpgapart, clk):
        d = Path(self.get_nodeattr("code_gen_dir_ipgen"))
        d.mkdir(parents=True, exist_ok=True)
        for src in self.KERNEL_SOURCES:
            shutil.copyfile(src, d / src.name)
        top = f"{self.onnx_node.name}_wrapper"
        (d / f"{top}.v").write_text(self.wrapper_text(top, d))
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(d))
        self.set_nodeattr("ip_path", str(d))

    def get_rtl_file_list(self, abspath=False):
        d = Path(self.get_nodeattr("code_gen_dir_ipgen")) if abspath else Path()
        return [str(d / f"{self.onnx_node.name}_wrapper.v")] + [str(d / s.name) for s in self.KERNEL_SOURCES]

    def code_generation_ipi(self):
        cmd = [f"add_files -norecurse {f}" for f in self.get_rtl_file_list(abspath=True)]
        cmd.append(f"create_bd_cell -type module -reference {self.get_nodeattr('gen_top_module')} "
                   f"{self.onnx_node.name}")
        return cmd
