#!/usr/bin/env bash
# Train notebook 10's ablation steps and the recommended recipe on real data (CPU profile), one after another.
# usage: tools/train_ablations.sh DATA_DIR [RUNS_DIR]   (re-running reuses finished runs)
set -euo pipefail
DATA=${1:?usage: tools/train_ablations.sh DATA_DIR [RUNS_DIR]}
RUNS=${2:-runs}
PY=${PYTHON:-.venv/bin/python}
for name in abl_balanced abl_robust_aug abl_per_image abl_equalize abl_regularised abl_tta; do
  /usr/bin/time -f "$name: %e s wall" "$PY" -m pneumolib train "$name" --data-dir "$DATA" --out "$RUNS/ablation/$name" \
      --profile cpu --cam-per-class 0
done
/usr/bin/time -f "recommended: %e s wall" "$PY" -m pneumolib train recommended --data-dir "$DATA" \
    --out "$RUNS/10_recommended" --profile cpu
