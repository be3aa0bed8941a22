"""Grad-CAM through pytorch-grad-cam, lung-field masks, and the lung-focus score."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2  # comes with grad-cam
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy import ndimage as ndi

from .data import DEFAULT_CACHE, Sample
from .fixture import mask_for
from .models import cam_layer, p_pneumonia

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}


class CAM:
    """`with CAM(model) as cam: heatmaps = cam(x, targets)`; the device is taken from the model."""

    def __init__(self, model: torch.nn.Module, method: str = "gradcam", target_layer: torch.nn.Module | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown CAM method {method!r}; known: {', '.join(METHODS)}")
        self.model, self.method = model.eval(), method
        self._cam = METHODS[method](model=self.model, target_layers=[target_layer or cam_layer(model)])

    def __enter__(self) -> "CAM":
        return self

    def __exit__(self, *exc) -> None:
        self._cam.__exit__(*exc)

    def __call__(self, x: torch.Tensor, targets: list | None = None) -> np.ndarray:
        """N x H x W heatmaps in [0, 1]; targets are callables on the logits (default: the predicted class)."""
        x = x.to(next(self.model.parameters()).device)
        return self._cam(input_tensor=x, targets=targets)


def class_targets(classes: list[int]) -> list[ClassifierOutputTarget]:
    return [ClassifierOutputTarget(int(c)) for c in classes]


# --- lung fields ----------------------------------------------------------------------------
def prior_lungs(h: int, w: int) -> np.ndarray:
    """Two ellipses where lungs sit on a frontal film: the fall-back when segmentation finds nothing."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    e = lambda cy, cx: ((yy - cy * h) / (0.27 * h)) ** 2 + ((xx - cx * w) / (0.15 * w)) ** 2 <= 1  # noqa: E731
    return e(0.48, 0.31) | e(0.48, 0.69)


def segment_lungs(image: np.ndarray) -> tuple[np.ndarray, str]:
    """A classical lung-field mask for a frontal chest film (uint8 HxW): inside a fixed thorax box, the two
    largest dark regions (Otsu threshold on the smoothed box), opened to cut thin bridges, closed and
    hole-filled. Returns (mask, method); method is 'prior' when nothing plausible was found and the
    fixed two-ellipse prior is returned instead. Rough by design: plot it (plots.plot_cam_grid) and judge."""
    h, w = image.shape
    smooth = ndi.gaussian_filter(image.astype(np.float32), sigma=h / 64)
    box = np.zeros((h, w), bool)
    box[int(0.12 * h):int(0.85 * h), int(0.1 * w):int(0.9 * w)] = True  # keeps the dark background out
    inside = np.clip(smooth[box], 0, 255).astype(np.uint8).reshape(1, -1)
    t, _ = cv2.threshold(inside, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = ndi.binary_opening((smooth < t) & box, iterations=max(1, h // 40))
    labels, n = ndi.label(dark)
    areas = ndi.sum(dark, labels, index=np.arange(1, n + 1))
    keep = [i + 1 for i in np.argsort(areas)[::-1] if areas[i] > 0.02 * h * w][:2]
    if not keep:
        return prior_lungs(h, w), "prior"
    mask = ndi.binary_closing(np.isin(labels, keep), iterations=max(1, h // 32))
    return ndi.binary_fill_holes(mask), "segmented"


def lung_mask(sample: Sample, image: np.ndarray) -> tuple[np.ndarray, str]:
    """The exact fixture mask when the sample has one, else the classical segmentation."""
    exact = mask_for(sample.path)
    if exact is not None:
        m = Image.open(exact).convert("L").resize(image.shape[::-1], Image.NEAREST)
        return np.asarray(m) > 127, "exact"
    return segment_lungs(image)


def lung_focus(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the CAM's energy inside the lung fields (1 = all attention on the lungs)."""
    if cam.shape != mask.shape:
        cam = cv2.resize(cam.astype(np.float32), mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
    total = float(cam.sum())
    return float((cam * mask).sum() / total) if total > 0 else float("nan")


def lower_central_share(cam: np.ndarray) -> float:
    """Share of the CAM's energy in the lower-central box (rows 55-100%, columns 30-70%) where the heart
    and the diaphragm sit on a frontal film: the log's 'attention on the heart / lower diaphragm'."""
    h, w = cam.shape
    total = float(cam.sum())
    box = cam[int(0.55 * h):, int(0.3 * w):int(0.7 * w)].sum()
    return float(box / total) if total > 0 else float("nan")


@dataclass
class Explanation:
    """Grad-CAM results for a set of images, ready to plot or tabulate."""

    samples: list[Sample]
    images: np.ndarray  # N x H x W uint8, as the model saw them (before normalisation)
    cams: np.ndarray  # N x H x W in [0, 1]
    probs: np.ndarray  # P(PNEUMONIA)
    threshold: float
    masks: np.ndarray  # N x H x W bool lung fields
    mask_methods: list[str]
    focus: np.ndarray  # lung-focus score per image
    lung_area: np.ndarray  # share of the image the lungs cover: what lung-focus a uniform heatmap would get
    heart_box: np.ndarray  # heatmap share in the lower-central (heart / diaphragm) box
    method: str
    target: str

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            sel = np.array([s.label == label for s in self.samples])
            if sel.any():
                out[name] = {"n": int(sel.sum()), "lung_focus": float(np.nanmean(self.focus[sel])),
                             "lung_area": float(self.lung_area[sel].mean()),
                             "heart_box": float(np.nanmean(self.heart_box[sel]))}
        return out


def explain(model: torch.nn.Module, samples: list[Sample], preprocessing, threshold: float = 0.5, *,
            method: str = "gradcam", target: str = "predicted", batch_size: int = 16, cache=None,
            keep_maps: bool = True) -> Explanation:
    """Grad-CAM, lung masks and lung-focus scores for `samples`, streamed in batches.

    target: 'predicted' (the class the threshold picks), 'PNEUMONIA' or 'NORMAL'. keep_maps=False keeps only
    the per-image scores (not the images, heatmaps and masks), so thousands of images fit in memory."""
    cache = cache or DEFAULT_CACHE
    images, cams, probs, masks, mmethods, focus, area, heart = [], [], [], [], [], [], [], []
    device = next(model.parameters()).device
    with CAM(model, method) as cam:
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            raw = [cache.get(s.path, preprocessing.image_size) for s in chunk]
            x = preprocessing(torch.from_numpy(np.stack(raw)).unsqueeze(1))
            p = p_pneumonia(model, x.to(device)).cpu().numpy()
            if target == "predicted":
                cls = (p >= threshold).astype(int)
            else:
                cls = np.full(len(chunk), ("NORMAL", "PNEUMONIA").index(target))
            heat = cam(x, class_targets(cls))
            probs.append(p)
            for s, img, h in zip(chunk, raw, heat):
                m, how = lung_mask(s, img)
                focus.append(lung_focus(h, m))
                area.append(float(m.mean()))
                heart.append(lower_central_share(h))
                mmethods.append(how)
                if keep_maps:
                    images.append(img), cams.append(h), masks.append(m)
    empty = np.zeros((0, preprocessing.image_size, preprocessing.image_size))
    return Explanation(list(samples), np.stack(images) if images else empty.astype(np.uint8),
                       np.stack(cams) if cams else empty, np.concatenate(probs) if probs else np.zeros(0),
                       threshold, np.stack(masks) if masks else empty.astype(bool), mmethods, np.array(focus),
                       np.array(area), np.array(heart), method, target)


def save_overlays(expl: Explanation, out_dir: str | Path) -> list[Path]:
    """One PNG per image: the X-ray with its heatmap blended on top."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, img, c in zip(expl.samples, expl.images, expl.cams):
        rgb = np.repeat(img[..., None] / 255.0, 3, axis=2).astype(np.float32)
        over = show_cam_on_image(rgb, c, use_rgb=True)
        p = out_dir / f"{Path(s.path).stem}_cam.png"
        Image.fromarray(over).save(p)
        paths.append(p)
    return paths
