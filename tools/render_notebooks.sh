#!/usr/bin/env bash
# Render the numbered notebooks in place with papermill, then re-sync their jupytext .py pairs; prints each
# notebook's wall time. The notebooks (and their .py pairs) are the source: this only executes them.
# usage: tools/render_notebooks.sh DATA_DIR [PROFILE] [notebooks...]
#   DATA_DIR  a Kaggle-layout folder, or 'fixture' for the bundled phantoms
#   PROFILE   cpu (default) | gpu | fixture
#   seeds     $PNEUMOLIB_SEEDS, comma-separated (default: 0,1,2,3,4 on real data, 0 on the fixture)
#   budget    $PNEUMOLIB_BUDGET: one smaller training budget for every seed, e.g. 'epochs=3,max_train_images=1000'
#             (default: none, the profile's); each notebook says so. Seeds at different budgets are never pooled.
#   nb 10     $PNEUMOLIB_HOLDOUTS (default folders; folders,early_ids adds the early-ID holdout), $PNEUMOLIB_MATCHED (1: train the matched baseline),
#             $PNEUMOLIB_SKIP_STEPS (side branches the ablation leaves out, e.g. abl_per_image; default none)
#   runs      $PNEUMOLIB_RUNS (default: runs/ at the repository root); finished runs are reused
#   nb 01, 10 $PNEUMOLIB_SENSITIVITY_RUNS: a root of runs at the cpu profile's own budget (tools/train_series.py
#             ROOT 01 10 matched --profile cpu), read only, for the sensitivity row; unset: the row says not measured
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$root/.venv/bin/python}"
data="${1:?usage: tools/render_notebooks.sh DATA_DIR [PROFILE] [notebooks...]}"
profile="${2:-cpu}"
shift; [ $# -gt 0 ] && shift
if [ "$data" = fixture ]; then seeds="${PNEUMOLIB_SEEDS:-0}"; else data="$(realpath "$data")"; seeds="${PNEUMOLIB_SEEDS:-0,1,2,3,4}"; fi
runs="$(realpath -m "${PNEUMOLIB_RUNS:-$root/runs}")"
nbs=()
for nb in "$@"; do nbs+=("$(basename "$nb")"); done
cd "$root/notebooks"
# 00_summary reads the others' runs: rendered last
[ ${#nbs[@]} -gt 0 ] || nbs=($(ls [0-9][0-9]_*.ipynb | grep -v '^00_') 00_summary.ipynb)
export TQDM_DISABLE=1
all_start=$(date +%s)
for nb in "${nbs[@]}"; do
  start=$(date +%s)
  extra=()
  case "$nb" in 10_*) extra=(-p HOLDOUTS "${PNEUMOLIB_HOLDOUTS:-folders}" -p MATCHED "${PNEUMOLIB_MATCHED:-1}"
                     -p SKIP_STEPS "${PNEUMOLIB_SKIP_STEPS:-}") ;; esac
  "$PY" -m papermill "$nb" "$nb" -p DATA_DIR "$data" -p PROFILE "$profile" -p SEEDS "$seeds" -p RUNS "$runs" \
      -p DEVICE "${PNEUMOLIB_DEVICE:-auto}" -p BUDGET "${PNEUMOLIB_BUDGET:-}" "${extra[@]}" --log-level WARNING
  "$PY" "$root/tools/finish_render.py" "$nb"
  "$PY" "$root/tools/shrink_notebook_images.py" "$nb" >/dev/null
  "$PY" -m jupytext --sync "$nb" --quiet
  echo "$nb: $(( $(date +%s) - start )) s wall"
done
echo "all ${#nbs[@]} notebook(s): $(( $(date +%s) - all_start )) s wall (profile $profile, seeds $seeds, budget '${PNEUMOLIB_BUDGET:-}')"
