"""Interrupted runs continue where they stopped and end with the weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from pneumolib.core.runs import STATE as STATE_FILE
from pneumolib.models.checkpoint import CheckpointError, read_checkpoint
from pneumolib.training.fit import fit, load_train_state

ARGS = [
    "train",
    "baseline",
    "--out",
    "{out}",
    "--profile",
    "smoke",
    "--epochs",
    "3",
    "--cam-per-class",
    "0",
    "--seed",
    "5",
]


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "pneumolib", *[a.format(out=out) for a in ARGS], *extra]


def _weights(run_dir):
    return read_checkpoint(run_dir / "checkpoint.pt")["state_dict"]


def test_killed_mid_training_then_resumed_gives_the_same_weights(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert subprocess.run(_train_cmd(full), capture_output=True, timeout=600).returncode == 0

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # the library logs to stderr (the CLI configures logging); kill (like an OOM kill) as soon as the first epoch
    # is reported
    p = subprocess.Popen(_train_cmd(cut), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in p.stderr:
        if line.startswith("epoch  1/3"):
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert not (cut / "checkpoint.pt").exists(), "the run finished before it was killed"
    assert (cut / STATE_FILE).is_file()

    r = subprocess.run(_train_cmd(cut, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr
    a, b = _weights(full), _weights(cut)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (cut / STATE_FILE).exists()  # a finished run keeps only checkpoint.pt


def test_resume_in_process_matches_uninterrupted(fixture_data, tiny_config, tmp_path, monkeypatch):
    cfg = replace(tiny_config, epochs=3, max_train_images=32, scheduler="cosine")
    ref = fit(cfg, fixture_data, tmp_path / "ref")
    # stop after epoch 2 by making the third epoch's validation raise
    import pneumolib.training.fit as T

    real = T.predict_samples
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "predict_samples", flaky)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, fixture_data, tmp_path / "cut")
    monkeypatch.setattr(T, "predict_samples", real)
    assert load_train_state(tmp_path / "cut", cfg)["epoch"] == 2
    res = fit(cfg, fixture_data, tmp_path / "cut", resume=True)
    assert [h["val_loss"] for h in res.history] == [h["val_loss"] for h in ref.history]
    sa, sb = ref.model.state_dict(), res.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_refuses_a_state_from_another_config(fixture_data, tiny_config, tmp_path, monkeypatch):
    import pneumolib.training.fit as T

    monkeypatch.setattr(T, "save_checkpoint", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config, fixture_data, tmp_path)
    with pytest.raises(CheckpointError, match="different config.*lr: 0.001 -> 0.01"):
        load_train_state(tmp_path, replace(tiny_config, lr=0.01))


def test_truncated_state_file_is_a_clear_error(tiny_config, tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="unreadable training state"):
        load_train_state(tmp_path, tiny_config)


def test_resume_without_state_starts_from_epoch_one(fixture_data, tiny_config, tmp_path, caplog):
    with caplog.at_level("INFO", logger="pneumolib"):
        r = fit(tiny_config, fixture_data, tmp_path, resume=True)
    assert len(r.history) == 1 and any("nothing to resume" in rec.getMessage() for rec in caplog.records)
