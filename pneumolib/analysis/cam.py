"""Grad-CAM: overlays at the film's own resolution and the report; every Grad-CAM name in one place for callers."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2  # comes with grad-cam
import numpy as np
from PIL import Image

from ..analysis.cam_checks import (  # noqa: F401 (re-exported: every name in one place)
    RANDOMISATION_MAX_CORR,
    choose_method,
    compare_methods,
    explain_predictor,
    format_comparison,
    maps_pass,
    random_maps,
    randomise_top,
    rank_correlation,
    recorded_sanity,
    road,
    road_degenerate,
    road_of,
    sanity_checks,
)
from ..analysis.cam_explanation import (  # noqa: F401 (re-exported: every name in one place)
    Explanation,
    batch,
    explain,
)
from ..analysis.cam_maps import (  # noqa: F401 (re-exported: every name in one place)
    CAM,
    HEART_BOX,
    MIN_CELLS,
    STAGES,
    TARGETS,
    LogitDifference,
    area_share,
    class_targets,
    first_per_class,
    heart_box_mask,
    lift,
    lower_central_share,
    lung_focus,
    lung_mask,
    resolve_layer,
    stage_sizes,
    target_classes,
    target_label,
)
from ..analysis.cam_methods import DEFAULT_METHOD, METHODS  # noqa: F401 (the registry, re-exported)
from ..core.config import CLASSES
from ..core.io import make_dir, save_image
from ..data.lungs import LungBox

# --- overlays at the film's own resolution ---------------------------------------------------
MAX_OVERLAY_SIDE = 1024


def overlay_on_film(
    path: str | Path, cam: np.ndarray, max_side: int = MAX_OVERLAY_SIDE, box: LungBox | None = None
) -> np.ndarray:
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
        heat[top:bottom, left:right] = np.clip(
            cv2.resize(np.asarray(cam, np.float32), (right - left, bottom - top), interpolation=cv2.INTER_LINEAR), 0, 1
        )
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
    lines = [
        f"{rep['method']} at {rep['layer']}, native map {h} x {w} cells, target: {target_label(rep['target'])}"
        + f"{tta}; {rep.get('selection', '')}"
    ]
    for cls in CLASSES:
        if cls in rep["lung_lift"]:
            lines.append(
                f"{cls:<9} lung lift {_interval(rep['lung_lift'][cls])}; "
                f"heart/diaphragm lift {_interval(rep['heart_lift'].get(cls))}"
            )
    lines.append(
        f"lift = energy share inside the region / its area share (1.0 = no preference); interval from "
        f"resampling patients. Lung masks ({', '.join(rep.get('mask_methods', []))}): "
        f"{rep['masks_passed']} passed, {rep['masks_failed']} failed the check (left out of the lung lift)"
    )
    for cls, c in (rep.get("learned_mask_cost") or {}).items():
        lines.append(
            f"{cls:<9} learned instead of annotated masks on the {c['n']} films that have both: lung lift "
            f"{c['learned']:.2f} vs {c['annotated']:.2f}, difference {c['learned_minus_annotated']:+.2f} "
            f"(95% CI by patient {c['ci95'][0]:+.2f} to {c['ci95'][1]:+.2f})"
        )
    if rep.get("empty_maps"):
        hint = (
            ""
            if rep["method"] != "gradcam"
            else "; method 'hirescam' or 'layercam' weights each cell by its "
            "own gradient instead of the layer's mean gradient"
        )  # a hint only where another method could help
        lines.append(
            f"{rep['empty_maps']} of {rep['n']} maps are empty (no positive evidence for the target at "
            f"{rep['layer']}) and have no lift{hint}"
        )
    elif "empty_maps" in rep:
        lines.append(f"empty maps: 0 of {rep['n']}")
    lines += _check_lines(rep)
    return "\n".join(lines)


def _check_lines(rep: dict[str, Any]) -> list[str]:
    """The report's lines on whether its maps can be trusted: the randomisation test, ROAD against random maps,
    and the verdict of both (none for a report whose checks were not run)."""
    lines = []
    rc = rep.get("randomisation_rank_corr")
    if rc:
        lines.append(
            f"randomisation test: rank correlation with the maps after re-initialising "
            f"{' and '.join(rc['reinitialised'])} = {rc['mean']:.2f} (near 1 would mean the maps ignore "
            f"the learned weights)"
        )
    fa = road_of(rep)
    if fa:
        diff = fa.get("model_minus_random_ci95")
        lines.append(
            f"faithfulness (ROAD, higher = the map ranks what the model uses): model map {fa['model']:+.3f}, "
            f"random map {fa['random']:+.3f}"
            + (
                f"; model minus random {fa['model_minus_random']:+.3f} (95% CI by patient {diff[0]:+.3f} to "
                f"{diff[1]:+.3f})"
                if diff
                else ""
            )
        )
    if fa and road_degenerate(fa):
        lines.append(
            "the maps cannot be checked: the model's output barely moves when ROAD removes pixels (a collapsed model)"
        )
    elif rep.get("maps_pass") is not None:
        lines.append(
            "the maps pass their checks (ROAD above the random map, changed by randomisation): "
            + ("yes" if rep["maps_pass"] else "NO: lift-based claims about these maps cannot be judged")
        )
    return lines
