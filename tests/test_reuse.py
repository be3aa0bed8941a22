"""A finished run folder is reused only for the same training: config, holdout, seed budget and data."""

import json
import shutil
from dataclasses import replace

import pytest

from pneumolib.data.dataset import fingerprint, prepare
from pneumolib.data.fixture import fixture_dir
from pneumolib.models.checkpoint import CheckpointError, read_checkpoint
from pneumolib.studies.experiment import run_experiment, training_differences


@pytest.fixture
def two_folders(tmp_path):
    """Folder A (the fixture) and folder B (the fixture less one training film)."""
    a = shutil.copytree(fixture_dir(), tmp_path / "A")
    b = shutil.copytree(fixture_dir(), tmp_path / "B")
    next((b / "train" / "NORMAL").iterdir()).unlink()
    return a, b


def _train(cfg, data_dir, out, **kw):
    return run_experiment(cfg, data_dir, out, profile="fixture", overrides={"epochs": 1}, cam_per_class=0, **kw)


def test_a_run_folder_trained_on_one_data_folder_is_retrained_for_another_regression(
    two_folders, tiny_config, tmp_path
):
    # regression: 'train baseline --data-dir A --out x' then '--data-dir B --out x' reused A's model and wrote B's
    # data_dir into metrics.json
    a, b = two_folders
    out = tmp_path / "x"
    first = _train(tiny_config, a, out)
    assert first.fit is not None
    again = _train(tiny_config, a, out)
    assert again.fit is None  # same config, holdout and data: reused
    other = _train(tiny_config, b, out)
    assert other.fit is not None  # other data: trained anew
    m = json.loads((out / "metrics.json").read_text())
    assert (
        m["data_dir"] == str(b)
        and m["data_fingerprint"] == read_checkpoint(out / "checkpoint.pt")["extra"]["data_fingerprint"]
    )


def test_resume_refuses_a_finished_run_of_other_data_in_one_line(two_folders, tiny_config, tmp_path):
    a, b = two_folders
    out = tmp_path / "x"
    _train(tiny_config, a, out)
    with pytest.raises(CheckpointError, match="--resume refused.*data: train/val files"):
        _train(tiny_config, b, out, resume=True)


def test_training_differences_names_config_holdout_and_data(two_folders, tiny_config, tmp_path):
    a, b = two_folders
    out = tmp_path / "x"
    r = _train(tiny_config, a, out)
    cfg = r.config
    fp_a = fingerprint(prepare(a, seed=cfg.seed, image_size=cfg.image_size))
    fp_b = fingerprint(prepare(b, seed=cfg.seed, image_size=cfg.image_size))
    assert fp_a != fp_b
    assert training_differences(out, cfg, "folders", fp_a) == []
    assert [d.split(":")[0] for d in training_differences(out, cfg, "folders", fp_b)] == ["data"]
    assert [d.split(":")[0] for d in training_differences(out, cfg, "early_ids", fp_a)] == ["holdout"]
    more = training_differences(out, replace(cfg, epochs=2), "folders", fp_a)  # another seed budget
    assert len(more) == 1 and "epochs: 1 -> 2" in more[0]
    assert training_differences(tmp_path / "nothing", cfg, "folders", fp_a) == ["no checkpoint"]


def test_fingerprint_does_not_depend_on_where_the_folder_lies(two_folders, tmp_path):
    a, _ = two_folders
    moved = shutil.copytree(a, tmp_path / "elsewhere" / "A")
    assert fingerprint(prepare(a, seed=0, image_size=64)) == fingerprint(prepare(moved, seed=0, image_size=64))
