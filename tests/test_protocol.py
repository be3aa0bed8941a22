"""Notebook 10's evidence: the steps scored three ways, and the check that a protocol orders the anchor pair."""

from dataclasses import replace

from pneumolib.core.runs import ablation_dir
from pneumolib.studies import protocol as P
from pneumolib.studies.catalogue import BASELINE, get_config


def _row(name, folders_acc, stress_acc, early_acc, spec=0.8):
    return {
        "name": name,
        "title": name,
        "folders": {
            "accuracy": folders_acc,
            "sensitivity": 0.9,
            "specificity": spec,
            "auc": 0.95,
            "accuracy_ext": 0.8,
            "threshold": 0.5,
            "n": 10,
        },
        "stress": {"stress_accuracy_ext": stress_acc, "stress_specificity": spec, "stress_auc": 0.9},
        "early_ids": {
            "accuracy": early_acc,
            "sensitivity": 0.9,
            "specificity": spec,
            "auc": 0.9,
            "accuracy_ext": early_acc,
            "threshold": 0.5,
            "n": 10,
        },
    }


def test_agreement_flags_a_protocol_that_orders_the_anchor_pair_wrongly():
    # the random split prefers the log-style baseline; the stress test and holdout prefer strong augmentation
    rows = [_row(P.ANCHOR_LOW, 0.97, 0.80, 0.80), _row(P.ANCHOR_HIGH, 0.95, 0.90, 0.90), _row("x", 0.96, 0.85, 0.85)]
    text = P.protocol_agreement(rows)
    line = {ln.split("  ")[0]: ln for ln in text.splitlines()}
    assert line["random split: accuracy"].rstrip().endswith("WRONG (0/1)")
    assert line["stress test: acc@ext"].rstrip().endswith("right (1/1)")
    assert "1.00" in line["stress test: acc@ext"]  # same order as the early-ID holdout: Spearman 1
    assert "-1.00" in line["random split: accuracy"]  # the exact reverse order
    assert "n/a (constant)" in line["random split: NORMAL recall"]  # equal everywhere: no made-up correlation
    assert "nan" not in text


def test_without_the_early_id_holdout_there_is_no_spearman_column_regression():
    # notebook 10 printed a Spearman column of nan x4 and an empty legend entry when the holdout was not trained
    import matplotlib

    matplotlib.use("Agg")
    rows = [_row(P.ANCHOR_LOW, 0.97, 0.80, 0.80), _row(P.ANCHOR_HIGH, 0.95, 0.90, 0.90)]
    for r in rows:
        r.pop("early_ids")
    text = P.protocol_agreement(rows)
    assert "Spearman vs" not in text and "nan" not in text and "no Spearman column" in text
    fig = P.plot_protocols(rows)
    labels = [t.get_text() for a in fig.axes for t in a.get_legend().get_texts()]
    assert labels and not any("early-ID" in t for t in labels)


def test_ablation_frame_has_one_row_per_step_and_each_protocols_columns():
    rows = [_row(P.ANCHOR_LOW, 0.97, 0.80, 0.80), _row(P.ANCHOR_HIGH, 0.95, 0.90, 0.91)]
    df = P.ablation_frame(rows)
    assert list(df.index) == [P.ANCHOR_LOW, P.ANCHOR_HIGH]
    assert df.loc[P.ANCHOR_HIGH, ("early-ID holdout", "acc@ext")] == 0.91
    assert df.loc[P.ANCHOR_LOW, ("random split", "accuracy")] == 0.97
    assert P.ablation_frame([]).empty
    assert df[("", "seeds")].dtype.kind == "i"  # a count of seeds, shown as 1, not 1.0


def test_run_folders_share_notebook_01_baseline_and_separate_the_holdouts(tmp_path):
    assert ablation_dir(tmp_path, BASELINE, "folders") == tmp_path / "01_baseline" / "seed0"  # notebook 01's
    assert ablation_dir(tmp_path, BASELINE, "early_ids") == tmp_path / "early_ids" / "baseline" / "seed0"
    assert ablation_dir(tmp_path, get_config("abl_tta"), "folders") == tmp_path / "ablation" / "abl_tta" / "seed0"
    two = replace(get_config("abl_tta"), seed=2)
    assert ablation_dir(tmp_path, two, "folders") == tmp_path / "ablation" / "abl_tta" / "seed2"
    assert ablation_dir(tmp_path, replace(BASELINE, seed=2), "folders") == tmp_path / "01_baseline" / "seed2"


def test_the_anchor_order_is_judged_seed_by_seed_and_says_when_seeds_disagree():
    def pooled(name, accs):
        return P.pool_seeds(name, name, {s: _row(name, a, a, a) for s, a in enumerate(accs)})

    score = P.PROTOCOL_SCORES["random split: accuracy"]
    low = pooled(P.ANCHOR_LOW, [0.90, 0.90, 0.90])
    assert P.anchor_order(low, pooled(P.ANCHOR_HIGH, [0.91, 0.95, 0.92]), score) == "right (3/3)"
    assert P.anchor_order(low, pooled(P.ANCHOR_HIGH, [0.80, 0.85, 0.89]), score) == "WRONG (0/3)"
    # the means (0.9067 > 0.90) would say 'right': one seed orders the pair the other way
    assert P.anchor_order(low, pooled(P.ANCHOR_HIGH, [0.95, 0.89, 0.88]), score) == "seeds disagree (1/3)"
    row = pooled(P.ANCHOR_HIGH, [0.80, 0.90, 1.00])
    assert row["seeds"] == 3 and abs(row["folders"]["accuracy"] - 0.90) < 1e-12


def test_ablation_starts_at_the_baseline_and_ends_at_the_recommended_recipe():
    steps = P.ablation_configs()
    assert steps[0] is BASELINE and steps[-1].name == "abl_balanced_threshold"
    assert P.ANCHOR_HIGH in [c.name for c in steps]


def test_score_steps_trains_each_step_under_both_holdouts_and_stress_tests_it(tmp_path):
    configs = [BASELINE, get_config("abl_robust_aug")]
    rows = P.score_steps(None, tmp_path, configs=configs, overrides={"epochs": 1}, seeds=(0, 1))
    assert [r["name"] for r in rows] == ["baseline", "abl_robust_aug"]
    for r in rows:
        assert set(r) >= {"folders", "stress", "early_ids"}
        assert 0 <= r["early_ids"]["specificity"] <= 1 and "stress_accuracy_ext" in r["stress"]
        assert sorted(r["by_seed"]) == [0, 1] and r["seeds"] == 2
        one = [r["by_seed"][s]["folders"]["specificity"] for s in (0, 1)]
        assert abs(r["folders"]["specificity"] - sum(one) / 2) < 1e-12  # the row is the seeds' mean
    for seed in (0, 1):
        assert (tmp_path / "ablation" / "abl_robust_aug" / f"seed{seed}" / "stress.json").is_file()
        assert (tmp_path / "early_ids" / "abl_robust_aug" / f"seed{seed}" / "checkpoint.pt").is_file()
        assert (tmp_path / "01_baseline" / f"seed{seed}" / "checkpoint.pt").is_file()  # notebook 01's folders
    # each protocol scored its own test split: the early-ID one is the earliest patients, none of them trained on
    from pneumolib.data.dataset import prepare
    from pneumolib.data.fixture import fixture_dir

    early = prepare(fixture_dir(), seed=0, holdout="early_ids", image_size=64)
    assert not {s.patient for s in early["test"]} & {s.patient for s in early["train"] + early["val"]}
    assert all(r["early_ids"]["n"] == len(early["test"]) != r["folders"]["n"] for r in rows)
    # a second call reuses every run folder
    again = P.score_steps(None, tmp_path, configs=configs, overrides={"epochs": 1}, seeds=(0, 1))
    assert again == rows


def test_budget_of_the_recommended_cpu_profile_is_longer_than_the_ablation_budget():
    rec, step = P.budget_of(get_config("recommended"), "cpu"), P.budget_of(get_config("abl_tta"), "cpu")
    assert rec["epochs"] > step["epochs"] and rec["max_train_images"] is None and step["max_train_images"]
    assert rec["image_size"] == step["image_size"]


def test_matched_baseline_trains_the_baseline_with_the_recipe_budget(tmp_path):
    import json

    row = P.matched_baseline(None, tmp_path, profile="fixture", seed=1)
    cfg = json.loads((tmp_path / "ablation" / "baseline_at_recommended_budget" / "seed1" / "config.json").read_text())
    assert cfg["seed"] == 1 and row["metrics"]["stress"] == row["stress"]  # what the verdicts read
    assert cfg["name"] == "baseline" and cfg["train_transforms"] == [
        ["NORMAL", "log_baseline"],
        ["PNEUMONIA", "log_baseline"],
    ]
    for k, v in P.budget_of(get_config("recommended"), "fixture").items():
        assert cfg[k] == v
    assert set(row) >= {"folders", "stress"} and "stress_specificity" in row["stress"]


def test_score_steps_keeps_the_baseline_lung_focus_regression(tmp_path):
    # regression: scoring the ablation re-evaluated notebook 01's run folder without Grad-CAM and wrote a
    # metrics.json that had lost its lung focus
    import json

    P.score_steps(None, tmp_path, configs=[BASELINE], overrides={"epochs": 1}, holdouts=("folders",))
    m = json.loads((tmp_path / "01_baseline" / "seed0" / "metrics.json").read_text())
    assert "lung_focus" in m and m["lung_focus"]["NORMAL"]["n"] > 0


def test_ablate_command_trains_the_asked_steps_and_prints_the_table(tmp_path, capsys):
    # 'ablate' replaced the two shell loops in tools/: it trains (or reuses) each step and scores it
    from pneumolib.cli import main

    args = [
        "ablate",
        "--runs",
        str(tmp_path),
        "--steps",
        "baseline",
        "abl_balanced",
        "--holdout",
        "folders",
        "--profile",
        "smoke",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "abl_balanced" in out and "stress test" in out
    assert (tmp_path / "01_baseline" / "seed0" / "checkpoint.pt").is_file()
    assert (tmp_path / "ablation" / "abl_balanced" / "seed0" / "stress.json").is_file()
    mtime = (tmp_path / "ablation" / "abl_balanced" / "seed0" / "checkpoint.pt").stat().st_mtime_ns
    assert main(args) == 0  # a second call reuses the finished runs
    assert (tmp_path / "ablation" / "abl_balanced" / "seed0" / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_experiments_lists_the_ablation_chain(capsys):
    from pneumolib.cli import main

    assert main(["experiments", "--ablations"]) == 0
    out = capsys.readouterr().out
    assert "abl_equalize" in out and "normalize: none -> equalize" in out


def test_a_step_that_only_changes_the_decision_rule_reuses_the_earlier_steps_weights(tmp_path):
    # abl_youden_shifted trains exactly what abl_sharpness trains: its folder starts from that checkpoint, and the
    # checkpoint it keeps carries its own config and threshold (which its stress test reads)
    import json

    import torch

    from pneumolib.models.checkpoint import read_checkpoint

    configs = [get_config("abl_sharpness"), get_config("abl_youden_shifted")]
    rows = P.score_steps(None, tmp_path, configs=configs, profile="smoke", holdouts=("folders",))
    a, b = (tmp_path / "ablation" / n / "seed0" for n in ("abl_sharpness", "abl_youden_shifted"))
    ca, cb = read_checkpoint(a / "checkpoint.pt"), read_checkpoint(b / "checkpoint.pt")
    assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"])
    assert cb["config"]["name"] == "abl_youden_shifted" and cb["config"]["threshold"] == "youden_shifted"
    assert (
        cb["threshold"] == rows[1]["folders"]["threshold"] == json.loads((b / "stress.json").read_text())["threshold"]
    )
    assert "history" in cb["extra"]  # the training record came along


def test_budget_words_is_the_one_phrasing_of_a_budget(capsys):
    from pneumolib.notebook import helpers as nb
    from pneumolib.studies.protocol import budget_of, budget_words

    assert (
        budget_words({"image_size": 64, "epochs": 1, "max_train_images": None})
        == "1 epoch of every training image per epoch at 64 px"
    )
    b = budget_of(get_config("baseline"), "cpu")
    words = budget_words(b)
    assert words.startswith(f"{b['epochs']} epochs of ") and words.endswith(f" px, batch {b['batch_size']}")
    nb.budget(get_config("baseline"), "cpu")
    assert capsys.readouterr().out.strip() == f"baseline under profile cpu: {words}"


def test_an_ablation_step_adopts_a_finished_run_of_the_same_training_outside_the_ablation_regression(tmp_path):
    # the series trained abl_lung_mask's three seeds again although notebook 10's recipe runs had trained exactly
    # those weights (the two differ only in the threshold rule): the step looked among earlier steps only
    from pneumolib.models.checkpoint import save_checkpoint
    from pneumolib.models.networks import build_model
    from pneumolib.studies.experiment import data_fingerprint, resolve_config

    want, _ = resolve_config(replace(get_config("recommended"), seed=0), "fixture", None, "random_init")
    recipe = tmp_path / "10_recommended" / "seed0"
    save_checkpoint(
        recipe / "checkpoint.pt",
        build_model(in_channels=want.in_channels),
        want,
        0.5,
        {"holdout": "folders", "data_fingerprint": data_fingerprint(None, want)},
    )
    (recipe / "metrics.json").write_text("{}")
    step = replace(get_config("abl_lung_mask"), seed=0)
    d = ablation_dir(tmp_path, step)
    assert P.same_training(d, [], step, None, "fixture", None, "folders") is None  # earlier steps only: none
    assert not d.exists()
    assert P.same_training(d, [], step, None, "fixture", None, "folders", tmp_path) == recipe
    assert (d / "checkpoint.pt").read_bytes() == (recipe / "checkpoint.pt").read_bytes()
    other = replace(get_config("abl_lungs"), seed=0)  # another training: never adopted
    assert P.same_training(ablation_dir(tmp_path, other), [], other, None, "fixture", None, "folders", tmp_path) is None


def test_an_ablation_step_adopts_the_recipe_ensembles_member_of_its_seed_regression(tmp_path):
    # notebook 10's recipe became a three-member seed ensemble: its folder's checkpoint is no single network, so
    # abl_lung_mask's five seeds were queued to train again although member S of ensemble S trained exactly step S
    from pneumolib.models.checkpoint import save_checkpoint
    from pneumolib.models.networks import build_model
    from pneumolib.studies.experiment import data_fingerprint, resolve_config

    one, _ = resolve_config(replace(get_config("recommended"), seed=0), "fixture", None, "random_init")
    ens = replace(one, members=3)  # the fixture profile trains one network; the series' recipe is three
    folder = tmp_path / "10_recommended" / "seed0"
    runs = [(folder, ens)] + [
        (folder / "members" / f"seed{k}", replace(ens, members=1, seed=k)) for k in range(3)
    ]  # member k of ensemble 0, its own seed k
    for d, cfg in runs:
        net = build_model(in_channels=cfg.in_channels)
        save_checkpoint(
            d / "checkpoint.pt", net, cfg, 0.5, {"holdout": "folders", "data_fingerprint": data_fingerprint(None, cfg)}
        )
        (d / "metrics.json").write_text("{}")
    step = replace(get_config("abl_lung_mask"), seed=0)
    d = ablation_dir(tmp_path, step)
    assert P.same_training(d, [], step, None, "fixture", None, "folders", tmp_path) == folder / "members" / "seed0"
    one = replace(get_config("abl_lung_mask"), seed=1)  # seed 1's step: only seed1/ folders are searched
    assert P.same_training(ablation_dir(tmp_path, one), [], one, None, "fixture", None, "folders", tmp_path) is None
