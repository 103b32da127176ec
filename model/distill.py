"""Teacher -> student knowledge distillation (one width knob sizes the student).

The student is a Ballé 2018 scale hyperprior (``hyperprior`` in the zoo: conv/GDN analysis,
ReLU hyper-transforms, transposed-conv/IGDN synthesis -- every op maps to the FPGA flow)
of width ``N = --width`` and ``M = --latent`` (default ``1.5 N`` rounded up to a multiple
of 4). The teacher is any trained zoo checkpoint with the same four-stage g_a / g_s layout
(the shipped mean-scale models).

Loss (FEDS-style: feature- and entropy-based distillation)::

    L = RD(student)                                   rate + lambda * 255^2 * MSE(x, x_hat_s)
      + a_feat * sum_k nMSE(A_k(f_s,k), f_t,k)        stage 1: feature alignment, 1x1 adapters A_k
      + a_chan * sum_c w_c nMSE_c(A_y(y_s), y_t)      stage 2: entropy-weighted latent channels
      + a_out  * lambda * 255^2 * MSE(x_hat_s, x_hat_t)    stage 2: output distillation
                                                      stage 3: RD only (fine-tune)

``f_k`` are the outputs of the three GDN layers of g_a and the three IGDN layers of g_s,
``nMSE`` is the MSE divided by the teacher feature's variance (scale-free across layers),
and ``w_c`` is the teacher's share of the rate carried by latent channel ``c`` (bits of
its likelihoods, averaged over the batch, normalised to mean 1): informative channels
weigh more. The stage boundaries are fractions of ``--steps`` (``--stages 0.3 0.7``).
``--no-distill`` trains the same student with the same data and steps on RD alone (the
ablation baseline).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import load_model, read_checkpoint, resolve_checkpoint, save_checkpoint
from .train import SPLIT, RandomCrops, center_crops, lr_at, optimizer_step, rd_loss, train_val_files
from .zoo import build_model

STUDENT_ARCH = "hyperprior"
FEATURE_TAPS = (("g_a", 1), ("g_a", 3), ("g_a", 5), ("g_s", 1), ("g_s", 3), ("g_s", 5))


def student_latent(width: int) -> int:
    """Default latent channels M for width N: the teacher's M/N = 1.5, up to a multiple of 4."""
    return int(math.ceil(1.5 * width / 4) * 4)


class FeatureTaps:
    """Forward hooks recording the outputs of the tapped layers (and y) of a model."""

    def __init__(self, model: nn.Module):
        self.out: dict[str, torch.Tensor] = {}
        self.handles = []
        for seq, idx in FEATURE_TAPS:
            key = f"{seq}.{idx}"
            layer = getattr(model, seq)[idx]
            self.handles.append(layer.register_forward_hook(self._hook(key)))
        self.handles.append(model.g_a.register_forward_hook(self._hook("y")))

    def _hook(self, key):
        def hook(_m, _args, out):
            self.out[key] = out
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _channels(model: nn.Module) -> dict[str, int]:
    ch = {f"{s}.{i}": getattr(model, s)[i].beta.numel() for s, i in FEATURE_TAPS}
    ch["y"] = model.g_a[-1].out_channels
    return ch


class Adapters(nn.ModuleDict):
    """1x1 convolutions mapping each student feature to the teacher's channel count."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        cs, ct = _channels(student), _channels(teacher)
        super().__init__({k.replace(".", "_"): nn.Conv2d(cs[k], ct[k], 1) for k in cs})

    def map(self, key: str, f: torch.Tensor) -> torch.Tensor:
        return self[key.replace(".", "_")](f)


def nmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE normalised by the target's variance (b is the teacher feature)."""
    return F.mse_loss(a, b) / (b.detach().var() + 1e-8)


def channel_weights(likelihoods_y: torch.Tensor) -> torch.Tensor:
    """Per-channel share of the teacher's rate (bits), normalised to mean 1."""
    bits = -torch.log2(likelihoods_y.detach().clamp_min(1e-9)).sum(dim=(0, 2, 3))
    return bits / bits.mean().clamp_min(1e-9)


def entropy_weighted_channel_loss(y_s: torch.Tensor, y_t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    var = y_t.detach().var(dim=(0, 2, 3)) + 1e-8
    per_channel = ((y_s - y_t) ** 2).mean(dim=(0, 2, 3)) / var
    return (w * per_channel).mean()


def stage_of(step: int, total: int, stages: tuple[float, float]) -> int:
    """1 = feature alignment, 2 = channel + output distillation, 3 = RD fine-tune."""
    f = step / max(total, 1)
    return 1 if f < stages[0] else 2 if f < stages[1] else 3


def distill_loss(student_out: dict, teacher_out: dict, taps_s: FeatureTaps, taps_t: FeatureTaps,
                 adapters: Adapters, x: torch.Tensor, lmbda: float, stage: int,
                 weights: dict[str, float]) -> dict:
    res = rd_loss(student_out, x, lmbda, "mse")
    terms = {"feat": torch.zeros(()), "chan": torch.zeros(()), "out": torch.zeros(())}
    if stage == 1 and weights["feat"]:
        terms["feat"] = sum(nmse(adapters.map(k, taps_s.out[k]), taps_t.out[k].detach())
                            for k in (f"{s}.{i}" for s, i in FEATURE_TAPS)) / len(FEATURE_TAPS)
    if stage == 2:
        if weights["chan"]:
            w = channel_weights(teacher_out["likelihoods"]["y"])
            terms["chan"] = entropy_weighted_channel_loss(adapters.map("y", taps_s.out["y"]),
                                                          taps_t.out["y"].detach(), w)
        if weights["out"]:
            terms["out"] = lmbda * 255**2 * F.mse_loss(student_out["x_hat"], teacher_out["x_hat"].detach())
    loss = res["loss"] + sum(weights[k] * v for k, v in terms.items())
    return {**res, "loss": loss, **terms}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="licfpga distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="mean-scale-0.013", help="checkpoint path or shipped name")
    p.add_argument("--width", type=int, default=30, help="student N (the width knob)")
    p.add_argument("--latent", type=int, default=None, help="student M (default 1.5 N, multiple of 4)")
    p.add_argument("--gdn", default="gdn", choices=["gdn", "simplified", "fixed"])
    p.add_argument("--lambda", dest="lmbda", type=float, default=None, help="default: the teacher's")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--stages", type=float, nargs=2, default=(0.3, 0.7), metavar=("END1", "END2"),
                   help="fractions of the steps where stage 1 (features) and stage 2 (channels) end")
    p.add_argument("--a-feat", type=float, default=1.0)
    p.add_argument("--a-chan", type=float, default=1.0)
    p.add_argument("--a-out", type=float, default=1.0)
    p.add_argument("--no-distill", action="store_true", help="ablation: RD loss only, same data/steps")
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--val-data", default=SPLIT, help="'split' (default): held-out list of --data; or a folder")
    p.add_argument("--val-images", type=int, default=8)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lr-decay-at", type=float, default=0.85)
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--out", default="runs/distill")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", default=None, help="start the student from this checkpoint (same N, M)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.width < 4:
        p.error("--width must be >= 4")
    if not 0 <= args.stages[0] <= args.stages[1] <= 1:
        p.error("--stages needs 0 <= END1 <= END2 <= 1")
    return args


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher, tstate = load_model(resolve_checkpoint(args.teacher), update=False)
    for prm in teacher.parameters():
        prm.requires_grad_(False)
    teacher.eval()   # eval: teacher's y is the deterministic latent; x_hat uses its rounded y
    lmbda = args.lmbda if args.lmbda is not None else float(tstate["meta"]["lambda"])
    kwargs = {"N": args.width, "M": args.latent or student_latent(args.width), "gdn": args.gdn}
    student = build_model(STUDENT_ARCH, **kwargs)
    adapters = Adapters(student, teacher)
    weights = {"feat": args.a_feat, "chan": args.a_chan, "out": args.a_out}
    if args.no_distill:
        weights = dict.fromkeys(weights, 0.0)

    out = Path(args.out)
    last = out / "last.pt"
    aux_names = {n for n, _ in student.named_parameters() if n.endswith(".quantiles")}
    params = [p for n, p in student.named_parameters() if n not in aux_names] + list(adapters.parameters())
    aux_params = [p for n, p in student.named_parameters() if n in aux_names]
    opt = torch.optim.Adam(params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=args.aux_lr)
    start = 0
    if args.resume and last.is_file():
        st = read_checkpoint(last)
        if st["kwargs"] != kwargs:
            raise SystemExit(f"{last} holds {st['kwargs']}, not {kwargs}: use another --out")
        student.load_state_dict(st["state_dict"])
        adapters.load_state_dict(st["adapters"])
        opt.load_state_dict(st["optimizer"])
        aux_opt.load_state_dict(st["aux_optimizer"])
        start = st["meta"]["step"]
    elif args.init:
        st = read_checkpoint(resolve_checkpoint(args.init))
        if st["arch"] != STUDENT_ARCH or st["kwargs"] != kwargs:
            raise SystemExit(f"--init {args.init} is {st['arch']} {st['kwargs']}, not {STUDENT_ARCH} {kwargs}")
        student.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in st["state_dict"].items()})
        if "adapters" in st:
            adapters.load_state_dict(st["adapters"])

    taps_s, taps_t = FeatureTaps(student), FeatureTaps(teacher)
    train_files, val_files = train_val_files(args.data, args.val_data)
    crops = RandomCrops(train_files, args.patch, seed=args.seed * 1000 + start)
    val = center_crops(val_files, args.val_size, args.val_images) if args.val_images else None
    out.mkdir(parents=True, exist_ok=True)
    new_log = start == 0 or not (out / "log.csv").exists()
    logf = open(out / "log.csv", "w" if new_log else "a", newline="")
    log = csv.writer(logf)
    if new_log:
        log.writerow(["step", "split", "loss", "bpp", "psnr", "aux", "lr", "seconds", "stage", "feat", "chan", "out"])
    meta = {"lambda": lmbda, "metric": "mse", "data": str(args.data), "world": 1, "batch": args.batch,
            "patch": args.patch, "teacher": str(args.teacher), "teacher_kwargs": tstate["kwargs"],
            "distill": not args.no_distill, "weights": weights, "stages": list(args.stages)}

    def checkpoint(step: int) -> None:
        save_checkpoint(last, student, STUDENT_ARCH, kwargs, {**meta, "step": step},
                        optimizer=opt.state_dict(), aux_optimizer=aux_opt.state_dict(),
                        adapters=adapters.state_dict())

    t0 = time.time()
    name = "scratch" if args.no_distill else "distill"
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, unit="step",
               desc=f"{name} N={kwargs['N']} M={kwargs['M']} λ={lmbda}")
    for step in bar:
        lr = lr_at(step, args.steps, args.lr, args.lr_decay_at)
        for g in opt.param_groups:
            g["lr"] = lr
        stage = stage_of(step, args.steps, tuple(args.stages))
        student.train()
        x = crops.batch(args.batch)
        need_teacher = not args.no_distill and stage < 3
        t_out = None
        if need_teacher:
            with torch.no_grad():
                t_out = teacher(x)
        s_out = student(x)
        if need_teacher:
            res = distill_loss(s_out, t_out, taps_s, taps_t, adapters, x, lmbda, stage, weights)
        else:
            res = {**rd_loss(s_out, x, lmbda, "mse"), "feat": torch.zeros(()), "chan": torch.zeros(()),
                   "out": torch.zeros(())}
        aux = optimizer_step(res["loss"], params, opt, student, aux_opt, args.clip)
        psnr = -10 * math.log10(max(res["mse"].item(), 1e-10))
        bar.set_postfix(stage=stage, loss=f"{res['loss'].item():.3f}", bpp=f"{res['bpp'].item():.3f}",
                        psnr=f"{psnr:.2f}")
        if step % 50 == 0:
            log.writerow([step, "train", res["loss"].item(), res["bpp"].item(), psnr, aux.item(), lr,
                          round(time.time() - t0, 1), stage, res["feat"].item(), res["chan"].item(),
                          res["out"].item()])
            logf.flush()
        if val is not None and ((step + 1) % args.val_every == 0 or step + 1 == args.steps):
            student.eval()
            with torch.no_grad():
                v = rd_loss(student(val), val, lmbda, "mse")
            vpsnr = -10 * math.log10(v["mse"].item())
            log.writerow([step + 1, "val", v["loss"].item(), v["bpp"].item(), vpsnr, aux.item(), lr,
                          round(time.time() - t0, 1), stage, "", "", ""])
            logf.flush()
            tqdm.write(f"step {step + 1}: val loss {v['loss'].item():.4f} bpp {v['bpp'].item():.4f} PSNR {vpsnr:.2f} dB")
        if (step + 1) % args.ckpt_every == 0:
            checkpoint(step + 1)
    checkpoint(args.steps)
    taps_s.remove()
    taps_t.remove()
    logf.close()
    final = out / "final.pt"
    student.eval()
    student.update(force=True)
    save_checkpoint(final, student, STUDENT_ARCH, kwargs, {**meta, "step": args.steps})
    return final


if __name__ == "__main__":
    main()
