// depth_to_space_axis: ONNX DepthToSpace (mode DCR, block S) on a channels-last stream.
//
// Why: the decoder's stride-2 transposed convolutions are compiled as one stride-1
// convolution with S*S*C output channels followed by depth-to-space (overlay/deconv.py,
// order "dcr"). This kernel is that depth-to-space for FINN's NHWC streams.
// Golden model: licfpga.overlay.deconv.depth_to_space_nhwc (NumPy); testbench:
// tests/hw/test_depth_to_space_axis.py (cocotb + Verilator, vs NumPy and torch.nn.PixelShuffle).
//
// Input: one input row of W pixels, each S*S*C elements in DCR order, i.e. element
// (ry*S + rx)*C + c is output pixel (S*y + ry, S*x + rx), channel c. Output row S*y + ry is,
// for every x, the contiguous segment ry of input pixel x (S*C elements). So segment 0
// passes straight through and segments 1..S-1 are written to a row buffer, which is read
// out in address order once the input row is complete: (S-1)*W*S*C elements of buffer,
// no arithmetic. Frames need no marker: the kernel only counts rows.
//
// Throughput: while the buffer drains the input waits, so an input row of B beats takes
// B + (S-1)/S*B cycles (S=2: 1.5 cycles per beat; the FINN op's get_exp_cycles says the
// same). The producer (a convolution with S*S*C outputs) is normally far slower per beat.
//
// Handshake: a 2-entry output queue; the buffer is read synchronously (block RAM), so a
// read is only issued when the queue can take its data one cycle later.
module depth_to_space_axis #(
    parameter int C    = 8,     // output channels
    parameter int S    = 2,     // block size
    parameter int W    = 8,     // input pixels per row
    parameter int SIMD = 1,     // elements per stream beat (C % SIMD == 0)
    parameter int EW   = 8      // element width in bits
) (
    input  logic                 clk,
    input  logic                 rst_n,
    input  logic [SIMD*EW-1:0]   s_axis_tdata,
    input  logic                 s_axis_tvalid,
    output logic                 s_axis_tready,
    output logic [SIMD*EW-1:0]   m_axis_tdata,
    output logic                 m_axis_tvalid,
    input  logic                 m_axis_tready
);
    localparam int SEG   = S * C / SIMD;       // beats of one segment (S*C elements)
    localparam int ROWB  = W * SEG;            // buffer beats per buffered output row
    localparam int DEPTH = (S - 1) * ROWB;     // buffer beats
    localparam int AW    = $clog2(DEPTH);        // DEPTH >= 2 (S >= 2, SEG >= 2)
    localparam int KW    = $clog2(SEG + 1);
    localparam int RW    = $clog2(S + 1);
    localparam int XW    = $clog2(W + 1);
    localparam int DW    = SIMD * EW;

    // synthesis-time parameter checks (elaboration fails on a bad set)
    if (C % SIMD != 0) begin : g_bad_simd
        $error("depth_to_space_axis: C must be a multiple of SIMD");
    end
    if (S < 2) begin : g_bad_s
        $error("depth_to_space_axis: S must be >= 2");
    end

    logic [DW-1:0] buffer [DEPTH];

    // ---- input position within the row
    logic [KW-1:0] kk;          // beat within the segment
    logic [RW-1:0] ry;          // segment = output row offset
    logic [XW-1:0] x;           // input pixel
    logic [AW-1:0] xbase;       // x * SEG
    logic          draining;    // row complete: reading the buffer out
    logic [AW-1:0] rd_ptr;

    // ---- output queue (2 entries; q0 is the head)
    logic [DW-1:0] q0, q1;
    logic [1:0]    cnt;
    logic          rd_inflight;  // a buffer read issued last cycle: its data arrives now
    logic [DW-1:0] rd_data;

    wire pop      = m_axis_tvalid && m_axis_tready;
    // entries after this cycle's pop, counting the read in flight, must leave one free
    wire [2:0] used = {1'b0, cnt} + {2'b0, rd_inflight} - {2'b0, pop};
    wire can_push = used < 3'd2;
    wire pass_seg = (ry == '0);
    assign s_axis_tready = !draining && (pass_seg ? (can_push && !rd_inflight) : 1'b1);
    wire in_fire  = s_axis_tvalid && s_axis_tready;
    wire rd_en    = draining && can_push;
    wire push_in  = in_fire && pass_seg;
    wire push     = push_in || rd_inflight;        // never both (s_axis_tready excludes it)
    wire [DW-1:0] push_data = rd_inflight ? rd_data : s_axis_tdata;
    wire wr_en    = in_fire && !pass_seg;
    /* verilator lint_off WIDTHEXPAND */
    /* verilator lint_off WIDTHTRUNC */
    wire [AW-1:0] wr_addr = AW'((ry - 1) * ROWB) + xbase + AW'(kk);
    /* verilator lint_on WIDTHTRUNC */
    /* verilator lint_on WIDTHEXPAND */

    assign m_axis_tvalid = cnt != 2'd0;
    assign m_axis_tdata  = q0;

    // buffer: one write port (input), one synchronous read port (drain)
    always_ff @(posedge clk) begin
        if (wr_en) buffer[wr_addr] <= s_axis_tdata;
        if (rd_en) rd_data <= buffer[rd_ptr];
    end

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            kk <= '0; ry <= '0; x <= '0; xbase <= '0;
            draining <= 1'b0; rd_ptr <= '0; rd_inflight <= 1'b0; cnt <= '0;
        end else begin
            rd_inflight <= rd_en;
            if (in_fire) begin
                if (kk == KW'(SEG - 1)) begin
                    kk <= '0;
                    if (ry == RW'(S - 1)) begin
                        ry <= '0;
                        if (x == XW'(W - 1)) begin
                            x <= '0; xbase <= '0;
                            draining <= 1'b1;
                        end else begin
                            x <= x + 1'b1; xbase <= xbase + AW'(SEG);
                        end
                    end else begin
                        ry <= ry + 1'b1;
                    end
                end else begin
                    kk <= kk + 1'b1;
                end
            end
            if (rd_en) begin
                if (rd_ptr == AW'(DEPTH - 1)) begin
                    rd_ptr <= '0;
                    draining <= 1'b0;
                end else begin
                    rd_ptr <= rd_ptr + 1'b1;
                end
            end
            // queue count
            case ({push, pop})
                2'b10: cnt <= cnt + 1'b1;
                2'b01: cnt <= cnt - 1'b1;
                default: ;
            endcase
        end
    end

    // queue data (no reset needed: guarded by cnt)
    always_ff @(posedge clk) begin
        case ({push, pop})
            2'b10: if (cnt == 2'd0) q0 <= push_data; else q1 <= push_data;
            2'b01: q0 <= q1;
            2'b11: if (cnt == 2'd1) q0 <= push_data; else begin q0 <= q1; q1 <= push_data; end
            default: ;
        endcase
    end
endmodule
