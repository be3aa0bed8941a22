import json
from dataclasses import FrozenInstanceError, replace

import pytest

from pneumolib import config as C


def test_registry_has_one_config_per_log_entry_in_order():
    entries = [c.entry for c in C.REGISTRY.values()]
    assert entries == [f"{i:02d}" for i in range(1, 10)]
    assert list(C.REGISTRY)[0] == "baseline"
    assert C.BASELINE is C.REGISTRY["baseline"]


@pytest.mark.parametrize("key,name", [("baseline", "baseline"), ("01", "baseline"), ("1", "baseline"),
                                      ("04", "rgb_grayscale_mismatch"), ("9", "focal_loss_threshold_0.8")])
def test_lookup_by_slug_or_entry_number(key, name):
    assert C.get_config(key).name == name


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(C.UnknownExperiment, match="unknown experiment 'nope'.*baseline"):
        C.get_config("nope")


@pytest.mark.parametrize("cfg", list(C.REGISTRY.values()), ids=lambda c: c.name)
def test_config_round_trips_through_json(cfg):
    again = C.ExperimentConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown config field"):
        C.ExperimentConfig.from_dict({"name": "x", "learning_rate": 1})


def test_configs_are_frozen():
    with pytest.raises(FrozenInstanceError):
        C.BASELINE.lr = 1.0


@pytest.mark.parametrize("entry,expected", [
    ("02", {"train_transforms"}),
    ("04", {"in_channels", "train_transforms"}),
    ("05", {"pretrained"}),
    ("08", {"eval_subset_per_class"}),
    ("09", {"loss", "threshold"}),
])
def test_each_entry_is_a_small_diff_of_its_predecessor(entry, expected):
    cfg = C.get_config(entry)
    assert set(C.diff(C.previous(cfg), cfg)) == expected


def test_central_focus_goes_to_the_class_the_log_meant():
    # regression: the log's `is_normal=(label == 1)` actually targets PNEUMONIA (label 1)
    assert "central_focus" in C.get_config("03").transform_for("PNEUMONIA")
    assert "central_focus" not in C.get_config("03").transform_for("NORMAL")
    assert "central_focus" in C.get_config("02").transform_for("NORMAL")


def test_training_key_ignores_evaluation_only_fields():
    assert C.get_config("07").training_key() == C.get_config("08").training_key()
    assert C.get_config("08").training_key() != C.get_config("09").training_key()
    assert replace(C.BASELINE, threshold="youden").training_key() == C.BASELINE.training_key()


@pytest.mark.parametrize("profile", list(C.PROFILES))
def test_profiles_apply_and_are_recorded(profile):
    cfg = C.apply_profile(C.BASELINE, profile)
    assert cfg.profile == profile
    for k, v in C.PROFILES[profile].items():
        assert getattr(cfg, k) == v


def test_unknown_profile_is_refused():
    with pytest.raises(KeyError, match="unknown profile"):
        C.apply_profile(C.BASELINE, "laptop")


def test_register_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        C.register(replace(C.BASELINE, entry="99"))
