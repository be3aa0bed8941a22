"""Out-of-distribution flag: calibrated on validation, carried by the checkpoint, shown by predict and evaluate."""

import csv

import numpy as np
import pytest
from PIL import Image

from pneumolib.analysis import ood
from pneumolib.cli import main
from pneumolib.models.checkpoint import Predictor


def test_reference_flags_about_one_percent_of_validation_and_far_points():
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(0.5, 3, 16))
    train = rng.multivariate_normal(np.zeros(16), cov, 3000)
    val = rng.multivariate_normal(np.zeros(16), cov, 1000)
    ref = ood.fit_reference(train, val)
    assert ref["val_flagged"] == pytest.approx(1 - ood.FLAG_QUANTILE, abs=0.002)
    fresh = ood.distances(ref, rng.multivariate_normal(np.zeros(16), cov, 2000))
    assert 0.001 < (fresh > ref["threshold"]).mean() < 0.02  # new films from the same source: about 0.5% too
    far = ood.distances(ref, rng.multivariate_normal(np.full(16, 3.0), cov, 200))
    assert (far > ref["threshold"]).mean() > 0.95


def test_a_trained_checkpoint_carries_its_reference(trained_run):
    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    ref = pred.extra["ood"]
    assert ref["mean"].shape == (512,) and ref["precision"].shape == (512, 512)
    assert ref["n_val"] == len(trained_run.data["val"]) and 0 < ref["threshold"] < float("inf")


def _unlike(tmp_path, n=4):
    """Films nothing like a paediatric chest film: smooth gradients and a checkerboard."""
    out = []
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(n):
        a = (
            ((xx * (i + 1) * 4 + yy * 2) % 256).astype(np.uint8)
            if i % 2
            else (((xx // (4 + i)) + (yy // (4 + i))) % 2 * 255).astype(np.uint8)
        )
        p = tmp_path / f"odd{i}.png"
        Image.fromarray(a).save(p)
        out.append(p)
    return out


def test_predict_flags_films_unlike_training_and_not_its_own_test_films(trained_run, tmp_path, capsys):
    ckpt = trained_run.run_dir / "checkpoint.pt"
    own = [str(s.path) for s in trained_run.data["test"][:8]]
    odd = [str(p) for p in _unlike(tmp_path)]
    assert main(["predict", str(ckpt), *own, *odd]) == 0
    lines = capsys.readouterr().out.splitlines()
    flagged = {ln.split("\t")[0] for ln in lines if "UNLIKE THE TRAINING FILMS" in ln}
    assert set(odd) <= flagged
    assert len(flagged & set(own)) <= 1  # about 1.5% of familiar films are flagged: at most one of eight here


def test_evaluate_reports_the_cohorts_ood_share_and_writes_it_per_film(run_copy, tmp_path, capsys):
    ckpt = run_copy / "checkpoint.pt"  # evaluate records beside the checkpoint: a copy of the shared run
    cohort = tmp_path / "cohort" / "test"
    for cls in ("NORMAL", "PNEUMONIA"):
        (cohort / cls).mkdir(parents=True)
    for i, p in enumerate(_unlike(tmp_path, 6)):
        p.rename(cohort / ("NORMAL", "PNEUMONIA")[i % 2] / p.name)
    scores = tmp_path / "s.csv"
    assert main(["evaluate", str(ckpt), "--data-dir", str(tmp_path / "cohort"), "--scores", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "out-of-distribution: 6 of 6 films" in out
    rows = list(csv.DictReader(scores.open()))
    assert all(r["ood_flag"] == "1" and float(r["ood_distance"]) > 0 for r in rows)
    assert main(["card", str(run_copy)]) == 0  # the card states the population and the reference it carries
    card = (run_copy / "MODEL_CARD.md").read_text()
    assert "**Intended population**" in card and "which flags" in card and "of validation films" in card


def test_the_shrunk_precision_is_sklearns_ledoit_wolf():
    from sklearn.covariance import LedoitWolf

    from pneumolib.core.stats import ledoit_wolf

    x = np.random.default_rng(3).normal(size=(60, 40)) * np.linspace(0.1, 5, 40)
    mean, precision = ledoit_wolf(x)
    lw = LedoitWolf().fit(x)
    np.testing.assert_allclose(mean, lw.location_)
    np.testing.assert_allclose(precision, lw.precision_, rtol=1e-6, atol=1e-9 * np.abs(lw.precision_).max())
