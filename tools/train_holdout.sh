#!/usr/bin/env bash
# Train the baseline and notebook 10's ablation steps under the early-ID holdout (CPU profile), for the
# validation-protocol evidence in notebook 10.
# usage: tools/train_holdout.sh DATA_DIR [RUNS_DIR]   (re-running reuses finished runs)
set -euo pipefail
DATA=${1:?usage: tools/train_holdout.sh DATA_DIR [RUNS_DIR]}
RUNS=${2:-runs}
PY=${PYTHON:-.venv/bin/python}
for name in baseline abl_balanced abl_robust_aug abl_per_image abl_equalize abl_regularised abl_tta; do
  /usr/bin/time -f "$name (early_ids): %e s wall" "$PY" -m pneumolib train "$name" --data-dir "$DATA" \
      --out "$RUNS/early_ids/$name" --profile cpu --cam-per-class 0 --holdout early_ids
done
