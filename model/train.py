"""Rate-distortion training on the CPU, single process or under ``torchrun`` (DDP, gloo).

Loss: ``lambda * 255^2 * MSE + bpp`` (or ``lambda * (1 - MS-SSIM) + bpp``), plus the
auxiliary loss that fits the entropy bottleneck's quantiles, on its own optimizer.
Each rank draws its own random crops (different seed), so no sampler is needed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .fast_train import PRECISIONS, Prefetcher, autocast, prepare, to_input
from .geometry import STRIDE
from .package_data import VAL_SPLIT
from .zoo import MODELS, build_model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
# The held-out validation list (paths relative to the training folder): every choice made
# during training is made on it; Kodak is the test set and is never used for choices.
# (VAL_SPLIT: licfpga.model/data/val_split.txt, see package_data)
SPLIT = "split"   # --val-data value meaning "VAL_SPLIT, held out of --data"


def list_images(root) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return files


def validation_names(split_file=VAL_SPLIT) -> list[str]:
    return [ln.strip() for ln in Path(split_file).read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def split_images(root, split_file=VAL_SPLIT) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) of ``root``: the validation list is held out.
    Every listed file must exist, so a changed data folder cannot silently shrink it."""
    root = Path(root)
    files = list_images(root)
    held = set(validation_names(split_file))
    val = [p for p in files if p.relative_to(root).as_posix() in held]
    if len(val) != len(held):
        missing = sorted(held - {p.relative_to(root).as_posix() for p in val})
        raise FileNotFoundError(f"{len(missing)} validation images of {split_file} are not under {root}: "
                                f"{', '.join(missing[:3])}...")
    return [p for p in files if p not in set(val)], val


def train_val_files(data, val_data=SPLIT) -> tuple[list[Path], list[Path]]:
    """Training and validation files for ``--data`` / ``--val-data`` (``'split'``: the held-out list)."""
    if val_data == SPLIT:
        return split_images(data)
    return list_images(data), list_images(val_data)


class RandomCrops:
    """Random ``patch`` crops with flips from a folder of photos, held in memory.

    Each crop is taken at a random scale in ``[min_scale, 1]`` (a larger window resized
    down), which washes out JPEG block artefacts of the training photos."""

    def __init__(self, root, patch: int = 128, min_scale: float = 0.5, seed: int = 0):
        """``root``: a folder, or a list of image files (e.g. the training side of a split)."""
        self.patch, self.min_scale = patch, min_scale
        self.images = []
        for p in (list_images(root) if isinstance(root, (str, Path)) else root):
            img = Image.open(p).convert("RGB")
            if min(img.size) >= patch:
                self.images.append(img)
        if not self.images:
            raise ValueError(f"no image in {root} is at least {patch} px on its short side")
        self.rng = random.Random(seed)

    def sample(self) -> np.ndarray:
        img = self.rng.choice(self.images)
        w, h = img.size
        s = self.rng.uniform(max(self.min_scale, self.patch / min(w, h)), 1.0)
        win = min(int(round(self.patch / s)), w, h)
        x0, y0 = self.rng.randrange(w - win + 1), self.rng.randrange(h - win + 1)
        crop = img.crop((x0, y0, x0 + win, y0 + win))
        if win != self.patch:
            crop = crop.resize((self.patch, self.patch), Image.BICUBIC)
        a = np.asarray(crop)
        if self.rng.random() < 0.5:
            a = a[:, ::-1]
        if self.rng.random() < 0.5:
            a = a[::-1]
        return a

    def batch(self, n: int) -> torch.Tensor:
        a = np.stack([self.sample() for _ in range(n)])
        return torch.from_numpy(a.copy()).permute(0, 3, 1, 2).float().div_(255)


def center_crops(root, size: int, limit: int | None) -> torch.Tensor:
    """Deterministic validation batch: center crops of the first ``limit`` images
    (``root``: a folder or a list of files)."""
    crops = []
    for p in (list_images(root) if isinstance(root, (str, Path)) else root)[:limit]:
        img = Image.open(p).convert("RGB")
        w, h = img.size
        c = min(size, w, h) // STRIDE * STRIDE
        x0, y0 = (w - c) // 2, (h - c) // 2
        crops.append(torch.from_numpy(np.asarray(img.crop((x0, y0, x0 + c, y0 + c))).copy()))
    c = min(t.shape[0] for t in crops)
    return torch.stack([t[:c, :c] for t in crops]).permute(0, 3, 1, 2).float().div_(255)


def bpp_of(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    return sum(torch.log(l).sum() for l in likelihoods.values()) / (-math.log(2) * num_pixels)


def rd_loss(out: dict, x: torch.Tensor, lmbda: float, metric: str) -> dict:
    n, _, h, w = x.shape
    bpp = bpp_of(out["likelihoods"], n * h * w)
    mse = F.mse_loss(out["x_hat"], x)
    if metric == "mse":
        distortion = 255**2 * mse
    else:  # ms-ssim needs >= 161 px crops at its 5 scales; clamp keeps it defined early on
        distortion = 1 - ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0)
    return {"loss": lmbda * distortion + bpp, "bpp": bpp, "mse": mse}


def optimizer_step(loss: torch.Tensor, params, opt, aux_model, aux_opt, clip: float | None) -> torch.Tensor:
    """One RD step: backward + clip + step on the main optimizer, then the entropy
    bottleneck's auxiliary loss on its own optimizer. Returns the aux loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    aux = aux_model.aux_loss()
    aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    aux_opt.step()
    return aux


def split_aux_params(net: torch.nn.Module) -> tuple[set, list, list]:
    """(names, main parameters, auxiliary parameters): the entropy bottleneck's quantiles are
    fitted by the aux loss on their own optimizer, everything else by the RD loss."""
    aux_names = {n for n, _ in net.named_parameters() if n.endswith(".quantiles")}
    named = list(net.named_parameters())
    return aux_names, [p for n, p in named if n not in aux_names], [p for n, p in named if n in aux_names]


def lr_at(step: int, total: int, lr: float, decay_at: float, warmup: int = 0, warmup_from: int = 0) -> float:
    """Constant learning rate, then x0.1 for the last ``1 - decay_at`` of the steps; a linear
    warm-up over ``warmup`` steps from ``warmup_from`` (a fresh optimizer on trained weights)."""
    base = lr if step < decay_at * total else lr * 0.1
    k = step - warmup_from
    return base * (k + 1) / warmup if 0 <= k < warmup else base


def _check_ranks_agree(net: torch.nn.Module) -> None:
    """All ranks must hold the same weights (DDP syncs gradients; the aux-trained
    quantiles stay equal because their loss is data-independent). Fail loudly if not."""
    # SHA-256 of every parameter's bytes (a per-tensor sum would miss e.g. two swapped values)
    h = hashlib.sha256()
    for p in net.parameters():
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest = torch.frombuffer(bytearray(h.digest()), dtype=torch.int64)
    gathered = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, digest)
    if not all(torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError("DDP ranks diverged: parameters differ between processes")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="licfpga train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mean-scale", choices=sorted(MODELS))
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--slices", type=int, default=None, help="channel-wise models only")
    p.add_argument("--gdn", default="gdn", choices=["gdn", "simplified", "fixed"])
    p.add_argument("--lambda", dest="lmbda", type=float, default=0.013)
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"])
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--val-data", default=SPLIT,
                   help=f"'{SPLIT}' (default): the held-out list model/data/val_split.txt of --data; or a folder")
    p.add_argument("--val-images", type=int, default=40)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8, help="per process")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-decay-at", type=float, default=0.85)
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--out", default="runs/default")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (e.g. another lambda)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16-islands: bf16 convolutions, entropy models and GDN in fp32 (licfpga bench-train)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster oneDNN convs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (first steps compile)")
    p.add_argument("--warmup", type=int, default=0, help="linear LR warm-up steps after --init or --resume")
    p.add_argument("--no-prefetch", action="store_true", help="draw batches on the training thread")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "patch", "val_every", "ckpt_every"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def model_kwargs(args) -> dict:
    kw = {"N": args.N, "M": args.M, "gdn": args.gdn}
    if args.slices is not None:
        kw["slices"] = args.slices
    return kw


def main(argv=None) -> Path:
    args = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    elif distributed:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(args.seed)  # same init on every rank; DDP also broadcasts it

    out = Path(args.out)
    last = out / "last.pt"
    kwargs = model_kwargs(args)
    net = build_model(args.arch, **kwargs)
    start = 0
    resume_state = init_state = None
    if args.resume and last.is_file():
        resume_state = read_checkpoint(last)
        if resume_state["arch"] != args.arch or resume_state["kwargs"] != kwargs:
            raise SystemExit(f"{last} holds {resume_state['arch']} {resume_state['kwargs']}, "
                             f"not {args.arch} {kwargs}: use another --out")
        net.load_state_dict(resume_state["state_dict"])
        start = resume_state["meta"]["step"]
    elif args.init:
        init_model, init_state = load_model(args.init, update=False)
        if init_state["arch"] != args.arch or init_state["kwargs"] != kwargs:
            raise SystemExit(f"--init {args.init} is {init_state['arch']} {init_state['kwargs']}, not {args.arch} {kwargs}")
        net.load_state_dict(init_model.state_dict())

    # The entropy bottleneck's quantiles are trained by the data-independent aux loss on
    # their own optimizer: every rank computes the same aux gradient from the same
    # initial values, so DDP must not all-reduce them (it would also see them "unused").
    aux_names, params, aux_params = split_aux_params(net)
    opt = torch.optim.Adam(params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=args.aux_lr)
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        aux_opt.load_state_dict(resume_state["aux_optimizer"])
    model = net
    if distributed:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, list(aux_names))
        model = torch.nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)

    train_files, val_files = train_val_files(args.data, args.val_data)
    crops = RandomCrops(train_files, args.patch, seed=args.seed * 1000 + rank + start)
    if resume_state is not None and world == 1:
        # a single-process resume continues the run's random streams where the checkpoint
        # left them (crops; noise quantisation draws from torch's generator): with
        # --no-prefetch, A steps + resume to B = an uninterrupted run to B, bit for bit
        # (with prefetch the batches drawn ahead of the checkpoint are skipped, not repeated).
        # Older checkpoints lack crops_rng: reseeded by the start step as before.
        if "crops_rng" in resume_state:
            crops.rng.setstate(resume_state["crops_rng"])
        if "torch_rng" in resume_state:
            torch.set_rng_state(resume_state["torch_rng"])
    val = center_crops(val_files, args.val_size, args.val_images) if rank == 0 and args.val_images else None
    step_model = prepare(model, args.precision, args.channels_last, args.compile)
    batches = None if args.no_prefetch else Prefetcher(lambda: crops.batch(args.batch))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        new_log = not (out / "log.csv").exists() or start == 0
        logf = open(out / "log.csv", "w" if new_log else "a", newline="")
        log = csv.writer(logf)
        if new_log:
            log.writerow(["step", "split", "loss", "bpp", "psnr", "aux", "lr", "seconds", "pixels"])
    meta = {"lambda": args.lmbda, "metric": args.metric, "data": str(args.data), "world": world,
            "batch": args.batch, "patch": args.patch, "precision": args.precision}
    px_per_step = args.batch * world * args.patch ** 2
    # training pixels seen before this run (resumed runs carry them; --init from a shipped
    # checkpoint carries its own count when it has one)
    if resume_state is not None:
        px0 = resume_state["meta"].get("pixels", start * px_per_step)
    elif init_state is not None:
        m = init_state["meta"]
        px0 = m.get("pixels", m.get("step", 0) * m.get("batch", 0) * m.get("world", 1) * m.get("patch", 0) ** 2)
    else:
        px0 = 0
    warm_from = start if (args.resume or args.init) else 0

    def checkpoint(step: int) -> None:
        if rank == 0:
            save_checkpoint(last, net, args.arch, kwargs, {**meta, "step": step, "pixels": pixels(step)},
                            optimizer=opt.state_dict(), aux_optimizer=aux_opt.state_dict(),
                            torch_rng=torch.get_rng_state(), crops_rng=crops.rng.getstate())

    def pixels(step: int) -> int:
        return int(px0 + (step - start) * px_per_step)

    def validate(step: int, aux: float, lr: float) -> None:
        net.eval()
        with torch.no_grad():
            v = rd_loss(net(val), val, args.lmbda, args.metric)
        vpsnr = -10 * math.log10(v["mse"].item())
        log.writerow([step, "val", v["loss"].item(), v["bpp"].item(), vpsnr, aux, lr,
                      round(time.time() - t0, 1), pixels(step)])
        logf.flush()
        tqdm.write(f"step {step}: val loss {v['loss'].item():.4f} bpp {v['bpp'].item():.4f} PSNR {vpsnr:.2f} dB")

    t0 = time.time()
    if val is not None and init_state is not None:   # the starting point, so curves join across runs
        validate(start, float("nan"), 0.0)
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=rank != 0,
               desc=f"train {args.arch} λ={args.lmbda}", unit="step")
    for step in bar:
        lr = lr_at(step, args.steps, args.lr, args.lr_decay_at, args.warmup, warm_from)
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        x = to_input(batches.next() if batches else crops.batch(args.batch), args.channels_last)
        with autocast(args.precision):
            fwd = step_model(x)
        fwd["x_hat"] = fwd["x_hat"].float()   # distortion and rate in fp32 whatever the precision
        res = rd_loss(fwd, x, args.lmbda, args.metric)
        aux = optimizer_step(res["loss"], params, opt, net, aux_opt, args.clip)
        if rank == 0:
            psnr = -10 * math.log10(max(res["mse"].item(), 1e-10))
            bar.set_postfix(loss=f"{res['loss'].item():.3f}", bpp=f"{res['bpp'].item():.3f}", psnr=f"{psnr:.2f}")
            if step % 50 == 0:
                log.writerow([step, "train", res["loss"].item(), res["bpp"].item(), psnr, aux.item(), lr,
                              round(time.time() - t0, 1), pixels(step)])
                logf.flush()
            if val is not None and ((step + 1) % args.val_every == 0 or step + 1 == args.steps):
                validate(step + 1, aux.item(), lr)
        if (step + 1) % args.ckpt_every == 0:
            checkpoint(step + 1)
    if batches:
        batches.close()
    if distributed:
        _check_ranks_agree(net)
    checkpoint(args.steps)
    final = out / "final.pt"
    if rank == 0:
        net.eval()
        net.update(force=True)
        save_checkpoint(final, net, args.arch, kwargs, {**meta, "step": args.steps, "pixels": pixels(args.steps)})
        logf.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return final


if __name__ == "__main__":
    main()


def plot_logs(csv_paths, out, x: str = "step", labels=None) -> Path:
    """Validation loss, PSNR and bpp against ``x`` ("step", or "pixels": training pixels seen,
    which joins the runs of a campaign) for one or more training ``log.csv`` files."""
    from matplotlib.figure import Figure

    if x not in ("step", "pixels"):
        raise ValueError(f"x must be 'step' or 'pixels', got {x!r}")
    fig = Figure(figsize=(12, 3.8), dpi=130, layout="constrained")
    axes = fig.subplots(1, 3)
    for k, path in enumerate(map(Path, csv_paths)):
        rows = [r for r in csv.DictReader(open(path)) if r["split"] == "val"]
        if not rows:
            raise ValueError(f"{path}: no validation rows")
        if x == "pixels" and not rows[0].get("pixels"):
            raise ValueError(f"{path}: no pixels column (written by licfpga train since the campaign)")
        xs = [float(r[x]) for r in rows]
        label = labels[k] if labels else (path.parent.name if path.stem == "log" else path.stem)
        for ax, col in zip(axes, ("loss", "psnr", "bpp")):
            ax.plot(xs, [float(r[col]) for r in rows], marker="o", ms=3, label=label)
    for ax, ylabel in zip(axes, ("validation RD loss (λ·255²·MSE + bpp)", "validation PSNR [dB]",
                                 "validation rate [bpp]")):
        ax.set_xlabel("training pixels seen" if x == "pixels" else "step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.4)
    axes[0].legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
