#!/usr/bin/env bash
# Students (issue 3): distilled N=30/M=48 scale-hyperprior students of the shipped
# mean-scale N=64/M=96 teachers, plus the from-scratch ablation at lambda 0.013.
# One torch thread (the other core stays free). ~1 h on this 2-core CPU.
set -euo pipefail
PY=.venv/bin/python
D="$PY -W ignore -m licfpga.model.distill --width 30 --threads 1 --val-every 500"
# 1. ablation pair at lambda 0.013: same student, data, steps, seed; with and without the teacher
$D --teacher mean-scale-0.013 --steps 3000 --out runs/st-0.013 --resume
$D --teacher mean-scale-0.013 --steps 3000 --out runs/st-0.013-scratch --no-distill --resume
# 2. the other lambdas: from the lambda-0.013 student, distilled from the lambda-matched teacher
for L in 0.0035 0.0067 0.025; do
  $D --teacher mean-scale-$L --steps 1500 --init runs/st-0.013/final.pt --out runs/st-$L --resume --seed 1
done
# 3. (added after the first Kodak table) the lambda-0.013 student had 1500 fewer steps than the
#    others and fell off the RD curve: give it the same extra 1500 distilled steps
$D --teacher mean-scale-0.013 --steps 1500 --init runs/st-0.013/final.pt --out runs/st-0.013b --resume --seed 1
