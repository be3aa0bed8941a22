"""How the notebook helpers present what they show: tables no wider than a page, one line per batch of reused runs,
flags repeated per seed said once with the seeds named."""

from __future__ import annotations

import logging

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

SEEDS = (0, 1, 2, 3, 4)


def _run(seed: int, acc: float = 0.85, collapsed: bool = False) -> dict:
    hist = [
        {"epoch": e, "train_loss": 1.0, "val_loss": 1.0 / e, "val_auc": 0.9, "val_acc": 0.8, "val_share_pneumonia": 0.6}
        for e in (1, 2, 3)
    ]
    keys = ("accuracy", "sensitivity", "specificity", "auc")
    test = {k: acc for k in keys} | {"ci95": {k: [acc - 0.05, acc + 0.05] for k in keys}, "n": 100}
    test["confusion_matrix"] = [[30, 10], [5, 55]]
    lf = {
        c: {"lung_lift": 1.2, "lung_lift_ci95": [1.1, 1.3], "heart_lift": 0.9, "heart_lift_ci95": [0.8, 1.0]}
        for c in ("NORMAL", "PNEUMONIA")
    }
    return {
        "entry": "01",
        "experiment": "baseline",
        "config": {"seed": seed, "epochs": 3, "max_train_images": 40, "image_size": 64},
        "test": test,
        "val": {
            "auc": 0.5 if collapsed else 0.9,
            "confusion_matrix": [[0, 20], [0, 20]] if collapsed else [[15, 5], [4, 16]],
        },
        "threshold": 0.5,
        "best_epoch": 2,
        "history": hist,
        "weights": "random init",
        "trained_commit": "abc1234",
        "test_last_epoch": {"epoch": 3, "accuracy": 0.8, "specificity": 0.7},
        "lung_focus": lf,
        "train_seconds": 60.0,
        "stress": {"stress_accuracy_ext": 0.7, "stress_specificity": 0.6},
    }


class _Report:
    def __init__(self, seed: int):
        self.rows = [
            {
                "shift": s,
                "group": g,
                "accuracy_ext": 0.8 - seed / 100,
                "sensitivity": 0.9,
                "specificity": 0.7,
                "auc": 0.9,
            }
            for s, g in (("clean", ""), ("blur", "seen"), ("jpeg", "unseen"))
        ]


@pytest.fixture
def displayed(monkeypatch):
    """Every object the helpers hand to IPython's display, in order (the tables as the notebook shows them)."""
    import IPython.display

    out: list = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: out.append(obj))
    monkeypatch.setattr(IPython.display, "update_display", lambda obj, **kw: None)
    return out


def _tables(objs) -> list[pd.DataFrame]:
    return [o for o in objs if isinstance(o, pd.DataFrame)]


def test_every_per_seed_table_of_five_seeds_shows_at_most_8_columns_and_keeps_every_column(displayed):
    # the seed table had 13 columns and ran off the page; each table is now shown as parts of at most 8
    from pneumolib.notebook import helpers as nb

    runs = [_run(s, 0.80 + s / 100) for s in SEEDS]
    wide = {
        "seed table": nb.seed_table(runs),
        "checkpoint table": nb.checkpoint_table(runs),
        "stress table": nb.stress_table(
            {**{f"recipe, seed {s}": _Report(s) for s in SEEDS}, **{f"baseline, seed {s}": _Report(s) for s in SEEDS}}
        ),
    }
    for name, frame in wide.items():
        displayed.clear()
        nb.show(frame)
        parts = _tables(displayed)
        assert len(parts) >= 2, name
        for part in parts:
            assert len(part.columns) + part.index.nlevels <= nb.MAX_COLUMNS, (name, list(part.columns))
        shown = {c for p in parts for c in p.columns}
        assert set(frame.columns) <= shown, f"{name}: a column was dropped"
    # the views that display their own tables
    for view in (nb.lung_focus_table, nb.compare_all, lambda ms: nb.log_vs_rerun("01", ms)):
        displayed.clear()
        view(runs)
        assert _tables(displayed)
        for part in _tables(displayed):
            assert len(part.columns) + part.index.nlevels <= nb.MAX_COLUMNS, list(part.columns)
    # every seed is in the seed table's parts, each with its mean and range rows in the metrics part
    displayed.clear()
    nb.show(nb.seed_table(runs))
    metrics = _tables(displayed)[0]
    assert list(metrics.index) == [f"seed {s}" for s in SEEDS] + ["mean of 5 seeds", "range over 5 seeds"]
    assert list(_tables(displayed)[1].index) == [f"seed {s}" for s in SEEDS]  # the mean row has no training record


def test_a_table_wider_than_the_limit_is_split_into_parts_that_keep_its_index():
    from pneumolib.notebook.display import MAX_COLUMNS, table_parts

    frame = pd.DataFrame([[i * j for j in range(12)] for i in range(5)], index=[f"seed {i}" for i in range(5)])
    parts = table_parts(frame)
    assert len(parts) == 2 and all(len(p.columns) + 1 <= MAX_COLUMNS for _, p in parts)
    assert pd.concat([p for _, p in parts], axis=1).equals(frame)
    assert [t for t, _ in parts] == ["columns 1-7 of 12", "columns 8-12 of 12"]
    (title, part), *rest = table_parts(frame.iloc[:, :7])  # one that fits is shown as it is
    assert not rest and title == "" and part.equals(frame.iloc[:, :7])


def test_reused_runs_become_one_summary_line_and_stay_in_the_log_at_debug(monkeypatch, capsys, tmp_path):
    # notebook 10 printed ~150 lines for its reused runs: per run its header, 'reusing RUNS/...' and 'Grad-CAM
    # results reused from ...'
    from pneumolib.notebook import series as S
    from pneumolib.studies import experiment, target_maps
    from pneumolib.studies.catalogue import BASELINE

    def fake_run(cfg, data, d, **kw):  # as experiment.run_experiment says it: seeds 0 and 2 reused, seed 1 trains
        log = experiment.logger
        log.info("%s %s on %s; %s; weights: %s", cfg.entry, cfg.name, "fixture", "profile smoke: 64 px", "random init")
        if cfg.seed != 1:
            log.info(
                "reusing %s (same training config, holdout and data; trained at commit %s); delete it",
                d / "checkpoint.pt",
                "abc1234",
            )
            target_maps.logger.info(
                "Grad-CAM results reused from %s (same checkpoint, data and settings)", d / "explanation.npz"
            )
        else:  # training says so from its own module: the header must come out before it
            logging.getLogger("pneumolib.training.fit").info("epoch 1/1 trained")
        return cfg.seed

    log = logging.getLogger("pneumolib")
    handlers, level = list(log.handlers), log.level
    try:
        s = S.start(None, "smoke", seeds=[0, 1, 2], runs=tmp_path / "runs")  # shows the library's log in cells
        capsys.readouterr()
        monkeypatch.setattr(S, "run_experiment", fake_run)
        monkeypatch.setattr(S, "adopt_twin", lambda *a, **k: None)
        assert S.run_seeds(BASELINE, s) == [0, 1, 2]
        out = capsys.readouterr().out.splitlines()
        assert not [ln for ln in out if "reusing" in ln or "Grad-CAM results reused from" in ln]
        # the run that trains keeps its header, before its own lines; the reused ones are one line
        assert out == [
            "01 baseline on fixture; profile smoke: 64 px; weights: random init",
            "epoch 1/1 trained",
            "reused 2 finished runs from RUNS/01_baseline (seeds 0, 2; trained at commit abc1234; profile smoke: "
            "64 px; weights: random init; Grad-CAM results reused for 2); delete a run folder to retrain it",
        ]
        log.setLevel(logging.DEBUG)  # the detail is still there for whoever asks for it
        S.run_seeds(BASELINE, s)
        text = capsys.readouterr().out
        assert text.count("reusing RUNS/01_baseline/seed") == 2 and text.count("Grad-CAM results reused from") == 2
    finally:
        log.handlers[:] = handlers
        log.setLevel(level)
    # outside a notebook batch the library's own lines are untouched (the CLI keeps them)
    assert not logging.getLogger(experiment.__name__).filters


def test_reuse_line_counts_steps_times_seeds():
    from pneumolib.notebook.provenance import reuse_line

    reused = [(f"/r/ablation/step{k}/seed{s}/checkpoint.pt", "c1") for k in range(11) for s in SEEDS]
    line = reuse_line(reused, {"/r": "RUNS"}, unit="step")
    assert line.startswith("reused 55 finished runs from RUNS/ablation (11 steps x 5 seeds, seeds 0, 1, 2, 3, 4;")


def test_a_flag_repeated_per_seed_in_one_verdict_row_is_said_once_with_the_seeds_named(displayed):
    # the summary row repeated 'calls 100% of validation films PNEUMONIA' once per seed
    from pneumolib.notebook import helpers as nb
    from pneumolib.studies import verdicts as V

    runs = [_run(s, collapsed=s in (0, 2, 4)) for s in SEEDS]
    raw = " ".join(r["note"] for r in V.judge_entry("01", runs))
    assert raw.count("calls 100% of validation films PNEUMONIA") >= 3  # the verdict rule names each seed
    nb.log_vs_rerun("01", runs)
    notes = " ".join(_tables(displayed)[0]["note"])
    assert "calls 100% of validation films" not in notes
    assert "seeds 0, 2, 4 call 100% of validation films PNEUMONIA" in notes


def test_collapse_seed_flags_keeps_other_parts_and_different_phrases_apart():
    from pneumolib.notebook.display import collapse_seed_flags

    text = "1 seed(s) hold; seed 0 calls 100% of x; seed 3 calls 99% of x; seed 2 calls 100% of x"
    assert collapse_seed_flags(text) == "1 seed(s) hold; seeds 0, 2 call 100% of x; seed 3 calls 99% of x"
    assert collapse_seed_flags("no flags here") == "no flags here"


# --- figure captions: where a Grad-CAM map is hottest ----------------------------------------------------------------
def _map(peak_rc, size=64, width=2.0):
    import numpy as np

    r, c = np.mgrid[:size, :size]
    return np.exp(-((r - peak_rc[0]) ** 2 + (c - peak_rc[1]) ** 2) / (2 * width**2))


def _lungs(size=64):
    import numpy as np

    m = np.zeros((size, size), bool)
    m[12:44, 10:28] = True  # right lung (left of the image)
    m[12:44, 36:54] = True
    return m


def test_a_map_hottest_at_the_film_edge_is_called_edge_and_names_the_side():
    from pneumolib.notebook.display import hottest_region

    spot = hottest_region(_map((2, 60)), _lungs())  # a marker's corner: top right of the image
    assert spot.region == "edge" and spot.side in ("top", "right") and spot.share > 0.5
    assert hottest_region(_map((32, 1)), _lungs()).side == "left"


def test_a_map_hottest_in_the_lung_mask_is_called_lungs_and_one_on_the_heart_box_heart():
    from pneumolib.notebook.display import hottest_region

    assert hottest_region(_map((28, 18)), _lungs()).region == "lungs"
    assert hottest_region(_map((54, 32)), _lungs()).region == "heart"  # lower centre, below the lungs
    assert hottest_region(_map((8, 32)), _lungs()).region == "outside"  # above the lungs, inside the edge band's rim
    # without a usable lung mask, nothing is called lungs
    assert hottest_region(_map((28, 18)), None).region == "outside"


def test_an_empty_map_is_said_empty():
    import numpy as np

    from pneumolib.notebook.display import hottest_region

    assert hottest_region(np.zeros((16, 16)), None).region == "empty"


def test_a_cam_gallery_caption_lists_per_tile_what_lights_up():
    import numpy as np

    from pneumolib.data.dataset import Sample
    from pneumolib.notebook.display import cam_gallery_caption

    class Expl:  # the fields of cam.Explanation the caption reads
        target = "PNEUMONIA"
        samples = [Sample(f"/x/{i}.png", int(i >= 2), f"p{i}", "test") for i in range(4)]
        cams = np.stack([_map((2, 2)), _map((28, 18)), _map((28, 44)), _map((61, 40))])
        masks = np.stack([_lungs()] * 4)
        mask_ok = np.array([True, True, True, True])
        empty = np.array([False] * 4)

    text = cam_gallery_caption(Expl(), n_per_class=2)
    assert "2 of 4 tiles are hottest at the film's edge (markers?): NORMAL 1 (" in text
    assert "PNEUMONIA 2 (bottom)" in text
    assert "2 of 4 tiles are hottest in the lungs: NORMAL 2, PNEUMONIA 1" in text
    Expl.mask_ok = np.array([True, False, True, True])  # a failed mask: that tile's lungs are unknown
    assert "hottest in the lungs: PNEUMONIA 1" in cam_gallery_caption(Expl(), n_per_class=2)


def test_every_figure_in_the_numbered_notebooks_is_drawn_by_a_helper_that_captions_it():
    # a figure drawn straight from plots.* in a notebook cell had no caption
    import re
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("notebooks/[01][0-9]_*.py")):
        code = path.read_text()
        assert not re.findall(r"^\s*plots\.\w+\(", code, re.M), f"{path.name}: a figure without a caption"
        assert not re.findall(r"^\s*(plt|sns)\.", code, re.M), path.name


def test_the_caption_helpers_print_a_caption_under_their_figures(capsys):
    import matplotlib.pyplot as plt

    from pneumolib.notebook import helpers as nb

    runs = [_run(s) for s in SEEDS]
    nb.compare_all([dict(r, entry=f"0{s + 1}", experiment=f"e{s}") for s, r in zip(SEEDS, runs)])
    text = capsys.readouterr().out
    assert "Figure: every experiment's first seed" in text and "NORMAL recall runs from 0.850" in text
    nb.central_focus_demo()
    assert "Figure: left, a phantom film" in capsys.readouterr().out
    plt.close("all")


def test_the_lines_the_reuse_summary_folds_are_the_ones_the_library_writes():
    # the summary matches the library's own messages; if experiment.py rewords them, this names the drift
    import inspect

    from pneumolib.notebook.provenance import CAM_SOURCE, REUSE_SOURCE, RUN_HEADER
    from pneumolib.studies import experiment, target_maps

    code = inspect.getsource(experiment)
    assert experiment.logger.name == REUSE_SOURCE and target_maps.logger.name == CAM_SOURCE
    for line in (RUN_HEADER, '"reusing %s ('):
        assert line in code, line
    assert '"Grad-CAM results reused from %s' in inspect.getsource(target_maps)


def test_the_verdict_table_describes_the_rule_it_applies_regression(capsys):
    # the table's line still described the old envelope rule (every seed's interval on one side) after the rule
    # became the mean over seeds with a two-level interval
    from pneumolib.notebook.seed_views import rule_text

    text = rule_text(5)
    assert "5 seeds" in text and "mean over seeds" in text and "seed i against" in text and "Student's t" in text
    assert "would decide it" in text and "envelope" not in text and "every seed's" not in text
    assert len([x for x in text.split(". ") if x]) <= 3  # the count, then the rule in two sentences


def test_a_batch_of_twin_runs_says_re_evaluated_once_not_once_per_seed_regression(monkeypatch, capsys, tmp_path):
    # notebook 05 printed 'RUNS/05_pretrained/seedS trains exactly what RUNS/04_.../seedS trained ...' per seed
    import inspect

    from pneumolib.notebook import series as S
    from pneumolib.notebook.provenance import TWIN_SOURCE
    from pneumolib.studies import run_config
    from pneumolib.studies.catalogue import PRETRAINED

    message = "%s trains exactly what %s trained (config, holdout and data): its checkpoint is re-evaluated "
    assert run_config.logger.name == TWIN_SOURCE  # the summary folds the library's own line
    assert '"%s trains exactly what %s trained (config, holdout and data)' in inspect.getsource(run_config)

    def fake_twin(series, cfg, seed, d, overrides=None):
        run_config.logger.info(message + "here, not retrained", d, series.runs / "04_rgb_grayscale_mismatch" / d.name)

    log = logging.getLogger("pneumolib")
    handlers, level = list(log.handlers), log.level
    try:
        s = S.start(None, "smoke", seeds=[0, 1, 2], runs=tmp_path / "runs")
        capsys.readouterr()
        monkeypatch.setattr(S, "run_experiment", lambda cfg, *a, **k: cfg.seed)
        monkeypatch.setattr(S, "adopt_twin", fake_twin)
        S.run_seeds(PRETRAINED, s)
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "3 run folders train exactly what another entry trained (config, holdout and data): RUNS/05_pretrained "
            "from RUNS/04_rgb_grayscale_mismatch (seeds 0, 1, 2); its checkpoint is re-evaluated here, not retrained"
        ]
    finally:
        log.handlers[:] = handlers
        log.setLevel(level)


def _judged(p_improve, n=5, versus="01", entry="02"):
    """A judged claim as verdicts.judge returns it: a comparison when VERSUS, else a single arm."""
    return {
        "entry": entry,
        "claim": "NORMAL recall falls",
        "quantity": "NORMAL recall, this minus entry 01's",
        "claimed": "< -0.1",
        "mean": -0.3,
        "n": n,
        "interval": (-0.4, -0.2),
        "range": (-0.5, -0.1),
        "verdict": "holds",
        "note": "",
        "p_improve": p_improve,
        "versus": versus,
        "flags": [],
        "notebook": f"{entry}_x.ipynb",
    }


def test_the_verdict_table_shows_the_probability_of_improvement_in_words_within_8_columns():
    # the probability of improvement was computed for every comparison but shown only in 00's levers table
    from pneumolib.notebook.display import MAX_COLUMNS, table_parts
    from pneumolib.notebook.seed_views import verdict_frame

    frame = verdict_frame([_judged(0.8), _judged(None, versus="")])
    [(_, part)] = table_parts(frame)
    assert len(part.columns) + part.index.nlevels <= MAX_COLUMNS
    cells = frame.iloc[:, list(frame.columns).index("per seed (n); P(improvement)")]
    assert (
        cells.iloc[0] == "[-0.500, -0.100] (5); P(improvement) 0.80: higher than entry 01's in 20 of the 25 seed pairs"
    )  # no per-seed values recorded: their range
    assert "P(improvement)" not in cells.iloc[1]  # a single arm compares nothing
    each = verdict_frame([dict(_judged(0.8), per_seed=(-0.5, -0.3, -0.1, -0.2, -0.4))])
    assert each.iloc[0]["per seed (n); P(improvement)"].startswith("-0.500, -0.300, -0.100, -0.200, -0.400 (5); ")


def test_the_probability_of_improvement_counts_seed_pairs_and_says_ties_count_half():
    from pneumolib.studies.verdicts import improvement

    assert (
        improvement(_judged(0.5, n=3))
        == "P(improvement) 0.50: higher than entry 01's in 4.5 of the 9 seed pairs, ties counted half"
    )
    assert improvement(_judged(1.0, n=2, versus="matched_baseline")).endswith(
        "higher than matched baseline in 4 of the 4 seed pairs"
    )
    assert improvement(_judged(None)) == ""


def test_00s_claims_table_shows_the_probability_of_improvement_for_comparison_rows(displayed):
    from pneumolib.notebook import summary

    summary.show_claims([_judged(0.8), _judged(None, versus="", entry="01")], 5, "6 epochs")
    lines = displayed[0].data.splitlines()
    assert lines[0].count("|") - 1 <= 8 and "seed pairs" in lines[0]
    assert "P(improvement) 0.80: higher than entry 01's in 20 of the 25 seed pairs" in lines[2]
    assert "P(improvement)" not in lines[3] and lines[3].count("|") == lines[0].count("|")
    summary.show_claims([dict(_judged(0.8), per_seed=(-0.5, -0.3, -0.1, -0.2, -0.4))], 5, "6 epochs")
    assert "| 5: -0.500, -0.300, -0.100, -0.200, -0.400 |" in displayed[-1].data  # each seed's value, not hidden


def test_00s_figure_prints_its_caption_under_it_regression(capsys):
    # 00's figure was the only one of the series without a caption
    import matplotlib.pyplot as plt

    from pneumolib.notebook import summary

    runs = [_run(s, collapsed=s == 4) for s in SEEDS]
    runs[3]["test"] = dict(runs[3]["test"], confusion_matrix=[[1, 39], [0, 60]])  # calls 99% PNEUMONIA
    assert summary.plot_everything_pneumonia({"01": runs}) is not None
    text = capsys.readouterr().out
    assert text.startswith("Figure: one point per seed (5 seeds of 1 entries)")
    assert "1 of the 5 seeds call 95% or more of them PNEUMONIA (entries 01); 1 collapsed on validation" in text
    assert "truly is PNEUMONIA, 0.600" in text
    plt.close("all")


def test_00s_glossary_defines_the_terms_its_tables_use():
    # 00's glossary was untested: a term dropped from it would go unnoticed
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "notebooks" / "00_summary.py").read_text()
    glossary = source.split("# ## Glossary", 1)[1].split("# %%", 1)[0]
    terms = ("lift", "ROAD", "randomisation check", "acc@ext", "paired difference", "probability of improvement")
    for term in terms:
        entry = next((line for line in glossary.splitlines() if line.startswith(f"# - **{term}**: ")), "")
        assert len(entry) > len(term) + 40, f"00's glossary does not define {term}"


def test_00s_finding_says_how_many_undecided_claims_more_seeds_would_decide():
    # five seeds left most claims 'cannot tell', and 00 did not say whether training more seeds would settle them:
    # each row's power estimate is read across the undecided claims
    from pneumolib.notebook.summary import finding, more_seeds

    def open_(needed):
        return dict(_judged(None, entry="03"), verdict="cannot tell", needed=needed)

    rows = [dict(_judged(None, entry="01"), verdict="holds"), open_((8, None)), open_((30, 900)), open_((None, None))]
    rows.append(dict(_judged(None, entry="03"), verdict="cannot tell (maps not faithful)", needed=None))
    text = finding(rows)
    assert more_seeds(rows[1:]) == {10: 1, 50: 2}
    assert (
        "10 seeds would decide about 1 of those 4 and 50 seeds about 2; the other 2 would need more than 50 seeds"
        in text
    )
    rows[3] = open_((12, None))
    assert "10 seeds would decide about 1 of those 4 and 50 seeds about 3; the other 1 " in finding(rows)
    assert "seeds would decide" not in finding([rows[0]])  # nothing undecided: nothing projected


def test_00s_finding_is_plain_sentences_written_from_the_verdicts_and_changes_with_them():
    # 00's headline was a tally ('30 claims judged: 16 cannot tell, 7 does not hold, ...'), not a sentence
    from pneumolib.notebook.summary import finding
    from pneumolib.studies import verdicts as V

    def row(entry, verdict, flags=()):
        return dict(_judged(None, entry=entry), verdict=verdict, flags=list(flags))

    rows = [
        row("01", "holds"),
        row("02", "holds (collapsed seed)", [V.COLLAPSED]),
        row("03", "does not hold"),
        row("03", "cannot tell: seeds disagree"),
        row("04", "not tested"),
        row("10", "holds"),  # the recipe's own hypothesis, not the log's
    ]
    text = finding(rows)
    assert text.startswith("The re-run could test 4 of the log's 5 claims: 2 hold, 1 does not hold, and 1 cannot")
    assert "at 5 seeds" in text and "1 verdict reads a seed that collapsed or did not learn." in text
    unjudged = dict(row("03", "cannot tell (maps not faithful)"), n=0)  # no seed judged: not a seed count of 0
    assert "at 5 seeds" in finding([*rows, unjudged]) and "0-5 seeds" not in finding([*rows, unjudged])
    rows[3] = row("03", "holds")
    changed = finding(rows)
    assert changed != text and "3 hold, 1 does not hold, and 0 cannot" in changed
    assert (
        finding([row("01", "not tested")]) == "The re-run could test none of the log's 1 claims on the runs it found."
    )


def test_the_compared_entries_seed_flags_that_say_one_thing_are_said_once_regression():
    """Regression (issue 47: 00's 07 row repeated 'calls 100% of validation films ...' once per compared entry): the
    compared entries' flags that share a phrase merge into one, naming each entry's seeds."""
    from pneumolib.notebook.display import collapse_seed_flags

    flag = "(compared with) calls 100% of validation films NORMAL at its threshold"
    text = "; ".join(f"entry 0{e} seed 0 {flag}" for e in (1, 2, 4)) + "; entry 04 seed 2 " + flag
    out = collapse_seed_flags(text + "; entry 03 seed 0 (compared with) calls 100% of validation films PNEUMONIA")
    assert out.count("100% of validation films NORMAL") == 1
    assert out.startswith("seed 0 of entry 01, seed 0 of entry 02, seeds 0, 2 of entry 04 (compared with) call 100%")
    assert out.endswith("; entry 03 seed 0 (compared with) calls 100% of validation films PNEUMONIA")


def test_00s_claims_table_keeps_its_columns_when_a_quantity_holds_a_pipe_regression(displayed):
    """Regression: 07's quantity '|PNEUMONIA recall - NORMAL recall|' split its markdown row into extra columns."""
    from pneumolib.notebook import summary

    row = dict(_judged(0.8), quantity="|PNEUMONIA recall - NORMAL recall|: the smallest of entries 01-06 minus this")
    summary.show_claims([row], 5, "6 epochs")
    lines = displayed[0].data.splitlines()
    assert lines[2].replace("\\|", "").count("|") == lines[0].count("|")
