// gdn_axis -- fixed-point GDN / IGDN (and simplified GDN1 / IGDN1) on AXI4-Stream.
//
// Arithmetic: bit-exact implementation of the golden model
// model/golden/gdn.py (gdn_int); the fixed-point spec lives in that file's docstring and
// in hls/gdn/README.md. Testbench: tests/hw/test_gdn_axis.py (cocotb + Verilator).
//
// Stream format: one pixel = C int8 channels, sent as C/PE beats of PE channels each;
// beat g carries channels g*PE .. g*PE+PE-1, channel g*PE+l in tdata[8*l +: 8].
// Output: the same format. m_axis_tlast is set on the last beat of a pixel if any beat of
// the corresponding input pixel had s_axis_tlast set.
//
// Architecture: double-buffered pixel buffer -> PE MAC lanes (output channels g*PE+l of
// group g; one input channel j per cycle; G[g*PE+l][j] from a ROM, activity x_j^2 or |x_j|
// shared by the lanes) -> one serial post-processing pipeline (beta, normalise, LUT,
// Newton, requantise; one channel per cycle) -> output FIFO. Output space is reserved
// per group (credits) before a group starts, so nothing inside ever stalls and no data
// can be lost or duplicated under back-pressure.
// Throughput: C*C/PE cycles per pixel (C/PE groups x C MAC cycles), steady state, with the
// source always valid and the sink always ready.
//
// ROM images ($readmemh) come from model/golden/gdn.py: write_memh(params, dir, PE).
`default_nettype none

module gdn_axis #(
    parameter int C          = 64,   // channels per pixel
    parameter int PE         = 8,    // channels per AXIS beat = parallel MAC lanes; C % PE == 0
    parameter int INVERSE    = 0,    // 0: GDN (divide), 1: IGDN (multiply)
    parameter int SIMPLIFIED = 0,    // 0: x^2 and sqrt (GDN), 1: |x| and no sqrt (GDN1)
    parameter int GAMMA_BITS = 16,   // u16 gamma
    parameter int ACC_BITS   = 32,   // u32 accumulator (even, 20..40)
    parameter GAMMA_FILE = "gamma.mem",
    parameter BETA_FILE  = "beta.mem",
    parameter SHIFT_FILE = "shift.mem",
    parameter LUT_FILE   = "lut.mem"
) (
    input  wire logic            clk,
    input  wire logic            rst_n,          // synchronous, active low
    input  wire logic [8*PE-1:0] s_axis_tdata,
    input  wire logic            s_axis_tvalid,
    output logic                 s_axis_tready,
    input  wire logic            s_axis_tlast,
    output logic [8*PE-1:0]      m_axis_tdata,
    output logic                 m_axis_tvalid,
    input  wire logic            m_axis_tready,
    output logic                 m_axis_tlast
);
    // ---------------------------------------------------------------- constants
    localparam bit SIMP     = SIMPLIFIED != 0;
    localparam bit INV      = INVERSE != 0;
    localparam int NG       = C / PE;                     // groups (beats) per pixel
    localparam int CW       = (C > 1) ? $clog2(C) : 1;
    localparam int GW       = (NG > 1) ? $clog2(NG) : 1;
    localparam int LW       = (PE > 1) ? $clog2(PE) : 1;
    localparam int ROM_D    = NG * C;                     // gamma ROM depth
    localparam int RAW      = (ROM_D > 1) ? $clog2(ROM_D) : 1;
    localparam int ACT_BITS = SIMP ? 8 : 15;        // |x| <= 128 (u8), x^2 <= 16384 (u15)
    localparam int PROD_BITS = GAMMA_BITS + ACT_BITS;
    localparam int MH = 18;                               // mantissa bits (spec)
    localparam int POST_LAT = 13;                         // serial element -> FIFO push (cycles)
    // enough output credits that the MAC engine never waits when the sink is always ready:
    // a group's beat is popped at most C + PE + POST_LAT + 8 cycles after its start.
    localparam int DEPTH = (C + PE + POST_LAT + 8 + C - 1) / C + 1;
    localparam int DW    = $clog2(DEPTH + 1);

    // synthesis-time parameter checks (elaboration errors)
    if (C % PE != 0) begin : g_err_pe
        $error("gdn_axis: PE must divide C");
    end
    if (ACC_BITS % 2 != 0 || ACC_BITS < 20 || ACC_BITS > 40) begin : g_err_acc
        $error("gdn_axis: ACC_BITS must be even and in [20, 40]");
    end
    if (PROD_BITS > ACC_BITS) begin : g_err_gamma
        $error("gdn_axis: GAMMA_BITS too wide for ACC_BITS");
    end

    // ---------------------------------------------------------------- ROMs
    logic [PE*GAMMA_BITS-1:0] gamma_rom [0:ROM_D-1];
    logic [ACC_BITS-1:0]      beta_rom  [0:C-1];
    logic [7:0]               shift_rom [0:C-1];
    initial begin
        $readmemh(GAMMA_FILE, gamma_rom);
        $readmemh(BETA_FILE, beta_rom);
        $readmemh(SHIFT_FILE, shift_rom);
    end

    // ---------------------------------------------------------------- A: input pixel buffer
    logic [2*C*8-1:0] xbuf;         // bank b, channel ch at [(b*C + ch)*8 +: 8]
    logic [1:0]       full;         // bank holds a complete pixel
    logic [1:0]       blast;        // OR of the pixel's input tlast
    logic             wbank;
    logic [GW-1:0]    wbeat;
    logic             wlast;        // tlast seen on an earlier beat of the pixel being written
    wire              s_fire = s_axis_tvalid && s_axis_tready;
    wire              s_pix_done = s_fire && (wbeat == GW'(NG - 1));

    assign s_axis_tready = !full[wbank];

    for (genvar b = 0; b < 2; b++) begin : g_bank
        for (genvar ch = 0; ch < C; ch++) begin : g_ch
            always_ff @(posedge clk)
                if (s_fire && wbank == b[0] && wbeat == GW'(ch / PE))
                    xbuf[(b*C + ch)*8 +: 8] <= s_axis_tdata[(ch % PE)*8 +: 8];
        end
    end

    // ---------------------------------------------------------------- B: MAC issue
    logic             rbank;
    logic [GW-1:0]    g;            // group being issued
    logic [CW-1:0]    j;            // input channel being issued
    logic [RAW-1:0]   ga;           // gamma ROM address = g*C + j
    logic [DW-1:0]    used;         // output beats reserved (in flight or in the FIFO)
    logic             pop;
    wire  issue   = full[rbank] && (j != '0 || used < DW'(DEPTH));
    wire  reserve = issue && j == '0;
    wire  j_end   = j == CW'(C - 1);
    wire  g_end   = g == GW'(NG - 1);
    wire  release_bank = issue && j_end && g_end;

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            full <= '0; blast <= '0; wbank <= 1'b0; wbeat <= '0; wlast <= 1'b0;
            rbank <= 1'b0; g <= '0; j <= '0; ga <= '0; used <= '0;
        end else begin
            if (s_fire) begin
                wbeat <= s_pix_done ? '0 : wbeat + 1'b1;
                wlast <= s_pix_done ? 1'b0 : (wlast | s_axis_tlast);
                if (s_pix_done) begin
                    wbank <= ~wbank;
                    blast[wbank] <= wlast | s_axis_tlast;
                end
            end
            // set and clear never hit the same bank: the writer only fills a non-full bank,
            // the engine only releases a full one.
            if (s_pix_done)   full[wbank] <= 1'b1;
            if (release_bank) begin
                full[rbank] <= 1'b0;
                rbank <= ~rbank;
            end
            if (issue) begin
                j  <= j_end ? '0 : j + 1'b1;
                ga <= (ga == RAW'(ROM_D - 1)) ? '0 : ga + 1'b1;
                if (j_end) g <= g_end ? '0 : g + 1'b1;
            end
            used <= used + DW'(reserve) - DW'(pop);
        end
    end

    // S1: ROM read, pixel buffer read
    logic                     v1, first1, last1, plast1;
    logic [PE*GAMMA_BITS-1:0] gw1;
    logic [7:0]               xj1;
    logic [PE*8-1:0]          xs1;
    always_ff @(posedge clk) begin
        gw1    <= gamma_rom[ga];
        xj1    <= xbuf[({1'b0, rbank} * C + 32'(j)) * 8 +: 8];
        xs1    <= xbuf[({1'b0, rbank} * C + g * PE) * 8 +: PE * 8];
        first1 <= j == '0;
        last1  <= j_end;
        plast1 <= g_end && blast[rbank];
        v1     <= rst_n && issue;
    end

    // S2: activity a_j = x_j^2 (u15) or |x_j| (u8), shared by all lanes
    logic                     v2, first2, last2, plast2;
    logic [PE*GAMMA_BITS-1:0] gw2;
    logic [ACT_BITS-1:0]      act2;
    logic [PE*8-1:0]          xs2;
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [15:0] sq1  = $signed(xj1) * $signed(xj1);             // <= 16384 (bit 15 is 0)
    /* verilator lint_on UNUSEDSIGNAL */
    wire        [7:0]  abs1 = xj1[7] ? 8'(~xj1 + 8'd1) : xj1;          // |-128| = 128
    always_ff @(posedge clk) begin
        gw2 <= gw1; xs2 <= xs1; first2 <= first1; last2 <= last1; plast2 <= plast1;
        act2 <= SIMP ? ACT_BITS'(abs1) : ACT_BITS'(sq1);
        v2 <= rst_n && v1;
    end

    // S3: PE products G * a (u31); S4: PE accumulators (u32, cannot overflow: check_ranges)
    logic                     v3, first3, last3, plast3;
    logic [PE*8-1:0]          xs3;
    logic [PE*PROD_BITS-1:0]  prod3;
    logic [PE*ACC_BITS-1:0]   acc4;
    logic                     done4, plast4;
    logic [PE*8-1:0]          xs4;
    for (genvar l = 0; l < PE; l++) begin : g_lane
        always_ff @(posedge clk) begin
            prod3[l*PROD_BITS +: PROD_BITS] <= gw2[l*GAMMA_BITS +: GAMMA_BITS] * act2;
            if (v3)
                acc4[l*ACC_BITS +: ACC_BITS] <= ACC_BITS'(prod3[l*PROD_BITS +: PROD_BITS])
                    + (first3 ? '0 : acc4[l*ACC_BITS +: ACC_BITS]);
        end
    end
    always_ff @(posedge clk) begin
        xs3 <= xs2; first3 <= first2; last3 <= last2; plast3 <= plast2;
        v3 <= rst_n && v2;
        done4 <= rst_n && v3 && last3;
        if (v3 && last3) begin xs4 <= xs3; plast4 <= plast3; end
    end

    // ---------------------------------------------------------------- C: serialiser
    // A finished group (PE sums) is loaded here and leaves one channel per cycle. Loads are
    // >= C >= PE cycles apart, so a load never meets unfinished elements.
    logic [PE*ACC_BITS-1:0] ser_acc;
    logic [PE*8-1:0]        ser_x;
    logic [LW:0]            ser_cnt;
    logic                   ser_plast;
    logic [CW-1:0]          ch;                 // channel of the element leaving now
    wire                    e_v = ser_cnt != '0;
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            ser_cnt <= '0; ch <= '0;
        end else if (done4) begin
            ser_acc <= acc4; ser_x <= xs4; ser_plast <= plast4;
            ser_cnt <= (LW + 1)'(PE);
        end else if (e_v) begin
            ser_acc <= ser_acc >> ACC_BITS;
            ser_x   <= ser_x >> 8;
            ser_cnt <= ser_cnt - 1'b1;
        end
        if (rst_n && e_v) ch <= (ch == CW'(C - 1)) ? '0 : ch + 1'b1;
    end

    // ---------------------------------------------------------------- D: post pipeline
    // Metadata travelling with each element: valid, last lane of a beat, pixel tlast.
    localparam int NST = POST_LAT - 1;             // stages P1..P12 (P13 = push register)
    logic [NST:1] pv, plane, ptl;
    always_ff @(posedge clk) begin
        pv    <= {pv[NST-1:1], rst_n && e_v};
        plane <= {plane[NST-1:1], ser_cnt == (LW + 1)'(1)};
        ptl   <= {ptl[NST-1:1], ser_plast};
    end

    // P1: beta / shift-base ROM reads
    logic [ACC_BITS-1:0] sum_1, beta_1;
    logic signed [7:0]   q_1, sb_1;
    always_ff @(posedge clk) begin
        sum_1  <= ser_acc[ACC_BITS-1:0];
        q_1    <= ser_x[7:0];
        beta_1 <= beta_rom[ch];
        sb_1   <= shift_rom[ch];
    end
    // P2: acc = B + sum (u32, >= 1)
    logic [ACC_BITS-1:0] acc_2;
    logic signed [7:0]   q_2, sb_2;
    always_ff @(posedge clk) begin
        acc_2 <= sum_1 + beta_1;
        q_2 <= q_1; sb_2 <= sb_1;
    end
    // P3: normalise: e = clz (even for GDN), mh = (acc << e) >> (A - 18)
    function automatic [6:0] clz(input logic [ACC_BITS-1:0] v);
        clz = 7'(ACC_BITS);
        for (int k = 0; k < ACC_BITS; k++)
            if (v[k]) clz = 7'(ACC_BITS - 1 - k);
    endfunction
    wire  [6:0]          lz_2 = clz(acc_2);
    wire  [6:0]          e_2  = SIMP ? lz_2 : {lz_2[6:1], 1'b0};
    /* verilator lint_off UNUSEDSIGNAL */
    wire  [ACC_BITS-1:0] m_2  = acc_2 << e_2;          // low A-18 bits truncated (spec)
    /* verilator lint_on UNUSEDSIGNAL */
    logic [MH-1:0]       mh_3;
    logic signed [9:0]   sh_3;                  // raw output shift SB -/+ eh, eh = e/2 or e
    logic signed [7:0]   q_3;
    wire  [6:0]          eh_2 = SIMP ? e_2 : {1'b0, e_2[6:1]};
    always_ff @(posedge clk) begin
        mh_3 <= m_2[ACC_BITS-1 -: MH];
        sh_3 <= INV ? 10'(sb_2) + 10'(eh_2) : 10'(sb_2) - 10'(eh_2);
        q_3  <= q_2;
    end
    // P4..P10: f = core(mh) (u18), latency gdn_core::LAT = 7; q and sh wait beside it
    localparam int CORE_LAT = 7;
    logic [17:0]         f_10;
    logic signed [9:0]   sh_d [1:CORE_LAT];
    logic signed [7:0]   q_d  [1:CORE_LAT];
    gdn_core #(.INVERSE(INVERSE), .SIMPLIFIED(SIMPLIFIED), .LUT_FILE(LUT_FILE)) u_core (
        .clk(clk), .mh_i(mh_3), .f_o(f_10));
    always_ff @(posedge clk) begin
        sh_d[1] <= sh_3;
        q_d[1]  <= q_3;
        for (int k = 2; k <= CORE_LAT; k++) begin
            sh_d[k] <= sh_d[k-1];
            q_d[k]  <= q_d[k-1];
        end
    end
    wire signed [9:0]    sh_10 = sh_d[CORE_LAT];
    wire signed [7:0]    q_10  = q_d[CORE_LAT];
    // P11: p = q*f (s26), sh clamped to [0, 27]
    logic signed [26:0]  p_11;
    logic [4:0]          sh_11;
    always_ff @(posedge clk) begin
        p_11  <= 27'(q_10) * $signed({9'd0, f_10});
        sh_11 <= (sh_10 < 0) ? 5'd0 : (sh_10 > 10'sd27) ? 5'd27 : sh_10[4:0];
    end
    // P12: y = sat8((p + round) >>> sh), round half up
    wire signed [27:0]   rnd_11 = (sh_11 == 5'd0) ? 28'sd0 : (28'sd1 <<< (sh_11 - 5'd1));
    wire signed [27:0]   num_11 = 28'(p_11) + rnd_11;
    wire signed [27:0]   yw_11  = num_11 >>> sh_11;
    logic [7:0]          y_12;
    always_ff @(posedge clk)
        y_12 <= (yw_11 > 28'sd127) ? 8'h7f : (yw_11 < -28'sd128) ? 8'h80 : yw_11[7:0];

    // P13: collect PE lanes into a beat
    /* verilator lint_off UNUSEDSIGNAL */
    logic [PE*8-1:0]     obeat;                  // its lowest lane shifts out unused
    /* verilator lint_on UNUSEDSIGNAL */
    logic [PE*8-1:0]     obeat_next;
    if (PE == 1) begin : g_ob1
        assign obeat_next = y_12;
    end else begin : g_obn
        assign obeat_next = {y_12, obeat[PE*8-1:8]};
    end
    logic                push;
    logic [PE*8-1:0]     push_data;
    logic                push_last;
    always_ff @(posedge clk) begin
        if (pv[12]) obeat <= obeat_next;
        push      <= rst_n && pv[12] && plane[12];
        push_data <= obeat_next;
        push_last <= ptl[12];
    end

    // ---------------------------------------------------------------- E: output FIFO
    localparam int FAW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    logic [PE*8:0]       fifo [0:DEPTH-1];
    logic [FAW-1:0]      rd, wr;
    logic [DW-1:0]       cnt;
    assign m_axis_tvalid = cnt != '0;
    assign {m_axis_tlast, m_axis_tdata} = fifo[rd];
    assign pop = m_axis_tvalid && m_axis_tready;
    always_ff @(posedge clk) begin
        if (push) fifo[wr] <= {push_last, push_data};
        if (!rst_n) begin
            rd <= '0; wr <= '0; cnt <= '0;
        end else begin
            if (push) wr <= (wr == FAW'(DEPTH - 1)) ? '0 : wr + 1'b1;
            if (pop)  rd <= (rd == FAW'(DEPTH - 1)) ? '0 : rd + 1'b1;
            cnt <= cnt + DW'(push) - DW'(pop);
        end
    end

`ifndef SYNTHESIS
    // simulation-only invariants (credits make these impossible)
    always_ff @(posedge clk) if (rst_n) begin
        if (push && !pop && cnt == DW'(DEPTH)) $error("gdn_axis: output FIFO overflow");
        if (done4 && ser_cnt > (LW + 1)'(1)) $error("gdn_axis: serialiser overrun");
    end
`endif
endmodule


// gdn_core -- the (r)sqrt / reciprocal core of the golden model (model/golden/gdn.py, core()):
// mh (u18, normalised mantissa m = mh / 2^18) -> f (u18). Fully pipelined, one input per
// cycle, latency LAT = 7 cycles, no stall. Checked exhaustively over all mh by
// tests/hw/test_gdn_axis.py (gdn_core_tb).
/* verilator lint_off DECLFILENAME */
module gdn_core #(
    parameter int INVERSE    = 0,
    parameter int SIMPLIFIED = 0,
    parameter LUT_FILE = "lut.mem"
) (
    input  wire logic        clk,
    input  wire logic [17:0] mh_i,
    output logic      [17:0] f_o
);
    localparam bit SIMP = SIMPLIFIED != 0;
    localparam bit INV  = INVERSE != 0;
    logic [16:0] lut_rom [0:63];                // 64 x u17 seeds, Q1.16
    initial $readmemh(LUT_FILE, lut_rom);

    // C1: seed r0 = LUT[mh >> 12]
    logic [16:0] r0_1;
    logic [17:0] mh_1;
    always_ff @(posedge clk) begin
        r0_1 <= lut_rom[mh_i[17:12]];
        mh_1 <= mh_i;
    end
    // C2: GDN: r0*r0 (u34); simplified: mh*r0 (u35)
    logic [35:0] pa_2;
    logic [16:0] r0_2;
    logic [17:0] mh_2;
    always_ff @(posedge clk) begin
        pa_2 <= SIMP ? 36'(mh_1) * 36'(r0_1) : 36'(r0_1) * 36'(r0_1);
        r0_2 <= r0_1; mh_2 <= mh_1;
    end
    // C3: GDN: r0sq = (r0*r0 + 2^15) >> 16 (u18), mh*r0sq (u36); simplified: pass
    wire  [17:0] r0sq_2 = 18'((pa_2 + 36'd32768) >> 16);
    logic [35:0] pb_3;
    logic [16:0] r0_3;
    logic [17:0] mh_3;
    always_ff @(posedge clk) begin
        pb_3 <= SIMP ? pa_2 : 36'(mh_2) * 36'(r0sq_2);
        r0_3 <= r0_2; mh_3 <= mh_2;
    end
    // C4: th = (pb + 2^17) >> 18 (u18); d = 3*2^16 - th (GDN) or 2^17 - th (simplified)
    wire  [17:0] th_3 = 18'((pb_3 + 36'd131072) >> 18);
    logic [17:0] d_4;
    logic [16:0] r0_4;
    logic [17:0] mh_4;
    always_ff @(posedge clk) begin
        d_4 <= (SIMP ? 18'd131072 : 18'd196608) - th_3;
        r0_4 <= r0_3; mh_4 <= mh_3;
    end
    // C5: r0*d (u35)
    logic [35:0] pd_5;
    logic [17:0] mh_5;
    always_ff @(posedge clk) begin
        pd_5 <= 36'(r0_4) * 36'(d_4);
        mh_5 <= mh_4;
    end
    // C6: r1 = (r0*d + 2^16) >> 17 (GDN) or (r0*d + 2^15) >> 16 (simplified), u18;
    //     IGDN: mh*r1 (u36)
    wire  [17:0] r1_5 = SIMP ? 18'((pd_5 + 36'd32768) >> 16)
                             : 18'((pd_5 + 36'd65536) >> 17);
    logic [17:0] r1_6;
    logic [35:0] pe_6;
    logic [17:0] mh_6;
    always_ff @(posedge clk) begin
        r1_6 <= r1_5;
        pe_6 <= 36'(mh_5) * 36'(r1_5);
        mh_6 <= mh_5;
    end
    // C7: f = 1/sqrt(m) | 1/m (r1), sqrt(m) = (mh*r1 + 2^17) >> 18, or m (mh)
    always_ff @(posedge clk) begin
        if (!INV)       f_o <= r1_6;
        else if (SIMP)  f_o <= mh_6;
        else            f_o <= 18'((pe_6 + 36'd131072) >> 18);
    end
endmodule
/* verilator lint_on DECLFILENAME */

`default_nettype wire
