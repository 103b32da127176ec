// axis_abs: elementwise |x| on an AXI4-Stream of LANES signed lanes of EW bits each.
//
// Why: h_a's first operation is |y| (model/golden/network.py, IntegerModel.run_transform,
// op "abs"; the QONNX export of h_a starts after it, overlay/export_qonnx.py). In the
// whole-encoder accelerator (overlay/accel_top.py) it is taken on chip between g_a's y and
// h_a. FINN+ 1.6.1 has no RTL abs for UltraScale+ (ElementwiseAbsDiff is HLS only there).
//
// Lanes: lane k is bits [k*EW +: EW], two's complement in; out, the same bits as an
// *unsigned* EW-bit number: |x| <= 2^(EW-1) always fits, so no saturation is needed
// (|-128| = 128 = 8'h80 as uint8; the latents never reach -128, they are -127..127).
//
// One register stage (full throughput, standard AXI-Stream pipeline register):
// s_axis_tready = !m_axis_tvalid || m_axis_tready. Latency 1 cycle.
// Testbench: tests/hw/test_axis_abs.py (cocotb + Verilator).
`default_nettype none

module axis_abs #(
    parameter int LANES = 1,    // elements per beat
    parameter int EW    = 8     // element width in bits (signed in, unsigned out)
) (
    input  wire logic                clk,
    input  wire logic                rst_n,        // synchronous, active low
    input  wire logic [LANES*EW-1:0] s_axis_tdata,
    input  wire logic                s_axis_tvalid,
    output logic                     s_axis_tready,
    output logic [LANES*EW-1:0]      m_axis_tdata,
    output logic                     m_axis_tvalid,
    input  wire logic                m_axis_tready
);
    logic [LANES*EW-1:0] absval;

    for (genvar k = 0; k < LANES; k++) begin : g_lane
        wire logic signed [EW-1:0] x = s_axis_tdata[k*EW +: EW];
        // two's complement negate of a negative lane; -2^(EW-1) -> 2^(EW-1) (unsigned)
        assign absval[k*EW +: EW] = x[EW-1] ? EW'(-x) : EW'(x);
    end

    assign s_axis_tready = !m_axis_tvalid || m_axis_tready;

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            m_axis_tvalid <= 1'b0;
            m_axis_tdata  <= '0;
        end else if (s_axis_tready) begin
            m_axis_tvalid <= s_axis_tvalid;
            if (s_axis_tvalid) m_axis_tdata <= absval;
        end
    end
endmodule

`default_nettype wire
