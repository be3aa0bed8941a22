"""The command-line contract: --help everywhere, files written, JSON keys, exit code 2 with one line on bad input."""

import json
import shutil
import subprocess
import sys

import pytest

from pneumolib.cli import build_parser, main
from pneumolib.data.fixture import fixture_dir

COMMANDS = [
    "experiments",
    "run",
    "train",
    "evaluate",
    "predict",
    "explain",
    "card",
    "stress",
    "ablate",
    "compare",
    "bench",
]


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pneumolib", *args], capture_output=True, text=True, timeout=600, **kw)


def test_python_dash_m_help_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_experiments_lists_one_line_per_entry_with_its_diff(capsys):
    assert main(["experiments"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("01  baseline") and "(the baseline)" in lines[0]
    assert lines[8].startswith("09") and "loss: ce -> focal" in lines[8] and "fixed:0.8" in lines[8]
    # the recommended recipe is listed as its diff from the baseline, not from entry 09
    assert lines[9].startswith("10  recommended") and "normalize: none -> equalize" in lines[9]
    assert "loss:" not in lines[9]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`train` on the fixture, as a user would call it."""
    out = tmp_path_factory.mktemp("cli") / "run01"
    r = run_cli(
        "train",
        "baseline",
        "--data-dir",
        str(fixture_dir()),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--seed",
        "3",
        "--cam-per-class",
        "1",
    )
    assert r.returncode == 0, r.stderr
    yield out, r
    shutil.rmtree(out.parent, ignore_errors=True)  # not kept until the session ends (CI's disk)


def test_train_writes_checkpoint_metrics_scores_and_prints_summary(cli_run):
    out, r = cli_run
    for name in ("checkpoint.pt", "metrics.json", "scores_test.csv", "scores_val.csv", "config.json", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["epochs"] == 2 and m["config"]["seed"] == 3 and m["profile"] == "fixture"
    assert "epoch  2/2" in r.stderr and "specificity (NORMAL recall)" in r.stdout  # progress is logged to stderr


def test_evaluate_prints_report_and_writes_json(cli_run, tmp_path, cli):
    out, _ = cli_run
    js = tmp_path / "m.json"
    r = cli(
        "evaluate",
        str(out / "checkpoint.pt"),
        "--data-dir",
        str(fixture_dir()),
        "--json",
        str(js),
        "--threshold",
        "0.7",
    )
    assert r.returncode == 0, r.stderr
    assert "precision" in r.stdout
    m = json.loads(js.read_text())
    for key in ("accuracy", "sensitivity", "specificity", "auc", "threshold", "n", "confusion_matrix"):
        assert key in m
    assert m["threshold"] == 0.7 and m["n"] == 24 and sum(map(sum, m["confusion_matrix"])) == 24


def test_predict_labels_images_and_writes_cams(cli_run, tmp_path, capsys):
    out, _ = cli_run
    imgs = sorted((fixture_dir() / "test" / "PNEUMONIA").glob("*.png"))[:2]
    assert main(["predict", str(out / "checkpoint.pt"), *map(str, imgs), "--cam-dir", str(tmp_path / "cams")]) == 0
    text = capsys.readouterr().out
    assert text.count("p_pneumonia=") == 2
    assert len(list((tmp_path / "cams").glob("*_cam.png"))) == 2


def test_compare_prints_table_for_run_folders(cli_run, capsys):
    out, _ = cli_run
    assert main(["compare", str(out), str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("baseline") == 2
    m = json.loads((out / "metrics.json").read_text())["test"]
    lo, hi = m["ci95"]["accuracy"]
    assert f"{m['accuracy']:.3f} ({lo:.2f}-{hi:.2f})" in text  # every metric with its 95% interval


def test_stress_writes_stress_json_and_compare_shows_it(cli_run, capsys, tmp_path):
    out = shutil.copytree(cli_run[0], tmp_path / "run01")  # a copy: the module's run folder stays as trained
    assert main(["stress", str(out), "--split", "test"]) == 0  # the CLI's default is val (selection)
    text = capsys.readouterr().out
    assert "clean" in text and "jpeg" in text and "mean shifted" in text
    saved = json.loads((out / "stress.json").read_text())
    assert len(saved["rows"]) == 12 and saved["holdout"] == "folders"
    assert main(["compare", str(out)]) == 0
    assert "str.acc@ext" in capsys.readouterr().out


def test_train_with_early_id_holdout_records_it(tmp_path, cli):
    out = tmp_path / "early"
    r = cli("train", "baseline", "--out", str(out), "--epochs", "1", "--cam-per-class", "0", "--holdout", "early_ids")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["holdout"] == "early_ids" and any("early-ID holdout" in n for n in m["notes"])
    # a run folder trained on another holdout is not reused for this one
    r2 = cli("train", "baseline", "--out", str(out), "--epochs", "1", "--cam-per-class", "0")
    assert r2.returncode == 2 and "holds another training" in r2.stderr and "holdout: early_ids -> folders" in r2.stderr
    r3 = cli("train", "baseline", "--out", str(out), "--epochs", "1", "--cam-per-class", "0", "--retrain")
    assert r3.returncode == 0 and "reusing" not in r3.stderr
    assert json.loads((out / "metrics.json").read_text())["holdout"] == "folders"


def test_run_trains_each_experiment_and_ends_with_a_table(tmp_path, capsys):
    assert main(["run", "01", "09", "--out", str(tmp_path), "--cam-per-class", "0", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Results on the test split") :]
    assert "01 baseline" in table and "09 focal_loss_threshold_0.8" in table
    assert (tmp_path / "09_focal_loss_threshold_0.8" / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["train", "baseline", "--data-dir", "/nonexistent/xray", "--out", "{tmp}/r"],
            "/nonexistent/xray: data folder not found",
        ),
        (["train", "nope", "--out", "{tmp}/r"], "unknown experiment 'nope'"),
        (["evaluate", "{tmp}/missing.pt", "--data-dir", "{fixture}"], "missing.pt: checkpoint not found"),
        (["evaluate", "{tmp}/junk.pt", "--data-dir", "{fixture}"], "junk.pt: not a torch checkpoint"),
        (["predict", "{tmp}/junk.pt", "x.png"], "junk.pt"),
        (["compare", "{tmp}"], "no metrics.json"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    argv = [a.format(tmp=tmp_path, fixture=fixture_dir()) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pneumolib: error: ") and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreadable_image_in_predict_exits_2_naming_it(cli_run, tmp_path, cli):
    out, _ = cli_run
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = cli("predict", str(out / "checkpoint.pt"), str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_pretrained_without_weights_fails_by_default_and_is_labelled_with_flag(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PNEUMOLIB_IMAGENET_WEIGHTS", raising=False)
    r = cli("train", "pretrained", "--out", str(tmp_path / "a"), "--epochs", "1", "--cam-per-class", "0")
    assert r.returncode == 2 and "ImageNet weights for resnet18 not found" in r.stderr
    r = cli(
        "train",
        "pretrained",
        "--out",
        str(tmp_path / "b"),
        "--epochs",
        "1",
        "--cam-per-class",
        "0",
        "--allow-random-init",
    )
    assert r.returncode == 0, r.stderr
    assert "RANDOM INIT" in r.stderr  # the warning is logged
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["config"]["pretrained"] is False and "unavailable" in m["weights"]


def test_parser_defaults():
    a = build_parser().parse_args(["run"])
    assert a.experiments == ["all"] and a.out == "runs"


def test_strict_refuses_a_folder_with_an_unreadable_file(tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(fixture_dir(), root)
    (root / "train" / "NORMAL" / "IM-9999-0001.png").write_bytes(b"not a png")
    assert main(["train", "01", "--data-dir", str(root), "--out", str(tmp_path / "r"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "IM-9999-0001.png" in err and "strict" in err and err.count("\n") == 1


@pytest.mark.parametrize("layout", ["test_only", "bare_classes"])
def test_evaluate_an_external_cohort_without_train_folder(cli_run, tmp_path, layout):
    # the hidden cohort may come as DIR/test/{NORMAL,PNEUMONIA} or as DIR/{NORMAL,PNEUMONIA}: no train/ needed
    import shutil

    out, _ = cli_run
    ext = tmp_path / "external"
    shutil.copytree(fixture_dir() / "test", ext / "test" if layout == "test_only" else ext)
    js = tmp_path / "m.json"
    assert main(["evaluate", str(out / "checkpoint.pt"), "--data-dir", str(ext), "--json", str(js)]) == 0
    m = json.loads(js.read_text())
    ref = json.loads((out / "metrics.json").read_text())["test"]
    assert m["n"] == 24 and m["accuracy"] == pytest.approx(ref["accuracy"]) and m["auc"] == pytest.approx(ref["auc"])


def test_evaluate_a_folder_without_classes_is_one_line(cli_run, tmp_path, capsys):
    out, _ = cli_run
    assert main(["evaluate", str(out / "checkpoint.pt"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no test/ folder and no NORMAL/PNEUMONIA class folders" in err and err.count("\n") == 1


def test_run_with_seeds_writes_one_folder_per_seed_in_the_notebooks_layout(tmp_path, capsys):
    from pneumolib.core.runs import load_metrics
    from pneumolib.studies.catalogue import get_config

    assert (
        main(
            [
                "run",
                "baseline",
                "--seeds",
                "0",
                "1",
                "--out",
                str(tmp_path),
                "--cam-per-class",
                "0",
                "--profile",
                "smoke",
            ]
        )
        == 0
    )
    seeds = [load_metrics(tmp_path / "01_baseline" / f"seed{s}")["config"]["seed"] for s in (0, 1)]
    assert seeds == [0, 1]
    assert get_config("baseline").seed == 0  # the registry's config is untouched
    assert "01 baseline" in capsys.readouterr().out


def _choices(parser, command: str, option: str):
    sub = next(a for a in parser._actions if a.choices and command in a.choices).choices[command]  # noqa: SLF001
    return tuple(next(a for a in sub._actions if option in a.option_strings).choices)  # noqa: SLF001


def test_the_command_lines_split_holdout_and_adapt_choices_are_read_from_their_owners(monkeypatch):
    """Regression (issue 45): --split, --holdout and --adapt offered literal lists beside the code that owns the
    names; they are read from core.config's tuples, which the implementations use too."""
    from pneumolib.analysis import adapt
    from pneumolib.core import config as C
    from pneumolib.data import splits

    assert adapt.MODES is C.ADAPT_MODES and splits.HOLDOUTS is C.HOLDOUTS
    monkeypatch.setattr(C, "SPLITS", ("train", "val", "test", "extra"))
    monkeypatch.setattr(C, "HOLDOUTS", ("folders", "early_ids", "later_ids"))
    monkeypatch.setattr(C, "ADAPT_MODES", ("bn", "prior", "both", "other"))
    monkeypatch.setattr(C, "SITE_MODES", ("site", "none", "maybe"))
    p = build_parser()
    assert {_choices(p, c, "--split") for c in ("evaluate", "explain", "stress", "shortcuts", "lungs")} == {C.SPLITS}
    assert _choices(p, "train", "--holdout") == C.HOLDOUTS
    assert _choices(p, "ablate", "--holdout") == (*C.HOLDOUTS, "both")
    assert _choices(p, "evaluate", "--adapt") == C.SITE_MODES + C.ADAPT_MODES
    assert _choices(p, "predict", "--adapt") == C.SITE_MODES
