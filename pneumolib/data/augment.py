"""The training transforms applied to whole uint8 batches on the training device, with per-sample random parameters."""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import kornia.augmentation as K
import torch
from torch import nn

from ..core.config import CLASSES
from ..core.registry import Registry
from ..data.transforms import CentralFocus, Preprocessing

# Batched equivalents of transforms.TRANSFORMS (the per-sample reference the tests compare against). Every step
# works on float N x C x H x W batches holding grey levels in [0, 255] and draws its parameters, one set per
# row, from the global torch RNG, which BatchAugment seeds from the run's generator and restores afterwards.
# Geometry and blur are kornia's; brightness/contrast and gamma are one-line batched ops of our own, because
# kornia's RandomBrightness is additive while torchvision's ColorJitter (the reference) is multiplicative.


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n) * (high - low) + low


class ColorJitter(nn.Module):
    """torchvision's ColorJitter(brightness, contrast) per row: brightness multiplies by a factor uniform in
    [1 - b, 1 + b]; contrast blends with the image's mean grey by a factor uniform in [1 - c, 1 + c]; the two
    in a random order (torchvision permutes its ops per call), each clamped to [0, 255]."""

    def __init__(self, brightness: float, contrast: float):
        super().__init__()
        self.brightness, self.contrast = brightness, contrast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        b = _uniform(n, max(0.0, 1 - self.brightness), 1 + self.brightness).to(x.device).view(n, 1, 1, 1)
        c = _uniform(n, max(0.0, 1 - self.contrast), 1 + self.contrast).to(x.device).view(n, 1, 1, 1)
        brightness_first = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)

        def bright(t):
            return (t * b).clamp_(0, 255)

        def contrast(t):
            return (t * c + t.mean((1, 2, 3), keepdim=True) * (1 - c)).clamp_(0, 255)

        return torch.where(brightness_first, contrast(bright(x)), bright(contrast(x)))

    def extra_repr(self) -> str:
        return f"brightness={self.brightness}, contrast={self.contrast}"


class RandomGamma(nn.Module):
    """transforms.RandomGamma per row: grey^gamma with log(gamma) uniform in [log low, log high]."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = _uniform(n, math.log(self.low), math.log(self.high)).exp().to(x.device).view(n, 1, 1, 1)
        return (x / 255).clamp_(0, 1).pow(g) * 255

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class BatchCentralFocus(nn.Module):
    """transforms.CentralFocus (deterministic; its tensor path already takes N x C x H x W)."""

    def __init__(self, focus: CentralFocus | None = None):
        super().__init__()
        self.focus = focus or CentralFocus()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.focus(x)

    def extra_repr(self) -> str:
        return repr(self.focus)


class RandomResolution(nn.Module):
    """transforms.RandomResolution per row: with probability p, down to a factor uniform in [low, high] and back
    up (bilinear, antialiased: what torchvision's resize does on tensors). Rows differ in size, so they loop."""

    def __init__(self, low: float, high: float, p: float):
        super().__init__()
        self.low, self.high, self.p = low, high, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        apply = torch.rand(n) < self.p
        f = _uniform(n, self.low, self.high)
        out = x.clone()
        for i in apply.nonzero().flatten().tolist():
            size = (max(1, round(h * float(f[i]))), max(1, round(w * float(f[i]))))
            small = torch.nn.functional.interpolate(
                x[i : i + 1], size=size, mode="bilinear", antialias=True, align_corners=False
            )
            out[i : i + 1] = (
                torch.nn.functional.interpolate(
                    small, size=(h, w), mode="bilinear", antialias=True, align_corners=False
                )
                .clamp_(0, 255)
                .round_()
            )
        return out

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}, p={self.p}"


class RandomNoise(nn.Module):
    """transforms.RandomNoise per row: with probability p, Gaussian noise of a std uniform in [0, max_std]."""

    def __init__(self, max_std: float, p: float):
        super().__init__()
        self.max_std, self.p = max_std, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        std = (_uniform(n, 0.0, self.max_std) * (torch.rand(n) < self.p)).to(x.device).view(n, 1, 1, 1)
        return (x + torch.randn(x.shape, device=x.device) * std).round_().clamp_(0, 255)

    def extra_repr(self) -> str:
        return f"max_std={self.max_std}, p={self.p}"


# Nearest-neighbour warps and zero fill: torchvision's defaults for RandomRotation and RandomAffine.
def _log_baseline() -> list[nn.Module]:
    return [K.RandomHorizontalFlip(p=0.5), K.RandomRotation(10.0, resample="nearest", p=1.0), ColorJitter(0.2, 0.2)]


def _log_strong_normal() -> list[nn.Module]:
    # torchvision's GaussianBlur(3) draws sigma uniform in (0.1, 2.0), reflect padding: kornia's defaults match
    return [
        K.RandomHorizontalFlip(p=0.5),
        K.RandomRotation(20.0, resample="nearest", p=1.0),
        K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=1.0),
        ColorJitter(0.4, 0.4),
    ]


def _robust() -> list[nn.Module]:
    # shear=8 is an x-axis shear in (-8, 8) degrees in both libraries; translate is continuous here, whole
    # pixels in torchvision (indistinguishable under nearest-neighbour sampling)
    return [
        K.RandomHorizontalFlip(p=0.5),
        K.RandomAffine(
            degrees=15.0,
            translate=(0.1, 0.1),
            scale=(0.8, 1.2),
            shear=8.0,
            resample="nearest",
            padding_mode="zeros",
            p=1.0,
        ),
        RandomGamma(0.6, 1.6),
        ColorJitter(0.4, 0.4),
        K.RandomGaussianBlur((5, 5), (0.1, 1.5), p=0.3),
    ]


BATCHED = Registry("training transform")  # name -> () -> the batched steps training applies
BATCHED.add("none", list)
BATCHED.add("log_baseline", _log_baseline)
BATCHED.add("log_strong_normal", _log_strong_normal)
BATCHED.add("central_focus", lambda: [BatchCentralFocus()])
BATCHED.add("robust", _robust)
BATCHED.add("sharpness", lambda: [RandomResolution(0.35, 1.0, 0.5), RandomNoise(15.0, 0.5)])


def build_batched(spec: str) -> nn.Sequential:
    """'central_focus+log_baseline' -> Sequential(BatchCentralFocus, <log_baseline's steps>), left to right."""
    parts = [p.strip() for p in spec.split("+") if p.strip()]
    unknown = [p for p in parts if p not in BATCHED]
    if unknown:
        raise KeyError(f"unknown transform {unknown[0]!r} in {spec!r}; known: {', '.join(BATCHED)}")
    return nn.Sequential(*[step for p in parts for step in BATCHED[p]()])


class BatchAugment(nn.Module):
    """A config's train_transforms on a whole batch: each class's pipeline on that class's rows.

    Input and output are uint8 N x 1 x H x W on any device (the checkpoint's Preprocessing stays the one last
    step, shared with inference). Random parameters are per row; every call draws one seed from the passed
    generator and runs under torch.random.fork_rng, so the global RNG is untouched and the same generator state
    gives the same output on the same device."""

    def __init__(self, class_specs: dict[int, str]):
        super().__init__()
        self.class_specs = dict(class_specs)
        specs = sorted(set(self.class_specs.values()))  # a fixed order, so the draws are reproducible
        self.pipelines = nn.ModuleDict({str(i): build_batched(s) for i, s in enumerate(specs)})
        self.spec_names = specs
        self.classes_of = [sorted(c for c, s in self.class_specs.items() if s == spec) for spec in specs]

    @classmethod
    def from_specs(cls, train_transforms: Iterable[tuple[str, str]]) -> "BatchAugment":
        specs = dict(train_transforms)
        missing = [c for c in CLASSES if c not in specs]
        if missing:
            raise KeyError(f"train_transforms has no entry for class {missing[0]!r} (have: {', '.join(specs)})")
        return cls({CLASSES.index(c): specs[c] for c in CLASSES})

    def forward(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"BatchAugment expects a uint8 N x C x H x W batch, got {x.dtype} {tuple(x.shape)}")
        seed = int(torch.randint(2**62, (1,), generator=generator))
        active = [(pipe, classes) for pipe, classes in zip(self.pipelines.values(), self.classes_of) if len(pipe)]
        if not active:
            return x
        out = x.float()
        labels = labels.to(x.device)
        every = len(self.classes_of) == 1
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for pipe, classes in active:
                if every:  # one pipeline for all classes: no masking
                    out = pipe(out)
                    continue
                rows = torch.isin(labels, torch.tensor(classes, device=x.device)).nonzero().squeeze(1)
                if len(rows):
                    out = out.index_copy(0, rows, pipe(out.index_select(0, rows)))
        return out.round_().clamp_(0, 255).to(torch.uint8)

    def extra_repr(self) -> str:
        return ", ".join(f"{CLASSES[c]}: {s}" for c, s in sorted(self.class_specs.items()))


def prepare_batch(
    aug: BatchAugment,
    pre: Preprocessing,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 batch from the decode cache -> (model input, labels) on `device`: moved, augmented, preprocessed.
    The one code path of training and the bench."""
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    return pre(aug(x, y, generator)), y


class TrainBatches:
    """Wraps a loader of (uint8 batch, labels, indices) and yields (model input, labels, indices) on `device`."""

    def __init__(
        self, loader, aug: BatchAugment, pre: Preprocessing, generator: torch.Generator, device: torch.device | str
    ):
        self.loader, self.aug, self.pre, self.generator, self.device = loader, aug, pre, generator, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for x, y, *rest in self.loader:
            x, y = prepare_batch(self.aug, self.pre, x, y, self.generator, self.device)
            yield (x, y, *rest)
