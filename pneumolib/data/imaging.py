"""Read any chest X-ray file into one canonical greyscale image, the same way at training and inference."""
from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
        block = (a[i:i + _STRETCH_ROWS].astype(np.float64) - lo) / (hi - lo) * 255.0
        out[i:i + _STRETCH_ROWS] = (block + 0.5).astype(np.uint8)
    return out


def _all_blocks(a: np.ndarray, test) -> bool:
    """TEST(block) holds for every block of rows (no whole-image temporaries for a 7000 x 7000 film)."""
    return all(bool(test(a[i:i + _STRETCH_ROWS])) for i in range(0, a.shape[0], _STRETCH_ROWS))


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
        raise ImageError(path, "a symbolic link to a file that does not exist" if path.is_symlink()
                         else "no such file") from None
    except OSError as e:  # a name too long, a permission, a loop of links
        raise ImageError(path, f"cannot be opened ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device" if
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise ImageError(path, f"is {kind}, not an image file")
    if not os.access(path, os.R_OK):
        raise ImageError(path, "permission denied (not readable)")
    return st


def check_size(path: str | Path, st: os.stat_result) -> None:
    """Refuse an empty file, or one over MAX_FILE_BYTES (ImageError naming the file and its size)."""
    if st.st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(path, f"file is {st.st_size / 2**20:,.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit "
                               "for one radiograph")


def check_readable(path: str | Path) -> os.stat_result:
    """check_file_type, then check_size: what every reader calls before reading; returns the file's stat."""
    st = check_file_type(path)
    check_size(path, st)
    return st


def _no_picture(path, value) -> ImageError:
    return ImageError(path, f"the image carries no picture: every pixel is {value} (blank or constant film)")


def check_has_image(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Refuse a decoded film that carries no image: every pixel the same value (blank, a black frame, a DICOM whose
    rescale turned every value into NaN). Returns the pixels unchanged."""
    a = np.asarray(pixels)
    if a.size == 0:
        raise ImageError(path, "the image has no pixels")
    lo, hi = a.min(), a.max()
    if lo == hi:
        raise _no_picture(path, int(lo))
    return pixels


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
                    raise ImageError(path, f"image is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel limit "
                                           "(decompression-bomb guard)")
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
        raise _no_picture(path, extrema[0])
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


def is_dicom(path: str | Path) -> bool:
    """True when the file is DICOM by content: the 128-byte preamble followed by b"DICM" (PS3.10 7.1)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# Which packages decode which compressed transfer syntaxes, for when pydicom cannot say (pydicom < 3).
_DECODER_HINTS = (
    ("1.2.840.10008.1.2.4.9", "pylibjpeg and pylibjpeg-openjpeg"),  # JPEG 2000 (.90-.93)
    ("1.2.840.10008.1.2.4.20", "pylibjpeg and pylibjpeg-openjpeg"),  # HTJ2K (.201-.203)
    ("1.2.840.10008.1.2.4.8", "pyjpegls, or pylibjpeg and pylibjpeg-libjpeg"),  # JPEG-LS (.80, .81)
    ("1.2.840.10008.1.2.4.", "pylibjpeg and pylibjpeg-libjpeg"),  # JPEG baseline, extended, lossless
    ("1.2.840.10008.1.2.5", "pylibjpeg and pylibjpeg-rle"),  # RLE
)


def _decoder_hint(tsuid) -> str:
    """'install X (or Y)' naming the packages that would decode this transfer syntax."""
    missing: list[str] = []
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3
        missing = list(get_decoder(tsuid).missing_dependencies)
    except Exception:  # noqa: BLE001 - older pydicom, or a syntax pydicom has no decoder class for
        pass
    if missing:
        # pydicom's wording: 'gdcm - requires gdcm>=3.0.10', 'pylibjpeg - requires pylibjpeg>=2.0 and ...'
        reqs = [m.split(" - requires ", 1)[-1].replace("numpy and ", "") for m in missing]
        reqs = ["python-" + r if r.startswith("gdcm") else r for r in reqs]  # gdcm's pip name
        reqs.sort(key=lambda r: not r.startswith("pylibjpeg"))  # pip-installable everywhere: first
        return "install " + reqs[0] + (f" (or {', or '.join(reqs[1:])})" if len(reqs) > 1 else "")
    for prefix, hint in _DECODER_HINTS:
        if str(tsuid).startswith(prefix):
            return f"install {hint} (or python-gdcm)"
    return "install pylibjpeg (with its plugins) or python-gdcm"


def _pixel_functions():
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi, apply_windowing
    return apply_modality_lut, apply_voi, apply_windowing


def _stored_values(arr: np.ndarray, ds) -> np.ndarray:
    """Keep only the BitsStored low bits (bits above may hold overlays), sign-extended when signed;
    pydicom 3 does this already, older versions do not, and doing it twice changes nothing."""
    bits = int(ds.get("BitsStored", 0) or 0)
    if not np.issubdtype(arr.dtype, np.integer) or not 0 < bits < arr.dtype.itemsize * 8:
        return arr
    a = arr.astype(np.int32 if arr.dtype.itemsize <= 2 else np.int64) & ((1 << bits) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        a = np.where(a >= 1 << (bits - 1), a - (1 << bits), a)
    return a


def _has_voi_lut(ds) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and None not in (seq[0].get("LUTDescriptor"), seq[0].get("LUTData"))


def _has_window(ds) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _first(value) -> float:
    """WindowCenter/WindowWidth may hold several alternative views; the first is the default one."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _is_identity_modality(ds) -> bool:
    if ds.get("ModalityLUTSequence"):
        return False
    return float(ds.get("RescaleSlope", 1) or 1) == 1.0 and float(ds.get("RescaleIntercept", 0) or 0) == 0.0


def dicom_to_uint8(ds, path: str | Path = "<dataset>") -> np.ndarray:
    """A decoded single-frame greyscale pydicom Dataset -> the canonical uint8 HxW image.

    Order (PS3.4 N.2): stored values (BitsStored), Modality LUT or rescale slope/intercept, VOI LUT or window
    (the first one when several), MONOCHROME1 (or an INVERSE presentation LUT) inverted, then 8 bits: a VOI
    maps onto 0..255; without one, 8-bit unsigned stored values with an identity modality LUT are kept as
    they are (as for an 8-bit PNG), anything else has its used range stretched as for a 16-bit PNG."""
    apply_modality_lut, apply_voi, apply_windowing = _pixel_functions()
    try:
        arr = _stored_values(ds.pixel_array, ds)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for bad pixel data
        raise ImageError(path, f"unreadable DICOM pixel data ({_one_line(e)})") from None
    if arr.ndim != 2:
        raise ImageError(path, f"DICOM pixel array has shape {arr.shape}; only single-frame greyscale is supported")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about float input to a VOI LUT; integral values are rounded
        try:
            values = apply_modality_lut(arr, ds)
            if np.issubdtype(np.asarray(values).dtype, np.floating) and not np.isfinite(values).all():
                raise ImageError(path, "the DICOM rescale (RescaleSlope/RescaleIntercept or Modality LUT) gives "
                                       "non-finite pixel values (NaN or infinity)")
            if _has_voi_lut(ds):
                if np.issubdtype(np.asarray(values).dtype, np.floating):
                    values = np.rint(values).astype(np.int64)
                depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
                # the LUT's output range is 0..2^depth-1 (PS3.3 C.11.2.1.1)
                grey = np.asarray(apply_voi(values, ds), dtype=np.float64) / float(2 ** depth - 1) * 255.0
            elif _has_window(ds):
                center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
                if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
                    raise ImageError(path, f"the DICOM window is not usable (WindowCenter {center}, WindowWidth "
                                           f"{width}: both must be finite, the width at least 1)")
                # window onto 0..255 directly: a stand-in dataset whose output range is 8-bit unsigned
                from pydicom.dataset import Dataset
                w = Dataset()
                w.PhotometricInterpretation, w.BitsStored, w.PixelRepresentation = "MONOCHROME2", 8, 0
                w.WindowCenter, w.WindowWidth = _first(ds.WindowCenter), _first(ds.WindowWidth)
                if ds.get("VOILUTFunction"):
                    w.VOILUTFunction = ds.VOILUTFunction
                grey = np.asarray(apply_windowing(np.asarray(values, dtype=np.float64), w), dtype=np.float64)
            else:
                grey = None
        except ImageError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a window width < 1, a malformed LUT
            raise ImageError(path, f"cannot apply the DICOM modality/VOI LUT ({_one_line(e)})") from None
    invert = (photometric == "MONOCHROME1") != (str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE")
    # invert before rounding, so that a MONOCHROME1 file gives exactly the image of its MONOCHROME2 twin
    if grey is not None:
        grey = np.clip(grey, 0.0, 255.0)
        return ((255.0 - grey if invert else grey) + 0.5).astype(np.uint8)
    if (int(ds.get("BitsStored", 8) or 8) <= 8 and int(ds.get("PixelRepresentation", 0)) == 0
            and _is_identity_modality(ds)):
        out = np.asarray(values).astype(np.uint8)
        return 255 - out if invert else out
    values = np.asarray(values, dtype=np.float64)
    return stretch_to_uint8(-values if invert else values)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _set_native_syntax(ds) -> None:
    from pydicom import uid
    from pydicom.dataset import FileMetaDataset
    try:
        implicit, little = ds.original_encoding  # pydicom >= 3
    except AttributeError:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (uid.ImplicitVRLittleEndian if implicit else
                                      uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)


def load_dicom(path: str | Path) -> np.ndarray:
    """Read one DICOM file to the canonical uint8 HxW image, or raise ImageError naming the file and the problem.

    Refused: no pixel data, multi-frame, colour, compressed pixel data no installed decoder handles
    (the message names the package that would), and anything pydicom cannot parse."""
    path = Path(path)
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise ImageError(path, "reading DICOM needs pydicom (pip install pydicom)") from None
    has_preamble = is_dicom(path)
    if has_preamble:
        check_deflated(path)  # a Deflated data set is inflated whole by pydicom: bound it before that happens
    try:
        # force=True: a .dcm without the 128-byte preamble (raw data set) is still worth a try;
        # defer_size: the pixel data is read only after the checks below
        ds = pydicom.dcmread(path, force=not has_preamble, defer_size="256 KB")
    except InvalidDicomError as e:
        raise ImageError(path, f"not a valid DICOM file ({_one_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many types on damaged files
        raise ImageError(path, f"not a valid or a truncated DICOM file ({_one_line(e)})") from None
    if "PixelData" not in ds:
        if not has_preamble and "Rows" not in ds and "SOPClassUID" not in ds:
            raise ImageError(path, "not a valid DICOM file (no DICM preamble, no image attributes)")
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            raise ImageError(path, f"DICOM has {other[0]} instead of integer PixelData; not supported")
        sop = ds.get("SOPClassUID")
        kind = f"; SOP class {getattr(sop, 'name', sop)}" if sop else ""
        raise ImageError(path, f"DICOM has no pixel data (not an image{kind})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(path, f"multi-frame DICOM ({frames} frames); only single-frame images are supported")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper().strip()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if not photometric and samples == 1:
        raise ImageError(path, "DICOM has no PhotometricInterpretation (a required attribute): cannot tell "
                               "MONOCHROME1 (white = low values) from MONOCHROME2, so the film could be read "
                               "inverted; set it in the file")
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or samples != 1:
        raise ImageError(path, f"colour DICOM (PhotometricInterpretation {photometric or 'missing'}, "
                               f"{samples} sample(s) per pixel); only greyscale MONOCHROME1/MONOCHROME2 "
                               "is supported")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise ImageError(path, f"image is {cols}x{rows} pixels, over the {MAX_PIXELS:,}-pixel limit "
                               "(decompression-bomb guard)")
    meta = getattr(ds, "file_meta", None)
    tsuid = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsuid is None:
        # a raw data set (no file meta): pixel data is then uncompressed, in the encoding it was read with
        _set_native_syntax(ds)
    if tsuid is not None and getattr(tsuid, "is_compressed", False):
        name = getattr(tsuid, "name", str(tsuid))
        try:
            from pydicom.pixels import get_decoder  # pydicom >= 3
            decoder = get_decoder(tsuid)
            available = decoder.is_available
            plugins = ", ".join(decoder.available_plugins)
        except Exception:  # noqa: BLE001 - older pydicom: find out by decoding
            available, plugins = True, ""
        if not available:
            raise ImageError(path, f"compressed DICOM ({name}) and no installed decoder for it: "
                                   f"{_decoder_hint(tsuid)}")
        try:
            ds.pixel_array
        except Exception as e:  # noqa: BLE001 - each decoder plugin raises its own types
            via = f" with {plugins}" if plugins else ""
            why = _one_line(e).replace("Unable to decode as exceptions were raised by all available plugins: ", "")
            raise ImageError(path, f"cannot decode the compressed DICOM ({name}){via}: {why[:160]}; "
                                   f"the data may be damaged, or another decoder may read it: "
                                   f"{_decoder_hint(tsuid)}") from None
    return dicom_to_uint8(ds, path)


DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole data set is zlib-compressed
# the most a data set may inflate to: the largest film MAX_PIXELS allows at 16 bits, and room for its header
MAX_INFLATED_BYTES = 2 * MAX_PIXELS + 16 * 2**20


def check_deflated(path: str | Path, limit: int = MAX_INFLATED_BYTES) -> None:
    """Refuse a Deflated-VR DICOM whose data set inflates past LIMIT, measured by inflating it in a stream (1 MB in
    memory at a time) before pydicom inflates it whole: a 1.4 MB file must not become 1.5 GB."""
    import zlib

    try:
        from pydicom.filereader import read_file_meta_info
        meta = read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - no readable file meta: dcmread reports it
        return
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return
    start = 132 + 12 + int(meta.get("FileMetaInformationGroupLength", 0) or 0)  # preamble, (0002,0000), the meta
    inflate, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    try:
        with open(path, "rb") as f:
            f.seek(start)
            for chunk in iter(lambda: f.read(2**16), b""):
                data = chunk
                while data:
                    total += len(inflate.decompress(data, 2**20))
                    if total > limit:
                        raise ImageError(path, f"Deflated DICOM whose data set inflates to more than "
                                               f"{limit // 2**20} MB (the most a {MAX_PIXELS:,}-pixel film needs): "
                                               "refused before it is inflated (a decompression bomb, or not a film)")
                    data = inflate.unconsumed_tail
                if inflate.eof:
                    break
    except zlib.error as e:
        raise ImageError(path, f"damaged Deflated DICOM data ({e})") from None


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
