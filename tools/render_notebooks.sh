#!/usr/bin/env bash
# Execute the numbered notebooks in place on real data, for the committed outputs.
# usage: tools/render_notebooks.sh DATA_DIR [PROFILE] [notebooks...]
set -euo pipefail
DATA="$(realpath "$1")"  # before the cd, so a relative DATA_DIR works
cd "$(dirname "$0")/../notebooks"
export PNEUMOLIB_DATA_DIR="$DATA" PNEUMOLIB_PROFILE="${2:-cpu}" PNEUMOLIB_RUNS="$(realpath ../runs)" TQDM_DISABLE=1
shift 2 || shift $#
nbs=("$@"); [ ${#nbs[@]} -gt 0 ] || nbs=(0*.ipynb)
for nb in "${nbs[@]}"; do
  start=$(date +%s)
  jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=7200 "$nb"
  echo "$nb: $(( $(date +%s) - start )) s"
done
python ../tools/shrink_notebook_images.py "${nbs[@]}"
