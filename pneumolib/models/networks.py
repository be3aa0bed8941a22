"""Build the classifier: torchvision ResNets with 1- or 3-channel input, ImageNet weights only when present."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn
from torchvision import models

WEIGHTS_ENV = "PNEUMOLIB_IMAGENET_WEIGHTS"


class WeightsUnavailable(FileNotFoundError):
    """Pretrained weights were asked for and are not on this machine."""


def imagenet_weights_file(name: str = "resnet18") -> tuple[Path, str]:
    """Where torchvision keeps the DEFAULT ImageNet weights for `name`, and their download URL."""
    weights = models.get_model_weights(name).DEFAULT
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    return hub_dir / Path(weights.url).name, weights.url


def resolve_weights(name: str = "resnet18", weights_path: str | Path | None = None) -> Path:
    """The local file to load ImageNet weights from, or WeightsUnavailable saying how to provide it."""
    explicit = weights_path or os.environ.get(WEIGHTS_ENV)
    cached, url = imagenet_weights_file(name)
    path = Path(explicit).expanduser() if explicit else cached
    if path.is_file():
        return path
    raise WeightsUnavailable(
        f"ImageNet weights for {name} not found at {path} (torchvision looks in {cached.parent}); "
        f"download {url} into that folder, or point {WEIGHTS_ENV} / weights_path at a local copy"
    )


class WeightsError(ValueError):
    """An ImageNet weights file that cannot be used; str() is one line naming the file and the problem."""


def read_imagenet_weights(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict in a torchvision weights file, checked against MODEL's tensors (names and shapes) before it
    is loaded; WeightsError (one line) for a text file, a foreign pickle, another architecture."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        raise WeightsError(
            f"{path}: not a torch weights file (torchvision's {path.suffix or '.pth'} is a zip archive); "
            f"point {WEIGHTS_ENV} at the downloaded file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  torch raises many types for a file that is not weights
        raise WeightsError(
            f"{path}: not a readable torch weights file ({type(e).__name__}: {' '.join(str(e).split())[:100]})"
        ) from None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != want:
        diff = sorted(set(got) ^ set(want)) or [k for k in want if got[k] != want[k]]
        raise WeightsError(
            f"{path}: these weights are not torchvision's for this model ({len(diff)} tensor(s) differ, e.g. {diff[0]})"
        )
    return state


def build_model(
    name: str = "resnet18",
    in_channels: int = 1,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    num_classes: int = 2,
) -> nn.Module:
    """A torchvision ResNet with `in_channels` inputs and a `num_classes` head.

    pretrained=True loads ImageNet weights from the torch cache or `weights_path` and fails loudly
    (WeightsUnavailable) when they are absent: never a silent fall-back to random init.
    For 1-channel input the pretrained conv1 filters are summed over RGB, which gives the same
    response to a grey image as the 3-channel network gives to that image replicated.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    try:
        model = models.get_model(name, weights=None)
    except ValueError:
        raise ValueError(f"unknown model {name!r}; try resnet18, resnet34 or resnet50") from None
    if pretrained:
        path = resolve_weights(name, weights_path)
        model.load_state_dict(read_imagenet_weights(path, model))
    if in_channels == 1:
        old = model.conv1
        conv = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        model.conv1 = conv
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


COMBINE = ("prob", "logit")  # how an ensemble's members are combined: their mean probability, or their mean logit


class Ensemble(nn.Module):
    """Several trained networks served as one model. Its output is log(mean_i softmax(member_i(x) / T)), so
    softmax(output) is the members' average probability: every caller that takes a softmax of a model's output
    (predictions, TTA, the stress test, Grad-CAM targets) serves the ensemble unchanged. T (temperature scaling,
    fitted on validation) divides every member's logits; one member with T != 1 is a temperature-scaled model.
    With combine="logit" the output is instead the members' mean logit over T (the recipe's seed ensemble)."""

    def __init__(self, members: list[nn.Module], temperature: float = 1.0, combine: str = "prob"):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if combine not in COMBINE:
            raise ValueError(f"unknown combination {combine!r} ({' | '.join(COMBINE)})")
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.combine == "logit":  # the members' mean logit, temperature-scaled
            return torch.stack([m(x).float() for m in self.members]).mean(0) / self.temperature
        logp = torch.stack([torch.log_softmax(m(x).float() / self.temperature, dim=1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))


def members(model: nn.Module) -> list[nn.Module]:
    """The networks a model is made of: an ensemble's members, else the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def stage_blocks(model: nn.Module, stage: str) -> list[nn.Module]:
    """The last block of a ResNet stage ('layer3'), once per member: the layers Grad-CAM reads (pytorch-grad-cam
    averages the members' maps when given several)."""
    return [getattr(m, stage)[-1] for m in members(model)]


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the last block of a ResNet's layer4 (the first member's, for an ensemble)."""
    return members(model)[0].layer4[-1]
