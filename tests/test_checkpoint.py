import pickle

import numpy as np
import pytest
import torch

from pneumolib.core.config import CLASSES
from pneumolib.models.checkpoint import ChannelMismatch, CheckpointError, Predictor, read_checkpoint, save_checkpoint
from pneumolib.models.networks import build_model
from pneumolib.studies.catalogue import get_config


def test_checkpoint_carries_config_classes_channels_preprocessing_threshold(trained_run):
    state = read_checkpoint(trained_run.run_dir / "checkpoint.pt")
    assert state["config"] == trained_run.config.to_dict()
    assert state["classes"] == list(CLASSES)
    assert state["in_channels"] == 3
    assert state["preprocessing"] == {
        "image_size": 64,
        "in_channels": 3,
        "normalize": "none",
        "crop": "none",
        "crop_margin": 0.08,
        "crop_segmenter": "",
        "mask_dilation": 0.08,
    }
    assert state["threshold"] == pytest.approx(trained_run.threshold)


def test_predictor_reproduces_training_time_probabilities(trained_run):
    p = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    samples = trained_run.test.samples[:6]
    probs = p.predict_proba(torch.stack([p.preprocess(s.path) for s in samples]))
    assert np.allclose(probs, trained_run.test.probs[:6], atol=1e-5)
    done, refused = p.predict_records([s.path for s in samples])
    assert not refused and all(r.label in CLASSES for r in done)
    assert np.allclose([r.p_pneumonia for r in done], trained_run.test.probs[:6], atol=1e-5)  # streamed, same numbers


def test_predict_records_predicts_every_readable_film_and_returns_the_refused_one_regression(trained_run, tmp_path):
    # regression: one unreadable film in a predict batch aborted the whole batch, losing the good ones
    p = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    good = [s.path for s in trained_run.test.samples[:3]]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    done, refused = p.predict_records([good[0], bad, *good[1:]])
    assert [d.path for d in done] == [str(g) for g in good]
    assert [e.path for e in refused] == [bad] and "broken.png" in str(refused[0])


def test_channel_mismatch_guard(trained_run):
    # regression for the log's entry 4: a 1-channel input to a 3-channel checkpoint is refused, not guessed
    p = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    with pytest.raises(ChannelMismatch, match="expects 3-channel input"):
        p.predict_proba(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ChannelMismatch):
        p.predict_proba(torch.zeros(3, 64, 64))


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would run on load",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "pneumolib-checkpoint/1", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps([1, 2, 3])])
def test_garbage_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_foreign_torch_file_is_not_a_pneumolib_checkpoint(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(build_model().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a pneumolib checkpoint"):
        read_checkpoint(path)


def test_checkpoint_with_other_classes_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", build_model(), get_config("01"), 0.5)
    state = torch.load(path, weights_only=True)
    state["classes"] = ["NORMAL", "COVID"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="classes"):
        read_checkpoint(path)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", build_model(in_channels=3), get_config("01"), 0.5)  # config says 1
    with pytest.raises(CheckpointError, match="do not fit resnet18 with 1 input channel"):
        Predictor.load(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_save_is_atomic_no_temp_files_left(tmp_path):
    save_checkpoint(tmp_path / "c.pt", build_model(), get_config("01"), 0.5)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_checkpoint_with_inconsistent_channel_fields_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", build_model(), get_config("01"), 0.5)
    state = torch.load(path, weights_only=True)
    state["in_channels"] = 3
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="inconsistent channel count.*in_channels=3.*config.in_channels=1"):
        read_checkpoint(path)


def test_a_write_killed_half_way_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    import pneumolib.models.checkpoint as ck

    path = save_checkpoint(tmp_path / "c.pt", build_model(), get_config("01"), 0.25)
    real_save = torch.save

    def dies_half_way(obj, f):
        real_save(obj, f)
        with open(f, "r+b") as fh:  # truncate, as a kill during the write would
            fh.truncate(1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, build_model(), get_config("01"), 0.75)
    monkeypatch.setattr(ck.torch, "save", real_save)
    assert read_checkpoint(path)["threshold"] == 0.25  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
