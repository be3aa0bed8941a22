"""The stress test: deterministic scanner-like shifts, the prevalence re-weighting, and the cached run report."""

import json

import numpy as np
import pytest
import torch

from pneumolib.data.fixture import fixture_dir
from pneumolib.data.shifts import SHIFTS_BY_NAME
from pneumolib.data.transforms import Preprocessing
from pneumolib.studies.stress import (
    EXTERNAL_NORMAL_SHARE,
    SHIFTS,
    StressReport,
    external_accuracy,
    stress_run,
    stress_test,
)


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 64, 64, generator=g) * 120 + 60  # mid-grey texture, room to shift both ways
    return x.round().to(torch.uint8)


@pytest.mark.parametrize("shift", SHIFTS, ids=lambda s: s.name)
def test_every_shift_keeps_shape_and_dtype_and_changes_the_image(shift, image):
    out = shift(image)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert not torch.equal(out, image)


@pytest.mark.parametrize("shift", SHIFTS, ids=lambda s: s.name)
def test_shifts_are_deterministic(shift, image):
    # a shifted split must be a fixed data set, so that two runs (or two recipes) see the same images
    assert torch.equal(shift(image), shift(image))


def test_shift_groups_are_seen_or_unseen():
    assert {s.group for s in SHIFTS} == {"seen", "unseen"}
    assert len(SHIFTS_BY_NAME) == len(SHIFTS)


def test_a_shift_is_seen_only_by_a_recipe_whose_augmentation_trains_on_it():
    noise, blur, jpeg = SHIFTS_BY_NAME["noise"], SHIFTS_BY_NAME["blur"], SHIFTS_BY_NAME["jpeg"]
    assert blur.seen_by(["robust", "robust"]) and not blur.seen_by(["log_baseline", "log_baseline"])
    assert noise.seen_by(["robust+sharpness"]) and not noise.seen_by(["robust"])
    assert not jpeg.seen_by(["robust+sharpness"])  # no recipe trains on re-compression


def test_stress_report_labels_rows_by_the_recipes_augmentation_and_names_its_split():
    from pneumolib.analysis.evaluate import Scores
    from pneumolib.data.dataset import Sample
    from pneumolib.studies.stress import report_at

    samples = [Sample(f"f{i}", i % 2, f"p{i}", "val") for i in range(10)]
    sc = Scores(samples, np.linspace(0, 1, 10))
    scores = {"clean": sc, "noise": sc, "jpeg": sc}
    rep = report_at(scores, 0.5, (("NORMAL", "robust+sharpness"), ("PNEUMONIA", "robust+sharpness")), split="val")
    seen = {r["shift"]: r.get("seen") for r in rep.rows}
    assert seen == {"clean": None, "noise": True, "jpeg": False}
    assert rep.table().startswith("scored on the val split") and "unseen" in rep.table()
    plain = report_at(scores, 0.5, (("NORMAL", "log_baseline"), ("PNEUMONIA", "log_baseline")))
    assert {r["shift"]: r.get("seen") for r in plain.rows}["noise"] is False


def test_external_accuracy_reweights_the_recalls_to_the_external_mix():
    assert external_accuracy(1.0, 0.0) == pytest.approx(1 - EXTERNAL_NORMAL_SHARE)
    assert external_accuracy(0.9, 0.6) == pytest.approx(0.375 * 0.6 + 0.625 * 0.9)
    assert external_accuracy(0.8, 0.8) == pytest.approx(0.8)


@pytest.mark.parametrize("name", ["darker", "brighter"])
def test_equalised_input_is_nearly_invariant_to_exposure_curves(name, image):
    # why the recipe equalises: a monotone change of grey levels barely changes what the model sees,
    # while the plain input changes a lot
    eq, plain = Preprocessing(64, 1, "equalize"), Preprocessing(64, 1, "none")
    shifted = SHIFTS_BY_NAME[name](image)
    assert (eq(shifted) - eq(image)).abs().mean() < 0.02
    assert (plain(shifted) - plain(image)).abs().mean() > 0.05


def test_stress_test_clean_row_matches_the_plain_metrics(trained_run):
    r = trained_run
    rep = stress_test(r.predictor.model, r.data["test"], r.predictor.preprocessing, r.threshold)
    assert [row["shift"] for row in rep.rows] == ["clean", *[s.name for s in SHIFTS]]
    clean = rep.rows[0]
    assert clean["accuracy"] == pytest.approx(r.metrics["test"]["accuracy"])
    assert clean["auc"] == pytest.approx(r.metrics["test"]["auc"])
    s = rep.summary()
    shifted = [row["specificity"] for row in rep.rows[1:]]
    assert s["worst_specificity"] == min(shifted)
    assert s["stress_specificity"] == pytest.approx(np.mean(shifted))
    assert "mean shifted" in rep.table()


def test_summary_of_a_handmade_report():
    rows = [
        {"shift": "clean", "group": "", "accuracy": 1, "sensitivity": 1, "specificity": 1, "auc": 1, "accuracy_ext": 1},
        {
            "shift": "a",
            "group": "seen",
            "accuracy": 0.8,
            "sensitivity": 0.9,
            "specificity": 0.6,
            "auc": 0.9,
            "accuracy_ext": external_accuracy(0.9, 0.6),
        },
        {
            "shift": "b",
            "group": "unseen",
            "accuracy": 0.7,
            "sensitivity": 0.9,
            "specificity": 0.4,
            "auc": 0.8,
            "accuracy_ext": external_accuracy(0.9, 0.4),
        },
    ]
    s = StressReport(rows, 0.5).summary()
    assert s["worst_specificity"] == 0.4 and s["unseen_specificity"] == 0.4
    assert s["stress_specificity"] == pytest.approx(0.5) and s["stress_auc"] == pytest.approx(0.85)


def test_stress_run_is_cached_until_the_checkpoint_changes(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    first = stress_run(run, None)
    saved = json.loads((run / "stress.json").read_text())
    # NaN (a precision with no positive call under a shift) never equals itself: compare through JSON text
    assert json.dumps(saved["rows"], sort_keys=True) == json.dumps(first.rows, sort_keys=True)
    # a doctored cache is returned as is while the checkpoint is unchanged ...
    saved["rows"][0]["accuracy"] = -1.0
    (run / "stress.json").write_text(json.dumps(saved))
    assert stress_run(run, None).rows[0]["accuracy"] == -1.0
    # ... and recomputed once the checkpoint is rewritten
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes())
    import os

    os.utime(ckpt, ns=(1, 1))
    assert stress_run(run, None).rows[0]["accuracy"] == pytest.approx(first.rows[0]["accuracy"])
    # the validation split (selection) is kept in a file of its own: the test split's report is not overwritten
    val = stress_run(run, None, split="val")
    assert val.split == "val" and (run / "stress_val.json").is_file()
    assert json.loads((run / "stress.json").read_text())["split"] == "test"


def test_stress_run_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        stress_run(tmp_path, fixture_dir())
