"""Print the text outputs of executed notebooks (to write the 'Log vs re-run' cells from them)."""
import sys

import nbformat

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    print("=" * 20, path)
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream" and "epoch " not in o.get("text", ""):
                print(f"[{i}]", o["text"].rstrip())
            elif o.get("output_type") == "error":
                print(f"[{i}] ERROR", o.get("ename"), o.get("evalue"))
