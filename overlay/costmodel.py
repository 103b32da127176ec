"""FINN-style cost model of the codec's dataflow accelerator (used by ``licfpga.overlay.plan``).

Every figure here is an *estimate* from formulas, not a synthesis result. Pure Python (no
torch) so that planning is instant. What is modelled and why:

Layers (one dataflow stage each, all stages run concurrently on different pixels)
  * conv k x k / stride s -> FINN sliding-window generator (SWG) + MVAU with
    ``MW = k*k*Cin``, ``MH = Cout``, one input vector per output pixel.
  * ConvTranspose2d k5/s2 -> the sub-pixel form of ``overlay/deconv.py``: one stride-1
    ``k' x k'`` conv (``k' = 3`` for CompressAI's layer) over the *input* pixels with
    ``s*s*Cout`` outputs, then depth-to-space: ``MW = k'*k'*Cin``, ``MH = s*s*Cout``,
    one vector per input pixel (36 of its MACs per Cin*Cout pair, 25 useful).
  * GDN / IGDN -> our RTL kernel ``hls/gdn/gdn_axis.sv``: ``C*C/PE`` cycles per pixel
    (measured in simulation), ``PE | C``. One instance never goes below ``C`` cycles per
    pixel, so beyond ``PE = C`` the planner replicates the kernel over pixels (a
    round-robin splitter/merger, *not built*: a planning assumption).
  * ReLU: free (folded into the requantisation of the MVAU output).

Throughput: ``cycles = vectors * (MW/SIMD) * (MH/PE)`` per frame (FINN ``get_exp_cycles``
of the MVAU), FINN's legality rules ``MW % SIMD == 0`` and ``MH % PE == 0``. The pipeline's
initiation interval is the slowest stage; ``fps = clock / max(cycles)``.

Resources per MVAU (FINN estimate formulas, FINN-R paper / FINN ``MVAU`` class, re-derived):
  * DSP: ``ceil(PE / macs_per_dsp) * SIMD`` -- finn-rtllib's RTL MVU (``mvu.sv``) packs
    ``NUM_LANES`` = 2 PEs of int8 x int8 into one DSP48E2 (signed activations included: the
    whole-g_s RTL simulation runs a PE = 2 MVU on IGDN outputs bit-exactly); the planner's
    default is that packing (2), ``macs_per_dsp = 1`` is FINN's HLS rule. No DSP for
    requantisation: the FINN flow requantises every MVAU output with a Thresholding_rtl layer
    (255 thresholds per channel, compared), as overlay/finn_flow.py builds it.
  * LUT: ``300 + 1.1*PE*((W+A)*(2*SIMD-1) + acc_bits)`` (adder tree + accumulator,
    multipliers in DSPs) + 400 per SWG (assumed) + the requantiser, a Thresholding_rtl layer:
    its thresholds in LUTRAM, ``ceil(MH * 255 * acc_bits / 64)`` (64 bit per LUT) +
    ``acc_bits * PE`` comparators (FINN's HLS-Thresholding term). FINN's own estimates of the
    compiled 1080p30 build's 14 threshold layers (results/resources/inputs_1080p30.json) sum to
    78 % of this formula's (per layer 41-109 %; FINN also minimises acc_bits with the weights):
    the planner is conservative here
    + weights in LUTRAM when the weight memory is at most 128 deep
    (``PE*SIMD*W*ceil(depth/64)``, FINN's distributed-memory term).
  * weights (int8), depth ``MW*MH/(PE*SIMD)``, width ``PE*SIMD*8``: FINN's RAMB18 formula,
    halved (rounded up) to BRAM36.
  * SWG line buffer: ``(k-1)`` input lines x ``W_in`` x ``Cin`` bytes (``k'-1`` for a
    sub-pixel conv, plus ``(s-1)`` output lines x ``W_out`` x ``Cout`` for depth-to-space),
    the formulas of ``licfpga analyze``; ``ceil(bits / 36 Kb)`` BRAM36, or
    ``ceil(bits / 288 Kb)`` URAM. While BRAM is over budget the largest memories move to
    UltraRAM: line buffers freely (they need no initial value), weight memories too unless
    disabled, but URAM cannot be initialised by the bitstream, so those weights must be
    written at run time (FINN ``runtime_writeable_weights``; listed per layer).
GDN / IGDN per instance (fitted to the Yosys figures of hls/gdn/README.md: C64/PE8 and
C192/PE16): DSP ``PE + 6`` (GDN) / ``PE + 8`` (IGDN); LUT ``353 + 50*PE + 18.7*C``;
BRAM36 ``max(ceil(16*C*C / 36 Kb), ceil(16*PE / 72))`` (gamma ROM capacity / port width).
Platform (AXI DMA without SG, SmartConnect, width converters, reset): a fixed 4000 LUT,
4 BRAM36 (assumed). Not modelled: inter-layer FIFOs, FFs, routing/timing closure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

WBITS = 8          # weight bits (int8 QAT)
ABITS = 8          # activation bits


def mvu_lanes(w_bits: int, a_bits: int) -> int:
    """PEs that finn-rtllib's RTL MVU (``mvu.sv``) packs into one DSP48E2: its
    ``NUM_LANES = 1 + (A_WIDTH - !NARROW - W) / (W + A - 1)`` with A_WIDTH = 27 on
    UltraScale+ (narrow weights not assumed: one lane fewer at worst). 2 for int8 x int8."""
    return 1 if w_bits >= 27 else 1 + (27 - 1 - w_bits) // (w_bits + a_bits - 1)


MVU_LANES = mvu_lanes(WBITS, ABITS)
BRAM36_BITS = 36 * 1024
URAM_BITS = 288 * 1024
SWG_LUT = 400      # sliding-window generator control (assumed)
THRESHOLD_STEPS = 255   # thresholds per channel of an 8-bit requantiser (FINN MultiThreshold)
PLATFORM = {"LUT": 4000, "DSP": 0, "BRAM36": 4, "URAM": 0}


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def next_divisor(n: int, current: int) -> int | None:
    """Smallest divisor of ``n`` above ``current`` (FINN folding steps), or None."""
    return next((d for d in divisors(n) if d > current), None)


def subpixel_kernel(k: int, stride: int) -> int:
    """k' of the sub-pixel form for CompressAI's padding (k//2, op = s-1).

    Equals ``ceil(k/s)`` when every phase starts at the same offset, which holds for
    odd k with p = k//2 (checked against overlay/deconv.py in tests/test_plan.py).
    """
    return -(-k // stride)


@dataclass
class Layer:
    name: str
    kind: str              # "conv" | "deconv" | "gdn" | "igdn"
    cin: int
    cout: int
    k: int
    stride: int
    h_in: int
    w_in: int
    pe: int = 1
    simd: int = 1
    replicas: int = 1      # GDN only: pixel-parallel kernel copies

    # ---- shape
    @property
    def h_out(self) -> int:
        if self.kind == "conv":
            return -(-self.h_in // self.stride)
        if self.kind == "deconv":
            return self.h_in * self.stride
        return self.h_in

    @property
    def w_out(self) -> int:
        if self.kind == "conv":
            return -(-self.w_in // self.stride)
        if self.kind == "deconv":
            return self.w_in * self.stride
        return self.w_in

    @property
    def is_gdn(self) -> bool:
        return self.kind in ("gdn", "igdn")

    @property
    def kernel(self) -> int:
        """Kernel size the SWG/MVAU sees (k' for a sub-pixel transposed conv)."""
        return subpixel_kernel(self.k, self.stride) if self.kind == "deconv" else self.k

    @property
    def mw(self) -> int:
        return self.cin if self.is_gdn else self.kernel ** 2 * self.cin

    @property
    def mh(self) -> int:
        if self.kind == "deconv":
            return self.stride ** 2 * self.cout
        return self.cout

    @property
    def vectors(self) -> int:
        """MVAU input vectors per frame (output pixels; input pixels for sub-pixel)."""
        if self.kind == "conv":
            return self.h_out * self.w_out
        return self.h_in * self.w_in

    @property
    def macs(self) -> int:
        return self.vectors * self.mw * self.mh

    # ---- folding
    def legal(self) -> bool:
        if self.is_gdn:
            return self.simd == 1 and self.cin % self.pe == 0 and self.replicas >= 1
        return self.mw % self.simd == 0 and self.mh % self.pe == 0 and self.replicas == 1

    @property
    def cycles(self) -> int:
        if self.is_gdn:
            return -(-self.vectors * self.cin * self.cin // (self.pe * self.replicas))
        return self.vectors * (self.mw // self.simd) * (self.mh // self.pe)

    def steps(self, limit: int = 8) -> list["Layer"]:
        """Next legal foldings, least added parallelism first ([] at full unfold).

        MVAU: every (PE, SIMD) with ``PE | MH``, ``SIMD | MW`` (FINN's rules) and a larger
        ``PE*SIMD`` than now, smallest product first (ties: larger SIMD, as FINN's
        SetFolding unfolds SIMD first). Stepping one factor at a time gets stuck on
        coarse divisors (MW = 75: SIMD 15 -> 25); the joint search reaches e.g. 6 x 25.
        GDN: the next divisor of C for PE, then one more pixel replica (round-robin: any count).
        """
        if self.is_gdn:
            pe = next_divisor(self.cin, self.pe)
            return [replace(self, pe=pe) if pe else replace(self, replicas=self.replicas + 1)]
        now = self.pe * self.simd
        pairs = sorted(((pe * simd, -simd, pe) for pe in divisors(self.mh)
                        for simd in divisors(self.mw) if pe * simd > now))
        return [replace(self, pe=pe, simd=-neg) for _, neg, pe in pairs[:limit]]

    # ---- resources (see module docstring)
    def compute(self, macs_per_dsp: int = MVU_LANES) -> dict:
        """DSP / LUT / BRAM36 of the arithmetic and weight memory (line buffer separate)."""
        if self.is_gdn:
            r = self.replicas
            dsp = self.pe + (6 if self.kind == "gdn" else 8)
            lut = 353 + 50 * self.pe + 18.7 * self.cin + (100 if r > 1 else 0)
            bram = max(math.ceil(16 * self.cin ** 2 / BRAM36_BITS), math.ceil(16 * self.pe / 72))
            return {"DSP": r * dsp, "LUT": int(r * lut), "BRAM36": r * bram}
        p, q = self.pe, self.simd
        dsp = math.ceil(p / macs_per_dsp) * q
        alpha = math.log2(self.mw) + WBITS + ABITS - 2       # signed activations
        acc_bits = min(32, math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1))
        lut = 300 + 1.1 * p * ((WBITS + ABITS) * (2 * q - 1) + acc_bits) + SWG_LUT
        lut += threshold_luts(self.mh, p, acc_bits)
        depth = self.mw * self.mh // (p * q)
        width = p * q * WBITS
        bram = 0
        if depth <= 128:
            lut += p * q * WBITS * math.ceil(depth / 64)
        else:
            bram = math.ceil(_finn_ramb18(depth, width) / 2)
        return {"DSP": dsp, "LUT": int(lut), "BRAM36": bram}

    def line_buffer_bits(self) -> int:
        if self.is_gdn:
            return 0
        bits = (self.kernel - 1) * self.w_in * self.cin * ABITS
        if self.kind == "deconv":
            bits += (self.stride - 1) * self.w_out * self.cout * ABITS
        return bits


def threshold_luts(channels: int, pe: int, acc_bits: int) -> int:
    """The requantiser FINN builds after an MVAU (Thresholding_rtl): ``channels * 255``
    thresholds of ``acc_bits`` in LUTRAM (64 bit per LUT) + ``acc_bits * pe`` comparators."""
    return math.ceil(channels * THRESHOLD_STEPS * acc_bits / 64) + acc_bits * pe


def _finn_ramb18(depth: int, width: int) -> int:
    """RAMB18s of one weight memory (FINN MVAU ``bram_estimation``, SDP mode, UG573)."""
    if width == 1:
        return math.ceil(depth / 16384)
    if width == 2:
        return math.ceil(depth / 8192)
    if width <= 4:
        return math.ceil(depth / 4096) * math.ceil(width / 4)
    if width <= 9:
        return math.ceil(depth / 2048) * math.ceil(width / 9)
    if width <= 18 or depth > 512:
        return math.ceil(depth / 1024) * math.ceil(width / 18)
    return math.ceil(depth / 512) * math.ceil(width / 36)


# ----------------------------------------------------------------------------- models

def hyperprior_layers(N: int, M: int, H: int, W: int, arch: str = "hyperprior") -> dict:
    """Layers of g_a, h_a, h_s, g_s for an H x W frame (already padded to a multiple of 64).

    ``hyperprior``: CompressAI ScaleHyperprior; ``mean-scale``: MeanScaleHyperprior, whose
    h_s widens to M, 3M/2 and outputs 2M channels (means and scales).
    """
    def conv(name, cin, cout, k, s, h, w):
        return Layer(name, "conv", cin, cout, k, s, h, w)

    def deconv(name, cin, cout, h, w):
        return Layer(name, "deconv", cin, cout, 5, 2, h, w)

    def gdn(name, c, h, w, inverse=False):
        return Layer(name, "igdn" if inverse else "gdn", c, c, 1, 1, h, w)

    h, w = H, W
    g_a = []
    for i, (cin, cout) in enumerate([(3, N), (N, N), (N, N), (N, M)]):
        g_a.append(conv(f"g_a.{2 * i}", cin, cout, 5, 2, h, w))
        h, w = h // 2, w // 2
        if i < 3:
            g_a.append(gdn(f"g_a.{2 * i + 1}", cout, h, w))
    h_a = [conv("h_a.0", M, N, 3, 1, h, w), conv("h_a.2", N, N, 5, 2, h, w),
           conv("h_a.4", N, N, 5, 2, h // 2, w // 2)]
    zh, zw = h // 4, w // 4
    if arch == "hyperprior":
        h_s = [deconv("h_s.0", N, N, zh, zw), deconv("h_s.2", N, N, 2 * zh, 2 * zw),
               conv("h_s.4", N, M, 3, 1, h, w)]
    elif arch == "mean-scale":
        h_s = [deconv("h_s.0", N, M, zh, zw), deconv("h_s.2", M, M * 3 // 2, 2 * zh, 2 * zw),
               conv("h_s.4", M * 3 // 2, 2 * M, 3, 1, h, w)]
    else:
        raise ValueError(f"unknown arch {arch!r}; available: hyperprior, mean-scale")
    g_s = []
    for i, (cin, cout) in enumerate([(M, N), (N, N), (N, N), (N, 3)]):
        g_s.append(deconv(f"g_s.{2 * i}", cin, cout, h, w))
        h, w = 2 * h, 2 * w
        if i < 3:
            g_s.append(gdn(f"g_s.{2 * i + 1}", cout, h, w, inverse=True))
    return {"g_a": g_a, "h_a": h_a, "h_s": h_s, "g_s": g_s}


SIDES = {"encoder": ("g_a", "h_a", "h_s"), "decoder": ("h_s", "g_s")}


def side_layers(side: str, N: int, M: int, H: int, W: int, arch: str = "hyperprior") -> list[Layer]:
    """Encoder = g_a + h_a + h_s (coding y needs the scales); decoder = h_s + g_s."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; available: {', '.join(SIDES)}")
    t = hyperprior_layers(N, M, H, W, arch)
    return [layer for part in SIDES[side] for layer in t[part]]


# ----------------------------------------------------------------------------- resources

@dataclass
class Usage:
    per_layer: list[dict]
    total: dict
    in_uram: list[str] = field(default_factory=list)   # "<layer>:lb" / "<layer>:w"

    def fits(self, budget: dict) -> bool:
        return all(self.total[k] <= budget[k] for k in budget)

    def over(self, budget: dict) -> list[str]:
        return [k for k in budget if self.total[k] > budget[k]]


def usage(layers: list[Layer], budget: dict, macs_per_dsp: int = MVU_LANES,
          uram_weights: bool = True) -> Usage:
    """Resources of a folded pipeline.

    Everything starts in BRAM; while BRAM is over budget the largest memories move to
    UltraRAM (largest first: each move frees the most BRAM per URAM spent). Line buffers
    always may; weight memories only with ``uram_weights`` (URAM has no bitstream
    initialisation, so such weights must be written at run time through AXI-Lite, FINN's
    ``runtime_writeable_weights``).
    """
    rows = []
    for layer in layers:
        r = layer.compute(macs_per_dsp)
        bits = layer.line_buffer_bits()
        r["LB_bits"] = bits
        r["LB_BRAM36"] = math.ceil(bits / BRAM36_BITS) if bits > 4096 else 0
        if 0 < bits <= 4096:        # tiny buffers: LUTRAM
            r["LUT"] += math.ceil(bits / 64)
        r["URAM"] = 0
        rows.append(r)
    total = dict(PLATFORM)
    for r in rows:
        total["DSP"] += r["DSP"]
        total["LUT"] += r["LUT"]
        total["BRAM36"] += r["BRAM36"] + r["LB_BRAM36"]
    # candidate moves: (BRAM36 freed, URAM needed, row, kind)
    moves = []
    for i, (layer, r) in enumerate(zip(layers, rows)):
        if r["LB_BRAM36"]:
            moves.append((r["LB_BRAM36"], math.ceil(r["LB_bits"] / URAM_BITS), i, "lb"))
        if uram_weights and r["BRAM36"] and not layer.is_gdn:
            depth = layer.mw * layer.mh // (layer.pe * layer.simd)
            width = layer.pe * layer.simd * WBITS
            moves.append((r["BRAM36"], math.ceil(width / 72) * math.ceil(depth / 4096), i, "w"))
    moved = []
    for freed, need, i, kind in sorted(moves, key=lambda m: (-m[0] / m[1], -m[0])):
        if total["BRAM36"] <= budget["BRAM36"]:
            break
        if total["URAM"] + need > budget["URAM"] or freed <= 0:
            continue
        total["BRAM36"] -= freed
        total["URAM"] += need
        rows[i]["URAM"] += need
        rows[i]["LB_BRAM36" if kind == "lb" else "BRAM36"] = 0
        moved.append(f"{layers[i].name}:{kind}")
    return Usage(rows, total, moved)


def budget_of(resources: dict, fraction: float) -> dict:
    """Usable share of DSP / LUT / BRAM36 / URAM (FFs are not modelled)."""
    return {k: int(resources[k] * fraction) for k in ("DSP", "LUT", "BRAM36", "URAM")}


# ----------------------------------------------------------------------------- folding

@dataclass
class Folding:
    layers: list[Layer]
    usage: Usage
    target_cycles: int
    limit: str            # "met" | "resources" | "throughput" | "no-fit"
    blocked: list = field(default_factory=list)

    @property
    def max_cycles(self) -> int:
        return max(layer.cycles for layer in self.layers)

    @property
    def meets(self) -> bool:
        return self.limit == "met"


def fold(layers: list[Layer], target_cycles: int, budget: dict, macs_per_dsp: int = MVU_LANES,
         uram_weights: bool = True) -> Folding:
    """Greedy FINN-style folding: unfold the bottleneck one legal step at a time.

    Returns "no-fit" when even PE = SIMD = 1 exceeds the budget. Otherwise stops when every stage meets ``target_cycles`` ("met"), when the bottleneck's next
    step would exceed the budget ("resources", the step is not taken), or when the
    bottleneck is fully unfolded ("throughput": one vector per cycle, no MMV in FINN).
    ``blocked`` names the resources the refused step would have exceeded.
    """
    layers = [replace(layer, pe=1, simd=1, replicas=1) for layer in layers]
    use = usage(layers, budget, macs_per_dsp, uram_weights)
    if not use.fits(budget):   # does not fit even fully folded (PE = SIMD = 1)
        return Folding(layers, use, target_cycles, "no-fit", use.over(budget))
    while True:
        i = max(range(len(layers)), key=lambda j: layers[j].cycles)
        if layers[i].cycles <= target_cycles:
            return Folding(layers, use, target_cycles, "met")
        steps = layers[i].steps()
        if not steps:
            return Folding(layers, use, target_cycles, "throughput")
        blocked = set()
        for step in steps:
            trial = layers[:i] + [step] + layers[i + 1:]
            trial_use = usage(trial, budget, macs_per_dsp, uram_weights)
            if trial_use.fits(budget):
                layers, use = trial, trial_use
                break
            blocked.update(trial_use.over(budget))
        else:
            return Folding(layers, use, target_cycles, "resources", sorted(blocked))
