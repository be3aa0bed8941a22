import numpy as np
import pytest
import torch

from pneumolib.cam import CAM, METHODS, class_targets, explain, lung_focus, lower_central_share, segment_lungs
from pneumolib.fixture import make_phantom


@pytest.mark.parametrize("method", list(METHODS))
def test_cam_methods_give_one_normalised_map_per_image(trained_run, method):
    model = trained_run.predictor.model
    x = torch.rand(3, 3, 64, 64)
    with CAM(model, method) as cam:
        maps = cam(x, class_targets([1, 1, 0]))
    assert maps.shape == (3, 64, 64)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6


def test_lung_focus_is_the_share_of_energy_inside_the_mask():
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    cam = np.zeros((8, 8)); cam[:, :4] = 1.0
    assert lung_focus(cam, mask) == 1.0
    cam[:, 4:] = 1.0
    assert lung_focus(cam, mask) == pytest.approx(0.5)
    assert lung_focus(np.ones((2, 2)), np.ones((8, 8), bool)) == pytest.approx(1.0)  # resized to the mask


def test_lower_central_share_of_a_uniform_map():
    assert lower_central_share(np.ones((100, 100))) == pytest.approx(0.45 * 0.4)


@pytest.mark.parametrize("seed", range(5))
def test_classical_lung_segmentation_finds_the_phantom_lungs(seed):
    ph = make_phantom(np.random.default_rng(seed), pneumonia=False, size=128)
    mask, how = segment_lungs(ph.image)
    assert how == "segmented"
    iou = (mask & ph.lungs).sum() / (mask | ph.lungs).sum()
    assert iou > 0.6


def test_segmentation_falls_back_to_a_prior_on_a_blank_image():
    mask, how = segment_lungs(np.full((64, 64), 128, np.uint8))
    assert how == "prior" and 0.05 < mask.mean() < 0.5


def test_explain_uses_exact_fixture_masks_and_looks_at_the_lesions(trained_run):
    e = trained_run.explanation
    assert set(e.mask_methods) == {"exact"}
    assert len(e.samples) == len(e.cams) == len(e.focus) == 24  # all 12 + 12 fixture test images
    assert np.all((0 <= e.focus) & (e.focus <= 1))
    s = e.summary()
    assert set(s) == {"NORMAL", "PNEUMONIA"}


def test_explain_without_maps_keeps_only_scores(trained_run):
    samples = trained_run.explanation.samples
    pre = trained_run.predictor.preprocessing
    full = explain(trained_run.predictor.model, samples, pre, 0.5)
    lean = explain(trained_run.predictor.model, samples, pre, 0.5, keep_maps=False, batch_size=5)
    assert lean.cams.shape[0] == 0 and lean.images.shape[0] == 0 and lean.masks.shape[0] == 0
    assert np.allclose(lean.focus, full.focus, atol=1e-5)
    assert lean.summary().keys() == full.summary().keys()
