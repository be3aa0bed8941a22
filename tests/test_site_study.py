"""The site study (studies.site): the simulated folders the adaptation guard is argued on, and how each is scored.

Whether site mode does harm on a real model is the study's output (docs/adaptation.md), re-measured with
tools/site_study.py; these tests pin what holds for any weights: which shifts and class mixes are simulated, that each
folder has the class mix it names, and that site mode is scored by the model its decision names."""

import numpy as np
import pytest

from pneumolib.analysis import site as analysis_site
from pneumolib.analysis.site import MIN_FILMS, SiteDecision
from pneumolib.models.checkpoint import Predictor
from pneumolib.studies.site import CONDITIONS, TOLERANCE, Condition, folder, run_condition

KINDS = {  # what a new site can change, by the shifts that simulate it
    "intensity": {"darker", "brighter"},
    "contrast": {"low_contrast", "high_contrast"},
    "blur": {"blur"},
}


def _kind(shift) -> str | None:
    if isinstance(shift, tuple):
        return "two sites"
    return next((k for k, names in KINDS.items() if shift in names), None)


def test_every_simulated_shift_is_studied_with_and_without_a_class_mix_change():
    seen = {(_kind(c.shift), c.pneumonia_share is not None) for c in CONDITIONS if c.shift is not None}
    for kind in (*KINDS, "two sites"):
        assert (kind, False) in seen, f"{kind} at the films' own class mix"
        assert (kind, True) in seen, f"{kind} with a class-mix change"
    assert any(c.shift is None and c.pneumonia_share is not None for c in CONDITIONS)  # a class-mix change alone
    assert any(c.n == MIN_FILMS for c in CONDITIONS)  # the smallest folder site mode adapts


@pytest.fixture(scope="module")
def films(fixture_data):
    return [s for split in ("train", "val", "test") for s in fixture_data.splits[split]]


@pytest.mark.parametrize("share", [0.0, 0.2, 0.9])
def test_a_folder_has_the_class_mix_its_condition_names(films, share):
    got = folder(films, Condition("x", "", pneumonia_share=share), seed=3)
    labels = np.array([s.label for s in got])
    assert len(got) >= 8 and abs(labels.mean() - share) <= 1 / len(got)
    n_pneu = sum(s.label for s in films)
    assert len(got) == len({s.path for s in got})  # no film drawn twice
    assert (labels == 1).sum() <= n_pneu
    assert [s.path for s in folder(films, Condition("x", "", pneumonia_share=share), seed=3)] == [s.path for s in got]


def test_a_small_folder_has_the_count_its_condition_names(films):
    assert len(folder(films, Condition("x", "", n=MIN_FILMS), seed=0)) == MIN_FILMS


@pytest.mark.parametrize("adapted", [True, False])
def test_site_mode_is_scored_by_the_model_its_decision_names(trained_run_session, films, monkeypatch, adapted):
    def forced(plain, adapted_probs, halves, threshold, moved, shift=None):
        return SiteDecision(adapted, len(plain), "forced", [], {"moved": moved})

    monkeypatch.setattr(analysis_site, "decide", forced)
    pred = Predictor.load(trained_run_session.run_dir / "checkpoint.pt")
    assert len(films) >= MIN_FILMS
    row = run_condition(pred, films, Condition("two_sites", "", shift=("darker", "high_contrast")), seed=1)
    served = "always" if adapted else "plain"
    assert row["adapted"] is adapted and row["n"] == len(films)
    for k in ("acc", "bal", "rec_n", "rec_p"):
        assert row[f"site_{k}"] == row[f"{served}_{k}"]
    assert row["harm"] == (row["site_bal"] < row["plain_bal"] - TOLERANCE)
