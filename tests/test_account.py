"""Notebook 00's account of 'everything PNEUMONIA' (notebook.account) and its levers (notebook.levers)."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumolib.analysis.evaluate import choose_threshold
from pneumolib.core.scores import read_scores
from pneumolib.core.stats import SeedEffect
from pneumolib.notebook import account, levers


@pytest.fixture
def quiet_log():
    """series.start shows pneumolib's log in notebooks; leave the test session's logging as it was."""
    import logging

    log = logging.getLogger("pneumolib")
    handlers, level = list(log.handlers), log.level
    yield
    log.handlers[:] = handlers
    log.setLevel(level)


def _effect(point, low, high, p_improve=None):
    return SeedEffect(point, low, high, (point,) * 3, p_improve, 3, 400)


def _row(*, auc, called, cut_shift, called_cut, normal=(0.3, 0.2, 0.4), collapsed=(), shortcut=None, effective=0.742):
    return {
        "entry": "0X",
        "title": "constructed",
        "seeds": 3,
        "left_out": [],
        "auc": _effect(*auc),
        "called_05": _effect(*called),
        "called_cut": _effect(*called_cut),
        "cut_shift": _effect(*cut_shift),
        "normal_called_05": _effect(*normal),
        "normal_called_cut": _effect(*normal),
        "cuts": (0.7, 0.8, 0.9),
        "true_share": 0.729,
        "n_true": 299,
        "n_test": 410,
        "own_thresholds": (0.5, 0.5, 0.5),
        "prior": {
            "effective": effective,
            "split_share": 0.742,
            "n_pneumonia": 3222,
            "n_train": 4341,
            "sampler": "shuffle",
            "class_weighting": "none",
            "same_for_every_seed": True,
        },
        "kept": {
            "kept": _effect(3.0, 2.0, 4.0),
            "kept_epochs": (4, 3, 2),
            "epochs": 4,
            "collapsed": {s: "calls 100% of validation films PNEUMONIA at its threshold" for s in collapsed},
            "collapsed_share": (len(collapsed) / 3, 0.0, 1.0),
            "to_pneumonia": list(collapsed),
            "collapsed_epochs": (1,) * len(collapsed),
        },
        "shortcut": shortcut,
    }


def test_the_why_paragraph_is_written_from_the_numbers_and_changes_with_them():
    # a model that ranks well and over-calls at 0.5 until the validation threshold moves the cut
    cut = _row(
        auc=(0.98, 0.97, 0.99), called=(0.85, 0.80, 0.90), called_cut=(0.72, 0.70, 0.75), cut_shift=(-0.13, -0.2, -0.06)
    )
    # a model that barely ranks, two collapsed seeds, and a blur on NORMAL films only that predicts the label
    blur = {
        "class": "NORMAL",
        "spec": "central_focus+log_baseline",
        "auc": (0.98, 0.96, 0.99),
        "reference": (0.7, 0.66, 0.77),
    }
    shortcut = _row(
        auc=(0.6, 0.5, 0.7),
        called=(0.97, 0.9, 1.0),
        called_cut=(0.95, 0.9, 1.0),
        cut_shift=(-0.02, -0.1, 0.06),
        collapsed=(0, 2),
        shortcut=blur,
    )
    a, b = account.why_paragraph([cut]), account.why_paragraph([shortcut])
    assert a != b
    assert "0.850 [0.800, 0.900] of the test films PNEUMONIA at 0.5, more than the 0.729 that truly are" in a
    assert "ranks the films well (test AUC 0.980 [0.970, 0.990])" in a
    assert "lowers the share called PNEUMONIA to 0.720 [0.700, 0.750]" in a
    assert a.endswith(
        "The main cause here: the decision cut; the ranking is sound, and the validation threshold corrects it."
    )
    assert "nearly all of them" in b and "little better than chance (test AUC 0.600 [0.500, 0.700])" in b
    assert "2 of 3 seeds (seed 0, 2) collapsed to PNEUMONIA" in b
    assert "sharpness alone tells the classes apart with AUC 0.980 [0.960, 0.990], against 0.700 [0.660, 0.770]" in b
    assert "every test film looks like a PNEUMONIA film" in b
    assert b.endswith(
        "collapsed seeds, which fall back on the training mix, after a shortcut that points to PNEUMONIA."
    )
    # the same numbers with the blur on PNEUMONIA films: the shortcut points the other way and is said to
    other = dict(shortcut, shortcut=dict(blur, **{"class": "PNEUMONIA"}), kept=dict(shortcut["kept"], to_pneumonia=[]))
    assert "every test film looks like a NORMAL film" in account.why_paragraph([other])
    # one collapsed seed of three beside the shortcut: the shortcut is named the main cause
    one = dict(shortcut, kept=dict(shortcut["kept"], to_pneumonia=[2]))
    assert account.why_paragraph([one]).endswith("a shortcut that points to PNEUMONIA (and 1 collapsed seed).")
    # about the true share overall, but most NORMAL films called PNEUMONIA: still over-calling
    wrong = _row(auc=(0.7, 0.6, 0.8), called=(0.73, 0.7, 0.76), called_cut=(0.7, 0.6, 0.8), cut_shift=(0, -0.1, 0.1))
    wrong["normal_called_05"] = _effect(0.7, 0.6, 0.8)
    text = account.why_paragraph([wrong])
    assert (
        "about as many as the 0.729 that truly are, and 0.700 [0.600, 0.800] of the NORMAL films, most of them" in text
    )
    assert "1 call more test films PNEUMONIA than truly are, or most NORMAL films" in text
    assert account.why_paragraph([{"entry": "01", "title": "x", "seeds": 0, "missing": "no run"}]).startswith(
        "Not answered"
    )


def _scored(seed, p_test, y_test, p_val, y_val, sampler="shuffle"):
    def frame(p, y, split):  # a score file as the product writes it, read by its one reader
        n = len(p)
        df = pd.DataFrame(
            {
                "path": [f"{split}/{i}.png" for i in range(n)],
                "patient": [f"P{i // 2}" for i in range(n)],
                "split": split,
                "label": np.where(np.asarray(y) == 1, "PNEUMONIA", "NORMAL"),
                "p_pneumonia": p,
                "prediction": np.where(np.asarray(p) >= 0.5, "PNEUMONIA", "NORMAL"),
            }
        )
        with tempfile.TemporaryDirectory() as d:
            df.to_csv(Path(d) / "scores.csv", index=False)
            return read_scores(Path(d) / "scores.csv")

    m = {"config": {"seed": seed, "sampler": sampler, "epochs": 4}, "threshold": 0.5, "best_epoch": 2}
    m["data_counts"] = {"train": {"NORMAL": 100, "PNEUMONIA": 300}}
    return account.Scored(seed, m, frame(p_test, y_test, "test"), frame(p_val, y_val, "val"))


def _runs(n_seeds=3, films=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(films) % 4 != 0).astype(int)  # three quarters PNEUMONIA
    out = []
    for s in range(n_seeds):
        p = np.clip(0.35 + 0.4 * y + rng.normal(0, 0.15, films), 0.01, 0.99)  # over-calls at 0.5
        pv = np.clip(0.35 + 0.4 * y + rng.normal(0, 0.15, films), 0.01, 0.99)
        out.append(_scored(s, p, y, pv, y))
    return out, y


def test_the_cut_recounts_each_seeds_calls_at_0_5_and_at_its_own_validation_threshold():
    runs, y = _runs()
    cut = account.decision_cut(runs)
    p = np.stack([r.test["p_pneumonia"].to_numpy() for r in runs])
    cuts = [choose_threshold("balanced", y, r.val["p_pneumonia"].to_numpy()) for r in runs]
    assert cut["true_share"] == y.mean() and cut["n_true"] == int(y.sum())
    assert cut["called_05"].point == pytest.approx((p >= 0.5).mean())
    assert cut["called_cut"].point == pytest.approx(np.mean([(p[i] >= c).mean() for i, c in enumerate(cuts)]))
    assert cut["cut_shift"].point == pytest.approx(cut["called_cut"].point - cut["called_05"].point)
    assert cut["cuts"] == pytest.approx(tuple(cuts))
    assert cut["normal_called_05"].point == pytest.approx((p[:, y == 0] >= 0.5).mean())
    assert 0 <= cut["called_05"].low <= cut["called_05"].point <= cut["called_05"].high <= 1


def test_the_class_prior_is_the_splits_share_under_shuffle_and_one_half_under_the_balanced_sampler():
    shuffled = [_scored(0, [0.5], [1], [0.5], [1]).metrics]
    assert account.class_prior(shuffled)["effective"] == 0.75
    balanced = [_scored(0, [0.5], [1], [0.5], [1], sampler="balanced").metrics]
    p = account.class_prior(balanced)
    assert p["effective"] == 0.5 and p["split_share"] == 0.75 and p["n_pneumonia"] == 300


def test_a_one_seed_factor_has_no_interval_and_says_so():
    runs, _ = _runs(n_seeds=1)
    cut = account.decision_cut(runs)
    assert np.isnan(cut["called_05"].low) and account.interval_text(cut["called_05"]) == "no interval (one seed)"


def test_a_blurred_periphery_lowers_the_periphery_against_centre_sharpness():
    import torch

    from pneumolib.data.transforms import CentralFocus
    from pneumolib.notebook.one_class import sharpness

    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
    blurred = CentralFocus()(torch.from_numpy(films)[:, None])[:, 0].numpy()
    assert (sharpness(blurred, contrast=True) < sharpness(films, contrast=True) - 1).all()
    assert (sharpness(blurred) < sharpness(films)).all()


def test_only_an_entry_that_transforms_one_class_has_a_shortcut_row():
    from pneumolib.studies.catalogue import get_config

    assert [account.transformed_class(get_config(e)) for e in ("01", "02", "03", "07", "10")] == [
        None,
        "NORMAL",
        "PNEUMONIA",
        "NORMAL",
        None,
    ]
    assert account.one_class_shortcut(get_config("01"), [object()], None, 64) is None


def test_the_central_focus_blur_on_one_class_predicts_the_label_on_the_fixture_films():
    from pneumolib.data.dataset import discover
    from pneumolib.data.fixture import fixture_dir
    from pneumolib.studies.catalogue import get_config

    data = discover(fixture_dir(), seed=0)
    for entry, cls in (("02", "NORMAL"), ("03", "PNEUMONIA")):
        sc = account.one_class_shortcut(get_config(entry), data["train"], data.cache, 64, max_films=40)
        assert sc["class"] == cls and sc["contrast"] and sc["n_films"] == 40
        assert sc["auc"][1] > sc["reference"][2]  # the transform alone separates the classes beyond the films' own mix


def _fake_arms(monkeypatch, arms):
    monkeypatch.setattr(levers, "arm", lambda root, name, seeds, profile: arms.get(name, {}))


def test_a_lever_whose_runs_are_absent_says_so_and_never_shows_a_number(monkeypatch):
    _fake_arms(monkeypatch, {})
    rows = levers.levers("RUNS", [0, 1, 2], "cpu")
    by = {r["this"] + "/" + r["before"]: r for r in rows}
    assert by["abl_balanced/baseline"]["missing"].startswith("not trained in this render")
    assert by["01/02"]["missing"].startswith("not rendered")
    assert "No lever was measured in this render" in levers.levers_answer(rows)
    table = levers.levers_frame(rows)
    assert (table["seeds"] == 0).all() and not table.astype(str).isin(["nan"]).any().any()


def test_a_lever_is_the_paired_difference_in_normal_recall_over_the_seeds_both_arms_have(monkeypatch):
    runs, y = _runs()
    better = []
    for r in runs:  # the same films, every NORMAL film called NORMAL
        t = r.test.copy()
        t["prediction"] = np.where(y == 1, "PNEUMONIA", "NORMAL")
        better.append(account.Scored(r.seed, r.metrics, t, r.val))
    _fake_arms(monkeypatch, {"abl_balanced": {r.seed: r for r in better}, "baseline": {r.seed: r for r in runs}})
    row = levers.measure(levers.LEVERS[0], "RUNS", [0, 1, 2], "cpu")
    recall = np.mean([(r.test["prediction"][y == 0] == "NORMAL").mean() for r in runs])
    assert row["seeds"] == [0, 1, 2]
    assert row["normal_recall"].point == pytest.approx(1 - recall)
    assert row["called"].point == pytest.approx(
        y.mean() - np.mean([(r.test["prediction"] == "PNEUMONIA").mean() for r in runs])
    )
    text = levers.levers_answer([row])
    assert text.startswith("Measured in this render: ") and levers.LEVERS[0].name in text


def test_a_collapse_under_a_balanced_mix_is_not_blamed_on_the_mix():
    kw = dict(auc=(0.6, 0.5, 0.7), called=(0.97, 0.9, 1.0), called_cut=(0.95, 0.9, 1.0), cut_shift=(0, -0.1, 0.1))
    skewed = account.why_paragraph([_row(collapsed=(0, 1), **kw)])
    balanced = account.why_paragraph([_row(collapsed=(0, 1), effective=0.5, **kw)])
    assert "the mix's majority" in skewed and skewed.endswith("collapsed seeds, which fall back on the training mix.")
    assert "although the mix has no majority" in balanced and balanced.endswith("collapsed seeds (not the mix).")
    # regression: a collapse was called a model that 'did not learn' / 'learned little', although a collapsed seed
    # can rank well (entry 02 seed 4, validation AUC 0.901): it collapsed at its cut; the ranking is said apart
    for text in (skewed, balanced):
        assert "collapsed at its cut" in text and "did not learn" not in text and "learned little" not in text


def test_notebook_00_renders_the_account_and_the_levers_from_fixture_runs(tmp_path, quiet_log):
    # the whole path on real (phantom) runs: score files read, thresholds re-fitted, the shortcut measured on the
    # fixture's training films, the ablation's absence said; then notebook 00 rendered by papermill on those runs
    import os
    import subprocess
    import sys
    from pathlib import Path

    import nbformat

    from pneumolib.notebook import series
    from pneumolib.studies.catalogue import get_config

    runs = tmp_path / "runs"
    s = series.start(None, "smoke", "cpu", [0, 1], "epochs=1,max_train_images=40", runs)
    for entry in ("01", "02"):
        series.run_seeds(get_config(entry), s, cam_per_class=0)
    nb_dir = Path(__file__).resolve().parents[1] / "notebooks"
    out = tmp_path / "00.ipynb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNEUMOLIB_")}
    env.update(TQDM_DISABLE="1", OMP_NUM_THREADS="1", PNEUMOLIB_CACHE_DIR=str(tmp_path / "cache"))
    # the kernel imports this checkout's package, whatever else is installed
    env["PYTHONPATH"] = os.pathsep.join([str(nb_dir.parent), *filter(None, [env.get("PYTHONPATH")])])
    subprocess.run(
        [sys.executable, "-m", "papermill", str(nb_dir / "00_summary.ipynb"), str(out), "-p", "PROFILE", "smoke"]
        + ["-p", "SEEDS", "0,1", "-p", "RUNS", str(runs), "--cwd", str(nb_dir), "--log-level", "WARNING"],
        check=True,
        env=env,
        timeout=900,
    )
    cells = nbformat.read(out, as_version=4).cells
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in cells for o in c.get("outputs", [])
    )
    assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))
    assert "Of the 2 entries with runs" in text and "Entry 02 (CentralFocus blur on NORMAL images, 2 seeds)" in text
    assert "sharpness AUC, NORMAL films transformed" in text  # the one-class shortcut's row
    assert "not trained in this render" in text  # no ablation run in RUNS
    assert "the same transforms for both classes (01) instead of blur on NORMAL only (02)" in text
    # the box under the title: the finding in sentences, with the account's part, and the figure's caption
    head = next(c for c in cells if c.cell_type == "code" and 'nb.headline("00")' in c.source)
    box = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in head.get("outputs", []))
    assert box.startswith("**Finding.** The re-run could test") and "entries with runs" in box, box
    assert "Figure: one point per seed" in text


def test_00s_finding_names_the_main_cause_of_each_entry_that_over_calls():
    # 00's finding under its title says why, from the account's numbers, not only how the verdicts fell
    from pneumolib.notebook.summary import finding

    cut = _row(auc=(0.98, 0.97, 0.99), called=(0.85, 0.80, 0.90), called_cut=(0.72, 0.70, 0.75),
               cut_shift=(-0.13, -0.2, -0.06))  # fmt: skip
    fine = dict(cut, entry="0Y", called_05=_effect(0.70, 0.65, 0.74), normal_called_05=_effect(0.1, 0.05, 0.15))
    rows = [{"entry": "01", "verdict": "holds", "n": 3, "flags": []}]
    text = finding(rows, [cut, fine])
    assert text.endswith(
        "Of the 2 entries with runs, 1 call more films PNEUMONIA than truly are: the decision cut; the ranking is "
        "sound, and the validation threshold corrects it (0X)."
    )
    assert finding(rows, [fine]).endswith("Of the 1 entries with runs, 0 call more films PNEUMONIA than truly are.")
    assert account.main_causes([cut, dict(cut, entry="0Z")]) == {
        "the decision cut; the ranking is sound, and the validation threshold corrects it": ["0X", "0Z"]
    }


def test_the_cause_phrase_and_its_sentence_have_one_owner_regression():
    """main_causes cut its phrase out of _cause's sentence (strip a prefix, lower a letter): two owners of one
    wording. Every cause's sentence is now built from the phrase main_causes groups by."""
    for factors in [(1, 1, -1, 0, 0, 3, True), (1, 1, 0, 1, 1, 3, True), (1, 0, 0, 0, 2, 3, False),
                    (1, -1, 0, 0, 0, 3, True), (1, 0, 0, 0, 0, 3, True)]:  # fmt: skip
        phrase, sentence = account._cause_phrase(*factors), account._cause(*factors)
        assert phrase and phrase[:1].lower() + phrase[1:] in sentence[:1].lower() + sentence[1:]
    assert account._cause_phrase(0, 1, 0, 0, 0, 3, True) is None
    assert account._cause(0, 1, 0, 0, 0, 3, True) == "So this entry does not call everything PNEUMONIA."


def _paths(log_changed, imagenet_changed, imagenet_called=0.95, plain_called=0.78):
    from pneumolib.studies.verdict_estimates import CHECKPOINT_PATH, IMAGENET_PATH, LOG_PATH

    changed, called = "share of predictions changed", "share predicted PNEUMONIA"
    return {
        CHECKPOINT_PATH: {called: plain_called, changed: 0.0},
        LOG_PATH: {called: plain_called, changed: log_changed},
        IMAGENET_PATH: {called: imagenet_called, changed: imagenet_changed},
    }


def test_00s_account_says_what_entry_04_found_at_inference_regression():
    # 00 said where the model over-called, never what 04 found: the log's greyscale path changed no prediction,
    # and ImageNet normalisation at inference alone called most films PNEUMONIA
    from pneumolib.studies.drift import inference_shares

    runs = [{"inference_paths": _paths(0.0, c)} for c in (0.20, 0.25, 0.30)]
    shares = inference_shares(runs)
    assert shares["log_changed"] == [0.0] * 3 and shares["imagenet_changed"] == [0.20, 0.25, 0.30]
    assert inference_shares(runs + [{}]) is None  # a run without them: not measured, never a partial mean
    row = _row(auc=(0.98, 0.97, 0.99), called=(0.85, 0.80, 0.90), called_cut=(0.72, 0.70, 0.75),
               cut_shift=(-0.13, -0.2, -0.06))  # fmt: skip
    row["inference"] = {k: account.per_run(v) for k, v in shares.items()}
    text = account.entry_paragraph(row)
    assert "the log's greyscale path (the channel mismatch it blamed) changed 0.000" in text
    assert "normalisation at inference, not the channel mismatch, is what moves the calls" in text
    factors = [f[0] for f in account._factor_rows(row)]
    assert "inference: predictions changed by ImageNet normalisation" in factors
    swapped = {k: account.per_run(v) for k, v in inference_shares([{"inference_paths": _paths(c, 0.0)} for c in (0.2, 0.25, 0.3)]).items()}  # fmt: skip
    assert "the channel mismatch moves more calls" in account.entry_paragraph(dict(row, inference=swapped))
    assert "At inference" not in account.entry_paragraph(dict(row, inference={}))  # other entries: nothing said


def test_the_account_says_when_the_checkpoint_rule_kept_epoch_1_of_a_seed_that_did_not_collapse_regression():
    """Regression (issue 47): 00 never said that the checkpoint rule kept epoch 1 on 03 and 06; the account named the
    kept epoch only for collapsed seeds. A seed that kept epoch 1 of several without collapsing is now said; a
    collapsed one stays in the collapse clause, and a one-epoch budget has no 'first of several' to say."""
    m = lambda seed, best, epochs=4: {"config": {"seed": seed, "epochs": epochs}, "best_epoch": best}  # noqa: E731
    kept = account.kept_and_collapsed([m(0, 1), m(1, 3), m(2, 1)])
    assert kept["first_epoch"] == [0, 2]
    assert account.kept_and_collapsed([m(0, 1, epochs=1)])["first_epoch"] == []
    kw = dict(called_cut=(0.72, 0.70, 0.75), cut_shift=(-0.13, -0.2, -0.06))
    row = _row(auc=(0.98, 0.97, 0.99), called=(0.85, 0.80, 0.90), **kw)
    row["kept"]["first_epoch"] = [0, 2]
    assert "on seed 0, 2 the checkpoint rule (lowest validation loss) kept epoch 1 of 4" in account.why_paragraph([row])
    assert "kept epoch 1 of" not in account.why_paragraph(
        [_row(auc=(0.98, 0.97, 0.99), called=(0.85, 0.80, 0.90), **kw)]
    )


def test_the_balanced_sampler_alone_is_measured_with_both_arms_cut_at_half_regression(monkeypatch):
    """Regression (issue 47 audit): 00's one balanced-sampler lever compared abl_balanced (sampler and Youden's
    threshold) with the baseline, so the sampler alone was never measured. Its own lever cuts both arms' scores at
    0.5: a run whose Youden cut calls every NORMAL film NORMAL while its scores at 0.5 do not gains nothing there."""
    runs, y = _runs()
    youden = []
    for r in runs:  # the same scores as the baseline, a different decision rule: every NORMAL film called NORMAL
        t = r.test.copy()
        t["prediction"] = np.where(y == 1, "PNEUMONIA", "NORMAL")
        youden.append(account.Scored(r.seed, r.metrics, t, r.val))
    _fake_arms(monkeypatch, {"abl_balanced": {r.seed: r for r in youden}, "baseline": {r.seed: r for r in runs}})
    alone = next(lv for lv in levers.LEVERS if lv.at_half)
    assert alone.this == "abl_balanced" and alone.before == "baseline"
    row = levers.measure(alone, "RUNS", [0, 1, 2], "cpu")
    assert row["normal_recall"].point == pytest.approx(0.0) and row["called"].point == pytest.approx(0.0)
    with_rule = levers.measure(levers.LEVERS[0], "RUNS", [0, 1, 2], "cpu")
    assert with_rule["normal_recall"].point > 0  # the decision rule's part, which the lever alone leaves out
    assert "(both at 0.5)" in levers.levers_frame([row]).loc[alone.name, "compared"]
