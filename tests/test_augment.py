"""Batched augmentation: the same distributions as the per-sample reference, class masks, seeded reproducibility."""

import functools
import math

import numpy as np
import pytest
import torch
from augment_reference import ORACLE, build

import pneumolib.data.augment as A
from pneumolib.data.augment import BatchAugment, TrainBatches, prepare_batch
from pneumolib.data.transforms import TRANSFORMS, CentralFocus, Preprocessing
from pneumolib.studies.catalogue import RECOMMENDED

N_DRAWS = 800
SIZE = 64


def _phantom() -> torch.Tensor:
    """1 x 64 x 64 uint8: a left-to-right ramp (flip and rotation show in its gradient), a fine checkerboard in the
    centre (blur shows in its total variation), grey levels away from 0 (rotation fill shows as zeros)."""
    yy, xx = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij"
    )
    img = 40 + 160 * xx / (SIZE - 1)
    c = slice(SIZE // 2 - 8, SIZE // 2 + 8)
    img[c, c] += 25 * (1 - 2 * ((yy[c, c] + xx[c, c]) % 2))
    return img.round().clamp(0, 255).to(torch.uint8).unsqueeze(0)


def _features(out: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-draw statistics of N x 1 x H x W outputs, each sensitive to one parameter of the transforms."""
    x = out.float()[:, 0]
    h = x.shape[1]
    c = slice(h // 2 - 6, h // 2 + 6)
    centre = x[:, c, c]
    pooled = torch.nn.functional.avg_pool2d(x[:, None, 12:-12, 12:-12], 4)[:, 0]
    gx = (pooled[:, :, 1:] - pooled[:, :, :-1]).mean((1, 2))
    gy = (pooled[:, 1:, :] - pooled[:, :-1, :]).mean((1, 2))
    return {
        "centre mean": centre.mean((1, 2)).numpy(),  # brightness, contrast, gamma
        "image mean": x.mean((1, 2)).numpy(),
        "image std": x.std((1, 2)).numpy(),  # contrast
        "flipped": (gx < 0).float().numpy(),  # the ramp runs right to left
        "ramp angle": torch.rad2deg(torch.atan2(gy, gx.abs())).numpy(),  # rotation, shear
        "zero fill": (x == 0).float().mean((1, 2)).numpy(),  # rotation, scale, translation
        "centre TV": (centre[:, :, 1:] - centre[:, :, :-1]).abs().mean((1, 2)).numpy(),  # blur
    }


# absolute slack per feature: uint8 rounding (the reference truncates after each colour op) and pixel quantisation
SLACK = {
    "centre mean": 1.5,
    "image mean": 1.5,
    "image std": 1.0,
    "flipped": 0.0,
    "ramp angle": 0.5,
    "zero fill": 0.003,
    "centre TV": 1.0,
}


def _mismatches(ref: dict, new: dict) -> list[str]:
    """Features whose mean or spread differ by more than sampling noise (at least 5 standard errors at 800 draws)."""
    bad = []
    for k in ref:
        a, b = ref[k], new[k]
        spread = max(a.std(), b.std())
        if abs(a.mean() - b.mean()) > 0.25 * spread + SLACK[k]:
            bad.append(f"{k}: mean {a.mean():.3f} vs {b.mean():.3f}")
        if abs(a.std() - b.std()) > 0.25 * spread + SLACK[k]:
            bad.append(f"{k}: std {a.std():.3f} vs {b.std():.3f}")
    return bad


@functools.cache
def _reference_features(spec: str) -> dict[str, np.ndarray]:
    return _features(_reference(spec, _phantom()))


def _reference(spec: str, img: torch.Tensor, n: int = N_DRAWS) -> torch.Tensor:
    t = build(spec)
    with torch.random.fork_rng(devices=[]):  # the reference draws from the global RNG
        torch.manual_seed(0)
        return torch.stack([t(img) for _ in range(n)])


def _batched(spec: str, img: torch.Tensor, n: int = N_DRAWS, seed: int = 1) -> torch.Tensor:
    aug = BatchAugment.from_specs((("NORMAL", spec), ("PNEUMONIA", spec)))
    return aug(
        img.expand(n, -1, -1, -1).contiguous(), torch.zeros(n, dtype=torch.long), torch.Generator().manual_seed(seed)
    )


SPECS = [
    "log_baseline",
    "log_strong_normal",
    "robust",
    "central_focus",
    "central_focus+log_baseline",
    "none",
    "sharpness",
    "robust+sharpness",
]


def test_every_named_transform_has_a_batched_equivalent():
    # the log's pipelines have a per-sample reference in the package; the recipe's a test oracle (one implementation
    # each in the package: the batched one)
    assert set(A.BATCHED) == set(TRANSFORMS) | set(ORACLE)


@pytest.mark.parametrize("spec", SPECS)
def test_batched_path_matches_the_per_sample_reference_in_distribution(spec):
    new = _batched(spec, _phantom())
    assert new.dtype == torch.uint8 and new.shape == (N_DRAWS, 1, SIZE, SIZE)
    assert _mismatches(_reference_features(spec), _features(new)) == []


def test_the_phantom_features_see_the_parameters():
    # the features must move with the parameters, or the comparison above would pass vacuously
    f = _reference_features("log_baseline")
    assert 0.4 < f["flipped"].mean() < 0.6
    assert 4.5 < f["ramp angle"].std() < 7.0  # uniform in +-10 degrees: std 5.8
    assert 5 < f["centre mean"].std()  # brightness +-20%
    still = _features(_phantom()[None])
    assert still["flipped"][0] == 0 and abs(still["ramp angle"][0]) < 0.5 and still["zero fill"][0] == 0


WRONG = {
    "flip always": (
        "log_baseline",
        lambda: [
            A.K.RandomHorizontalFlip(p=1.0),
            A.K.RandomRotation(10.0, resample="nearest", p=1.0),
            A.ColorJitter(0.2, 0.2),
        ],
    ),
    "rotation 20": (
        "log_baseline",
        lambda: [
            A.K.RandomHorizontalFlip(p=0.5),
            A.K.RandomRotation(20.0, resample="nearest", p=1.0),
            A.ColorJitter(0.2, 0.2),
        ],
    ),
    "jitter 0.4": (
        "log_baseline",
        lambda: [
            A.K.RandomHorizontalFlip(p=0.5),
            A.K.RandomRotation(10.0, resample="nearest", p=1.0),
            A.ColorJitter(0.4, 0.4),
        ],
    ),
    "no blur": (
        "log_strong_normal",
        lambda: [
            A.K.RandomHorizontalFlip(p=0.5),
            A.K.RandomRotation(20.0, resample="nearest", p=1.0),
            A.ColorJitter(0.4, 0.4),
        ],
    ),
    "gamma 0.3-3": ("robust", lambda: [*A._robust()[:2], A.RandomGamma(0.3, 3.0), *A._robust()[3:]]),
    "affine without scale": (
        "robust",
        lambda: [
            A.K.RandomHorizontalFlip(p=0.5),
            A.K.RandomAffine(degrees=15.0, translate=(0.1, 0.1), shear=8.0, resample="nearest", p=1.0),
            *A._robust()[2:],
        ],
    ),
    "noise always, up to 30": ("sharpness", lambda: [A.RandomResolution(0.35, 1.0, 0.5), A.RandomNoise(30.0, 1.0)]),
    "no resolution change": ("sharpness", lambda: [A.RandomNoise(15.0, 0.5)]),
}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_a_wrong_batched_pipeline_fails_the_distribution_comparison(wrong, monkeypatch):
    spec, steps = WRONG[wrong]
    monkeypatch.setitem(A.BATCHED, spec, steps)
    assert _mismatches(_reference_features(spec), _features(_batched(spec, _phantom())))


def test_central_focus_is_the_reference_itself():
    img = _phantom()
    new = _batched("central_focus", img, n=2)
    assert (new.int() - CentralFocus()(img).int()).abs().max() <= 1


def test_each_class_gets_only_its_own_pipeline():
    x = _phantom().expand(16, -1, -1, -1).contiguous()
    y = torch.tensor([0, 1] * 8)
    out = BatchAugment.from_specs((("NORMAL", "none"), ("PNEUMONIA", "robust")))(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(out[y == 0], x[y == 0])  # NORMAL untouched
    assert all(not torch.equal(o, xi) for o, xi in zip(out[y == 1], x[y == 1]))  # every PNEUMONIA row augmented
    focus = BatchAugment.from_specs((("NORMAL", "central_focus"), ("PNEUMONIA", "none")))(
        x, y, torch.Generator().manual_seed(0)
    )
    assert torch.equal(focus[y == 1], x[y == 1])
    assert (focus[y == 0].int() - CentralFocus()(x[0]).int()).abs().max() <= 1


def _batch(n=8):
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 1, 32, 32), generator=g, dtype=torch.uint8), torch.tensor([0, 1] * (n // 2))


def test_same_generator_seed_same_output_and_the_global_rng_untouched():
    aug = BatchAugment.from_specs(RECOMMENDED.train_transforms)
    x, y = _batch()
    before = torch.get_rng_state()
    torch.manual_seed(123)
    a = aug(x, y, torch.Generator().manual_seed(7))
    after_a = torch.get_rng_state()
    torch.manual_seed(456)  # another global state: no effect on the output
    b = aug(x, y, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    torch.manual_seed(123)
    assert torch.equal(after_a, torch.get_rng_state())  # the call left the global RNG where it was
    assert not torch.equal(a, aug(x, y, torch.Generator().manual_seed(8)))
    g = torch.Generator().manual_seed(7)
    first, second = aug(x, y, g), aug(x, y, g)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances
    torch.set_rng_state(before)


def test_the_global_rng_stream_is_not_consumed():
    aug = BatchAugment.from_specs(RECOMMENDED.train_transforms)
    x, y = _batch()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    aug(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("spec", ["bogus", "log_baseline+bogus"])
def test_unknown_spec_is_refused_by_name(spec):
    with pytest.raises(KeyError, match="bogus"):
        BatchAugment.from_specs((("NORMAL", spec), ("PNEUMONIA", "none")))


def test_non_uint8_input_is_refused():
    aug = BatchAugment.from_specs(RECOMMENDED.train_transforms)
    x, y = _batch()
    with pytest.raises(ValueError, match="uint8"):
        aug(x.float(), y, torch.Generator())


def test_prepare_batch_is_augmentation_then_the_checkpoint_preprocessing():
    aug = BatchAugment.from_specs(RECOMMENDED.train_transforms)
    pre = Preprocessing(image_size=32, in_channels=3, normalize="imagenet")
    x, y = _batch()
    xin, yin = prepare_batch(aug, pre, x, y, torch.Generator().manual_seed(3), "cpu")
    assert xin.dtype == torch.float32 and xin.shape == (8, 3, 32, 32) and torch.equal(yin, y)
    assert torch.equal(xin, pre(aug(x, y, torch.Generator().manual_seed(3))))
    loader = [(x, y, torch.arange(8)), (x, y, torch.arange(8))]
    batches = list(TrainBatches(loader, aug, pre, torch.Generator().manual_seed(3), "cpu"))
    assert len(batches) == 2 and torch.equal(batches[0][0], xin) and torch.equal(batches[1][2], torch.arange(8))
    assert not torch.equal(batches[0][0], batches[1][0])  # one generator across the epoch's batches


def test_gamma_and_jitter_parameters_follow_the_reference_formulas():
    # constant image, no geometry: the outputs are the factors themselves
    x = torch.full((4000, 1, 4, 4), 100.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        jit = A.ColorJitter(0.2, 0.0)(x)[:, 0, 0, 0] / 100  # contrast is a no-op on a constant image
        gam = A.RandomGamma(0.6, 1.6)(x)[:, 0, 0, 0]
    assert 0.8 <= jit.min() and jit.max() <= 1.2 and abs(jit.mean() - 1) < 0.01  # uniform [0.8, 1.2]
    g = torch.log(gam / 255) / math.log(100 / 255)
    assert 0.6 - 1e-3 <= g.min() and g.max() <= 1.6 + 1e-3
    assert abs(torch.log(g).mean() - (math.log(0.6) + math.log(1.6)) / 2) < 0.02  # log-uniform


def test_figure_shows_both_paths_and_leaves_the_global_rng_alone():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pneumolib.analysis.plots import show_batched_vs_reference
    from pneumolib.data.dataset import discover
    from pneumolib.data.fixture import fixture_dir
    from pneumolib.studies.catalogue import BASELINE

    state = torch.get_rng_state()
    fig = show_batched_vs_reference(BASELINE, discover(fixture_dir())["train"], n_draws=2)
    assert torch.equal(torch.get_rng_state(), state)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 4 * 3  # one image per class, two rows each, decoded + 2 draws
    assert sum("per-sample reference" in t for t in titles) == sum("batched" in t for t in titles) == 4
    plt.close(fig)
    # the recipe's augmentations exist only batched: their reference row says so instead of drawing
    fig = show_batched_vs_reference(RECOMMENDED, discover(fixture_dir())["train"], n_draws=2)
    titles = [ax.get_title() for ax in fig.axes]
    texts = [x.get_text() for ax in fig.axes for x in ax.texts]
    assert sum("batched" in t for t in titles) == 4 and sum("per-sample reference" in t for t in titles) == 0
    assert sum("no per-sample reference" in x for x in texts) == 2
    plt.close(fig)
