"""The one batched inference path: per-view, per-member logits for samples, a dataset or a tensor of inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.dataset import Sample, XRayDataset
from ..data.resources import Resources, as_resources
from ..models.networks import Ensemble, members

DEFAULT_BATCH = 64


def sample_batches(
    samples: list[Sample], preprocessing, *, batch_size: int, resources: Resources | None = None, transform=None
):
    """Model inputs for SAMPLES, in their order, at most batch_size at a time: each film decoded through the
    context's cache (`resources`, default: a new one for this call),
    changed by `transform` (e.g. a simulated scanner shift), then preprocessed. The one place samples become
    batches: the inference pass (view_outputs) and BatchNorm adaptation (analysis.adapt) both read their inputs
    here, so a film is the same tensor wherever it goes through the network."""
    return _loader_batches(XRayDataset(list(samples), preprocessing, transform, as_resources(resources)), batch_size)


def _loader_batches(dataset, batch_size: int):
    """The first field of every batch a plain (unshuffled, in-process) DataLoader makes of DATASET: its model
    inputs, whatever else its items carry (labels, indices)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        yield batch[0] if isinstance(batch, (list, tuple)) else batch


def _batches(source: Any, preprocessing, *, batch_size: int, resources: Resources | None, transform):
    """Model inputs in batches of at most batch_size: from a tensor (already preprocessed), a Dataset whose items
    start with the input, or a list of Samples (sample_batches)."""
    if isinstance(source, torch.Tensor):
        for i in range(0, len(source), batch_size):
            yield source[i : i + batch_size]
        return
    if isinstance(source, (list, tuple)) and (not source or isinstance(source[0], Sample)):
        if preprocessing is None:
            raise ValueError("samples need the checkpoint's preprocessing to become model inputs")
        yield from sample_batches(
            source, preprocessing, batch_size=batch_size, resources=resources, transform=transform
        )
        return
    yield from _loader_batches(source, batch_size)


def n_views(tta: bool) -> int:
    return 2 if tta else 1


def views(x: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The inputs a prediction averages over: the image, and with tta its horizontal flip."""
    return [x, torch.flip(x, dims=[3])] if tta else [x]


@torch.no_grad()
def view_outputs(
    model: torch.nn.Module,
    source: Any,
    preprocessing=None,
    *,
    tta: bool = False,
    batch_size: int = DEFAULT_BATCH,
    resources: Resources | None = None,
    transform=None,
    device=None,
    features: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one pass of films through the network: every film goes through once per view and member.

    Args:
        model: a network or an `Ensemble`.
        source: a list of Samples (decoded through the cache of `resources`, shifted by `transform`, preprocessed), a Dataset whose
            items start with the input, or a tensor of preprocessed inputs.
        preprocessing: the checkpoint's preprocessing (needed for Samples).
        tta: also the horizontal flip of every input.
        features: also return the penultimate features (the final linear layer's input) of the first member on
            the unflipped view, read by a hook during the same forward pass (the OOD score uses them).

    Returns:
        (logits V x M x N x 2 on the CPU: V views, M members each divided by its temperature; features N x D, or
        None when not asked for). Only one batch of inputs is in memory at a time.
    """
    param = next(model.parameters(), None)
    device = device or (param.device if param is not None else torch.device("cpu"))
    model.eval()
    nets = [m.eval() for m in members(model)]
    temperature = float(model.temperature) if isinstance(model, Ensemble) else 1.0
    out, seen = [], []
    hook = None
    if features:
        want = {"on": False}
        hook = nets[0].fc.register_forward_hook(
            lambda mod, inp, res: seen.append(inp[0].detach().float().cpu()) if want["on"] else None
        )
    try:
        for x in _batches(source, preprocessing, batch_size=batch_size, resources=resources, transform=transform):
            x = x.to(device)
            per_view = []
            for k, v in enumerate(views(x, tta)):
                per_member = []
                for j, net in enumerate(nets):
                    if hook is not None:
                        want["on"] = k == 0 and j == 0
                    per_member.append(net(v).float().cpu() / temperature)
                per_view.append(torch.stack(per_member))
            out.append(torch.stack(per_view))
    finally:
        if hook is not None:
            hook.remove()
    feats = None
    if features:
        feats = torch.cat(seen) if seen else torch.zeros(0, nets[0].fc.in_features)
    if not out:
        return torch.zeros(n_views(tta), len(nets), 0, 2), feats
    return torch.cat(out, dim=2), feats


def view_logits(model: torch.nn.Module, source: Any, preprocessing=None, **kw) -> torch.Tensor:
    """Logits V x M x N x 2 through view_outputs (see there)."""
    return view_outputs(model, source, preprocessing, **kw)[0]


def combine_of(model: torch.nn.Module) -> str:
    """How MODEL's members are combined ('prob' for a single network: one member, the same either way)."""
    return model.combine if isinstance(model, Ensemble) else "prob"


def class_probabilities(logits: torch.Tensor, temperature: float = 1.0, combine: str = "prob") -> torch.Tensor:
    """N x 2 class probabilities from V x M x N x 2 logits, exactly what the served model reports (an Ensemble,
    with flip TTA included): with combine 'prob' the mean over views and members of softmax(logits / T); with
    'logit' the softmax of the members' mean logit / T, averaged over views (Ensemble.forward, then TTA)."""
    z = logits.float() / temperature
    if combine == "logit":
        z = z.mean(dim=1, keepdim=True)
    elif combine != "prob":
        raise ValueError(f"unknown combination {combine!r} (prob | logit)")
    return torch.softmax(z, dim=-1).mean(dim=(0, 1))


def probabilities(logits: torch.Tensor, temperature: float = 1.0, combine: str = "prob") -> np.ndarray:
    """P(PNEUMONIA) per input from V x M x N x 2 logits (see class_probabilities)."""
    return class_probabilities(logits, temperature, combine)[:, 1].numpy()


def predict_proba(model: torch.nn.Module, source: Any, preprocessing=None, **kw) -> np.ndarray:
    """P(PNEUMONIA) per input, through view_logits (the same number predict, evaluate, the stress test, Grad-CAM
    and ROAD report)."""
    return probabilities(view_logits(model, source, preprocessing, **kw), combine=combine_of(model))
