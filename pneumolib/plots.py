"""The figures the notebooks show: augmentations, training curves, confusion matrix, scores, Grad-CAM grids."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .config import CLASSES, ExperimentConfig
from .data import DEFAULT_CACHE, Sample
from .transforms import build


def show_transforms(config: ExperimentConfig, samples: list[Sample], n_per_class: int = 1, n_draws: int = 3,
                    seed: int = 0, cache=None):
    """Each row: one image as decoded, then `n_draws` random draws of its class's training transform."""
    cache = cache or DEFAULT_CACHE
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    rows = []
    for label, cls in enumerate(CLASSES):
        pool = [s for s in samples if s.label == label]
        rows += [(cls, pool[i]) for i in rng.choice(len(pool), size=min(n_per_class, len(pool)), replace=False)]
    fig, axes = plt.subplots(len(rows), n_draws + 1, figsize=(2.1 * (n_draws + 1), 2.2 * len(rows)), squeeze=False)
    for r, (cls, s) in enumerate(rows):
        spec = config.transform_for(cls)
        t = build(spec)
        img = torch.from_numpy(cache.get(s.path, config.image_size)).unsqueeze(0)
        views = [img] + [t(img) for _ in range(n_draws)]
        for c, v in enumerate(views):
            ax = axes[r, c]
            ax.imshow(v.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]); ax.set_yticks([])
            ax.set_title(f"{cls}\nas decoded" if c == 0 else f"{spec}\ndraw {c}", fontsize=7)
    fig.suptitle(f"{config.name}: training transforms by class", fontsize=10)
    fig.tight_layout()
    return fig


def show_central_focus(image: np.ndarray, focus=None):
    """An image before and after CentralFocus, with the sharpness mask between them."""
    from .transforms import CentralFocus

    focus = focus or CentralFocus()
    t = torch.from_numpy(image).unsqueeze(0)
    out = focus(t).squeeze(0).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    for ax, im, title, kw in zip(axes, [image, focus.mask(*image.shape).numpy(), out],
                                 ["original", "sharp region (1 = untouched)", repr(focus)],
                                 [dict(cmap="gray", vmin=0, vmax=255), dict(cmap="viridis", vmin=0, vmax=1),
                                  dict(cmap="gray", vmin=0, vmax=255)]):
        ax.imshow(im, **kw); ax.set_title(title, fontsize=8); ax.axis("off")
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
    for a in ax:
        if best_epoch:
            a.axvline(best_epoch, color="grey", ls=":", label=f"best epoch {best_epoch}")
        a.set_xlabel("epoch"); a.legend(fontsize=7)
    ax[1].set_ylim(0, 1.02)
    fig.tight_layout()
    return fig


def plot_confusion(metrics: dict[str, Any], title: str = "", ax=None):
    cm = np.array(metrics["confusion_matrix"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.6, 3.0))
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=CLASSES, yticklabels=CLASSES, ax=ax)
    ax.set_xlabel(f"predicted (PNEUMONIA if p >= {metrics['threshold']:.2f})"); ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {metrics['accuracy']:.3f}, n = {metrics['n']}", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def plot_scores(scores, threshold: float, title: str = "", ax=None):
    """P(PNEUMONIA) per true class, with the decision threshold."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.0))
    data = {"p": scores.probs, "true class": [CLASSES[s.label] for s in scores.samples]}
    sns.histplot(data, x="p", hue="true class", hue_order=list(CLASSES), bins=np.linspace(0, 1, 26),
                 stat="probability", common_norm=False, element="step", ax=ax)
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" threshold {threshold:.2f}", fontsize=7, va="top")
    ax.set_xlabel("P(PNEUMONIA)")
    ax.set_title(title or "predicted probability by true class", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def plot_cam_grid(expl, n_per_class: int = 4, show_mask: bool = True, title: str = ""):
    """Rows: NORMAL then PNEUMONIA; each tile: heatmap over the X-ray, lung outline, truth, prediction, p, focus."""
    picks = []
    for label in range(len(CLASSES)):
        picks.append([i for i, s in enumerate(expl.samples) if s.label == label][:n_per_class])
    picks = [p for p in picks if p] or [[]]  # no empty row for a class that is not there
    n_cols = max(1, max(len(p) for p in picks))
    fig, axes = plt.subplots(len(picks), n_cols, figsize=(2.0 * n_cols, 2.4 * len(picks)), squeeze=False)
    for r, idx in enumerate(picks):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(idx):
                continue
            i = idx[c]
            ax.imshow(expl.images[i], cmap="gray", vmin=0, vmax=255)
            ax.imshow(expl.cams[i], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            if show_mask:
                ax.contour(expl.masks[i], levels=[0.5], colors="white", linewidths=0.7)
            p = expl.probs[i]
            pred = CLASSES[int(p >= expl.threshold)]
            ok = "ok" if pred == CLASSES[expl.samples[i].label] else "WRONG"
            ax.set_title(f"true {CLASSES[expl.samples[i].label]}\npred {pred} ({ok}) p={p:.2f}\n"
                         f"lung focus {expl.focus[i]:.2f}", fontsize=7)
    fig.suptitle(title or f"{expl.method} (target: {expl.target}); white = lung fields ({expl.mask_methods[0] if expl.mask_methods else ''})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_comparison(rows: list[dict[str, Any]], metrics=("accuracy", "sensitivity", "specificity", "auc")):
    """One panel per metric: each run's value with its 95% interval (Wilson for proportions of small samples,
    where the percentile bootstrap collapses; bootstrap otherwise)."""
    from .evaluate import SMALL_N

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
        ax.errorbar(vals, y, xerr=[vals - ci[:, 0], ci[:, 1] - vals], fmt="o", capsize=3)
        ax.set_title(m, fontsize=9); ax.set_xlim(-0.02, 1.02); ax.grid(axis="x", alpha=0.3)
    np.atleast_1d(axes)[0].set_yticks(y, names, fontsize=8)
    np.atleast_1d(axes)[0].invert_yaxis()
    fig.tight_layout()
    return fig


def show_shifts(image: np.ndarray, shifts=None, normalize: str | None = None):
    """One image under every stress-test shift (top row); with `normalize`, what the model then sees (bottom)."""
    from .stress import SHIFTS
    from .transforms import Preprocessing

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
        ax.set_xticks([]); ax.set_yticks([])
    fig.tight_layout()
    return fig
