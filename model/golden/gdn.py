"""Bit-exact integer golden model of the hardware GDN / IGDN (NumPy only, no torch).

This file is the single source of truth for the fixed-point arithmetic of the GDN kernel
``hls/gdn/gdn_axis.sv``: the RTL implements exactly the integer operations below (same
widths, same rounding, same saturation) and ``tests/hw/test_gdn_axis.py`` checks it
bit for bit against :func:`gdn_int`. The float reference is :func:`gdn_float`
(``tests/test_gdn_golden.py`` checks it against ``compressai.layers.GDN``).

Float layer (CompressAI, ``i`` = output channel, ``j`` = input channel)::

    norm[i] = beta[i] + sum_j gamma[i, j] * x[j]**p      p = 2 (GDN), p = 1 with |x| (simplified)
    GDN:  y[i] = x[i] / norm[i]**(p/2)     IGDN: y[i] = x[i] * norm[i]**(p/2)

Deployment: ``x = s_in * q`` with ``q`` int8 (per-tensor scale ``s_in``); ``y ~= s_out * y_q``
with ``y_q`` int8 (per-tensor scale ``s_out``).

Fixed-point spec (defaults ``gamma_bits=16``, ``acc_bits=A=32``; every width is checked by
an assert in the code or proved by :func:`check_ranges` / the exhaustive LUT test):

1. activity   ``a[j] = q[j]**2`` in [0, 16384] (u15; "int16") -- simplified: ``|q[j]|`` (u8).
2. gamma      ``G[i, j]`` unsigned, ``gamma_bits`` wide (u16):
              ``G = rnd(gamma * s_in**p * rho**p * 2**(p*t[i]))``, ``rho = s_out/s_in`` (GDN)
              or ``s_in/s_out`` (IGDN), ``t[i]`` a per-output-channel integer exponent.
   beta       ``B[i] = max(1, rnd(beta * rho**p * 2**(p*t[i])))``, unsigned, < 2**A.
   ``rnd`` is round-half-up ``floor(v + 0.5)``. ``t[i]`` is the largest exponent with
   ``max_j G[i, j] <= 2**gamma_bits - 1`` and the worst case ``B[i] + a_max * sum_j G[i, j]
   <= 2**A - 1`` (a_max = 16384 resp. 128), so the accumulator provably never overflows.
3. accumulate ``acc[i] = B[i] + sum_j G[i, j] * a[j]``: products u31 (u24 simplified),
   unsigned A-bit accumulator (u32), acc >= 1 because B >= 1. acc is the normaliser in a
   per-channel fixed-point scale: GDN  acc ~= norm * rho**2 * 4**t.
4. normalise  ``e = clz_A(acc)`` rounded down to even (GDN/IGDN: sqrt needs an even shift)
   or ``clz_A(acc)`` (simplified); ``M = acc << e`` (u_A, top bit(s) set);
   ``mh = M >> (A - 18)`` (u18, truncation), ``m = mh / 2**18`` in [1/4, 1) (resp. [1/2, 1)).
5. core on mh only (u18 -> u18), LUT of 64 x u17 indexed by ``mh >> 12``, one Newton step,
   every rounding round-half-up by add + shift:
   rsqrt (GDN/IGDN): ``r0 = LUT[mh>>12]`` (Q1.16 ~ 1/sqrt(m))
        ``r0sq = (r0*r0 + 2**15) >> 16`` (u34 -> u18, Q2.16)
        ``th = (mh*r0sq + 2**17) >> 18`` (u36 -> u18, Q2.16, ~1.0)
        ``d = 3*2**16 - th`` (in (0, 2**18), Q2.16)
        ``r1 = (r0*d + 2**16) >> 17`` (u35 -> u18, <= 2**17, Q1.16 = 1/sqrt(m))
   IGDN: ``f = (mh*r1 + 2**17) >> 18`` (u36 -> u17, Q0.16 = sqrt(m)); GDN: ``f = r1``.
   reciprocal (simplified GDN): ``r0 = LUT[mh>>12]`` (Q1.16 ~ 1/m),
        ``th = (mh*r0 + 2**17) >> 18`` (u35 -> u18), ``d = 2**17 - th`` (in (0, 2**17]),
        ``r1 = (r0*d + 2**15) >> 16`` (u18, Q1.16 = 1/m); f = r1; simplified IGDN: f = mh.
   Max relative error of f (exhaustive over all mh): < 2**-11 (see tests).
6. output     ``p = q[i] * f`` (s8 x u18 -> s26, |p| <= 2**25),
              ``sh = SB[i] - eh`` (GDN, simplified GDN) or ``SB[i] + eh`` (IGDN, simplified IGDN),
              ``eh = e/2`` (GDN/IGDN) or ``e`` (simplified); ``SB[i]`` is a per-channel s8
              shift base (see :func:`quantize_gdn_params`). ``sh`` is clamped to [0, 27]
              (lossless: for sh >= 27 the result is 0 anyway since |p| <= 2**25, and for
              sh <= 0 |p| >= 2**15 unless p == 0, so the result saturates anyway).
              ``y = sat8((p + (2**(sh-1) if sh > 0 else 0)) >> sh)`` -- arithmetic shift,
              i.e. round half up (towards +inf), saturated to [-128, 127].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ---- fixed constants of the spec -------------------------------------------------------
MH_BITS = 18           # normalised mantissa kept for the (r)sqrt / reciprocal core
LUT_ADDR_BITS = 6      # LUT indexed by mh >> (MH_BITS - LUT_ADDR_BITS): 64 entries
LUT_BITS = 17          # u17 entries, Q1.16
F_BITS = 18            # f (core output) is u18
SH_MAX = 27            # output shift clamp (lossless, see module docstring)
SB_MIN, SB_MAX = -64, 63   # per-channel shift base, stored as s8
Q_MIN, Q_MAX = -128, 127   # int8
VARIANTS = ("gdn", "simplified")


def _rnd(v: np.ndarray) -> np.ndarray:
    """Round half up of a float array to int64 (used only when quantising parameters)."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5).astype(np.int64)


def _fits_unsigned(a: np.ndarray, bits: int) -> bool:
    a = np.asarray(a)
    return bool(a.size == 0 or (a.min() >= 0 and a.max() <= (1 << bits) - 1))


def activity_max(variant: str) -> int:
    """Largest activity a = q**2 (GDN) or |q| (simplified) over int8 q (q = -128)."""
    return 128 * 128 if variant == "gdn" else 128


# ---- LUT -------------------------------------------------------------------------------
def core_lut(variant: str) -> np.ndarray:
    """The 64 x u17 seed table, indexed by ``mh >> 12``; unused entries are 0.

    Entry k covers m in [k/64, (k+1)/64); the seed is the minimax constant of the
    segment for the relative error of the seed itself (r0*sqrt(m_lo) - 1 = 1 - r0*sqrt(m_hi)),
    rounded half up to Q1.16.
    """
    lut = np.zeros(1 << LUT_ADDR_BITS, dtype=np.int64)
    n = 1 << LUT_ADDR_BITS
    if variant == "gdn":       # 1/sqrt(m), m in [1/4, 1): k = 16..63
        for k in range(n // 4, n):
            lo, hi = k / n, (k + 1) / n
            lut[k] = int(np.floor(2.0 / (np.sqrt(lo) + np.sqrt(hi)) * 2**16 + 0.5))
    elif variant == "simplified":  # 1/m, m in [1/2, 1): k = 32..63
        for k in range(n // 2, n):
            lo, hi = k / n, (k + 1) / n
            lut[k] = int(np.floor(2.0 / (lo + hi) * 2**16 + 0.5))
    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    assert _fits_unsigned(lut, LUT_BITS)
    return lut


# ---- parameters ------------------------------------------------------------------------
@dataclass(frozen=True)
class GDNIntParams:
    """Quantised GDN parameters: everything the hardware needs, as integers.

    ``gamma[i, j]`` (i = output channel) u``gamma_bits``; ``beta[i]`` u``acc_bits``, >= 1;
    ``shift[i]`` s8 shift base SB[i]; ``lut`` 64 x u17. Scales are kept for reference.
    """

    inverse: bool
    variant: str
    gamma: np.ndarray
    beta: np.ndarray
    shift: np.ndarray
    lut: np.ndarray
    in_scale: float
    out_scale: float
    gamma_bits: int = 16
    acc_bits: int = 32
    exponent: np.ndarray = field(default=None, repr=False)  # t[i], informative only

    @property
    def channels(self) -> int:
        return int(self.beta.shape[0])

    def to_json(self) -> dict:
        return {
            "format": "licfpga-gdn-int/1",
            "variant": self.variant, "inverse": bool(self.inverse),
            "channels": self.channels,
            "gamma_bits": self.gamma_bits, "acc_bits": self.acc_bits,
            "in_scale": float(self.in_scale), "out_scale": float(self.out_scale),
            "gamma": self.gamma.astype(int).tolist(), "beta": self.beta.astype(int).tolist(),
            "shift": self.shift.astype(int).tolist(), "lut": self.lut.astype(int).tolist(),
            "exponent": None if self.exponent is None else self.exponent.astype(int).tolist(),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    @classmethod
    def from_json(cls, d: dict | str) -> "GDNIntParams":
        if isinstance(d, str):
            d = json.loads(d)
        if d.get("format") != "licfpga-gdn-int/1":
            raise ValueError("not a licfpga-gdn-int/1 record")
        p = cls(
            inverse=bool(d["inverse"]), variant=d["variant"],
            gamma=np.asarray(d["gamma"], dtype=np.int64), beta=np.asarray(d["beta"], dtype=np.int64),
            shift=np.asarray(d["shift"], dtype=np.int64), lut=np.asarray(d["lut"], dtype=np.int64),
            in_scale=float(d["in_scale"]), out_scale=float(d["out_scale"]),
            gamma_bits=int(d["gamma_bits"]), acc_bits=int(d["acc_bits"]),
            exponent=None if d.get("exponent") is None else np.asarray(d["exponent"], dtype=np.int64),
        )
        check_ranges(p)
        return p


def _sb_of_t(t: int, variant: str, inverse: bool, acc_bits: int) -> int:
    """Shift base SB[i] of exponent t (derivation in the module docstring, step 6)."""
    a = acc_bits
    if variant == "gdn":
        return (t + 16 - a // 2) if inverse else (16 + a // 2 - t)
    return (t + 18 - a) if inverse else (16 + a - t)


def quantize_gdn_params(beta, gamma, in_scale: float, out_scale: float, inverse: bool,
                        variant: str = "gdn", gamma_bits: int = 16, acc_bits: int = 32) -> GDNIntParams:
    """Quantise float GDN parameters (already re-parameterised, i.e. the non-negative
    ``beta_reparam(beta)``, ``gamma_reparam(gamma)``; ``gamma[i, j]``, i = output channel)
    for int8 input of scale ``in_scale`` and int8 output of scale ``out_scale``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    if acc_bits % 2 or not 20 <= acc_bits <= 40:
        raise ValueError("acc_bits must be even and in [20, 40]")
    if not 2 <= gamma_bits <= 24:
        raise ValueError("gamma_bits must be in [2, 24]")
    beta = np.asarray(beta, dtype=np.float64).reshape(-1)
    gamma = np.asarray(gamma, dtype=np.float64)
    c = beta.shape[0]
    if gamma.shape != (c, c):
        raise ValueError(f"gamma must be {c}x{c}, got {gamma.shape}")
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(gamma))):
        raise ValueError("non-finite GDN parameter")
    if beta.min() < 0 or gamma.min() < 0:
        raise ValueError("GDN parameters must be non-negative (pass the re-parameterised values)")
    if not (in_scale > 0 and out_scale > 0):
        raise ValueError("scales must be positive")

    pw = 2 if variant == "gdn" else 1
    rho = (in_scale / out_scale) if inverse else (out_scale / in_scale)
    g_base = gamma * (in_scale * rho) ** pw      # G = g_base * 2**(pw*t)
    b_base = beta * rho ** pw                    # B = b_base * 2**(pw*t)
    amax = activity_max(variant)
    gmax, accmax = (1 << gamma_bits) - 1, (1 << acc_bits) - 1

    # admissible exponents: SB(t) must fit s8 [SB_MIN, SB_MAX]
    sbs = {t: _sb_of_t(t, variant, inverse, acc_bits) for t in range(-200, 201)}
    ts = sorted(t for t, sb in sbs.items() if SB_MIN <= sb <= SB_MAX)

    G = np.zeros((c, c), dtype=np.int64)
    B = np.zeros(c, dtype=np.int64)
    T = np.zeros(c, dtype=np.int64)
    for i in range(c):
        # analytic upper bound of t (the float terms must fit); the loop then walks down
        # to the largest t whose *rounded* values fit = most precision
        worst = b_base[i] + amax * g_base[i].sum()
        t_hi = ts[-1]
        if g_base[i].max() > 0:
            t_hi = min(t_hi, int(np.floor(np.log2((gmax + 0.5) / g_base[i].max()) / pw)) + 1)
        if worst > 0:
            t_hi = min(t_hi, int(np.floor(np.log2((accmax + 0.5) / worst) / pw)) + 1)
        for t in (t for t in reversed(ts) if t <= t_hi):
            gf, bf = g_base[i] * 2.0 ** (pw * t), b_base[i] * 2.0 ** (pw * t)
            if gf.max() >= gmax + 0.5 or bf >= accmax + 0.5:
                continue                         # rounds out of range: try a smaller t
            gi = _rnd(gf)
            bi = max(1, int(_rnd(bf)))
            if gi.max() <= gmax and bi + amax * int(gi.sum()) <= accmax:
                break
        else:
            raise ValueError(f"channel {i}: no exponent fits gamma_bits={gamma_bits}, acc_bits={acc_bits}")
        G[i], B[i], T[i] = gi, bi, t
    S = np.array([sbs[int(t)] for t in T], dtype=np.int64)
    p = GDNIntParams(inverse=bool(inverse), variant=variant, gamma=G, beta=B, shift=S,
                     lut=core_lut(variant), in_scale=float(in_scale), out_scale=float(out_scale),
                     gamma_bits=gamma_bits, acc_bits=acc_bits, exponent=T)
    check_ranges(p)
    return p


def worst_case_acc(p: GDNIntParams) -> np.ndarray:
    """Per output channel, the largest accumulator value over all int8 inputs (q = -128
    on every channel maximises every non-negative term)."""
    return p.beta + activity_max(p.variant) * p.gamma.sum(axis=1)


def check_ranges(p: GDNIntParams) -> None:
    """Static range check: raise ValueError if any stated width can overflow."""
    c = p.channels
    errs = []
    if p.gamma.shape != (c, c):
        errs.append("gamma shape")
    if not _fits_unsigned(p.gamma, p.gamma_bits):
        errs.append(f"gamma outside u{p.gamma_bits}")
    if p.beta.min() < 1 or not _fits_unsigned(p.beta, p.acc_bits):
        errs.append(f"beta outside [1, 2**{p.acc_bits}-1]")
    wc = worst_case_acc(p)
    if wc.max() > (1 << p.acc_bits) - 1:
        errs.append(f"worst-case accumulator {int(wc.max())} overflows u{p.acc_bits}")
    if wc.max() >= 2**53:
        errs.append("accumulator beyond exact float64 range")
    if p.shift.min() < SB_MIN or p.shift.max() > SB_MAX:
        errs.append("shift base outside s8 [-64, 63]")
    if not np.array_equal(p.lut, core_lut(p.variant)):
        errs.append("LUT differs from core_lut(variant)")
    if errs:
        raise ValueError("GDN integer parameters out of range: " + "; ".join(errs))


# ---- integer kernels -------------------------------------------------------------------
def _clz(v: np.ndarray, bits: int) -> np.ndarray:
    """Count leading zeros of v (0 <= v < 2**bits, bits <= 63) in a bits-wide word."""
    v = np.asarray(v, dtype=np.int64)
    n = np.zeros_like(v)                            # bit length, by binary search
    for s in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << s)
        v = np.where(big, v >> s, v)
        n = np.where(big, n + s, n)
    return bits - (n + (v > 0))


def normalize(acc: np.ndarray, variant: str, acc_bits: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: acc (u_A, >= 1) -> (mh u18, e). e even for GDN/IGDN."""
    acc = np.asarray(acc, dtype=np.int64)
    assert acc.min() >= 1 and acc.max() <= (1 << acc_bits) - 1
    lz = _clz(acc, acc_bits)
    e = (lz & ~1) if variant == "gdn" else lz
    M = acc << e                                    # < 2**A
    assert M.max() < (1 << acc_bits)
    mh = M >> (acc_bits - MH_BITS)                  # u18
    lo = 1 << (MH_BITS - 2) if variant == "gdn" else 1 << (MH_BITS - 1)
    assert mh.min() >= lo and mh.max() < (1 << MH_BITS)
    return mh, e


def core(mh: np.ndarray, variant: str, inverse: bool) -> np.ndarray:
    """Step 5: mh (u18) -> f (u18): 1/sqrt(m), sqrt(m), 1/m or m in Q*.16 (m = mh/2**18)."""
    mh = np.asarray(mh, dtype=np.int64)
    lut = core_lut(variant)
    if variant == "simplified" and inverse:
        return mh                                    # y = q * acc: f = mh, u18
    r0 = lut[mh >> (MH_BITS - LUT_ADDR_BITS)]        # u17
    assert r0.min() > 0, "mh outside the normalised range"
    if variant == "gdn":
        r0sq = (r0 * r0 + (1 << 15)) >> 16           # u34 -> u18
        assert r0sq.max() < 1 << 18
        th = (mh * r0sq + (1 << 17)) >> 18           # u36 -> u18
        assert th.max() < 1 << 18
        d = 3 * (1 << 16) - th                       # Q2.16
        assert d.min() > 0 and d.max() < 1 << 18
        r1 = (r0 * d + (1 << 16)) >> 17              # u35 -> u18, <= 2**17
        assert r1.max() <= 1 << 17
        if not inverse:
            return r1
        f = (mh * r1 + (1 << 17)) >> 18              # u36 -> u17, <= 2**16
        assert f.max() <= 1 << 16
        return f
    th = (mh * r0 + (1 << 17)) >> 18                 # u35 -> u18
    assert th.max() < 1 << 18
    d = (1 << 17) - th                               # Q1.16, in (0, 2**17]
    assert d.min() > 0 and d.max() <= 1 << 17
    r1 = (r0 * d + (1 << 15)) >> 16                  # u34 -> u18, <= 2**17
    assert r1.max() <= 1 << 17
    return r1


def requantize(q: np.ndarray, f: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Step 6: sat8(round_half_up(q * f / 2**sh)), sh clamped to [0, SH_MAX]."""
    p = np.asarray(q, dtype=np.int64) * np.asarray(f, dtype=np.int64)   # s26
    assert np.abs(p).max(initial=0) <= 1 << 25
    sh = np.clip(sh, 0, SH_MAX)
    rnd = np.where(sh > 0, np.left_shift(np.int64(1), np.maximum(sh - 1, 0)), 0)
    y = (p + rnd) >> sh                              # arithmetic shift, s27 numerator
    return np.clip(y, Q_MIN, Q_MAX)


def accumulate(q2d: np.ndarray, p: GDNIntParams) -> np.ndarray:
    """Step 1-3: [N, C] int8 -> [N, C] accumulator (u_A, >= 1).

    Computed with a float64 matrix product: every product and partial sum is an integer
    < 2**A <= 2**40 < 2**53, so the result is exact in any summation order."""
    q = q2d.astype(np.int64)
    a = q * q if p.variant == "gdn" else np.abs(q)
    acc = np.rint(a.astype(np.float64) @ p.gamma.T.astype(np.float64)).astype(np.int64) + p.beta
    assert acc.min() >= 1 and acc.max() <= (1 << p.acc_bits) - 1, "accumulator overflow"
    return acc


def gdn_int(x: np.ndarray, p: GDNIntParams) -> np.ndarray:
    """The integer GDN: int8 ``x`` of shape [C, H, W] or [N, C] -> int8 of the same shape."""
    x = np.asarray(x)
    c = p.channels
    if x.ndim == 3:
        if x.shape[0] != c:
            raise ValueError(f"expected {c} channels, got shape {x.shape}")
        q2d = x.reshape(c, -1).T
    elif x.ndim == 2:
        if x.shape[1] != c:
            raise ValueError(f"expected {c} channels, got shape {x.shape}")
        q2d = x
    else:
        raise ValueError("x must be [C, H, W] or [N, C]")
    if q2d.size and (q2d.min() < Q_MIN or q2d.max() > Q_MAX):
        raise ValueError("x must be int8 valued")
    q2d = q2d.astype(np.int64)
    acc = accumulate(q2d, p)
    mh, e = normalize(acc, p.variant, p.acc_bits)
    f = core(mh, p.variant, p.inverse)
    eh = e >> 1 if p.variant == "gdn" else e
    sh = p.shift[None, :] + (eh if p.inverse else -eh)
    y = requantize(q2d, f, sh).astype(np.int8)
    return y.T.reshape(x.shape) if x.ndim == 3 else y


# ---- float references ------------------------------------------------------------------
def gdn_float(x: np.ndarray, beta, gamma, inverse: bool, variant: str = "gdn") -> np.ndarray:
    """Float64 reference of CompressAI's GDN / GDN1 on [C, H, W] or [N, C] arrays."""
    x = np.asarray(x, dtype=np.float64)
    x2d = x.reshape(x.shape[0], -1).T if x.ndim == 3 else x
    gamma = np.asarray(gamma, dtype=np.float64)
    a = x2d * x2d if variant == "gdn" else np.abs(x2d)
    norm = np.asarray(beta, dtype=np.float64)[None, :] + a @ gamma.T
    if variant == "gdn":
        y = x2d * (np.sqrt(norm) if inverse else 1.0 / np.sqrt(norm))
    else:
        y = x2d * (norm if inverse else 1.0 / norm)
    return y.T.reshape(x.shape) if x.ndim == 3 else y


def gdn_float_int8(x: np.ndarray, beta, gamma, in_scale: float, out_scale: float,
                   inverse: bool, variant: str = "gdn") -> np.ndarray:
    """Ideal int8 output: the float GDN of ``x * in_scale``, requantised with ``out_scale``."""
    y = gdn_float(np.asarray(x, dtype=np.float64) * in_scale, beta, gamma, inverse, variant) / out_scale
    return np.clip(np.floor(y + 0.5), Q_MIN, Q_MAX).astype(np.int8)


# ---- export for the RTL ($readmemh) ----------------------------------------------------
def write_memh(p: GDNIntParams, outdir, pe: int) -> dict:
    """Write the ROM images read by ``hls/gdn/gdn_axis.sv`` with ``$readmemh``.

    * ``gamma.mem``: C/PE * C words of PE*gamma_bits bits; word ``g*C + j`` holds
      ``G[g*PE + l, j]`` in bits ``[l*gamma_bits +: gamma_bits]`` (lane l).
    * ``beta.mem``: C words of acc_bits bits, ``B[i]``.
    * ``shift.mem``: C words of 8 bits, ``SB[i]`` two's complement.
    * ``lut.mem``: 64 words of 17 bits.
    Returns the paths by name (``GAMMA_FILE`` ...), for the RTL parameters.
    """
    c = p.channels
    if pe < 1 or c % pe:
        raise ValueError(f"PE={pe} must divide C={c}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    gb = p.gamma_bits
    gw = (pe * gb + 3) // 4
    lines = []
    for g in range(c // pe):
        for j in range(c):
            word = 0
            for lane in range(pe):
                word |= int(p.gamma[g * pe + lane, j]) << (lane * gb)
            lines.append(f"{word:0{gw}x}")
    files = {
        "GAMMA_FILE": (out / "gamma.mem", lines),
        "BETA_FILE": (out / "beta.mem", [f"{int(b):0{(p.acc_bits + 3) // 4}x}" for b in p.beta]),
        "SHIFT_FILE": (out / "shift.mem", [f"{int(s) & 0xFF:02x}" for s in p.shift]),
        "LUT_FILE": (out / "lut.mem", [f"{int(v):05x}" for v in p.lut]),
    }
    for path, body in files.values():
        path.write_text("\n".join(body) + "\n")
    (out / "params.json").write_text(p.dumps())
    return {k: str(v[0]) for k, v in files.items()}
