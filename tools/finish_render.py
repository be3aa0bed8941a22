"""Tidy notebooks after a papermill render: drop the injected-parameters cell (its values would pin the next run,
nbval's included, to this render's data folder; the provenance line prints what was used) and papermill's
execution metadata (absolute paths, timings that churn diffs).

usage: python tools/finish_render.py notebooks/NN_*.ipynb
"""

import sys

import nbformat

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:  # papermill adds empty tag lists; the .py pair would carry them
            del cell.metadata["tags"]
    nbformat.write(nb, path)
