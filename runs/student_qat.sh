#!/usr/bin/env bash
# QAT + integer export of each student as soon as its float run is final (second core),
# then the simplified-GDN student (GDN-variant table) and the pruning curve.
set -euo pipefail
PY=.venv/bin/python
for L in 0.013 0.0035 0.0067 0.025; do
  [ -f runs/int/int-student-$L.json ] && continue
  while [ ! -f runs/st-$L/final.pt ]; do sleep 30; done
  $PY -W ignore -m licfpga.model.qat --student runs/st-$L/final.pt --steps 400 --threads 1 --out runs/qat-$L
  $PY -W ignore -m licfpga.model.export_int runs/qat-$L/final.pt --out runs/int/int-student-$L
done
$PY -W ignore -m licfpga.model.distill --width 30 --gdn simplified --teacher mean-scale-0.013 --steps 3000 \
    --threads 1 --out runs/st-0.013-simplified --resume
$PY -W ignore -m licfpga.model.prune --student runs/st-0.013/final.pt --keep 24 18 12 --steps 300 --threads 1 --out runs/prune
