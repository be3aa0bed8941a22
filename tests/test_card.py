"""Model cards and evaluation records: every number from the run folder's files, the licence only when known."""

import json
import re
import shlex

import pytest
import yaml

from pneumolib.cli import main
from pneumolib.core.io import save_json
from pneumolib.data.fixture import fixture_dir
from pneumolib.studies.card import cohort_name, data_source, render_model_card, write_model_card


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_has_the_runs_numbers_as_printed_in_metrics_json(run_copy):
    m = json.loads((run_copy / "metrics.json").read_text())
    card = render_model_card(run_copy)
    t = m["test"]
    assert f"| accuracy | {t['accuracy']:.3f} | {t['ci95']['accuracy'][0]:.3f}-{t['ci95']['accuracy'][1]:.3f} |" in card
    assert f"| ROC AUC | {t['auc']:.3f} |" in card
    assert f"P(PNEUMONIA) >= **{m['threshold']:.3f}**" in card and "`fixed:0.5`" in card
    fm = front_matter(card)
    assert fm["license"] == "unknown" and "accuracy" in fm["metrics"]
    (res,) = fm["model-index"][0]["results"]
    assert {x["name"]: x["value"] for x in res["metrics"]}["accuracy"] == pytest.approx(t["accuracy"], abs=1e-4)


def test_card_says_random_init_unknown_licence_and_not_a_diagnostic_device(run_copy):
    card = render_model_card(run_copy)
    assert "**random init**" in card
    assert "- Licence: unknown" in card
    assert "## Out-of-scope use" in card and "not a diagnostic device" in card
    for section in (
        "Model details",
        "Intended use",
        "Training data",
        "Preprocessing",
        "Weights",
        "Decision threshold",
        "Evaluation",
        "Known limitations",
        "How to reproduce",
    ):
        assert f"## {section}" in card
    assert "resized to 64 x 64 px" in card  # from the checkpoint's preprocessing


def test_card_includes_an_evaluation_after_evaluate_was_run(run_copy, capsys):
    before = render_model_card(run_copy)
    assert "None recorded" in before
    argv = ["evaluate", str(run_copy / "checkpoint.pt"), "--data-dir", str(fixture_dir())]
    assert main(argv) == 0  # no --json
    rec_path = run_copy / "evaluations" / f"{cohort_name(fixture_dir())}.json"
    assert f"recorded in {rec_path}" in capsys.readouterr().out
    rec = json.loads(rec_path.read_text())
    for key in ("ece", "ci95", "accuracy", "command", "argv", "date", "checkpoint_threshold", "data_dir", "split"):
        assert key in rec, key
    assert rec["adapted"] is None and rec["split"] == "test"
    # regression: the record held the host process's sys.argv (pytest's, or nothing under a test worker), not the
    # command main() was given
    assert rec["command"] == "python -m pneumolib " + shlex.join(argv) and rec["argv"] == ["pneumolib", *argv]
    card = render_model_card(run_copy)
    assert "#### fixture_data" in card and "None recorded" not in card
    assert f"Command: `{rec['command']}`" in card
    assert f"- {cohort_name(fixture_dir())}: {rec['ece']:.3f}" in card  # the cohort's calibration


def test_card_renders_stress_gradcam_counts_and_command_from_whatever_the_files_hold(tmp_path):
    run = tmp_path / "r"
    save_json(
        {
            "experiment": "baseline",
            "entry": "01",
            "data_dir": "fixture",
            "weights": "ImageNet weights from /w.pth",
            "threshold": 0.6123,
            "config": {"model": "resnet18", "threshold": "youden", "seed": 0},
            "command": "python -m pneumolib train 01 --out r --seed 0",
            "data_counts": {"train": {"NORMAL": 41, "PNEUMONIA": 39}, "test": {"NORMAL": 12, "PNEUMONIA": 12}},
            "gradcam": {
                "NORMAL": {"lung_lift": 1.2345, "lung_lift_ci95": [1.1, 1.4]},
                "PNEUMONIA": {"lung_lift": 2.5432, "lung_lift_ci95": [2.0, 3.0]},
            },
            "test": {"accuracy": 0.8765, "n": 24, "threshold": 0.6123, "ece": 0.0456},
        },
        run / "metrics.json",
    )
    save_json(
        {
            "threshold": 0.6123,
            "split": "test",
            "rows": [
                {
                    "shift": "clean",
                    "group": "",
                    "accuracy": 0.9,
                    "accuracy_ext": 0.9,
                    "sensitivity": 0.9,
                    "specificity": 0.9111,
                    "auc": 0.95,
                },
                {
                    "shift": "brighter",
                    "group": "seen",
                    "accuracy": 0.6,
                    "accuracy_ext": 0.5,
                    "sensitivity": 1.0,
                    "specificity": 0.1234,
                    "auc": 0.9,
                },
            ],
            "summary": {"stress_specificity": 0.1234},
        },
        run / "stress.json",
    )
    card = render_model_card(run)  # no checkpoint: preprocessing from the config, said so
    assert "| brighter | seen | 0.600 |" in card and "falls to 0.123 (brighter)" in card
    assert "| NORMAL | 1.234 | 1.100-1.400 |" in card and "2.543" in card
    assert "| train | 41 | 39 |" in card
    assert "python -m pneumolib train 01 --out r --seed 0" in card and "reconstructed" not in card
    assert "**ImageNet-pretrained**" in card and "random init" not in card
    assert "Youden" in card and "0.612" in card and "- internal test: 0.046" in card
    assert "checkpoint (not found" in card


def test_reconstructed_command_when_metrics_has_none(run_copy):
    card = render_model_card(run_copy)
    m = json.loads((run_copy / "metrics.json").read_text())
    if m.get("command"):
        assert m["command"] in card
    else:
        assert f"python -m pneumolib train 04 --out {run_copy} --data-dir fixture --profile fixture" in card


def test_licence_is_known_only_for_the_kermany_data(tmp_path):
    assert data_source("fixture")["licence"] == "unknown"
    own = tmp_path / "my_films"
    own.mkdir()
    assert data_source(str(own))["licence"] == "unknown"
    shared = tmp_path / "data" / "xrays"
    shared.mkdir(parents=True)
    (tmp_path / "data" / "README.md").write_text("Images of Kermany, Zhang and Goldbaum, licensed CC BY 4.0.")
    assert data_source(str(shared))["licence"] == "CC BY 4.0"
    assert data_source(str(tmp_path / "elsewhere" / "chest_xray"))["license_id"] == "cc-by-4.0"


def test_cohort_names_are_file_safe_and_name_the_split_and_adaptation(tmp_path):
    odd = tmp_path / "St Mary's cohort (2024)"
    odd.mkdir()
    name = cohort_name(odd)
    assert re.fullmatch(r"St_Mary_s_cohort_2024-[0-9a-f]{8}", name)
    assert cohort_name(odd, "val") == name + "_val"
    assert cohort_name(odd, adapt="bn") == name + ".adapt-bn"
    bare = tmp_path / "hospital" / "test"
    for c in ("NORMAL", "PNEUMONIA"):
        (bare / c).mkdir(parents=True)
    assert cohort_name(bare).startswith("hospital-")  # a split folder holding the class folders: named by its parent
    assert cohort_name(bare) == cohort_name(bare.parent)


def test_records_of_two_cohorts_with_the_same_folder_name_do_not_overwrite_each_other(tmp_path):
    """Regression (hostile-input issue): /a/real and /b/real were both recorded as evaluations/real.json."""
    a, b = tmp_path / "a" / "real", tmp_path / "b" / "real"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    assert cohort_name(a) != cohort_name(b)
    assert cohort_name(a).startswith("real-") and cohort_name(b).startswith("real-")


def test_card_command_writes_the_file_and_refuses_a_folder_without_metrics(run_copy, tmp_path, capsys):
    assert main(["card", str(run_copy)]) == 0
    assert (run_copy / "MODEL_CARD.md").read_text() == render_model_card(run_copy)
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["card", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.json" in err[0] and str(empty) in err[0]
    assert not (empty / "MODEL_CARD.md").exists()


def test_write_model_card_returns_the_path(run_copy):
    p = write_model_card(run_copy)
    assert p == run_copy / "MODEL_CARD.md" and p.read_text().startswith("---\nlicense: unknown\n")


def test_card_explains_the_youden_shifted_rule(tmp_path):
    run = tmp_path / "r"
    save_json(
        {
            "experiment": "recommended",
            "entry": "10",
            "data_dir": "fixture",
            "threshold": 0.55,
            "config": {"model": "resnet18", "threshold": "youden_shifted", "seed": 0},
            "test": {"accuracy": 0.9, "n": 24, "threshold": 0.55, "ece": 0.05},
        },
        run / "metrics.json",
    )
    card = render_model_card(run)
    assert "`youden_shifted`: Youden's J on the validation split pooled with its copies" in card
    assert "seen shifts" in card
