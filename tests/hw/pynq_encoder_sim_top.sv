// pynq_encoder_sim_top: simulation stand-in for the stream path of the whole-encoder overlay
// (overlay/accel_top.py's encoder_top), DMA side to DMA side, as pynq_sim_top.sv is for one
// transform: 32-bit MM2S stream of dma_0 -> width converter -> encoder_top s_axis_0 (RGB);
// each of its outputs m_axis_k (y, z, scale codes) -> width converter -> axis_frame_tlast ->
// 32-bit S2MM stream of dma_k. In the block design the converters are Vivado's
// axis_dwidth_converter; here finn-rtllib's dwc_axi (both put the first element in the least
// significant bits). Test: tests/hw/test_pynq_driver.py (cocotbpynq drives the DMA side as
// licfpga.host.pynq_driver.MultiStreamAccelerator drives PYNQ's DMA driver). Output paths:
// pynq_out_path.sv.
module pynq_encoder_sim_top #(
    parameter int IN_BITS = 8,
    parameter int Y_BITS = 8, parameter int Z_BITS = 8, parameter int S_BITS = 8,
    parameter int Y_WORDS = 16, parameter int Z_WORDS = 16, parameter int S_WORDS = 16
) (
    input  logic        clk,
    input  logic        rst_n,
    input  logic [31:0] s_axis_0_tdata,
    input  logic        s_axis_0_tvalid,
    output logic        s_axis_0_tready,
    input  logic        s_axis_0_tlast,   // the DMA marks its last word; the accelerator counts itself
    output logic [31:0] m_axis_0_tdata, output logic m_axis_0_tvalid, input logic m_axis_0_tready, output logic m_axis_0_tlast,
    output logic [31:0] m_axis_1_tdata, output logic m_axis_1_tvalid, input logic m_axis_1_tready, output logic m_axis_1_tlast,
    output logic [31:0] m_axis_2_tdata, output logic m_axis_2_tvalid, input logic m_axis_2_tready, output logic m_axis_2_tlast
);
    localparam int IW = (IN_BITS + 7) / 8 * 8;
    logic [IW-1:0] a_in_tdata;
    logic          a_in_tvalid, a_in_tready;
    logic [(Y_BITS+7)/8*8-1:0] y_tdata;
    logic [(Z_BITS+7)/8*8-1:0] z_tdata;
    logic [(S_BITS+7)/8*8-1:0] s_tdata;
    logic y_tvalid, y_tready, z_tvalid, z_tready, s_tvalid, s_tready;
    wire unused_tlast = s_axis_0_tlast;

    dwc_axi #(.IBITS(32), .OBITS(IN_BITS)) dw_in (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_tready(s_axis_0_tready), .s_axis_tvalid(s_axis_0_tvalid), .s_axis_tdata(s_axis_0_tdata),
        .m_axis_tready(a_in_tready), .m_axis_tvalid(a_in_tvalid), .m_axis_tdata(a_in_tdata));

    encoder_top accel (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_0_tdata(a_in_tdata), .s_axis_0_tvalid(a_in_tvalid), .s_axis_0_tready(a_in_tready),
        .m_axis_0_tdata(y_tdata), .m_axis_0_tvalid(y_tvalid), .m_axis_0_tready(y_tready),
        .m_axis_1_tdata(z_tdata), .m_axis_1_tvalid(z_tvalid), .m_axis_1_tready(z_tready),
        .m_axis_2_tdata(s_tdata), .m_axis_2_tvalid(s_tvalid), .m_axis_2_tready(s_tready));

    pynq_out_path #(.BITS(Y_BITS), .WORDS(Y_WORDS)) out_y (.clk(clk), .rst_n(rst_n),
        .s_tdata(y_tdata), .s_tvalid(y_tvalid), .s_tready(y_tready),
        .m_tdata(m_axis_0_tdata), .m_tvalid(m_axis_0_tvalid), .m_tready(m_axis_0_tready), .m_tlast(m_axis_0_tlast));
    pynq_out_path #(.BITS(Z_BITS), .WORDS(Z_WORDS)) out_z (.clk(clk), .rst_n(rst_n),
        .s_tdata(z_tdata), .s_tvalid(z_tvalid), .s_tready(z_tready),
        .m_tdata(m_axis_1_tdata), .m_tvalid(m_axis_1_tvalid), .m_tready(m_axis_1_tready), .m_tlast(m_axis_1_tlast));
    pynq_out_path #(.BITS(S_BITS), .WORDS(S_WORDS)) out_s (.clk(clk), .rst_n(rst_n),
        .s_tdata(s_tdata), .s_tvalid(s_tvalid), .s_tready(s_tready),
        .m_tdata(m_axis_2_tdata), .m_tvalid(m_axis_2_tvalid), .m_tready(m_axis_2_tready), .m_tlast(m_axis_2_tlast));
endmodule
