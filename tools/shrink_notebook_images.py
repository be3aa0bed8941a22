"""Quantise the PNG figures inside executed notebooks to 256-colour palettes (about 3x smaller, same look).

usage: python tools/shrink_notebook_images.py notebooks/*.ipynb
"""
import base64
import io
import sys

import nbformat
from PIL import Image


def shrink(png_b64: str) -> str:
    im = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB")
    out = io.BytesIO()
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    new = base64.b64encode(out.getvalue()).decode()
    return new if len(new) < len(png_b64) else png_b64


for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    before = after = 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "image/png" in data:
                before += len(data["image/png"])
                data["image/png"] = shrink(data["image/png"])
                after += len(data["image/png"])
    nbformat.write(nb, path)
    print(f"{path}: figures {before / 1e3:.0f} kB -> {after / 1e3:.0f} kB")
