"""Hostile input, second round (the hostile-input follow-up issue): each case a tester found, driven where the user
meets it (the CLI, or the API). No write outside the output, no output over an input, one writer per run folder,
films read as every viewer shows them, memory bounded by what is decoded, records read defensively, and every
refusal one line with exit code 2 (130 for Ctrl-C), never a traceback."""

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hostile import _film, assert_one_line_error, cli, run_capped

from pneumolib.data.fixture import fixture_dir


def _victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_text("the user's own file\n")
    return v


def _unchanged(v: Path) -> bool:
    return v.read_text() == "the user's own file\n"


# --- writes outside the output folder -------------------------------------------------------------------------------
def test_explain_never_writes_through_a_link_planted_in_gradcam(run_copy, tmp_path, capsys):
    """Regression: matplotlib's savefig followed a link planted in RUN/gradcam/ and overwrote its target (rc 0)."""
    victim = _victim(tmp_path)
    (run_copy / "gradcam").mkdir()
    (run_copy / "gradcam" / "hirescam_test_pneumonia_grid.png").symlink_to(victim)
    rc, _, err = cli(capsys, "explain", run_copy, "--data-dir", fixture_dir(), "--n", "2", "--sanity-n", "0")
    assert_one_line_error(rc, err, "symbolic link")
    assert _unchanged(victim)


def test_a_linked_gradcam_folder_is_refused_before_the_work(run_copy, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_copy / "gradcam").symlink_to(elsewhere)
    rc, _, err = cli(capsys, "explain", run_copy, "--data-dir", fixture_dir(), "--n", "2", "--sanity-n", "0")
    assert_one_line_error(rc, err, "gradcam", "symbolic link")
    assert not list(elsewhere.iterdir())


def test_a_linked_evaluations_folder_receives_no_record(run_copy, tmp_path, capsys):
    """Regression: a symlinked RUN/evaluations sent every evaluation record elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_copy / "evaluations").symlink_to(elsewhere)
    rc, out, err = cli(capsys, "evaluate", run_copy, "--data-dir", fixture_dir())
    assert_one_line_error(rc, err, "evaluations", "symbolic link")
    assert not list(elsewhere.iterdir()) and "accuracy" not in out


def test_lungs_segment_never_writes_through_a_planted_link(tmp_path, capsys):
    victim = _victim(tmp_path)
    out = tmp_path / "masks"
    out.mkdir()
    (out / f"{_film().stem}_lungs.png").symlink_to(victim)
    rc, _, err = cli(capsys, "lungs", "segment", _film(), "--out", out)
    assert_one_line_error(rc, err, "symbolic link")
    assert _unchanged(victim)


def test_predict_cam_dir_never_writes_through_a_planted_link(trained_run, tmp_path, capsys):
    victim = _victim(tmp_path)
    cams = tmp_path / "cams"
    cams.mkdir()
    (cams / f"{_film().stem}_cam.png").symlink_to(victim)
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film(), "--cam-dir", cams)
    assert_one_line_error(rc, err, "symbolic link")
    assert _unchanged(victim) and str(_film()) in out  # the prediction itself was printed first


def test_the_one_writer_replaces_nothing_through_a_link_and_leaves_no_temp_file(tmp_path):
    from pneumolib.core.io import OutputError, save_json

    victim = _victim(tmp_path)
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        save_json({"a": 1}, link)
    assert _unchanged(victim) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]  # no temp file left


# --- outputs over inputs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option, target",
    [
        ("--json", "checkpoint.pt"),
        ("--scores", "metrics.json"),
        ("--json", "scores_test.csv"),
        ("--save-adapted", "checkpoint.pt"),
    ],
)
def test_evaluate_never_writes_over_its_run_records(run_copy, capsys, option, target):
    """Regression: 'evaluate RUN --json RUN/checkpoint.pt' exited 0 and the 46 MB checkpoint became 5 KB of JSON;
    --scores RUN/metrics.json destroyed the training record."""
    before = (run_copy / target).read_bytes()
    extra = ["--adapt", "bn"] if option == "--save-adapted" else []
    rc, out, err = cli(
        capsys, "evaluate", run_copy / "checkpoint.pt", "--data-dir", fixture_dir(), option, run_copy / target, *extra
    )
    assert_one_line_error(rc, err, target, "input of this command")
    assert (run_copy / target).read_bytes() == before and "accuracy" not in out


def test_evaluate_never_writes_over_its_manifest(run_copy, tmp_path, capsys):
    """Regression: '--json m.csv' destroyed the --data-csv manifest."""
    root = fixture_dir()
    rows = ["path,label,patient,split"] + [
        f"{p.relative_to(root)},{p.parent.name},{p.stem},test" for p in sorted(root.glob("test/*/*.png"))
    ]
    m = tmp_path / "m.csv"
    m.write_text("\n".join(rows) + "\n")
    before = m.read_bytes()
    rc, _, err = cli(capsys, "evaluate", run_copy, "--data-csv", m, "--image-root", root, "--json", m)
    assert_one_line_error(rc, err, "m.csv", "input of this command")
    assert m.read_bytes() == before


def test_outputs_never_go_into_the_data_folder(run_copy, capsys):
    rc, _, err = cli(
        capsys, "evaluate", run_copy, "--data-dir", fixture_dir(), "--json", fixture_dir() / "test" / "scores.json"
    )
    assert_one_line_error(rc, err, "data folder")
    assert not (fixture_dir() / "test" / "scores.json").exists()


def test_predict_cam_dir_among_the_films_is_refused_before_the_work(trained_run, tmp_path, capsys):
    """Regression: 'predict --cam-dir DATA/test/NORMAL' filed overlays as test films, a PNEUMONIA one as NORMAL."""
    data = tmp_path / "data"
    shutil.copytree(fixture_dir() / "test", data / "test")
    films = sorted((data / "test" / "NORMAL").glob("*.png"))[:2]
    before = sorted(p.name for p in (data / "test" / "NORMAL").iterdir())
    for cam_dir in (data / "test" / "NORMAL", data / "test" / "PNEUMONIA"):
        rc, out, err = cli(capsys, "predict", trained_run.run_dir, *films, "--cam-dir", cam_dir)
        assert_one_line_error(rc, err, str(cam_dir))
        assert out == ""
    assert sorted(p.name for p in (data / "test" / "NORMAL").iterdir()) == before
    assert not list((data / "test" / "PNEUMONIA").glob("*_cam.png"))


@pytest.mark.parametrize("retrain", [False, True])
def test_train_never_overwrites_a_users_own_config_and_card(tmp_path, capsys, retrain):
    """Regression: 'train --out DIR' overwrote the user's own config.json and MODEL_CARD.md silently (the guard
    looked only for checkpoint.pt)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}\n')
    (out / "MODEL_CARD.md").write_text("# my notes\n")
    rc, _, err = cli(
        capsys,
        "train",
        "baseline",
        "--out",
        out,
        "--profile",
        "smoke",
        "--cam-per-class",
        "0",
        *(["--retrain"] if retrain else []),
    )
    assert_one_line_error(rc, err, "config.json", "MODEL_CARD.md", "did not write")
    assert (out / "config.json").read_text() == '{"my": "settings"}\n'
    assert (out / "MODEL_CARD.md").read_text() == "# my notes\n" and not (out / "checkpoint.pt").exists()


def test_a_folder_of_other_files_needs_retrain_which_keeps_them(tmp_path, capsys):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    rc, _, err = cli(capsys, "train", "baseline", "--out", out, "--profile", "smoke", "--cam-per-class", "0")
    assert_one_line_error(rc, err, "notes.txt", "--retrain")
    rc, _, err = cli(
        capsys, "train", "baseline", "--out", out, "--profile", "smoke", "--cam-per-class", "0", "--retrain"
    )
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "keep me\n" and (out / "checkpoint.pt").is_file()


def test_a_second_writer_of_a_run_folder_is_refused_and_readers_are_not(run_copy, capsys):
    """Regression: two 'train --out DIR' at once both exited 0 and printed 'wrote DIR/checkpoint.pt': one training
    was lost. The first holds the folder's lock (the same fcntl lock any pneumolib process takes)."""
    from pneumolib.core.runs import writer_lock

    before = (run_copy / "checkpoint.pt").read_bytes()
    with writer_lock(run_copy):
        rc, _, err = cli(capsys, "train", "04", "--out", run_copy, "--retrain", "--profile", "smoke")
        assert_one_line_error(rc, err, "another pneumolib process", str(os.getpid()))
        rc, out, err = cli(capsys, "predict", run_copy, _film())  # a reader is not blocked
        assert rc == 0 and str(_film()) in out, err
    assert (run_copy / "checkpoint.pt").read_bytes() == before


def test_the_lock_of_a_finished_writer_is_free_again(tmp_path):
    from pneumolib.core.io import OutputError
    from pneumolib.core.runs import writer_lock

    with writer_lock(tmp_path):
        with pytest.raises(OutputError, match="another pneumolib process"):
            with writer_lock(tmp_path):
                pass
    with writer_lock(tmp_path):  # released when the first writer ended
        pass


def _worker(started, gate) -> None:
    started.set()
    gate.wait(60)


def test_regression_a_forked_worker_does_not_keep_the_run_folders_lock(tmp_path):
    """Regression (CI): after SIGKILL of a torchrun training, 'train --resume' was refused with 'another pneumolib
    process is writing' while the trainer's DataLoader workers, forked with the lock's open file, were still
    exiting. A forked child drops its copy at once, so only the trainer itself holds the folder."""
    import multiprocessing

    from pneumolib.core.runs import writer_lock

    ctx = multiprocessing.get_context("fork")
    started, gate = ctx.Event(), ctx.Event()
    with writer_lock(tmp_path):
        child = ctx.Process(target=_worker, args=(started, gate))  # a worker alive after its parent let go
        child.start()
        assert started.wait(60)
    try:
        with writer_lock(tmp_path):  # free although the child still runs
            assert child.is_alive()
    finally:
        gate.set()
        child.join(30)


# --- silent wrong answers ---------------------------------------------------------------------------------------------
def _with_exif_orientation(src: Path, dst: Path, orientation: int) -> Path:
    """SRC's film stored turned (as a camera or scanner stores it) with the EXIF tag that makes every viewer show it
    upright again."""
    film = Image.open(src).convert("L")
    stored = {
        6: film.transpose(Image.Transpose.ROTATE_90),
        8: film.transpose(Image.Transpose.ROTATE_270),
        3: film.transpose(Image.Transpose.ROTATE_180),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(dst, exif=exif.tobytes())
    return dst


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_film_with_exif_orientation_is_read_as_viewers_show_it(trained_run, tmp_path, capsys, orientation):
    """Regression: EXIF orientation was ignored; a film every viewer shows upright was read sideways and its label
    flipped (NORMAL 0.38 -> PNEUMONIA 0.52)."""
    from pneumolib.data.imaging import load_image

    turned = _with_exif_orientation(_film(), tmp_path / "turned.png", orientation)
    assert np.array_equal(np.asarray(load_image(turned)), np.asarray(load_image(_film())))
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film(), turned)
    assert rc == 0, err
    plain, rotated = out.splitlines()[:2]
    assert plain.split("\t")[2] == rotated.split("\t")[2]  # the same P(PNEUMONIA)
    assert f"exif_orientation={orientation} (applied)" in rotated and "exif" not in plain


@pytest.mark.parametrize("scale", [257, 256, 1])
def test_a_16_bit_png_of_8_bit_values_is_that_film_exactly(tmp_path, scale):
    """Regression: a 16-bit PNG holding exactly an 8-bit film's pixels (x 257) was range-stretched into another
    image. The rule: multiples of 257 are divided by 257, of 256 shifted by 8, values <= 255 kept."""
    from pneumolib.data.imaging import load_image

    film = np.asarray(Image.open(_film()).convert("L"))
    film = np.clip(film, 20, 230)  # not the full range: a stretch would change it
    Image.fromarray(film.astype(np.uint16) * scale).save(tmp_path / "f16.png")
    assert Image.open(tmp_path / "f16.png").mode.startswith("I")
    assert np.array_equal(np.asarray(load_image(tmp_path / "f16.png")), film)


def test_true_16_bit_data_are_still_stretched():
    from pneumolib.data.imaging import sixteen_to_uint8

    a = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16) + 3  # a 12-bit detector's range
    out = sixteen_to_uint8(a)
    assert out.min() == 0 and out.max() == 255


def test_a_planted_decode_cache_entry_is_not_trusted(trained_run, tmp_path, capsys, monkeypatch):
    """Regression: an entry planted in a shared PNEUMOLIB_CACHE_DIR was trusted: a planted array changed a film's
    answer. An entry must name the file's digest and view and carry this user's seal."""
    cache = tmp_path / "shared-cache"
    monkeypatch.setenv("PNEUMOLIB_CACHE_DIR", str(cache))
    rc, clean, err = cli(capsys, "predict", trained_run.run_dir, _film())
    assert rc == 0, err
    entry = next(cache.rglob("*.npz"))
    with np.load(entry) as z:
        parts = {k: z[k] for k in z.files}
    parts["image"] = np.full_like(parts["image"], 255)  # a white film where the real one was
    parts["image"][:8] = 0
    with open(entry, "wb") as f:
        np.savez(f, **parts)  # the same digest and view, the old seal: the seal no longer fits
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film())
    assert rc == 0 and out == clean, err
    forged = json.loads(str(parts["meta"]))
    forged["seal"] = "0" * 64
    parts["meta"] = np.array(json.dumps(forged))
    with open(entry, "wb") as f:
        np.savez(f, **parts)
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film())
    assert rc == 0 and out == clean, err


def test_another_users_key_file_is_not_trusted(tmp_path):
    from pneumolib.data.dataset import DISK_KEY, DecodedCache

    cache = tmp_path / "c"
    cache.mkdir()
    key = cache / f"{DISK_KEY}-{os.getuid()}"
    key.write_bytes(b"k" * 32)
    key.chmod(0o644)  # readable by others: anyone could seal with it
    assert DecodedCache(cache)._secret() is None


@pytest.mark.parametrize(
    "name, change, needle",
    [
        ("nan_ood_threshold", lambda o: o.update(threshold=float("nan")), "extra.ood"),
        ("text_ood_threshold", lambda o: o.update(threshold="far"), "extra.ood"),
        ("short_mean", lambda o: o.update(mean=o["mean"][:3]), "extra.ood"),
        ("nan_precision", lambda o: o["precision"].fill_(float("nan")), "extra.ood"),
        ("nan_population_threshold", lambda o: o["population"].update(threshold=float("nan")), "population"),
        ("wrong_population_shape", lambda o: o["population"]["means"].pop(), "population"),
    ],
)
def test_a_malformed_ood_reference_is_refused_as_the_checkpoint_loads(
    trained_run, tmp_path, capsys, name, change, needle
):
    """Regression: a checkpoint whose extra.ood threshold is NaN never flagged anything; extra.ood was not checked."""
    state = torch.load(trained_run.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    change(state["extra"]["ood"])
    ckpt = tmp_path / f"{name}.pt"
    torch.save(state, ckpt)
    rc, out, err = cli(capsys, "predict", ckpt, _film())
    assert_one_line_error(rc, err, str(ckpt), needle)
    assert out == ""


def test_the_api_takes_one_film_by_name_and_refuses_inputs_of_another_size(trained_run):
    """Regression: predict(pred, "film.png") iterated the string's characters (0 records, 14 refusals), and
    predict_proba accepted a 7 x 9 input."""
    import pneumolib

    records, refused = pneumolib.predict(trained_run.predictor, str(_film()))
    assert len(records) == 1 and not refused and records[0].path == str(_film())
    records, refused = pneumolib.predict(trained_run.predictor, _film())
    assert len(records) == 1 and not refused
    c = trained_run.predictor.preprocessing.in_channels
    with pytest.raises(ValueError, match="7 x 9"):
        trained_run.predictor.predict_proba(torch.zeros(1, c, 7, 9))


# this process's own peak resident memory in MB: VmHWM starts anew at exec (getrusage's ru_maxrss does not on Linux:
# a child started from a large pytest process inherits its parent's peak)
_PEAK = (
    "def peak_mb():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            return int(line.split()[1]) // 1024\n"
)


# --- memory ---------------------------------------------------------------------------------------------------------
def _deflated_bomb(path: Path, inflated: int) -> Path:
    """A Deflated Explicit VR DICOM whose data set inflates to INFLATED bytes (zeros compress ~1000:1), written in
    a stream, without holding the inflated bytes."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    rows = cols = 4096

    def element(group, elem, vr, value: bytes) -> bytes:
        return group.to_bytes(2, "little") + elem.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value

    head = (
        element(0x0028, 0x0002, b"US", (1).to_bytes(2, "little"))
        + element(0x0028, 0x0004, b"CS", b"MONOCHROME2 ")
        + element(0x0028, 0x0010, b"US", rows.to_bytes(2, "little"))
        + element(0x0028, 0x0011, b"US", cols.to_bytes(2, "little"))
        + element(0x0028, 0x0100, b"US", (16).to_bytes(2, "little"))
        + element(0x0028, 0x0101, b"US", (16).to_bytes(2, "little"))
        + element(0x0028, 0x0102, b"US", (15).to_bytes(2, "little"))
        + element(0x0028, 0x0103, b"US", (0).to_bytes(2, "little"))
    )
    n = inflated - len(head) - 12
    n -= n % 2
    pixel = (0x7FE0).to_bytes(2, "little") + (0x0010).to_bytes(2, "little") + b"OW\0\0" + n.to_bytes(4, "little")
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + buf.getvalue())
        f.write(comp.compress(head + pixel))
        zeros = b"\0" * 2**22
        for _ in range(n // len(zeros)):
            f.write(comp.compress(zeros))
        f.write(comp.compress(b"\0" * (n % len(zeros))))
        f.write(comp.flush())
    return path


def test_a_deflated_dicom_bomb_is_refused_before_it_is_inflated(tmp_path):
    """Regression: a 1.4 MB Deflated-VR DICOM inflated to about 1.5 GB (3.95 GB peak) before any check: the 512 MB
    limit was on the file's size."""
    bomb = _deflated_bomb(tmp_path / "bomb.dcm", 1536 * 2**20)
    assert bomb.stat().st_size < 4 * 2**20
    code = (
        "import sys; from pneumolib.data.imaging import ImageError, load_image\n"
        f"{_PEAK}"
        "try:\n    load_image(sys.argv[1]); print('decoded')\n"
        "except ImageError as e:\n    print(e); sys.exit(2)\n"
        "finally:\n    print('peak', peak_mb())\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    assert "inflates to more than" in r.stdout
    peak_mb = int(r.stdout.split("peak")[-1])
    assert peak_mb < 1024, r.stdout  # the imports alone are ~200 MB; inflating the bomb took 1.5 GB and more


def test_a_small_deflated_dicom_is_still_read(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    from pneumolib.data.imaging import load_image

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = (np.add.outer(np.arange(64), np.arange(64)) % 256).astype(np.uint8).tobytes()
    ds.save_as(tmp_path / "small.dcm", enforce_file_format=True)
    assert load_image(tmp_path / "small.dcm").size == (64, 64)


def test_parallel_decoding_is_bounded_by_memory_not_only_by_workers(tmp_path):
    """Regression: four 217 KB RGBA PNGs (7000 x 7000, inside the pixel limit) decoded in parallel took 2.7 GB over
    the baseline. Decoding in flight is now budgeted (DECODE_BUDGET, by each film's decode cost)."""
    rgba = np.zeros((7000, 7000, 4), np.uint8)
    rgba[..., 0] = np.arange(7000, dtype=np.uint32)[None, :] % 256
    rgba[..., 3] = 255
    first = tmp_path / "f0.png"
    Image.fromarray(rgba, "RGBA").save(first, compress_level=1)
    del rgba
    for i in range(1, 4):
        shutil.copy(first, tmp_path / f"f{i}.png")
    code = (
        "import sys\nfrom pathlib import Path\nfrom pneumolib.data.dataset import DecodedCache\n"
        f"{_PEAK}"
        "paths = sorted(Path(sys.argv[1]).glob('f*.png'))\n"
        "base = peak_mb()\n"
        "errors = DecodedCache(None).warm(paths, 64, workers=4)\n"
        "print(len(errors), peak_mb() - base)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PNEUMOLIB_CACHE_DIR": "off"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    n_errors, over_mb = map(int, r.stdout.split())
    assert n_errors == 0
    assert over_mb < 1700, r.stdout  # one film in flight peaks near 0.8 GB; four at once took 2.7 GB


def test_a_crafted_segmenter_is_refused_before_its_network_is_built(tmp_path, capsys):
    """Regression: 'lungs --weights' with crafted channel counts built a 77 GB U-Net before checking the weights. The
    widest one runs under the address-space cap (an allocation would fail it); the others in this process."""
    from pneumolib.data.lungs import shipped_weights

    state = torch.load(shipped_weights(), map_location="cpu", weights_only=True)
    for name, change, needle in (
        ("wide", lambda s: s.update(channels=[1024] * 6), "do not fit a U-Net"),
        ("huge", lambda s: s.update(channels=[2**20] * 5), "channels"),
        ("bad_check", lambda s: s.update(check={"min_area": "small"}), "check"),
        ("nan_check", lambda s: s.update(check={"min_area": float("nan")}), "check"),
        ("bad_threshold", lambda s: s.update(threshold=float("nan")), "threshold"),
    ):
        crafted = {**state, "state_dict": dict(state["state_dict"]), "check": dict(state.get("check", {}))}
        change(crafted)
        path = tmp_path / f"{name}.pt"
        torch.save(crafted, path)
        args = ["lungs", "segment", _film(), "--out", tmp_path / "o", "--weights", path]
        if name == "wide":
            r = run_capped(args)
            assert_one_line_error(r.returncode, r.stderr, str(path), needle)
        else:
            rc, _, err = cli(capsys, *args)
            assert_one_line_error(rc, err, str(path), needle)


# --- tracebacks instead of one line -----------------------------------------------------------------------------------
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("command", ["card", "compare"])
@pytest.mark.parametrize(
    "metrics",
    [
        '{"experiment": "x", "test": ' + _nested(100000) + "}",
        '{"experiment": "x", "test": {"auc": "high", "accuracy": 0.9}}',
        '{"experiment": ["x"], "test": {}}',
        '{"experiment": "x", "test": [1, 2]}',
        '{"experiment": "x", "lung_focus": [1], "test": {"accuracy": 0.9, "ci95": {"accuracy": "wide"}}}',
    ],
)
def test_a_planted_metrics_record_is_one_line(run_copy, capsys, command, metrics):
    """Regression: deeply nested or wrong-typed JSON in metrics.json crashed card and compare (RecursionError,
    AttributeError, a format error on "auc": "high")."""
    (run_copy / "metrics.json").write_text(metrics)
    rc, _, err = cli(capsys, command, run_copy)
    assert_one_line_error(rc, err, "metrics.json")


@pytest.mark.parametrize("record", [_nested(100000), '{"adapted": [1]}'])
def test_a_planted_evaluation_or_stress_record_is_left_out_of_the_card(run_copy, capsys, record):
    (run_copy / "evaluations").mkdir()
    (run_copy / "evaluations" / "planted.json").write_text(record)
    (run_copy / "stress.json").write_text(record)
    rc, out, err = cli(capsys, "card", run_copy)
    assert rc == 0, err
    assert "Traceback" not in err and "planted.json" not in (run_copy / "MODEL_CARD.md").read_text()


def test_the_model_card_escapes_what_it_copies_from_records(run_copy, capsys):
    """Regression: a planted evaluation record injected raw HTML and headings into MODEL_CARD.md."""
    rec = {
        "cohort": "<script>alert(1)</script>\n# Owned",
        "accuracy": 0.5,
        "sensitivity": 0.5,
        "specificity": 0.5,
        "auc": 0.5,
        "threshold": 0.5,
        "checkpoint_threshold": 0.5,
        "split": "test",
        "data_dir": "<img src=x onerror=alert(1)>",
        "command": "x` <b>bold</b> ```",
    }
    (run_copy / "evaluations").mkdir()
    (run_copy / "evaluations" / "c.json").write_text(json.dumps(rec))
    rc, _, err = cli(capsys, "card", run_copy)
    assert rc == 0, err
    card = (run_copy / "MODEL_CARD.md").read_text()
    assert "<script>" not in card and "<img" not in card and "<b>" not in card and "&lt;script&gt;" in card
    assert not [ln for ln in card.splitlines() if ln.startswith("# Owned")]


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-5G"])
def test_a_bad_cache_memory_setting_is_one_line(trained_run, capsys, monkeypatch, value):
    monkeypatch.setenv("PNEUMOLIB_CACHE_MEMORY", value)
    rc, out, err = cli(capsys, "predict", trained_run.run_dir, _film())
    assert_one_line_error(rc, err, "PNEUMOLIB_CACHE_MEMORY")


def test_imagenet_weights_that_are_a_text_file_are_one_line(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "resnet18.pth"
    notes.write_text("not weights\n")
    monkeypatch.setenv("PNEUMOLIB_IMAGENET_WEIGHTS", str(notes))
    rc, _, err = cli(capsys, "train", "05", "--out", tmp_path / "run", "--profile", "smoke")
    assert_one_line_error(rc, err, str(notes), "not a torch weights file")


def test_imagenet_weights_of_another_network_are_one_line(tmp_path, capsys, monkeypatch):
    other = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 7, 7)}, other)
    monkeypatch.setenv("PNEUMOLIB_IMAGENET_WEIGHTS", str(other))
    rc, _, err = cli(capsys, "train", "05", "--out", tmp_path / "run", "--profile", "smoke")
    assert_one_line_error(rc, err, str(other), "not torchvision's")


def _small_disk(tmp_path: Path, kib: int):
    """A folder on a tmpfs of KIB KiB (a real full disk: ENOSPC), where this machine lets a test mount one; else
    None (the caller then caps the process's file size instead: EFBIG, the same one-line path)."""
    where = tmp_path / "small-disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True)
    return where if r.returncode == 0 else None


def _run_limited(args, fsize: int | None):
    def limit():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "pneumolib", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit,
        env={**os.environ, "PNEUMOLIB_CACHE_DIR": "off"},
    )


def test_a_full_disk_is_one_line_naming_the_file_and_nothing_half_written(run_copy, tmp_path):
    """Regression: a full disk made 'evaluate --json' raise OSError and 'train' a cryptic torch RuntimeError."""
    disk = _small_disk(tmp_path, 64)
    try:
        where = disk or tmp_path / "capped"
        where.mkdir(exist_ok=True)
        if disk is not None:  # fill it, so the JSON cannot be written
            (disk / "filler").write_bytes(b"\0" * (64 * 1024 - 4096))
        out = where / "m.json"
        r = _run_limited(["evaluate", run_copy, "--data-dir", fixture_dir(), "--json", out], None if disk else 512)
        line = assert_one_line_error(r.returncode, r.stderr, str(out))
        assert "disk full" in line or "too large" in line
        assert not out.exists() and not list(where.glob(".*.tmp"))
        run = where / "run"
        r = _run_limited(
            ["train", "04", "--out", run, "--profile", "smoke", "--cam-per-class", "0"], None if disk else 2**20
        )
        line = assert_one_line_error(r.returncode, r.stderr)
        assert ("disk full" in line or "too large" in line) and "RuntimeError" not in r.stderr
        assert not list(run.glob(".*.tmp")) and not (run / "checkpoint.pt").exists()
    finally:
        if disk is not None:
            subprocess.run(["umount", str(disk)], capture_output=True)


def test_ctrl_c_while_torch_imports_is_one_line_and_130(trained_run):
    """Regression: Ctrl-C while torch was importing printed a traceback."""
    p = subprocess.Popen(
        [sys.executable, "-m", "pneumolib", "predict", str(trained_run.run_dir), str(_film())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    maps = Path(f"/proc/{p.pid}/maps")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:  # wait until torch's library is being loaded
        try:
            if "libtorch" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.005)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().startswith("pneumolib: interrupted")


def test_ctrl_c_during_evaluate_does_not_advise_resuming_a_training(run_copy, capsys, monkeypatch):
    """Regression: Ctrl-C during 'evaluate' advised "re-run 'train' with --resume"."""
    import pneumolib.models.checkpoint as ck

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.Predictor, "load", classmethod(lambda cls, *a, **k: interrupted()))
    rc, _, err = cli(capsys, "evaluate", run_copy, "--data-dir", fixture_dir())
    assert rc == 130 and "Traceback" not in err
    assert "interrupted" in err and "resume" not in err and "train" not in err


def test_ctrl_c_during_a_write_leaves_no_half_file(tmp_path):
    from pneumolib.core.io import atomic_write

    target = tmp_path / "out.json"
    target.write_text("old\n")

    def write(tmp):
        Path(tmp).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


# --- smaller ----------------------------------------------------------------------------------------------------------
def test_manifest_rows_that_leave_the_image_root_are_refused_by_row(tmp_path):
    from pneumolib.data.dataset import Manifest, read_manifest

    root = tmp_path / "images"
    shutil.copytree(fixture_dir(), root)
    outside = tmp_path / "outside.png"
    shutil.copy(_film(), outside)
    rows = ["path,label,patient,split", "../outside.png,NORMAL,pX,train", f"{outside},NORMAL,pY,train"]
    rows += [
        f"{p.relative_to(root)},{p.parent.name},{p.stem},{p.parent.parent.name}" for p in sorted(root.glob("*/*/*.png"))
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    data = read_manifest(Manifest(tmp_path / "m.csv", root))
    assert outside not in [s.path for split in data.splits.values() for s in split]
    bad = [str(e) for e in data.bad_files]
    assert any("row 2 of m.csv" in b and "leaves the image root" in b for b in bad)
    assert any("row 3 of m.csv" in b and "leaves the image root" in b for b in bad)


def test_evaluate_accepts_a_test_only_manifest(run_copy, tmp_path, capsys):
    """Regression: 'evaluate --data-csv' refused a test-only manifest (an external cohort) because it wanted train
    rows."""
    root = fixture_dir()
    rows = ["path,label,patient,split"] + [
        f"{p.relative_to(root)},{p.parent.name},{p.stem},test" for p in sorted(root.glob("test/*/*.png"))
    ]
    (tmp_path / "cohort.csv").write_text("\n".join(rows) + "\n")
    rc, out, err = cli(capsys, "evaluate", run_copy, "--data-csv", tmp_path / "cohort.csv", "--image-root", root)
    assert rc == 0, err
    assert "accuracy" in out


def test_outputs_keep_the_umask_mode(run_copy, tmp_path, capsys):
    """Regression: every output was mode 0600 whatever the umask, so a group could not read a shared run folder."""
    old = os.umask(0o022)
    try:
        rc, _, err = cli(capsys, "evaluate", run_copy, "--data-dir", fixture_dir(), "--json", tmp_path / "m.json")
        assert rc == 0, err
        assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
        rec = next((run_copy / "evaluations").glob("*.json"))
        assert stat.S_IMODE(rec.stat().st_mode) == 0o644
        os.umask(0o077)
        cli(capsys, "card", run_copy)
        assert stat.S_IMODE((run_copy / "MODEL_CARD.md").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_nan_window_has_its_own_message(tmp_path):
    """Regression: a NaN WindowCenter was refused as 'every pixel is 0'."""
    from test_hostile import _dicom, _ramp

    from pneumolib.data.imaging import ImageError, load_image

    f = _dicom(tmp_path / "nanwin.dcm", _ramp(), WindowCenter="NaN", WindowWidth="400")
    with pytest.raises(ImageError, match="window") as e:
        load_image(f)
    assert "every pixel" not in str(e.value)
