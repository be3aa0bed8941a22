"""What every film must pass before and after it is read, and the 8-bit greyscale it becomes (any PIL mode, 16 bits, EXIF)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

DICOM_SUFFIXES = (".dcm", ".dicom")


# Folders take files by suffix (any case); a file named explicitly is also read as DICOM by content (is_dicom).
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png") + DICOM_SUFFIXES


# Real radiographs are at most ~4k x 4k; anything far larger is a decompression bomb or a mistake.
MAX_PIXELS = 50_000_000


# A radiograph file is at most a few tens of MB (a 4k x 4k 16-bit DICOM is 32 MB); a file over this is refused before
# a byte of it is read (a 2 GB sparse file, /dev/zero behind a link), by check_readable.
MAX_FILE_BYTES = 512 * 2**20


_STRETCH_ROWS = 256  # stretch_to_uint8 converts this many rows at a time: float64 of one block, not of the image


class ImageError(ValueError):
    """A file that cannot be used as an image; str() is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def stretch_to_uint8(a: np.ndarray) -> np.ndarray:
    """The used range min..max onto 0..255 (a constant image becomes 0); the rule for 16-bit PNGs and DICOMs
    without a window alike, so that the same pixels give the same image whatever the file format.

    The input keeps its own dtype; float64 is used a block of rows at a time (the same arithmetic on every
    pixel as on the whole image), so a 7000 x 7000 16-bit film costs its uint8 output, not 0.8 GB of floats."""
    a = np.asarray(a)
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1) if a.ndim > 2 else np.atleast_2d(a)
    out = np.zeros(a.shape, np.uint8)
    if a.size == 0:
        return out
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return out
    for i in range(0, a.shape[0], _STRETCH_ROWS):
        block = (a[i : i + _STRETCH_ROWS].astype(np.float64) - lo) / (hi - lo) * 255.0
        out[i : i + _STRETCH_ROWS] = (block + 0.5).astype(np.uint8)
    return out


def _all_blocks(a: np.ndarray, test) -> bool:
    """TEST(block) holds for every block of rows (no whole-image temporaries for a 7000 x 7000 film)."""
    return all(bool(test(a[i : i + _STRETCH_ROWS])) for i in range(0, a.shape[0], _STRETCH_ROWS))


def sixteen_to_uint8(a: np.ndarray) -> np.ndarray:
    """A 16-bit film onto 0..255 by its bit depth, not by its own min/max, when it holds 8-bit values scaled up:

    - every value a multiple of 257 (8-bit v stored as v * 257, the exact 8 -> 16-bit scaling): v // 257;
    - every value a multiple of 256 (v stored as v << 8): v >> 8;
    - every value at most 255 (8-bit values in a 16-bit container): as they are;
    - otherwise (real 16-bit data, e.g. a 12-bit detector's export): the used range stretched (stretch_to_uint8),
      as for a DICOM without a window.

    So an 8-bit film saved as 16 bits is read as exactly that film, whatever its own darkest and brightest pixel."""
    a = np.asarray(a)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer) or a.size == 0 or a.min() < 0:
        return stretch_to_uint8(a)
    for divisor in (257, 256):
        if _all_blocks(a, lambda b: not np.any(b % divisor)):
            return (a // divisor).astype(np.uint8)
    if a.max() <= 255:
        return a.astype(np.uint8)
    return stretch_to_uint8(a)


def exif_orientation(path: str | Path) -> int:
    """The EXIF Orientation tag of an image file (1 = upright, as stored; 2-8 = a viewer flips or turns it), read
    from the header only; 1 when there is none or the file is not one PIL reads."""
    try:
        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - DICOM, a damaged header: no orientation to apply
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def to_greyscale(im: Image.Image) -> Image.Image:
    """Canonical 8-bit greyscale ('L') from any PIL mode."""
    if im.mode == "L":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return Image.fromarray(sixteen_to_uint8(np.asarray(im)))  # by bit depth (see sixteen_to_uint8)
    if im.mode in ("I", "F"):
        # 32-bit integer and float images: stretch the used range onto 0..255
        arr = np.asarray(im)
        if im.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:  # 16-bit PNG/TIFF opened as 'I'
            return Image.fromarray(sixteen_to_uint8(arr.astype(np.uint16)))
        return Image.fromarray(stretch_to_uint8(arr))
    if im.mode in ("RGBA", "LA", "PA", "P") or "transparency" in im.info:
        # transparent pixels become black, the background of a radiograph
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if im.mode == "CMYK":
        return im.convert("RGB").convert("L")
    return im.convert("L")


def check_file_type(path: str | Path) -> os.stat_result:
    """Refuse what is not a readable regular file, before a byte of it is read; return its stat.

    Raises ImageError naming the file and the problem: no such file, a dangling symbolic link, a folder, a FIFO,
    device or socket (reading /dev/zero or a FIFO would never end), a file this process may not read. Folder
    listings and manifests refuse these at once; size problems (check_size) are the pre-scan's to report."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(
            path, "a symbolic link to a file that does not exist" if path.is_symlink() else "no such file"
        ) from None
    except OSError as e:  # a name too long, a permission, a loop of links
        raise ImageError(path, f"cannot be opened ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise ImageError(path, f"is {kind}, not an image file")
    if not os.access(path, os.R_OK):
        raise ImageError(path, "permission denied (not readable)")
    return st


def check_size(path: str | Path, st: os.stat_result) -> None:
    """Refuse an empty file, or one over MAX_FILE_BYTES (ImageError naming the file and its size)."""
    if st.st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(
            path,
            f"file is {st.st_size / 2**20:,.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit for one radiograph",
        )


def check_readable(path: str | Path) -> os.stat_result:
    """check_file_type, then check_size: what every reader calls before reading; returns the file's stat."""
    st = check_file_type(path)
    check_size(path, st)
    return st


def no_picture(path, value) -> ImageError:
    return ImageError(path, f"the image carries no picture: every pixel is {value} (blank or constant film)")


def check_has_image(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Refuse a decoded film that carries no image: every pixel the same value (blank, a black frame, a DICOM whose
    rescale turned every value into NaN). Returns the pixels unchanged."""
    a = np.asarray(pixels)
    if a.size == 0:
        raise ImageError(path, "the image has no pixels")
    lo, hi = a.min(), a.max()
    if lo == hi:
        raise no_picture(path, int(lo))
    return pixels
