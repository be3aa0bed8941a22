"""The lung-mask view (issue 32's ranking candidate): the crop with black outside the dilated lung mask, equalised
inside the mask, the dilation chosen on annotated validation masks."""

import numpy as np
import pytest
import torch

from pneumolib.core.config import ConfigError, ExperimentConfig, View
from pneumolib.data import lungs as L
from pneumolib.data.dataset import DecodedCache
from pneumolib.data.fixture import fixture_dir
from pneumolib.data.transforms import Preprocessing, equalize_nonzero
from pneumolib.models.checkpoint import preprocessing_for
from pneumolib.studies.catalogue import get_config


def test_equalize_nonzero_keeps_zeros_and_spreads_the_rest_over_1_to_255():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(40, 120, (2, 1, 32, 32), generator=g, dtype=torch.uint8)
    x[0, :, :10] = 0  # a black outside on the first image only
    y = equalize_nonzero(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert (y[x == 0] == 0).all() and (y[x > 0] >= 1).all() and int(y.max()) >= 250
    # monotone: a brighter pixel never maps darker
    a, b = x[1].flatten().long(), y[1].flatten().long()
    order = torch.argsort(a)
    assert (torch.diff(b[order]) >= 0).all()


def test_equalize_nonzero_does_not_depend_on_how_much_of_the_picture_is_black_regression():
    # the reason for it: plain equalisation of a masked film shifts the lungs' grey levels with the black share,
    # so a smaller (e.g. consolidated, under-segmented) lung would look brighter: a shortcut by construction
    g = torch.Generator().manual_seed(1)
    lungs = torch.randint(30, 200, (1, 1, 16, 16), generator=g, dtype=torch.uint8)
    small, big = torch.zeros(1, 1, 64, 64, dtype=torch.uint8), torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    small[..., :16, :16] = lungs
    big[..., :16, :16] = lungs
    assert torch.equal(equalize_nonzero(small)[..., :16, :16], equalize_nonzero(big)[..., :16, :16])
    from torchvision.transforms.v2.functional import equalize

    assert not torch.equal(equalize(small)[..., :16, :16], equalize(big)[..., :16, :16])


def test_the_lung_mask_view_is_black_outside_the_dilated_mask_and_at_least_1_inside():
    seg = L.shipped_segmenter()
    film_path = sorted((fixture_dir() / "test" / "PNEUMONIA").glob("*.png"))[0]
    cache = DecodedCache(None, seg)
    view = View(64, "lung_mask", 0.08, seg.digest, 0.08)
    img, box, mask = cache.get(film_path, view), cache.box(film_path, view), cache.lung_mask(film_path, view)
    assert not box.problem
    keep = L.mask_in_view(L.dilate(mask, 0.08), box, img.shape)
    assert (img[~keep] == 0).all() and (img[keep] >= 1).all() and 0 < keep.mean() < 1
    crop = cache.get(film_path, View(64, "lungs", 0.08, seg.digest))
    assert np.array_equal(img[keep], np.maximum(crop[keep], 1))


def test_a_film_whose_lungs_were_not_found_is_not_masked():
    film = np.full((50, 60), 100, np.uint8)
    box = L.LungBox(0, 1, 0, 1, "lungs not found: uniform film")
    out = L.mask_film(film, box, np.zeros((L.SIZE, L.SIZE), bool), 32, 0.08)
    assert (out == 100).all()


def test_dilation_grows_the_mask_by_a_share_of_its_width():
    m = np.zeros((100, 100), bool)
    m[50, 50] = True
    grown = L.dilate(m, 0.05)
    assert grown[50, 55] and not grown[50, 56] and grown.sum() > 60
    assert np.array_equal(L.dilate(m, 0.0), m)


def test_the_dilation_is_validated_and_travels_with_the_weights():
    with pytest.raises(ConfigError, match="mask_dilation"):
        ExperimentConfig(crop="lung_mask", mask_dilation=0.5)
    cfg = get_config("cand_lung_mask")
    assert cfg.crop == "lung_mask" and cfg.normalize == "equalize_masked"
    pre = preprocessing_for(cfg)
    assert pre.mask_dilation == cfg.mask_dilation and pre.view.dilation == cfg.mask_dilation
    assert "d0.08" in pre.view.tag
    # an older checkpoint's preprocessing (no mask_dilation) still loads
    assert Preprocessing(image_size=64, in_channels=3).mask_dilation == cfg.mask_dilation
    # the dilation is not part of an older config's training key at its default
    base = get_config("cand_lungs")
    assert (
        base.training_key()
        == ExperimentConfig.from_dict({k: v for k, v in base.to_dict().items() if k != "mask_dilation"}).training_key()
    )


def test_coverage_chooses_the_smallest_dilation_that_keeps_the_annotated_lungs():
    pairs = [p for ps in L.discover_masks(fixture_dir()).values() for p in ps][:6]
    r = L.mask_coverage(L.shipped_segmenter(), pairs, dilations=(0.0, 0.1, 0.25))
    kept = {d: min(s["kept_share"] for s in by.values() if s["n"]) for d, by in r["dilations"].items()}
    assert kept[0.25] >= kept[0.1] >= kept[0.0]
    assert r["chosen"] in (None, 0.0, 0.1, 0.25)
    if r["chosen"] is not None:
        assert kept[r["chosen"]] >= L.COVERAGE_FILMS
        assert all(kept[d] < L.COVERAGE_FILMS for d in (0.0, 0.1, 0.25) if d < r["chosen"])
    assert "rule" in r and "NORMAL" in L.format_coverage(r)


def test_the_shortcut_audit_fills_a_lung_mask_models_outside_with_black_not_grey(trained_run):
    """A lung-mask view is black outside its dilated mask: filling that with grey would show the model a picture
    it never saw, and the audit would count the flips against it."""
    from dataclasses import replace as dc_replace

    from pneumolib.models.checkpoint import Predictor
    from pneumolib.studies.shortcuts import FILL_MASKED, masks_in_view, reliance

    base = Predictor.load(trained_run.run_dir / "checkpoint.pt")
    seg = L.shipped_segmenter()
    pre = dc_replace(base.preprocessing, crop="lung_mask", crop_segmenter=seg.digest)
    pred = Predictor(base.model, base.config, base.threshold, pre)
    samples = trained_run.test.samples[:6]
    masks, _ = masks_in_view(pred, samples)
    r = reliance(pred, samples, masks, "outside")
    assert r["fill"] == FILL_MASKED
    img = pred.cache.get(samples[0].path, pre.view)
    keep = masks[0] if masks[0] is not None else np.ones_like(img, bool)
    assert (
        img[
            ~L.mask_in_view(
                L.dilate(pred.cache.lung_mask(samples[0].path, pre.view), pre.mask_dilation),
                pred.cache.box(samples[0].path, pre.view),
                img.shape,
            )
        ]
        == 0
    ).all()
    assert keep.shape == img.shape
