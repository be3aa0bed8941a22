"""Site adaptation (analysis.site): a folder of films is adapted only when the label-free checks pass. Each check has
a case where it alone fails, so each test fails without the check it names; the end-to-end tests use the trained
fixture run."""

import json

import numpy as np
import pytest

from pneumolib.analysis.site import (
    MAX_SHARE_MOVE,
    MAX_SURE_FLIPS,
    MIN_FILMS,
    MIN_HALF_AGREEMENT,
    ONE_FILM,
    adapt_to_site,
    decide,
    too_few,
)
from pneumolib.core.scores import read_scores
from pneumolib.models.checkpoint import Predictor

T = 0.5
MOVED = 0.1  # how far the statistics moved: recorded, not judged
N = 200


def _probs(called: np.ndarray, sure: bool = False) -> np.ndarray:
    """P(PNEUMONIA) with these decisions at 0.5: unsure (0.3 / 0.7) unless sure (0.01 / 0.99)."""
    lo, hi = (0.01, 0.99) if sure else (0.3, 0.7)
    return np.where(called, hi, lo)


def _base(share: float = 0.6) -> np.ndarray:
    return np.arange(N) < int(share * N)


def _failed(d) -> set[str]:
    return {c.name for c in d.checks if not c.ok}


def test_a_folder_that_passes_every_check_is_adapted():
    called = _base()
    d = decide(_probs(called), _probs(called), (_probs(called), _probs(called)), T, MOVED)
    assert d.adapted and not _failed(d) and d.reason.startswith("checks passed")


def test_stable_refuses_when_two_halves_adapt_to_different_decisions():
    called = _base()
    other = called.copy()
    other[: int((1 - MIN_HALF_AGREEMENT) * N) + 2] ^= True  # just past the limit of disagreement
    d = decide(_probs(called), _probs(called), (_probs(called), _probs(other)), T, MOVED)
    assert not d.adapted and _failed(d) == {"stable"} and "refused" in d.reason


def test_class_mix_kept_refuses_when_adaptation_moves_the_predicted_share_too_far():
    plain = _base(0.5)
    moved = _base(0.5 + MAX_SHARE_MOVE + 0.05)  # only unsure films move: no_lost_certainty holds
    d = decide(_probs(plain), _probs(moved), (_probs(moved), _probs(moved)), T, MOVED)
    assert not d.adapted and _failed(d) == {"class_mix_kept"}


def test_class_mix_kept_allows_a_move_within_the_limit():
    plain = _base(0.5)
    moved = _base(0.5 + MAX_SHARE_MOVE - 0.05)
    assert decide(_probs(plain), _probs(moved), (_probs(moved), _probs(moved)), T, MOVED).adapted


def test_no_lost_certainty_refuses_when_confident_answers_change_side():
    plain = _probs(_base(0.5), sure=True)
    swapped = plain.copy()
    k = int(MAX_SURE_FLIPS * N) + 4
    swapped[:k], swapped[-k:] = plain[-k:], plain[:k]  # the same share, but sure answers flipped
    d = decide(plain, swapped, (swapped, swapped), T, MOVED)
    assert not d.adapted and _failed(d) == {"no_lost_certainty"}


def test_too_few_films_and_a_single_film_are_not_adapted_and_say_why():
    assert not too_few(MIN_FILMS - 1).adapted and str(MIN_FILMS) in too_few(MIN_FILMS - 1).reason
    assert too_few(1).reason == ONE_FILM


def test_the_record_is_json_and_names_every_check():
    called = _base()
    rec = decide(_probs(called), _probs(called), (_probs(called), _probs(called)), T, MOVED).record()
    assert json.loads(json.dumps(rec))["adapted"] is True
    assert {c["name"] for c in rec["checks"]} == {"stable", "class_mix_kept", "no_lost_certainty"}


@pytest.fixture(scope="module")
def fixture_pred(trained_run_session):
    return Predictor.load(trained_run_session.run_dir / "checkpoint.pt")


def test_a_small_folder_keeps_the_model_as_trained(fixture_pred, fixture_data):
    films = fixture_data.splits["test"][: MIN_FILMS - 1]
    used, scores, d = adapt_to_site(fixture_pred, films)
    assert used is fixture_pred and not d.adapted and len(scores.probs) == len(films)


def test_a_folder_is_scored_by_the_model_the_decision_names(fixture_pred, fixture_data):
    films = [s for split in ("train", "val", "test") for s in fixture_data.splits[split]]
    assert len(films) >= MIN_FILMS
    used, scores, d = adapt_to_site(fixture_pred, films)
    assert d.checks[0].name == "site_change" and len(d.checks) in (1, 4) and d.n_films == len(films)
    assert (used is not fixture_pred) == d.adapted
    if d.adapted:
        assert used.extra["adaptation"]["adapted"] is True and "adaptation" not in fixture_pred.extra


def test_predict_on_a_single_film_says_once_that_it_cannot_adapt(trained_run, fixture_data, cli):
    film = str(fixture_data.splits["test"][0].path)
    r = cli("predict", str(trained_run.run_dir / "checkpoint.pt"), film)
    assert r.returncode == 0 and r.stderr.count(ONE_FILM) == 1 and "adapted=site" not in r.stdout
    r = cli("predict", str(trained_run.run_dir / "checkpoint.pt"), film, "--adapt", "none")
    assert r.returncode == 0 and "site adaptation" not in r.stderr


def test_predict_on_a_folder_too_small_to_adapt_says_so_once_regression(trained_run, fixture_data, cli):
    """Folders of 2 to MIN_FILMS - 1 films were scored unadapted without a word."""
    films = [str(s.path) for s in fixture_data.splits["test"][:3]]
    r = cli("predict", str(trained_run.run_dir / "checkpoint.pt"), *films)
    assert r.returncode == 0 and r.stderr.count(f"3 films, fewer than the {MIN_FILMS}") == 1
    assert r.stderr.count("not adapted (the model as trained)") == 1


def test_predict_folder_takes_flags_from_the_model_as_trained_and_labels_from_the_one_it_names(
    fixture_pred, fixture_data
):
    from pneumolib.api import predict_folder

    films = [str(s.path) for split in ("train", "val", "test") for s in fixture_data.splits[split]]
    plain = predict_folder(fixture_pred, films, adapt="none")
    site = predict_folder(fixture_pred, films)
    assert plain.site is None and site.site is not None and len(site.records) == len(plain.records)
    for a, b in zip(plain.records, site.records):
        assert (a.ood_distance, a.unlike_training, a.population_score) == (
            b.ood_distance,
            b.unlike_training,
            b.population_score,
        )
        assert b.adapted == site.site.adapted and not a.adapted
    if not site.site.adapted:
        assert [r.p_pneumonia for r in site.records] == [r.p_pneumonia for r in plain.records]


def test_evaluate_adapts_a_large_enough_cohort_by_default_and_records_the_decision(
    trained_run, fixture_data, cli, tmp_path
):
    import json as _json

    from pneumolib.studies.card import write_model_card

    ckpt, data = str(trained_run.run_dir / "checkpoint.pt"), str(fixture_data.root)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.pt", "metrics.json"):
        (run / name).write_bytes((trained_run.run_dir / name).read_bytes())
    ckpt = str(run / "checkpoint.pt")
    scores = tmp_path / "s.csv"
    r = cli("evaluate", ckpt, "--data-dir", data, "--split", "train", "--json", tmp_path / "e.json", "--scores", scores)
    assert r.returncode == 0 and r.stdout.count("site adaptation: ") == 1, r.stderr
    rec = _json.loads((tmp_path / "e.json").read_text())
    assert isinstance(rec["site"]["adapted"], bool) and rec["site"]["checks"][0]["name"] == "site_change"
    assert (rec["adapted"] is not None) == rec["site"]["adapted"]
    # the scores file says on every row which model was used, with the adapted scores beside the plain ones
    rows = read_scores(scores)
    assert set(rows["adaptation"]) == {rec["adaptation_used"]} and rec["adaptation_used"].startswith("site: ")
    assert ("p_pneumonia_adapted" in rows) == rec["site"]["adapted"]
    assert "Site adaptation: " in write_model_card(run).read_text()
    small = cli("evaluate", ckpt, "--data-dir", data, "--split", "test")  # 24 films: too few to adapt
    assert small.returncode == 0 and f"fewer than the {MIN_FILMS}" in small.stdout
    none = cli(
        "evaluate", ckpt, "--data-dir", data, "--split", "test", "--adapt", "none", "--json", tmp_path / "n.json"
    )
    assert none.returncode == 0 and "site adaptation" not in none.stdout
    assert none.stdout.count("adaptation: none (--adapt none: the model as trained)") == 1
    assert _json.loads((tmp_path / "n.json").read_text())["adaptation_used"].startswith("none")
