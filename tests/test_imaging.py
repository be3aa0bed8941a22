"""Bad and odd inputs for pneumolib.imaging: one-line ImageErrors, canonical 8-bit greyscale, one decode path."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import pneumolib.data.imaging as imaging
from pneumolib.data.dataset import DecodedCache, Sample, XRayDataset
from pneumolib.data.imaging import ImageError, load_image, load_resized
from pneumolib.data.resources import Resources
from pneumolib.data.transforms import Preprocessing
from pneumolib.models.checkpoint import Predictor
from pneumolib.studies.catalogue import get_config

N = 40  # native side of the odd-format test images (load_resized(…, 32) then really resizes)


# --- bad files ---------------------------------------------------------------------------
def _valid_jpeg_bytes(size=64) -> bytes:
    a = (np.random.default_rng(0).random((size, size)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _corrupt_png(tmp_path):
    p = tmp_path / "corrupt.png"
    p.write_bytes(np.random.default_rng(1).bytes(2000))
    return p


def _png_header_then_garbage(tmp_path):
    p = tmp_path / "garbage_body.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(2).bytes(2000))
    return p


def _truncated_jpeg(tmp_path):
    b = _valid_jpeg_bytes()
    p = tmp_path / "truncated.jpeg"
    p.write_bytes(b[: len(b) // 2])
    return p


def _zero_bytes(tmp_path):
    p = tmp_path / "zero.jpeg"
    p.write_bytes(b"")
    return p


def _text_as_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("patient list\nperson1 NORMAL\nperson2 PNEUMONIA\n")
    return p


def _missing(tmp_path):
    return tmp_path / "does_not_exist.png"


BAD_FILES = {
    "corrupt_random_bytes": (_corrupt_png, "not an image"),
    "png_header_then_garbage": (_png_header_then_garbage, ""),
    "truncated_jpeg": (_truncated_jpeg, "truncated"),
    "zero_bytes": (_zero_bytes, "empty"),
    "text_named_jpg": (_text_as_jpg, "not an image"),
    "missing": (_missing, "no such file"),
}


@pytest.mark.parametrize("loader", [load_image, lambda p: load_resized(p, 32)], ids=["load_image", "load_resized"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_raises_one_line_image_error_naming_the_file(tmp_path, case, loader):
    make, keyword = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(ImageError) as info:
        loader(path)
    err = info.value
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg
    assert str(path) in msg
    assert err.path == path
    problem = msg[len(str(path)) :].lstrip(": ")
    assert problem and len(problem) < 200
    assert keyword in problem.lower()


def test_image_error_is_a_value_error_with_path_and_problem(tmp_path):
    e = ImageError(tmp_path / "x.png", "broken")
    assert isinstance(e, ValueError)
    assert str(e) == f"{tmp_path / 'x.png'}: broken" and e.problem == "broken"


# --- odd but readable formats ------------------------------------------------------------
def _grad():
    """Distinct grey levels 10..249 over an N x N image."""
    return (10 + (np.arange(N * N) * 239) // (N * N - 1)).astype(np.uint8).reshape(N, N)


def _save(im: Image.Image, path, **kw):
    im.save(path, **kw)
    return path


def _make(kind: str, tmp_path):
    """Write one odd-format file; return (path, expected 8-bit greyscale at native size, tolerance)."""
    g = _grad()
    if kind == "RGBA":
        a = np.zeros((N, N, 4), np.uint8)
        a[..., :3] = g[..., None]
        a[..., 3] = 255
        a[:, N // 2 :, :3] = 250  # bright colour under full transparency must not show through
        a[:, N // 2 :, 3] = 0
        exp = g.copy()
        exp[:, N // 2 :] = 0
        return _save(Image.fromarray(a), tmp_path / "rgba.png"), exp, 0
    if kind == "LA":
        a = np.stack([g, np.full_like(g, 255)], -1)
        a[N // 2 :, :, 0] = 230
        a[N // 2 :, :, 1] = 0
        exp = g.copy()
        exp[N // 2 :] = 0
        return _save(Image.frombytes("LA", (N, N), a.tobytes()), tmp_path / "la.png"), exp, 0
    if kind == "P":
        im = Image.frombytes("P", (N, N), g.tobytes())
        im.putpalette([v for i in range(256) for v in (i, i, i)])
        return _save(im, tmp_path / "palette.png"), g, 0
    if kind == "P+transparency":
        idx = g.copy()
        idx[: N // 4] = 255  # palette entry 255 is white but declared transparent
        im = Image.frombytes("P", (N, N), idx.tobytes())
        im.putpalette([v for i in range(256) for v in (i, i, i)])
        exp = idx.copy()
        exp[: N // 4] = 0
        return _save(im, tmp_path / "palette_trns.png", transparency=255), exp, 0
    if kind == "CMYK":
        a = np.zeros((N, N, 4), np.uint8)
        a[: N // 2, :, 3] = 255  # full black ink on top, no ink (white paper) below
        exp = np.full((N, N), 255, np.uint8)
        exp[: N // 2] = 0
        im = Image.frombytes("CMYK", (N, N), a.tobytes())
        return _save(im, tmp_path / "cmyk.jpg", quality=100), exp, 8
    if kind == "I;16":
        v = np.arange(N * N, dtype=np.int64).reshape(N, N)
        v = np.random.default_rng(3).permutation(v.ravel()).reshape(N, N)  # shuffled, so ordering is a real check
        a = (1000 + 25 * v).astype(np.uint16)  # uses 1000..40975 of the 16-bit range
        exp = np.floor((a - 1000.0) / (25.0 * (N * N - 1)) * 255 + 0.5).astype(np.uint8)
        return _save(Image.fromarray(a), tmp_path / "sixteen.png"), exp, 0
    if kind == "1":
        checker = ((np.indices((N, N)).sum(0) // 4) % 2 * 255).astype(np.uint8)
        return _save(Image.fromarray(checker).convert("1"), tmp_path / "bilevel.png"), checker, 0
    if kind == "RGB":
        a = np.repeat(g[..., None], 3, axis=-1)  # R = G = B
        return _save(Image.fromarray(a), tmp_path / "rgb.png"), g, 0
    raise AssertionError(kind)


ODD_KINDS = ["RGBA", "LA", "P", "P+transparency", "CMYK", "I;16", "1", "RGB"]


@pytest.mark.parametrize("kind", ODD_KINDS)
def test_odd_format_is_converted_to_8bit_greyscale(tmp_path, kind):
    path, expected, tol = _make(kind, tmp_path)
    with Image.open(path) as raw:  # the file really is in the odd mode
        assert raw.mode == kind.split("+")[0]
    im = load_image(path)
    assert im.mode == "L" and im.size == (N, N)
    got = np.asarray(im)
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tol

    small = load_resized(path, 32)
    assert isinstance(small, np.ndarray) and small.dtype == np.uint8 and small.shape == (32, 32)


@pytest.mark.parametrize("kind", ["RGBA", "LA", "P+transparency"])
def test_transparent_pixels_become_black(tmp_path, kind):
    path, _, _ = _make(kind, tmp_path)
    with Image.open(path) as raw:
        alpha = np.asarray(raw.convert("RGBA"))[..., 3]
    got = np.asarray(load_image(path))
    assert (alpha == 0).any()
    assert (got[alpha == 0] == 0).all()
    assert (got[alpha == 255] > 0).all()  # opaque pixels keep their (non-zero) grey values


def test_16bit_used_range_is_stretched_and_order_preserved(tmp_path):
    path, _, _ = _make("I;16", tmp_path)
    with Image.open(path) as raw:
        src = np.asarray(raw).astype(np.int64).ravel()
    got = np.asarray(load_image(path)).astype(np.int64).ravel()
    assert got.min() == 0 and got.max() == 255
    assert got[src.argmin()] == 0 and got[src.argmax()] == 255  # darkest -> 0, brightest -> 255
    order = np.argsort(src)
    assert (np.diff(got[order]) >= 0).all()  # monotone: brighter in, never darker out
    assert len(np.unique(got)) == 256  # 1600 levels spread over the whole 8-bit range


def test_rgb_grey_keeps_its_value_exactly(tmp_path):
    path, g, _ = _make("RGB", tmp_path)
    assert np.array_equal(np.asarray(load_image(path)), g)


def test_8bit_greyscale_is_read_unchanged(tmp_path):
    g = _grad()
    path = _save(Image.fromarray(g), tmp_path / "plain.png")
    assert np.array_equal(np.asarray(load_image(path)), g)
    assert np.array_equal(load_resized(path, N), g)


# --- decompression-bomb guard ------------------------------------------------------------
def test_decompression_bomb_guard_refuses_oversized_image(tmp_path, monkeypatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100)
    big = _save(Image.fromarray(np.zeros((20, 20), np.uint8)), tmp_path / "big.png")
    ok = _save(Image.fromarray(np.eye(10, dtype=np.uint8)), tmp_path / "ok.png")
    for load in (load_image, lambda p: load_resized(p, 32), lambda p: DecodedCache().get(p, 32)):
        with pytest.raises(ImageError) as info:
            load(big)
        msg = str(info.value)
        assert "\n" not in msg and str(big) in msg
        assert "decompression-bomb" in msg and "20x20" in msg
    assert load_image(ok).size == (10, 10)  # exactly at the limit is still accepted


# --- one decode path ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ODD_KINDS)
@pytest.mark.parametrize("size", [32, 64])
def test_odd_formats_converted_same_at_training_and_inference(tmp_path, kind, size):
    path, _, _ = _make(kind, tmp_path)
    inference = load_resized(path, size)
    training = DecodedCache().get(path, size)
    assert training.dtype == np.uint8 and training.shape == (size, size)
    assert np.array_equal(training, inference)

    # the full model inputs: XRayDataset (training) vs Predictor.preprocess (inference)
    pre = Preprocessing(size, 1)
    x_train, _, _ = XRayDataset([Sample(path, 0, "p", "train")], pre, resources=Resources(DecodedCache()))[0]
    predictor = Predictor(torch.nn.Identity(), get_config("baseline"), 0.5, pre)
    x_infer = predictor.preprocess(path)
    assert x_train.shape == x_infer.shape == (1, size, size)
    assert torch.equal(x_train, x_infer)


# regression: DecodedCache.get used to stat the file first and leak a bare FileNotFoundError
def test_missing_file_same_error_at_training_and_inference(tmp_path):
    path = tmp_path / "gone.png"
    with pytest.raises(ImageError):
        load_resized(path, 32)
    with pytest.raises(ImageError):
        DecodedCache().get(path, 32)


def test_colour_census_counts_modes_and_colour_files_whose_channels_differ(tmp_path):
    from pneumolib.data.imaging import colour_census

    grey = np.tile(np.arange(32, dtype=np.uint8), (32, 1))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "equal.png")
    tinted = np.stack([grey] * 3, -1)
    tinted[0, 0, 2] = 255
    Image.fromarray(tinted).save(tmp_path / "tinted.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    rows = {(r["format"], r["mode"]): r for r in colour_census(sorted(tmp_path.iterdir()))}
    assert rows[("PNG", "L")]["files"] == 1 and rows[("PNG", "L")]["channels differ"] is None
    assert rows[("PNG", "RGB")]["files"] == 2 and rows[("PNG", "RGB")]["channels differ"] == 1
    assert rows[("unreadable", "-")]["files"] == 1
