"""Read any chest X-ray file into one canonical greyscale image, the same way at training and inference."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data.dicom import (  # noqa: F401 (re-exported: every name in one place)
    DEFLATED,
    MAX_INFLATED_BYTES,
    check_deflated,
    dicom_to_uint8,
    is_dicom,
    load_dicom,
)
from ..data.image_checks import (  # noqa: F401 (re-exported: every name in one place)
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageError,
    check_file_type,
    check_has_image,
    check_readable,
    check_size,
    exif_orientation,
    no_picture,
    sixteen_to_uint8,
    stretch_to_uint8,
    to_greyscale,
)


def load_image(path: str | Path) -> Image.Image:
    """Decode one file to an 8-bit greyscale PIL image, or raise ImageError naming the file.

    The file is checked before it is read (check_readable: a regular file under MAX_FILE_BYTES), its pixel count
    before it is decoded (MAX_PIXELS), and the decoded film must carry a picture (check_has_image).
    DICOM (by suffix or by content, whatever the suffix) goes through load_dicom; everything else through PIL."""
    path = Path(path)
    check_readable(path)
    if path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path):
        return Image.fromarray(check_has_image(path, load_dicom(path)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(
                        path, f"image is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel limit (decompression-bomb guard)"
                    )
                im.load()
                # as every viewer shows it: the EXIF orientation applied before anything else (exif_orientation
                # tells whether it was; the prediction record says so)
                grey = to_greyscale(ImageOps.exif_transpose(im) if exif_orientation(path) != 1 else im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (PIL cannot identify the format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"decompression-bomb guard: {e}") from None
    except MemoryError:
        raise ImageError(path, "too large to decode in the memory available") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, f"unreadable or truncated image ({e})") from None
    extrema = grey.getextrema()
    if extrema[0] == extrema[1]:
        raise no_picture(path, extrema[0])
    return grey


def colour_census(paths) -> list[dict]:
    """How files store their pixels, counted from their headers and decoded channels (no resizing).

    A greyscale loader (load_image) and an RGB one (torchvision's ImageFolder) hand a model the same values only
    when a colour file's three channels are equal; this says, per format and PIL mode, how many files there are and
    how many colour files carry channels that differ. DICOM files are listed by name only (load_dicom refuses
    colour ones); a file PIL cannot open is counted as 'unreadable'.

    Args:
        paths: the files to count.

    Returns:
        one dict per (format, mode): 'format', 'mode', 'files', 'channels differ' (None where the mode has one
        channel or was not decoded).
    """
    counts: dict[tuple[str, str], list[int | None]] = {}
    for p in paths:
        p = Path(p)
        key, differ = ("DICOM", "-"), None
        if p.suffix.lower() not in DICOM_SUFFIXES:
            try:
                with Image.open(p) as im:
                    key = (im.format or "?", im.mode)
                    if im.mode in ("RGB", "YCbCr"):
                        a = np.asarray(im.convert("RGB"), dtype=np.int16)
                        differ = int(bool(np.any(a[..., 0] != a[..., 1]) or np.any(a[..., 1] != a[..., 2])))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                key = ("unreadable", "-")
        files, n_differ = counts.get(key, [0, None])
        counts[key] = [files + 1, n_differ if differ is None else (n_differ or 0) + differ]
    return [{"format": f, "mode": m, "files": n, "channels differ": d} for (f, m), (n, d) in sorted(counts.items())]


def decode_cost(path: str | Path) -> int:
    """About how many bytes decoding this file holds at its peak (its pixels at their stored depth and channels,
    times the copies greyscale conversion makes), from the header only; the file's size when the header says
    nothing. What parallel decoding is budgeted by (DecodedCache.warm)."""
    path = Path(path)
    try:
        check_readable(path)  # never open a FIFO, a device or an oversized file to read its header
    except ImageError:
        return 0  # the decode itself refuses it, with its reason
    try:
        if path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path):
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            pixels = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
            return max(pixels * 8 * 3, path.stat().st_size)  # stored values, float64 through the LUTs, uint8
        with Image.open(path) as im:
            w, h = im.size
            bands = len(im.getbands())
            depth = 2 if im.mode.startswith("I;16") else 4 if im.mode in ("I", "F") else 1
            return w * h * max(bands, 1) * depth * 4  # decoded, converted, composited, greyscale
    except Exception:  # noqa: BLE001 - unreadable headers are refused by the decode itself
        try:
            return path.stat().st_size
        except OSError:
            return 0


def load_resized(path: str | Path, image_size: int) -> np.ndarray:
    """Decode and resize to image_size x image_size; uint8 HxW. The log's first step is Resize((224,224))."""
    im = load_image(path)
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8).copy()
