"""The site guard's first check (analysis.site_shift): a folder that could be validation films in another class mix
is not adapted; a folder whose films of one class score elsewhere is."""

import numpy as np
import pytest

from pneumolib.analysis import site as site_mod
from pneumolib.analysis.site import MIN_FILMS, adapt_to_site, decide
from pneumolib.analysis.site_shift import (
    ALPHA,
    ShiftTest,
    mixture_distance,
    score_reference,
    shift_test,
    usable,
)
from pneumolib.models.checkpoint import Predictor


def _scores(rng, n_normal: int, n_pneumonia: int, normal_shift: float = 0.0) -> np.ndarray:
    """Scores like a trained model's: NORMAL films low, PNEUMONIA films high, some overlap; NORMAL_SHIFT moves the
    NORMAL films' logits up (a site whose healthy films look sicker, as the cohort's did)."""
    z0 = rng.normal(-4.0 + normal_shift, 1.5, n_normal)
    z1 = rng.normal(4.0, 1.5, n_pneumonia)
    return 1 / (1 + np.exp(-np.concatenate([z0, z1])))


def _reference(rng) -> dict:
    p = _scores(rng, 110, 350)
    return score_reference(np.r_[np.zeros(110, int), np.ones(350, int)], p)


def test_the_closest_mixture_recovers_a_folders_class_mix():
    rng = np.random.default_rng(0)
    ref = _reference(rng)
    folder = _scores(rng, 160, 40)  # 20% PNEUMONIA, the training site
    d, mix = mixture_distance(folder, ref["normal"], ref["pneumonia"])
    assert abs(mix - 0.2) <= 0.06 and d < 0.1


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_training_site_folders_in_any_class_mix_are_rarely_called_a_site_change(share):
    """A class-mix change is not a site change: at most a few of 40 training-site folders (nominal: ALPHA)."""
    rng = np.random.default_rng(1)
    hits = 0
    for k in range(40):
        ref = _reference(rng)
        n1 = int(round(100 * share))
        hits += shift_test(_scores(rng, 100 - n1, n1), ref, seed=k, n_boot=60).shifted
    assert hits <= 6  # 15%: three times ALPHA, a margin the seeded draws cannot cross by chance alone


def test_normal_films_scoring_higher_are_a_site_change():
    rng = np.random.default_rng(2)
    hits = sum(
        shift_test(_scores(rng, 80, 120, normal_shift=2.5), _reference(rng), seed=k, n_boot=60).shifted
        for k in range(20)
    )
    assert hits >= 19


def test_the_p_value_is_seeded_and_says_what_it_found():
    rng = np.random.default_rng(3)
    ref, folder = _reference(rng), _scores(rng, 50, 50)
    a, b = shift_test(folder, ref, seed=4, n_boot=40), shift_test(folder, ref, seed=4, n_boot=40)
    assert a == b and 0 < a.p_value <= 1
    assert ("not validation's" in a.says()) == a.shifted


def test_a_reference_needs_films_of_both_classes():
    assert not usable(None) and not usable({"normal": [0.1] * 20, "pneumonia": [0.9] * 3})
    assert usable({"normal": [0.1] * 10, "pneumonia": [0.9] * 10})


def _p(called):
    return np.where(np.asarray(called, bool), 0.8, 0.2)


def test_site_change_refuses_a_folder_that_passes_every_other_check():
    called = [True, False] * 40
    same = ShiftTest(distance=0.03, mix=0.5, p_value=0.4, n_boot=200)
    d = decide(_p(called), _p(called), (_p(called), _p(called)), 0.5, 0.03, same)
    assert not d.adapted and d.checks[0].name == "site_change" and "site_change" in d.reason
    assert [c.name for c in d.checks if not c.ok] == ["site_change"]  # the other three pass
    seen = ShiftTest(distance=0.3, mix=0.4, p_value=ALPHA / 5, n_boot=200)
    assert decide(_p(called), _p(called), (_p(called), _p(called)), 0.5, 0.03, seen).adapted


def test_a_decision_without_a_reference_says_the_site_change_was_not_tested():
    called = [True, False] * 40
    d = decide(_p(called), _p(called), (_p(called), _p(called)), 0.5, 0.03)
    assert d.adapted and site_mod.NO_REFERENCE in d.reason


def test_training_keeps_validation_scores_by_class_in_the_checkpoint(trained_run, fixture_data):
    ref = Predictor.load(trained_run.run_dir / "checkpoint.pt").extra["val_calibration"]["val_scores"]
    val = fixture_data.splits["val"]
    assert len(ref["normal"]) == sum(s.label == 0 for s in val) and len(ref["pneumonia"]) == sum(s.label for s in val)


def test_a_folder_like_validation_is_refused_before_any_batchnorm_pass(trained_run, fixture_data, monkeypatch):
    """Validation's own films, repeated to a folder large enough to adapt: no site change, so the model as trained
    scores them, and adaptation is never run (it costs six passes)."""
    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    val = fixture_data.splits["val"]
    films = (val * (MIN_FILMS // len(val) + 1))[:MIN_FILMS]

    def no_bn(*a, **k):
        raise AssertionError("BatchNorm was re-estimated on a folder with no site change")

    monkeypatch.setattr(site_mod, "adapt_bn", no_bn)
    used, scores, d = adapt_to_site(pred, films)
    assert used is pred and not d.adapted and d.checks[0].name == "site_change"
    assert d.figures["shift_p"] >= ALPHA and len(scores.probs) == len(films)


def test_adapt_to_site_runs_the_site_change_test_once_regression(trained_run, fixture_data, monkeypatch):
    """adapt_to_site tested the site change, then site_passes tested it again on the same scores (200 resampled
    folders each time): the first result is passed through."""
    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    val = fixture_data.splits["val"]
    films = (val * (MIN_FILMS // len(val) + 1))[:MIN_FILMS]
    calls = []

    def changed(*a, **k):
        calls.append(1)
        return ShiftTest(distance=0.5, mix=0.5, p_value=0.0, n_boot=200)

    monkeypatch.setattr(site_mod, "shift_test", changed)
    _, _, d = adapt_to_site(pred, films)
    assert len(calls) == 1 and d.checks[0].name == "site_change" and d.figures["shift_p"] == 0.0


def _null_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "site_change_null.py"
    spec = importlib.util.spec_from_file_location("site_change_null", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("split", ["val", "test"])
def test_the_false_adaptation_tool_reads_validation_scores_only(tmp_path, monkeypatch, capsys, split):
    """tools/site_change_null.py reads its file through core.scores.read_scores, so a test split's file is refused
    (exit 2, one line naming it) rather than used as a training-site pool."""
    rng = np.random.default_rng(0)
    p = _scores(rng, 40, 80)
    labels = ["NORMAL"] * 40 + ["PNEUMONIA"] * 80
    rows = [f"f{i}.jpeg,p{i},{split},{lab},{x:.6f},{lab}" for i, (lab, x) in enumerate(zip(labels, p))]
    f = tmp_path / "scores.csv"
    f.write_text("path,patient,split,label,p_pneumonia,prediction\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr("sys.argv", ["site_change_null.py", str(f), "--draws", "2", "--films", "20"])
    rc = _null_tool().main()
    out, err = capsys.readouterr()
    if split == "val":
        assert rc == 0 and "called a site change in" in out
    else:
        assert rc == 2 and str(f) in err and len(err.strip().splitlines()) == 1
