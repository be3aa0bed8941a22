"""A transform applied to one class only, as a shortcut: how well the films' sharpness predicts the label.

Notebook 00's account (notebook.account) reads this for the log's entries that transform one class only (02, 03,
06, 07): no test film carries the transform, so a model that learned it sees every test film as the other class."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.config import ExperimentConfig
from ..core.stats import auc_with_interval
from ..studies import catalogue


def transformed_class(config: ExperimentConfig) -> str | None:
    """The one class whose training transform differs from the log's baseline's while the other class keeps the
    baseline's (entries 02, 03, 06, 07), else None."""
    own, base = dict(config.train_transforms), dict(catalogue.BASELINE.train_transforms)
    changed = [c for c in own if own[c] != base.get(c)]
    return changed[0] if len(changed) == 1 else None


PERIPHERY, CENTRE = (0.4, 0.5), 0.3  # distances from the film's centre, as fractions of its side (see sharpness)


def sharpness(films: np.ndarray, contrast: bool = False) -> np.ndarray:
    """Per film (N x H x W): log(1 + the variance of the Laplacian), the usual focus measure (high for sharp edges,
    low for a blurred film; the shortcut audit's log_laplacian_var), over the disc inscribed in the film, which the
    zero fill of a 10-20 degree rotation never reaches. With CONTRAST: that over the periphery ring (PERIPHERY, where
    CentralFocus blurs fully) minus that over the centre (within CENTRE, which it keeps sharp), so that a blurred
    periphery shows whatever the film's own sharpness."""
    from scipy import ndimage as ndi

    h, w = films.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5)
    regions = [(r >= PERIPHERY[0]) & (r <= PERIPHERY[1]), r <= CENTRE] if contrast else [r <= 0.5]

    def focus(a, region):
        return np.log1p(ndi.laplace(a.astype(np.float64))[region].var())

    return np.array([focus(a, regions[0]) - (focus(a, regions[1]) if contrast else 0.0) for a in films])


def one_class_shortcut(
    config: ExperimentConfig, samples: list, cache, image_size: int, seed: int = 0, max_films: int = 1000
) -> dict[str, Any] | None:
    """How well the films' sharpness alone predicts the label when the entry's training augmentation is applied
    (the transformed class through its own pipeline), against the same films through the baseline's augmentation
    (both classes alike). The statistic is `sharpness`: of the periphery against the centre for a CentralFocus
    transform (a blurred periphery), of the whole film otherwise. The AUC is oriented so that 1 means the transformed class is always the blurrier one and
    0.5 means sharpness says nothing; its interval resamples patients (core.stats.auc_with_interval).

    Args:
        config: the entry; None is returned unless exactly one class has its own transform (transformed_class).
        samples: the training films (data.dataset.Sample), of which a seeded class-stratified MAX_FILMS are used.
        cache: the data's decode cache; IMAGE_SIZE: the runs' input size.
        seed: the subsample's, the augmentation's and the bootstrap's seed.
    """
    import torch

    from ..data.augment import BatchAugment
    from ..data.splits import subsample

    cls = transformed_class(config)
    if cls is None or not samples:
        return None
    films = subsample(samples, max_films, seed)
    x = torch.from_numpy(np.stack([cache.get(s.path, image_size) for s in films]))[:, None]
    y = np.array([s.label for s in films])
    patients = [s.patient for s in films]
    sign = -1.0 if cls == "PNEUMONIA" else 1.0  # the score for PNEUMONIA when the transformed class is the blurrier
    spec = dict(config.train_transforms)[cls]
    contrast = "central_focus" in spec  # a blurred periphery: its sharpness against the centre's
    out: dict[str, Any] = {"class": cls, "spec": spec, "n_films": len(films), "contrast": contrast}
    out["n_patients"] = len(set(patients))
    for key, specs in (("auc", config.train_transforms), ("reference", catalogue.BASELINE.train_transforms)):
        seen = BatchAugment.from_specs(specs)(x, torch.from_numpy(y), torch.Generator().manual_seed(seed))
        auc, (lo, hi) = auc_with_interval(y, sign * sharpness(seen[:, 0].numpy(), contrast), patients, seed=seed)
        out[key] = (auc, lo, hi)
    return out
