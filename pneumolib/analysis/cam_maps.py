"""Grad-CAM maps: the CAM wrapper and its targets, the layer read, and the lung and heart statistics of a map."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import cv2  # comes with grad-cam
import numpy as np
import torch
from torch import nn

from ..analysis.cam_methods import METHODS
from ..core.config import CLASSES
from ..data.dataset import Sample
from ..data.lungs import LungBox, LungSegmenter, mask_in_view, read_mask, shipped_segmenter
from ..models.networks import cam_layer, members, stage_blocks

log = logging.getLogger(__name__)


TARGETS = ("PNEUMONIA", "NORMAL", "predicted")


STAGES = ("layer1", "layer2", "layer3", "layer4")  # ResNet stages, strides 4, 8, 16, 32


MIN_CELLS = 8  # 'auto' picks the deepest stage whose map has at least this many cells per side


HEART_BOX = (0.55, 1.0, 0.3, 0.7)  # rows from-to, columns from-to (fractions): heart and diaphragm on a frontal film


def _unscaled(base: type) -> type:
    """A pytorch-grad-cam method that returns its ReLU'd maps unscaled (upsampled to the input, not min-max
    normalised per image), so that the two TTA views and an ensemble's members can be averaged before one
    normalisation, as their probabilities are."""

    class Unscaled(base):
        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            acts = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
            grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
            w, h = self.get_target_width_height(input_tensor)
            out = []
            for i, layer in enumerate(self.target_layers):
                cam = self.get_cam_image(
                    input_tensor,
                    layer,
                    targets,
                    acts[i] if i < len(acts) else None,
                    grads[i] if i < len(grads) else None,
                    eigen_smooth,
                )
                cam = np.maximum(cam, 0).astype(np.float32)
                out.append(np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in cam])[:, None])
            return out

        def aggregate_multi_layers(self, cam_per_target_layer):
            return np.maximum(np.concatenate(cam_per_target_layer, axis=1), 0).mean(axis=1)

    Unscaled.__name__ = base.__name__
    return Unscaled


class CAM:
    """`with CAM(model) as cam: heatmaps = cam.maps(x, classes, tta)`; the device is taken from the model.
    After a call, `cam.map_size` is the native (h, w) of the layer's map, before upsampling to the input."""

    def __init__(
        self,
        model: torch.nn.Module,
        method: str = "gradcam",
        target_layer: torch.nn.Module | list[torch.nn.Module] | None = None,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown CAM method {method!r}; known: {', '.join(METHODS)}")
        self.model, self.method = model.eval(), method
        # a list (one block per ensemble member): the members' maps are averaged
        layers = target_layer if isinstance(target_layer, list) else [target_layer or cam_layer(model)]
        self._cam = _unscaled(METHODS[method])(model=self.model, target_layers=layers)
        self.map_size: tuple[int, int] | None = None

    def __enter__(self) -> "CAM":
        return self

    def __exit__(self, *exc) -> None:
        self._cam.__exit__(*exc)

    def __call__(self, x: torch.Tensor, targets: list | None = None) -> np.ndarray:
        """N x H x W unscaled, non-negative maps; targets are callables on the logits."""
        x = x.to(next(self.model.parameters()).device)
        heat = self._cam(input_tensor=x, targets=targets)
        acts = self._cam.activations_and_grads.activations
        if acts:
            self.map_size = tuple(int(v) for v in acts[-1].shape[-2:])
        return np.asarray(heat, np.float32)

    def maps(self, x: torch.Tensor, classes, tta: bool = False) -> np.ndarray:
        """Maps in [0, 1] for the class indices `classes`, each explaining the log-odds of that class's probability
        (LogitDifference); with tta, the unscaled maps of the image and of its flip (flipped back) are averaged,
        then scaled once: the two views whose probabilities a prediction averages, weighted alike."""
        targets = class_targets(classes)
        heat = self(x, targets)
        if tta:
            heat = (heat + self(torch.flip(x, dims=[3]), targets)[:, :, ::-1]) / 2
        peak = heat.max(axis=(1, 2), keepdims=True)
        heat = np.where(peak > 0, heat / np.where(peak > 0, peak, 1), 0)  # an empty map stays all zero
        return np.ascontiguousarray(heat, dtype=np.float32)


class LogitDifference:
    """The CAM target for class c of a two-class softmax: z_c - z_other = log(p_c / (1 - p_c)), the log-odds of the
    probability predict reports (for an Ensemble, whose output is log mean probability, the same holds)."""

    def __init__(self, category: int):
        self.category = int(category)

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 1:
            return out[self.category] - out[1 - self.category]
        return out[:, self.category] - out[:, 1 - self.category]


def class_targets(classes) -> list[LogitDifference]:
    return [LogitDifference(int(c)) for c in classes]


def stage_sizes(model: nn.Module, image_size: int, in_channels: int) -> dict[str, tuple[int, int]]:
    """Native map size (h, w) of each ResNet stage for a square input of `image_size` pixels."""
    sizes: dict[str, tuple[int, int]] = {}
    net = members(model)[0]  # an ensemble's members share one architecture
    hooks = [
        getattr(net, name).register_forward_hook(
            lambda m, i, o, name=name: sizes.__setitem__(name, tuple(int(v) for v in o.shape[-2:]))
        )
        for name in STAGES
        if hasattr(net, name)
    ]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def resolve_layer(model: nn.Module, layer: str, image_size: int, in_channels: int) -> tuple[str, list[nn.Module]]:
    """('layer3', [model.layer3[-1]]) for layer='layer3' (one block per member of an ensemble); 'auto' = the deepest stage with >= MIN_CELLS cells per side
    (layer3 at 128-255 px, layer2 at 64 px, layer4 from 256 px), so maps are never the 4 x 4 blobs of layer4."""
    if layer == "auto":
        sizes = stage_sizes(model, image_size, in_channels)
        fine = [name for name in STAGES if name in sizes and min(sizes[name]) >= MIN_CELLS]
        layer = fine[-1] if fine else STAGES[0]
    if layer not in STAGES or not hasattr(members(model)[0], layer):
        raise ValueError(f"unknown CAM layer {layer!r}; known: auto, {', '.join(STAGES)}")
    return layer, stage_blocks(model, layer)


def target_classes(target: str, probs: np.ndarray, threshold: float) -> np.ndarray:
    """The class index each map explains: a fixed class, or the one the threshold picks from P(PNEUMONIA)."""
    if target == "predicted":
        return (probs >= threshold).astype(int)
    if target not in CLASSES:
        raise ValueError(f"unknown CAM target {target!r}; known: {', '.join(TARGETS)}")
    return np.full(len(probs), CLASSES.index(target))


def target_label(target: str) -> str:
    return "the predicted class's log-odds" if target == "predicted" else f"log-odds of P({target})"


# --- lung fields ----------------------------------------------------------------------------
def lung_mask(
    sample: Sample,
    image: np.ndarray,
    exact_masks: Callable[[Path], Path | None] | None = None,
    segmenter: LungSegmenter | None = None,
    box: LungBox | None = None,
    film_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, str, str]:
    """The film's lung mask in the model input's frame (image's size; cut to `box` for a lung-cropped model), where
    it came from: 'annotated' when `exact_masks` (a path -> mask file or None: lungs.annotated_mask finds the shared
    data's and the fixture's) has one for this film, else 'learned' (the shipped lung segmenter); and the learned
    mask's quality-check problem ('' = passed; an annotation is the reference and is not checked), judged on the
    whole film, where the check's limits were calibrated. FILM_MASK (with `box`): the whole film's mask that drew the
    crop box (DecodedCache.lung_mask); it is used as it is, with the box's own quality decision, so the crop and
    these statistics never disagree about a film."""
    exact = exact_masks(sample.path) if exact_masks is not None else None
    if exact is not None:
        return mask_in_view(read_mask(exact), box, image.shape), "annotated", ""
    if box is not None and film_mask is not None:
        return mask_in_view(film_mask, box, image.shape), "learned", box.problem
    segmenter = segmenter or shipped_segmenter()
    if box is None:
        m = segmenter.segment_array(image)
        return m, "learned", segmenter.check.problems(m)
    _, film_mask = segmenter.segment_file(sample.path)  # the crop is a part of the film: segment the whole film
    return mask_in_view(film_mask, box, image.shape), "learned", segmenter.check.problems(film_mask)


# --- scores ---------------------------------------------------------------------------------
def lung_focus(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the CAM's energy inside the lung fields (1 = all attention on the lungs)."""
    if cam.shape != mask.shape:
        cam = cv2.resize(cam.astype(np.float32), mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
    total = float(cam.sum())
    return float((cam * mask).sum() / total) if total > 0 else float("nan")


def area_share(mask: np.ndarray) -> float:
    return float(mask.sum() / mask.size)


def lift(cam: np.ndarray, mask: np.ndarray) -> float:
    """Energy share inside `mask` divided by the mask's share of the image: 1.0 = no preference (a uniform map
    scores exactly 1), 2.0 = twice the energy chance would put there."""
    a = area_share(mask)
    return lung_focus(cam, mask) / a if a > 0 else float("nan")


def heart_box_mask(h: int, w: int) -> np.ndarray:
    r0, r1, c0, c1 = HEART_BOX
    box = np.zeros((h, w), bool)
    box[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)] = True
    return box


def lower_central_share(cam: np.ndarray) -> float:
    """Share of the CAM's energy in the lower-central box (rows 55-100%, columns 30-70%) where the heart
    and the diaphragm sit on a frontal film: the log's 'attention on the heart / lower diaphragm'."""
    return lung_focus(cam, heart_box_mask(*cam.shape))


def first_per_class(samples: list[Sample], n: int) -> tuple[list[Sample], str]:
    """The first `n` films of each class in the order given (discover lists them sorted by file path), and a
    sentence that says so: the grids and the lift statistics state which films they are."""
    picked = [s for label in range(len(CLASSES)) for s in [x for x in samples if x.label == label][:n]]
    counts = ", ".join(f"{sum(s.label == i for s in picked)} {c}" for i, c in enumerate(CLASSES))
    return picked, f"first {n} films per class in file-path order ({counts})"
