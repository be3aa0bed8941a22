"""DICOM input: LUTs, windows, MONOCHROME1, bit depths, suffix rules, refusals, and DICOM == equivalent PNG."""

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from pydicom import uid  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402

from pneumolib.data.dataset import list_images  # noqa: E402
from pneumolib.data.fixture import fixture_dir  # noqa: E402
from pneumolib.data.imaging import ImageError, is_dicom, load_image  # noqa: E402


def dicom_dataset(pixels, *, bits_stored=None, photometric="MONOCHROME2", signed=False, **attrs) -> Dataset:
    """A single-frame secondary-capture data set holding `pixels` (uint8 or uint16 HxW) uncompressed."""
    pixels = np.asarray(pixels)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, int(signed)
    ds.PixelData = pixels.tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def write_dicom(path, pixels=None, **kw):
    ds = kw.pop("ds", None) or dicom_dataset(pixels, **kw)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(h=16, w=16, lo=0, hi=4095, dtype=np.uint16):
    return np.linspace(lo, hi, h * w).round().astype(dtype).reshape(h, w)


def png16(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)
    return path


def test_monochrome2_8bit_dicom_keeps_its_pixels_like_the_8bit_png(tmp_path):
    px = np.random.default_rng(0).integers(10, 200, (20, 24), dtype=np.uint8)
    got = np.asarray(load_image(write_dicom(tmp_path / "a.dcm", px)))
    assert got.shape == (20, 24) and got.dtype == np.uint8
    Image.fromarray(px).save(tmp_path / "a.png")
    np.testing.assert_array_equal(got, np.asarray(load_image(tmp_path / "a.png")))
    np.testing.assert_array_equal(got, px)


def test_12bit_stored_in_16_with_rescale_matches_the_16bit_png_and_ignores_bits_above_bits_stored(tmp_path):
    stored = ramp(lo=100, hi=3000)
    rng = np.random.default_rng(1)
    # bits 12..15 carry junk (e.g. an old overlay); BitsStored=12 says to ignore them
    with_junk = stored | (rng.integers(0, 16, stored.shape, dtype=np.uint16) << 12)
    dcm = write_dicom(tmp_path / "a.dcm", with_junk, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024)
    got = np.asarray(load_image(dcm), dtype=int)
    want = np.asarray(load_image(png16(tmp_path / "a.png", stored)), dtype=int)
    assert want.min() == 0 and want.max() == 255
    assert np.abs(got - want).max() <= 1


def test_voi_window_is_applied_values_outside_it_map_to_0_and_255(tmp_path):
    stored = ramp(lo=0, hi=4000)
    got = np.asarray(
        load_image(write_dicom(tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter=2000, WindowWidth=1000))
    )
    assert (got[stored < 1490] == 0).all() and (got[stored > 2510] == 255).all()
    mid = np.abs(stored.astype(int) - 2000).argmin()
    assert abs(int(got.flat[mid]) - 128) <= 2
    # without the window the same values are stretched: value ~1000 would be ~64, not 0
    plain = np.asarray(load_image(write_dicom(tmp_path / "p.dcm", stored, bits_stored=12)))
    assert (plain[(stored > 900) & (stored < 1100)] > 40).all()


def test_window_applies_after_rescale_in_output_units(tmp_path):
    stored = ramp(lo=0, hi=4000)
    # slope 1, intercept -1000: a window centred on 1000 in output units is stored value 2000
    got = np.asarray(
        load_image(
            write_dicom(
                tmp_path / "w.dcm",
                stored,
                bits_stored=12,
                RescaleSlope=1,
                RescaleIntercept=-1000,
                WindowCenter=1000,
                WindowWidth=1000,
            )
        )
    )
    assert (got[stored < 1490] == 0).all() and (got[stored > 2510] == 255).all()


def test_voi_lut_sequence_is_applied_and_maps_its_output_range_onto_0_255(tmp_path):
    stored = ramp(lo=0, hi=255, dtype=np.uint8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", [255 - i for i in range(256)])  # LUTData: an inverting table
    ds = dicom_dataset(stored)
    ds.VOILUTSequence = [item]
    got = np.asarray(load_image(write_dicom(tmp_path / "lut.dcm", ds=ds)))
    np.testing.assert_array_equal(got, 255 - stored)


@pytest.mark.parametrize("window", [{}, {"WindowCenter": 1500, "WindowWidth": 2000}], ids=["stretch", "window"])
def test_monochrome1_is_inverted_compared_with_its_monochrome2_twin(tmp_path, window):
    stored = ramp(lo=200, hi=3800)
    m2 = np.asarray(load_image(write_dicom(tmp_path / "m2.dcm", stored, bits_stored=12, **window)), dtype=int)
    m1 = np.asarray(
        load_image(write_dicom(tmp_path / "m1.dcm", stored, bits_stored=12, photometric="MONOCHROME1", **window)),
        dtype=int,
    )
    assert m2.max() - m2.min() > 200
    np.testing.assert_array_equal(m1, 255 - m2)


def test_signed_16bit_values_are_read_as_signed(tmp_path):
    signed = ramp(lo=0, hi=2000).astype(np.int16) - 1000  # -1000..1000, e.g. after a CT-like rescale
    got = np.asarray(load_image(write_dicom(tmp_path / "s.dcm", signed, signed=True)), dtype=int)
    # read as unsigned, the negatives would wrap to ~65000 and become the brightest pixels
    assert got.flat[0] == 0 and got.flat[-1] == 255 and (np.diff(got.ravel()) >= 0).all()


def test_suffixless_dicom_named_explicitly_loads_but_folders_ignore_it(tmp_path):
    px = np.random.default_rng(2).integers(0, 256, (8, 8), dtype=np.uint8)
    f = write_dicom(tmp_path / "IM000001", px)
    assert is_dicom(f)
    np.testing.assert_array_equal(np.asarray(load_image(f)), px)
    images, ignored, _ = list_images(tmp_path)
    assert images == [] and ignored == [f]


def test_dicom_suffixes_in_any_case_are_images_in_folders(tmp_path):
    px = np.zeros((8, 8), np.uint8)
    files = [write_dicom(tmp_path / n, px) for n in ("A.DCM", "b.Dicom", "c.dcm")]
    (tmp_path / "notes.txt").write_text("x")
    images, ignored, _ = list_images(tmp_path)
    assert sorted(images) == sorted(files) and [p.name for p in ignored] == ["notes.txt"]


def test_dcm_without_preamble_is_read_anyway(tmp_path):
    px = np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)
    ds = dicom_dataset(px)
    f = tmp_path / "raw.dcm"
    del ds.file_meta
    ds.save_as(f, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert not is_dicom(f)
    np.testing.assert_array_equal(np.asarray(load_image(f)), px)


def _no_pixels(tmp_path):
    ds = dicom_dataset(np.zeros((4, 4), np.uint8))
    del ds.PixelData
    return write_dicom(tmp_path / "nopix.dcm", ds=ds)


def _multi_frame(tmp_path):
    return write_dicom(tmp_path / "multi.dcm", ds=dicom_dataset(np.zeros((8, 4), np.uint8), NumberOfFrames=2, Rows=4))


def _colour(photometric):
    def make(tmp_path):
        ds = dicom_dataset(
            np.zeros((4, 4, 3), np.uint8), photometric=photometric, SamplesPerPixel=3, PlanarConfiguration=0
        )
        return write_dicom(tmp_path / "colour.dcm", ds=ds)

    return make


def _compressed(tsuid):
    def make(tmp_path):
        ds = dicom_dataset(np.zeros((4, 4), np.uint8))
        ds.file_meta.TransferSyntaxUID = tsuid
        ds.PixelData = encapsulate([b"\xff\xd8 not really compressed data \xff\xd9"])  # dummy frame
        return write_dicom(tmp_path / "comp.dcm", ds=ds)

    return make


def _huge(tmp_path):
    # the header claims 8000 x 8000; the guard must refuse before any decoding
    ds = dicom_dataset(np.zeros((4, 4), np.uint8), Rows=8000, Columns=8000)
    return write_dicom(tmp_path / "huge.dcm", ds=ds)


def _not_dicom(tmp_path):
    f = tmp_path / "text.dcm"
    f.write_text("patient notes, not an image\n" * 20)
    return f


def _truncated(tmp_path):
    f = write_dicom(tmp_path / "trunc.dcm", ramp())
    f.write_bytes(f.read_bytes()[:-200])
    return f


@pytest.mark.parametrize(
    "make, needle",
    [
        (_no_pixels, "no pixel data"),
        (_multi_frame, "multi-frame"),
        (_colour("RGB"), "colour DICOM (PhotometricInterpretation RGB"),
        (_colour("YBR_FULL"), "colour DICOM (PhotometricInterpretation YBR_FULL"),
        (_compressed(uid.JPEGLosslessSV1), "pylibjpeg-libjpeg"),
        (_compressed(uid.JPEGLSLossless), "pyjpegls"),
        (_compressed(uid.JPEG2000Lossless), "pylibjpeg-openjpeg"),
        (_huge, "50,000,000-pixel limit"),
        (_not_dicom, "not a valid DICOM"),
        (_truncated, "DICOM"),
    ],
    ids=[
        "no-pixels",
        "multi-frame",
        "rgb",
        "ybr",
        "jpeg-lossless",
        "jpeg-ls",
        "jpeg2000-dummy",
        "huge",
        "not-dicom",
        "truncated",
    ],
)
def test_unusable_dicoms_are_refused_with_one_line_naming_file_and_problem(tmp_path, make, needle):
    f = make(tmp_path)
    with pytest.raises(ImageError) as e:
        load_image(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: ") and needle in msg and "\n" not in msg


# --- the model sees the same input whether the file is a PNG or the equivalent DICOM ---


@pytest.fixture(scope="module")
def predictor(trained_run_session):
    from pneumolib.models.checkpoint import Predictor

    return Predictor.load(trained_run_session.run_dir / "checkpoint.pt")


@pytest.fixture
def fixture_image():
    path = sorted((fixture_dir() / "test" / "PNEUMONIA").glob("*.png"))[0]
    px = np.asarray(Image.open(path).convert("L"))
    assert px.max() - px.min() > 50
    return path, px


def test_dicom_and_equivalent_png_give_the_same_probability(predictor, fixture_image, tmp_path):
    png8, px = fixture_image
    stored = px.astype(np.uint16) * 16 + 7  # 12-bit values: both files get their used range stretched
    p16 = png16(tmp_path / "16.png", stored)
    pairs = [
        (png8, write_dicom(tmp_path / "8bit.dcm", px)),
        (p16, write_dicom(tmp_path / "12bit.dcm", stored, bits_stored=12)),
        # MONOCHROME1: the same picture stored inverted
        (
            p16,
            write_dicom(
                tmp_path / "mono1.dcm", (4095 - stored).astype(np.uint16), bits_stored=12, photometric="MONOCHROME1"
            ),
        ),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(load_image(a)), np.asarray(load_image(b)))
    flat = [p for pair in pairs for p in pair]
    done, refused = predictor.predict_records(flat)
    assert not refused
    probs = np.array([r.p_pneumonia for r in done]).reshape(-1, 2)
    np.testing.assert_allclose(probs[:, 0], probs[:, 1], rtol=0, atol=1e-6)


def test_predict_with_one_bad_film_among_good_ones_predicts_the_good_ones_and_exits_2_regression(
    trained_run, fixture_image, tmp_path, cli
):
    # regression: one unreadable DICOM in 'predict a.dcm b.dcm c.dcm' printed one error and predicted nothing
    _, px = fixture_image
    good = [write_dicom(tmp_path / f"good{i}.dcm", px) for i in range(2)]
    bad = _multi_frame(tmp_path)
    r = cli("predict", str(trained_run.run_dir / "checkpoint.pt"), str(good[0]), str(bad), str(good[1]))
    assert r.returncode == 2
    lines = r.stdout.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(g) for g in good] and all("p_pneumonia=" in ln for ln in lines)
    # one line for the bad film; notes (the population flag's limit) are said apart, each on a "note:" line
    err = "\n".join(ln for ln in r.stderr.strip().splitlines() if not ln.startswith("note: "))
    assert err.count("\n") == 0 and str(bad) in err and "multi-frame" in err and "Traceback" not in err


def test_cli_predict_reads_a_dicom_and_exits_2_with_one_line_on_a_bad_one(trained_run, fixture_image, tmp_path, cli):
    _, px = fixture_image
    good = write_dicom(tmp_path / "IM0001", px)  # suffix-less: named explicitly, read by content
    ckpt = str(trained_run.run_dir / "checkpoint.pt")
    r = cli("predict", ckpt, str(good))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{good}\t") and "p_pneumonia=" in r.stdout
    bad = _multi_frame(tmp_path)
    r = cli("predict", ckpt, str(bad))
    assert r.returncode == 2
    err = r.stderr.strip()
    assert err.count("\n") == 0 and str(bad) in err and "multi-frame" in err and "Traceback" not in err
