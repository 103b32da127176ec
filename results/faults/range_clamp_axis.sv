// range_clamp_axis -- the range-clamp mitigation of results/faults/README.md, for the cost count.
// One FINN-style stream of C channels (PE 8-bit lanes per beat, channels g*PE .. g*PE+PE-1 in
// beat g) in, the same stream out with every value clipped to its channel's [lo, hi] (from the
// validation images); one register stage, back-pressure passes through.
// ROM images ($readmemh): LO_FILE / HI_FILE, C/PE words of PE*8 bits, lane l of word g =
// channel g*PE + l (two's complement when SIGNED).
`default_nettype none
module range_clamp_axis #(
    parameter int C = 32,
    parameter int PE = 8,
    parameter int SIGNED = 1,
    parameter LO_FILE = "lo.mem",
    parameter HI_FILE = "hi.mem"
) (
    input  wire logic            clk,
    input  wire logic            rst_n,
    input  wire logic [8*PE-1:0] s_axis_tdata,
    input  wire logic            s_axis_tvalid,
    output logic                 s_axis_tready,
    output logic [8*PE-1:0]      m_axis_tdata,
    output logic                 m_axis_tvalid,
    input  wire logic            m_axis_tready
);
    localparam int NG = C / PE;
    localparam int GW = (NG > 1) ? $clog2(NG) : 1;
    logic [8*PE-1:0] lo_rom [0:NG-1];
    logic [8*PE-1:0] hi_rom [0:NG-1];
    initial begin
        $readmemh(LO_FILE, lo_rom);
        $readmemh(HI_FILE, hi_rom);
    end
    logic [GW-1:0] g;
    wire fire = s_axis_tvalid && s_axis_tready;
    assign s_axis_tready = !m_axis_tvalid || m_axis_tready;
    logic [8*PE-1:0] clamped;
    always_comb begin
        for (int l = 0; l < PE; l++) begin
            logic [7:0] v, lo, hi;
            logic below, above;
            v = s_axis_tdata[8*l +: 8];
            lo = lo_rom[g][8*l +: 8];
            hi = hi_rom[g][8*l +: 8];
            below = (SIGNED != 0) ? ($signed(v) < $signed(lo)) : (v < lo);
            above = (SIGNED != 0) ? ($signed(v) > $signed(hi)) : (v > hi);
            clamped[8*l +: 8] = below ? lo : (above ? hi : v);
        end
    end
    always_ff @(posedge clk) begin
        if (!rst_n) begin
            g <= '0;
            m_axis_tvalid <= 1'b0;
        end else begin
            if (fire) g <= (g == GW'(NG - 1)) ? '0 : g + 1'b1;
            if (s_axis_tready) m_axis_tvalid <= s_axis_tvalid;
        end
        if (fire) m_axis_tdata <= clamped;
    end
endmodule
`default_nettype wire
