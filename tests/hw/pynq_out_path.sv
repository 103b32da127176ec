// pynq_out_path: one accelerator output stream to a DMA's 32-bit S2MM stream, as the block
// design has it (vivado/build_overlay.tcl): width converter (finn-rtllib's dwc_axi here, Vivado's
// axis_dwidth_converter there) -> axis_frame_tlast (TLAST on the frame's last 32-bit word).
// Used by pynq_encoder_sim_top.sv and pynq_decoder_sim_top.sv.
module pynq_out_path #(
    parameter int BITS  = 8,     // accelerator output stream width (FINN)
    parameter int WORDS = 16     // 32-bit words per output frame (TLAST on the last)
) (
    input  logic                      clk,
    input  logic                      rst_n,
    input  logic [(BITS+7)/8*8-1:0]   s_tdata,
    input  logic                      s_tvalid,
    output logic                      s_tready,
    output logic [31:0]               m_tdata,
    output logic                      m_tvalid,
    input  logic                      m_tready,
    output logic                      m_tlast
);
    logic [31:0] w_tdata;
    logic        w_tvalid, w_tready;
    dwc_axi #(.IBITS(BITS), .OBITS(32)) dw (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_tready(s_tready), .s_axis_tvalid(s_tvalid), .s_axis_tdata(s_tdata),
        .m_axis_tready(w_tready), .m_axis_tvalid(w_tvalid), .m_axis_tdata(w_tdata));
    axis_frame_tlast #(.BEATS(WORDS), .DW(32)) tlast (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(w_tdata), .s_axis_tvalid(w_tvalid), .s_axis_tready(w_tready),
        .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid), .m_axis_tready(m_tready), .m_axis_tlast(m_tlast));
endmodule
