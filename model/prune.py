"""Structured channel pruning of a student's g_a / g_s, GDN-aware, then RD fine-tuning.

Saliency of hidden channel ``c`` of a stage (the output of a conv and of the GDN/IGDN that
follows it)::

    s_c = E|GDN(x)_c| * ||W_next[:, c]||_2

the mean magnitude of the channel *after* the divisive normalisation (a large pre-GDN
response that GDN divides away is not informative) times how strongly the next layer
reads it. Measured on a batch of training crops; no batch-norm scale is needed (there is
none in these models). The ``keep`` most salient channels of each of the six hidden
stages survive: the producing conv's output channels, the GDN's ``beta[c]`` and
``gamma[c, c']`` sub-matrix, and the next layer's input channels. The hyper-transforms and
z keep their width (``Nh``). ``licfpga prune`` writes one fine-tuned checkpoint per width
and an RD-vs-MACs table/plot.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .checkpoint import load_model, resolve_checkpoint, save_checkpoint
from .train import SPLIT, RandomCrops, center_crops, lr_at, optimizer_step, rd_loss, train_val_files
from .zoo import ScaleHyperprior


def _stages(model: nn.Module):
    """(transform, conv index, gdn index, next index) of the six hidden stages."""
    for t in ("g_a", "g_s"):
        for i in (0, 2, 4):
            yield t, i, i + 1, i + 2


@torch.no_grad()
def saliency(model: nn.Module, x: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    acts: dict[tuple[str, int], torch.Tensor] = {}
    hooks = []
    for t, _ci, gi, _ni in _stages(model):
        def hook(_m, _a, out, key=(t, gi)):
            acts[key] = out.abs().mean(dim=(0, 2, 3))
        hooks.append(getattr(model, t)[gi].register_forward_hook(hook))
    model.eval()
    model(x)
    for h in hooks:
        h.remove()
    sal = {}
    for t, _ci, gi, ni in _stages(model):
        w = getattr(model, t)[ni].weight           # Conv2d [Co, Ci, k, k]; ConvT [Ci, Co, k, k]
        dim = 0 if isinstance(getattr(model, t)[ni], nn.ConvTranspose2d) else 1
        wn = w.transpose(0, dim).reshape(w.shape[dim], -1).norm(dim=1)
        sal[(t, gi)] = acts[(t, gi)] * wn
    return sal


@torch.no_grad()
def prune(model: nn.Module, keep: int, x: torch.Tensor) -> nn.Module:
    """A ScaleHyperprior with ``keep`` channels in every hidden g_a/g_s stage."""
    N = model.g_a[0].out_channels
    M = model.g_a[-1].out_channels
    Nh = model.h_a[-1].out_channels
    if not 1 <= keep <= N:
        raise ValueError(f"keep must be in [1, {N}], got {keep}")
    sal = saliency(model, x)
    out = ScaleHyperprior(keep, M, Nh=Nh)
    for name in ("h_a", "h_s"):
        getattr(out, name).load_state_dict(getattr(model, name).state_dict())
    # copies: a final checkpoint's CDF buffers are sized, a fresh model's are empty
    out.entropy_bottleneck = copy.deepcopy(model.entropy_bottleneck)
    out.gaussian_conditional = copy.deepcopy(model.gaussian_conditional)
    for t in ("g_a", "g_s"):
        src, dst = getattr(model, t), getattr(out, t)
        prev = None                                   # kept input channels of the current conv
        for _t, ci, gi, ni in ((s for s in _stages(model) if s[0] == t)):
            idx = torch.sort(torch.topk(sal[(t, gi)], keep).indices).values
            _copy_conv(src[ci], dst[ci], out_idx=idx, in_idx=prev)
            g_src, g_dst = src[gi], dst[gi]
            g_dst.beta.copy_(g_src.beta[idx])
            g_dst.gamma.copy_(g_src.gamma[idx][:, idx])
            prev = idx
        _copy_conv(src[6], dst[6], out_idx=None, in_idx=prev)
    return out


def _copy_conv(src, dst, out_idx, in_idx) -> None:
    w, b = src.weight, src.bias
    transposed = isinstance(src, nn.ConvTranspose2d)
    o_dim, i_dim = (1, 0) if transposed else (0, 1)
    if out_idx is not None:
        w = w.index_select(o_dim, out_idx)
        b = b[out_idx]
    if in_idx is not None:
        w = w.index_select(i_dim, in_idx)
    dst.weight.copy_(w)
    dst.bias.copy_(b)


def finetune(model, lmbda: float, steps: int, crops: RandomCrops, batch: int, lr: float) -> None:
    aux_names = {n for n, _ in model.named_parameters() if n.endswith(".quantiles")}
    params = [p for n, p in model.named_parameters() if n not in aux_names]
    opt = torch.optim.Adam(params, lr=lr)
    aux_opt = torch.optim.Adam([p for n, p in model.named_parameters() if n in aux_names], lr=1e-3)
    for step in tqdm(range(steps), desc="fine-tune", unit="step", leave=False):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, 0.8)
        model.train()
        x = crops.batch(batch)
        optimizer_step(rd_loss(model(x), x, lmbda, "mse")["loss"], params, opt, model, aux_opt, 1.0)


def macs_per_px(model: nn.Module) -> dict[str, float]:
    """Encoder (g_a+h_a+h_s) and decoder (h_s+g_s) MACs per input pixel, from layer shapes."""
    def conv_macs(m, pixels):
        """Ci*Co*k*k per pixel; ``pixels`` (per image pixel) is the conv's output, or the
        transposed conv's input resolution (each input pixel scatters k*k taps)."""
        return m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * pixels

    def walk(seq, res):         # res: pixels of the layer's input per image pixel
        total = 0.0
        for m in seq:
            if isinstance(m, nn.Conv2d):
                res /= m.stride[0] ** 2
                total += conv_macs(m, res)
            elif isinstance(m, nn.ConvTranspose2d):
                total += conv_macs(m, res)
                res *= m.stride[0] ** 2
            elif hasattr(m, "gamma"):           # GDN: C^2 MACs per pixel
                total += m.beta.numel() ** 2 * res
        return total

    g_a, h_a = walk(model.g_a, 1.0), walk(model.h_a, 1 / 256)
    h_s, g_s = walk(model.h_s, 1 / 4096), walk(model.g_s, 1 / 256)
    return {"encoder": g_a + h_a + h_s, "decoder": h_s + g_s}


@torch.no_grad()
def evaluate(model, images: torch.Tensor, lmbda: float) -> dict:
    model.eval()
    r = rd_loss(model(images), images, lmbda, "mse")
    return {"bpp": r["bpp"].item(), "psnr": -10 * math.log10(r["mse"].item()), "loss": r["loss"].item()}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="licfpga prune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="float hyperprior student checkpoint")
    p.add_argument("--keep", type=int, nargs="+", default=[24, 18, 12], help="channels kept per stage")
    p.add_argument("--steps", type=int, default=300, help="fine-tune steps per width")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--val-data", default=SPLIT, help="'split' (default): held-out list of --data; or a folder")
    p.add_argument("--val-images", type=int, default=8)
    p.add_argument("--out", default="runs/prune")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base, state = load_model(resolve_checkpoint(a.student), update=False)
    lmbda = float(state["meta"]["lambda"])
    train_files, val_files = train_val_files(a.data, a.val_data)
    crops = RandomCrops(train_files, 128, seed=4242)
    calib = crops.batch(16)
    val = center_crops(val_files, 256, a.val_images)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"keep": base.g_a[0].out_channels, "steps": 0, **macs_per_px(base), **evaluate(base, val, lmbda)}]
    for keep in a.keep:
        pruned = prune(base, keep, calib)
        before = evaluate(pruned, val, lmbda)
        finetune(pruned, lmbda, a.steps, crops, a.batch, a.lr)
        row = {"keep": keep, "steps": a.steps, **macs_per_px(pruned), **evaluate(pruned, val, lmbda),
               "psnr_before_finetune": before["psnr"], "bpp_before_finetune": before["bpp"]}
        rows.append(row)
        tqdm.write(json.dumps(row))
        kw = {"N": keep, "M": pruned.g_a[-1].out_channels, "gdn": "gdn", "Nh": pruned.h_a[-1].out_channels}
        pruned.update(force=True)
        save_checkpoint(out / f"keep{keep}.pt", pruned, "hyperprior", kw,
                        {**state["meta"], "pruned_from": str(a.student), "keep": keep, "finetune_steps": a.steps})
    with open(out / "pruning.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    plot_pruning(rows, out / "pruning.png", lmbda)
    return out / "pruning.csv"


def plot_pruning(rows: list[dict], path, lmbda: float) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=130, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    macs = [r["encoder"] + r["decoder"] for r in rows]
    ax1.plot(macs, [r["psnr"] for r in rows], "o-")
    ax2.plot(macs, [r["bpp"] for r in rows], "o-")
    for r, m in zip(rows, macs):
        ax1.annotate(f"N={r['keep']}", (m, r["psnr"]), fontsize=8)
    ax1.set_ylabel("PSNR [dB] (val crops)")
    ax2.set_ylabel("rate [bpp] (estimated)")
    for ax in (ax1, ax2):
        ax.set_xlabel("MACs / pixel (encoder + decoder)")
        ax.grid(alpha=0.4)
    fig.suptitle(f"channel pruning of the student, λ={lmbda}, fine-tuned {rows[-1]['steps']} steps")
    fig.savefig(path)
    return Path(path)


if __name__ == "__main__":
    main()
