"""One context (data.resources.Resources) owns the decode cache, the lung segmenter and the device: the predictor and
the data carry it, and serving a lung-cropped model (predict, then explain) loads the segmenter once."""

from dataclasses import replace

import pytest
import torch

import pneumolib
from pneumolib.data import lungs as L
from pneumolib.data.cache import DecodedCache
from pneumolib.data.resources import Resources, as_resources
from pneumolib.models.checkpoint import Predictor


@pytest.fixture
def count_loads(monkeypatch):
    """The shipped segmenter forgotten, and every LungSegmenter.load counted (the list of paths asked for)."""
    calls = []
    real = L.LungSegmenter.load.__func__

    def counting(cls, path=None):
        calls.append(path)
        return real(cls, path)

    monkeypatch.setattr(L.LungSegmenter, "load", classmethod(counting))
    L.shipped_segmenter.cache_clear()
    yield calls
    L.shipped_segmenter.cache_clear()


def _cropped(base: Predictor, digest: str, **kw) -> Predictor:
    """BASE's network served on lung crops drawn by the segmenter of DIGEST (no OOD reference: extra is empty)."""
    pre = replace(base.preprocessing, crop="lungs", crop_segmenter=digest)
    return Predictor(base.model, base.config, base.threshold, pre, **kw)


def test_predict_then_explain_on_a_lung_crop_loads_the_segmenter_once(trained_run, count_loads):
    base = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    base.extra = {}
    pred = _cropped(base, L.LungSegmenter.load().digest)  # the digest, read before counting starts
    count_loads.clear()
    files = [s.path for s in trained_run.test.samples[:3]]
    records, refused = pneumolib.predict(pred, files)
    expl = pneumolib.explain(pred, files)
    assert len(records) == 3 and not refused and len(expl.masks) == 3
    assert all(r.lungs == "cropped" or r.lungs.startswith("NOT FOUND") for r in records)
    assert len(count_loads) == 1


def test_explain_draws_lung_masks_with_the_contexts_segmenter_not_a_second_one(trained_run, count_loads):
    """Regression (issue 45, resources): Grad-CAM loaded the shipped segmenter beside the one the predictor's cache
    drew its crop boxes with; a context made with its own segmenter now serves predict and explain alone."""
    base = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    own = L.LungSegmenter.load()
    count_loads.clear()
    used = []
    real = own.lung_fields
    own.lung_fields = lambda films, margin: used.append(len(films)) or real(films, margin)
    pred = _cropped(base, own.digest, resources=Resources(DecodedCache(None, own)))  # no disk cache: segmented here
    pred.extra = {}
    files = [s.path for s in trained_run.test.samples[:2]]
    pneumolib.predict(pred, files)
    pneumolib.explain(pred, files)
    assert pred.resources.segmenter is own and used
    assert count_loads == []


def test_the_predictor_and_the_data_of_an_open_run_carry_one_context(trained_run):
    from pneumolib.studies.runs import open_run

    r = open_run(trained_run.run_dir)
    assert r.predictor.resources.cache is r.data.resources.cache is r.data.cache is r.predictor.cache
    assert r.predictor.resources.device == r.predictor.device == torch.device("cpu")


def test_a_bare_cache_still_maps_to_a_context():
    cache = DecodedCache()
    res = as_resources(cache, "cpu")
    assert res.cache is cache and res.device == torch.device("cpu")
    assert as_resources(res) is res and res.sharing(cache) is res
    with pytest.raises(TypeError):
        as_resources("not a cache")
