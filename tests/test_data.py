"""Finding, splitting, pre-scanning and serving a Kaggle-layout folder (pneumolib.data)."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pneumolib.core.config import CLASSES, apply_profile
from pneumolib.data.dataset import (
    DataError,
    DecodedCache,
    XRayDataset,
    discover,
    early_id_holdout,
    grouped_split,
    patient_family,
    patient_id,
    patient_overlap,
    prescan,
    subsample,
)
from pneumolib.data.fixture import FIXTURE_COUNTS, fixture_dir
from pneumolib.data.resources import Resources
from pneumolib.data.transforms import Preprocessing
from pneumolib.studies.catalogue import get_config


@pytest.fixture
def data_root(tmp_path):
    """A private, writable copy of the shipped fixture."""
    return shutil.copytree(fixture_dir(), tmp_path / "chest_xray")


def _png(path, value=128, size=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return path


def _one_line_naming(err: Exception, path) -> str:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg
    assert str(path) in msg
    return msg


# --- patient ids -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,patient",
    [
        ("person123_bacteria_456.jpeg", "person123"),
        ("person1_virus_7.jpeg", "person1"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("NORMAL2-IM-0587-0001-0002.jpeg", "NORMAL2-IM-0587"),  # the data set has such doubled suffixes
        ("scan_from_another_hospital.png", "scan_from_another_hospital"),
    ],
)
def test_patient_id(name, patient):
    assert patient_id(name) == patient
    assert patient_id(f"/some/where/train/NORMAL/{name}") == patient


# --- the shipped fixture -----------------------------------------------------------------
def test_discover_shipped_fixture_counts_labels_and_patients():
    data = discover(fixture_dir())
    assert list(data.splits) == ["train", "val", "test"]
    assert FIXTURE_COUNTS == {"train": 40, "val": 12, "test": 12}
    assert data.counts() == {
        "train": {"NORMAL": 40, "PNEUMONIA": 40},
        "val": {"NORMAL": 12, "PNEUMONIA": 12},
        "test": {"NORMAL": 12, "PNEUMONIA": 12},
    }
    assert CLASSES == ("NORMAL", "PNEUMONIA")
    for split, samples in data.splits.items():
        for s in samples:
            assert s.split == split and s.path.parent.parent.name == split
            assert s.label == {"NORMAL": 0, "PNEUMONIA": 1}[s.path.parent.name]
            assert s.class_name == s.path.parent.name
    assert patient_overlap(data.splits) == set()
    assert data.notes == [] and data.bad_files == []
    # some patients have two images, so grouping by patient matters
    train = data["train"]
    assert len({s.patient for s in train}) < len(train)


def test_discover_repr_shows_class_counts_table():
    data = discover(fixture_dir())
    lines = repr(data).splitlines()
    assert str(fixture_dir()) in lines[0]
    assert lines[1].split() == ["split", "NORMAL", "PNEUMONIA", "patients"]
    rows = {ln.split()[0]: [int(v) for v in ln.split()[1:]] for ln in lines[2:5]}
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        assert rows[split][:2] == [n, n]
        assert rows[split][2] == len({s.patient for s in data[split]})


def test_unknown_split_is_a_data_error():
    data = discover(fixture_dir())
    with pytest.raises(DataError, match="'holdout'"):
        data["holdout"]


# --- building a val split ----------------------------------------------------------------
def _check_rebuilt_val(data, n_images_train_val):
    assert set(data.splits) == {"train", "val", "test"}
    assert patient_overlap(data.splits) == set()
    for split in ("train", "val"):
        c = data.counts()[split]
        assert c["NORMAL"] > 0 and c["PNEUMONIA"] > 0, (split, c)
    assert all(s.split == "val" for s in data["val"]) and all(s.split == "train" for s in data["train"])
    assert len(data["train"]) + len(data["val"]) == n_images_train_val
    assert len(data["val"]) < len(data["train"])
    assert data.counts()["test"] == {"NORMAL": 12, "PNEUMONIA": 12}
    return [s.path for s in data["val"]]


def test_missing_val_is_built_from_train_by_patient(data_root):
    shutil.rmtree(data_root / "val")
    data = discover(data_root, seed=0)
    val = _check_rebuilt_val(data, 80)
    # the val images come from train/
    assert all(p.parent.parent.name == "train" for p in val)
    note = [n for n in data.notes if n.startswith("val/")]
    assert len(note) == 1 and "missing" in note[0] and "patient-grouped" in note[0] and "seed 0" in note[0]
    assert "note: val/ missing" in repr(data)


def test_built_val_is_deterministic_per_seed(data_root):
    shutil.rmtree(data_root / "val")
    a = [s.path for s in discover(data_root, seed=0)["val"]]
    b = [s.path for s in discover(data_root, seed=0)["val"]]
    c = [s.path for s in discover(data_root, seed=1)["val"]]
    assert a == b
    assert set(a) != set(c)


def test_tiny_val_is_pooled_with_train_and_rebuilt(data_root):
    kept = []
    for cls in CLASSES:
        files = sorted((data_root / "val" / cls).iterdir())
        kept += files[:2]
        for f in files[2:]:
            f.unlink()
    data = discover(data_root, seed=0)
    _check_rebuilt_val(data, 84)
    assert set(kept) <= {s.path for s in data["train"] + data["val"]}  # the 4 original val images are not wasted
    assert any("tiny (4 images)" in n and "pooled" in n for n in data.notes)


def test_val_rebuild_never_puts_one_patient_on_both_sides_regression(data_root):
    # regression: the rebuild used to split train alone and append the old val images to train, so a patient
    # with films in train/ and in a tiny val/ ended up in both train and the new val
    for cls in CLASSES:
        for f in sorted((data_root / "val" / cls).iterdir())[1:]:
            f.unlink()
    for cls in CLASSES:  # each train patient also gets a film in val/
        for f in sorted((data_root / "train" / cls).iterdir())[:8]:
            shutil.copy(f, data_root / "val" / cls / f.name.replace("-0001", "-0009").replace("_1.png", "_9.png"))
    data = discover(data_root, seed=0)
    assert any("pooled" in n for n in data.notes)
    where: dict[str, set] = {}
    for split in ("train", "val"):
        for smp in data[split]:
            where.setdefault(smp.patient, set()).add(split)
    shared = [p for p, splits in where.items() if len(splits) > 1]
    assert not shared
    assert sum(len(v) for v in where.values()) == len({s.patient for s in data["train"] + data["val"]})


def _small_folder(root, patients_per_class, films_each=1):
    for split in ("train", "test"):
        for label, cls in enumerate(CLASSES):
            for i in range(patients_per_class):
                for k in range(films_each):
                    name = f"IM-{i:04d}-{k + 1:04d}.png" if label == 0 else f"person{i}_bacteria_{k}.png"
                    _png(root / split / cls / name, value=60 + 40 * label + i)
    return root


@pytest.mark.parametrize("patients_per_class", [2, 3, 5])
def test_small_folder_builds_a_val_split(tmp_path, patients_per_class):
    # regression: scikit-learn's grouped k-fold raised "n_splits=10 cannot be greater than ..." with a traceback
    data = discover(_small_folder(tmp_path / "d", patients_per_class, films_each=2))
    assert data.counts()["val"]["NORMAL"] > 0 and data.counts()["val"]["PNEUMONIA"] > 0
    assert data.counts()["train"]["NORMAL"] > 0 and data.counts()["train"]["PNEUMONIA"] > 0
    assert not ({s.patient for s in data["train"]} & {s.patient for s in data["val"]})


def test_folder_too_small_to_split_is_a_one_line_error_and_exit_2(tmp_path, capsys):
    from pneumolib.cli import main

    root = _small_folder(tmp_path / "d", 1, films_each=3)
    with pytest.raises(DataError) as e:
        discover(root)
    msg = str(e.value)
    assert "\n" not in msg and "NORMAL has 1" in msg and "need at least 2 per class" in msg
    assert main(["train", "baseline", "--data-dir", str(root), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too few patients" in err[0] and "Traceback" not in err[0]


def test_unreadable_test_image_is_skipped_and_listed_not_an_abort(data_root, tmp_path):
    from pneumolib.studies.experiment import run_experiment

    bad = data_root / "test" / "PNEUMONIA" / "person999_bacteria_1.png"
    bad.write_bytes(b"not a png at all")
    cfg = replace(apply_profile(get_config("baseline"), "fixture"), epochs=1)
    r = run_experiment(cfg, data_root, tmp_path / "run", cam_per_class=1, focus_per_class=1)
    assert r.metrics["test"]["n"] == 24
    assert any(str(bad) in f for f in r.metrics["skipped_files"])
    assert str(bad) not in {str(s.path) for s in r.test.samples}


def test_a_series_logs_the_prescan_table_for_its_first_seed_only(data_root, tmp_path, caplog):
    # issue 24: the same pre-scan table was printed once per seed, 30 times in the series
    import logging

    from pneumolib.studies.experiment import run_experiment

    bad = data_root / "test" / "PNEUMONIA" / "person999_bacteria_1.png"
    bad.write_bytes(b"not a png at all")
    cfg = replace(apply_profile(get_config("baseline"), "smoke"), epochs=1)
    with caplog.at_level(logging.WARNING, logger="pneumolib"):
        r = run_experiment(cfg, data_root, tmp_path / "run", profile="smoke", cam_per_class=0, log_findings=False)
    assert not any("pre-scan of" in m or str(bad) in m for m in caplog.messages)
    assert any(str(bad) in f for f in r.metrics["skipped_files"])  # still recorded in metrics.json


def test_big_enough_val_is_kept(data_root):
    data = discover(data_root)
    assert all(p.path.parent.parent.name == "val" for p in data["val"])
    assert not any(n.startswith("val/") for n in data.notes)


# --- unusable folders --------------------------------------------------------------------
def _no_train(root):
    shutil.rmtree(root / "train")
    return root, root, "no train/"


def _empty_class(root):
    folder = root / "train" / "NORMAL"
    for f in folder.iterdir():
        f.unlink()
    return root, folder, "no images"


def _class_holds_only_non_images(root):
    folder = root / "train" / "NORMAL"
    for f in folder.iterdir():
        f.unlink()
    (folder / "readme.txt").write_text("images moved elsewhere\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root, folder, "no images"


def _missing_class(root):
    folder = root / "train" / "PNEUMONIA"
    shutil.rmtree(folder)
    return root, folder, "missing class folder"


def _missing_class_in_test(root):
    folder = root / "test" / "NORMAL"
    shutil.rmtree(folder)
    return root, folder, "missing class folder"


def _no_such_root(root):
    gone = root.parent / "no_such_folder"
    return gone, gone, "not found"


@pytest.mark.parametrize(
    "break_it",
    [_no_train, _empty_class, _class_holds_only_non_images, _missing_class, _missing_class_in_test, _no_such_root],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_unusable_folder_is_a_one_line_data_error_naming_it(data_root, break_it):
    root, named, problem = break_it(data_root)
    with pytest.raises(DataError) as info:
        discover(root)
    msg = _one_line_naming(info.value, named)
    assert problem in msg


# --- messy folders -----------------------------------------------------------------------
def test_messy_files_are_ignored_or_included(data_root):
    folder = data_root / "train" / "NORMAL"
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(100))
    (folder / "Thumbs.db").write_bytes(bytes(64))
    (folder / "notes.txt").write_text("reviewed by Dr X\n")
    upper = _png(folder / "X.PNG")
    nested = _png(folder / "batch2" / "IM-9001-0001.png")
    hidden = _png(folder / ".hidden" / "IM-9002-0001.png")

    data = discover(data_root)
    normal = {s.path for s in data["train"] if s.label == 0}
    assert len(normal) == 42
    assert upper in normal and nested in normal
    assert hidden not in normal
    names = {p.name for p in normal}
    assert not names & {".DS_Store", "Thumbs.db", "notes.txt"}
    assert not any(".hidden" in p.parts for p in normal)
    assert data.counts()["train"] == {"NORMAL": 42, "PNEUMONIA": 40}
    # only notes.txt counts as an ignored non-image; .DS_Store, Thumbs.db and .hidden/ are skipped silently
    assert "ignored 1 file(s) without an image suffix" in data.notes
    nested_sample = next(s for s in data["train"] if s.path == nested)
    assert nested_sample.patient == "IM-9001" and nested_sample.label == 0


# --- pre-scan ----------------------------------------------------------------------------
@pytest.fixture
def data_with_bad_files(data_root):
    folder = data_root / "train" / "PNEUMONIA"
    (folder / "broken.png").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "empty.jpeg").write_bytes(b"")
    data = discover(data_root)
    assert {"broken.png", "empty.jpeg"} <= {s.path.name for s in data["train"]}
    return data


def test_prescan_drops_unreadable_files_and_names_them(data_with_bad_files):
    data = data_with_bad_files
    clean = prescan(data, 64, resources=Resources(DecodedCache()))
    assert clean.counts()["train"] == {"NORMAL": 40, "PNEUMONIA": 40}
    assert {s.path.name for s in clean["train"]}.isdisjoint({"broken.png", "empty.jpeg"})
    assert clean.counts()["val"] == data.counts()["val"] and clean.counts()["test"] == data.counts()["test"]
    assert len(clean.bad_files) == 2
    assert {e.path.name for e in clean.bad_files} == {"broken.png", "empty.jpeg"}
    for e in clean.bad_files:
        _one_line_naming(e, e.path)
    assert repr(clean).count("unreadable:") == 2
    assert len(data.bad_files) == 0 and len(data["train"]) == 82  # the input is not modified


def test_prescan_strict_refuses_to_start(data_with_bad_files):
    with pytest.raises(DataError) as info:
        prescan(data_with_bad_files, 64, strict=True, resources=Resources(DecodedCache()))
    msg = _one_line_naming(info.value, data_with_bad_files.root)
    assert "strict" in msg and "2 unreadable" in msg


def test_prescan_refuses_when_a_class_has_no_readable_image_left(data_root):
    folder = data_root / "test" / "NORMAL"
    for f in folder.iterdir():
        f.write_bytes(b"not a png at all")
    with pytest.raises(DataError) as info:
        prescan(discover(data_root), 64, resources=Resources(DecodedCache()))
    _one_line_naming(info.value, data_root)
    assert "test/NORMAL" in str(info.value)


def test_training_does_not_die_on_one_bad_file(data_with_bad_files):
    from pneumolib.training.fit import FitResult, fit

    config = replace(apply_profile(get_config("baseline"), "fixture"), epochs=1)
    result = fit(config, data_with_bad_files)
    assert isinstance(result, FitResult)
    assert len(result.history) == 1
    assert np.isfinite(result.history[0]["train_loss"]) and np.isfinite(result.history[0]["val_loss"])


# --- splitting and subsampling -----------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_grouped_split_keeps_classes_and_never_shares_a_patient(fraction, seed):
    samples = discover(fixture_dir())["train"]
    keep, held = grouped_split(samples, fraction, seed)
    assert sorted(map(str, (s.path for s in keep + held))) == sorted(str(s.path) for s in samples)
    assert {s.patient for s in keep}.isdisjoint({s.patient for s in held})
    for part in (keep, held):
        assert {s.label for s in part} == {0, 1}
    # roughly the asked fraction, and roughly the class mix of the whole (40/40)
    assert 0.5 * fraction <= len(held) / len(samples) <= 2 * fraction
    n_pneu = sum(s.label for s in held)
    assert abs(n_pneu - len(held) / 2) <= 2


def _unbalanced():
    train = discover(fixture_dir())["train"]
    return [s for s in train if s.label == 0] + [s for s in train if s.label == 1][:20]  # 40 NORMAL, 20 PNEUMONIA


@pytest.mark.parametrize("n", [5, 10, 25, 31, 59])
def test_subsample_size_and_class_mix(n):
    samples = _unbalanced()
    sub = subsample(samples, n, seed=0)
    assert abs(len(sub) - n) <= 1
    assert len({s.path for s in sub}) == len(sub) and set(sub) <= set(samples)
    for label, share in ((0, 40 / 60), (1, 20 / 60)):
        assert abs(sum(s.label == label for s in sub) - n * share) <= 1


def test_subsample_is_deterministic_per_seed():
    samples = _unbalanced()
    a, b, c = subsample(samples, 12, seed=3), subsample(samples, 12, seed=3), subsample(samples, 12, seed=4)
    assert a == b
    assert a != c


@pytest.mark.parametrize("n", [None, 60, 1000])
def test_subsample_of_everything_returns_everything(n):
    samples = _unbalanced()
    assert subsample(samples, n, seed=0) == samples


# --- dataset items -----------------------------------------------------------------------
@pytest.mark.parametrize("in_channels", [1, 3])
def test_xray_dataset_item(in_channels):
    samples = discover(fixture_dir())["val"]
    ds = XRayDataset(samples, Preprocessing(64, in_channels), resources=Resources(DecodedCache()))
    assert len(ds) == 24
    for i in (0, len(ds) - 1):
        x, label, idx = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
        assert x.shape == (in_channels, 64, 64)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0
        assert isinstance(label, int) and label == samples[i].label
        assert idx == i
        if in_channels == 3:
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_xray_dataset_resizes_to_preprocessing_size():
    samples = discover(fixture_dir())["val"][:1]
    x, _, _ = XRayDataset(samples, Preprocessing(32, 1), resources=Resources(DecodedCache()))[0]
    assert x.shape == (1, 32, 32)


@pytest.mark.parametrize(
    "patient,family",
    [
        ("person123", ("person", 123)),
        ("IM-0115", ("IM-", 115)),
        ("NORMAL2-IM-1427", ("NORMAL2-IM-", 1427)),
        ("scan", ("", -1)),
    ],
)
def test_patient_family(patient, family):
    assert patient_family(patient) == family


@pytest.mark.parametrize("fraction", [0.15, 0.3])
def test_early_id_holdout_tests_on_the_earliest_patients_of_each_family(fixture_data, fraction):
    held = early_id_holdout(fixture_data, fraction)
    assert not patient_overlap(held.splits)
    pooled = [s for split in fixture_data.splits.values() for s in split]
    assert sorted(s.path for split in held.splits.values() for s in split) == sorted(s.path for s in pooled)
    assert {s.split for split, ss in held.splits.items() for s in ss if s.split != split} == set()
    for fam in {patient_family(s.patient)[0] for s in pooled}:
        test_ids = {patient_family(s.patient)[1] for s in held["test"] if patient_family(s.patient)[0] == fam}
        rest = {
            patient_family(s.patient)[1]
            for split in ("train", "val")
            for s in held[split]
            if patient_family(s.patient)[0] == fam
        }
        assert test_ids and max(test_ids) < min(rest)  # every held-out patient is earlier than every kept one
        n_fam = sum(patient_family(s.patient)[0] == fam for s in pooled)
        n_test = sum(patient_family(s.patient)[0] == fam for s in held["test"])
        assert abs(n_test - fraction * n_fam) <= 3  # whole patients, so only about the fraction
    # validation images stay validation images, so best-epoch and threshold choices keep their data
    assert {s.path for s in held["val"]} <= {s.path for s in fixture_data["val"]}
    assert any("early-ID holdout" in n for n in held.notes)


def test_early_id_holdout_needs_numbered_names(tmp_path):
    for split in ("train", "val", "test"):
        for cls in CLASSES:
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(10):
                Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(d / f"scan_{cls}_{split}_{i}x.png")
    with pytest.raises(DataError, match="numbered file names"):
        early_id_holdout(discover(tmp_path))
