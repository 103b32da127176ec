#!/usr/bin/env bash
# Ship the students: float (fp16 conv weights), QAT (fp16 conv weights) and the integer
# artifact exported from the *shipped* QAT file (so artifact == what the shipped QAT computes).
set -euo pipefail
PY=.venv/bin/python
# (lambda 0.013 was shipped from runs/st-0.013b and runs/qat-0.013b: see runs/student_recipe.sh step 3)
for L in ${LAMBDAS:-0.0035 0.0067 0.013 0.025}; do
  $PY -W ignore - <<PYEOF
from pathlib import Path
from licfpga.model.checkpoint import export_shipped
from licfpga.model.qat import ship_qat, load_qat
from licfpga.model.export_int import export_integer
print(export_shipped("runs/st-$L/final.pt", "student-$L"))
Path("model/checkpoints/qat").mkdir(exist_ok=True)
q = ship_qat("runs/qat-$L/final.pt", "qat-student-$L", "model/checkpoints/qat")
model, state = load_qat(q)
print(q, export_integer(model, "model/checkpoints/int-student-$L", state["meta"]))
PYEOF
done
