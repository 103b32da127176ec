#!/usr/bin/env bash
# Recipe that produced the shipped mean-scale checkpoints (see model/checkpoints/README.md)
set -euo pipefail
PY=.venv/bin/python
T="$PY -W ignore -m licfpga.model.train --arch mean-scale --N 64 --M 96 --batch 8 --patch 128 --val-every 1000"
$T --lambda 0.013 --steps 12000 --lr 2e-4 --out runs/ms-0.013 --resume
for L in 0.0035 0.0067 0.025; do
  $T --lambda $L --steps 3000 --lr 1e-4 --init runs/ms-0.013/final.pt --out runs/ms-$L --resume --seed 1
done
