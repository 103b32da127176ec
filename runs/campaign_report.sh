#!/usr/bin/env bash
# Snapshot the RD campaign into the repository: the learning curve (validation on the held-out
# split against training pixels seen, across runs) under results/training/campaign/, and the
# current weights as a fp16 checkpoint under model/checkpoints/campaign/ (resumable by
# runs/campaign.sh on a machine without ~/.cache). Commit both afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${LICFPGA_RUNS:-$HOME/.cache/licfpga/runs}
NAME=${NAME:-teacher-ms64-0.013}
OUT=results/training/campaign
# the base teacher's curve is learning_curve.png; any other run's is learning_curve-<NAME>.png
PLOT=$OUT/learning_curve.png; [ "$NAME" = teacher-ms64-0.013 ] || PLOT=$OUT/learning_curve-$NAME.png
mkdir -p "$OUT" model/checkpoints/campaign
# the committed history plus this machine's rows past it (a new machine starts a fresh log)
.venv/bin/python - "$RUNS/$NAME/log.csv" "$OUT/$NAME.csv" <<'PY'
import csv, sys
from pathlib import Path
new, hist = Path(sys.argv[1]), Path(sys.argv[2])
rows = list(csv.DictReader(open(hist))) if hist.exists() else []
seen = max((int(r["pixels"]) for r in rows), default=-1)
rows += [r for r in csv.DictReader(open(new)) if int(r["pixels"]) > seen]
with open(hist, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
print(f"{hist}: {len(rows)} rows, {max(int(r['pixels']) for r in rows):.3e} training pixels")
PY
.venv/bin/licfpga plot-train "$OUT/$NAME.csv" --x pixels --out "$PLOT"
.venv/bin/python -W ignore - "$RUNS/$NAME/last.pt" "$NAME" <<'PY'
import sys
from pathlib import Path
from licfpga.model.checkpoint import export_shipped
print("wrote", export_shipped(sys.argv[1], sys.argv[2], Path("model/checkpoints/campaign")))
PY
