"""``licfpga bench``: encode/decode time of two pairs of *different* implementations of the
codec, measured in the same process on the same image, with their ratios.

1. **integer vs float**: the deployable student's bit-exact integer model (``--backend
   integer``: :class:`~licfpga.model.golden.network.IntegerModel` in NumPy integers, our rANS
   with the artifact's CDF tables, integer scale thresholds) against the float student it
   was distilled into and quantised from (PyTorch transforms, CompressAI's entropy models),
   both through the full file path. Different arithmetic, so also their rate and PSNR.
2. **codec vs bare model**: our full file path (padding, tiling, the ``.lic`` container and
   its CRCs, our bounds-checked rANS, the entropy-parameter nets pinned to one thread)
   against a second instance of the same model calling CompressAI's own
   ``compress``/``decompress`` (``compressai.ans``) on the pre-padded image: what the codec
   adds around the model. The decoded pixels must agree within 1 LSB.

(Comparing our model class with CompressAI's class of the same name would compare
CompressAI with itself: ours inherits its forward/compress/decompress.) Medians of
``--repeat`` runs, each after one warm-up call.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from licfpga.model.checkpoint import load_model, resolve_checkpoint
from licfpga.model.geometry import pad_to_stride

from .codec import Codec
from .demo import SAMPLES
from .evaluate import load_images
from .integer_codec import IntegerCodec
from .metrics import psnr

FLOAT_STUDENT = "student-0.013"
INT_STUDENT = "int-student-0.013"


def _median_ms(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls after one untimed warm-up call (first calls pay
    for oneDNN kernel selection and lazy set-up: whichever side ran first would lose)."""
    out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def _codec_run(codec: Codec, img: np.ndarray, repeat: int) -> dict:
    enc, data = _median_ms(lambda: codec.encode(img), repeat)
    dec, (rec, _) = _median_ms(lambda: codec.decode(data), repeat)
    return {"enc_ms": enc, "dec_ms": dec, "bytes": len(data), "rec": rec}


def _bare_run(model, img: np.ndarray, stride: int, repeat: int) -> dict:
    """CompressAI's compress/decompress of ``model`` on the replicate-padded image."""
    h, w = img.shape[:2]
    x = torch.from_numpy(np.array(pad_to_stride(img, stride))).permute(2, 0, 1)[None].float().div_(255)
    enc, out = _median_ms(lambda: model.compress(x), repeat)
    dec, xh = _median_ms(lambda: model.decompress(out["strings"], out["shape"]), repeat)
    rec = xh["x_hat"][0, :, :h, :w].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return {"enc_ms": enc, "dec_ms": dec, "bytes": sum(len(s[0]) for s in out["strings"]), "rec": rec}


def _row(label: str, a_name: str, b_name: str, a: dict, b: dict, img: np.ndarray) -> dict:
    return {"pair": label, "a": a_name, "b": b_name,
            "enc_ms": (a["enc_ms"], b["enc_ms"]), "dec_ms": (a["dec_ms"], b["dec_ms"]),
            "enc_ratio": a["enc_ms"] / b["enc_ms"], "dec_ratio": a["dec_ms"] / b["dec_ms"],
            "bytes": (a["bytes"], b["bytes"]), "psnr": (psnr(img, a["rec"]), psnr(img, b["rec"])),
            "max_diff": int(np.abs(a["rec"].astype(int) - b["rec"].astype(int)).max())}


def measure(img: np.ndarray, repeat: int = 3) -> list[dict]:
    """The two pairs on ``img`` (uint8 HxWx3): one dict per pair, A against B."""
    from licfpga.host.cli import DEFAULT_MODEL

    rows = []
    a = _codec_run(IntegerCodec(INT_STUDENT), img, repeat)
    b = _codec_run(Codec.load(resolve_checkpoint(FLOAT_STUDENT)), img, repeat)
    rows.append(_row("integer vs float student", f"{INT_STUDENT} (NumPy integers)",
                     f"{FLOAT_STUDENT} (PyTorch float32)", a, b, img))

    codec = Codec.load(resolve_checkpoint(DEFAULT_MODEL))
    bare, _ = load_model(resolve_checkpoint(DEFAULT_MODEL))      # own instance: CompressAI's coder
    a = _codec_run(codec, img, repeat)
    b = _bare_run(bare, img, codec.stride, repeat)
    rows.append(_row("codec vs bare model", f"{DEFAULT_MODEL} .lic file path",
                     f"{DEFAULT_MODEL} model.compress/decompress", a, b, img))
    return rows


@torch.inference_mode()
def main(args) -> list[dict]:
    h, w = args.size
    name, img = load_images(SAMPLES)[0]
    reps = (-(-h // img.shape[0]), -(-w // img.shape[1]), 1)
    img = np.ascontiguousarray(np.tile(img, reps)[:h, :w])  # crop, or tile up to the asked size
    print(f"image {name} {w}x{h}, torch threads {torch.get_num_threads()}, median of {args.repeat}\n")
    rows = measure(img, args.repeat)
    print(f"{'pair: A vs B':<26} {'A enc':>8} {'B enc':>8} {'A/B':>5} {'A dec':>8} {'B dec':>8} {'A/B':>5}"
          f" {'A bytes':>8} {'B bytes':>8} {'A dB':>6} {'B dB':>6} {'max diff':>8}")
    for r in rows:
        print(f"{r['pair']:<26} {r['enc_ms'][0]:8.1f} {r['enc_ms'][1]:8.1f} {r['enc_ratio']:5.2f}"
              f" {r['dec_ms'][0]:8.1f} {r['dec_ms'][1]:8.1f} {r['dec_ratio']:5.2f}"
              f" {r['bytes'][0]:8d} {r['bytes'][1]:8d} {r['psnr'][0]:6.2f} {r['psnr'][1]:6.2f} {r['max_diff']:8d}")
    print("\ntimes in ms; A/B: A's time over B's; max diff: largest pixel difference between A's and B's decoded images")
    for r in rows:
        print(f"  {r['pair']}: A = {r['a']}, B = {r['b']}")
    print("The bare model's bytes are its entropy streams only; the file adds the container header and per-tile\n"
          "fields. It runs the hyper-synthesis on all threads, the codec on one (reproducible files), so the\n"
          "decoded images may differ by 1 LSB.")
    return rows
