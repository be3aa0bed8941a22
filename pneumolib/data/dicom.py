"""DICOM films: header checks before pixels (Deflated data sets bounded), then the modality and VOI LUTs to 8-bit grey."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..data.image_checks import MAX_PIXELS, ImageError, stretch_to_uint8


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


def _voi_grey(arr: np.ndarray, ds, path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(the Modality LUT's values, the VOI LUT's or window's grey on 0..255 as floats, or None without a VOI)."""
    apply_modality_lut, apply_voi, apply_windowing = _pixel_functions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about float input to a VOI LUT; integral values are rounded
        try:
            values = apply_modality_lut(arr, ds)
            if np.issubdtype(np.asarray(values).dtype, np.floating) and not np.isfinite(values).all():
                raise ImageError(
                    path,
                    "the DICOM rescale (RescaleSlope/RescaleIntercept or Modality LUT) gives "
                    "non-finite pixel values (NaN or infinity)",
                )
            if _has_voi_lut(ds):
                if np.issubdtype(np.asarray(values).dtype, np.floating):
                    values = np.rint(values).astype(np.int64)
                depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
                # the LUT's output range is 0..2^depth-1 (PS3.3 C.11.2.1.1)
                return values, np.asarray(apply_voi(values, ds), dtype=np.float64) / float(2**depth - 1) * 255.0
            if _has_window(ds):
                return values, _windowed(values, ds, path, apply_windowing)
            return values, None
        except ImageError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a window width < 1, a malformed LUT
            raise ImageError(path, f"cannot apply the DICOM modality/VOI LUT ({_one_line(e)})") from None


def _windowed(values, ds, path: str | Path, apply_windowing) -> np.ndarray:
    """VALUES through the data set's (first) window onto 0..255."""
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise ImageError(
            path,
            f"the DICOM window is not usable (WindowCenter {center}, WindowWidth "
            f"{width}: both must be finite, the width at least 1)",
        )
    # window onto 0..255 directly: a stand-in dataset whose output range is 8-bit unsigned
    from pydicom.dataset import Dataset

    w = Dataset()
    w.PhotometricInterpretation, w.BitsStored, w.PixelRepresentation = "MONOCHROME2", 8, 0
    w.WindowCenter, w.WindowWidth = _first(ds.WindowCenter), _first(ds.WindowWidth)
    if ds.get("VOILUTFunction"):
        w.VOILUTFunction = ds.VOILUTFunction
    return np.asarray(apply_windowing(np.asarray(values, dtype=np.float64), w), dtype=np.float64)


def dicom_to_uint8(ds, path: str | Path = "<dataset>") -> np.ndarray:
    """A decoded single-frame greyscale pydicom Dataset -> the canonical uint8 HxW image.

    Order (PS3.4 N.2): stored values (BitsStored), Modality LUT or rescale slope/intercept, VOI LUT or window
    (the first one when several), MONOCHROME1 (or an INVERSE presentation LUT) inverted, then 8 bits: a VOI
    maps onto 0..255; without one, 8-bit unsigned stored values with an identity modality LUT are kept as
    they are (as for an 8-bit PNG), anything else has its used range stretched as for a 16-bit PNG."""
    try:
        arr = _stored_values(ds.pixel_array, ds)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for bad pixel data
        raise ImageError(path, f"unreadable DICOM pixel data ({_one_line(e)})") from None
    if arr.ndim != 2:
        raise ImageError(path, f"DICOM pixel array has shape {arr.shape}; only single-frame greyscale is supported")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    values, grey = _voi_grey(arr, ds, path)
    invert = (photometric == "MONOCHROME1") != (str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE")
    # invert before rounding, so that a MONOCHROME1 file gives exactly the image of its MONOCHROME2 twin
    if grey is not None:
        grey = np.clip(grey, 0.0, 255.0)
        return ((255.0 - grey if invert else grey) + 0.5).astype(np.uint8)
    if (
        int(ds.get("BitsStored", 8) or 8) <= 8
        and int(ds.get("PixelRepresentation", 0)) == 0
        and _is_identity_modality(ds)
    ):
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
    ds.file_meta.TransferSyntaxUID = (
        uid.ImplicitVRLittleEndian if implicit else uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
    )


def _check_image_header(ds, path: Path, has_preamble: bool) -> None:
    """Refuse, before the pixels are read: no pixel data, multi-frame, colour or no PhotometricInterpretation, too
    many pixels."""
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
        raise ImageError(
            path,
            "DICOM has no PhotometricInterpretation (a required attribute): cannot tell "
            "MONOCHROME1 (white = low values) from MONOCHROME2, so the film could be read "
            "inverted; set it in the file",
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or samples != 1:
        raise ImageError(
            path,
            f"colour DICOM (PhotometricInterpretation {photometric or 'missing'}, "
            f"{samples} sample(s) per pixel); only greyscale MONOCHROME1/MONOCHROME2 "
            "is supported",
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise ImageError(
            path, f"image is {cols}x{rows} pixels, over the {MAX_PIXELS:,}-pixel limit (decompression-bomb guard)"
        )


def _check_decodable(ds, path: Path) -> None:
    """A raw data set's transfer syntax set from how it was read; compressed pixel data decoded here, so that a
    missing or failing decoder is refused naming the package that would read it."""
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
            raise ImageError(path, f"compressed DICOM ({name}) and no installed decoder for it: {_decoder_hint(tsuid)}")
        try:
            ds.pixel_array
        except Exception as e:  # noqa: BLE001 - each decoder plugin raises its own types
            via = f" with {plugins}" if plugins else ""
            why = _one_line(e).replace("Unable to decode as exceptions were raised by all available plugins: ", "")
            raise ImageError(
                path,
                f"cannot decode the compressed DICOM ({name}){via}: {why[:160]}; "
                f"the data may be damaged, or another decoder may read it: "
                f"{_decoder_hint(tsuid)}",
            ) from None


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
    _check_image_header(ds, path, has_preamble)
    _check_decodable(ds, path)
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
                        raise ImageError(
                            path,
                            f"Deflated DICOM whose data set inflates to more than "
                            f"{limit // 2**20} MB (the most a {MAX_PIXELS:,}-pixel film needs): "
                            "refused before it is inflated (a decompression bomb, or not a film)",
                        )
                    data = inflate.unconsumed_tail
                if inflate.eof:
                    break
    except zlib.error as e:
        raise ImageError(path, f"damaged Deflated DICOM data ({e})") from None
