"""Summary of runs/distill_ablation.sh: held-out RD of each variant and its BD-rate vs the
from-scratch student (equal student steps), as a table, JSON and an RD plot.

    .venv/bin/python runs/distill_ablation.py --out results/training/distillation
"""
import argparse
import csv
import json
import os
from pathlib import Path

from licfpga.host.rd import bd_rate, plot_rd

RUNS = Path(os.environ.get("LICFPGA_RUNS", Path.home() / ".cache/licfpga/runs"))
LAMBDAS = ("0.0035", "0.0067", "0.013", "0.025")
VARIANTS = {"scratch": "from scratch (RD only)", "distill": "distilled (features + latent + output)",
            "output": "distilled (output only)"}


def final_val(run: Path) -> dict | None:
    """The last validation row of a finished run (None: not run, or not finished)."""
    if not (run / "final.pt").is_file():
        return None
    rows = [r for r in csv.DictReader(open(run / "log.csv")) if r["split"] == "val"]
    r = rows[-1]
    return {"step": int(r["step"]), "bpp": float(r["bpp"]), "psnr": float(r["psnr"]), "loss": float(r["loss"])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="results/training/distillation")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pts = {v: {L: p for L in LAMBDAS if (p := final_val(RUNS / f"ablation-{v}-{L}")) is not None} for v in VARIANTS}
    pts = {v: P for v, P in pts.items() if len(P) >= 2}
    if "scratch" not in pts:
        raise SystemExit(f"no finished from-scratch runs under {RUNS}: run runs/distill_ablation.sh")
    base = pts["scratch"]
    rows = ["| student (hyperprior N30/M48) | λ | steps | bpp | PSNR dB | val RD loss | BD-rate vs from scratch, same λ (PSNR) |",
            "|---|---|---|---|---|---|---|"]
    summary = {"runs": str(RUNS), "points": pts, "bd_rate_vs_scratch": {}}
    for v, label in VARIANTS.items():
        if v not in pts:
            continue
        lams = [L for L in LAMBDAS if L in pts[v] and L in base]    # a BD-rate over the shared lambdas
        P = pts[v]
        bd = 0.0 if v == "scratch" else bd_rate([base[L]["bpp"] for L in lams], [base[L]["psnr"] for L in lams],
                                                 [P[L]["bpp"] for L in lams], [P[L]["psnr"] for L in lams])
        summary["bd_rate_vs_scratch"][v] = {"lambdas": lams, "bd_rate": bd}
        rows.append(f"| {label} | {' / '.join(lams)} | {P[lams[0]]['step']} | "
                    + " / ".join(f"{P[L]['bpp']:.3f}" for L in lams)
                    + " | " + " / ".join(f"{P[L]['psnr']:.2f}" for L in lams)
                    + " | " + " / ".join(f"{P[L]['loss']:.3f}" for L in lams)
                    + f" | {'anchor' if v == 'scratch' else f'{bd:+.1f} %'} |")
    text = ("Held-out validation split (8 centre crops of 256 px; rate from the likelihoods), "
            "one run per point, equal student steps, same seed and data.\n\n"
            + "\n".join(rows) + "\n")
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    curves = {VARIANTS[v]: {"bpp": [P[L]["bpp"] for L in P], "psnr": [P[L]["psnr"] for L in P]}
              for v, P in pts.items()}
    plot_rd(curves, out / "rd_distillation.png", title="Distillation ablation, held-out split")
    print(text)


if __name__ == "__main__":
    main()
