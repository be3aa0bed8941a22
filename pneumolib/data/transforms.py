"""The log's transforms as small named callables, CentralFocus, and the by-class wrapper."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ..core.config import CLASSES, DEFAULT_MASK_DILATION, MAX_IMAGE_SIZE, NORMALIZATIONS, ConfigError, View, check_int
from ..core.registry import Registry

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class CentralFocus:
    """Keep a central ellipse sharp and blur the periphery (the log's entries 2, 3 and 6).

    `region` is the sharp ellipse's diameter as a fraction of each side, `sigma` the blur's
    standard deviation as a fraction of the image side, `feather` the width of the soft edge.
    Works on PIL images and on CxHxW tensors (uint8 or float), returning the same kind.
    """

    def __init__(self, region: float = 0.6, sigma: float = 0.03, feather: float = 0.1):
        if not (0 < region <= 1 and sigma >= 0 and feather >= 0):
            raise ValueError(
                f"CentralFocus needs 0 < region <= 1, sigma >= 0, feather >= 0; got {region}, {sigma}, {feather}"
            )
        self.region, self.sigma, self.feather = region, sigma, feather

    def __repr__(self) -> str:
        return f"CentralFocus(region={self.region}, sigma={self.sigma}, feather={self.feather})"

    def mask(self, h: int, w: int) -> torch.Tensor:
        """1 inside the sharp ellipse, 0 far outside, a linear ramp across the feather."""
        yy = (torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5
        xx = (torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5
        r = torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2) / (self.region / 2)  # 1 on the ellipse
        if self.feather == 0:
            return (r <= 1).float()
        return ((1 + self.feather / self.region * 2 - r) / (self.feather / self.region * 2)).clamp(0, 1)

    def __call__(self, img):
        if isinstance(img, Image.Image):
            t = TF.pil_to_tensor(img)
            return TF.to_pil_image(self(t), mode=img.mode)
        x = img.float()
        h, w = x.shape[-2:]
        sigma = max(self.sigma * max(h, w), 1e-3)
        k = int(2 * round(3 * sigma) + 1)
        blurred = TF.gaussian_blur(x, [k, k], [sigma, sigma]) if self.sigma > 0 else x
        m = self.mask(h, w).to(x.device)
        out = m * x + (1 - m) * blurred
        return out.round().clamp(0, 255).to(img.dtype) if img.dtype == torch.uint8 else out


class ByClass:
    """Pick the transform by label: class-specific augmentation without misleading flags."""

    def __init__(self, transforms: dict[int, Callable]):
        self.transforms = dict(transforms)

    def __call__(self, img, label: int):
        return self.transforms[int(label)](img)

    def __repr__(self) -> str:
        inner = ", ".join(f"{CLASSES[k]}: {v!r}" for k, v in sorted(self.transforms.items()))
        return f"ByClass({inner})"


class Identity:
    def __call__(self, img):
        return img

    def __repr__(self) -> str:
        return "Identity()"


# --- the log's pipelines, by name -----------------------------------------------------
# Each builder returns a callable on a 1xHxW uint8 tensor (already resized: the log resizes first).
def _log_baseline():
    # entry 1: Resize((224,224)), RandomHorizontalFlip(0.5), RandomRotation(10), ColorJitter(0.2, 0.2),
    # Grayscale(1), ToTensor(): the resize is done once when the image is decoded; Grayscale is a no-op here
    return T.Compose([T.RandomHorizontalFlip(0.5), T.RandomRotation(10), T.ColorJitter(brightness=0.2, contrast=0.2)])


def _log_strong_normal():
    # entry 7: RandomHorizontalFlip(), RandomRotation(20), GaussianBlur(3), ColorJitter(0.4, 0.4), ToTensor()
    return T.Compose(
        [T.RandomHorizontalFlip(), T.RandomRotation(20), T.GaussianBlur(3), T.ColorJitter(brightness=0.4, contrast=0.4)]
    )


# The log's own per-sample pipelines, kept as the reference the batched augmentation (augment.BATCHED, what training
# uses) is checked against and what the benchmark's "plain" pipeline runs. The recipe's augmentations ('robust',
# 'sharpness') are not from the log and exist once, batched, in data.augment.
LOG_TRANSFORMS = Registry("log transform")  # name -> () -> a per-sample pipeline
LOG_TRANSFORMS.add("none", Identity)
LOG_TRANSFORMS.add("log_baseline", _log_baseline)
LOG_TRANSFORMS.add("log_strong_normal", _log_strong_normal)
LOG_TRANSFORMS.add("central_focus", CentralFocus)
TRANSFORMS = LOG_TRANSFORMS  # the name the tests and notebooks used


def has_reference(spec: str) -> bool:
    """Whether every part of SPEC is one of the log's pipelines (which have a per-sample reference)."""
    return all(p.strip() in LOG_TRANSFORMS for p in spec.split("+") if p.strip())


def build(spec: str) -> Callable:
    """The log's per-sample reference pipeline: 'central_focus+log_baseline' -> Compose([CentralFocus(),
    <log_baseline>]), applied left to right. The recipe's augmentations have no per-sample version (training uses
    augment.BatchAugment for every spec)."""
    parts = [p.strip() for p in spec.split("+") if p.strip()]
    unknown = [p for p in parts if p not in LOG_TRANSFORMS]
    if unknown:
        raise KeyError(
            f"no per-sample reference for {unknown[0]!r} in {spec!r} (only the log's pipelines have one: "
            f"{', '.join(LOG_TRANSFORMS)}; training augments batches with augment.BatchAugment)"
        )
    steps = [TRANSFORMS[p]() for p in parts]
    return steps[0] if len(steps) == 1 else T.Compose(steps)


def build_train_transform(train_transforms: tuple[tuple[str, str], ...]) -> ByClass:
    specs = dict(train_transforms)
    return ByClass({CLASSES.index(c): build(specs[c]) for c in CLASSES})


# --- the last step, shared by training and inference ----------------------------------
NORMALIZE = NORMALIZATIONS  # the names live in config; the cases below implement each


def equalize_nonzero(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each uint8 image (...xHxW) computed over its non-zero pixels only, which it maps onto
    1-255; zeros (the black outside a lung mask) stay 0. So the equalised lungs do not depend on how much of the
    picture is black. An image without a non-zero pixel is returned as it is."""
    shape = x.shape
    flat = x.reshape(-1, shape[-2] * shape[-1]).long()
    n = flat.shape[0]
    hist = torch.zeros(n, 256, dtype=torch.float32, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    hist[:, 0] = 0
    cdf = hist.cumsum(1)
    total = cdf[:, -1:].clamp_min(1)
    # ranks of the non-zero grey levels spread over 1..255 (the lowest present level maps near 1)
    lut = (1 + torch.floor((cdf - hist / 2) / total * 255).clamp(0, 254)).to(torch.uint8)
    lut[:, 0] = 0
    out = torch.gather(lut, 1, flat).to(torch.uint8)
    empty = cdf[:, -1] == 0
    out[empty] = x.reshape(n, -1)[empty]
    return out.reshape(shape)


@dataclass(frozen=True)
class Preprocessing:
    """uint8 1xHxW -> float model input; saved in every checkpoint so inference cannot drift."""

    image_size: int
    in_channels: int
    normalize: str = "none"
    crop: str = "none"  # "lungs": decoded films are cropped to their lung fields first (config.View)
    crop_margin: float = 0.08
    crop_segmenter: str = ""  # digest of the lung segmenter whose boxes the model was trained on
    mask_dilation: float = DEFAULT_MASK_DILATION  # crop "lung_mask": how far the lung mask is grown (config.View)

    def __post_init__(self) -> None:
        """Refuse a field a checkpoint could carry malformed (a string size, 20,000 px, an unknown normalisation)."""
        check_int("image_size", self.image_size, 32, MAX_IMAGE_SIZE)  # ResNet downsamples 32x
        check_int("in_channels", self.in_channels, 1, 3)
        if self.in_channels == 2:
            raise ConfigError("preprocessing field in_channels=2 must be 1 or 3")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(
                f"preprocessing field normalize={self.normalize!r} is not one of: {', '.join(NORMALIZATIONS)}"
            )
        if not isinstance(self.crop_segmenter, str):
            raise ConfigError(f"preprocessing field crop_segmenter={self.crop_segmenter!r} must be a string")
        self.view  # checks crop and crop_margin

    @property
    def view(self) -> View:
        """How a file is decoded for this model, before __call__: the crop travels with the weights."""
        return View(self.image_size, self.crop, self.crop_margin, self.crop_segmenter, self.mask_dilation)

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Accepts 1xHxW or Nx1xHxW uint8 (or float in [0, 1]); returns float with in_channels channels."""
        if self.normalize == "equalize":
            # histogram equalisation: the input becomes invariant to any monotone change of the grey levels
            # (a scanner's exposure, gamma, contrast curve), the commonest shift between X-ray cohorts
            u8 = x if x.dtype == torch.uint8 else (x.float() * 255).round().clamp(0, 255).to(torch.uint8)
            x = TF.equalize(u8)
        elif self.normalize == "equalize_masked":
            u8 = x if x.dtype == torch.uint8 else (x.float() * 255).round().clamp(0, 255).to(torch.uint8)
            x = equalize_nonzero(u8)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if self.normalize == "per_image":
            dims = (-3, -2, -1)
            x = (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp_min(1e-3)
        x = x.expand(*x.shape[:-3], self.in_channels, *x.shape[-2:]) if x.shape[-3] == 1 else x
        if self.normalize == "imagenet":
            # a 1-channel model sees the grey image; use the mean of the RGB statistics
            # on x's device: batches are preprocessed on the training device (augment.py)
            mean = torch.tensor(
                IMAGENET_MEAN if self.in_channels == 3 else [np.mean(IMAGENET_MEAN)],
                dtype=torch.float32,
                device=x.device,
            )
            std = torch.tensor(
                IMAGENET_STD if self.in_channels == 3 else [np.mean(IMAGENET_STD)], dtype=torch.float32, device=x.device
            )
            x = (x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
        elif self.normalize not in NORMALIZE:
            raise ValueError(f"unknown normalize {self.normalize!r} ({' | '.join(NORMALIZE)})")
        return x.contiguous()
