"""One owner for inference and for decoded films (issue 31): every film passes the network once per evaluation or
prediction, the OOD features come from that same pass, and no cache exists until someone who holds it builds it."""

import subprocess
import sys

import numpy as np
import pytest

from pneumolib import api
from pneumolib.analysis import ood
from pneumolib.analysis.evaluate import predict_samples
from pneumolib.models.checkpoint import Predictor
from pneumolib.models.networks import members


def _count_forwards(model):
    """A hook counting the films that pass the network's first layer (per view)."""
    seen = {"films": 0}
    net = members(model)[0]
    handle = net.conv1.register_forward_hook(
        lambda mod, inp, out: seen.__setitem__("films", seen["films"] + len(inp[0]))
    )
    return seen, handle


def test_predict_runs_each_film_through_the_network_once_and_reads_its_ood_features_there(trained_run):
    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    assert pred.extra.get("ood"), "the fixture run should carry an OOD reference"
    films = [s.path for s in trained_run.test.samples[:5]]
    seen, handle = _count_forwards(pred.model)
    try:
        records, refused = api.predict(pred, films)
    finally:
        handle.remove()
    views = 2 if pred.config.tta else 1
    assert not refused and len(records) == 5
    assert seen["films"] == 5 * views  # was 5 * views + 5: a second pass for the OOD features
    # the same distances a separate feature pass gives
    far = ood.score(pred, trained_run.test.samples[:5])
    np.testing.assert_allclose([r.ood_distance for r in records], far[0], rtol=1e-4, atol=1e-3)
    assert [r.unlike_training for r in records] == [bool(v) for v in far[1]]


def test_the_evaluation_pass_returns_the_same_probabilities_with_and_without_features(trained_run):
    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    samples = trained_run.test.samples[:6]
    plain = predict_samples(pred.model, samples, pred.preprocessing, tta=pred.config.tta)
    both = predict_samples(pred.model, samples, pred.preprocessing, tta=pred.config.tta, features=True)
    assert plain.features is None and both.features.shape[0] == 6
    np.testing.assert_allclose(plain.probs, both.probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(both.features, ood.features(pred.model, samples, pred.preprocessing), atol=1e-5)


def test_importing_the_package_builds_no_decode_cache():
    code = (
        "import gc, pneumolib.cli, pneumolib.api, pneumolib.notebook.helpers, pneumolib.studies.experiment\n"
        "from pneumolib.data.dataset import DecodedCache\n"
        "print(sum(isinstance(o, DecodedCache) for o in gc.get_objects()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_a_predictor_owns_its_cache_and_a_run_shares_the_datas(trained_run, fixture_data):
    a, b = (Predictor.load(trained_run.run_dir / "checkpoint.pt") for _ in range(2))
    assert a.cache is a.cache and a.cache is not b.cache
    a.preprocess(trained_run.test.samples[0].path)
    assert len(a.cache) == 1 and len(b.cache) == 0
    assert trained_run.predictor.cache is trained_run.data.cache


@pytest.mark.parametrize("region", ["outside", "inside"])
def test_the_audit_reliance_with_clean_scores_given_equals_the_one_that_predicts_them(trained_run, region):
    from pneumolib.analysis.cam import lung_mask  # noqa: F401  (the audit's masks)
    from pneumolib.studies.shortcuts import masks_in_view, reliance

    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    samples = trained_run.test.samples[:8]
    masks, _ = masks_in_view(pred, samples)
    clean = predict_samples(
        pred.model, samples, pred.preprocessing, tta=pred.config.tta, resources=pred.resources
    ).probs
    a = reliance(pred, samples, masks, region)
    b = reliance(pred, samples, masks, region, clean=clean)
    assert a["mean_abs_change"] == pytest.approx(b["mean_abs_change"], abs=1e-6)
    assert a["flipped_share"] == b["flipped_share"]


def test_probes_are_fitted_once_per_training_films_seed_and_view(trained_run):
    from pneumolib.studies.shortcuts import Probes

    pred = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    every = trained_run.data["train"]
    train = [s for s in every if s.label == 0][:20] + [s for s in every if s.label == 1][:20]
    probes = Probes()
    p1 = probes.get(train, 0, pred.resources)
    assert probes.get(train, 0, pred.resources) is p1 and len(probes) == 1
    assert probes.get(train, 1, pred.resources) is not p1 and len(probes) == 2
    assert probes.get(train[1:], 0, pred.resources) is not p1 and len(probes) == 3
