#!/usr/bin/env bash
# The RD training campaign (issue 9): one base teacher trained across many sessions.
# Running state (weights, optimizers, step, pixels seen, RNG) lives outside the work tree in
# $LICFPGA_RUNS (default ~/.cache/licfpga/runs); a new machine without it resumes from the
# committed weights (model/checkpoints/) with a fresh optimizer and a linear warm-up.
# Constant LR (the base phase); the x0.1 decay phase runs only when a campaign is closed
# for shipping. Validation: the held-out list model/data/val_split.txt, never Kodak.
#   THREADS=1 (default, the machine is shared with other work) or 2 when it is idle.
#   ARCH / N / M / LAMBDA pick the model (default: the base teacher); the deployed-width student:
#   NAME=student-hp30-0.013 ARCH=hyperprior N=30 M=48 runs/campaign.sh   (from its committed snapshot)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${LICFPGA_RUNS:-$HOME/.cache/licfpga/runs}
NAME=${NAME:-teacher-ms64-0.013}
ARCH=${ARCH:-mean-scale} N=${N:-64} M=${M:-96} LAMBDA=${LAMBDA:-0.013}
# committed campaign weights (runs/campaign_report.sh) if any, else the shipped teacher
INIT=${INIT:-model/checkpoints/campaign/$NAME.pt}
[ -f "$INIT" ] || INIT=model/checkpoints/mean-scale-0.013.pt
THREADS=${THREADS:-1}
STEPS=${STEPS:-400000}
mkdir -p "$RUNS/$NAME"
resume=(--init "$INIT" --warmup 500)
if [ -f "$RUNS/$NAME/last.pt" ]; then resume=(--resume); fi
exec nice -n 10 .venv/bin/python -W ignore -m licfpga.model.train \
  --arch "$ARCH" --N "$N" --M "$M" --lambda "$LAMBDA" --batch 8 --patch 128 \
  --precision bf16-islands --channels-last --compile \
  --lr 5e-4 --lr-decay-at 1.0 --steps "$STEPS" --val-every 1000 --ckpt-every 250 \
  --threads "$THREADS" --out "$RUNS/$NAME" "${resume[@]}"
