"""The recipe is a seed ensemble (config.members): its members are trained one by one in RUN/members/seedN on the
run's split, reused by their own keys, and served as one checkpoint whose logits are averaged and temperature-scaled
on validation."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pneumolib.core.config import ConfigError, apply_profile
from pneumolib.data.fixture import fixture_dir
from pneumolib.models.checkpoint import Predictor
from pneumolib.models.networks import Ensemble
from pneumolib.studies.card import render_model_card
from pneumolib.studies.catalogue import RECOMMENDED, get_config
from pneumolib.studies.experiment import run_experiment


def test_the_recipe_is_three_members_and_other_entries_one():
    assert RECOMMENDED.members == 3 and apply_profile(RECOMMENDED, "cpu").members == 3
    assert get_config("baseline").members == 1
    with pytest.raises(ConfigError):
        replace(RECOMMENDED, members=0)


def test_a_member_count_of_one_leaves_every_other_runs_key_as_it_was():
    base = get_config("baseline")
    assert base.training_key() == replace(base, members=1).training_key()
    assert base.training_key() != replace(base, members=2).training_key()


def test_an_ensemble_recipe_trains_its_members_once_and_serves_their_mean_logit(tmp_path, fixture_data, caplog):
    cfg = replace(apply_profile(get_config("baseline"), "fixture"), epochs=1, members=2)
    out = tmp_path / "ens"
    r = run_experiment(cfg, None, out, data=fixture_data, cam_per_class=0)
    pred = Predictor.load(out / "checkpoint.pt")
    assert isinstance(pred.model, Ensemble) and len(pred.model.members) == 2 and pred.model.combine == "logit"
    assert pred.config.members == 2 and r.metrics["ensemble"]["combine"] == "logit"
    members = r.metrics["ensemble"]["members_val"]
    assert [m["seed"] for m in members] == [cfg.seed, cfg.seed + 1]
    # each member alone on validation, beside the ensemble: its figures, its NLL and ECE, and their spread
    assert all({"accuracy", "auc", "nll", "ece", "nll_tempered", "ece_tempered"} <= set(m) for m in members)
    assert all(m["nll_tempered"] <= m["nll"] + 1e-6 for m in members)
    s = r.metrics["ensemble"]["members_val_spread"]["nll"]
    assert s["n"] == 2 and s["min"] == min(m["nll"] for m in members) and s["max"] == max(m["nll"] for m in members)
    card = render_model_card(out)  # the card says what the served model is: its members and their figures
    assert f"- Ensemble: 2 networks (seeds {cfg.seed}, {cfg.seed + 1}), their logits averaged" in card
    assert all(f"- Member seed {m['seed']} alone: accuracy" in card for m in members)
    assert "- The members' spread on validation: accuracy" in card
    member_ckpts = sorted((out / "members").glob("seed*/checkpoint.pt"))
    assert len(member_ckpts) == 2
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        mean = torch.stack([m(x) for m in pred.model.members]).mean(0) / pred.model.temperature
        assert torch.allclose(pred.model(x), mean)
    # the ensemble's own checkpoint gone: the members are reused by their keys, not retrained
    stamps = [p.stat().st_mtime_ns for p in member_ckpts]
    (out / "checkpoint.pt").unlink()
    (out / "metrics.json").unlink()
    caplog.set_level("INFO")
    run_experiment(cfg, None, out, data=fixture_data, cam_per_class=0)
    assert [p.stat().st_mtime_ns for p in member_ckpts] == stamps
    served = Predictor.load(out / "checkpoint.pt")
    assert isinstance(served.model, Ensemble)
    records, refused = served.predict_records([s.path for s in fixture_data.splits["test"][:4]])
    assert not refused and all(r.ood_distance is not None for r in records)  # its OOD check serves the ensemble


def test_ensemble_members_record_the_data_folder_they_were_trained_on_not_the_fixture_regression(tmp_path):
    """The members were run with data_dir=None (their data passed in), so each member's metrics.json said
    "data_dir": "fixture" under an ensemble trained on the user's folder."""
    folder = tmp_path / "chest_xray"
    shutil.copytree(fixture_dir(), folder)
    cfg = replace(apply_profile(get_config("baseline"), "smoke"), epochs=1, members=2)
    out = tmp_path / "ens"
    run_experiment(cfg, folder, out, cam_per_class=0, profile="smoke")
    parent = json.loads((out / "metrics.json").read_text())["data_dir"]
    members = [json.loads(p.read_text())["data_dir"] for p in sorted((out / "members").glob("seed*/metrics.json"))]
    assert parent != "fixture" and Path(parent) == folder.resolve()
    assert members == [parent, parent]
