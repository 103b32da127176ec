// axis_broadcast: one AXI4-Stream in, two copies out (FINN's DuplicateStreams, in RTL).
//
// Why: the whole-encoder accelerator (overlay/accel_top.py, encoder_top.sv) sends the
// latents y both off chip (to be entropy coded) and, through axis_abs, into h_a. FINN+ 1.6.1
// has DuplicateStreams only as an HLS layer (no Vitis HLS here), so this is ours.
//
// Handshake: an input beat is consumed only once *both* outputs have taken it. Each output
// has a "done" flag: it is set when that output accepts the current beat while the other
// one has not yet, and both flags clear when the input beat is consumed. So an output that
// is ready takes the beat at once and is not offered it again; the slower one gets it later;
// neither output ever sees a beat twice or misses one. Data and valid pass through
// combinationally (no latency, no storage: the beat stays on s_axis_tdata until consumed):
//   m<i>_axis_tvalid = s_axis_tvalid & !done[i]        (never depends on any tready)
//   s_axis_tready    = (done[0] | m0_axis_tready) & (done[1] | m1_axis_tready)
// Full throughput (one beat per cycle) when both outputs are ready.
// Testbench: tests/hw/test_axis_broadcast.py (cocotb + Verilator).
`default_nettype none

module axis_broadcast #(
    parameter int DW = 8        // TDATA width
) (
    input  wire logic          clk,
    input  wire logic          rst_n,        // synchronous, active low
    input  wire logic [DW-1:0] s_axis_tdata,
    input  wire logic          s_axis_tvalid,
    output logic               s_axis_tready,
    output logic [DW-1:0]      m0_axis_tdata,
    output logic               m0_axis_tvalid,
    input  wire logic          m0_axis_tready,
    output logic [DW-1:0]      m1_axis_tdata,
    output logic               m1_axis_tvalid,
    input  wire logic          m1_axis_tready
);
    logic [1:0] done;           // output i has already taken the current input beat

    assign m0_axis_tdata  = s_axis_tdata;
    assign m1_axis_tdata  = s_axis_tdata;
    assign m0_axis_tvalid = s_axis_tvalid && !done[0];
    assign m1_axis_tvalid = s_axis_tvalid && !done[1];
    assign s_axis_tready  = (done[0] || m0_axis_tready) && (done[1] || m1_axis_tready);

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            done <= '0;
        end else if (s_axis_tvalid && s_axis_tready) begin
            done <= '0;                                   // beat consumed: next one fresh
        end else begin
            if (m0_axis_tvalid && m0_axis_tready) done[0] <= 1'b1;
            if (m1_axis_tvalid && m1_axis_tready) done[1] <= 1'b1;
        end
    end
endmodule

`default_nettype wire
