"""Notebook 10's cohort claim in two rows: the recipe as the record measured it, judged from the record alone with its
adapted figures beside it, and the present recipe, judged only by a measurement of its own training config."""

import json
from dataclasses import asdict, replace
from pathlib import Path

from pneumolib.core.config import apply_profile
from pneumolib.core.stats import wilson
from pneumolib.studies import verdicts as V
from pneumolib.studies.catalogue import RECOMMENDED
from pneumolib.studies.verdicts import FAILS, HOLDS, NOT_TESTED

ROOT = Path(__file__).resolve().parents[1]
RECIPES = json.loads((ROOT / "docs" / "external_cohort" / "recipes.json").read_text())["recipes"]
RECORD = json.loads((ROOT / "docs" / "external_cohort" / "measurements.json").read_text())["measurements"]


def _runs(**change):
    """The present recipe's runs (seeds 0-2, cpu profile) as metrics.json's config records them."""
    return [{"config": asdict(replace(apply_profile(RECOMMENDED, "cpu"), seed=s, **change))} for s in (0, 1, 2)]


def _entry(commit, config, spec, adapted=None, notes=None):
    out = {"commit": commit, "config": config, "cohort_specificity": spec, "n_normal": 234}
    out["cohort_adapted_specificity"] = adapted or {}
    if notes:
        out["cohort_adapted_notes"] = notes
    return out


def _rows(record, runs):
    rows = V.judge_entry("10", runs, V.cohort_reference("10", record, runs))
    measured = next(r for r in rows if r["on_record"])
    present = next(r for r in rows if not r["on_record"] and "cohort" in r["claim"])
    return measured, present


def test_the_cohort_claim_for_the_measured_recipe_reads_the_record_not_the_renders_runs_regression():
    # the ensemble recipe's cohort row said 'not tested' and nothing else, although the record holds a measurement of
    # the recipe as it was one commit earlier (one network): that row now decides from the record, whatever was run
    then = dict(_runs(members=1)[0]["config"], members=None)
    del then["members"]  # a config from before `members` existed
    older = _entry("aaaaaaa", dict(then, crop="lungs"), 0.95)
    newest = _entry("bbbbbbb", then, 0.7051, {"bn": 0.8889, "prior": 0.8889}, {"prior": "the prior guard fell back"})
    prototype = dict(_entry("ccccccc", None, 0.99))
    record = [older, newest, prototype]
    for runs in (_runs(), []):  # the ensemble's runs, or none at all: the record alone decides the measured row
        measured, present = _rows(record, runs)
        assert measured["verdict"] == FAILS and measured["n"] == 1 and measured["mean"] == 0.7051
        lo, hi = wilson(0.8889 * 234, 234)
        assert f"with --adapt bn, prior: 0.889 ({lo:.3f} to {hi:.3f}" in measured["beside"]
        assert "commit bbbbbbb (one network, seed 0), without adaptation" in measured["note"]
        assert '"the prior guard fell back"' in measured["note"] and "0.889" in V.sentence(measured)
        assert present["verdict"] == NOT_TESTED
    assert "members 1 -> 3" in _rows(record, _runs())[1]["note"]  # what changed since the measured recipe
    # the newest measured commit is the one judged: a record whose newest entry held would hold
    assert (
        _rows([newest, dict(older, commit="ddddddd", config=then, cohort_specificity=0.97)], [])[0]["verdict"] == HOLDS
    )


def test_the_measured_row_is_not_tested_when_the_record_never_measured_the_recipe():
    measured, present = _rows([_entry("ccccccc", None, 0.99)], _runs())
    assert measured["verdict"] == NOT_TESTED and "no measurement of this recipe in the record" in measured["note"]
    assert present["verdict"] == NOT_TESTED


def test_a_single_network_of_the_measured_config_is_judged_by_its_measurement_and_the_ensemble_is_not():
    # the committed record: 8281ef7 measured the recipe as one network, which is the present recipe less its ensemble
    newest = RECORD[-1]
    measured, present = _rows(RECIPES, _runs())
    assert measured["verdict"] == FAILS and measured["mean"] == newest["cohort"]["specificity"]
    bn = newest["cohort_adapted"]["bn"]["specificity"]
    assert f"{bn:.3f}" in measured["beside"] and newest["commit"] in measured["note"]
    assert present["verdict"] == NOT_TESTED and "members 1 -> 3" in present["note"]
    _, single = _rows(RECIPES, _runs(members=1))
    assert single["verdict"] == FAILS and single["mean"] == newest["cohort"]["specificity"]


def test_recipes_json_carries_every_record_measurement_with_its_adapted_figures_and_config_source():
    assert [(r["commit"], r["experiment"], r["seed"]) for r in RECIPES] == [
        (m["commit"], m["experiment"], m["seed"]) for m in RECORD
    ]
    for r, m in zip(RECIPES, RECORD):
        adapted = m.get("cohort_adapted") or {}
        assert r["cohort_specificity"] == m["cohort"]["specificity"]
        assert r["cohort_adapted_specificity"] == {k: a["specificity"] for k, a in adapted.items()}
        assert (r["config"] is None) == ("what" in m)  # the package's own trainings carry their config
        if r["config"]:
            assert r["config_source"].startswith(f"git show {m['commit']}:") and r["config"]["seed"] == m["seed"]
    assert "members" not in RECIPES[-1]["config"]  # 8281ef7 trained one network: `members` did not exist yet


def test_the_summary_names_both_cohort_rows():
    from pneumolib.notebook import summary

    measured, present = _rows(RECIPES, _runs())
    text = summary.what_instead_answer([measured, present])
    assert "as the record last measured it: 'does not hold'" in text
    assert "The recipe this series trains (notebook 10): 'not tested'" in text


def test_the_cohort_record_table_shows_the_adapted_figures_beside_the_plain_ones(monkeypatch):
    from pneumolib.notebook import cohort_views

    monkeypatch.setattr(cohort_views, "show", lambda df: None)
    df = cohort_views.cohort_record()
    newest = RECORD[-1]
    row = df.iloc[-1]
    assert row["commit"] == newest["commit"] and row["NORMAL recall"] == newest["cohort"]["specificity"]
    for mode, a in newest["cohort_adapted"].items():
        assert row[f"--adapt {mode}"] == f"{a['accuracy']:.3f} / {a['sensitivity']:.3f} / {a['specificity']:.3f}"
    assert "the prior guard fell back to bn" in row["the record's note"]
    groups = df.attrs["column_groups"]
    assert any("--adapt bn" in cols for cols in groups.values())


def test_the_newest_entry_is_printed_as_recorded(capsys, monkeypatch):
    from pneumolib.notebook import cohort_views

    monkeypatch.setattr(cohort_views, "show", lambda df: None)
    m = cohort_views.cohort_newest()
    out = capsys.readouterr().out
    assert m == RECORD[-1]
    for key in ("cohort", "cohort_adapted", "cohort_any_threshold", "full_size_originals"):
        assert f"- {key}: {json.dumps(m[key], ensure_ascii=False)}" in out


def test_notebook_10_states_the_cohort_claim_before_training(capsys):
    from pneumolib.notebook import cohort_views

    rows = cohort_views.cohort_claim("10", "cpu", [0, 1, 2])
    out = capsys.readouterr().out
    assert [r["verdict"] for r in rows] == [FAILS, NOT_TESTED] and [r["on_record"] for r in rows][0]
    assert "the recipe as the record measured it" in out and "with --adapt bn" in out and "members 1 -> 3" in out
