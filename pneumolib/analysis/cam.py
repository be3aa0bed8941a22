"""Grad-CAM of the log-odds that predict reports, checked lung masks, lift scores, randomisation and ROAD checks."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2  # comes with grad-cam
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from scipy.stats import spearmanr
from torch import nn

from ..core.config import CLASSES
from ..core.io import atomic_write, make_dir, save_image
from ..core.stats import patient_bootstrap
from ..data.dataset import Sample, ensure_cache
from ..data.lungs import LungBox, LungSegmenter, mask_in_view, read_mask, shipped_segmenter
from ..models.inference import class_probabilities, predict_proba, view_logits
from ..models.networks import cam_layer, members, stage_blocks

log = logging.getLogger(__name__)

from ..analysis.cam_methods import DEFAULT_METHOD, METHODS  # noqa: E402,F401 (the registry, re-exported)

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
                cam = self.get_cam_image(input_tensor, layer, targets, acts[i] if i < len(acts) else None,
                                         grads[i] if i < len(grads) else None, eigen_smooth)
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

    def __init__(self, model: torch.nn.Module, method: str = "gradcam",
                 target_layer: torch.nn.Module | list[torch.nn.Module] | None = None):
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
    hooks = [getattr(net, name).register_forward_hook(
        lambda m, i, o, name=name: sizes.__setitem__(name, tuple(int(v) for v in o.shape[-2:])))
        for name in STAGES if hasattr(net, name)]
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
    return ("the predicted class's log-odds" if target == "predicted"
            else f"log-odds of P({target})")


# --- lung fields ----------------------------------------------------------------------------
def lung_mask(sample: Sample, image: np.ndarray, exact_masks: Callable[[Path], Path | None] | None = None,
              segmenter: LungSegmenter | None = None, box: LungBox | None = None,
              film_mask: np.ndarray | None = None) -> tuple[np.ndarray, str, str]:
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
    box[int(r0 * h):int(r1 * h), int(c0 * w):int(c1 * w)] = True
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


# --- one explanation ------------------------------------------------------------------------
@dataclass
class Explanation:
    """Grad-CAM results for a set of images, ready to plot or tabulate."""

    samples: list[Sample]
    images: np.ndarray  # N x H x W uint8, as the model saw them (before normalisation)
    cams: np.ndarray  # N x H x W in [0, 1], upsampled from map_size
    probs: np.ndarray  # P(PNEUMONIA), the same number predict/evaluate report (TTA included)
    threshold: float
    masks: np.ndarray  # N x H x W bool lung fields
    mask_methods: list[str]
    focus: np.ndarray  # share of the map's energy inside the lung mask, per image
    lung_area: np.ndarray  # share of the image the lung mask covers: the focus a uniform map would get
    heart_box: np.ndarray  # map share in the lower-central (heart / diaphragm) box
    method: str
    target: str
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # class index each map explains
    mask_problems: list[str] = field(default_factory=list)  # '' = mask passed the check
    layer: str = "layer4"
    map_size: tuple[int, int] = (0, 0)  # native cells (h, w) of the map before upsampling
    tta: bool = False
    selection: str = ""  # which films these are, in words
    input_size: int = 0  # the model input's side in pixels
    sanity: dict[str, Any] | None = None  # randomisation and faithfulness checks (sanity_checks)
    learned_lift: np.ndarray = field(default_factory=lambda: np.zeros(0))  # annotated films: the learned mask's lift
    boxes: list = field(default_factory=list)  # a lung-cropped model's crop box per film (None without a crop)

    _ARRAYS = ("images", "cams", "probs", "masks", "focus", "lung_area", "heart_box", "classes", "learned_lift")

    def save(self, path: str | Path, key: dict[str, Any] | None = None) -> Path:
        """Write these results as plain data (an NPZ of arrays plus one JSON string; nothing pickled), atomically.

        Args:
            path: the file to write (RunDir.explanation).
            key: what the results were computed from (checkpoint, data, settings); `load` returns it beside them.

        Returns:
            The path written.
        """
        meta = {"key": key, "samples": [[str(s.path), int(s.label), s.patient, s.split] for s in self.samples],
                "threshold": float(self.threshold), "mask_methods": list(self.mask_methods), "method": self.method,
                "target": self.target, "mask_problems": list(self.mask_problems), "layer": self.layer,
                "map_size": [int(v) for v in self.map_size], "tta": bool(self.tta), "selection": self.selection,
                "input_size": int(self.input_size), "sanity": self.sanity,
                "boxes": [None if b is None else [b.y0, b.y1, b.x0, b.x1, b.problem] for b in self.boxes]}
        arrays = {k: np.asarray(getattr(self, k)) for k in self._ARRAYS}

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **arrays)
        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> tuple["Explanation", dict[str, Any] | None]:
        """Read what `save` wrote, as data only (allow_pickle=False: a file that carries objects is refused).

        Args:
            path: an explanation file written by `save`.

        Returns:
            (the explanation, the key it was saved with).

        Raises:
            ValueError: the file is not such a file (any parse or shape problem); callers recompute.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                arrays = {k: z[k] for k in cls._ARRAYS}
            samples = [Sample(Path(p), int(label), str(patient), str(split))
                       for p, label, patient, split in meta["samples"]]
            boxes = [None if b is None else LungBox(*map(float, b[:4]), str(b[4])) for b in meta["boxes"]]
            expl = cls(samples=samples, threshold=float(meta["threshold"]), mask_methods=list(meta["mask_methods"]),
                       method=str(meta["method"]), target=str(meta["target"]),
                       mask_problems=list(meta["mask_problems"]), layer=str(meta["layer"]),
                       map_size=tuple(int(v) for v in meta["map_size"]), tta=bool(meta["tta"]),
                       selection=str(meta["selection"]), input_size=int(meta["input_size"]),
                       sanity=meta["sanity"], boxes=boxes, **arrays)
        except Exception as e:  # noqa: BLE001 - any malformed cache is recomputed, never trusted
            raise ValueError(f"{path}: not a Grad-CAM results file ({type(e).__name__}: {e})") from None
        if any(len(a) != len(samples) for a in (expl.probs, expl.focus, expl.lung_area, expl.heart_box)):
            raise ValueError(f"{path}: not a Grad-CAM results file (arrays disagree with the film count)")
        return expl, meta.get("key")

    @property
    def mask_ok(self) -> np.ndarray:
        return np.array([not p for p in self.mask_problems], bool) if self.mask_problems else \
            np.ones(len(self.focus), bool)

    @property
    def empty(self) -> np.ndarray:
        """Maps with no positive evidence anywhere (Grad-CAM's ReLU left nothing): no lift can be computed."""
        return ~np.isfinite(np.asarray(self.heart_box, float))

    @property
    def lung_lift(self) -> np.ndarray:
        """Per image: lung energy share / lung area share; NaN where the mask failed its check or the map is empty."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.asarray(self.focus, float) / np.asarray(self.lung_area, float)
        return np.where(self.mask_ok, out, np.nan)

    @property
    def heart_lift(self) -> np.ndarray:
        size = self.input_size or (self.images.shape[1] if len(self.images) else 100)
        return np.asarray(self.heart_box, float) / area_share(heart_box_mask(size, size))

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
        """Per true class: lung and heart lift (mean over images) with patient-level 95% intervals, masks
        passed/failed; also the raw shares (lung_focus, lung_area, heart_box) older readers use."""
        out = {}
        ok, lung, heart = self.mask_ok, self.lung_lift, self.heart_lift

        def mean(v: np.ndarray) -> float:
            v = v[np.isfinite(v)]
            return float(v.mean()) if len(v) else float("nan")

        patients = [s.patient for s in self.samples]
        for label, name in enumerate(CLASSES):
            sel = np.array([s.label == label for s in self.samples], bool)
            if not sel.any():
                continue
            use = sel & ok
            pats = [p for p, u in zip(patients, sel) if u]
            out[name] = {
                "n": int(sel.sum()), "masks_passed": int(use.sum()), "masks_failed": int((sel & ~ok).sum()),
                "patients": len(set(pats)), "empty_maps": int((sel & self.empty).sum()),
                "lung_lift": mean(lung[use]),
                "lung_lift_ci95": patient_bootstrap(lung[sel], pats, n_boot, seed),
                "heart_lift": mean(heart[sel]),
                "heart_lift_ci95": patient_bootstrap(heart[sel], pats, n_boot, seed),
                "lung_focus": mean(np.asarray(self.focus, float)[use]),
                "lung_area": mean(np.asarray(self.lung_area, float)[use]),
                "heart_box": mean(np.asarray(self.heart_box, float)[sel]),
            }
        return out

    def mask_cost(self, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
        """What the learned masks cost: on the films that have an annotated mask, the lung lift with the learned mask
        minus the lift with the annotation (mean, 95% interval by patient), per class."""
        out = {}
        if len(self.learned_lift) != len(self.samples):
            return out
        truth = np.asarray(self.focus, float) / np.asarray(self.lung_area, float)
        diff = self.learned_lift - np.where(np.array([m == "annotated" for m in self.mask_methods]), truth, np.nan)
        for label, name in enumerate(CLASSES):
            sel = np.array([s.label == label for s in self.samples], bool) & np.isfinite(diff)
            if sel.any():
                pats = [s.patient for s, u in zip(self.samples, sel) if u]
                out[name] = {"n": int(sel.sum()), "annotated": float(truth[sel].mean()),
                             "learned": float(self.learned_lift[sel].mean()),
                             "learned_minus_annotated": float(diff[sel].mean()),
                             "ci95": patient_bootstrap(diff[sel], pats, n_boot, seed)}
        return out

    def _of_class(self, name: str) -> np.ndarray:
        return np.array([s.label == CLASSES.index(name) for s in self.samples], bool)

    def report(self, per_image: bool = True) -> dict[str, Any]:
        """JSON-ready: what the explain command writes and run_experiment keeps in metrics['gradcam']."""
        s = self.summary()
        ok = self.mask_ok
        rep: dict[str, Any] = {
            "method": self.method, "layer": self.layer, "map_size": list(self.map_size),
            "input_size": self.input_size,
            "target": self.target, "tta": self.tta, "threshold": float(self.threshold),
            "selection": self.selection, "n": len(self.samples),
            "masks_passed": int(ok.sum()), "masks_failed": int((~ok).sum()),
            "mask_methods": sorted(set(self.mask_methods)), "empty_maps": int(self.empty.sum()),
            "mask_source": {m: self.mask_methods.count(m) for m in sorted(set(self.mask_methods))},
            "lung_lift": {c: {"mean": v["lung_lift"], "ci95": v["lung_lift_ci95"],
                              "n": int(np.isfinite(self.lung_lift[self._of_class(c)]).sum())} for c, v in s.items()},
            "heart_lift": {c: {"mean": v["heart_lift"], "ci95": v["heart_lift_ci95"],
                               "n": int(np.isfinite(self.heart_lift[self._of_class(c)]).sum())} for c, v in s.items()},
            "lift_note": "energy share inside the region / the region's area share (1 = no preference); mean over "
                         "films, 95% interval from resampling patients; lung lift only over masks that passed; "
                         "empty maps (no positive evidence anywhere) have no lift",
        }
        rep["learned_mask_cost"] = self.mask_cost()
        sanity = self.sanity or {}
        rep["randomisation_rank_corr"] = sanity.get("randomisation_rank_corr")
        rep["road"] = sanity.get("faithfulness")  # ROAD: model map vs a random map, with 95% intervals by patient
        rep["maps_pass"] = sanity.get("maps_pass")
        if per_image:
            rep["images"] = [{
                "path": str(smp.path), "patient": smp.patient,
                "label": CLASSES[smp.label] if smp.label in (0, 1) else None,
                "p_pneumonia": float(p), "prediction": CLASSES[int(p >= self.threshold)],
                "map_target": CLASSES[int(c)] if len(self.classes) else None,
                "mask": m, "mask_problem": prob or None,
                "lung_lift": None if np.isnan(ll) else float(ll), "heart_lift": None if np.isnan(hl) else float(hl)}
                for smp, p, c, m, prob, ll, hl in zip(
                    self.samples, self.probs, self.classes if len(self.classes) else [0] * len(self.samples),
                    self.mask_methods, self.mask_problems or [""] * len(self.samples), self.lung_lift,
                    self.heart_lift)]
        return rep


def _batch(samples: list[Sample], preprocessing, cache) -> tuple[np.ndarray, torch.Tensor]:
    raw = np.stack([cache.get(s.path, preprocessing.view) for s in samples])
    return raw, preprocessing(torch.from_numpy(raw).unsqueeze(1))


def explain(model: torch.nn.Module, samples: list[Sample], preprocessing, threshold: float = 0.5, *,
            method: str = DEFAULT_METHOD, target: str = "PNEUMONIA", tta: bool = False, layer: str = "auto",
            batch_size: int = 16, cache=None, keep_maps: bool = True, selection: str = "",
            exact_masks: Callable[[Path], Path | None] | None = None, segmenter: LungSegmenter | None = None
            ) -> Explanation:
    """Grad-CAM, lung masks (checked) and lift scores for `samples`, streamed in batches.

    probs are P(PNEUMONIA) from infer.predict_proba with `tta` (pass the checkpoint's config.tta: predict and
    evaluate do), and with tta the maps average the image and its flipped-back flip in the same way.
    exact_masks: path -> annotated lung mask file or None (lungs.annotated_mask); films without one are segmented by
    `segmenter` (default: the shipped one), and every mask is checked by that segmenter's calibrated LungCheck.
    target: 'PNEUMONIA' (default: the same heatmap for every model, so runs compare), 'NORMAL', or 'predicted'
    (the class the threshold picks). layer: 'auto' (the deepest ResNet stage with >= 8 x 8 cells) or a stage.
    keep_maps=False keeps only the per-image scores (not the images, heatmaps and masks)."""
    if target not in TARGETS:
        raise ValueError(f"unknown CAM target {target!r}; known: {', '.join(TARGETS)}")
    cache = ensure_cache(cache)
    own = segmenter is None  # the cache's segmenter drew the crop boxes; another one is asked for explicitly
    segmenter = segmenter or shipped_segmenter()
    device = next(model.parameters()).device
    layer_name, module = resolve_layer(model, layer, preprocessing.image_size, preprocessing.in_channels)
    images, cams, probs, masks, mmethods, focus, area, heart, classes, problems = ([] for _ in range(10))
    learned_lift = []  # on films with an annotated mask: the lift the learned mask would have given (its cost)
    boxes = []
    map_size = (0, 0)
    with CAM(model, method, module) as cam:
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            raw, x = _batch(chunk, preprocessing, cache)
            p = predict_proba(model, x, device=device, tta=tta)
            cls = target_classes(target, p, threshold)
            heat = cam.maps(x, cls, tta)
            map_size = cam.map_size or map_size
            probs.append(p)
            classes.append(cls)
            for s, img, h in zip(chunk, raw, heat):
                box = cache.box(s.path, preprocessing.view)
                boxes.append(box)
                # the crop's own mask and quality decision (unless the caller asked for another segmenter)
                film_mask = cache.lung_mask(s.path, preprocessing.view) if box is not None and own else None
                m, how, problem = lung_mask(s, img, exact_masks, segmenter, box, film_mask)
                focus.append(lung_focus(h, m))
                area.append(area_share(m))
                if how == "annotated":
                    ml, _, lp = lung_mask(s, img, None, segmenter, box, film_mask)
                    learned_lift.append(lift(h, ml) if not lp else float("nan"))
                else:
                    learned_lift.append(float("nan"))
                heart.append(lower_central_share(h))
                mmethods.append(how)
                problems.append(problem)
                if keep_maps:
                    images.append(img), cams.append(h), masks.append(m)
    n_failed = sum(bool(p) for p in problems)
    if n_failed:
        log.info("%d of %d lung masks failed the quality check and are left out of the lung lift",
                 n_failed, len(problems))
    empty = np.zeros((0, preprocessing.image_size, preprocessing.image_size))
    return Explanation(list(samples), np.stack(images) if images else empty.astype(np.uint8),
                       np.stack(cams) if cams else empty.astype(np.float32),
                       np.concatenate(probs) if probs else np.zeros(0),
                       threshold, np.stack(masks) if masks else empty.astype(bool), mmethods, np.array(focus),
                       np.array(area), np.array(heart), method, target,
                       classes=np.concatenate(classes) if classes else np.zeros(0, int), mask_problems=problems,
                       layer=layer_name, map_size=map_size, tta=tta, selection=selection,
                       input_size=preprocessing.image_size, learned_lift=np.array(learned_lift, float),
                       boxes=boxes)


# --- sanity and faithfulness ------------------------------------------------------------------
def randomise_top(model: nn.Module, blocks: tuple[str, ...] = ("layer4", "fc"), seed: int = 0) -> nn.Module:
    """A copy of `model` whose `blocks` are re-initialised (torchvision's ResNet init, from a seeded generator):
    the cascading model-parameter randomisation of Adebayo et al. 2018, "Sanity Checks for Saliency Maps"."""
    g = torch.Generator().manual_seed(int(seed))
    device = next(model.parameters()).device
    out = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        for name in blocks:
            for m in (mod for net in members(out) for mod in getattr(net, name).modules()):
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                elif isinstance(m, nn.BatchNorm2d):
                    m.reset_parameters()  # weight 1, bias 0, running statistics reset: no randomness
                elif isinstance(m, nn.Linear):
                    bound = 1 / math.sqrt(m.in_features)
                    nn.init.uniform_(m.weight, -bound, bound, generator=g)
                    if m.bias is not None:
                        nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return out.to(device)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between paired maps, one value per image (NaN where a map is constant)."""
    out = []
    for x, y in zip(a, b):
        x, y = np.ravel(x), np.ravel(y)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(float("nan"))
        else:
            out.append(float(spearmanr(x, y)[0]))
    return np.array(out)


class _SeededImputer(NoisyLinearImputer):
    """ROAD's noisy linear imputation (each removed pixel = the weighted mean of its 8 neighbours, solved as one
    sparse system, plus noise), with the noise from a seeded generator instead of the global RNG, the system
    built vectorised, and one solve for images whose channels are identical (a grey film fed to 3 channels)."""

    def __init__(self, generator: torch.Generator, noise: float = 0.01):
        super().__init__(noise)
        self.generator = generator

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import spsolve

        c, h, w = img.shape
        missing = np.flatnonzero(mask.reshape(-1).numpy() < 0.5)
        if len(missing) == 0:
            return img
        grey = all(torch.equal(img[0], img[k]) for k in range(1, c))
        values = img[:1] if grey else img
        flat = values.reshape(values.shape[0], -1).double().numpy()
        var = np.full(h * w, -1)
        var[missing] = np.arange(len(missing))
        ys, xs = np.divmod(missing, w)
        rows, cols, data = [], [], []
        diag = np.zeros(len(missing))
        rhs = np.zeros((len(missing), flat.shape[0]))
        for (dy, dx), weight in self.weighting:
            ny, nx = ys + dy, xs + dx
            inside = np.flatnonzero((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))
            diag[inside] += weight
            nb = ny[inside] * w + nx[inside]
            unknown = var[nb] >= 0
            rows.append(inside[unknown]), cols.append(var[nb[unknown]]), data.append(np.full(unknown.sum(), weight))
            np.subtract.at(rhs, inside[~unknown], weight * flat[:, nb[~unknown]].T)
        k = np.arange(len(missing))
        a = coo_matrix((np.concatenate([*data, -diag]), (np.concatenate([*rows, k]), np.concatenate([*cols, k]))),
                       shape=(len(missing), len(missing))).tocsc()
        sol = np.asarray(spsolve(a, rhs)).reshape(len(missing), -1).T  # channels x missing
        filled = torch.tensor(sol, dtype=torch.float32)
        filled = filled + self.noise * torch.randn(filled.shape, generator=self.generator)
        out = img.reshape(c, -1).clone()
        out[:, missing] = filled.expand(c, -1) if grey else filled
        return out.reshape_as(img)


def road(model: nn.Module, x: torch.Tensor, maps: np.ndarray, classes, *, tta: bool = False,
         percentiles: tuple[int, ...] = (20, 40, 60, 80), seed: int = 0, batch_size: int = 64) -> dict[str, np.ndarray]:
    """ROAD (Rong et al. 2022; pytorch_grad_cam.metrics.road's removal rules and noisy linear imputation) on the
    probability of each map's class, as predict reports it (TTA included): the mean change in that probability
    when the most-relevant (MoRF) or least-relevant (LeRF) p% of pixels are imputed, over `percentiles`.
    combined = (LeRF - MoRF) / 2, ROADCombined's score: higher = the map ranks pixels by what the model uses.
    The perturbed copies go through the model in batches (ROADCombined runs one forward per percentile)."""
    imputer = _SeededImputer(torch.Generator().manual_seed(int(seed)))
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    classes = torch.as_tensor(np.asarray(classes, int))
    n = len(classes)

    def prob(batch: torch.Tensor) -> torch.Tensor:
        return class_probabilities(view_logits(model, batch, tta=tta, batch_size=batch_size, device=device))

    x = x.cpu()
    base = prob(x)[torch.arange(n), classes]
    perturbed = [rule(p, imputer)(x[i], torch.from_numpy(np.asarray(maps[i], np.float32)))
                 for rule in (RemoveMostRelevantFirst, RemoveLeastRelevantFirst) for p in percentiles for i in range(n)]
    after = prob(torch.stack(perturbed))[torch.arange(len(perturbed)), classes.repeat(2 * len(percentiles))]
    change = (after - base.repeat(2 * len(percentiles))).reshape(2, len(percentiles), n).mean(1).numpy()
    morf, lerf = change
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}


def random_maps(n: int, map_size: tuple[int, int], image_size: int, seed: int = 0) -> np.ndarray:
    """Seeded uniform random cells at the model map's native size, upsampled the same way (bilinear): the
    chance baseline a faithfulness score must beat."""
    rng = np.random.default_rng(seed)
    h, w = map_size if map_size[0] else (image_size, image_size)
    cells = rng.random((n, h, w)).astype(np.float32)
    return np.stack([cv2.resize(c, (image_size, image_size), interpolation=cv2.INTER_LINEAR) for c in cells]) \
        if n else np.zeros((0, image_size, image_size), np.float32)


def sanity_checks(model: nn.Module, expl: Explanation, preprocessing, *, per_class: int = 4, seed: int = 0,
                  cache=None, percentiles: tuple[int, ...] = (20, 40, 60, 80),
                  blocks: tuple[str, ...] = ("layer4", "fc")) -> dict[str, Any]:
    """On the first `per_class` films of each class in `expl`: (1) the model-parameter randomisation test, the
    Spearman correlation of each map with the map of the same network with `blocks` re-initialised (near 1 =
    the map does not depend on what was learned); (2) ROAD faithfulness of the model's maps and of seeded
    random maps at the same resolution. Returns a JSON-ready dict; also stored in expl.sanity."""
    cache = ensure_cache(cache)
    idx = [i for label in range(len(CLASSES)) for i in [j for j, s in enumerate(expl.samples) if s.label == label]
           [:per_class]]
    if not idx:
        return {}
    chosen = [expl.samples[i] for i in idx]
    _, x = _batch(chosen, preprocessing, cache)
    classes = expl.classes[idx] if len(expl.classes) else np.ones(len(idx), int)
    if len(expl.cams):
        trained = expl.cams[idx]
    else:
        _, module = resolve_layer(model, expl.layer, preprocessing.image_size, preprocessing.in_channels)
        with CAM(model, expl.method, module) as cam:
            trained = cam.maps(x, classes, expl.tta)
    random_model = randomise_top(model, blocks, seed)
    with CAM(random_model, expl.method, stage_blocks(random_model, expl.layer)) as cam:
        randomised = cam.maps(x, classes, expl.tta)
    corr = rank_correlation(trained, randomised)
    rand = random_maps(len(idx), expl.map_size, preprocessing.image_size, seed)
    faith_model = road(model, x, trained, classes, tta=expl.tta, percentiles=percentiles, seed=seed)
    faith_rand = road(model, x, rand, classes, tta=expl.tta, percentiles=percentiles, seed=seed)
    out = {
        "n": len(idx), "films": f"first {per_class} per class of the explained films",
        "randomisation_rank_corr": {
            "mean": float(np.nanmean(corr)) if np.isfinite(corr).any() else float("nan"),
            "per_image": [None if np.isnan(c) else float(c) for c in corr],
            "reinitialised": list(blocks), "seed": seed,
            "note": "Spearman correlation of the trained model's map with the map after re-initialising "
                    f"{' and '.join(blocks)}; near 1 = the map ignores the learned weights"},
        "faithfulness": {
            "metric": f"ROAD combined (LeRF - MoRF) / 2 on P(map class), percentiles {list(percentiles)}",
            "model": float(np.mean(faith_model["combined"])), "random": float(np.mean(faith_rand["combined"])),
            "model_morf": float(np.mean(faith_model["morf"])), "random_morf": float(np.mean(faith_rand["morf"])),
            "model_lerf": float(np.mean(faith_model["lerf"])), "random_lerf": float(np.mean(faith_rand["lerf"])),
            "random_map": f"uniform random {expl.map_size[0]} x {expl.map_size[1]} cells, seed {seed}, upsampled",
            "note": "higher = removing the pixels the map ranks high hurts more than removing those it ranks low"},
    }
    fa, patients = out["faithfulness"], [s.patient for s in chosen]
    for key, v in (("model", faith_model["combined"]), ("random", faith_rand["combined"]),
                   ("model_minus_random", faith_model["combined"] - faith_rand["combined"])):
        if key == "model_minus_random":
            fa[key] = float(np.mean(v))
        fa[f"{key}_ci95"] = patient_bootstrap(v, patients, seed=seed)  # 95% interval, resampling patients
    out["maps_pass"] = maps_pass(out)
    expl.sanity = out
    return out


RANDOMISATION_MAX_CORR = 0.8  # a map whose rank correlation with the randomised model's stays above this ignores
# what was learned (Adebayo et al. 2018)


def maps_pass(sanity: dict[str, Any] | None) -> bool | None:
    """Do a run's maps pass their own checks: ROAD beats the random map (the paired difference's 95% interval by
    patient lies above 0) and the randomisation test changes them (mean rank correlation below
    RANDOMISATION_MAX_CORR)? None when the checks were not run."""
    fa, rc = (sanity or {}).get("faithfulness") or {}, (sanity or {}).get("randomisation_rank_corr") or {}
    ci = fa.get("model_minus_random_ci95")
    if not ci or rc.get("mean") is None or any(v is None or v != v for v in (*ci, rc["mean"])):
        return None
    return bool(ci[0] > 0 and rc["mean"] < RANDOMISATION_MAX_CORR)


def explain_predictor(predictor, samples: list[Sample], *, n_per_class: int | None = None,
                      target: str = "PNEUMONIA", sanity_per_class: int = 4, seed: int = 0, cache=None,
                      keep_maps: bool = True, layer: str = "auto", method: str = DEFAULT_METHOD,
                      exact_masks: Callable[[Path], Path | None] | None = None,
                      segmenter: LungSegmenter | None = None) -> Explanation:
    """explain() with everything taken from a checkpoint.Predictor (preprocessing, threshold, TTA), on the first
    `n_per_class` films per class (all when None), plus sanity_checks on the first `sanity_per_class`."""
    selection = f"all {len(samples)} films given"
    if n_per_class is not None:
        samples, selection = first_per_class(samples, n_per_class)
    cache = predictor.cache if cache is None else cache  # the films the predictor decoded already
    expl = explain(predictor.model, samples, predictor.preprocessing, predictor.threshold, method=method,
                   target=target, tta=bool(predictor.config.tta), layer=layer, cache=cache, keep_maps=keep_maps,
                   selection=selection, exact_masks=exact_masks, segmenter=segmenter)
    if sanity_per_class and any(s.label in (0, 1) for s in samples):
        sanity_checks(predictor.model, expl, predictor.preprocessing, per_class=sanity_per_class, seed=seed,
                      cache=cache)
    return expl


def compare_methods(predictor, samples: list[Sample], *, methods=("gradcam", "hirescam", "gradcam++"),
                    layers=("layer3", "layer4"), n_per_class: int = 50, sanity_per_class: int = 8, seed: int = 0,
                    target: str = "PNEUMONIA", exact_masks: Callable[[Path], Path | None] | None = None,
                    cache=None) -> list[dict[str, Any]]:
    """One row per (method, layer): the share of empty maps, ROAD of the model's maps against a random map (their
    paired difference with a 95% interval by patient), the randomisation test, whether the maps pass their checks,
    and the lung and heart lift per class with intervals. The evidence choose_method reads."""
    rows, segmenter = [], shipped_segmenter()
    for method in methods:
        for layer in layers:
            e = explain_predictor(predictor, samples, n_per_class=n_per_class, target=target,
                                  sanity_per_class=sanity_per_class, seed=seed, method=method, layer=layer,
                                  exact_masks=exact_masks, cache=cache, keep_maps=False, segmenter=segmenter)
            rep = e.report(per_image=False)
            fa, rc = road_of(rep), rep.get("randomisation_rank_corr") or {}
            rows.append({"method": method, "layer": rep["layer"], "map_size": rep["map_size"], "n": rep["n"],
                         "empty_share": rep["empty_maps"] / max(rep["n"], 1),
                         "road_model": fa.get("model"), "road_random": fa.get("random"),
                         "road_model_minus_random": fa.get("model_minus_random"),
                         "road_model_minus_random_ci95": fa.get("model_minus_random_ci95"),
                         "randomisation_rank_corr": rc.get("mean"), "maps_pass": rep.get("maps_pass"),
                         "lung_lift": rep["lung_lift"], "heart_lift": rep["heart_lift"],
                         "mask_source": rep.get("mask_source"), "learned_mask_cost": rep.get("learned_mask_cost")})
    return rows


def road_of(rep: dict[str, Any]) -> dict[str, Any]:
    """An explain report's ROAD block ('road'; run folders written before it was renamed call it 'faithfulness')."""
    return rep.get("road") or rep.get("faithfulness") or {}


def recorded_sanity(rep: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recorded explain report (Explanation.report, kept as metrics['gradcam']) in sanity_checks' shape, for
    maps_pass and the tables that show lifts beside their checks.

    Args:
        rep: the report, or None.

    Returns:
        {'faithfulness', 'randomisation_rank_corr', 'n'}, or None when neither check was run on these maps."""
    rep = rep or {}
    road_block, rc = road_of(rep), rep.get("randomisation_rank_corr") or {}
    if not road_block and not rc:
        return None
    return {"faithfulness": road_block, "randomisation_rank_corr": rc, "n": len(rc.get("per_image") or [])}


def choose_method(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row to keep as the default: among the (method, layer) pairs whose maps pass their checks, the one whose
    ROAD advantage over a random map has the highest lower bound (fewer empty maps breaking ties); None when no
    pair tried passes, which the caller must say."""
    ok = [r for r in rows if r.get("maps_pass")]
    if not ok:
        return None
    return max(ok, key=lambda r: (r["road_model_minus_random_ci95"][0], -r["empty_share"]))


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table (one row per method and layer) and the choice."""
    head = ("| method | layer | empty maps | ROAD model | ROAD random | model - random (95% CI) | randomisation corr "
            "| maps pass | lung lift NORMAL | lung lift PNEUMONIA |")
    lines = [head, "|" + "---|" * 10]

    def lift(v):
        return "n/a" if not v or v.get("mean") != v.get("mean") else \
            f"{v['mean']:.2f} ({v['ci95'][0]:.2f}-{v['ci95'][1]:.2f})"
    for r in rows:
        ci = r["road_model_minus_random_ci95"] or [float("nan")] * 2
        lines.append(f"| {r['method']} | {r['layer']} | {r['empty_share']:.0%} | {r['road_model']:+.3f} | "
                     f"{r['road_random']:+.3f} | {r['road_model_minus_random']:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f}) | "
                     f"{r['randomisation_rank_corr']:.2f} | {'yes' if r['maps_pass'] else 'no'} | "
                     f"{lift(r['lung_lift'].get('NORMAL'))} | {lift(r['lung_lift'].get('PNEUMONIA'))} |")
    best = choose_method(rows)
    lines.append("")
    lines.append(f"choice: {best['method']} at {best['layer']}" if best else
                 "choice: none; no method and layer tried gives maps that pass their checks")
    return "\n".join(lines)


# --- overlays at the film's own resolution ---------------------------------------------------
MAX_OVERLAY_SIDE = 1024


def overlay_on_film(path: str | Path, cam: np.ndarray, max_side: int = MAX_OVERLAY_SIDE,
                    box: LungBox | None = None) -> np.ndarray:
    """The map upsampled onto the original film (greyscale as imaging.load_image reads it), at the film's own
    size with the long side capped at `max_side`: H x W x 3 uint8. The model saw the film squashed to a square,
    so stretching the square map back to the film's aspect puts each cell over the pixels it came from; for a
    lung-cropped model (`box`), the map is stretched over the crop's box on the whole film, and is 0 outside it."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from ..data.imaging import load_image

    im = load_image(path)
    w, h = im.size
    scale = min(1.0, max_side / max(w, h))
    if scale < 1:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        im = im.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
    grey = np.asarray(im, np.float32) / 255.0
    if box is None:
        heat = np.clip(cv2.resize(np.asarray(cam, np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
    else:
        top, bottom, left, right = box.pixels(h, w)
        heat = np.zeros((h, w), np.float32)
        heat[top:bottom, left:right] = np.clip(cv2.resize(np.asarray(cam, np.float32), (right - left, bottom - top),
                                                          interpolation=cv2.INTER_LINEAR), 0, 1)
    return show_cam_on_image(np.repeat(grey[..., None], 3, axis=2), heat, use_rgb=True)


def save_overlays(expl: Explanation, out_dir: str | Path, max_side: int = MAX_OVERLAY_SIDE) -> list[Path]:
    """One PNG per image: the original film at its own resolution (long side <= max_side) with the map on top."""
    out_dir = make_dir(out_dir)
    paths = []
    boxes = expl.boxes if len(expl.boxes) == len(expl.samples) else [None] * len(expl.samples)
    stems = [Path(s.path).stem for s in expl.samples]
    for s, c, box in zip(expl.samples, expl.cams, boxes):
        stem = Path(s.path).stem
        if stems.count(stem) > 1:  # two films of the same name from different folders: one overlay each
            stem += "-" + hashlib.sha1(str(Path(s.path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        p = out_dir / f"{stem}_cam.png"
        save_image(Image.fromarray(overlay_on_film(s.path, c, max_side, box)), p)  # the one writer: never a link
        paths.append(p)
    return paths


def _interval(v: dict[str, Any] | None) -> str:
    if not v or v.get("mean") is None or v["mean"] != v["mean"]:
        return "n/a"
    lo, hi = v.get("ci95", [float("nan")] * 2)
    return f"{v['mean']:.2f} (95% CI {lo:.2f}-{hi:.2f}, n = {v.get('n', '?')})"


def format_report(rep: dict[str, Any]) -> str:
    """A Grad-CAM report (Explanation.report()) as the lines the CLI and the notebooks print."""
    h, w = rep["map_size"]
    tta = ", flip-averaged as the prediction" if rep.get("tta") else ""
    lines = [f"{rep['method']} at {rep['layer']}, native map {h} x {w} cells, target: {target_label(rep['target'])}"
             + f"{tta}; {rep.get('selection', '')}"]
    for cls in CLASSES:
        if cls in rep["lung_lift"]:
            lines.append(f"{cls:<9} lung lift {_interval(rep['lung_lift'][cls])}; "
                         f"heart/diaphragm lift {_interval(rep['heart_lift'].get(cls))}")
    lines.append(f"lift = energy share inside the region / its area share (1.0 = no preference); interval from "
                 f"resampling patients. Lung masks ({', '.join(rep.get('mask_methods', []))}): "
                 f"{rep['masks_passed']} passed, {rep['masks_failed']} failed the check (left out of the lung lift)")
    for cls, c in (rep.get("learned_mask_cost") or {}).items():
        lines.append(f"{cls:<9} learned instead of annotated masks on the {c['n']} films that have both: lung lift "
                     f"{c['learned']:.2f} vs {c['annotated']:.2f}, difference {c['learned_minus_annotated']:+.2f} "
                     f"(95% CI by patient {c['ci95'][0]:+.2f} to {c['ci95'][1]:+.2f})")
    if rep.get("empty_maps"):
        hint = ("" if rep["method"] != "gradcam" else "; method 'hirescam' or 'layercam' weights each cell by its "
                "own gradient instead of the layer's mean gradient")  # a hint only where another method could help
        lines.append(f"{rep['empty_maps']} of {rep['n']} maps are empty (no positive evidence for the target at "
                     f"{rep['layer']}) and have no lift{hint}")
    elif "empty_maps" in rep:
        lines.append(f"empty maps: 0 of {rep['n']}")
    rc = rep.get("randomisation_rank_corr")
    if rc:
        lines.append(f"randomisation test: rank correlation with the maps after re-initialising "
                     f"{' and '.join(rc['reinitialised'])} = {rc['mean']:.2f} (near 1 would mean the maps ignore "
                     f"the learned weights)")
    fa = road_of(rep)
    if fa:
        diff = fa.get("model_minus_random_ci95")
        lines.append(f"faithfulness (ROAD, higher = the map ranks what the model uses): model map {fa['model']:+.3f}, "
                     f"random map {fa['random']:+.3f}"
                     + (f"; model minus random {fa['model_minus_random']:+.3f} (95% CI by patient {diff[0]:+.3f} to "
                        f"{diff[1]:+.3f})" if diff else ""))
    if rep.get("maps_pass") is not None:
        lines.append("the maps pass their checks (ROAD above the random map, changed by randomisation): "
                     + ("yes" if rep["maps_pass"] else "NO: lift-based claims about these maps cannot be judged"))
    return "\n".join(lines)
