#!/usr/bin/env bash
# Second lambda of the from-scratch ablation (mirrors the distilled students' pipeline:
# lambda 0.0035 fine-tuned 1500 steps from the lambda-0.013 student, here without teacher).
set -euo pipefail
PY=.venv/bin/python
while [ ! -f runs/st-0.025/final.pt ]; do sleep 30; done
$PY -W ignore -m licfpga.model.distill --width 30 --threads 1 --val-every 500 --teacher mean-scale-0.0035 \
    --steps 1500 --init runs/st-0.013-scratch/final.pt --out runs/st-0.0035-scratch --no-distill --resume --seed 1
