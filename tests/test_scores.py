"""The per-film score file has one reader (core.scores.read_scores) that checks it, and the verdicts read each run's
file once however many claims use it (studies.verdict_films.FilmBook)."""

import numpy as np
import pytest

from pneumolib.analysis.evaluate import Scores
from pneumolib.core.io import RecordError
from pneumolib.core.runs import RunDir
from pneumolib.core.scores import COLUMNS, read_scores
from pneumolib.data.dataset import Sample
from pneumolib.studies import verdict_films as VF


def _write(path, n=6, threshold=0.5, seed=0):
    rng = np.random.default_rng(seed)
    samples = [Sample(path=f"/x/film{i}a.png", label=i % 2, patient=f"p{i}", split="test") for i in range(n)]
    Scores(samples, rng.uniform(0, 1, n)).to_csv(path, threshold)
    return path


def test_the_reader_reads_what_the_writer_writes_with_labels_as_numbers(tmp_path):
    f = _write(tmp_path / "scores_test.csv")
    df = read_scores(f)
    assert tuple(df.columns[: len(COLUMNS)]) == COLUMNS
    assert list(df["y"]) == [0, 1, 0, 1, 0, 1]
    assert ((df["p_pneumonia"] >= 0.5) == (df["called"] == 1)).all()
    assert df["p_pneumonia"].dtype == float


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda t: t.replace("p_pneumonia", "p"), "no column p_pneumonia"),
        (lambda t: t.replace(",NORMAL,", ",HEALTHY,", 1), "label 'HEALTHY' is not NORMAL or PNEUMONIA"),
        (lambda t: t.replace("0.", "1.", 1), "is not a number in [0, 1]"),
        (lambda t: t.replace("0.", "nan", 1), "is not a number in [0, 1]"),
    ],
)
def test_a_hand_edited_score_file_is_one_line_naming_the_file_and_the_problem(tmp_path, edit, says):
    f = _write(tmp_path / "scores_val.csv")
    f.write_text(edit(f.read_text()))
    with pytest.raises(RecordError) as e:
        read_scores(f)
    assert str(f) in str(e.value) and says in str(e.value) and "\n" not in str(e.value)


def test_split_keeps_only_that_splits_rows(tmp_path):
    f = _write(tmp_path / "scores_test.csv")
    f.write_text(f.read_text().replace(",test,", ",val,", 2))
    assert len(read_scores(f, split="test")) == 4


def test_a_film_book_reads_each_runs_file_once_for_many_claims(tmp_path, monkeypatch):
    runs = []
    for seed in range(2):
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        _write(RunDir(d).scores_test, seed=seed)
        runs.append({"run_dir": str(d), "config": {"seed": seed}})
    reads = []
    real = VF.read_scores
    monkeypatch.setattr(VF, "read_scores", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    book = VF.FilmBook()
    for q in (VF.PerFilm("correct", "NORMAL"), VF.PerFilm("correct", "PNEUMONIA"), VF.PerFilm("called PNEUMONIA")):
        VF.film_effect(q, runs, runs, n_boot=50, book=book)
    assert len(reads) == 2
    VF.film_effect(VF.PerFilm("correct"), runs, runs, n_boot=50)  # no book: read here, every time
    assert len(reads) == 4


def test_a_bad_score_file_leaves_the_claim_not_measured_naming_it(tmp_path):
    d = tmp_path / "seed0"
    d.mkdir()
    f = _write(RunDir(d).scores_test)
    f.write_text(f.read_text().replace("PNEUMONIA", "PNEU", 1))
    with pytest.raises(VF.NotMeasured, match="scores_test.csv"):
        VF.films({"run_dir": str(d)})
