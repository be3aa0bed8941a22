"""Deterministic scanner-like image shifts: the stress test's inputs, below the studies so plots can show them.

Exposure, contrast, blur, resolution, noise and compression changes, each a fixed function of the image."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF


def _seed_of(x: torch.Tensor) -> int:
    # the same image always gets the same noise, so a shifted split is a fixed data set, not a random draw
    return int.from_bytes(hashlib.sha1(x.numpy().tobytes()).digest()[:4], "little")


def _gamma(g: float):
    return lambda x: ((x.float() / 255).pow(g) * 255).round().to(torch.uint8)


def _contrast(f: float):
    def shift(x):
        m = x.float().mean()
        return ((x.float() - m) * f + m).round().clamp(0, 255).to(torch.uint8)

    return shift


def _blur(sigma_at_128: float):
    def shift(x):
        s = sigma_at_128 * x.shape[-1] / 128
        k = int(2 * round(3 * s) + 1)
        return TF.gaussian_blur(x, [k, k], [s, s])

    return shift


def _low_res(factor: float):
    def shift(x):
        h, w = x.shape[-2:]
        small = TF.resize(x, [max(1, int(h * factor)), max(1, int(w * factor))], antialias=True)
        return TF.resize(small, [h, w], antialias=True)

    return shift


def _noise(std: float):
    def shift(x):
        g = torch.Generator().manual_seed(_seed_of(x))
        return (x.float() + torch.randn(x.shape, generator=g) * std).round().clamp(0, 255).to(torch.uint8)

    return shift


def _affine(**kw):
    return lambda x: TF.affine(x, **{"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0], **kw})


def _sharpen(f: float):
    return lambda x: TF.adjust_sharpness(x, f)


def _jpeg(q: int):
    def shift(x):
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(x.squeeze(0).numpy()).save(buf, format="JPEG", quality=q)
        return torch.from_numpy(np.array(Image.open(buf))).unsqueeze(0)

    return shift


@dataclass(frozen=True)
class Shift:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    # "seen": a kind of change the 'robust' augmentation trains on; "unseen": not in 'robust' (the 'sharpness'
    # augmentation trains on low resolution and noise, so for a recipe that uses it those two are seen too)
    group: str
    what: str
    trained_by: tuple[str, ...] = ()  # training transforms (transforms.TRANSFORMS names) that include this change

    def seen_by(self, transform_specs) -> bool:
        """Whether a recipe whose per-class transform specs ('robust+sharpness', ...) trains on this change."""
        names = {part.strip() for spec in transform_specs for part in str(spec).split("+")}
        return bool(names & set(self.trained_by))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# Each acts on a 1xHxW uint8 image at model size, before the checkpoint's own preprocessing.
SHIFTS: tuple[Shift, ...] = (
    Shift("darker", _gamma(1.6), "seen", "gamma 1.6: a harder exposure curve", ("robust",)),
    Shift("brighter", _gamma(0.6), "seen", "gamma 0.6: a softer exposure curve", ("robust",)),
    Shift("low_contrast", _contrast(0.6), "seen", "contrast x0.6 about the mean", ("robust",)),
    Shift("blur", _blur(1.2), "seen", "Gaussian blur, sigma 1.2 px at 128 px: a softer detector", ("robust",)),
    Shift("zoom_out", _affine(scale=0.85), "seen", "field of view 18% wider, black border", ("robust",)),
    Shift("rotate", _affine(angle=8.0), "seen", "rotated 8 degrees", ("robust",)),
    Shift("high_contrast", _contrast(1.5), "unseen", "contrast x1.5 about the mean, clipped"),
    Shift("low_res", _low_res(0.4), "unseen", "down to 40% and back up: a low-resolution source", ("sharpness",)),
    Shift("noise", _noise(12.0), "unseen", "Gaussian noise, 12 grey levels: a noisier detector", ("sharpness",)),
    Shift("jpeg", _jpeg(20), "unseen", "JPEG quality 20: heavy re-compression"),
    Shift("sharpen", _sharpen(4.0), "unseen", "edge enhancement (sharpness x4), as some scanners apply"),
)
SHIFTS_BY_NAME = {s.name: s for s in SHIFTS}


def two_sites(a: str, b: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A folder that mixes two sites: each film gets shift A or shift B, fixed per film (by its pixels' hash), about
    half each."""
    sa, sb = SHIFTS_BY_NAME[a], SHIFTS_BY_NAME[b]
    return lambda x: sa(x) if _seed_of(x) % 2 else sb(x)
