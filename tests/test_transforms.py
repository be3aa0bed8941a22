import numpy as np
import pytest
import torch
from PIL import Image

from pneumolib.data.transforms import TRANSFORMS, ByClass, CentralFocus, Preprocessing, build, build_train_transform
from pneumolib.studies.catalogue import get_config


def _img(size=64, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (1, size, size), dtype=np.uint8))


def test_central_focus_keeps_centre_and_blurs_periphery():
    x = _img()
    y = CentralFocus(region=0.5, sigma=0.05, feather=0.0)(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    m = CentralFocus(region=0.5, sigma=0.05, feather=0.0).mask(64, 64).bool()
    assert torch.equal(y[0][m], x[0][m])
    # noise blurred away outside: much smaller spread than the original
    assert y[0][~m].float().std() < 0.5 * x[0][~m].float().std()


@pytest.mark.parametrize("region,sigma", [(0.4, 0.02), (0.6, 0.03), (0.9, 0.08)])
def test_central_focus_strength_and_region_are_parameters(region, sigma):
    x = _img()
    y = CentralFocus(region=region, sigma=sigma)(x).float()
    changed = (y - x.float()).abs()[0]
    m = CentralFocus(region=region, sigma=sigma).mask(64, 64)
    assert changed[m >= 1].max() <= 1  # rounding only
    assert changed[m == 0].mean() > 10


def test_central_focus_accepts_pil_and_float_tensors():
    x = _img()
    pil = Image.fromarray(x[0].numpy())
    out = CentralFocus()(pil)
    assert isinstance(out, Image.Image) and out.mode == "L"
    assert np.array_equal(np.asarray(out), CentralFocus()(x)[0].numpy())
    f = CentralFocus()(x.float() / 255)
    assert f.dtype == torch.float32 and f.max() <= 1.0001


def test_central_focus_rejects_bad_parameters():
    with pytest.raises(ValueError):
        CentralFocus(region=0)


def test_by_class_picks_the_transform_by_label():
    t = ByClass({0: lambda x: x * 0, 1: lambda x: x + 1})
    x = torch.ones(1, 2, 2)
    assert t(x, 0).sum() == 0 and t(x, 1).sum() == 8
    assert "NORMAL" in repr(t) and "PNEUMONIA" in repr(t)


@pytest.mark.parametrize("cfg_entry", ["01", "02", "03", "07"])
def test_train_transforms_of_log_entries_build_and_keep_shape(cfg_entry):
    t = build_train_transform(get_config(cfg_entry).train_transforms)
    x = _img()
    for label in (0, 1):
        y = t(x, label)
        assert y.shape == x.shape and y.dtype == torch.uint8


def test_build_composes_left_to_right_and_rejects_unknown_names():
    assert isinstance(build("central_focus"), CentralFocus)
    with pytest.raises(KeyError, match="no per-sample reference for 'blurry'"):
        build("central_focus+blurry")
    with pytest.raises(KeyError, match="no per-sample reference for 'robust'"):  # the recipe's: batched only
        build("robust+sharpness")


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_every_named_transform_runs_on_uint8(name):
    torch.manual_seed(0)
    y = build(name)(_img())
    assert y.shape == (1, 64, 64)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("normalize", ["none", "imagenet", "per_image", "equalize"])
def test_preprocessing_gives_the_checkpoint_channel_count(channels, normalize):
    pre = Preprocessing(64, channels, normalize)
    x = pre(_img())
    assert x.shape == (channels, 64, 64) and x.dtype == torch.float32
    batch = pre(torch.stack([_img(seed=1), _img(seed=2)]))
    assert batch.shape == (2, channels, 64, 64)
    if normalize == "none":
        assert 0 <= x.min() and x.max() <= 1
    if normalize == "per_image":
        assert abs(float(x.mean())) < 1e-4
    if normalize == "equalize":  # a flat histogram: mean near 0.5, and uint8 and [0, 1] float inputs agree
        assert abs(float(x.mean()) - 0.5) < 0.05
        assert torch.allclose(pre(_img().float() / 255), x)


def test_preprocessing_rejects_unknown_normalisation():
    with pytest.raises(ValueError, match="normalize=.zscore. is not one of"):
        Preprocessing(64, 1, "zscore")(_img())
