"""Soft errors in the deployed model: bit-flip fault injection into the integer golden model,
measured end to end through the integer codec (``licfpga faults``; issue 12).

What is flipped
---------------
*Parameters* (a permanent upset of a parameter memory: the same faulty device codes every
image) -- the integer artifact's words at their hardware widths:

=========  ======================================  =====  =======
kind       where                                   bits   signed
=========  ======================================  =====  =======
weight     conv / deconv weights                   w_bits (8)  yes
bias       conv bias, accumulator units            32     yes
mult       requantisation multiplier               31     no
shift      requantisation shift (values 33..47)    6      no
threshold  FINN's threshold tree (see below)       K      yes
gamma      GDN gamma ROM                           16     no
beta       GDN beta ROM                            32     no
gshift     GDN shift-base ROM                      8      yes
lut        GDN (r)sqrt seed ROM (64 entries)       17     no
=========  ======================================  =====  =======

``weight .. shift`` and ``gamma .. gshift`` are the artifact's arrays (the golden model's
requantisation ``clamp((acc*mult + 2**(shift-1)) >> shift)``). FINN's hardware stores no
mult/shift/bias: it stores, per output channel, the 255 (254) thresholds of that
requantisation (``overlay/threshold_proof.py``) in a binary-search tree
(``finn-rtllib/thresholding``); the ``threshold`` kind flips those words instead
(K = the smallest two's-complement width holding the layer's thresholds after clipping to
the accumulator domain, as FINN minimises it: 13..23 bits, 20 for g_a.6 exactly as FINN's
generated INT20 in the RTL experiment; a transposed conv has one threshold set per
sub-pixel phase, 4x the memory, each flip reaching one output phase). ``lut`` is the
GDN kernel's seed ROM (``hls/gdn/gdn_axis.sv``), the same constant in every GDN.

*Activations* (a transient upset of one value in flight: sampled afresh for every image):
the 8-bit output words of a layer (conv/deconv after requantisation, GDN, |y|), or
(``--act-kind acc``) the 32-bit conv accumulators before requantisation.

Rates are per bit (independent Bernoulli flips over all bits of the chosen words: the
number of flips is binomial, their positions uniform without repetition); ``count`` gives
exactly that many flips instead ("single flip" experiments).

Arithmetic under faults
-----------------------
The golden model refuses inputs outside a layer's range and parameters whose worst case
overflows (``check_ranges``); the hardware has no such checks. :class:`FaultyModel` runs the
same arithmetic as the RTL instead: s32 conv accumulators wrap (two's complement), the
requantiser handles any shift (``shift = 0``: no rounding term), the GDN follows
``gdn_axis.sv`` word for word (u32 accumulator wraps, ``clz(0) = 32``, every core product
truncated to its register width), thresholds are searched exactly as ``thresholding.sv``
does (a corrupted, unsorted tree gives what the binary search gives, not the count).
Fault-free it equals :class:`IntegerModel` bit for bit (``tests/test_faults.py``).

Where the faulty device sits
----------------------------
g_a and h_a run only in the encoder, g_s only in the decoder; h_s runs in both and must
agree. Faults in g_a / h_a parameters or activations: a faulty encoder, a healthy decoder
(the file is consistent and decodes; PSNR and bpp change). Faults in h_s / g_s: a healthy
encoder, a faulty decoder. A changed g_s costs PSNR only. A changed h_s gives the decoder
other scale indexes than the encoder used: the rANS decoder would read the payload with the
wrong CDFs, and the container's per-tile CRC of the scale indexes catches it -- the file
"does not decode" (``ContainerError``). The same holds for an h_s fault on the encoder side.

Measurement: every trial codes every image through :class:`IntegerCodec` (real rANS bytes,
``.lic`` container, decoder checks) with the faulty models swapped in; PSNR of decodable
files, bpp of the file, share of files that raise. Clean layer outputs are cached per image
so a trial only recomputes from its first faulty layer (the result is identical).

Mitigation: per-channel range clamps (:func:`clamp_ranges`): each layer's output clipped to
the range seen on validation images (``model/data/val_split.txt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from licfpga.model.golden import gdn as golden_gdn
from licfpga.model.golden.network import TRANSFORMS, IntegerModel, conv2d_acc, deconv2d_acc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARTIFACT = "int-student-0.013"
KODAK = ROOT.parent / "shared" / "data" / "kodak"
TRAIN = ROOT.parent / "shared" / "data" / "train"
VAL_SPLIT = ROOT / "model" / "data" / "val_split.txt"
# sweep subset: every 6th Kodak image starting at kodim03, 256x256 centre crops
SUBSET = ("kodim03", "kodim09", "kodim15", "kodim21")
RATES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
ACC_BITS = 32
ACT_BITS = 8
ENCODER = ("g_a", "h_a")          # transforms only the encoder runs; h_s and g_s: the decoder's
ARTIFACT_KINDS = {"conv": ("weight", "bias", "mult", "shift"), "deconv": ("weight", "bias", "mult", "shift"),
                  "gdn": ("gamma", "beta", "gshift")}
HW_KINDS = {"conv": ("weight", "threshold"), "deconv": ("weight", "threshold"), "gdn": ("gamma", "beta", "gshift", "lut")}
KINDS = ("weight", "bias", "mult", "shift", "threshold", "gamma", "beta", "gshift", "lut")
SIGNED = {"weight": True, "bias": True, "mult": False, "shift": False, "threshold": True, "gamma": False,
          "beta": False, "gshift": True, "lut": False}


# ---- bit flips --------------------------------------------------------------------------
def to_word(v: np.ndarray, bits: int) -> np.ndarray:
    """Values -> their ``bits``-wide words (two's complement for negatives)."""
    return np.asarray(v, dtype=np.int64) & ((np.int64(1) << bits) - 1)


def from_word(u: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    u = np.asarray(u, dtype=np.int64)
    return np.where(u >= (np.int64(1) << (bits - 1)), u - (np.int64(1) << bits), u) if signed else u


def flip_bits(values: np.ndarray, words, bits_at, bits: int, signed: bool) -> np.ndarray:
    """Copy of ``values`` (any shape, flat word indexes ``words``) with bit ``bits_at[i]`` of
    word ``words[i]`` inverted, the words being ``bits`` wide (two's complement if signed)."""
    v = np.asarray(values, dtype=np.int64)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"values outside the {'s' if signed else 'u'}{bits} word")
    u = to_word(v, bits).reshape(-1).copy()
    np.bitwise_xor.at(u, np.asarray(words, dtype=np.int64), np.left_shift(np.int64(1), np.asarray(bits_at, np.int64)))
    return from_word(u, bits, signed).reshape(v.shape)


def sample_flips(rng: np.random.Generator, n_words: int, bits: int, rate: float | None = None,
                 count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of independent per-bit flips at ``rate`` over ``n_words`` x ``bits`` bits
    (binomial count, uniform distinct positions) or exactly ``count`` of them.
    Returns (word indexes, bit indexes)."""
    n = int(n_words) * int(bits)
    k = int(rng.binomial(n, rate)) if count is None else int(count)
    if k > n:
        raise ValueError(f"{k} flips in {n} bits")
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if k > n // 4:
        pos = rng.permutation(n)[:k]
    else:
        pos = np.unique(rng.integers(0, n, k))
        while pos.size < k:
            pos = np.unique(np.concatenate([pos, rng.integers(0, n, k - pos.size)]))
        pos = rng.permutation(pos)
    return (pos // bits).astype(np.int64), (pos % bits).astype(np.int64)


# ---- hardware-faithful layer arithmetic -------------------------------------------------
def wrap(v: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap to ``bits`` (a register of that width)."""
    h = np.int64(1) << (bits - 1)
    return ((np.asarray(v, dtype=np.int64) + h) & ((h << 1) - 1)) - h


def requantize_hw(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """clamp((acc*mult + rnd) >> shift) with rnd = 2**(shift-1) (0 when shift = 0): the golden
    requantiser for any parameter value (s32 acc x u31 mult = s63, arithmetic shift)."""
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(mult, dtype=np.int64)[:, None, None]
    s = np.asarray(shift, dtype=np.int64)[:, None, None]
    rnd = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.clip((acc * m + rnd) >> s, lo, hi)


def _core_hw(mh: np.ndarray, lut: np.ndarray, variant: str, inverse: bool) -> np.ndarray:
    """gdn_core of hls/gdn/gdn_axis.sv on any mh (u18) and any LUT contents, every
    intermediate truncated to its register width."""
    m18 = (1 << 18) - 1
    r0 = np.asarray(lut, dtype=np.int64)[mh >> 12] & ((1 << 17) - 1)
    if variant == "simplified":
        if inverse:
            return mh
        th = ((mh * r0 + 131072) >> 18) & m18
        d = (131072 - th) & m18
        return ((r0 * d + 32768) >> 16) & m18
    r0sq = ((r0 * r0 + 32768) >> 16) & m18
    th = ((mh * r0sq + 131072) >> 18) & m18
    d = (196608 - th) & m18
    r1 = ((r0 * d + 65536) >> 17) & m18
    if not inverse:
        return r1
    return ((mh * r1 + 131072) >> 18) & m18


def gdn_hw(x: np.ndarray, p: golden_gdn.GDNIntParams) -> np.ndarray:
    """The GDN kernel ``gdn_axis.sv`` for any (possibly corrupted) parameters: x [C, H, W]
    int8 values -> int8 values (int64 array). Equals ``gdn_int`` whenever the latter's range
    assertions hold."""
    c = p.channels
    q = np.asarray(x, dtype=np.int64).reshape(c, -1).T                   # [N, C]
    simp = p.variant == "simplified"
    a = np.abs(q) if simp else q * q
    A = p.acc_bits
    # sum_j G[i, j] * a[j] + B[i] (exact in float64: < 2**53), then the u_A register wraps
    acc = (np.rint(a.astype(np.float64) @ p.gamma.T.astype(np.float64)).astype(np.int64) + p.beta) \
        & ((np.int64(1) << A) - 1)
    lz = golden_gdn._clz(np.maximum(acc, 1), A)
    lz = np.where(acc == 0, A, lz)                                       # clz(0) = A
    e = lz if simp else (lz & ~1)
    m = (acc << np.minimum(e, A)) & ((np.int64(1) << A) - 1)             # acc << A = 0 in A bits
    mh = m >> (A - 18)
    f = _core_hw(mh, p.lut, p.variant, p.inverse)
    eh = e if simp else e >> 1
    sb = from_word(to_word(p.shift, 8), 8, True)[None, :]
    sh = np.clip(sb + eh if p.inverse else sb - eh, 0, 27)
    prod = q * f
    rnd = np.where(sh > 0, np.left_shift(np.int64(1), np.maximum(sh - 1, 0)), 0)
    y = np.clip((prod + rnd) >> sh, -128, 127)
    return y.T.reshape(np.shape(x))


def golden_thresholds(mult, shift, lo: int, hi: int, bias) -> np.ndarray:
    """Per channel the FINN thresholds of the golden requantisation, in MVAU-output units
    (bias removed): ``T[c, k-1] = min{a : R(a) >= lo + k} - b[c]`` (overlay/threshold_proof.py)."""
    m = np.asarray(mult, dtype=np.int64)[:, None]
    s = np.asarray(shift, dtype=np.int64)[:, None]
    v = np.arange(lo + 1, hi + 1, dtype=np.int64)[None, :]
    num = v * (np.int64(1) << s) - (np.int64(1) << (s - 1))           # |num| < 2**55
    return -((-num) // m) - np.asarray(bias, dtype=np.int64)[:, None]


def tree_search(acc: np.ndarray, tree: np.ndarray, n: int) -> np.ndarray:
    """``thresholding.sv``: binary search of each channel's value in its threshold tree.
    ``acc`` [C, L] (MVAU outputs), ``tree`` [C, 2**B - 1] in in-order index (entries >= n
    are padding, masked by the RTL's scope check). Returns the count field (0..n): for a
    sorted tree ``#{k : tree[c, k] <= acc}``."""
    b = max(1, math.ceil(math.log2(n + 1)))
    ptr = np.zeros(acc.shape, dtype=np.int64)
    for s in range(b):
        sn = b - 1 - s
        p = ptr >> (sn + 1)
        idx = (p << (sn + 1)) + (1 << sn) - 1
        red = ((1 << (b - s - 1)) + (1 << b) - 1 - n) >> (b - s)
        scope = (p < (1 << s) - red) if red else np.ones(acc.shape, bool)
        t = np.take_along_axis(tree, idx, axis=1)
        ptr |= (scope & (t <= acc)).astype(np.int64) << sn
    return ptr


@dataclasses.dataclass
class ThresholdLayer:
    """FINN view of one conv layer's requantisation: ``tree[phase, c, 2**B-1]`` (``bits`` =
    WT-bit two's complement values), ``n`` thresholds, output ``lo``, ``bias`` (removed from
    the accumulator, as the MVAU never adds it), phases = 1 (conv) or s*s (sub-pixel
    deconv). The MVAU output arrives ``in_bits`` (WI) wide; ``thresholding_axi.sv``
    saturates it to WT bits when WI > WT (sign-extends otherwise)."""

    tree: np.ndarray
    n: int
    lo: int
    bits: int
    bias: np.ndarray
    stride: int
    in_bits: int = ACC_BITS

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """acc [C, H, W] golden accumulators (bias included) -> outputs."""
        c, h, w = acc.shape
        a = wrap(acc - self.bias[:, None, None], self.in_bits)
        if self.in_bits > self.bits:
            a = np.clip(a, -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1)
        out = np.empty_like(a)
        s = self.stride
        for ph in range(self.tree.shape[0]):
            dy, dx = divmod(ph, s)
            sub = a[:, dy::s, dx::s]
            out[:, dy::s, dx::s] = (tree_search(sub.reshape(c, -1), self.tree[ph], self.n) + self.lo).reshape(sub.shape)
        return out


def accumulator_domain(layer: dict, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel the worst-case accumulator range (bias included) over the layer's input range."""
    w = arrays[layer["weight"]].astype(np.int64)
    b = arrays[layer["bias"]].astype(np.int64)
    lo, hi = layer["in_range"]
    axes = (1, 2, 3) if layer["op"] == "conv" else (0, 2, 3)
    return b + np.minimum(w * hi, w * lo).sum(axis=axes), b + np.maximum(w * hi, w * lo).sum(axis=axes)


def threshold_layer(layer: dict, arrays: dict) -> ThresholdLayer:
    """The clean threshold memory of a conv / deconv layer (values clipped to the MVAU output
    domain + 1, as FINN's RoundAndClipThresholds does, so they fit K bits)."""
    b = arrays[layer["bias"]].astype(np.int64)
    lo, hi = layer["out_range"]
    t = golden_thresholds(arrays[layer["mult"]], arrays[layer["shift"]], lo, hi, b)
    dmin, dmax = accumulator_domain(layer, arrays)
    flo, fhi = int((dmin - b).min()), int((dmax - b).max()) + 1
    t = np.clip(t, flo, fhi)
    bits = max(abs(int(t.min())) - 1, int(t.max()), 0).bit_length() + 1   # FINN: the narrowest type holding them
    n = hi - lo
    nb = max(1, math.ceil(math.log2(n + 1)))
    tree = np.zeros((t.shape[0], (1 << nb) - 1), dtype=np.int64)
    tree[:, :n] = t
    s = layer["stride"] if layer["op"] == "deconv" else 1
    return ThresholdLayer(np.repeat(tree[None], s * s, axis=0), n, lo, bits, b, s)


# ---- fault sites ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Site:
    """One parameter memory: ``key`` (artifact array, or ``<layer>.threshold`` / ``<layer>.lut``)."""

    transform: str
    layer: str
    kind: str
    key: str
    n_words: int
    bits: int

    @property
    def n_bits(self) -> int:
        return self.n_words * self.bits

    @property
    def signed(self) -> bool:
        return SIGNED[self.kind]


def layers(model: IntegerModel, with_abs: bool = False) -> list[tuple[str, dict]]:
    return [(t, ly) for t in TRANSFORMS for ly in model.schema["transforms"][t] if with_abs or ly["op"] != "abs"]


def param_sites(model: IntegerModel, kinds=None, layer_names=None, view: str = "artifact") -> list[Site]:
    """Parameter memories of the chosen layers / kinds. ``view``: ``"artifact"`` (the
    artifact's arrays: weight, bias, mult, shift, gamma, beta, gshift), ``"hw"`` (FINN's
    memories: weight, threshold, gamma, beta, gshift, lut) or ``"all"``."""
    table = {"artifact": ARTIFACT_KINDS, "hw": HW_KINDS}
    out = []
    for t, ly in layers(model):
        if layer_names is not None and ly["name"] not in layer_names:
            continue
        if view == "all":
            ks = tuple(dict.fromkeys(ARTIFACT_KINDS[ly["op"]] + HW_KINDS[ly["op"]]))
        else:
            ks = table[view][ly["op"]]
        for k in ks:
            if kinds is not None and k not in kinds:
                continue
            if k == "threshold":
                th = threshold_layer(ly, model.arrays)
                out.append(Site(t, ly["name"], k, f"{ly['name']}.threshold", int(th.tree.size), th.bits))
            elif k == "lut":
                out.append(Site(t, ly["name"], k, f"{ly['name']}.lut", 64, golden_gdn.LUT_BITS))
            else:
                key = ly[k]
                bits = {"weight": int(ly.get("w_bits", 8)), "bias": ACC_BITS, "mult": 31, "shift": 6,
                        "gamma": int(ly.get("gamma_bits", 16)), "beta": int(ly.get("acc_bits", 32)), "gshift": 8}[k]
                out.append(Site(t, ly["name"], k, key, int(model.arrays[key].size), bits))
    return out


@dataclasses.dataclass
class Flips:
    """Bit flips of one parameter memory."""

    site: Site
    words: np.ndarray
    bits: np.ndarray


def sample_param_flips(rng, sites: list[Site], rate: float | None = None, count: int | None = None) -> list[Flips]:
    """Per-bit flips at ``rate`` over all ``sites`` (each its own binomial draw, which is the
    same distribution as one draw over their union), or exactly ``count`` flips spread
    uniformly over all their bits."""
    if count is None:
        out = [Flips(s, *sample_flips(rng, s.n_words, s.bits, rate=rate)) for s in sites]
        return [f for f in out if f.words.size]
    sizes = np.array([s.n_bits for s in sites], dtype=np.int64)
    pos = sample_flips(rng, int(sizes.sum()), 1, count=count)[0]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for i, s in enumerate(sites):
        p = pos[(pos >= starts[i]) & (pos < starts[i + 1])] - starts[i]
        if p.size:
            out.append(Flips(s, p // s.bits, p % s.bits))
    return out


# ---- the faulty model -------------------------------------------------------------------
class FaultyModel(IntegerModel):
    """The integer model with corrupted parameters and/or transient activation faults,
    computed with the hardware's arithmetic (see the module docstring).

    ``flips``: parameter flips (permanent); ``acts``: ``{layer name: (rate, kind)}`` with kind
    ``"out"`` (8-bit output words) or ``"acc"`` (32-bit accumulators), sampled from
    ``act_rng`` on every call; ``clamp``: ``{layer name: (lo[c], hi[c])}`` output clamps.
    ``cache``: clean layer outputs of the current image (:func:`clean_cache`); a transform
    whose input equals the cached clean input restarts at its first faulty layer."""

    def __init__(self, base: IntegerModel, flips: list[Flips] = (), acts: dict | None = None,
                 clamp: dict | None = None, act_rng: np.random.Generator | None = None):
        # no IntegerModel.__init__: its range check rejects corrupted parameters, which the
        # hardware would simply run
        self.schema, self.base = base.schema, base
        self.arrays = dict(base.arrays)
        self._gdn = dict(base._gdn)
        self.thresholds: dict[str, ThresholdLayer] = {}
        self.acts = dict(acts or {})
        self.clamp = clamp
        self.act_rng = act_rng if act_rng is not None else np.random.default_rng(0)
        self.cache: dict | None = None
        self.act_flip_count = 0
        touched = set()
        lut_flips: dict[str, list] = {}
        by_layer = {ly["name"]: ly for _, ly in layers(base)}
        for f in flips:
            s = f.site
            touched.add(s.layer)
            if s.kind == "threshold":
                if s.layer not in self.thresholds:
                    self.thresholds[s.layer] = threshold_layer(by_layer[s.layer], base.arrays)
                th = self.thresholds[s.layer]
                th.tree = flip_bits(th.tree, f.words, f.bits, s.bits, True)
            elif s.kind == "lut":
                lut_flips.setdefault(s.layer, []).append(f)
            else:
                self.arrays[s.key] = flip_bits(self.arrays[s.key], f.words, f.bits, s.bits, s.signed)
        for _, ly in layers(base):
            if ly["op"] == "gdn" and ly["name"] in touched:
                lut = self._gdn[ly["name"]].lut.copy()
                for f in lut_flips.get(ly["name"], []):
                    lut = flip_bits(lut, f.words, f.bits, golden_gdn.LUT_BITS, False)
                self._gdn[ly["name"]] = dataclasses.replace(
                    self._gdn[ly["name"]], gamma=self.arrays[ly["gamma"]].astype(np.int64),
                    beta=self.arrays[ly["beta"]].astype(np.int64), shift=self.arrays[ly["gshift"]].astype(np.int64),
                    lut=lut)
        self.touched = touched
        self.param_flip_count = int(sum(f.words.size for f in flips))
        self._first = {}
        for t in TRANSFORMS:
            names = [ly["name"] for ly in self.schema["transforms"][t]]
            hit = [i for i, n in enumerate(names) if n in touched or n in self.acts]
            self._first[t] = hit[0] if hit else None

    def check_ranges(self) -> None:      # the hardware has none
        return None

    @property
    def faulty(self) -> bool:
        return bool(self.touched or self.acts)

    def _act_flip(self, x: np.ndarray, bits: int, signed: bool, rate: float) -> np.ndarray:
        w, b = sample_flips(self.act_rng, x.size, bits, rate=rate)
        if not w.size:
            return x
        self.act_flip_count += int(w.size)
        return flip_bits(x, w, b, bits, signed)

    def layer_forward(self, transform: str, i: int, x: np.ndarray) -> np.ndarray:
        ly = self.schema["transforms"][transform][i]
        op, name = ly["op"], ly["name"]
        act = self.acts.get(name)
        if op == "abs":
            y = np.abs(x)
            signed = False
        elif op == "gdn":
            y = gdn_hw(x, self._gdn[name])
            signed = True
        else:
            w, b = self.arrays[ly["weight"]], self.arrays[ly["bias"]]
            if op == "conv":
                acc = conv2d_acc(x, w, b, ly["stride"], ly["padding"])
            else:
                acc = deconv2d_acc(x, w, b, ly["stride"], ly["padding"], ly["output_padding"])
            acc = wrap(acc, ACC_BITS)
            if act is not None and act[1] == "acc":
                acc = self._act_flip(acc, ACC_BITS, True, act[0])
            lo, hi = ly["out_range"]
            if name in self.thresholds:
                y = self.thresholds[name].apply(acc)
            else:
                y = requantize_hw(acc, self.arrays[ly["mult"]], self.arrays[ly["shift"]], lo, hi)
            signed = lo < 0
        if act is not None and act[1] == "out":
            y = self._act_flip(y, ACT_BITS, signed, act[0])
        if self.clamp is not None and name in self.clamp:
            clo, chi = self.clamp[name]
            y = np.clip(y, np.asarray(clo)[:, None, None], np.asarray(chi)[:, None, None])
        return y

    def run_transform(self, name: str, x: np.ndarray, trace: dict | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        lys = self.schema["transforms"][name]
        start = 0
        c = self.cache.get(name) if self.cache is not None else None
        if c is not None and trace is None and c[0].shape == x.shape and np.array_equal(c[0], x):
            first = self._first[name]
            if first is None:
                return c[1][-1].astype(np.int64)
            start = first
            x = (c[1][first - 1] if first > 0 else c[0]).astype(np.int64)
        for i in range(start, len(lys)):
            x = self.layer_forward(name, i, x)
            if trace is not None:
                trace[lys[i]["name"]] = x
        return x


def clean_cache(base: IntegerModel, rgb: np.ndarray, clamp: dict | None = None) -> dict:
    """Clean per-layer outputs of one (padded) image for :attr:`FaultyModel.cache`:
    {transform: (input, [outputs])} as int16."""
    m = FaultyModel(base, clamp=clamp)
    cache = {}

    def run(t, x):
        tr = {}
        y = m.run_transform(t, x, trace=tr)
        cache[t] = (np.asarray(x).astype(np.int16), [tr[ly["name"]].astype(np.int16) for ly in base.schema["transforms"][t]])
        return y

    y = run("g_a", rgb.transpose(2, 0, 1))
    z = run("h_a", y)
    run("h_s", z)
    run("g_s", y)
    return cache


def clamp_ranges(base: IntegerModel, images: list[np.ndarray]) -> dict:
    """Per layer and output channel, the [min, max] of the clean outputs over ``images``."""
    m = FaultyModel(base)
    lo: dict = {}
    hi: dict = {}
    for rgb in images:
        tr: dict = {}
        y = m.run_transform("g_a", rgb.transpose(2, 0, 1), trace=tr)
        z = m.run_transform("h_a", y, trace=tr)
        m.run_transform("h_s", z, trace=tr)
        m.run_transform("g_s", y, trace=tr)
        for k, v in tr.items():
            a = v.reshape(v.shape[0], -1)
            lo[k] = np.minimum(lo.get(k, a.min(1)), a.min(1))
            hi[k] = np.maximum(hi.get(k, a.max(1)), a.max(1))
    return {k: (lo[k].astype(int).tolist(), hi[k].astype(int).tolist()) for k in lo}


# ---- images -----------------------------------------------------------------------------
def load_rgb(path, crop: int = 0) -> np.ndarray:
    """uint8 RGB; ``crop`` > 0: the centre crop (multiple of 64), else the whole image
    (cropped down to multiples of 64 only if needed -- Kodak is 768x512 / 512x768)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    ch, cw = (crop, crop) if crop else (h - h % 64, w - w % 64)
    ch, cw = min(ch, h - h % 64), min(cw, w - w % 64)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw])


def image_set(data: Path, names, crop: int) -> list[tuple[str, np.ndarray]]:
    files = sorted(Path(data).glob("*.png")) if Path(data).is_dir() else [Path(data)]
    if names:
        want = {n.removesuffix(".png") for n in names}
        files = [f for f in files if f.stem in want]
    if not files:
        raise FileNotFoundError(f"no images in {data} (names {names})")
    return [(f.stem, load_rgb(f, crop)) for f in files]


def validation_images(n: int, crop: int) -> list[np.ndarray]:
    names = [ln.strip() for ln in VAL_SPLIT.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [load_rgb(TRAIN / f, crop) for f in names[:n]]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ---- trials -----------------------------------------------------------------------------
@dataclasses.dataclass
class Trial:
    """One faulty device: parameter flips (fixed), activation fault rates (per image), clamps."""

    name: str
    info: dict
    flips: list = dataclasses.field(default_factory=list)
    acts: dict = dataclasses.field(default_factory=dict)
    clamp: bool = False
    seed: int = 0

    def models(self, base: IntegerModel, clamp: dict | None):
        enc = [f for f in self.flips if f.site.transform in ENCODER]
        dec = [f for f in self.flips if f.site.transform not in ENCODER]
        ea = {k: v for k, v in self.acts.items() if k.split(".")[0] in ENCODER}
        da = {k: v for k, v in self.acts.items() if k.split(".")[0] not in ENCODER}
        c = clamp if self.clamp else None
        return FaultyModel(base, enc, ea, c), FaultyModel(base, dec, da, c)


def run_trials(trials: list[Trial], images: list[tuple[str, np.ndarray]], artifact=DEFAULT_ARTIFACT,
               clamp: dict | None = None, log=None) -> dict:
    """Code every image with every trial's faulty encoder / decoder through IntegerCodec.
    Returns {"clean": {image: {...}}, "trials": [{name, info, per-image results}]}."""
    from .integer_codec import IntegerCodec

    enc_codec = IntegerCodec(artifact, tile=4096)
    dec_codec = IntegerCodec(artifact, tile=4096)
    base = enc_codec.model
    models = [t.models(base, clamp) for t in trials]
    out = {"clean": {}, "clean_clamped": {}, "trials": [{"name": t.name, "info": t.info, "seed": t.seed,
                                                           "clamp": t.clamp, "param_flips": sum(f.words.size for f in t.flips),
                                                           "images": {}} for t in trials]}
    t0 = time.time()
    for ii, (iname, rgb) in enumerate(images):
        caches = {False: clean_cache(base, rgb)}
        if any(t.clamp for t in trials) and clamp is not None:
            caches[True] = clean_cache(base, rgb, clamp)
        clean = {}
        for cl, cache in caches.items():
            m = FaultyModel(base, clamp=clamp if cl else None)
            m.cache = cache
            enc_codec.model = dec_codec.model = m
            data = enc_codec.encode(rgb)
            rec, _ = dec_codec.decode(data)
            clean[cl] = {"psnr": psnr(rgb, rec), "bytes": len(data), "bpp": 8 * len(data) / rgb.shape[0] / rgb.shape[1]}
            out["clean_clamped" if cl else "clean"][iname] = clean[cl]
        for k, (t, (em, dm)) in enumerate(zip(trials, models)):
            if not (em.faulty or dm.faulty):
                r = dict(clean[t.clamp], failed=False, act_flips=0, same_as_clean=True)
                out["trials"][k]["images"][iname] = r
                continue
            rs = np.random.SeedSequence([t.seed, ii, 12])
            em.act_rng, dm.act_rng = (np.random.default_rng(s) for s in rs.spawn(2))
            em.act_flip_count = dm.act_flip_count = 0
            em.cache = dm.cache = caches[t.clamp]
            enc_codec.model, dec_codec.model = em, dm
            r = {"failed": False}
            try:
                data = enc_codec.encode(rgb)
                r["bytes"] = len(data)
                r["bpp"] = 8 * len(data) / rgb.shape[0] / rgb.shape[1]
                rec, _ = dec_codec.decode(data)
                r["psnr"] = psnr(rgb, rec)
            except Exception as exc:         # noqa: BLE001 - any error = the file does not decode
                r["failed"] = True
                r["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
            r["act_flips"] = em.act_flip_count + dm.act_flip_count
            out["trials"][k]["images"][iname] = r
        if log:
            log(f"image {ii + 1}/{len(images)} {iname}: {len(trials)} trials, {time.time() - t0:.0f} s")
    enc_codec.model = dec_codec.model = base
    return out


# ---- experiments ------------------------------------------------------------------------
def _layer_names(model, arg, with_abs=False):
    names = [ly["name"] for _, ly in layers(model, with_abs)]
    if arg:
        bad = [n for n in arg if n not in names and n not in TRANSFORMS]
        if bad:
            raise ValueError(f"unknown layers {bad}; layers: {', '.join(names)}")
        names = [n for n in names if n in arg or n.split(".")[0] in arg]
    return names


def build_trials(a, model: IntegerModel) -> list[Trial]:
    """The trials of one experiment (see ``licfpga faults run --help``)."""
    rates = [float(r) for r in a.rates]
    seeds = range(a.seeds)
    exp = a.experiment
    names = _layer_names(model, a.layers, with_abs=exp == "layer-acts" or (exp == "network" and "acts" in a.targets))
    trials = []
    if exp in ("layer-params", "kind-params"):   # per layer (its artifact parameters), or per kind network-wide
        if exp == "layer-params":
            groups = [("layer", ln, 1, names.index(ln), param_sites(model, layer_names={ln}, view=a.view))
                      for ln in names]
        else:
            groups = [("kind", k, 2, KINDS.index(k), param_sites(model, kinds={k}, layer_names=set(names), view="all"))
                      for k in (a.kinds or KINDS)]
        for key, g, tag, gi, sites in groups:
            for p in rates:
                for s in seeds:
                    rng = np.random.default_rng([s, tag, gi, int(-math.log10(p) * 100)])
                    trials.append(Trial(f"{g}@{p:g}#{s}", {key: g, "rate": p, "target": "params",
                                        "bits": sum(x.n_bits for x in sites)}, sample_param_flips(rng, sites, rate=p),
                                        seed=s, clamp=a.clamp == "on"))
    elif exp in ("single-layer", "single-kind"):
        groups = ([(ln, param_sites(model, layer_names={ln}, view=a.view)) for ln in names] if exp == "single-layer"
                  else [(k, param_sites(model, kinds={k}, layer_names=set(names), view="all")) for k in (a.kinds or KINDS)])
        for gi, (g, sites) in enumerate(groups):
            rng = np.random.default_rng([a.seed, 3 if exp == "single-layer" else 4, gi])
            for j in range(a.flips):
                fl = sample_param_flips(rng, sites, count=1)
                f = fl[0]
                info = {"group": g, "layer": f.site.layer, "kind": f.site.kind, "word": int(f.words[0]),
                        "bit": int(f.bits[0]), "word_bits": f.site.bits, "target": "single",
                        "bits": sum(x.n_bits for x in sites)}
                trials.append(Trial(f"{g}!{j}", info, fl, seed=j))
    elif exp == "layer-acts":
        for ln in names:
            for p in rates:
                for s in seeds:
                    trials.append(Trial(f"{ln}~{p:g}#{s}", {"layer": ln, "rate": p, "target": "acts", "act_kind": a.act_kind},
                                        acts={ln: (p, a.act_kind)}, seed=1000 * s + names.index(ln), clamp=a.clamp == "on"))
    elif exp == "network":              # everything at once, with and without clamps
        clamps = {"none": [False], "on": [True], "both": [False, True]}[a.clamp]
        for tgt in a.targets:
            for p in rates:
                for s in seeds:
                    for cl in clamps:
                        info = {"target": tgt, "rate": p, "clamp": cl}
                        if tgt == "acts":
                            trials.append(Trial(f"acts~{p:g}#{s}{'+clamp' if cl else ''}", info,
                                                acts={n: (p, a.act_kind) for n in names}, seed=500 + s, clamp=cl))
                        else:
                            kinds = {"weights": {"weight"}, "params": None, "hs-params": None}[tgt]
                            lset = ({ly["name"] for ly in model.schema["transforms"]["h_s"]} if tgt == "hs-params"
                                    else set(names) - {"h_a.abs"})
                            sites = param_sites(model, kinds=kinds, layer_names=lset, view="artifact")
                            info["bits"] = sum(x.n_bits for x in sites)
                            rng = np.random.default_rng([s, 5, int(-math.log10(p) * 100), len(tgt)])
                            trials.append(Trial(f"{tgt}@{p:g}#{s}{'+clamp' if cl else ''}", info,
                                                sample_param_flips(rng, sites, rate=p), seed=s, clamp=cl))
    elif exp == "clean":
        trials.append(Trial("clean", {"target": "clean"}))
    else:
        raise ValueError(f"unknown experiment {exp}")
    return trials


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def cmd_run(a) -> Path:
    from .integer_codec import resolve_artifact

    base = IntegerModel.load(resolve_artifact(a.artifact))
    trials = build_trials(a, base)
    if a.images == ["all"] or Path(a.data).is_file():
        names = None
    elif a.images:
        names = a.images
    else:   # the sweep subset where the folder has it (Kodak), else every image
        names = list(SUBSET) if all((Path(a.data) / f"{n}.png").is_file() for n in SUBSET) else None
    imgs = image_set(Path(a.data), names, a.crop)
    clamp = None
    if a.clamp != "none":
        rp = Path(a.clamp_ranges)
        if rp.is_file():
            clamp = {k: tuple(v) for k, v in json.loads(rp.read_text())["ranges"].items()}
        else:
            val = validation_images(a.val_images, a.val_crop)
            clamp = clamp_ranges(base, val)
            rp.parent.mkdir(parents=True, exist_ok=True)
            rp.write_text(json.dumps({"artifact": a.artifact, "val_images": a.val_images, "val_crop": a.val_crop,
                                      "source": str(VAL_SPLIT.relative_to(ROOT)), "ranges": clamp}))
    n_fault = sum(1 for t in trials if t.flips or t.acts)
    print(f"faults {a.experiment}: {len(trials)} trials ({n_fault} with faults), {len(imgs)} images "
          f"{'full' if not a.crop else f'{a.crop}px crops'}", flush=True)
    t0 = time.time()
    res = run_trials(trials, imgs, a.artifact, clamp, log=(lambda s: print(s, flush=True)) if not a.quiet else None)
    cpu = time.process_time()
    res.update({"experiment": a.experiment, "argv": sys.argv[1:] if a.argv is None else a.argv,
                "artifact": a.artifact, "images": [n for n, _ in imgs], "crop": a.crop, "commit": _git_commit(),
                "wall_s": time.time() - t0, "cpu_s": cpu, "view": getattr(a, "view", None)})
    out = Path(a.out or f"results/faults/{a.experiment}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=0, default=float))
    print(f"wrote {out} ({time.time() - t0:.0f} s)")
    return out


# ---- report -----------------------------------------------------------------------------
def _trial_stats(tr: dict, clean: dict) -> dict:
    ims = tr["images"]
    ok = [n for n, r in ims.items() if not r["failed"]]
    d_psnr = [clean[n]["psnr"] - ims[n]["psnr"] for n in ok]
    d_bpp = [ims[n]["bpp"] - clean[n]["bpp"] for n in ims if "bpp" in ims[n]]
    return {"d_psnr": float(np.mean(d_psnr)) if d_psnr else float("nan"),
            "psnr": float(np.mean([ims[n]["psnr"] for n in ok])) if ok else float("nan"),
            "bpp": float(np.mean([ims[n]["bpp"] for n in ims if "bpp" in ims[n]])) if d_bpp else float("nan"),
            "d_bpp": float(np.mean(d_bpp)) if d_bpp else float("nan"),
            "fail": float(np.mean([r["failed"] for r in ims.values()])),
            "changed": float(np.mean([(r["failed"] or abs(r["psnr"] - clean[n]["psnr"]) > 1e-9
                                       or r["bytes"] != clean[n]["bytes"]) for n, r in ims.items()])),
            "act_flips": float(np.mean([r.get("act_flips", 0) for r in ims.values()]))}


def summarize(res: dict, key: str) -> dict:
    """{group: {rate: mean stats over seeds}} for rate experiments (``key`` = info field)."""
    clean = res["clean"]
    out: dict = {}
    for tr in res["trials"]:
        info = tr["info"]
        g = info.get(key, info.get("target"))
        if "clamp" in info:
            g = f"{g}{' +clamp' if info['clamp'] else ''}"
        cl = res["clean_clamped"] if tr.get("clamp") else clean
        st = _trial_stats(tr, cl)
        st["param_flips"] = tr["param_flips"]
        out.setdefault(g, {}).setdefault(info["rate"], []).append(st)
    agg = {}
    for g, by in out.items():
        agg[g] = {}
        for p, sts in sorted(by.items()):
            agg[g][p] = {k: float(np.nanmean([s[k] for s in sts])) if not all(np.isnan(s[k]) for s in sts) else float("nan")
                         for k in sts[0]}
            agg[g][p]["n"] = len(sts)
    return agg


def _plot_rates(agg: dict, clean_psnr: float, clean_bpp: float, title: str, path: Path, groups=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(17, 5.2))
    groups = groups or list(agg)
    cmap = {"g_a": plt.cm.Blues, "h_a": plt.cm.Greens, "h_s": plt.cm.Oranges, "g_s": plt.cm.Reds}
    count: dict = {}
    for g in groups:
        t = g.split(".")[0]
        count[t] = count.get(t, 0) + 1
    seen: dict = {}
    for g in groups:
        by = agg[g]
        ps = sorted(by)
        t = g.split(".")[0]
        if t in cmap:
            seen[t] = seen.get(t, 0) + 1
            col = cmap[t](0.35 + 0.6 * seen[t] / count[t])
            ls = "-"
        else:
            col, ls = None, "--" if "clamp" in g else "-"
        kw = dict(color=col, ls=ls, marker="o", ms=3, label=g)
        ax[0].plot(ps, [by[p]["psnr"] for p in ps], **kw)
        ax[1].plot(ps, [by[p]["bpp"] for p in ps], **kw)
        ax[2].plot(ps, [100 * by[p]["fail"] for p in ps], **kw)
    ax[0].axhline(clean_psnr, color="k", lw=0.8, ls=":")
    ax[1].axhline(clean_bpp, color="k", lw=0.8, ls=":")
    allp = [p for g in groups for p in agg[g]]
    for a_, yl in zip(ax, ["PSNR of decodable files (dB)", "bpp (coded bytes)", "files that do not decode (%)"]):
        a_.set_xscale("log")
        a_.set_xlim(min(allp) / 2, max(allp) * 2)
        a_.set_xlabel("flip rate per bit")
        a_.set_ylabel(yl)
        a_.grid(alpha=0.3)
    ax[2].legend(fontsize=6, ncol=2, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def key_name(exp: str) -> str:
    return {"layer-params": "layer", "layer-acts": "layer", "kind-params": "kind", "network": "target"}[exp]


def _single_stats(res: dict, by: str) -> dict:
    clean = res["clean"]
    out: dict = {}
    for tr in res["trials"]:
        st = _trial_stats(tr, clean)
        info = tr["info"]
        out.setdefault(info[by], []).append((info, st))
    return out


def cmd_report(a) -> None:
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    res = {Path(f).stem: json.loads(Path(f).read_text()) for f in a.results}
    res = {k: v for k, v in res.items() if isinstance(v, dict) and "clean" in v and "experiment" in v}
    lines = ["# Fault injection: ranked tables (generated by `licfpga faults report`)", ""]
    summary = {}
    for name, r in res.items():
        cp = float(np.mean([v["psnr"] for v in r["clean"].values()]))
        cb = float(np.mean([v["bpp"] for v in r["clean"].values()]))
        scope = f"{len(r['images'])} images, {'full' if not r['crop'] else str(r['crop']) + ' px centre crops'}"
        exp = r["experiment"]
        if exp in ("layer-params", "layer-acts", "kind-params", "network"):
            key = {"layer-params": "layer", "layer-acts": "layer", "kind-params": "kind", "network": "target"}[exp]
            agg = summarize(r, key)
            summary[name] = {str(g): {str(p): v for p, v in by.items()} for g, by in agg.items()}
            _plot_rates(agg, cp, cb, f"{name}: {scope}; clean {cp:.2f} dB / {cb:.3f} bpp", outdir / f"{name}.png")
            agg = {g: by for g, by in agg.items()
                   if not (exp == "layer-params" and all(t["info"].get("bits", 1) == 0 for t in r["trials"]
                                                         if t["info"].get("layer") == g))}
            rr = [q for q in a.rank_rates if any(q in by for by in agg.values())] or [min(next(iter(agg.values())))]
            acts = exp == "layer-acts" or (exp == "network" and any("acts" in g for g in agg))
            mid, top = rr[len(rr) // 2], rr[-1]

            def key(item):
                by = item[1]
                return (-by.get(mid, {}).get("fail", 0), -by.get(top, {}).get("fail", 0),
                        -np.nan_to_num(by.get(top, {}).get("d_psnr", 0), nan=1e9))
            rows = sorted(agg.items(), key=key)
            flips = ("activation flips per image (acts: counted where computed -- a file failing in the rANS decoder "
                     "never runs g_s) or parameter flips") if acts else "parameter flips"
            lines += [f"## {name} ({scope}; clean {cp:.2f} dB, {cb:.4f} bpp; seeds per point: "
                      f"{max(v['n'] for by in agg.values() for v in by.values())})", "",
                      f"Per rate: ΔPSNR dB of the decodable files / share of files that do not decode / Δbpp / mean "
                      f"{flips}. Ranked by failures at {mid:g}, then at {top:g}, then ΔPSNR at {top:g}.", "",
                      "| rank | " + key_name(exp) + " | " + " | ".join(f"rate {q:g}" for q in rr) + " |",
                      "|---|---|" + "---|" * len(rr)]
            for i, (g, by) in enumerate(rows):
                cells = []
                for q in rr:
                    v = by.get(q)
                    fl = v["act_flips"] if v is not None and (exp == "layer-acts" or g.startswith("acts")) \
                        else (v or {}).get("param_flips", 0)
                    cells.append("–" if v is None else f"{v['d_psnr']:.3f} / {100 * v['fail']:.0f} % / {v['d_bpp']:+.4f} / "
                                 f"{fl:.1f}")
                lines.append(f"| {i + 1} | {g} | " + " | ".join(cells) + " |")
            lines.append("")
        elif exp in ("single-layer", "single-kind"):
            by = "group"
            st = _single_stats(r, by)
            rows = []
            for g, lst in st.items():
                d = [s["d_psnr"] for _, s in lst if not np.isnan(s["d_psnr"])]
                nbits = lst[0][0]["bits"]
                fail = float(np.mean([s["fail"] > 0 for _, s in lst]))
                mean_d = float(np.mean(d)) if d else float("nan")
                rows.append({"group": g, "flips": len(lst), "bits": nbits,
                             "changed": float(np.mean([s["changed"] > 0 for _, s in lst])),
                             "fail": fail, "d_psnr_mean": mean_d, "d_psnr_max": float(np.max(d)) if d else float("nan"),
                             "sens": nbits * (mean_d if d else 0.0), "fail_sens": nbits * fail,
                             "msb": [(i["kind"], i["bit"], i["word_bits"], round(s["d_psnr"], 3), s["fail"]) for i, s in lst]})
            rows.sort(key=lambda x: (-x["fail_sens"], -np.nan_to_num(x["sens"])))
            summary[name] = rows
            lines += [f"## {name} ({scope}; clean {cp:.2f} dB; exactly one flip per trial, uniform over the bits)", "",
                      "Sensitivity = bits x mean ΔPSNR per flip: the first-order PSNR drop per unit flip rate "
                      "(ΔPSNR(p) ≈ sensitivity · p while bits · p << 1); failure sensitivity likewise.", "",
                      "| rank | group | bits | flips | any effect | P(file fails) per flip | mean ΔPSNR per flip dB | "
                      "max ΔPSNR dB | sensitivity dB/rate | expected failures per unit rate |", "|---|---|---|---|---|---|---|---|---|---|"]
            for i, x in enumerate(rows):
                lines.append(f"| {i + 1} | {x['group']} | {x['bits']:,} | {x['flips']} | {100 * x['changed']:.0f} % | "
                             f"{100 * x['fail']:.0f} % | {x['d_psnr_mean']:.3f} | {x['d_psnr_max']:.2f} | "
                             f"{x['sens']:.3g} | {x['fail_sens']:.3g} |")
            lines.append("")
            _plot_single(r, outdir / f"{name}.png", f"{name}: {scope}")
        elif exp == "clean":
            summary[name] = {"psnr": cp, "bpp": cb}
            lines += [f"## {name} ({scope})", "", f"clean: {cp:.3f} dB, {cb:.4f} bpp", ""]
    (outdir / "ranked.md").write_text("\n".join(lines) + "\n")
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"wrote {outdir / 'ranked.md'}, {outdir / 'summary.json'} and plots")


def _plot_single(r: dict, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = r["clean"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    kinds = sorted({tr["info"]["kind"] for tr in r["trials"]})
    for k in kinds:
        xs, ys, fs = [], [], []
        for tr in r["trials"]:
            i = tr["info"]
            if i["kind"] != k:
                continue
            st = _trial_stats(tr, clean)
            xs.append(i["bit"] / max(1, i["word_bits"] - 1))
            ys.append(st["d_psnr"] if not np.isnan(st["d_psnr"]) else 40.0)
            fs.append(st["fail"] > 0)
        ax.scatter(xs, np.clip(ys, 1e-4, 40.0), s=[40 if f else 12 for f in fs], marker="o", label=k, alpha=0.7)
    ax.set_yscale("log")
    ax.set_ylim(5e-5, 100)
    ax.set_xlabel("bit position / (word bits - 1)   (0 = LSB, 1 = MSB / sign)")
    ax.set_ylabel("ΔPSNR dB (1e-4 = none; 40 = file fails, big dots)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- command line -----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="licfpga faults", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one fault-injection experiment, write JSON")
    r.add_argument("experiment", choices=["layer-params", "kind-params", "single-layer", "single-kind", "layer-acts",
                                          "network", "clean"],
                   help="layer-params: each layer's parameters at each rate; kind-params: each parameter kind "
                        "network-wide; single-layer / single-kind: exactly one flip per trial; layer-acts: each "
                        "layer's activations; network: all layers at once (--targets), with/without clamps")
    r.add_argument("--artifact", default=DEFAULT_ARTIFACT)
    r.add_argument("--data", default=str(KODAK), help="folder of PNGs (or one image)")
    r.add_argument("--images", nargs="*", default=None,
                   help=f"image stems (default the sweep subset {' '.join(SUBSET)}; 'all' = every image)")
    r.add_argument("--crop", type=int, default=256, help="centre crop edge in px, multiple of 64 (0 = whole image)")
    r.add_argument("--rates", nargs="+", default=[f"{x:g}" for x in RATES])
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--seed", type=int, default=0, help="single-flip experiments: sampling seed")
    r.add_argument("--flips", type=int, default=8, help="single-flip experiments: trials per group")
    r.add_argument("--layers", nargs="*", default=None, help="layer names or transforms (default all)")
    r.add_argument("--kinds", nargs="*", default=None, choices=KINDS)
    r.add_argument("--view", choices=["artifact", "hw"], default="artifact",
                   help="layer experiments: the artifact's arrays or FINN's memories (weights, thresholds, GDN ROMs)")
    r.add_argument("--act-kind", choices=["out", "acc"], default="out")
    r.add_argument("--targets", nargs="+", default=["weights", "acts"], choices=["weights", "params", "acts", "hs-params"],
                   help="network: weights / params (artifact view) / acts of --layers; hs-params: every h_s parameter")
    r.add_argument("--clamp", choices=["none", "on", "both"], default="none", help="range clamps (mitigation)")
    r.add_argument("--clamp-ranges", default="results/faults/clamp_ranges.json",
                   help="per-channel ranges (computed from validation images if missing)")
    r.add_argument("--val-images", type=int, default=16)
    r.add_argument("--val-crop", type=int, default=256)
    r.add_argument("--out", default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=cmd_run, argv=None)
    rp = sub.add_parser("report", help="plots + ranked tables from run JSONs")
    rp.add_argument("results", nargs="+")
    rp.add_argument("--out", default="results/faults")
    rp.add_argument("--rank-rates", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3],
                    help="rates shown in the rate tables (ranked by failures at the middle one)")
    rp.set_defaults(fn=cmd_report)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    if a.cmd == "run":
        a.argv = ["faults", *argv]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    a.fn(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
