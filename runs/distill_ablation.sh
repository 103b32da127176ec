#!/usr/bin/env bash
# Distillation ablation on the campaign teachers (issue 9 §5): the deployed-width student
# (hyperprior N30/M48) trained from scratch for STEPS steps, distilled from the shipped
# mean-scale teacher of its lambda vs RD loss only (--no-distill), same seed, data, steps
# and schedule. Validation: 40-image held-out split (model/data/val_split.txt, 8 centre crops
# of 256 px, rate from the likelihoods). Variants:
#   distill   FEDS loss, default weights (features 0-30 %, entropy-weighted latent + output 30-70 %)
#   output    output distillation only (--a-feat 0 --a-chan 0): the one target whose shape and
#             meaning agree between a mean-scale teacher and a scale-only student
#   scratch   RD only
# State under $LICFPGA_RUNS (resumable: re-run to continue); summary by runs/distill_ablation.py.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${LICFPGA_RUNS:-$HOME/.cache/licfpga/runs}
STEPS=${STEPS:-2000}
PY=".venv/bin/python -W ignore"
for L in ${LAMBDAS:-0.0035 0.0067 0.013 0.025}; do
  for V in ${VARIANTS:-scratch distill output}; do
    O=$RUNS/ablation-$V-$L
    [ -f "$O/final.pt" ] && continue
    case $V in
      scratch) extra=(--no-distill) ;;
      distill) extra=() ;;
      output)  extra=(--a-feat 0 --a-chan 0) ;;
    esac
    nice -n 10 $PY -m licfpga.model.distill --teacher "mean-scale-$L" --width 30 --steps "$STEPS" \
      --val-every 1000 --threads 1 --seed 0 --out "$O" --resume "${extra[@]}"
  done
done
