"""The lung segmenter: trains on annotated masks, ships inside the package, segments any film at its own size."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pneumolib.cli import main
from pneumolib.data import lungs as L
from pneumolib.data.fixture import fixture_dir, make_phantom
from pneumolib.models.checkpoint import CheckpointError


def _ellipses(h=128, w=128, gap=0.0):
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    e = lambda cy, cx, ry, rx: ((yy - cy * h) / (ry * h)) ** 2 + ((xx - cx * w) / (rx * w)) ** 2 <= 1  # noqa: E731
    return e(0.5, 0.3 - gap, 0.3, 0.14) | e(0.5, 0.7 + gap, 0.3, 0.14)


# --- the quality check -------------------------------------------------------------------------------------
def test_check_passes_two_lungs_and_names_what_is_wrong_otherwise():
    check = L.LungCheck()
    lungs = _ellipses()
    assert check.problems(lungs) == ""
    left_only = lungs.copy()
    left_only[:, 64:] = False
    assert "component" in check.problems(left_only)
    leak = lungs.copy()
    leak[:, :6] = True  # a mask running down the left border: background taken for lung, joined to the left lung
    leak[60:64, :30] = True
    assert "left image border" in check.problems(leak)
    assert "area" in check.problems(np.ones_like(lungs))
    assert "area" in check.problems(np.zeros_like(lungs))


def test_an_area_just_below_the_limit_does_not_read_as_equal_to_it_regression():
    # notebook 10 printed "lungs not found (area 0.18 outside 0.18-0.59)": two decimals hid a 0.176 below a 0.179
    lungs = np.zeros((100, 100), bool)
    lungs[30:70, 20:42] = lungs[30:70, 58:80] = True  # two 40 x 22 lungs: area 0.176
    text = L.LungCheck(min_area=0.179, max_area=0.594).problems(lungs)
    assert text == "area 0.176 outside 0.179-0.594"


def test_calibrated_check_passes_the_masks_it_was_calibrated_on_and_refuses_far_outliers():
    masks = [make_phantom(np.random.default_rng(s), bool(s % 2), 64).lungs for s in range(40)]
    check = L.calibrate_check(masks)
    assert all(check.problems(m) == "" for m in masks)
    assert check.problems(np.ones((64, 64), bool)) != ""  # a mask of the whole film
    assert check.min_area > 0.05 and check.max_area < 0.6


# --- training on the fixture -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_segmenter():
    """A narrow U-Net trained on the fixture's exact phantom masks: seconds on a CPU."""
    from pneumolib.training.lungs import train_segmenter

    return train_segmenter(fixture_dir(), epochs=12, batch_size=8, lr=5e-3, channels=(8, 16, 32, 64))


def test_segmenter_learns_the_fixture_lungs_to_a_high_dice(fixture_segmenter):
    seg, history = fixture_segmenter
    assert len(history) == 12 and seg.provenance["best_epoch"] == max(history, key=lambda h: h["val_dice"])["epoch"]
    r = L.evaluate_pairs(seg, L.discover_masks(fixture_dir())["test"])
    assert r["n"] == 24 and r["dice_mean"] > 0.85, r["dice_mean"]  # an untrained net scores about 0.3 here


def test_a_saved_segmenter_loads_with_weights_only_and_gives_the_same_masks(fixture_segmenter, tmp_path):
    seg, _ = fixture_segmenter
    path = seg.save(tmp_path / "s.pt")
    again = L.LungSegmenter.load(path)
    film = make_phantom(np.random.default_rng(3), True, 64).image
    assert np.array_equal(seg.segment_array(film), again.segment_array(film))
    assert again.check == seg.check and again.provenance["channels"] == [8, 16, 32, 64]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        L.LungSegmenter.load(tmp_path / "bad.pt")


# --- the shipped weights -----------------------------------------------------------------------------------
def test_shipped_weights_carry_their_provenance_and_meet_the_dice_target():
    seg = L.LungSegmenter.load()
    p = seg.provenance
    for key in ("data_dir", "command", "commit", "best_epoch", "val_dice_at_size", "train_seconds", "test"):
        assert key in p, key
    assert p["test"]["n"] == 128 and p["test"]["dice_mean"] >= 0.95 and p["test"]["dice_p05"] >= 0.90
    assert L.shipped_weights().stat().st_size < 10 * 2**20  # a few MB


def test_shipped_segmenter_masks_land_on_the_films_own_size_for_png_and_dicom(tmp_path):
    from test_dicom import write_dicom

    seg = L.LungSegmenter.load()
    film = np.asarray(Image.open(next((fixture_dir() / "test" / "NORMAL").glob("*.png"))).convert("L"))
    assert seg.segment_array(film).shape == film.shape
    big = np.asarray(Image.fromarray(film).resize((360, 300), Image.BILINEAR))  # a film of its own size, 300 x 360
    dcm = write_dicom(tmp_path / "film.dcm", big)
    got, mask = seg.segment_file(dcm)
    assert got.shape == mask.shape == (300, 360) and mask.dtype == bool


def test_cli_segment_writes_masks_and_overlays_and_names_a_bad_file(tmp_path):
    good = next((fixture_dir() / "test" / "PNEUMONIA").glob("*.png"))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    r = subprocess.run(
        [sys.executable, "-m", "pneumolib", "lungs", "segment", str(good), str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 2
    assert (tmp_path / "out" / f"{good.stem}_lungs.png").is_file()
    assert (tmp_path / "out" / f"{good.stem}_lungs_overlay.png").is_file()
    assert str(good) in r.stdout and "lung area" in r.stdout
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "broken.png" in err and "Traceback" not in err
    mask = np.asarray(Image.open(tmp_path / "out" / f"{good.stem}_lungs.png"))
    assert mask.shape == np.asarray(Image.open(good)).shape[:2]


def test_cli_evaluate_writes_dice_mean_p05_and_n(fixture_segmenter, tmp_path, capsys):
    seg, _ = fixture_segmenter
    w, js = seg.save(tmp_path / "s.pt"), tmp_path / "e.json"
    fig = tmp_path / "masks.png"
    assert (
        main(
            [
                "lungs",
                "evaluate",
                "--weights",
                str(w),
                "--data-dir",
                str(fixture_dir()),
                "--json",
                str(js),
                "--figure",
                str(fig),
            ]
        )
        == 0
    )
    assert Image.open(fig).size[0] > 600  # the worst-Dice films and others, annotated vs learned
    r = json.loads(js.read_text())
    assert r["n"] == 24 and {"dice_mean", "dice_p05", "qc_pass_rate", "qc_false_fail", "qc_false_pass"} <= set(r)
    assert "Dice mean" in capsys.readouterr().out
    assert main(["lungs", "evaluate", "--weights", str(w), "--data-dir", str(tmp_path)]) == 2  # no masks: one line
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_loading_the_lung_segmenter_leaves_the_global_rng_alone_regression():
    """Building MONAI's U-Net draws initial weights from the global RNG; a lung-cropped recipe loads the segmenter
    while decoding, which moved every caller's random stream (the augmentation figure's test caught it)."""
    import torch

    state = torch.get_rng_state()
    L.LungSegmenter.load()
    assert torch.equal(torch.get_rng_state(), state)
