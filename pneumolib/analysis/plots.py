"""The figures the notebooks show: augmentations, training curves, confusion matrix, scores, Grad-CAM grids."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from ..core.config import CLASSES, ExperimentConfig
from ..data.dataset import Sample
from ..data.resources import Resources, as_resources
from ..data.transforms import build, has_reference


def show_batched_vs_reference(
    config: ExperimentConfig,
    samples: list[Sample],
    n_per_class: int = 1,
    n_draws: int = 4,
    seed: int = 0,
    resources: Resources | None = None,
):
    """The same images through the per-sample reference transforms and through the batched augmentation that
    training uses (augment.BatchAugment): two rows per image, alike in kind, not pixel for pixel (each path
    draws its own random parameters). The films are decoded in `resources` (default: a new context for this call)."""
    from ..data.augment import BatchAugment

    cache = as_resources(resources).cache
    rng = np.random.default_rng(seed)
    picked = []
    for label, cls in enumerate(CLASSES):
        pool = [s for s in samples if s.label == label]
        picked += [(label, pool[i]) for i in rng.choice(len(pool), size=min(n_per_class, len(pool)), replace=False)]
    aug = BatchAugment.from_specs(config.train_transforms)
    gen = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(
        2 * len(picked), n_draws + 1, figsize=(2.1 * (n_draws + 1), 2.2 * 2 * len(picked)), squeeze=False
    )
    for r, (label, s) in enumerate(picked):
        spec = config.transform_for(CLASSES[label])
        img = torch.from_numpy(cache.get(s.path, config.view)).unsqueeze(0)
        reference = None
        if has_reference(spec):  # the log's pipelines have a per-sample reference; the recipe's exist only batched
            per_sample = build(spec)
            with torch.random.fork_rng(devices=[]):  # the reference draws from the global RNG: leave it as it was
                torch.manual_seed(seed + r)
                reference = [per_sample(img) for _ in range(n_draws)]
        batched = aug(img.expand(n_draws, -1, -1, -1).contiguous(), torch.full((n_draws,), label), gen)
        for row, (name, views) in enumerate((("per-sample reference", reference), ("batched (training)", batched))):
            if views is None:
                axes[2 * r + row, 0].text(
                    0.02,
                    0.5,
                    f"{spec}: no per-sample reference\n(not one of the log's pipelines)",
                    fontsize=7,
                    transform=axes[2 * r + row, 0].transAxes,
                )
                for ax in axes[2 * r + row]:
                    ax.axis("off")
                continue
            for c, v in enumerate([img, *views]):
                ax = axes[2 * r + row, c]
                ax.imshow(v.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=255)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{CLASSES[label]}\nas decoded" if c == 0 else f"{name}\n{spec}", fontsize=7)
    fig.suptitle(f"{config.name}: the same images, per-sample reference vs batched augmentation", fontsize=10)
    fig.tight_layout()
    return fig


def show_central_focus(image: np.ndarray, focus=None):
    """An image before and after CentralFocus, with the sharpness mask between them."""
    from ..data.transforms import CentralFocus

    focus = focus or CentralFocus()
    t = torch.from_numpy(image).unsqueeze(0)
    out = focus(t).squeeze(0).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    for ax, im, title, kw in zip(
        axes,
        [image, focus.mask(*image.shape).numpy(), out],
        ["original", "sharp region (1 = untouched)", repr(focus)],
        [
            dict(cmap="gray", vmin=0, vmax=255),
            dict(cmap="viridis", vmin=0, vmax=1),
            dict(cmap="gray", vmin=0, vmax=255),
        ],
    ):
        ax.imshow(im, **kw)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_history(history: list[dict[str, float]], best_epoch: int | None = None, ax=None):
    epochs = [h["epoch"] for h in history]
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3))
    else:
        fig = ax[0].figure
    ax[0].plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax[0].plot(epochs, [h["val_loss"] for h in history], "o-", label="val loss")
    ax[1].plot(epochs, [h["val_auc"] for h in history], "o-", label="val AUC")
    ax[1].plot(epochs, [h["val_acc"] for h in history], "o-", label="val accuracy @0.5")
    from matplotlib.ticker import MaxNLocator

    for a in ax:
        if best_epoch:
            a.axvline(best_epoch, color="grey", ls=":", label=f"best epoch {best_epoch}")
        a.set_xlabel("epoch")
        a.legend(fontsize=7)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    return fig


def plot_confusion(metrics: dict[str, Any], title: str = "", ax=None):
    cm = np.array(metrics["confusion_matrix"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.6, 3.0))
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=CLASSES, yticklabels=CLASSES, ax=ax)
    ax.set_xlabel(f"predicted (PNEUMONIA if p >= {metrics['threshold']:.2f})")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {metrics['accuracy']:.3f}, n = {metrics['n']}", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def plot_scores(scores, threshold: float, title: str = "", ax=None):
    """P(PNEUMONIA) per true class, with the decision threshold."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.0))
    data = {"p": scores.probs, "true class": [CLASSES[s.label] for s in scores.samples]}
    sns.histplot(
        data,
        x="p",
        hue="true class",
        hue_order=list(CLASSES),
        bins=np.linspace(0, 1, 26),
        stat="count",
        element="step",
        ax=ax,
    )
    ax.set_ylabel("images")
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" threshold {threshold:.2f}", fontsize=7, va="top")
    ax.set_xlabel("P(PNEUMONIA)")
    ax.set_title(title or "predicted probability by true class", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


CAM_TILE = 2.6  # inches per Grad-CAM tile: big enough to tell lung from heart at notebook resolution
BODY_PT = 10  # titles at body-text size


def cam_caption(expl) -> str:
    """What every Grad-CAM figure states: method, layer, native map size, target, TTA, masks, which films."""
    h, w = expl.map_size
    tta = "; maps averaged over the image and its flip (as the prediction)" if expl.tta else ""
    size = f", upsampled to {expl.input_size} px" if getattr(expl, "input_size", 0) else ""
    masks = ", ".join(sorted(set(expl.mask_methods))) or "none"
    line1 = (
        f"{expl.method} at {expl.layer}: native map {h} x {w} cells{size}; target: "
        f"{'the predicted class' if expl.target == 'predicted' else f'log-odds of P({expl.target})'}{tta}"
    )
    failed = int((~expl.mask_ok).sum())
    n_empty = int(expl.empty.sum())
    line2 = (
        f"white line: lung mask ({masks})"
        + (f"; {n_empty} empty map(s) not drawn" if n_empty else "")
        + (f"; dashed red: mask failed its check ({failed}), left out of the lung lift" if failed else "")
    )
    return "\n".join([line1, line2] + ([expl.selection] if expl.selection else []))


def _cam_colorbar(fig, axes, method: str = "Grad-CAM"):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(Normalize(0, 1), cmap="jet")
    cb = fig.colorbar(sm, ax=axes, fraction=0.03, pad=0.02)
    cb.set_label(f"{method} (each map scaled to 0-1)", fontsize=BODY_PT)
    cb.ax.tick_params(labelsize=BODY_PT - 1)
    return cb


def plot_cam_grid(expl, n_per_class: int = 4, show_mask: bool = True, title: str = ""):
    """Rows: NORMAL then PNEUMONIA (the first n_per_class of each in the explanation's order); each tile: the map
    over the film as the model saw it, the lung-mask outline, truth, prediction and p (the same P and threshold
    predict reports), lung lift. A colorbar, and a caption with the native map size, target and selection."""
    picks = []
    for label in range(len(CLASSES)):
        picks.append([i for i, s in enumerate(expl.samples) if s.label == label][:n_per_class])
    picks = [p for p in picks if p] or [[]]  # no empty row for a class that is not there
    n_cols = max(1, max(len(p) for p in picks))
    fig, axes = plt.subplots(
        len(picks),
        n_cols,
        figsize=(CAM_TILE * n_cols + 1.2, (CAM_TILE + 0.9) * len(picks) + 1.0),
        squeeze=False,
        layout="constrained",
    )
    lifts, ok_masks = expl.lung_lift, expl.mask_ok
    for r, idx in enumerate(picks):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(idx):
                continue
            i = idx[c]
            ax.imshow(expl.images[i], cmap="gray", vmin=0, vmax=255)
            if not expl.empty[i]:  # an empty map (no positive evidence) is not drawn as if it were a finding
                ax.imshow(expl.cams[i], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            if show_mask and expl.masks[i].any():
                good = bool(ok_masks[i])
                ax.contour(
                    expl.masks[i],
                    levels=[0.5],
                    colors="white" if good else "red",
                    linewidths=1.2,
                    linestyles="solid" if good else "dashed",
                )
            p = expl.probs[i]
            pred = CLASSES[int(p >= expl.threshold)]
            ok = "ok" if pred == CLASSES[expl.samples[i].label] else "WRONG"
            lift = (
                "EMPTY MAP: not drawn"
                if expl.empty[i]
                else f"lung lift {lifts[i]:.2f}"
                if ok_masks[i]
                else "mask failed"
            )
            ax.set_title(
                f"true {CLASSES[expl.samples[i].label]}\npred {pred} ({ok}), p={p:.2f}\n{lift}", fontsize=BODY_PT
            )
    _cam_colorbar(fig, axes, expl.method)
    fig.suptitle((title + "\n" if title else "") + cam_caption(expl), fontsize=BODY_PT)
    return fig


def plot_mask_gallery(expl, n: int = 12, n_cols: int = 6, title: str = ""):
    """Lung masks over their films, each marked pass or FAIL with the reason, so a reader can judge the
    segmenter: up to n // 2 failed masks first (in the explanation's order), then passed ones, alternating classes."""
    import textwrap
    from itertools import chain, zip_longest

    ok = expl.mask_ok
    failed = [i for i in range(len(expl.samples)) if not ok[i]][: n // 2]
    by_class = [[i for i, s in enumerate(expl.samples) if ok[i] and s.label == label] for label in range(len(CLASSES))]
    passed = [i for i in chain(*zip_longest(*by_class)) if i is not None][: n - len(failed)]
    shown = failed + passed
    n_rows = max(1, -(-len(shown) // n_cols))
    cols = max(1, min(n_cols, len(shown)))
    fig, axes = plt.subplots(
        n_rows, cols, figsize=(CAM_TILE * cols, (CAM_TILE + 0.7) * n_rows + 0.8), squeeze=False, layout="constrained"
    )
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(shown):
            continue
        i = shown[k]
        ax.imshow(expl.images[i], cmap="gray", vmin=0, vmax=255)
        if expl.masks[i].any():
            ax.contour(expl.masks[i], levels=[0.5], colors="lime" if ok[i] else "red", linewidths=1.2)
        label = "pass" if ok[i] else "FAIL: " + expl.mask_problems[i]
        ax.set_title(
            textwrap.fill(f"{CLASSES[expl.samples[i].label]}, {label}", 26),
            fontsize=BODY_PT,
            color="black" if ok[i] else "red",
        )
    n_ok = int(ok.sum())
    fig.suptitle(
        (title + "\n" if title else "")
        + f"lung masks ({', '.join(sorted(set(expl.mask_methods)))}): {n_ok} passed, {len(ok) - n_ok} failed "
        f"of {len(ok)}; shown: the first {len(failed)} failed, then the first {len(passed)} passed",
        fontsize=BODY_PT,
    )
    return fig


METRIC_LABELS = {
    "accuracy": "accuracy",
    "sensitivity": "PNEUMONIA recall",
    "specificity": "NORMAL recall",
    "auc": "AUC",
}  # the names the tables use


def plot_comparison(
    rows: list[dict[str, Any]],
    metrics=("accuracy", "sensitivity", "specificity", "auc"),
    title: str = "test metrics with 95% intervals",
):
    """One panel per metric: each run's value with its 95% interval (Wilson for proportions of small samples,
    where the percentile bootstrap collapses; bootstrap otherwise), each axis zoomed to its values."""
    from ..core.stats import SMALL_N

    def interval(r, m, v):
        if r.get("n", SMALL_N) < SMALL_N and m in r.get("ci95_wilson", {}):
            return r["ci95_wilson"][m]
        return r.get("ci95", {}).get(m, [v, v])

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.45 * len(rows) + 1.4), sharey=True)
    names = [r["name"] for r in rows]
    y = np.arange(len(rows))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        vals = np.array([r[m] for r in rows], dtype=float)
        ci = np.array([interval(r, m, v) for r, v in zip(rows, vals)], dtype=float)
        # the interval drawn from its own ends, not as errors around the point: a percentile bootstrap interval of a
        # small split can exclude its own point estimate, which matplotlib's xerr refuses (negative error)
        ax.hlines(y, ci[:, 0], ci[:, 1], color="C0")
        ax.plot(np.stack([ci[:, 0], ci[:, 1]]), np.stack([y, y]), "|", color="C0", markersize=7)
        ax.plot(vals, y, "o", color="C0")
        # zoomed to the values and their whiskers (a fixed 0-1 axis hides 0.93 against 0.96)
        span = np.concatenate([vals, ci.ravel()])
        span = span[np.isfinite(span)]
        if len(span):
            lo, hi = float(span.min()), float(span.max())
            pad = max(0.01, 0.08 * (hi - lo))
            ax.set_xlim(max(-0.02, lo - pad), min(1.02, hi + pad))
        ax.set_title(METRIC_LABELS.get(m, m), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    np.atleast_1d(axes)[0].set_yticks(y, names, fontsize=8)
    np.atleast_1d(axes)[0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_shifts(image: np.ndarray, shifts=None, normalize: str | None = None):
    """One image under every stress-test shift (top row); with `normalize`, what the model then sees (bottom)."""
    from ..data.shifts import SHIFTS
    from ..data.transforms import Preprocessing

    shifts = shifts or SHIFTS
    x = torch.from_numpy(image).unsqueeze(0)
    views = [("clean", "", x)] + [(s.name, s.group, s(x)) for s in shifts]
    n_rows = 2 if normalize else 1
    fig, axes = plt.subplots(n_rows, len(views), figsize=(1.3 * len(views), 1.55 * n_rows + 0.2), squeeze=False)
    pre = Preprocessing(image.shape[-1], 1, normalize) if normalize else None
    for c, (name, group, v) in enumerate(views):
        axes[0, c].imshow(v.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=255)
        axes[0, c].set_title(f"{name}\n{group}", fontsize=7)
        if pre is not None:
            axes[1, c].imshow(pre(v).squeeze(0).numpy(), cmap="gray")
            axes[1, c].set_title(f"model input\n({normalize})", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_reliability(scores, ax=None, n_bins: int | None = None, title: str = ""):
    """Reliability diagram of P(PNEUMONIA): observed PNEUMONIA share against mean predicted P(PNEUMONIA) per
    equal-width bin, marker area by image count, the diagonal as perfect calibration, ECE in the title.
    `scores`: a Scores (or anything with .labels and .probs), a (labels, probs) pair, or a metrics dict
    holding "reliability" and "ece" (from compute_metrics)."""
    from ..analysis.evaluate import ECE_BINS, expected_calibration_error, reliability_curve

    if isinstance(scores, dict):
        curve, ece = scores["reliability"], scores.get("ece", float("nan"))
    else:
        labels, probs = (scores.labels, scores.probs) if hasattr(scores, "probs") else scores
        curve = reliability_curve(labels, probs, n_bins or ECE_BINS)
        ece = expected_calibration_error(labels, probs, n_bins or ECE_BINS)
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.8, 3.6))
    filled = [(p, y, c) for p, y, c in zip(curve["mean_p"], curve["frac_pos"], curve["count"]) if c]
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    if filled:
        p, y, c = map(np.array, zip(*filled))
        ax.plot(p, y, color="C0", lw=1)
        ax.scatter(p, y, s=20 + 200 * c / c.max(), color="C0", zorder=3, label="bins (area: images)")
    for e in curve["edges"][1:-1]:
        ax.axvline(e, color="0.92", lw=0.5, zorder=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean predicted P(PNEUMONIA)")
    ax.set_ylabel("observed PNEUMONIA share")
    ax.set_title(title or f"reliability, ECE {ece:.3f} ({curve['n_bins']} bins, n = {sum(curve['count'])})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.figure.tight_layout()
    return ax.figure
