"""The whole-film population check (data.population): adult chest films flagged, paediatric films not."""

from pathlib import Path

import numpy as np
import pytest

from pneumolib.cli import main
from pneumolib.data import population as P
from pneumolib.models.checkpoint import Predictor

ADULT = Path(__file__).parent / "data" / "adult_chest_RG1_J2KI.dcm"
D = sum(P.LEVEL_DIMS)


def test_an_adult_chest_film_is_flagged_by_the_shipped_reference():
    ref = P.shipped_reference()
    score, flagged = ref.flag(P.film_statistics([ADULT]))
    assert flagged[0], f"adult film scored {score[0]:.3f}, threshold {ref.threshold:.3f}"
    # the paediatric films it was fitted and calibrated on: the rates measured when it was made (`lungs population`)
    info = ref.info
    assert info["n_fit"] > 4000 and info["n_val"] > 400
    assert info["val_flagged"] <= 0.02 and info["test"]["share"] <= 0.02


def _gauss(rng, n, shift=0.0):
    return rng.normal(shift, 1.0, (n, D)).astype(np.float32)


def test_a_film_unusual_at_every_level_is_flagged_though_no_single_level_flags_it():
    rng = np.random.default_rng(0)
    ref = P.fit_reference(_gauss(rng, 3000), _gauss(rng, 1000))
    assert ref.info["val_flagged"] == pytest.approx(0.01, abs=0.003)
    fresh = _gauss(rng, 2000)
    assert 0.003 < ref.flag(fresh)[1].mean() < 0.03  # new films of the same population: about 1%
    # each level's distance raised by about two of its own standard deviations (a chi distance over d dimensions
    # has sd ~0.71, its median ~sqrt(d)): mostly under each level's own 99th percentile ...
    grow = np.concatenate([np.full(d, 1 + 2.0 * 0.71 / np.sqrt(d)) for d in P.LEVEL_DIMS]).astype(np.float32)
    odd = _gauss(rng, 200) * grow
    lv = ref.level_distances(odd)
    per_level_thr = np.quantile(ref.level_distances(fresh), 0.99, axis=0)
    assert (lv < per_level_thr).mean() > 0.5
    # ... and yet flagged by the mean over levels
    assert ref.flag(odd)[1].mean() > 0.9


def test_the_float16_storage_keeps_distances_within_a_tenth_of_a_percent(tmp_path):
    rng = np.random.default_rng(1)
    scale = np.concatenate([np.full(d, s) for d, s in zip(P.LEVEL_DIMS, (1e-3, 0.05, 1.0, 3.0, 20.0))])
    ref = P.fit_reference(_gauss(rng, 1500) * scale, _gauss(rng, 300) * scale)
    back = P.PopulationReference.load(ref.save(tmp_path / "r.pt"))
    x = _gauss(rng, 50, 0.1) * scale
    np.testing.assert_allclose(back.level_distances(x), ref.level_distances(x), rtol=1e-3)
    assert back.threshold == ref.threshold and back.info == ref.info


def test_a_broken_reference_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "ref.pt"
    bad.write_bytes(b"not a reference")
    with pytest.raises(Exception, match="ref.pt: not a readable population reference"):
        P.PopulationReference.load(bad)


def test_a_trained_checkpoint_flags_the_adult_film_and_says_so_in_predict(trained_run, capsys):
    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    assert pred.extra["ood"]["population"]["info"]["n_val"] == len(trained_run.data["val"])
    own = [str(s.path) for s in trained_run.data["test"][:8]]
    assert main(["predict", str(trained_run.run_dir / "checkpoint.pt"), str(ADULT), *own]) == 0
    out, err = capsys.readouterr()
    adult = [ln for ln in out.splitlines() if ln.startswith(str(ADULT))]
    assert len(adult) == 1 and "population=" in adult[0] and "UNLIKE THE TRAINING FILMS" in adult[0]
    # the flag's limit is said once: one adult film calibrated it, and two others the cohort measured passed it
    assert err.count("not shown to be a child's chest film") == 1
    records, _ = pred.predict_records(own)
    assert all(r.population_score is not None for r in records)
    assert sum(r.unlike_training for r in records) <= 1


def test_lungs_population_fits_reports_and_scores_files(tmp_path, capsys):
    from pneumolib.data.fixture import fixture_dir

    out, js = tmp_path / "ref.pt", tmp_path / "r.json"
    assert (
        main(
            ["lungs", "population", str(ADULT), "--data-dir", str(fixture_dir()), "--out", str(out), "--json", str(js)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "val:" in text and "NOT FROM THE TRAINING POPULATION" in text
    assert P.PopulationReference.load(out).info["n_val"] > 0
    assert main(["lungs", "population", str(tmp_path / "missing.dcm"), "--data-dir", str(fixture_dir())]) == 2
    assert "missing.dcm" in capsys.readouterr().err


def test_a_film_is_read_through_the_encoder_once_per_segmenter(monkeypatch):
    from pneumolib.data.fixture import fixture_dir
    from pneumolib.data.lungs import LungSegmenter

    films = sorted(fixture_dir().glob("val/*/*.png"))[:5]
    seg = LungSegmenter.load()  # a segmenter of its own: an empty memo
    calls = []
    real = LungSegmenter.encoder_statistics
    monkeypatch.setattr(LungSegmenter, "encoder_statistics", lambda self, f, **k: calls.append(len(f)) or real(self, f))
    a = P.film_statistics(films, seg)
    b = P.film_statistics(films[::-1], seg)
    assert calls == [5] and np.array_equal(a, b[::-1])
