// pynq_sim_top: simulation stand-in for the overlay's stream path, DMA side to DMA side
// (vivado/build_overlay.tcl): 32-bit MM2S stream -> width converter -> the stitched FINN
// accelerator (ACCEL, e.g. g_a_top from overlay/rtl_stitch.py) -> width converter ->
// axis_frame_tlast -> 32-bit S2MM stream. In the block design the converters are Vivado's
// axis_dwidth_converter; here finn-rtllib's dwc_axi (both put the first element in the
// least significant bits). Test: tests/hw/test_pynq_driver.py (cocotbpynq drives the DMA
// side exactly as PYNQ's DMA driver is used by licfpga.host.pynq_driver).
module pynq_sim_top #(
    parameter int IN_BITS   = 8,    // accelerator input stream width (FINN)
    parameter int OUT_BITS  = 8,    // accelerator output stream width (FINN)
    parameter int OUT_WORDS = 16    // 32-bit words per output frame (TLAST on the last)
) (
    input  logic        clk,
    input  logic        rst_n,
    input  logic [31:0] s_axis_tdata,
    input  logic        s_axis_tvalid,
    output logic        s_axis_tready,
    input  logic        s_axis_tlast,     // the DMA marks its last word; the accelerator counts itself
    output logic [31:0] m_axis_tdata,
    output logic        m_axis_tvalid,
    input  logic        m_axis_tready,
    output logic        m_axis_tlast
);
    localparam int IW = (IN_BITS + 7) / 8 * 8;
    localparam int OW = (OUT_BITS + 7) / 8 * 8;
    logic [IW-1:0] a_in_tdata;
    logic          a_in_tvalid, a_in_tready;
    logic [OW-1:0] a_out_tdata;
    logic          a_out_tvalid, a_out_tready;
    logic [31:0]   w_tdata;
    logic          w_tvalid, w_tready;
    wire unused_tlast = s_axis_tlast;

    dwc_axi #(.IBITS(32), .OBITS(IN_BITS)) dw_in (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_tready(s_axis_tready), .s_axis_tvalid(s_axis_tvalid), .s_axis_tdata(s_axis_tdata),
        .m_axis_tready(a_in_tready), .m_axis_tvalid(a_in_tvalid), .m_axis_tdata(a_in_tdata));

    `ACCEL accel (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_0_tdata(a_in_tdata), .s_axis_0_tvalid(a_in_tvalid), .s_axis_0_tready(a_in_tready),
        .m_axis_0_tdata(a_out_tdata), .m_axis_0_tvalid(a_out_tvalid), .m_axis_0_tready(a_out_tready));

    dwc_axi #(.IBITS(OUT_BITS), .OBITS(32)) dw_out (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_tready(a_out_tready), .s_axis_tvalid(a_out_tvalid), .s_axis_tdata(a_out_tdata),
        .m_axis_tready(w_tready), .m_axis_tvalid(w_tvalid), .m_axis_tdata(w_tdata));

    axis_frame_tlast #(.BEATS(OUT_WORDS), .DW(32)) tlast (
        .clk(clk), .rst_n(rst_n),
        .s_axis_tdata(w_tdata), .s_axis_tvalid(w_tvalid), .s_axis_tready(w_tready),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast));
endmodule
