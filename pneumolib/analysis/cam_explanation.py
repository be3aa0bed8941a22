"""One explanation: the maps of a model on a set of films, with their lung statistics (`Explanation`, `explain`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..analysis.cam_maps import (
    CAM,
    TARGETS,
    area_share,
    heart_box_mask,
    lift,
    lower_central_share,
    lung_focus,
    lung_mask,
    resolve_layer,
    target_classes,
)
from ..analysis.cam_methods import DEFAULT_METHOD
from ..core.config import CLASSES
from ..core.io import atomic_write
from ..core.stats import patient_bootstrap
from ..data.dataset import Sample
from ..data.lungs import LungBox, LungSegmenter
from ..data.resources import Resources, as_resources
from ..models.inference import predict_proba

log = logging.getLogger(__name__)


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
    _PIXELS = ("images", "cams", "masks")  # what `load(pixels=False)` leaves unread

    def save(self, path: str | Path, key: dict[str, Any] | None = None) -> Path:
        """Write these results as plain data (an NPZ of arrays plus one JSON string; nothing pickled), atomically.

        Args:
            path: the file to write (RunDir.explanation).
            key: what the results were computed from (checkpoint, data, settings); `load` returns it beside them.

        Returns:
            The path written.
        """
        meta = {
            "key": key,
            "samples": [[str(s.path), int(s.label), s.patient, s.split] for s in self.samples],
            "threshold": float(self.threshold),
            "mask_methods": list(self.mask_methods),
            "method": self.method,
            "target": self.target,
            "mask_problems": list(self.mask_problems),
            "layer": self.layer,
            "map_size": [int(v) for v in self.map_size],
            "tta": bool(self.tta),
            "selection": self.selection,
            "input_size": int(self.input_size),
            "sanity": self.sanity,
            "boxes": [None if b is None else [b.y0, b.y1, b.x0, b.x1, b.problem] for b in self.boxes],
        }
        arrays = {k: np.asarray(getattr(self, k)) for k in self._ARRAYS}

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path, pixels: bool = True) -> tuple["Explanation", dict[str, Any] | None]:
        """Read what `save` wrote, as data only (allow_pickle=False: a file that carries objects is refused).

        Args:
            path: an explanation file written by `save`.
            pixels: False leaves the films, maps and masks unread (empty arrays), for readers of the per-film numbers
                alone (the lifts), which then skip decompressing the images.

        Returns:
            (the explanation, the key it was saved with).

        Raises:
            ValueError: the file is not such a file (any parse or shape problem); callers recompute.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                meta = json.loads(str(z["__meta__"]))
                arrays = {k: z[k] if pixels or k not in cls._PIXELS else np.zeros(0) for k in cls._ARRAYS}
            samples = [
                Sample(Path(p), int(label), str(patient), str(split)) for p, label, patient, split in meta["samples"]
            ]
            boxes = [None if b is None else LungBox(*map(float, b[:4]), str(b[4])) for b in meta["boxes"]]
            expl = cls(
                samples=samples,
                threshold=float(meta["threshold"]),
                mask_methods=list(meta["mask_methods"]),
                method=str(meta["method"]),
                target=str(meta["target"]),
                mask_problems=list(meta["mask_problems"]),
                layer=str(meta["layer"]),
                map_size=tuple(int(v) for v in meta["map_size"]),
                tta=bool(meta["tta"]),
                selection=str(meta["selection"]),
                input_size=int(meta["input_size"]),
                sanity=meta["sanity"],
                boxes=boxes,
                **arrays,
            )
        except Exception as e:  # noqa: BLE001 - any malformed cache is recomputed, never trusted
            raise ValueError(f"{path}: not a Grad-CAM results file ({type(e).__name__}: {e})") from None
        if any(len(a) != len(samples) for a in (expl.probs, expl.focus, expl.lung_area, expl.heart_box)):
            raise ValueError(f"{path}: not a Grad-CAM results file (arrays disagree with the film count)")
        return expl, meta.get("key")

    @property
    def mask_ok(self) -> np.ndarray:
        return (
            np.array([not p for p in self.mask_problems], bool)
            if self.mask_problems
            else np.ones(len(self.focus), bool)
        )

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
                "n": int(sel.sum()),
                "masks_passed": int(use.sum()),
                "masks_failed": int((sel & ~ok).sum()),
                "patients": len(set(pats)),
                "empty_maps": int((sel & self.empty).sum()),
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
                out[name] = {
                    "n": int(sel.sum()),
                    "annotated": float(truth[sel].mean()),
                    "learned": float(self.learned_lift[sel].mean()),
                    "learned_minus_annotated": float(diff[sel].mean()),
                    "ci95": patient_bootstrap(diff[sel], pats, n_boot, seed),
                }
        return out

    def _of_class(self, name: str) -> np.ndarray:
        return np.array([s.label == CLASSES.index(name) for s in self.samples], bool)

    def report(self, per_image: bool = True) -> dict[str, Any]:
        """JSON-ready: what the explain command writes and run_experiment keeps in metrics['gradcam']."""
        s = self.summary()
        ok = self.mask_ok
        rep: dict[str, Any] = {
            "method": self.method,
            "layer": self.layer,
            "map_size": list(self.map_size),
            "input_size": self.input_size,
            "target": self.target,
            "tta": self.tta,
            "threshold": float(self.threshold),
            "selection": self.selection,
            "n": len(self.samples),
            "masks_passed": int(ok.sum()),
            "masks_failed": int((~ok).sum()),
            "mask_methods": sorted(set(self.mask_methods)),
            "empty_maps": int(self.empty.sum()),
            "mask_source": {m: self.mask_methods.count(m) for m in sorted(set(self.mask_methods))},
            "lung_lift": self._lift_by_class(s, "lung_lift", self.lung_lift),
            "heart_lift": self._lift_by_class(s, "heart_lift", self.heart_lift),
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
            rep["images"] = self._image_rows()
        return rep

    def _lift_by_class(self, summary: dict[str, dict[str, Any]], name: str, per_film: np.ndarray) -> dict[str, Any]:
        """The report's table of one lift (NAME: 'lung_lift' or 'heart_lift'), per true class: the summary's mean
        and patient interval, and how many films had a finite lift (PER_FILM) to average."""
        return {
            c: {
                "mean": v[name],
                "ci95": v[f"{name}_ci95"],
                "n": int(np.isfinite(per_film[self._of_class(c)]).sum()),
            }
            for c, v in summary.items()
        }

    def _image_rows(self) -> list[dict[str, Any]]:
        """The report's one row per film: its prediction, the class its map explains, its mask and its lifts."""
        return [
            {
                "path": str(smp.path),
                "patient": smp.patient,
                "label": CLASSES[smp.label] if smp.label in (0, 1) else None,
                "p_pneumonia": float(p),
                "prediction": CLASSES[int(p >= self.threshold)],
                "map_target": CLASSES[int(c)] if len(self.classes) else None,
                "mask": m,
                "mask_problem": prob or None,
                "lung_lift": None if np.isnan(ll) else float(ll),
                "heart_lift": None if np.isnan(hl) else float(hl),
            }
            for smp, p, c, m, prob, ll, hl in zip(
                self.samples,
                self.probs,
                self.classes if len(self.classes) else [0] * len(self.samples),
                self.mask_methods,
                self.mask_problems or [""] * len(self.samples),
                self.lung_lift,
                self.heart_lift,
            )
        ]


def batch(samples: list[Sample], preprocessing, cache) -> tuple[np.ndarray, torch.Tensor]:
    raw = np.stack([cache.get(s.path, preprocessing.view) for s in samples])
    return raw, preprocessing(torch.from_numpy(raw).unsqueeze(1))


@dataclass
class _Gathered:
    """What `explain` collects batch by batch and film by film, before it becomes an Explanation's arrays (kept
    apart so the streaming loop reads as what it does: predict, map, score each film's lungs)."""

    images: list = field(default_factory=list)
    cams: list = field(default_factory=list)
    probs: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    mask_methods: list[str] = field(default_factory=list)
    focus: list = field(default_factory=list)
    area: list = field(default_factory=list)
    heart: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    learned_lift: list = field(default_factory=list)  # films with an annotated mask: the learned mask's lift (cost)
    boxes: list = field(default_factory=list)
    map_size: tuple[int, int] = (0, 0)

    def add_film(self, s: Sample, img, h, cache, view, exact_masks, segmenter, own: bool, keep_maps: bool) -> None:
        """One film's lung mask (checked), its map's lung focus, area and heart-box shares, and what the learned
        mask would have given where an annotated one was used; the film, map and mask too when KEEP_MAPS."""
        box = cache.box(s.path, view)
        self.boxes.append(box)
        # the crop's own mask and quality decision (unless the caller asked for another segmenter)
        film_mask = cache.lung_mask(s.path, view) if box is not None and own else None
        m, how, problem = lung_mask(s, img, exact_masks, segmenter, box, film_mask)
        self.focus.append(lung_focus(h, m))
        self.area.append(area_share(m))
        if how == "annotated":
            ml, _, lp = lung_mask(s, img, None, segmenter, box, film_mask)
            self.learned_lift.append(lift(h, ml) if not lp else float("nan"))
        else:
            self.learned_lift.append(float("nan"))
        self.heart.append(lower_central_share(h))
        self.mask_methods.append(how)
        self.problems.append(problem)
        if keep_maps:
            self.images.append(img), self.cams.append(h), self.masks.append(m)

    def log_failed_masks(self) -> None:
        """Say how many masks failed their check (they are left out of the lung lift, never hidden)."""
        n_failed = sum(bool(p) for p in self.problems)
        if n_failed:
            log.info(
                "%d of %d lung masks failed the quality check and are left out of the lung lift",
                n_failed,
                len(self.problems),
            )

    def fields(self, image_size: int) -> dict[str, Any]:
        """Everything gathered, as the Explanation's fields of the same names (empty arrays of the right shape
        when there were no films)."""
        empty = np.zeros((0, image_size, image_size))
        return {
            "images": np.stack(self.images) if self.images else empty.astype(np.uint8),
            "cams": np.stack(self.cams) if self.cams else empty.astype(np.float32),
            "probs": np.concatenate(self.probs) if self.probs else np.zeros(0),
            "masks": np.stack(self.masks) if self.masks else empty.astype(bool),
            "mask_methods": self.mask_methods,
            "focus": np.array(self.focus),
            "lung_area": np.array(self.area),
            "heart_box": np.array(self.heart),
            "classes": np.concatenate(self.classes) if self.classes else np.zeros(0, int),
            "mask_problems": self.problems,
            "map_size": self.map_size,
            "learned_lift": np.array(self.learned_lift, float),
            "boxes": self.boxes,
        }


def explain(
    model: torch.nn.Module,
    samples: list[Sample],
    preprocessing,
    threshold: float = 0.5,
    *,
    method: str = DEFAULT_METHOD,
    target: str = "PNEUMONIA",
    tta: bool = False,
    layer: str = "auto",
    batch_size: int = 16,
    resources: Resources | None = None,
    keep_maps: bool = True,
    selection: str = "",
    exact_masks: Callable[[Path], Path | None] | None = None,
    segmenter: LungSegmenter | None = None,
) -> Explanation:
    """Grad-CAM, lung masks (checked) and lift scores for `samples`, streamed in batches.

    probs are P(PNEUMONIA) from infer.predict_proba with `tta` (pass the checkpoint's config.tta: predict and
    evaluate do), and with tta the maps average the image and its flipped-back flip in the same way.
    exact_masks: path -> annotated lung mask file or None (lungs.annotated_mask); films without one are segmented by
    `segmenter` (default: the context's, the one its cache draws the crop boxes with), and every mask is checked by that segmenter's calibrated LungCheck.
    resources: the context the films are decoded in (default: a new one for this call).
    target: 'PNEUMONIA' (default: the same heatmap for every model, so runs compare), 'NORMAL', or 'predicted'
    (the class the threshold picks). layer: 'auto' (the deepest ResNet stage with >= 8 x 8 cells) or a stage.
    keep_maps=False keeps only the per-image scores (not the images, heatmaps and masks)."""
    if target not in TARGETS:
        raise ValueError(f"unknown CAM target {target!r}; known: {', '.join(TARGETS)}")
    resources = as_resources(resources)
    cache = resources.cache
    own = segmenter is None  # the cache's segmenter drew the crop boxes; another one is asked for explicitly
    segmenter = segmenter or resources.segmenter  # the context's one: never loaded twice
    device = next(model.parameters()).device
    layer_name, module = resolve_layer(model, layer, preprocessing.image_size, preprocessing.in_channels)
    got = _Gathered()
    with CAM(model, method, module) as cam:
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            raw, x = batch(chunk, preprocessing, cache)
            p = predict_proba(model, x, device=device, tta=tta)
            cls = target_classes(target, p, threshold)
            heat = cam.maps(x, cls, tta)
            got.map_size = cam.map_size or got.map_size
            got.probs.append(p)
            got.classes.append(cls)
            for s, img, h in zip(chunk, raw, heat):
                got.add_film(s, img, h, cache, preprocessing.view, exact_masks, segmenter, own, keep_maps)
    got.log_failed_masks()
    return Explanation(
        samples=list(samples),
        threshold=threshold,
        method=method,
        target=target,
        layer=layer_name,
        tta=tta,
        selection=selection,
        input_size=preprocessing.image_size,
        **got.fields(preprocessing.image_size),
    )
