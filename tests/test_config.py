import json
from dataclasses import replace

import pytest

from pneumolib.core import config as C
from pneumolib.studies import catalogue


def test_registry_has_the_log_entries_in_order_then_the_recommended_recipe():
    entries = [c.entry for c in catalogue.REGISTRY.values()]
    assert entries == [f"{i:02d}" for i in range(1, 11)]
    assert list(catalogue.REGISTRY)[-1] == "recommended"
    assert list(catalogue.REGISTRY)[0] == "baseline"
    assert catalogue.BASELINE is catalogue.REGISTRY["baseline"]


@pytest.mark.parametrize(
    "key,name",
    [
        ("baseline", "baseline"),
        ("01", "baseline"),
        ("1", "baseline"),
        ("04", "rgb_grayscale_mismatch"),
        ("9", "focal_loss_threshold_0.8"),
        ("10", "recommended"),
        ("abl_equalize", "abl_equalize"),
    ],
)
def test_lookup_by_slug_or_entry_number(key, name):
    assert catalogue.get_config(key).name == name


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(catalogue.UnknownExperiment, match="unknown experiment 'nope'.*baseline"):
        catalogue.get_config("nope")


@pytest.mark.parametrize("cfg", list(catalogue.REGISTRY.values()), ids=lambda c: c.name)
def test_config_round_trips_through_json(cfg):
    again = C.ExperimentConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown config field"):
        C.ExperimentConfig.from_dict({"name": "x", "learning_rate": 1})


@pytest.mark.parametrize(
    "field,value,allowed",
    [
        ("scheduler", "cosin", "none, cosine"),  # regression: a typo used to mean "no schedule", silently
        ("loss", "hinge", "ce, focal"),
        ("optimizer", "adamm", "adam, adamw, sgd"),
        ("sampler", "balance", "shuffle, balanced"),
        ("normalize", "zscore", "none, imagenet, per_image, equalize"),
        ("class_weighting", "inverse", "none, balanced"),
        ("threshold", "youdn", "fixed:T, youden, youden_shifted, balanced, sensitivity:S"),
        ("threshold", "youden_shifted:0.3", "youden_shifted"),
        ("threshold", "fixed:1.5", "fixed:T"),
        ("threshold", "sensitivity:x", "sensitivity:S"),
        ("profile", "laptop", "fixture, cpu, gpu, full"),
        ("model", "vgg16", "resnet18"),
    ],
)
def test_bad_config_values_are_refused_at_replace_time_naming_field_value_and_choices(field, value, allowed):
    with pytest.raises(ValueError) as e:
        replace(catalogue.BASELINE, **{field: value})
    assert f"{field}={value!r}" in str(e.value) and allowed in str(e.value)


def test_unknown_transform_name_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="'robus'.*not one of: none, log_baseline"):
        replace(catalogue.BASELINE, train_transforms=(("NORMAL", "central_focus+robus"), ("PNEUMONIA", "robust")))
    with pytest.raises(ValueError, match="must name each of NORMAL, PNEUMONIA"):
        replace(catalogue.BASELINE, train_transforms=(("NORMAL", "robust"),))


@pytest.mark.parametrize(
    "field,value",
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("image_size", 16),
        ("label_smoothing", 1.0),
        ("focal_alpha", 1.5),
        ("max_train_images", 0),
    ],
)
def test_out_of_range_numbers_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        replace(catalogue.BASELINE, **{field: value})


def test_every_registered_and_ablation_config_and_profile_is_valid():
    for cfg in [*catalogue.REGISTRY.values(), *catalogue.ABLATIONS.values()]:
        for profile in C.PROFILES:
            C.apply_profile(cfg, profile)  # validated on construction
    assert set(C.PROFILES) == set(C.PROFILE_NAMES)


def test_transform_and_normalisation_names_match_their_implementations():
    from pneumolib.data import augment, transforms

    assert set(augment.BATCHED) == set(C.TRANSFORM_NAMES)  # what training runs: every name
    assert set(transforms.LOG_TRANSFORMS) < set(C.TRANSFORM_NAMES)  # the log's own per-sample references
    assert set(transforms.NORMALIZE) == set(C.NORMALIZATIONS)


@pytest.mark.parametrize(
    "entry,expected",
    [
        ("02", {"train_transforms"}),
        ("04", {"in_channels"}),  # 04 changes the baseline (catalogue.MODIFIES), not 03
        ("07", {"train_transforms"}),
        ("05", {"pretrained"}),
        ("08", {"eval_subset_per_class"}),
        ("09", {"loss", "threshold"}),
    ],
)
def test_each_entry_is_a_small_diff_of_its_predecessor(entry, expected):
    cfg = catalogue.get_config(entry)
    assert set(C.diff(catalogue.previous(cfg), cfg)) == expected


def test_central_focus_goes_to_the_class_the_log_meant():
    # regression: the log's `is_normal=(label == 1)` actually targets PNEUMONIA (label 1)
    assert "central_focus" in catalogue.get_config("03").transform_for("PNEUMONIA")
    assert "central_focus" not in catalogue.get_config("03").transform_for("NORMAL")
    assert "central_focus" in catalogue.get_config("02").transform_for("NORMAL")


def test_training_key_ignores_evaluation_only_fields():
    assert catalogue.get_config("07").training_key() == catalogue.get_config("08").training_key()
    assert catalogue.get_config("08").training_key() != catalogue.get_config("09").training_key()
    assert replace(catalogue.BASELINE, threshold="youden").training_key() == catalogue.BASELINE.training_key()


@pytest.mark.parametrize("profile", list(C.PROFILES))
def test_profiles_apply_and_are_recorded(profile):
    cfg = C.apply_profile(catalogue.BASELINE, profile)
    assert cfg.profile == profile
    for k, v in C.PROFILES[profile].items():
        assert getattr(cfg, k) == v


def test_unknown_profile_is_refused():
    with pytest.raises(KeyError, match="unknown profile"):
        C.apply_profile(catalogue.BASELINE, "laptop")


def test_register_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        catalogue.register(replace(catalogue.BASELINE, entry="99"))


def test_recommended_is_a_diff_from_the_baseline():
    assert catalogue.previous(catalogue.RECOMMENDED) is catalogue.BASELINE
    changed = set(C.diff(catalogue.BASELINE, catalogue.RECOMMENDED))
    assert {"train_transforms", "normalize", "sampler", "threshold", "tta"} <= changed
    assert "pretrained" not in changed and not catalogue.RECOMMENDED.pretrained  # the goal is from random init
    assert "fixed" not in catalogue.RECOMMENDED.threshold  # the threshold is learnt from the training data's val split


def test_last_ablation_step_is_the_recommended_recipe_at_the_ablation_budget():
    last = list(catalogue.ABLATIONS.values())[-1]
    # the ablation compares single networks; the recipe serves three seeds of its last step as one
    assert set(C.diff(last, catalogue.RECOMMENDED)) == {"epochs", "members"} and last.members == 1
    assert C.apply_profile(last, "cpu").epochs < C.apply_profile(catalogue.RECOMMENDED, "cpu").epochs


@pytest.mark.parametrize(
    "name,expected",
    [
        ("abl_balanced", {"sampler", "threshold"}),
        ("abl_robust_aug", {"train_transforms"}),
        ("abl_per_image", {"normalize"}),
        ("abl_equalize", {"normalize"}),
        ("abl_regularised", {"label_smoothing", "optimizer", "weight_decay", "scheduler"}),
        ("abl_tta", {"tta"}),
        ("abl_sharpness", {"train_transforms"}),
        ("abl_youden_shifted", {"threshold"}),
        ("abl_lungs", {"crop"}),
        ("abl_lung_mask", {"crop", "normalize"}),
        ("abl_balanced_threshold", {"threshold"}),
    ],
)
def test_each_ablation_step_changes_one_lever(name, expected):
    steps = [catalogue.BASELINE, *catalogue.ABLATIONS.values()]
    parent = {"abl_per_image": "abl_robust_aug", "abl_equalize": "abl_robust_aug"}.get(name)
    before = catalogue.get_config(parent) if parent else steps[steps.index(catalogue.ABLATIONS[name]) - 1]
    assert set(C.diff(before, catalogue.ABLATIONS[name])) == expected


def test_ablations_stay_out_of_the_main_job():
    assert not set(catalogue.ABLATIONS) & set(catalogue.REGISTRY)


def test_recommended_cpu_profile_uses_every_image_and_more_epochs():
    cfg = C.apply_profile(catalogue.RECOMMENDED, "cpu")
    assert (cfg.image_size, cfg.epochs, cfg.max_train_images, cfg.profile) == (128, 20, None, "cpu")
    assert C.apply_profile(catalogue.RECOMMENDED, "gpu").image_size == 224
    # other experiments keep the generic cpu profile
    assert C.apply_profile(catalogue.BASELINE, "cpu").max_train_images == C.PROFILES["cpu"]["max_train_images"]
