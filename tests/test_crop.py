"""Lung-field crop as a preprocessing step: found on the full film, cached with its box, travelling with the weights."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pneumolib.cli import main
from pneumolib.core.config import ExperimentConfig, View
from pneumolib.data import lungs as L
from pneumolib.data.dataset import DecodedCache, discover
from pneumolib.data.fixture import fixture_dir
from pneumolib.models.checkpoint import CheckpointError, Predictor, preprocessing_for, save_checkpoint
from pneumolib.studies.catalogue import get_config


def _two_lungs(h=100, w=100):
    m = np.zeros((h, w), bool)
    m[20:80, 10:40] = True
    m[20:80, 60:90] = True
    return m


def test_box_of_two_lungs_is_their_bounding_box_plus_the_margin_of_its_size():
    box = L.box_of(_two_lungs(), "", margin=0.1)
    # lungs span rows 20-80 (60 rows) and columns 10-90 (80 columns): 6 rows and 8 columns of margin
    assert (box.y0, box.y1, box.x0, box.x1) == pytest.approx((0.14, 0.86, 0.02, 0.98))
    assert box.problem == ""
    assert box.pixels(1000, 2000) == (140, 860, 40, 1960)


def test_a_mask_that_fails_the_check_keeps_the_whole_film_and_says_why():
    box = L.box_of(np.zeros((50, 50), bool), "1 lung component(s), not 2", margin=0.08)
    assert (box.y0, box.y1, box.x0, box.x1) == (0.0, 1.0, 0.0, 1.0)
    assert "lungs not found" in box.problem and "component" in box.problem


def test_the_crop_of_a_full_size_film_matches_the_crop_of_its_small_copy():
    """Users bring 1000-2000 px originals: the box is a fraction of the film, so the crop is the same picture."""
    film = next(iter(sorted((fixture_dir() / "test" / "PNEUMONIA").iterdir())))
    small = np.asarray(Image.open(film).convert("L"))
    big = np.asarray(Image.fromarray(small).resize((1500, 1300), Image.BICUBIC))
    seg = L.LungSegmenter.load()
    (b_small, _), (b_big, _) = seg.lung_fields([small, big], 0.08)
    assert b_small.problem == "" and b_big.problem == ""
    assert np.allclose(
        [b_small.y0, b_small.y1, b_small.x0, b_small.x1], [b_big.y0, b_big.y1, b_big.x0, b_big.x1], atol=0.03
    )
    a, b = L.crop_film(small, b_small, 64), L.crop_film(big, b_big, 64)
    assert a.shape == b.shape == (64, 64)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 12  # grey levels; the whole film differs by ~0 here too


def test_cropped_view_is_cached_on_disk_with_its_box_and_reloaded_identically(tmp_path):
    paths = [s.path for s in discover(fixture_dir(), seed=0)["test"][:6]]
    view = View(64, "lungs", 0.08)
    first = DecodedCache(tmp_path)
    assert first.warm(paths + [tmp_path / "missing.png"], view)[0].path == tmp_path / "missing.png"
    again = DecodedCache(tmp_path)  # as a new process would: reads the disk
    for p in paths:
        assert np.array_equal(again.get(p, view), first.get(p, view))
        assert again.box(p, view) == first.box(p, view)
    whole = first.get(paths[0], 64)
    assert not np.array_equal(whole, first.get(paths[0], view))  # the crop is not the whole film
    assert first.box(paths[0], 64) is None
    named = View(64, "lungs", 0.08, L.shipped_digest())  # the disk is keyed by the segmenter that drew the boxes
    assert sorted(d.name for d in tmp_path.iterdir() if not d.name.startswith(".")) == sorted(["64", named.tag])


def test_a_model_trained_on_another_segmenters_boxes_is_refused_in_one_line_naming_the_file(tmp_path):
    path = discover(fixture_dir(), seed=0)["test"][0].path
    with pytest.raises(CheckpointError, match=f"{path.name}.*segmenter 000000000000"):
        DecodedCache().get(path, View(64, "lungs", 0.08, "000000000000"))


def test_the_crop_travels_with_the_checkpoint_and_predict_flags_each_film(tmp_path, capsys):
    cfg = replace(get_config("cand_lungs"), image_size=64)
    pre = preprocessing_for(cfg)
    assert (pre.crop, pre.crop_margin, pre.crop_segmenter) == ("lungs", 0.08, L.shipped_digest())
    from pneumolib.models.networks import build_model

    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", build_model("resnet18", 1), cfg, 0.5)
    pred = Predictor.load(ckpt)
    assert pred.preprocessing == pre
    film = discover(fixture_dir(), seed=0)["test"][0].path
    cache = DecodedCache()
    expected = pre(torch.from_numpy(cache.get(film, pre.view))[None])  # the cropped image, preprocessed
    assert torch.equal(pred.preprocess(film, cache), expected)
    assert not torch.equal(expected, pre(torch.from_numpy(cache.get(film, 64))[None]))
    assert main(["predict", str(ckpt), str(film)]) == 0
    assert "lungs=cropped" in capsys.readouterr().out


def test_a_film_without_lungs_is_flagged_in_predict_not_cropped(tmp_path, capsys):
    cfg = replace(get_config("cand_lungs"), image_size=64)
    from pneumolib.models.networks import build_model

    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", build_model("resnet18", 1), cfg, 0.5)
    blank = tmp_path / "blank.png"  # a picture (a faint ramp), but no lungs in it
    Image.fromarray(np.full((300, 300), 128, np.uint8) + (np.arange(300) % 2).astype(np.uint8)[None]).save(blank)
    assert main(["predict", str(ckpt), str(blank)]) == 0
    out = capsys.readouterr().out
    assert "lungs=NOT FOUND" in out and "whole film used" in out


def test_a_config_refuses_an_unknown_crop_or_a_margin_out_of_range():
    with pytest.raises(ValueError, match="crop"):
        ExperimentConfig(crop="heart")
    with pytest.raises(ValueError, match="crop_margin"):
        ExperimentConfig(crop="lungs", crop_margin=0.9)


def test_lung_masks_for_a_cropped_model_are_cut_to_its_box_in_its_frame():
    """A lung-cropped model's Grad-CAM lift must use the mask in the crop's frame, not the whole film's squashed."""
    from pneumolib.analysis.cam import lung_mask
    from pneumolib.data.dataset import Sample
    from pneumolib.data.fixture import mask_for

    film = sorted((fixture_dir() / "test" / "NORMAL").glob("*.png"))[0]
    whole = np.asarray(Image.open(mask_for(film)).convert("L")) > 127
    box = L.LungBox(0.25, 0.75, 0.0, 0.5)
    img = np.zeros((32, 32), np.uint8)
    m, how, problem = lung_mask(Sample(film, 0, "p", "test"), img, L.annotated_mask, None, box)
    h, w = whole.shape
    expected = (
        np.asarray(
            Image.fromarray(whole[h // 4 : 3 * h // 4, : w // 2].astype(np.uint8) * 255).resize((32, 32), Image.NEAREST)
        )
        > 127
    )
    assert how == "annotated" and np.array_equal(m, expected)
    m2, how2, problem2 = lung_mask(Sample(film, 0, "p", "test"), img, None, L.LungSegmenter.load(), box)
    assert how2 == "learned" and m2.shape == (32, 32) and problem2 == ""  # checked on the whole film


def test_a_cropped_models_map_is_drawn_over_its_box_on_the_whole_film(tmp_path):
    from pneumolib.analysis.cam import overlay_on_film

    film = tmp_path / "film.png"
    Image.fromarray(np.full((200, 100), 90, np.uint8) + np.eye(200, 100, dtype=np.uint8)).save(film)
    cam = np.ones((8, 8), np.float32)  # all evidence, everywhere in the crop
    whole = overlay_on_film(film, cam)
    boxed = overlay_on_film(film, cam, box=L.LungBox(0.5, 1.0, 0.0, 0.5))
    assert whole.shape == boxed.shape == (200, 100, 3)
    cold = overlay_on_film(film, np.zeros((8, 8), np.float32))  # the film under a map with no evidence
    assert np.abs(boxed[:100].astype(int) - cold[:100]).max() <= 1  # above the box: no evidence drawn
    assert np.abs(boxed[100:, :50].astype(int) - cold[100:, :50]).max() > 50  # the box: evidence drawn
    assert np.abs(boxed[100:, :50].astype(int) - whole[100:, :50]).max() <= 1  # inside: the map


def test_the_crop_gradcam_and_the_audit_read_one_lung_mask_and_one_quality_decision(tmp_path):
    """Issue 31: the decode cache keeps the whole film's mask that drew each box; Grad-CAM's lung statistics and the
    shortcut audit use that mask and the box's own check (they re-segmented at full size before, and could disagree
    with the crop about the same film). The mask survives on disk for the next process."""
    from pneumolib.analysis.cam import lung_mask
    from pneumolib.data.dataset import Sample

    seg = L.LungSegmenter.load()
    view = View(64, "lungs", 0.08, seg.digest)
    films = sorted((fixture_dir() / "test" / "PNEUMONIA").glob("*.png"))[:3]
    cache = DecodedCache(tmp_path / "disk", segmenter=seg)
    for film in films:
        box, mask = cache.box(film, view), cache.lung_mask(film, view)
        whole = np.asarray(Image.open(film).convert("L"))
        expect_box, expect_mask = seg.lung_fields([whole], 0.08)[0]
        assert box == expect_box and np.array_equal(mask, expect_mask) and mask.shape == (L.SIZE, L.SIZE)
        img = cache.get(film, view)
        m, how, problem = lung_mask(Sample(film, 1, "p", "test"), img, None, None, box, mask)
        assert how == "learned" and problem == box.problem and m.shape == img.shape
        assert np.array_equal(m, L.mask_in_view(mask, box, img.shape))
    again = DecodedCache(tmp_path / "disk", segmenter=seg)  # a new process: the mask comes from disk
    assert np.array_equal(again.lung_mask(films[0], view), cache.lung_mask(films[0], view))
    assert again.lung_mask(films[0], View(64)) is None  # no crop, no crop mask
