// gdn_replicated_axis -- R pixel-parallel gdn_axis instances behind one AXI4-Stream.
//
// Why: one gdn_axis needs C*C/PE cycles per pixel and PE <= C, so at most one pixel per
// C cycles -- too slow for the first GDN of g_a (and the last IGDN of g_s) at 1080p30.
// R replicas take whole pixels round-robin: pixel k goes to replica k mod R, and the
// outputs are collected in the same order, so the stream order is unchanged and each
// replica is an unmodified gdn_axis (same ROM images). Throughput C*C/(PE*R) cycles per
// pixel while R <= C (the input stream carries one beat per cycle at most).
// Golden model: model/golden/gdn.py (gdn_int); testbench: tests/hw/test_gdn_axis.py
// (configurations with R > 1). R = 1 is a single gdn_axis with no extra logic in the path.
`default_nettype none

module gdn_replicated_axis #(
    parameter int C          = 64,
    parameter int PE         = 8,
    parameter int R          = 2,    // pixel-parallel replicas
    parameter int INVERSE    = 0,
    parameter int SIMPLIFIED = 0,
    parameter int GAMMA_BITS = 16,
    parameter int ACC_BITS   = 32,
    parameter GAMMA_FILE = "gamma.mem",
    parameter BETA_FILE  = "beta.mem",
    parameter SHIFT_FILE = "shift.mem",
    parameter LUT_FILE   = "lut.mem"
) (
    input  wire logic            clk,
    input  wire logic            rst_n,
    input  wire logic [8*PE-1:0] s_axis_tdata,
    input  wire logic            s_axis_tvalid,
    output logic                 s_axis_tready,
    input  wire logic            s_axis_tlast,
    output logic [8*PE-1:0]      m_axis_tdata,
    output logic                 m_axis_tvalid,
    input  wire logic            m_axis_tready,
    output logic                 m_axis_tlast
);
    localparam int NB = C / PE;                        // beats per pixel
    localparam int BW = (NB > 1) ? $clog2(NB) : 1;
    localparam int RW = (R > 1) ? $clog2(R) : 1;

    if (R < 1) begin : g_err_r
        $error("gdn_replicated_axis: R must be >= 1");
    end

    logic [R-1:0]      rs_valid, rs_ready, rm_valid, rm_ready, rm_last;
    logic [8*PE-1:0]   rm_data [R];

    for (genvar r = 0; r < R; r++) begin : g_rep
        gdn_axis #(
            .C(C), .PE(PE), .INVERSE(INVERSE), .SIMPLIFIED(SIMPLIFIED),
            .GAMMA_BITS(GAMMA_BITS), .ACC_BITS(ACC_BITS),
            .GAMMA_FILE(GAMMA_FILE), .BETA_FILE(BETA_FILE), .SHIFT_FILE(SHIFT_FILE), .LUT_FILE(LUT_FILE)
        ) u_gdn (
            .clk(clk), .rst_n(rst_n),
            .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(rs_valid[r]), .s_axis_tready(rs_ready[r]),
            .s_axis_tlast(s_axis_tlast),
            .m_axis_tdata(rm_data[r]), .m_axis_tvalid(rm_valid[r]), .m_axis_tready(rm_ready[r]),
            .m_axis_tlast(rm_last[r])
        );
    end

    if (R == 1) begin : g_single
        assign rs_valid      = s_axis_tvalid;
        assign s_axis_tready = rs_ready[0];
        assign m_axis_tdata  = rm_data[0];
        assign m_axis_tvalid = rm_valid[0];
        assign m_axis_tlast  = rm_last[0];
        assign rm_ready      = m_axis_tready;
    end else begin : g_multi
        // split: whole pixels round-robin; merge: the same order
        logic [RW-1:0] in_sel, out_sel;
        logic [BW-1:0] in_beat, out_beat;
        wire in_fire  = s_axis_tvalid && s_axis_tready;
        wire out_fire = m_axis_tvalid && m_axis_tready;

        assign s_axis_tready = rs_ready[in_sel];
        assign m_axis_tdata  = rm_data[out_sel];
        assign m_axis_tvalid = rm_valid[out_sel];
        assign m_axis_tlast  = rm_last[out_sel];
        always_comb begin
            rs_valid = '0;
            rm_ready = '0;
            rs_valid[in_sel]  = s_axis_tvalid;
            rm_ready[out_sel] = m_axis_tready;
        end

        always_ff @(posedge clk) begin
            if (!rst_n) begin
                in_sel <= '0; out_sel <= '0; in_beat <= '0; out_beat <= '0;
            end else begin
                if (in_fire) begin
                    if (in_beat == BW'(NB - 1)) begin
                        in_beat <= '0;
                        in_sel  <= (in_sel == RW'(R - 1)) ? '0 : in_sel + 1'b1;
                    end else begin
                        in_beat <= in_beat + 1'b1;
                    end
                end
                if (out_fire) begin
                    if (out_beat == BW'(NB - 1)) begin
                        out_beat <= '0;
                        out_sel  <= (out_sel == RW'(R - 1)) ? '0 : out_sel + 1'b1;
                    end else begin
                        out_beat <= out_beat + 1'b1;
                    end
                end
            end
        end
    end
endmodule

`default_nettype wire
