"""Measuring the segmenter: Dice against annotated masks, mask coverage, the quality check's calibration, segmenting files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..core.config import CLASSES
from ..data.imaging import load_image
from ..data.lungs_masks import SIZE, LungCheck, MaskPair, dilate, film_problem, mask_stats, read_mask, stack_pairs
from ..data.lungs_segmenter import LungSegmenter

# --- training and evaluation ---------------------------------------------------------------------------------
COVERAGE_DILATIONS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10)


COVERAGE_KEEP = 0.98  # a film's annotated lung counts as kept when this share of it is inside the dilated mask


COVERAGE_FILMS = 0.95  # the rule: the smallest dilation keeping COVERAGE_KEEP of the lung on this share of each class


def mask_coverage(
    seg: LungSegmenter, pairs: list[MaskPair], dilations=COVERAGE_DILATIONS, margin: float = 0.08
) -> dict[str, Any]:
    """How much of each film's annotated lung field the lung-mask view keeps, per dilation and per class.

    Args:
        seg: the segmenter whose masks draw the view (the crop's own: lung_fields at SIZE).
        pairs: annotated films (the validation split's: the choice must not see the test split).
        dilations: the candidate dilations, as shares of the film's width.
        margin: the crop box's margin (the annotated lung outside the box is lost whatever the dilation).

    Returns:
        {"dilations": {d: {class: {"n", "mean", "p05", "kept_share"}}}, "box": {class: ...}, "chosen": d or None,
        "rule": text}: kept_share is the share of films keeping at least COVERAGE_KEEP of their annotated lung;
        chosen is the smallest dilation whose kept_share is at least COVERAGE_FILMS for every class.
    """
    per: dict[float, dict[int, list[float]]] = {d: {0: [], 1: []} for d in dilations}
    box_cov: dict[int, list[float]] = {0: [], 1: []}
    for p in pairs:
        film = np.asarray(Image.open(p.image).convert("L"))
        box, mask = seg.lung_fields([film], margin)[0]
        truth = read_mask(p.mask, (SIZE, SIZE))
        if not truth.any():
            continue
        inside_box = np.zeros_like(truth)
        top, bottom, left, right = box.pixels(SIZE, SIZE)
        inside_box[top:bottom, left:right] = True
        box_cov[p.label].append(float((truth & inside_box).sum() / truth.sum()))
        for d in dilations:
            kept = dilate(mask, d) & inside_box if not box.problem else inside_box
            per[d][p.label].append(float((truth & kept).sum() / truth.sum()))

    def stats(v: list[float]) -> dict[str, float]:
        a = np.asarray(v)
        return {
            "n": int(len(a)),
            "mean": float(a.mean()) if len(a) else float("nan"),
            "p05": float(np.percentile(a, 5)) if len(a) else float("nan"),
            "kept_share": float((a >= COVERAGE_KEEP).mean()) if len(a) else float("nan"),
        }

    table = {d: {CLASSES[c]: stats(v) for c, v in by.items()} for d, by in per.items()}
    ok = [d for d in dilations if all(s["n"] and s["kept_share"] >= COVERAGE_FILMS for s in table[d].values())]
    return {
        "dilations": table,
        "box": {CLASSES[c]: stats(v) for c, v in box_cov.items()},
        "chosen": min(ok) if ok else None,
        "rule": f"the smallest dilation at which at least {COVERAGE_FILMS:.0%} of each class's annotated films keep "
        f"at least {COVERAGE_KEEP:.0%} of their annotated lung inside the view",
    }


def format_coverage(r: dict[str, Any]) -> str:
    """The coverage table, one row per dilation."""
    lines = [f"{'dilation':>9}  {'NORMAL kept / mean / p05':>27}  {'PNEUMONIA kept / mean / p05':>30}"]
    for d, by in r["dilations"].items():
        cells = [f"{by[c]['kept_share']:.3f} / {by[c]['mean']:.3f} / {by[c]['p05']:.3f}" for c in CLASSES]
        lines.append(f"{d:>9.2f}  {cells[0]:>27}  {cells[1]:>30}")
    b = r["box"]
    lines.append(
        f"{'box only':>9}  "
        + "  ".join(
            f"{b[c]['kept_share']:.3f} / {b[c]['mean']:.3f} / {b[c]['p05']:.3f}".rjust(27 if c == "NORMAL" else 30)
            for c in CLASSES
        )
    )
    lines.append(f"chosen: {r['chosen']} ({r['rule']}); n = " + ", ".join(f"{c} {r['box'][c]['n']}" for c in CLASSES))
    return "\n".join(lines)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|); 1.0 when both are empty."""
    s = pred.sum() + truth.sum()
    return float(2 * np.logical_and(pred, truth).sum() / s) if s else 1.0


def evaluate_pairs(seg: LungSegmenter, pairs: list[MaskPair]) -> dict[str, Any]:
    """Dice of each film's predicted mask against its annotation, at the annotation's (the film's) own size."""
    if not pairs:
        return {"n": 0, "dice_mean": float("nan"), "dice_p05": float("nan"), "dice": []}
    x, _ = stack_pairs(pairs)
    truths = [read_mask(p.mask) for p in pairs]
    preds = seg.masks_for(x, [t.shape for t in truths])
    d = np.array([dice(p, t) for p, t in zip(preds, truths)])
    return {
        "n": int(len(d)),
        "dice_mean": float(d.mean()),
        "dice_p05": float(np.percentile(d, 5)),
        "dice_min": float(d.min()),
        "dice": [float(v) for v in d],
        "films": [str(p.image) for p in pairs],
    }


def plot_comparison(
    seg: LungSegmenter, pairs: list[MaskPair], dices: list[float], n_worst: int = 4, n_other: int = 4, seed: int = 0
):
    """A figure: the n_worst films by Dice and n_other others (seeded), each with the annotated mask's outline
    (white) and the learned one's (green), titled with the Dice."""
    import matplotlib.pyplot as plt

    order = np.argsort(dices)
    rest = np.random.default_rng(seed).permutation(order[n_worst:])[:n_other]
    chosen = [*order[:n_worst], *sorted(rest, key=lambda i: dices[i])]
    fig, axes = plt.subplots(2, (len(chosen) + 1) // 2, figsize=(2.4 * ((len(chosen) + 1) // 2), 5.4))
    for ax, i in zip(np.ravel(axes), chosen):
        film = np.asarray(load_image(pairs[i].image), dtype=np.uint8)
        truth, pred = read_mask(pairs[i].mask, film.shape), seg.segment_array(film)
        rgb = overlay(film, pred)
        edge = truth & ~ndi.binary_erosion(truth, iterations=max(1, min(truth.shape) // 200))
        rgb[edge] = (255, 255, 255)
        ax.imshow(rgb)
        ax.set_title(
            f"{'worst ' if i in order[:n_worst] else ''}Dice {dices[i]:.3f}\n{pairs[i].image.name[:22]}", fontsize=7
        )
        ax.axis("off")
    for ax in np.ravel(axes)[len(chosen) :]:
        ax.axis("off")
    fig.suptitle("lung masks: annotated (white) vs learned (green)", fontsize=9)
    fig.tight_layout()
    return fig


def calibrate_check(masks: list[np.ndarray], coverage: float = 0.995, slack: float = 0.1) -> LungCheck:
    """Limits that pass `coverage` of the given (annotated) masks on each statistic, widened by `slack` (a share of
    the limit): the check then fails an annotated mask only where annotators drew something unusual."""
    st = [mask_stats(m) for m in masks]
    q = (1 - coverage) * 100

    def pct(k, p):
        return float(np.percentile([s[k] for s in st], p))

    return LungCheck(
        min_area=round(pct("area", q) * (1 - slack), 3),
        max_area=round(min(1.0, pct("area", 100 - q) * (1 + slack)), 3),
        min_pair_ratio=round(pct("pair_ratio", q) * (1 - slack), 3),
        max_edge_contact=round(min(1.0, pct("edge_contact", 100 - q) * (1 + slack) + 0.02), 3),
    )


def qc_report(seg: LungSegmenter, pairs: list[MaskPair], good_dice: float = 0.9) -> dict[str, Any]:
    """The check's pass rate on the predicted masks, and its own error rates against the annotations: annotated
    masks it fails (false fail), predicted masks with Dice below good_dice that it passes (false pass)."""
    check = seg.check
    x, _ = stack_pairs(pairs)
    truths = [read_mask(p.mask) for p in pairs]
    preds = seg.masks_for(x, [t.shape for t in truths])
    passed = np.array([not check.problems(m) for m in preds])
    truth_fail = np.array([bool(check.problems(t)) for t in truths])
    bad = np.array([dice(p, t) < good_dice for p, t in zip(preds, truths)])
    return {
        "qc": check.to_dict(),
        "qc_pass_rate": float(passed.mean()),
        "qc_false_fail": int(truth_fail.sum()),
        "qc_false_fail_rate": float(truth_fail.mean()),
        "qc_bad_masks": int(bad.sum()),
        "qc_false_pass": int((bad & passed).sum()),
        "qc_failed": [str(p.image) for p, ok in zip(pairs, passed) if not ok],
    }


def qc_on_films(seg: LungSegmenter, paths) -> dict[str, Any]:
    """The check's pass rate on the segmenter's masks of every given film (annotated or not), and the failures."""
    failed = {}
    paths = list(paths)
    for p in paths:
        _, mask = seg.segment_file(p)
        problem = seg.check.problems(mask)
        if problem:
            failed[str(p)] = problem
    return {
        "n_films": len(paths),
        "qc_pass_rate_all_films": 1 - len(failed) / len(paths) if paths else float("nan"),
        "qc_failed_all_films": failed,
    }


def segment_files(seg: LungSegmenter, files, out_dir: str | Path, say=print) -> list:
    """<stem>_lungs.png (white = lung, the film's own size) and <stem>_lungs_overlay.png for every readable film;
    returns the refused files (ImageError), never raises for one bad film."""
    from ..core.io import make_dir, save_image
    from ..data.imaging import ImageError

    out = make_dir(out_dir)
    refused = []
    for f in map(Path, files):
        try:
            film, mask = seg.segment_file(f)
        except (ImageError, OSError) as e:
            refused.append(e if isinstance(e, ImageError) else ImageError(f, str(e)))
            continue
        save_image(Image.fromarray((mask * 255).astype(np.uint8)), out / f"{f.stem}_lungs.png")
        save_image(Image.fromarray(overlay(film, mask)), out / f"{f.stem}_lungs_overlay.png")
        problem = film_problem(film) or seg.check.problems(mask)
        say(f"{f}\tlung area {mask.mean():.3f}\tcheck {'passed' if not problem else 'FAILED: ' + problem}")
    return refused


def overlay(film: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The film in grey with the lung mask's outline in green (H x W x 3 uint8)."""
    rgb = np.repeat(film[..., None], 3, axis=2).copy()
    edge = mask & ~ndi.binary_erosion(mask, iterations=max(1, min(mask.shape) // 200))
    rgb[edge] = (0, 255, 0)
    return rgb
