#!/usr/bin/env bash
# The training that produced the shipped checkpoints in model/checkpoints/ (2-core CPU,
# one torch thread per run, two runs side by side, ../shared/data/train). Re-running it
# repeats the recipe, not the exact weights: the session's runs were stopped and resumed
# at different steps, which reseeds the random crops.
set -euo pipefail
PY=.venv/bin/python
T="$PY -W ignore -m licfpga.model.train --arch mean-scale --N 64 --M 96 --batch 8 --patch 128 --threads 1"

# 1. base model, lambda = 0.013, from scratch: 4000 steps at 2e-4, then 4000 at 5e-4 (x0.1 at 85 %)
$T --lambda 0.013 --steps 2750 --lr 2e-4 --lr-decay-at 1.0 --out runs/ms-0.013 --val-every 500
cp runs/ms-0.013/last.pt runs/ms-0.013/step2750.pt
$T --lambda 0.013 --steps 4000 --lr 2e-4 --lr-decay-at 1.0 --out runs/ms-0.013 --resume --val-every 500
$T --lambda 0.013 --steps 8000 --lr 5e-4 --out runs/ms-0.013 --resume --val-every 500 &

# 2. low rate, lambda = 0.0035, branched from the base at step 2750, on the second core: 1000 steps at 2e-4, then to 5000 at 5e-4
$T --lambda 0.0035 --steps 1000 --lr 2e-4 --lr-decay-at 1.0 --init runs/ms-0.013/step2750.pt \
   --out runs/ms-0.0035 --seed 1 --val-every 500
$T --lambda 0.0035 --steps 5000 --lr 5e-4 --out runs/ms-0.0035 --resume --seed 1 --val-every 500
wait

# 3. lambda = 0.0067 and 0.025 fine-tuned from the final base, side by side
$T --lambda 0.0067 --steps 1500 --lr 2e-4 --init runs/ms-0.013/final.pt --out runs/ms-0.0067 --seed 2 --val-every 500 &
$T --lambda 0.025 --steps 1500 --lr 2e-4 --init runs/ms-0.013/final.pt --out runs/ms-0.025 --seed 3 --val-every 500
wait

# 4. ship: float16 conv weights, entropy-coder tables included
for L in 0.0035 0.0067 0.013 0.025; do
  $PY -W ignore -c "from licfpga.model.checkpoint import export_shipped as e; print(e('runs/ms-$L/final.pt', 'mean-scale-$L'))"
done
