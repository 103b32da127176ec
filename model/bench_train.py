"""``licfpga bench-train``: steps/s and pixels/s of the real training step, every option side by side.

The step is :mod:`licfpga.model.train`'s: forward under the chosen autocast, the RD loss in
fp32, backward, gradient clipping, Adam, then the entropy bottleneck's auxiliary step. The
input is a fixed batch (drawn once), so the figures are the step alone; the cost of drawing
a batch (crops from the photos in memory) is measured separately, since training draws them
on a background thread (:class:`licfpga.model.fast_train.Prefetcher`).
A benchmark, not a test: it prints measured figures and ratios against fp32 in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .fast_train import autocast, prepare, to_input
from .geometry import STRIDE
from .train import RandomCrops, list_images, optimizer_step, rd_loss, split_aux_params
from .zoo import build_model

ARCHS = {  # what the campaign trains: the teacher, and a student at the width KV260 1080p30 fits
    "teacher": ("mean-scale", {"N": 64, "M": 96}),
    "student": ("hyperprior", {"N": 32, "M": 48}),
}
# (label, precision, channels_last, compile)
SETTINGS = [
    ("fp32", "fp32", False, False),
    ("fp32 + channels_last", "fp32", True, False),
    ("bf16", "bf16", False, False),
    ("bf16 + channels_last", "bf16", True, False),
    ("bf16-islands + channels_last", "bf16-islands", True, False),
    ("bf16-islands + channels_last + compile", "bf16-islands", True, True),
]


def time_step(arch: str, kwargs: dict, x: torch.Tensor, precision: str, channels_last: bool,
              compile: bool, steps: int, warmup: int) -> float:
    """Median seconds per training step."""
    torch.manual_seed(0)
    net = build_model(arch, **kwargs).train()
    _, params, aux_params = split_aux_params(net)
    opt = torch.optim.Adam(params, lr=1e-4)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    model = prepare(net, precision, channels_last, compile)
    x = to_input(x, channels_last)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast(precision):
            out = model(x)
        out["x_hat"] = out["x_hat"].float()
        optimizer_step(rd_loss(out, x, 0.013, "mse")["loss"], params, opt, net, aux_opt, 1.0)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="licfpga bench-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per setting (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    p.add_argument("--data", default="../shared/data/train", help="photos for the batch and the crop timing")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile setting (slow to compile)")
    p.add_argument("--json", default=None, help="also write the rows here")
    a = p.parse_args(argv)
    if a.steps <= 0 or a.batch <= 0 or a.patch % STRIDE or any(t <= 0 for t in a.threads):
        p.error(f"--steps, --batch and --threads must be positive and --patch a multiple of {STRIDE}")
    files = list_images(a.data)[:40]
    crops = RandomCrops(files, a.patch, seed=0)
    t0 = time.perf_counter()
    for _ in range(5):
        x = crops.batch(a.batch)
    draw_ms = (time.perf_counter() - t0) / 5 * 1e3
    print(f"drawing one batch of {a.batch} x {a.patch} px crops: {draw_ms:.1f} ms "
          f"(done on the prefetch thread in training, off the step's critical path)")
    settings = [s for s in SETTINGS if not (a.no_compile and s[3])]
    rows = []
    from tqdm import tqdm
    jobs = [(arch, th, s) for arch in a.archs for th in a.threads for s in settings]
    for arch, th, (label, prec, cl, comp) in tqdm(jobs, desc="bench-train", unit="setting"):
        torch.set_num_threads(th)
        name, kwargs = ARCHS[arch]
        sec = time_step(name, kwargs, x, prec, cl, comp, a.steps, a.warmup)
        rows.append({"arch": arch, "model": f"{name} {kwargs}", "threads": th, "setting": label,
                     "ms_per_step": sec * 1e3, "steps_per_s": 1 / sec,
                     "pixels_per_s": a.batch * a.patch ** 2 / sec})
    base = {(r["arch"], r["threads"]): r["ms_per_step"] for r in rows if r["setting"] == "fp32"}
    print(f"\n| model | threads | setting | ms/step | steps/s | Mpx/s | vs fp32 |\n|---|---|---|---|---|---|---|")
    for r in rows:
        r["speedup_vs_fp32"] = base[r["arch"], r["threads"]] / r["ms_per_step"]
        print(f"| {r['model']} | {r['threads']} | {r['setting']} | {r['ms_per_step']:.0f} | {r['steps_per_s']:.2f} | "
              f"{r['pixels_per_s'] / 1e6:.2f} | {r['speedup_vs_fp32']:.2f}x |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"batch": a.batch, "patch": a.patch, "draw_ms": draw_ms,
                                            "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
