// Exhaustive self-checking sweep of gdn_core (hls/gdn/gdn_axis.sv) against the golden
// model's core() (model/golden/gdn.py): every mh in [2^16, 2^18) goes through the four
// variants (GDN, IGDN, GDN1, IGDN1; the simplified ones only for mh >= 2^17, their domain),
// one mh per cycle; expected values come from $readmemh images written by the test.
// Driven by the cocotb test gdn_core_sweep in tests/hw/test_gdn_axis.py.
`default_nettype none

module gdn_core_tb #(
    parameter LUT_RSQRT = "lut_rsqrt.mem",
    parameter LUT_RECIP = "lut_recip.mem",
    parameter EXP_GDN   = "exp_gdn.mem",
    parameter EXP_IGDN  = "exp_igdn.mem",
    parameter EXP_GDN1  = "exp_gdn1.mem",
    parameter EXP_IGDN1 = "exp_igdn1.mem"
) (
    input  wire logic  clk,
    input  wire logic  rst_n,
    output logic        done,
    output logic [31:0] errors,
    output logic [31:0] checked,
    output logic [17:0] bad_mh,      // first mismatch
    output logic [1:0]  bad_variant,
    output logic [17:0] bad_got,
    output logic [17:0] bad_exp
);
    localparam int N   = 3 << 16;    // mh - 2^16 in [0, N)
    localparam int LAT = 7;          // gdn_core latency
    logic [17:0] exp0 [0:N-1];
    logic [17:0] exp1 [0:N-1];
    logic [17:0] exp2 [0:N-1];
    logic [17:0] exp3 [0:N-1];
    initial begin
        $readmemh(EXP_GDN, exp0);
        $readmemh(EXP_IGDN, exp1);
        $readmemh(EXP_GDN1, exp2);
        $readmemh(EXP_IGDN1, exp3);
    end

    logic [17:0] mh;
    logic        issuing;
    logic [18:0] issued;
    wire  [17:0] f [0:3];
    gdn_core #(.INVERSE(0), .SIMPLIFIED(0), .LUT_FILE(LUT_RSQRT)) u_gdn   (.clk(clk), .mh_i(mh), .f_o(f[0]));
    gdn_core #(.INVERSE(1), .SIMPLIFIED(0), .LUT_FILE(LUT_RSQRT)) u_igdn  (.clk(clk), .mh_i(mh), .f_o(f[1]));
    gdn_core #(.INVERSE(0), .SIMPLIFIED(1), .LUT_FILE(LUT_RECIP)) u_gdn1  (.clk(clk), .mh_i(mh), .f_o(f[2]));
    gdn_core #(.INVERSE(1), .SIMPLIFIED(1), .LUT_FILE(LUT_RECIP)) u_igdn1 (.clk(clk), .mh_i(mh), .f_o(f[3]));

    logic [LAT:1]  v_d;
    logic [17:0]   mh_d [1:LAT];
    always_ff @(posedge clk) begin
        v_d     <= rst_n ? {v_d[LAT-1:1], issuing} : '0;
        mh_d[1] <= mh;
        for (int k = 2; k <= LAT; k++) mh_d[k] <= mh_d[k-1];
    end

    wire  [17:0] mo  = mh_d[LAT];
    wire  [17:0] idx = mo - 18'h10000;
    logic [17:0] ex [0:3];
    logic [2:0]  nbad, nchk;
    logic [1:0]  kbad;
    always_comb begin
        ex[0] = exp0[idx]; ex[1] = exp1[idx]; ex[2] = exp2[idx]; ex[3] = exp3[idx];
        nbad = '0; nchk = '0; kbad = '0;
        for (int k = 3; k >= 0; k--) begin
            if (k < 2 || mo[17]) begin            // simplified: domain mh >= 2^17
                nchk = nchk + 1'b1;
                if (f[k] != ex[k]) begin
                    nbad = nbad + 1'b1;
                    kbad = 2'(k);                  // lowest failing variant
                end
            end
        end
    end

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            mh <= 18'h10000; issuing <= 1'b1; issued <= '0;
            done <= 1'b0; errors <= '0; checked <= '0; bad_mh <= '0;
            bad_variant <= '0; bad_got <= '0; bad_exp <= '0;
        end else begin
            if (issuing) begin
                mh <= mh + 1'b1;
                issued <= issued + 1'b1;
                if (issued == 19'(N - 1)) issuing <= 1'b0;
            end
            if (v_d[LAT]) begin
                checked <= checked + 32'(nchk);
                errors  <= errors + 32'(nbad);
                if (errors == '0 && nbad != '0) begin
                    bad_mh <= mo; bad_variant <= kbad; bad_got <= f[kbad]; bad_exp <= ex[kbad];
                end
            end
            if (!issuing && v_d == '0) done <= 1'b1;
        end
    end
endmodule

`default_nettype wire
