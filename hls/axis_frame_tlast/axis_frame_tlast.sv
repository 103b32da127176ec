// axis_frame_tlast: pass an AXI4-Stream through and raise TLAST on the last beat of every
// frame of BEATS beats.
//
// Why: FINN's dataflow streams carry no TLAST, but the AXI DMA's S2MM channel ends a
// transfer (and raises its interrupt) only on TLAST. The accelerator is compiled for one
// frame size, so its output beats per frame are a constant (licfpga.overlay.finn_flow
// reports them as output_stream.beats_per_frame); vivado/build_overlay.tcl puts this module
// between the accelerator and the DMA. Combinational pass-through of data and handshake:
// no latency, no buffering. Testbench: tests/hw/test_axis_frame_tlast.py.
`default_nettype none

module axis_frame_tlast #(
    parameter int BEATS = 16,   // beats per frame (>= 1)
    parameter int DW    = 32    // TDATA width
) (
    // Vivado IP integrator: which streams the clock and reset belong to (a comment-like
    // attribute for every other tool)
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axis:m_axis, ASSOCIATED_RESET rst_n" *)
    input  wire logic          clk,
    input  wire logic          rst_n,        // synchronous, active low
    input  wire logic [DW-1:0] s_axis_tdata,
    input  wire logic          s_axis_tvalid,
    output logic               s_axis_tready,
    output logic [DW-1:0]      m_axis_tdata,
    output logic               m_axis_tvalid,
    input  wire logic          m_axis_tready,
    output logic               m_axis_tlast
);
    localparam int CW = (BEATS > 1) ? $clog2(BEATS) : 1;

    if (BEATS < 1) begin : g_err_beats
        $error("axis_frame_tlast: BEATS must be >= 1");
    end

    logic [CW-1:0] beat;

    assign m_axis_tdata  = s_axis_tdata;
    assign m_axis_tvalid = s_axis_tvalid;
    assign s_axis_tready = m_axis_tready;
    assign m_axis_tlast  = (beat == CW'(BEATS - 1));

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            beat <= '0;
        end else if (s_axis_tvalid && m_axis_tready) begin
            beat <= m_axis_tlast ? '0 : beat + 1'b1;
        end
    end
endmodule

`default_nettype wire
