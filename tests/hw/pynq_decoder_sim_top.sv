// pynq_decoder_sim_top: simulation stand-in for the stream path of the whole-decoder overlay
// (overlay/accel_top.py's decoder_top: h_s and g_s, two independent pipelines), DMA side to
// DMA side: dma_k's 32-bit MM2S stream -> width converter -> decoder_top s_axis_k (z, y hat);
// decoder_top m_axis_k (scale codes, RGB) -> pynq_out_path (width converter, axis_frame_tlast)
// -> dma_k's 32-bit S2MM stream. Test: tests/hw/test_pynq_driver.py.
module pynq_decoder_sim_top #(
    parameter int Z_BITS = 8, parameter int Y_BITS = 8,      // accelerator input stream widths
    parameter int S_BITS = 8, parameter int X_BITS = 8,      // output stream widths
    parameter int S_WORDS = 16, parameter int X_WORDS = 16   // 32-bit words per output frame
) (
    input  logic        clk,
    input  logic        rst_n,
    input  logic [31:0] s_axis_0_tdata, input logic s_axis_0_tvalid, output logic s_axis_0_tready, input logic s_axis_0_tlast,
    input  logic [31:0] s_axis_1_tdata, input logic s_axis_1_tvalid, output logic s_axis_1_tready, input logic s_axis_1_tlast,
    output logic [31:0] m_axis_0_tdata, output logic m_axis_0_tvalid, input logic m_axis_0_tready, output logic m_axis_0_tlast,
    output logic [31:0] m_axis_1_tdata, output logic m_axis_1_tvalid, input logic m_axis_1_tready, output logic m_axis_1_tlast
);
    logic [(Z_BITS+7)/8*8-1:0] z_tdata;
    logic [(Y_BITS+7)/8*8-1:0] y_tdata;
    logic [(S_BITS+7)/8*8-1:0] s_tdata;
    logic [(X_BITS+7)/8*8-1:0] x_tdata;
    logic z_tvalid, z_tready, y_tvalid, y_tready, s_tvalid, s_tready, x_tvalid, x_tready;
    wire unused_tlast = s_axis_0_tlast ^ s_axis_1_tlast;   // the DMA marks its last word; the accelerator counts itself

    dwc_axi #(.IBITS(32), .OBITS(Z_BITS)) dw_z (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_tready(s_axis_0_tready), .s_axis_tvalid(s_axis_0_tvalid), .s_axis_tdata(s_axis_0_tdata),
        .m_axis_tready(z_tready), .m_axis_tvalid(z_tvalid), .m_axis_tdata(z_tdata));
    dwc_axi #(.IBITS(32), .OBITS(Y_BITS)) dw_y (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_tready(s_axis_1_tready), .s_axis_tvalid(s_axis_1_tvalid), .s_axis_tdata(s_axis_1_tdata),
        .m_axis_tready(y_tready), .m_axis_tvalid(y_tvalid), .m_axis_tdata(y_tdata));

    decoder_top accel (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_0_tdata(z_tdata), .s_axis_0_tvalid(z_tvalid), .s_axis_0_tready(z_tready),
        .s_axis_1_tdata(y_tdata), .s_axis_1_tvalid(y_tvalid), .s_axis_1_tready(y_tready),
        .m_axis_0_tdata(s_tdata), .m_axis_0_tvalid(s_tvalid), .m_axis_0_tready(s_tready),
        .m_axis_1_tdata(x_tdata), .m_axis_1_tvalid(x_tvalid), .m_axis_1_tready(x_tready));

    pynq_out_path #(.BITS(S_BITS), .WORDS(S_WORDS)) out_s (.clk(clk), .rst_n(rst_n),
        .s_tdata(s_tdata), .s_tvalid(s_tvalid), .s_tready(s_tready),
        .m_tdata(m_axis_0_tdata), .m_tvalid(m_axis_0_tvalid), .m_tready(m_axis_0_tready), .m_tlast(m_axis_0_tlast));
    pynq_out_path #(.BITS(X_BITS), .WORDS(X_WORDS)) out_x (.clk(clk), .rst_n(rst_n),
        .s_tdata(x_tdata), .s_tvalid(x_tvalid), .s_tready(x_tready),
        .m_tdata(m_axis_1_tdata), .m_tvalid(m_axis_1_tvalid), .m_tready(m_axis_1_tready), .m_tlast(m_axis_1_tlast));
endmodule
