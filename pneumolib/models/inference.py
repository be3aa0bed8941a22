"""The one batched inference path: per-view, per-member logits for samples, a dataset or a tensor of inputs."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.dataset import DEFAULT_CACHE, DecodedCache, Sample, XRayDataset
from ..models.networks import Ensemble, members

DEFAULT_BATCH = 64


def _batches(source: Any, preprocessing, *, batch_size: int, cache: DecodedCache | None, transform):
    """Model inputs in batches of at most batch_size: from a tensor (already preprocessed), a Dataset whose items
    start with the input, or a list of Samples (decoded through the cache, shifted by `transform`, preprocessed)."""
    if isinstance(source, torch.Tensor):
        for i in range(0, len(source), batch_size):
            yield source[i:i + batch_size]
        return
    if isinstance(source, (list, tuple)) and (not source or isinstance(source[0], Sample)):
        if preprocessing is None:
            raise ValueError("samples need the checkpoint's preprocessing to become model inputs")
        source = XRayDataset(list(source), preprocessing, transform, cache or DEFAULT_CACHE)
    loader = torch.utils.data.DataLoader(source, batch_size=batch_size, shuffle=False)
    for batch in loader:
        yield batch[0] if isinstance(batch, (list, tuple)) else batch


def n_views(tta: bool) -> int:
    return 2 if tta else 1


def views(x: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The inputs a prediction averages over: the image, and with tta its horizontal flip."""
    return [x, torch.flip(x, dims=[3])] if tta else [x]


@torch.no_grad()
def view_logits(model: torch.nn.Module, source: Any, preprocessing=None, *, tta: bool = False,
                batch_size: int = DEFAULT_BATCH, cache: DecodedCache | None = None, transform=None,
                device=None) -> torch.Tensor:
    """Logits V x M x N x 2 (V views: the image and, with tta, its flip; M members of an Ensemble, each divided by
    its temperature; one member otherwise), on the CPU. Only one batch of inputs is in memory at a time."""
    param = next(model.parameters(), None)
    device = device or (param.device if param is not None else torch.device("cpu"))
    model.eval()
    nets = [m.eval() for m in members(model)]
    temperature = float(model.temperature) if isinstance(model, Ensemble) else 1.0
    out = []
    for x in _batches(source, preprocessing, batch_size=batch_size, cache=cache, transform=transform):
        x = x.to(device)
        out.append(torch.stack([torch.stack([net(v).float().cpu() / temperature for net in nets])
                                for v in views(x, tta)]))
    if not out:
        return torch.zeros(n_views(tta), len(nets), 0, 2)
    return torch.cat(out, dim=2)


def class_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """N x 2 class probabilities from V x M x N x 2 logits: the mean over views and members of softmax(logits / T),
    exactly what a served model (an Ensemble with flip TTA included) reports."""
    return torch.softmax(logits.float() / temperature, dim=-1).mean(dim=(0, 1))


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """P(PNEUMONIA) per input from V x M x N x 2 logits (see class_probabilities)."""
    return class_probabilities(logits, temperature)[:, 1].numpy()


def predict_proba(model: torch.nn.Module, source: Any, preprocessing=None, **kw) -> np.ndarray:
    """P(PNEUMONIA) per input, through view_logits (the same number predict, evaluate, the stress test, Grad-CAM
    and ROAD report)."""
    return probabilities(view_logits(model, source, preprocessing, **kw))
