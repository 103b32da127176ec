"""``licfpga bench``: encode/decode time of our codec against CompressAI's own model
class with the same weights, in the same process, on the same image.

Ours = the full file path (padding, tiling, rANS via CompressAI, container + CRC32);
peer = CompressAI's ``compress``/``decompress`` on the pre-padded tensor. The ratio
shows what our codec adds around the library. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from compressai.models import MeanScaleHyperprior as CaiMeanScale
from compressai.models import ScaleHyperprior as CaiScale

from licfpga.model.checkpoint import resolve_checkpoint
from licfpga.model.zoo import build_model

from .codec import Codec
from .evaluate import load_images
from .demo import SAMPLES


def _median_ms(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def _pairs():
    """(label, our Codec, CompressAI model with identical weights)."""
    from licfpga.host.cli import DEFAULT_MODEL

    ours = Codec.load(resolve_checkpoint(DEFAULT_MODEL))
    kw = ours.state["kwargs"]
    peer = CaiMeanScale(kw["N"], kw["M"]).eval()
    peer.load_state_dict(ours.model.state_dict())
    peer.update(force=True)
    yield f"mean-scale (shipped {DEFAULT_MODEL}) vs compressai.MeanScaleHyperprior", ours, peer
    # no ScaleHyperprior checkpoint is shipped: both sides get the same untrained weights
    torch.manual_seed(0)
    m = build_model("hyperprior", N=kw["N"], M=kw["M"]).eval()
    m.update(force=True)
    peer = CaiScale(kw["N"], kw["M"]).eval()
    peer.load_state_dict(m.state_dict())
    peer.update(force=True)
    yield "hyperprior (untrained weights) vs compressai.ScaleHyperprior", \
        Codec(m, {"arch": "hyperprior", "kwargs": {"N": kw["N"], "M": kw["M"], "gdn": "gdn"}}), peer


@torch.inference_mode()
def main(args) -> None:
    h, w = args.size
    name, img = load_images(SAMPLES)[0]
    reps = (-(-h // img.shape[0]), -(-w // img.shape[1]), 1)
    img = np.ascontiguousarray(np.tile(img, reps)[:h, :w])  # crop, or tile up to the asked size
    print(f"image {name} {w}x{h}, torch threads {torch.get_num_threads()}, median of {args.repeat}\n")
    print(f"{'pair':<68} {'ours enc':>9} {'peer enc':>9} {'ratio':>6} {'ours dec':>9} {'peer dec':>9} {'ratio':>6}  same?")
    for label, ours, peer in _pairs():
        x = ours._to_tensor(img)
        enc_o, data = _median_ms(lambda: ours.encode(img), args.repeat)
        enc_p, out = _median_ms(lambda: peer.compress(x), args.repeat)
        dec_o, (rec, _) = _median_ms(lambda: ours.decode(data), args.repeat)
        dec_p, xh = _median_ms(lambda: peer.decompress(out["strings"], out["shape"]), args.repeat)
        rec_p = xh["x_hat"][0, :, :h, :w].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        diff = int(np.abs(rec.astype(int) - rec_p.astype(int)).max())
        same = diff <= 1 and sum(len(s[0]) for s in out["strings"]) < len(data)
        print(f"{label:<68} {enc_o:9.1f} {enc_p:9.1f} {enc_o / enc_p:6.2f} {dec_o:9.1f} {dec_p:9.1f} "
              f"{dec_o / dec_p:6.2f}  {'yes' if same else 'NO'} (max diff {diff})")
    print("\n'same?': our decoded image is within 1 LSB of CompressAI's (ours runs the hyper-synthesis on\n"
          "one thread for reproducible files, CompressAI on all threads: float summation order differs),\n"
          "and our file only adds the header.")
