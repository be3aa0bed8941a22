"""Hostile and odd input (the hostile-input issue): each case a tester found is pinned here, driven through the CLI
where a user meets it. Every refusal is one line and exit code 2, never a traceback, a hang, a silent wrong answer,
or lost work. Cases that could exhaust memory or hang run in a subprocess under a memory cap and a timeout."""

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pneumolib.cli import main
from pneumolib.data.fixture import fixture_dir

GiB = 2**30
TORCH_CAP = 6 * GiB  # a CLI run with torch peaks near 4 GiB of address space here; the bugs went far past 6
IMAGING_CAP = 700 * 2**20  # python + numpy + PIL start near 150 MiB; decoding a 7000 x 7000 16-bit film peaks near 440


def _film(label: str = "NORMAL", i: int = 0) -> Path:
    return sorted((fixture_dir() / "test" / label).glob("*.png"))[i]


def cli(capsys, *argv) -> tuple[int, str, str]:
    """main(argv) in this process: (exit code, stdout, stderr); argparse's exits included."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def run_capped(args: list[str], cap: int = TORCH_CAP, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """python -m pneumolib ARGS in a subprocess whose address space is capped (an allocation past it fails)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return subprocess.run(
        [sys.executable, "-m", "pneumolib", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, "PNEUMOLIB_CACHE_DIR": "off"},
        **kw,
    )


# --- 1. no code runs from a run folder ------------------------------------------------------------------------------
class _Payload:
    """Unpickling this object runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_no_code_runs_from_any_cache_a_run_folder_can_hold(run_copy, tmp_path, capsys):
    """Regression: experiment.cached_explanation called pickle.loads on RUN_DIR/explanation.pkl, so reusing a
    shared or downloaded run folder ran whatever that file carried."""
    import pickle

    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"key": None, "explanation": _Payload(marker)})
    (run_copy / "explanation.pkl").write_bytes(payload)  # the old cache's name
    with open(run_copy / "explanation.npz", "wb") as f:  # the new one's, as an NPZ holding a pickled object
        np.savez(f, __meta__=np.array([_Payload(marker)], dtype=object))
    for name in ("last_epoch.pt", "last.pt"):  # torch files that carry code
        torch.save({"state_dict": _Payload(marker), "epoch": 1}, run_copy / name)
    (run_copy / "stress.json").write_bytes(payload)  # a pickle where JSON belongs
    rc, out, err = cli(capsys, "train", "04", "--out", run_copy, "--cam-per-class", "1")
    assert not marker.exists(), "a file in the run folder ran code"
    assert "Traceback" not in err


def test_grad_cam_results_round_trip_without_pickle(trained_run, tmp_path):
    from pneumolib.analysis.cam import Explanation

    expl = trained_run.explanation
    path = expl.save(tmp_path / "e.npz", {"checkpoint": "x", "seed": 0})
    back, key = Explanation.load(path)
    assert key == {"checkpoint": "x", "seed": 0}
    assert [s.path for s in back.samples] == [s.path for s in expl.samples]
    np.testing.assert_array_equal(back.cams, expl.cams)
    assert json.dumps(back.summary(), default=str) == json.dumps(expl.summary(), default=str)
    assert json.dumps(back.report(per_image=False), default=str) == json.dumps(
        expl.report(per_image=False), default=str
    )
    lite, _ = Explanation.load(path, pixels=False)  # the lifts' readers (verdict_films.lifts) skip the pixels
    assert lite.images.size == lite.cams.size == lite.masks.size == 0
    np.testing.assert_array_equal(lite.lung_lift, back.lung_lift)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not a Grad-CAM results file"):
        Explanation.load(tmp_path / "bad.npz")


# --- 2. memory and hangs before any check ----------------------------------------------------------------------------
def test_predict_refuses_dev_zero_before_reading_it(trained_run):
    """Regression: the decode cache hashed /dev/zero with read_bytes() before any check (23 GB, then killed)."""
    r = run_capped(["predict", trained_run.run_dir / "checkpoint.pt", _film(), "/dev/zero"])
    assert r.returncode == 2, r.stderr[-2000:]
    assert str(_film()) in r.stdout  # the good film is predicted
    assert_one_line_error(2, r.stderr, "/dev/zero", "device")


def test_predict_refuses_a_fifo_named_like_a_film_without_hanging(trained_run, tmp_path):
    """Regression: a FIFO named .jpeg hung forever and the good film was never printed."""
    fifo = tmp_path / "film.jpeg"
    os.mkfifo(fifo)
    r = run_capped(["predict", trained_run.run_dir / "checkpoint.pt", _film(), fifo], timeout=300)
    assert str(_film()) in r.stdout
    assert_one_line_error(r.returncode, r.stderr, str(fifo), "FIFO")


def test_a_huge_sparse_file_is_refused_before_it_is_read(tmp_path):
    """Regression: a 2 GB sparse .jpeg cost 2.9 GB before it was refused."""
    big = tmp_path / "big.jpeg"
    with open(big, "wb") as f:
        f.truncate(2 * GiB)
    code = (
        "import sys; from pneumolib.data.dataset import DecodedCache; from pneumolib.data.imaging import ImageError\n"
        "c = DecodedCache(sys.argv[2])\n"
        "try:\n    c.get(sys.argv[1], 64)\nexcept ImageError as e:\n    print(e); sys.exit(2)\n"
    )
    cap = 4 * GiB + GiB // 2  # importing torch takes about 3.2 GiB of address space; reading the file took 2 more
    r = subprocess.run(
        [sys.executable, "-c", code, str(big), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)),
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "over the 512 MB limit" in r.stdout


def _decode_capped(path: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys; from pneumolib.data.imaging import ImageError, load_image\n"
        "try:\n    im = load_image(sys.argv[1]); print(im.mode, im.size, im.getextrema())\n"
        "except ImageError as e:\n    print(e); sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (IMAGING_CAP,) * 2),
    )


def test_a_large_16_bit_png_decodes_in_its_own_dtype(tmp_path):
    """Regression: a 7000 x 7000 16-bit PNG was converted to float64 whole (about 0.8 GB with temporaries)."""
    ramp = (np.arange(7000 * 7000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(7000, 7000)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    r = _decode_capped(tmp_path / "ramp16.png")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("L (7000, 7000) (0, 255)")


def test_an_all_zero_16_bit_png_is_refused_as_blank_within_the_cap(tmp_path):
    Image.fromarray(np.zeros((7000, 7000), np.uint16)).save(tmp_path / "zero16.png")
    r = _decode_capped(tmp_path / "zero16.png")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "carries no picture" in r.stdout


def test_stretch_in_blocks_gives_exactly_the_whole_image_arithmetic():
    from pneumolib.data.imaging import stretch_to_uint8

    a = np.random.default_rng(0).integers(0, 4096, (700, 300)).astype(np.uint16)
    whole = (((a.astype(np.float64) - a.min()) / (a.max() - a.min()) * 255.0) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(stretch_to_uint8(a), whole)


# --- 3. crafted checkpoints ------------------------------------------------------------------------------------------
def _crafted(trained_run, tmp_path, name: str, change) -> Path:
    state = torch.load(trained_run.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    change(state)
    out = tmp_path / f"{name}.pt"
    torch.save(state, out)
    return out


def test_an_ensemble_of_60_members_is_refused_before_any_is_built(trained_run, tmp_path):
    """Regression: ensemble.members 60 built 60 ResNets (about 3 GB) before the weights were checked."""
    ckpt = _crafted(trained_run, tmp_path, "sixty", lambda s: s.update(ensemble={"members": 60, "temperature": 1.0}))
    r = run_capped(["predict", ckpt, _film()])
    assert_one_line_error(r.returncode, r.stderr, "ensemble.members", "1 to 16")


@pytest.mark.parametrize(
    "name, change, needle",
    [
        ("huge_size", lambda s: s["preprocessing"].update(image_size=20000), "image_size=20000"),
        ("nan_threshold", lambda s: s.update(threshold=float("nan")), "threshold=nan"),
        ("text_threshold", lambda s: s.update(threshold="abc"), "threshold='abc'"),
        ("high_threshold", lambda s: s.update(threshold=1.5), "threshold=1.5"),
        ("extra_key", lambda s: s["preprocessing"].update(colour="blue"), "unknown key(s) colour"),
        ("string_pre", lambda s: s.update(preprocessing="64px"), "preprocessing='64px'"),
        ("unknown_model", lambda s: s["config"].update(model="vit_huge"), "vit_huge"),
        ("no_state_dict", lambda s: s.pop("state_dict"), "state_dict"),
    ],
)
def test_malformed_checkpoint_fields_are_one_line(trained_run, tmp_path, capsys, name, change, needle):
    """Regression: a NaN threshold labelled p = 0.97 NORMAL (exit 0); five kinds of malformed field gave tracebacks."""
    ckpt = _crafted(trained_run, tmp_path, name, change)
    rc, out, err = cli(capsys, "predict", ckpt, _film())
    assert_one_line_error(rc, err, str(ckpt), needle)
    assert out == ""


def test_a_text_file_given_as_a_checkpoint_says_so(tmp_path, capsys):
    """Regression: 'KeyError: 544502645'."""
    txt = tmp_path / "notes.pt"
    txt.write_text("these are my notes, not weights\n")
    rc, _, err = cli(capsys, "predict", txt, _film())
    assert_one_line_error(rc, err, str(txt), "not a torch checkpoint (a text file")


def test_predict_accepts_a_run_folder(trained_run, capsys):
    """Regression: 'predict RUN_DIR' said 'checkpoint not found' though the folder exists."""
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film())
    assert rc == 0, err
    assert str(_film()) in out
    empty = trained_run.run_dir.parent / "empty-run-folder"
    empty.mkdir(exist_ok=True)
    rc, _, err = cli(capsys, "predict", empty, _film())
    assert_one_line_error(rc, err, "a folder without checkpoint.pt")


# --- 4. silent wrong answers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1.5", "-0.2", "nan", "inf", "abc"])
def test_evaluate_refuses_a_threshold_outside_0_1(trained_run, capsys, value):
    rc, out, err = cli(
        capsys, "evaluate", trained_run.run_dir / "checkpoint.pt", "--data-dir", fixture_dir(), "--threshold", value
    )
    assert_one_line_error(rc, err, "--threshold")
    assert out == ""


def _dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for k, v in attrs.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(n: int = 96) -> np.ndarray:
    return (np.add.outer(np.arange(n), np.arange(n)) * 20).astype(np.uint16)


def test_a_dicom_whose_rescale_is_nan_is_refused(trained_run, tmp_path, capsys):
    """Regression: RescaleSlope NaN decoded to a black film, predicted PNEUMONIA 0.82 with exit 0."""
    f = _dicom(tmp_path / "nan.dcm", _ramp(), RescaleSlope="NaN", RescaleIntercept="0")
    rc, out, err = cli(capsys, "predict", trained_run.run_dir / "checkpoint.pt", f)
    assert_one_line_error(rc, err, str(f), "non-finite")
    assert str(f) not in out


def test_a_dicom_without_photometric_interpretation_is_not_called_colour(tmp_path):
    from pneumolib.data.imaging import ImageError, load_image

    f = _dicom(tmp_path / "nopi.dcm", _ramp(), PhotometricInterpretation=None)
    with pytest.raises(ImageError, match="no PhotometricInterpretation") as e:
        load_image(f)
    assert "colour" not in str(e.value)


@pytest.mark.parametrize("value", [0, 255, 128])
def test_blank_and_constant_films_are_refused(trained_run, tmp_path, capsys, value):
    f = tmp_path / f"const{value}.png"
    Image.fromarray(np.full((200, 180), value, np.uint8)).save(f)
    rc, out, err = cli(capsys, "predict", trained_run.run_dir / "checkpoint.pt", f, _film())
    assert_one_line_error(rc, err, str(f), "carries no picture")
    assert str(_film()) in out and str(f) not in out


def test_the_lung_check_refuses_an_empty_or_uniform_film():
    from pneumolib.data.lungs import LungSegmenter

    seg = LungSegmenter.load()
    boxes = [
        b
        for b, _ in seg.lung_fields(
            [np.zeros((300, 300), np.uint8), np.full((200, 240), 90, np.uint8), np.zeros((0, 0), np.uint8)], 0.08
        )
    ]
    assert [b.problem.split(":")[0] for b in boxes] == ["lungs not found (uniform film (every pixel 0)"] * 1 + [
        "lungs not found (uniform film (every pixel 90)",
        "lungs not found (empty film (no pixels))",
    ]
    assert all((b.y0, b.y1, b.x0, b.x1) == (0.0, 1.0, 0.0, 1.0) for b in boxes)


def test_overlays_of_two_films_with_the_same_name_are_two_files(trained_run, tmp_path, capsys):
    """Regression: --cam-dir overlays were named by the film's base name: two films of the same name, one overlay."""
    a, b = tmp_path / "a" / "film.png", tmp_path / "b" / "film.png"
    for dst, src in ((a, _film("NORMAL")), (b, _film("PNEUMONIA"))):
        dst.parent.mkdir()
        shutil.copy(src, dst)
    rc, out, err = cli(capsys, "predict", trained_run.run_dir / "checkpoint.pt", a, b, "--cam-dir", tmp_path / "cams")
    assert rc == 0, err
    assert len(list((tmp_path / "cams").glob("film*_cam.png"))) == 2


# --- 5. lost work ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, kind):
    """Regression: --out was checked only after the first epoch of training."""
    f = tmp_path / "a-file"
    f.write_text("x")
    out = f if kind == "file" else f / "run"
    rc, stdout, err = cli(capsys, "train", "baseline", "--out", out, "--profile", "smoke")
    assert_one_line_error(rc, err, str(f))
    assert "epoch" not in err and f.read_text() == "x"


def test_retraining_into_a_folder_of_another_training_is_refused_then_starts_clean(run_copy, capsys):
    """Regression: another training replaced the folder's checkpoint with an INFO line and kept the old model's
    evaluations, which the new model card then listed as its own."""
    assert cli(capsys, "evaluate", run_copy, "--data-dir", fixture_dir())[0] == 0
    assert list((run_copy / "evaluations").glob("*.json"))
    before = (run_copy / "checkpoint.pt").read_bytes()
    rc, _, err = cli(capsys, "train", "baseline", "--out", run_copy, "--profile", "smoke", "--cam-per-class", "0")
    assert_one_line_error(rc, err, "holds another training", "--retrain")
    assert (run_copy / "checkpoint.pt").read_bytes() == before
    rc, _, err = cli(
        capsys, "train", "baseline", "--out", run_copy, "--profile", "smoke", "--cam-per-class", "0", "--retrain"
    )
    assert rc == 0, err
    assert not (run_copy / "evaluations").exists()
    assert "None recorded" in (run_copy / "MODEL_CARD.md").read_text()
    assert json.loads((run_copy / "metrics.json").read_text())["experiment"] == "baseline"


def test_evaluate_json_into_an_unwritable_place_is_refused_before_the_work(trained_run, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    rc, out, err = cli(capsys, "evaluate", trained_run.run_dir, "--data-dir", fixture_dir(), "--json", f / "m.json")
    assert_one_line_error(rc, err, str(f))
    assert out == ""


def test_predict_cam_dir_into_an_unwritable_place_is_refused_before_the_work(trained_run, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film(), "--cam-dir", f)
    assert_one_line_error(rc, err, str(f), "not a folder")
    assert out == ""


def test_predict_prints_refused_files_before_the_overlays(trained_run, tmp_path, capsys, monkeypatch):
    """Regression: a crash while writing overlays lost the refused-file lines."""
    import pneumolib.analysis.cam as cam

    def broken(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cams" / "x_cam.png"))

    monkeypatch.setattr(cam, "save_overlays", broken)
    missing = tmp_path / "missing.png"
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film(), missing, "--cam-dir", tmp_path / "cams")
    assert rc == 2 and "Traceback" not in err
    assert err.index(str(missing)) < err.index("Permission denied")


# --- 6. tracebacks instead of one line -------------------------------------------------------------------------------
def _copy_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(fixture_dir(), root, ignore=shutil.ignore_patterns("masks", "lesions"))
    return root


def test_a_file_name_that_is_not_utf8_is_refused_with_a_line_not_a_crash(tmp_path):
    """Regression: a non-UTF-8 file name in a data folder made 'train' unusable (fingerprint encoded it)."""
    from pneumolib.data.dataset import discover, fingerprint

    root = _copy_fixture(tmp_path)
    odd = os.fsencode(root / "train" / "NORMAL") + b"/caf\xe9.png"
    shutil.copy(_film(), odd)
    data = discover(root)
    fingerprint(data)
    assert any("not valid UTF-8" in str(e) for e in data.bad_files)
    assert all(str(s.path).isprintable() for v in data.splits.values() for s in v)


def test_a_manifest_path_component_too_long_is_a_skipped_row(tmp_path):
    """Regression: a path component over 255 characters (ENAMETOOLONG) killed the run."""
    from pneumolib.data.dataset import Manifest, read_manifest

    root = fixture_dir()
    rows = ["path,label,patient,split"]
    for split in ("train", "val", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            for p in sorted((root / split / label).glob("*.png")):
                rows.append(f"{p.relative_to(root)},{label},{p.stem},{split}")
    rows.append(f"{'x' * 300}/film.png,NORMAL,long,train")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    data = read_manifest(Manifest(tmp_path / "m.csv", root))
    assert any("x" * 300 in str(e) and "File name too long" in str(e) for e in data.bad_files)


@pytest.mark.parametrize(
    "option, value",
    [
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--epochs", "abc"),
        ("--batch-size", "0"),
        ("--image-size", "8"),
        ("--image-size", "20000"),
        ("--seed", "-3"),
        ("--workers", "-1"),
    ],
)
def test_invalid_numeric_options_are_one_line(tmp_path, capsys, option, value):
    rc, _, err = cli(capsys, "train", "baseline", "--out", tmp_path / "run", option, value)
    assert_one_line_error(rc, err, option)
    assert not (tmp_path / "run").exists()


def test_card_on_a_metrics_file_that_is_not_a_mapping_is_one_line(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("[1, 2, 3]")
    rc, _, err = cli(capsys, "card", tmp_path)
    assert_one_line_error(rc, err, "metrics.json", "not a mapping")


def test_an_os_error_on_an_output_is_one_line(trained_run, tmp_path, capsys, monkeypatch):
    import pneumolib.studies.card as card

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "evaluations"))

    monkeypatch.setattr(card, "write_model_card", denied)
    rc, _, err = cli(capsys, "card", trained_run.run_dir)
    assert_one_line_error(rc, err, "Permission denied", str(tmp_path))


# --- 7. clearer messages ---------------------------------------------------------------------------------------------
def test_a_folder_or_fifo_in_a_manifest_is_named_as_such(tmp_path):
    """Regression: a directory or FIFO listed in a manifest was reported as 'no such file'."""
    from pneumolib.data.dataset import Manifest, read_manifest

    root = _copy_fixture(tmp_path)
    (root / "train" / "NORMAL" / "folder.png").mkdir()
    os.mkfifo(root / "train" / "NORMAL" / "pipe.png")
    rows = [
        "path,label,patient,split",
        "train/NORMAL/folder.png,NORMAL,a,train",
        "train/NORMAL/pipe.png,NORMAL,b,train",
    ]
    for split in ("train", "val", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            for p in sorted(q for q in (root / split / label).glob("*.png") if q.is_file()):
                rows.append(f"{p.relative_to(root)},{label},{p.stem},{split}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    bad = {e.path.name: e.problem for e in read_manifest(Manifest(tmp_path / "m.csv", root)).bad_files}
    assert "is a folder" in bad["folder.png"] and "FIFO" in bad["pipe.png"]


def test_dangling_links_and_fifos_in_a_data_folder_are_named_not_dropped(tmp_path):
    from pneumolib.data.dataset import discover

    root = _copy_fixture(tmp_path)
    (root / "train" / "NORMAL" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(root / "train" / "PNEUMONIA" / "pipe.jpeg")
    bad = {e.path.name: e.problem for e in discover(root).bad_files}
    assert "does not exist" in bad["gone.png"] and "FIFO" in bad["pipe.jpeg"]


def test_many_duplicate_manifest_rows_are_summarised(run_copy, tmp_path, capsys):
    """Regression: 100,000 duplicate rows printed 100,000 lines and went into metrics.json (13 MB)."""
    root = fixture_dir()
    films = [
        p
        for split in ("train", "val", "test")
        for label in ("NORMAL", "PNEUMONIA")
        for p in sorted((root / split / label).glob("*.png"))
    ]
    rows = ["path,label,patient,split"] + [
        f"{p.relative_to(root)},{p.parent.name},{p.stem},{p.parent.parent.name}" for p in films
    ]
    rows += [f"{films[-1].relative_to(root)},PNEUMONIA,{films[-1].stem},test"] * 20_000
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    rc, out, err = cli(capsys, "evaluate", run_copy, "--data-csv", tmp_path / "m.csv", "--image-root", root)
    assert rc == 0, err[-2000:]
    assert len(err.splitlines()) < 40
    assert "and 19,995 more" in err
