"""A test oracle: per-sample versions of the recipe's augmentations ('robust', 'sharpness'), written independently of
the batched ones training uses (pneumolib.data.augment), so the batched path can be checked against a reference in
distribution. The package keeps one implementation of each augmentation; this lives with the tests."""

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from pneumolib.data.transforms import LOG_TRANSFORMS
from pneumolib.data.transforms import build as build_log


class RandomGamma:
    """Random gamma on a uint8 image: a stand-in for differences between scanners' response curves."""

    def __init__(self, low: float = 0.7, high: float = 1.4):
        self.low, self.high = low, high

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        g = float(torch.empty(1).uniform_(np.log(self.low), np.log(self.high)).exp())
        return ((img.float() / 255).pow(g) * 255).round().to(torch.uint8)

    def __repr__(self) -> str:
        return f"RandomGamma({self.low}, {self.high})"


class RandomResolution:
    """With probability p, down to a random factor of the size (uniform in [low, high]) and back up, antialiased: a
    lower-resolution source (the stress test's low_res shift is one fixed point of this)."""

    def __init__(self, low: float = 0.35, high: float = 1.0, p: float = 0.5):
        self.low, self.high, self.p = low, high, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(1)) >= self.p:
            return img
        f = float(torch.empty(1).uniform_(self.low, self.high))
        h, w = img.shape[-2:]
        small = TF.resize(img, [max(1, round(h * f)), max(1, round(w * f))], antialias=True)
        return TF.resize(small, [h, w], antialias=True)

    def __repr__(self) -> str:
        return f"RandomResolution({self.low}, {self.high}, p={self.p})"


class RandomNoise:
    """With probability p, Gaussian noise whose standard deviation (grey levels) is uniform in [0, max_std]: a
    noisier detector."""

    def __init__(self, max_std: float = 15.0, p: float = 0.5):
        self.max_std, self.p = max_std, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(1)) >= self.p:
            return img
        std = float(torch.empty(1).uniform_(0.0, self.max_std))
        return (img.float() + torch.randn(img.shape) * std).round().clamp(0, 255).to(torch.uint8)

    def __repr__(self) -> str:
        return f"RandomNoise({self.max_std}, p={self.p})"


def robust():
    # stronger geometry and scanner-like intensity changes (not from the log)
    return T.Compose(
        [
            T.RandomHorizontalFlip(),
            T.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=8),
            RandomGamma(0.6, 1.6),
            T.ColorJitter(brightness=0.4, contrast=0.4),
            T.RandomApply([T.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.3),
        ]
    )


def sharpness():
    # resolution loss and detector noise, the kinds of change the 'robust' augmentation leaves out
    return T.Compose([RandomResolution(0.35, 1.0, p=0.5), RandomNoise(15.0, p=0.5)])


ORACLE = {"robust": robust, "sharpness": sharpness}


def build(spec: str):
    """The per-sample reference of SPEC: the log's pipelines from the package, the recipe's from this oracle."""
    steps = []
    for part in (p.strip() for p in spec.split("+") if p.strip()):
        steps.append(build_log(part) if part in LOG_TRANSFORMS else ORACLE[part]())
    return steps[0] if len(steps) == 1 else T.Compose(steps)
