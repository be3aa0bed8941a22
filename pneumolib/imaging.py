"""Read any chest X-ray file into one canonical greyscale image, the same way at training and inference."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# Real radiographs are at most ~4k x 4k; anything far larger is a decompression bomb or a mistake.
MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """A file that cannot be used as an image; str() is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def to_greyscale(im: Image.Image) -> Image.Image:
    """Canonical 8-bit greyscale ('L') from any PIL mode."""
    if im.mode == "L":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit (e.g. DICOM exports) and float images: stretch the used range onto 0..255
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray((a + 0.5).astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA", "P") or "transparency" in im.info:
        # transparent pixels become black, the background of a radiograph
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if im.mode == "CMYK":
        return im.convert("RGB").convert("L")
    return im.convert("L")


def load_image(path: str | Path) -> Image.Image:
    """Decode one file to an 8-bit greyscale PIL image, or raise ImageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(path, f"image is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel limit "
                                           "(decompression-bomb guard)")
                im.load()
                return to_greyscale(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (PIL cannot identify the format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"decompression-bomb guard: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, f"unreadable or truncated image ({e})") from None


def load_resized(path: str | Path, image_size: int) -> np.ndarray:
    """Decode and resize to image_size x image_size; uint8 HxW. The log's first step is Resize((224,224))."""
    im = load_image(path)
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8).copy()
