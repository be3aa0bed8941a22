"""Shrink the figures inside executed notebooks: PNGs quantised to 256-colour palettes (same look, about 3x
smaller); the large ones (film galleries, Grad-CAM grids: photographs, not line art) stored as JPEG at quality 75
when that is smaller still, so every notebook stays under 1 MB (tests/test_notebooks.py).

usage: python tools/shrink_notebook_images.py notebooks/*.ipynb
"""

import base64
import io
import sys

import nbformat
from PIL import Image

LARGE = 60_000  # base64 characters: above this a figure is mostly films (galleries, Grad-CAM grids), and JPEG suits it


def quantised(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def jpeg(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=75, optimize=True)
    return out.getvalue()


def shrink(data: dict, metadata: dict) -> None:
    """Replace data['image/png'] in place by its smallest faithful form (a palette PNG, or a JPEG for galleries)."""
    png_b64 = data["image/png"]
    im = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB")
    best_mime, best = "image/png", png_b64
    small = base64.b64encode(quantised(im)).decode()
    if len(small) < len(best):
        best = small
    if len(best) > LARGE:
        j = base64.b64encode(jpeg(im)).decode()
        if len(j) < len(best):
            best_mime, best = "image/jpeg", j
    if best_mime == "image/jpeg":
        del data["image/png"]
        if "image/png" in metadata:
            metadata["image/jpeg"] = metadata.pop("image/png")
    data[best_mime] = best


for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    before = after = 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "image/png" in data:
                before += len(data["image/png"])
                shrink(data, o.setdefault("metadata", {}))
                after += len(data.get("image/png") or data["image/jpeg"])
    nbformat.write(nb, path)
    print(f"{path}: figures {before / 1e3:.0f} kB -> {after / 1e3:.0f} kB")
