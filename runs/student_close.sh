#!/usr/bin/env bash
# Close the deployed-width student's campaign for shipping (issue 9 §6), as the teacher's was:
#   1. decay phase: the base run's last.pt (optimizer kept), LR x0.1, DECAY_STEPS more steps;
#   2. the lambda branches from the decayed model: LR 2e-4 (200-step warm-up), x0.1 for the last 30 %;
#   3. QAT (int8 convs, fixed-point GDN) of all four (1000 steps; session 6 ran 400 with the
#      rate on the rounded latents, +17.7 % BD-rate vs float), then the integer artifact of each.
# State under $LICFPGA_RUNS; every stage is skipped when its output exists (re-run to resume).
# Validation: the held-out split (model/data/val_split.txt), never Kodak.
#   runs/student_close.sh            # after NAME=student-hp30-0.013 ARCH=hyperprior N=30 M=48 runs/campaign.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${LICFPGA_RUNS:-$HOME/.cache/licfpga/runs}
BASE=${BASE:-student-hp30-0.013}
DECAY_STEPS=${DECAY_STEPS:-2500}
BRANCH_STEPS=${BRANCH_STEPS:-3000}
THREADS=${THREADS:-1}
PY=".venv/bin/python -W ignore"
TRAIN=(-m licfpga.model.train --arch hyperprior --N 30 --M 48 --batch 8 --patch 128 --precision bf16-islands
       --channels-last --compile --threads "$THREADS" --ckpt-every 250)
DECAY=$RUNS/$BASE-decay
if [ ! -f "$DECAY/final.pt" ]; then
  mkdir -p "$DECAY"
  [ -f "$DECAY/last.pt" ] || cp "$RUNS/$BASE/last.pt" "$DECAY/last.pt"
  last=$(awk -F, 'NR > 1 {s = $1} END {print s}' "$RUNS/$BASE/log.csv")
  nice -n 10 $PY "${TRAIN[@]}" --lambda 0.013 --lr 5e-5 --lr-decay-at 1.0 --steps $((last + DECAY_STEPS)) \
    --val-every 500 --out "$DECAY" --resume
fi
for L in 0.0035 0.0067 0.025; do
  B=$RUNS/student-hp30-$L-branch
  [ -f "$B/final.pt" ] && continue
  nice -n 10 $PY "${TRAIN[@]}" --lambda "$L" --lr 2e-4 --lr-decay-at 0.7 --steps "$BRANCH_STEPS" --warmup 200 \
    --val-every 500 --init "$DECAY/final.pt" --out "$B" --resume
done
for L in 0.0035 0.0067 0.013 0.025; do
  if [ "$L" = 0.013 ]; then SRC=$DECAY/final.pt; else SRC=$RUNS/student-hp30-$L-branch/final.pt; fi
  Q=$RUNS/qat-student-hp30-$L
  [ -f "$Q/final.pt" ] || nice -n 10 $PY -m licfpga.model.qat --student "$SRC" --steps "${QAT_STEPS:-1000}" --threads "$THREADS" --out "$Q"
  [ -f "$RUNS/int/int-student-$L.json" ] || nice -n 10 $PY -m licfpga.model.export_int "$Q/final.pt" --out "$RUNS/int/int-student-$L"
done
