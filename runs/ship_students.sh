#!/usr/bin/env bash
# Ship the students: float (fp16 conv weights), QAT (fp16 conv weights) and the integer
# artifact exported from the *shipped* QAT file (so artifact == what the shipped QAT computes).
# FLOAT_SRC / QAT_SRC: the runs' final checkpoints, {L} = lambda. Session 6 (the campaign
# students of runs/student_close.sh):
#   FLOAT_SRC='$RUNS/student-hp30-{L}-branch/final.pt' (0.013: $RUNS/student-hp30-0.013-decay/final.pt)
#   QAT_SRC='$RUNS/qat-student-hp30-{L}/final.pt'
# (sessions 3-4 shipped runs/st-{L} and runs/qat-{L}; lambda 0.013 from runs/st-0.013b, runs/qat-0.013b)
# Session 7 re-ran only QAT (rate on noisy latents, 1000 steps from the shipped float students):
#   FLOAT_SRC=- QAT_SRC='$RUNS/qat-student-hp30-{L}-noise/final.pt'   (- : keep the shipped float file)
set -euo pipefail
PY=.venv/bin/python
RUNS=${LICFPGA_RUNS:-$HOME/.cache/licfpga/runs}
[ -n "${FLOAT_SRC:-}" ] || FLOAT_SRC='runs/st-{L}/final.pt'     # (a literal {L} cannot sit in ${X:-...})
[ -n "${QAT_SRC:-}" ] || QAT_SRC='runs/qat-{L}/final.pt'
for L in ${LAMBDAS:-0.0035 0.0067 0.013 0.025}; do
  f=$(printf '%s' "$FLOAT_SRC" | sed "s/{L}/$L/g"); q=$(printf '%s' "$QAT_SRC" | sed "s/{L}/$L/g")
  if [ "$L" = 0.013 ] && [ -n "${FLOAT_SRC_0013:-}" ]; then f=$FLOAT_SRC_0013; fi
  f=${f/\$RUNS/$RUNS}; q=${q/\$RUNS/$RUNS}
  $PY -W ignore - "$f" "$q" "$L" <<'PYEOF'
import sys
from pathlib import Path
from licfpga.model.checkpoint import export_shipped
from licfpga.model.qat import ship_qat, load_qat
from licfpga.model.export_int import export_integer
f, q, L = sys.argv[1:]
if f != "-":
    print(export_shipped(f, f"student-{L}"))
Path("model/checkpoints/qat").mkdir(exist_ok=True)
qp = ship_qat(q, f"qat-student-{L}", "model/checkpoints/qat")
model, state = load_qat(qp)
print(qp, export_integer(model, f"model/checkpoints/int-student-{L}", state["meta"]))
PYEOF
done
