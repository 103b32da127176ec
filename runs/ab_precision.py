"""fp32 vs bf16-islands at equal steps (issue 9, §1): the fast path becomes the default only if
its held-out validation RD loss stays within 1 % of fp32's over >= 5000 steps.

Both runs: `licfpga train` from the shipped mean-scale-0.013 teacher, same seed and data,
lr 5e-4 after a 500-step warm-up, 5000 steps, validation every 500 steps on the held-out
split, one thread each, side by side (commands in the README this writes).

    .venv/bin/python runs/ab_precision.py RUNS/ab5000-fp32 RUNS/ab5000-bf16-islands \
        --out results/training/ab_precision
"""
import argparse
import csv
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("fp32")
p.add_argument("fast")
p.add_argument("--out", default="results/training/ab_precision")
p.add_argument("--tolerance", type=float, default=0.01)
a = p.parse_args()
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)


def val_rows(run):
    rows = [r for r in csv.DictReader(open(Path(run) / "log.csv")) if r["split"] == "val"]
    return {int(r["step"]): r for r in rows}


ref, fast = val_rows(a.fp32), val_rows(a.fast)
steps = sorted(set(ref) & set(fast))
if not steps or steps[-1] < 5000:
    raise SystemExit(f"the runs share validation steps only up to {steps[-1] if steps else None}; need 5000")
lines = ["| step | fp32 loss | bf16-islands loss | gap | fp32 PSNR / bpp | bf16-islands PSNR / bpp |",
         "|---|---|---|---|---|---|"]
gaps = {}
for s in steps:
    lr, lf = float(ref[s]["loss"]), float(fast[s]["loss"])
    gaps[s] = lf / lr - 1
    lines.append(f"| {s} | {lr:.4f} | {lf:.4f} | {100 * gaps[s]:+.2f} % | {float(ref[s]['psnr']):.2f} / "
                 f"{float(ref[s]['bpp']):.4f} | {float(fast[s]['psnr']):.2f} / {float(fast[s]['bpp']):.4f} |")
trained = [s for s in steps if s > 0]
worst = max(gaps[s] for s in trained)
mean = sum(gaps[s] for s in trained) / len(trained)
verdict = worst <= a.tolerance
secs = {k: float(list(csv.DictReader(open(Path(r) / "log.csv")))[-1]["seconds"]) for k, r in
        (("fp32", a.fp32), ("fast", a.fast))}
for name, run in (("fp32", a.fp32), ("bf16-islands", a.fast)):
    shutil.copy(Path(run) / "log.csv", out / f"{name}.csv")

fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
ax[0].plot(steps, [float(ref[s]["loss"]) for s in steps], "o-", label="fp32")
ax[0].plot(steps, [float(fast[s]["loss"]) for s in steps], "o-", label="bf16-islands + channels_last + compile")
ax[0].set(xlabel="step", ylabel="validation RD loss", title="held-out split, equal steps")
ax[0].legend()
ax[1].axhline(100 * a.tolerance, color="gray", ls="--", label=f"+{100 * a.tolerance:.0f} % (the bar)")
ax[1].axhline(-100 * a.tolerance, color="gray", ls="--")
ax[1].plot(trained, [100 * gaps[s] for s in trained], "o-", color="C1")
ax[1].set(xlabel="step", ylabel="loss gap vs fp32 [%]", title="bf16-islands vs fp32")
ax[1].legend()
for x in ax:
    x.grid(alpha=0.4)
fig.tight_layout()
fig.savefig(out / "ab_precision.png", dpi=110)

md = f"""# fp32 vs bf16-islands at equal steps (issue 9, §1)

Two `licfpga train` runs of the teacher (mean-scale N=64/M=96, λ 0.013) from the shipped
`mean-scale-0.013` checkpoint: same seed (0), data and batches (8 × 128 px), Adam lr 5e-4 after a
500-step linear warm-up, 5000 steps, validation every 500 steps on the held-out split
(`model/data/val_split.txt`, 40 crops of 256 px). One thread each, side by side, `nice -n 10`.
The only difference: `--precision fp32` vs `--precision bf16-islands --channels-last --compile`.

```sh
licfpga train --arch mean-scale --N 64 --M 96 --lambda 0.013 --batch 8 --patch 128 --precision fp32 \\
  --lr 5e-4 --lr-decay-at 1.0 --steps 5000 --warmup 500 --val-every 500 --ckpt-every 500 --seed 0 \\
  --threads 1 --out $RUNS/ab5000-fp32 --init model/checkpoints/mean-scale-0.013.pt
licfpga train ... --precision bf16-islands --channels-last --compile ... --out $RUNS/ab5000-bf16-islands
.venv/bin/python runs/ab_precision.py $RUNS/ab5000-fp32 $RUNS/ab5000-bf16-islands --out {a.out}
```

{chr(10).join(lines)}

Gap = bf16-islands loss / fp32 loss − 1, at the same step, after the start. Worst
{100 * worst:+.2f} %, mean {100 * mean:+.2f} % over steps {trained[0]}–{trained[-1]}. The bar is
+{100 * a.tolerance:.0f} % at every step: **{"met" if verdict else "not met"}**.
Wall time of the whole run, including validation and the machine's other load: fp32
{secs['fp32'] / 60:.1f} min, bf16-islands {secs['fast'] / 60:.1f} min ({secs['fp32'] / secs['fast']:.2f}×).

![loss and gap](ab_precision.png)

Files: `fp32.csv`, `bf16-islands.csv` (the runs' logs).
"""
(out / "README.md").write_text(md)
print(md)
