"""Bit-exact integer model of the deployed student (NumPy only, no torch).

This is the golden reference of the whole network: every hardware layer and the board
runtime must produce exactly these integers. It reads an exported artifact (``.npz`` of
integer arrays + ``.json`` schema, written by ``licfpga.model.export_int``), never a
PyTorch object.

Arithmetic (identical for every layer kind; all widths checked by :func:`range_report`):

* activations are integers: pixels u8 (0..255), hidden activations s8 (-128..127) or u8
  after a ReLU, the latents ``y`` and ``z`` s8 narrow (-127..127, scale 1), the
  entropy-model scale code u8;
* convolution / transposed convolution: ``acc = sum(x * w) + b`` with s8 (or s4/s6) weights
  and the s32 bias in the accumulator's scale; the accumulator is an s32 register (the
  static range analysis proves the actual weights cannot overflow it for any input);
* requantisation (per output channel ``c``): ``out = clamp((acc * mult[c] + 2**(shift[c]-1))
  >> shift[c], lo, hi)`` -- an s32 x u31 product (s63), round half up (towards +inf) by
  the added half and the arithmetic right shift, then saturation to the output range
  (ReLU is ``lo = 0``). ``mult / 2**shift`` is the float ratio ``s_in * s_w[c] / s_out``
  with 31 significant bits;
* GDN / IGDN: :func:`licfpga.model.golden.gdn.gdn_int` (32-bit fixed-point normalisation);
* transposed convolutions follow PyTorch's ``ConvTranspose2d`` definition (the hardware
  uses the equal sub-pixel decomposition of ``overlay/deconv.py``);
* the entropy model's CDF index of a scale code ``q`` is ``#{i : T[i] < q}`` for the
  exported integer thresholds ``T`` (equivalent to CompressAI's ``build_indexes`` on the
  scale ``q * s``), so the index -- and every coded bit -- is a pure integer function.

Integer sums are computed as float64 matrix products: every product and partial sum is an
integer below 2**53 (checked), so the result is exact in any summation order and with any
number of BLAS threads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from licfpga.model.geometry import STRIDE

from . import gdn as golden_gdn

FORMAT = "licfpga-int/1"
ACC_BITS = 32
TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")


class ArtifactError(ValueError):
    """The integer artifact is missing, malformed or inconsistent."""


# ---- layers ---------------------------------------------------------------------------
def _as_f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def conv2d_acc(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Integer accumulator of a 2-D convolution. x [Ci, H, W], w [Co, Ci, k, k] -> [Co, Ho, Wo] int64."""
    ci, h, wd = x.shape
    co, ci2, k, _ = w.shape
    if ci != ci2:
        raise ValueError(f"conv expects {ci2} input channels, got {ci}")
    xp = np.pad(_as_f64(x), ((0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    acc = np.zeros((co, ho * wo))
    wf = _as_f64(w)
    for ky in range(k):
        for kx in range(k):
            tap = xp[:, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            acc += wf[:, :, ky, kx] @ tap.reshape(ci, -1)
    return np.rint(acc).astype(np.int64).reshape(co, ho, wo) + np.asarray(b, dtype=np.int64)[:, None, None]


def deconv2d_acc(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int,
                 output_padding: int) -> np.ndarray:
    """Integer accumulator of PyTorch's ConvTranspose2d. w [Ci, Co, k, k] (PyTorch layout)."""
    ci, h, wd = x.shape
    ci2, co, k, _ = w.shape
    if ci != ci2:
        raise ValueError(f"deconv expects {ci2} input channels, got {ci}")
    ho = (h - 1) * stride - 2 * padding + k + output_padding
    wo = (wd - 1) * stride - 2 * padding + k + output_padding
    fh = max((h - 1) * stride + k, padding + ho)
    fw = max((wd - 1) * stride + k, padding + wo)
    full = np.zeros((co, fh, fw))
    xf = _as_f64(x).reshape(ci, -1)
    wf = _as_f64(w)
    for ky in range(k):
        for kx in range(k):
            contrib = (wf[:, :, ky, kx].T @ xf).reshape(co, h, wd)
            full[:, ky:ky + stride * (h - 1) + 1:stride, kx:kx + stride * (wd - 1) + 1:stride] += contrib
    acc = np.rint(full[:, padding:padding + ho, padding:padding + wo]).astype(np.int64)
    return acc + np.asarray(b, dtype=np.int64)[:, None, None]


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """clamp((acc * mult + 2**(shift-1)) >> shift, lo, hi), per output channel (axis 0)."""
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(mult, dtype=np.int64)[:, None, None]
    s = np.asarray(shift, dtype=np.int64)[:, None, None]
    if np.abs(acc).max(initial=0) >= 2**31:
        raise OverflowError("accumulator exceeds s32")
    out = (acc * m + (np.int64(1) << (s - 1))) >> s        # |acc*m| < 2**62: no int64 overflow
    return np.clip(out, lo, hi)


# ---- the artifact ---------------------------------------------------------------------
def artifact_paths(path) -> tuple[Path, Path]:
    """``x``, ``x.json`` or ``x.npz`` -> (``x.json``, ``x.npz``); names may contain dots
    (``int-student-0.013``), so the suffix is only stripped when it is ours."""
    s = str(path)
    for suffix in (".json", ".npz"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
    return Path(s + ".json"), Path(s + ".npz")


class IntegerModel:
    """The deployed network, from an exported artifact (``path.json`` + ``path.npz``)."""

    # (lo, table) of scale_indexes, built on first use from this instance's own arrays; a class
    # default too, because subclasses that skip __init__ (host/faults.py's FaultyModel) share it
    _index_lut = None

    def __init__(self, schema: dict, arrays: dict[str, np.ndarray]):
        if schema.get("format") != FORMAT:
            raise ArtifactError(f"not a {FORMAT} artifact")
        self.schema, self.arrays = schema, arrays
        missing = [k for k in self._array_keys() if k not in arrays]
        if missing:
            raise ArtifactError(f"artifact lacks arrays: {', '.join(missing[:5])}")
        self._gdn = {}
        self._index_lut = None        # (lo, table) of scale_indexes, built on first use
        for t in TRANSFORMS:
            for layer in schema["transforms"][t]:
                if layer["op"] == "gdn":
                    self._gdn[layer["name"]] = self.gdn_params(layer)
        self.check_ranges()

    # -- loading
    @classmethod
    def load(cls, path) -> "IntegerModel":
        js, npz = artifact_paths(path)
        for f in (js, npz):
            if not f.is_file():
                raise ArtifactError(f"integer artifact file not found: {f}")
        try:
            schema = json.loads(js.read_text())
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read integer artifact {path}: {exc}") from None
        return cls(schema, arrays)

    def _array_keys(self) -> list[str]:
        keys = []
        for t in TRANSFORMS:
            for layer in self.schema["transforms"][t]:
                keys += [v for k, v in layer.items() if k in ("weight", "bias", "mult", "shift",
                                                              "gamma", "beta", "gshift")]
        keys += list(self.schema["entropy"]["arrays"].values())
        return keys

    def digest(self) -> bytes:
        """SHA-256 of the schema and every array (identifies the model in .lic files)."""
        h = hashlib.sha256(json.dumps(self.schema, sort_keys=True).encode())
        for k in sorted(self.arrays):
            a = self.arrays[k]
            h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
        return h.digest()

    @property
    def N(self) -> int:
        return int(self.schema["model"]["N"])

    @property
    def z_channels(self) -> int:
        """Channels of z (the hyper-transforms' width; = N unless g_a/g_s were pruned)."""
        return int(self.schema["model"].get("Nh") or self.N)

    @property
    def M(self) -> int:
        return int(self.schema["model"]["M"])

    def gdn_params(self, layer: dict) -> golden_gdn.GDNIntParams:
        a = self.arrays
        return golden_gdn.GDNIntParams(
            inverse=bool(layer["inverse"]), variant=layer["variant"], gamma=a[layer["gamma"]].astype(np.int64),
            beta=a[layer["beta"]].astype(np.int64), shift=a[layer["gshift"]].astype(np.int64),
            lut=golden_gdn.core_lut(layer["variant"]), in_scale=float(layer["in_scale"]),
            out_scale=float(layer["out_scale"]), gamma_bits=int(layer["gamma_bits"]),
            acc_bits=int(layer["acc_bits"]))

    # -- static range analysis
    def range_report(self) -> list[dict]:
        """Per conv layer: worst-case |accumulator| over all inputs in the layer's input
        range, for the actual weights and bias, and the bits it needs (sign included)."""
        rows = []
        for t in TRANSFORMS:
            for layer in self.schema["transforms"][t]:
                if layer["op"] not in ("conv", "deconv"):
                    continue
                w = self.arrays[layer["weight"]].astype(np.int64)
                b = self.arrays[layer["bias"]].astype(np.int64)
                lo, hi = layer["in_range"]
                # per output channel: each term w*x is maximised independently over x in [lo, hi]
                axes = (1, 2, 3) if layer["op"] == "conv" else (0, 2, 3)
                pos = np.maximum(w * hi, w * lo).sum(axis=axes)
                neg = np.minimum(w * hi, w * lo).sum(axis=axes)
                worst = int(max(np.abs(pos + b).max(), np.abs(neg + b).max()))
                m = self.arrays[layer["mult"]].astype(np.int64)
                rows.append({"layer": layer["name"], "op": layer["op"], "w_bits": layer["w_bits"],
                             "in_range": [lo, hi], "worst_acc": worst, "acc_bits_needed": worst.bit_length() + 1,
                             "acc_bits": ACC_BITS, "mult_bits": int(m.max()).bit_length(),
                             "product_bits": (worst * int(m.max())).bit_length() + 1})
        return rows

    def check_ranges(self) -> None:
        errs = []
        for r in self.range_report():
            if r["acc_bits_needed"] > ACC_BITS:
                errs.append(f"{r['layer']}: accumulator needs {r['acc_bits_needed']} bits > {ACC_BITS}")
            if r["product_bits"] > 63:
                errs.append(f"{r['layer']}: requantisation product needs {r['product_bits']} bits > 63")
            if r["worst_acc"] >= 2**53:
                errs.append(f"{r['layer']}: beyond exact float64 summation")
        for name, p in self._gdn.items():
            try:
                golden_gdn.check_ranges(p)
            except ValueError as exc:
                errs.append(f"{name}: {exc}")
        if errs:
            raise ArtifactError("range check failed: " + "; ".join(errs))

    # -- execution
    def run_transform(self, name: str, x: np.ndarray, trace: dict | None = None) -> np.ndarray:
        """Run one transform on a [C, H, W] integer array; ``trace`` collects layer outputs."""
        x = np.asarray(x, dtype=np.int64)
        for layer in self.schema["transforms"][name]:
            op = layer["op"]
            if op == "abs":
                x = np.abs(x)
            elif op == "gdn":
                x = golden_gdn.gdn_int(x.astype(np.int8), self._gdn[layer["name"]]).astype(np.int64)
            elif op in ("conv", "deconv"):
                lo, hi = layer["in_range"]
                if x.min() < lo or x.max() > hi:
                    raise ValueError(f"{layer['name']}: input outside its range [{lo}, {hi}]")
                w, b = self.arrays[layer["weight"]], self.arrays[layer["bias"]]
                if op == "conv":
                    acc = conv2d_acc(x, w, b, layer["stride"], layer["padding"])
                else:
                    acc = deconv2d_acc(x, w, b, layer["stride"], layer["padding"], layer["output_padding"])
                x = requantize(acc, self.arrays[layer["mult"]], self.arrays[layer["shift"]], *layer["out_range"])
            else:
                raise ArtifactError(f"unknown op {op!r}")
            if trace is not None:
                trace[layer["name"]] = x
        return x

    def analysis(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [H, W, 3] (H, W multiples of 64) -> (y [M, H/16, W/16], z [N, H/64, W/64])."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("expected a uint8 [H, W, 3] image")
        if rgb.shape[0] % STRIDE or rgb.shape[1] % STRIDE:
            raise ValueError(f"image height and width must be multiples of {STRIDE} (pad first)")
        y = self.run_transform("g_a", rgb.transpose(2, 0, 1))
        z = self.run_transform("h_a", y)
        return y, z

    def scale_codes(self, z: np.ndarray) -> np.ndarray:
        """z [N, h, w] -> u8 scale code per latent element [M, 4h, 4w]."""
        return self.run_transform("h_s", z)

    def scale_indexes_reference(self, codes: np.ndarray) -> np.ndarray:
        """CDF index of each scale code: #{i : T[i] < q} (the definition; a binary search per
        element). :meth:`scale_indexes` returns the same int32 array, faster."""
        t = self.arrays[self.schema["entropy"]["arrays"]["y_thresholds"]].astype(np.int64)
        return np.searchsorted(t, np.asarray(codes, dtype=np.int64), side="left").astype(np.int32)

    def index_table(self) -> tuple[int, np.ndarray]:
        """(lo, lut): lut[q - lo] = #{i : T[i] < q} for every code q of h_s's output range
        [lo, hi] (its last layer's ``out_range``, u8: 0..255); built once from
        :meth:`scale_indexes_reference` itself, so it cannot disagree with it."""
        if self._index_lut is None:
            lo, hi = (int(v) for v in self.schema["transforms"]["h_s"][-1]["out_range"])
            q = np.arange(lo, hi + 1, dtype=np.int64)
            self._index_lut = (lo, np.ascontiguousarray(self.scale_indexes_reference(q)))
        return self._index_lut

    def scale_indexes(self, codes: np.ndarray) -> np.ndarray:
        """CDF index of each scale code: #{i : T[i] < q}, as an int32 array of the codes'
        shape. Equal element for element to :meth:`scale_indexes_reference` for any input
        (tests/test_ps_fast_paths.py): integer codes inside h_s's output range -- all that h_s
        computes -- are one lookup in :meth:`index_table` (no per-element search); anything
        else (codes outside it, other dtypes) goes to the reference."""
        q = np.asarray(codes)
        if q.dtype.kind in "iu" and q.size:
            lo, lut = self.index_table()
            if lo <= q.min() and q.max() < lo + lut.size:
                if not np.can_cast(q.dtype, np.intp):
                    q = q.astype(np.intp)                # uint64: in range, so exact
                return np.take(lut, q if lo == 0 else q - lo)
        return self.scale_indexes_reference(q)

    def synthesis(self, y: np.ndarray) -> np.ndarray:
        """y [M, h, w] -> uint8 [16h, 16w, 3]."""
        x = self.run_transform("g_s", y)
        return x.transpose(1, 2, 0).astype(np.uint8)

    def entropy_tables(self, which: str) -> dict:
        """CDF tables of ``"y"`` (Gaussian, by index) or ``"z"`` (factorized, by channel)."""
        e, a = self.schema["entropy"], self.arrays
        names = e["arrays"]
        out = {"cdf": a[names[f"{which}_cdf"]], "cdf_length": a[names[f"{which}_cdf_length"]],
               "offset": a[names[f"{which}_offset"]]}
        if which == "z":
            out["median"] = a[names["z_median"]]
        return out
