"""Probabilities for a split, decision rules, metrics with bootstrap intervals, per-image score files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, roc_curve

from ..core.config import CLASSES
from ..core.io import atomic_write
from ..core.scores import COLUMNS as SCORE_COLUMNS
from ..core.stats import SMALL_N, auc_score, bootstrap_ci, weighted_metrics, wilson  # noqa: F401 (re-exported)
from ..data.dataset import Sample
from ..data.resources import Resources, as_resources
from ..data.shifts import SHIFTS
from ..models.inference import combine_of, probabilities, view_outputs


@dataclass
class Scores:
    """Per-image P(PNEUMONIA), with what is needed to recompute any metric."""

    samples: list[Sample]
    probs: np.ndarray
    features: np.ndarray | None = None  # N x D penultimate features, when the pass was asked for them (OOD)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=int)

    def subset(self, idx) -> "Scores":
        idx = np.asarray(idx, dtype=int)
        return Scores(
            [self.samples[i] for i in idx], self.probs[idx], None if self.features is None else self.features[idx]
        )

    def to_csv(self, path: str | Path, threshold: float, extra: dict[str, list] | None = None) -> Path:
        """One row per film; `extra`: more columns, one value per film (e.g. the OOD distance and flag)."""
        extra = extra or {}

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow([*SCORE_COLUMNS, *extra])
                for i, (s, p) in enumerate(zip(self.samples, self.probs)):
                    w.writerow(
                        [
                            str(s.path),
                            s.patient,
                            s.split,
                            CLASSES[s.label],
                            f"{p:.6f}",
                            CLASSES[int(p >= threshold)],
                            *(v[i] for v in extra.values()),
                        ]
                    )

        return atomic_write(path, write)


def predict_samples(
    model: torch.nn.Module,
    samples: list[Sample],
    preprocessing,
    *,
    device=None,
    batch_size: int = 64,
    tta: bool = False,
    resources: Resources | None = None,
    transform=None,
    features: bool = False,
) -> Scores:
    """P(PNEUMONIA) for every sample through models.inference.view_outputs, streamed in batches, each film through
    the network once (per view). `transform` (uint8 1xHxW -> same) changes each image before the preprocessing: the
    stress test's shifts. `features`: keep the penultimate features of the same pass (Scores.features, for OOD).
    `resources`: the context the films are decoded through (default: a new one)."""
    logits, feats = view_outputs(
        model,
        list(samples),
        preprocessing,
        device=device,
        batch_size=batch_size,
        tta=tta,
        resources=as_resources(resources),
        transform=transform,
        features=features,
    )
    return Scores(
        list(samples), probabilities(logits, combine=combine_of(model)), None if feats is None else feats.numpy()
    )


def platt(labels, probs, balanced: bool = False) -> tuple[float, float]:
    """(a, b) of the logistic calibration P = sigmoid(a * logit(p) + b) fitted on labelled scores (Platt scaling;
    with `balanced`, class-balanced weights: calibrated to equal priors, else to the scores' own class mix).
    Both classes needed."""
    from sklearn.linear_model import LogisticRegression

    p = np.clip(np.asarray(probs, dtype=float), 1e-6, 1 - 1e-6)
    fit = LogisticRegression(class_weight="balanced" if balanced else None, C=1e6, max_iter=1000).fit(
        np.log(p / (1 - p))[:, None], np.asarray(labels, dtype=int)
    )
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def balanced_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The 'balanced' rule: the P(PNEUMONIA) at which the validation-calibrated posterior, for a population with
    both classes equally likely, is 0.5.

    Why: a model trained with the balanced sampler is fitted to a 50/50 class mix, so its output estimates the
    posterior under equal priors; cutting that posterior at 0.5 is the Bayes decision for equal priors and equal
    error costs, i.e. it maximises balanced accuracy (the mean of the two recalls), the right aim when the new
    cohort's class mix is unknown. Label smoothing, test-time augmentation and early stopping leave the output
    miscalibrated, so the posterior is recalibrated on the validation films by a two-parameter logistic fit on
    logit(p) with class-balanced weights (Platt scaling at equal priors), and the cut is moved to where that fit
    crosses 0.5. Unlike Youden's rule, which picks one point of a step function set by the few validation films
    near it, the fit uses every validation film; unlike youden_shifted, it assumes nothing about how a new
    scanner differs.

    Args:
        labels: validation labels (0 NORMAL, 1 PNEUMONIA); both classes needed.
        probs: the model's P(PNEUMONIA) for them.

    Returns:
        The threshold on P(PNEUMONIA), in (0, 1).
    """
    if len(np.unique(np.asarray(labels))) < 2:
        raise ValueError("threshold rule 'balanced' needs both classes in the validation data")
    a, b = platt(labels, probs, balanced=True)
    if not a > 0:  # the outputs do not rank the validation films the right way round: no calibration to invert
        return 0.5
    return float(1 / (1 + np.exp(b / a)))


def choose_threshold(rule: str, labels: np.ndarray, probs: np.ndarray) -> float:
    """'fixed:T' -> T; 'youden' -> maximises sensitivity + specificity; 'balanced' -> balanced_threshold (the
    equal-prior Bayes cut of the validation-calibrated posterior); 'sensitivity:S' -> the highest threshold whose
    sensitivity (PNEUMONIA recall) is at least S. All but 'fixed' use the given (validation) data.
    'youden_shifted' needs the model as well: fit_threshold."""
    kind, _, arg = rule.partition(":")
    if kind == "fixed":
        return float(arg or 0.5)
    if kind == "balanced":
        return balanced_threshold(labels, probs)
    if kind == "youden_shifted":
        raise ValueError(
            "threshold rule 'youden_shifted' scores shifted copies of the validation films: call "
            "fit_threshold with the model, not choose_threshold with scores"
        )
    if len(np.unique(labels)) < 2:
        raise ValueError(f"threshold rule {rule!r} needs both classes in the validation data")
    fpr, tpr, thr = roc_curve(labels, probs)
    thr = np.clip(thr, 0.0, 1.0)  # sklearn's first threshold is +inf
    if kind == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    if kind == "sensitivity":
        target = float(arg)
        ok = np.nonzero(tpr >= target)[0]
        return float(thr[ok[0]])
    raise ValueError(f"unknown threshold rule {rule!r} (fixed:T | youden | youden_shifted | balanced | sensitivity:S)")


def fit_threshold(
    rule: str,
    model: torch.nn.Module,
    val: Scores,
    preprocessing,
    *,
    tta: bool = False,
    resources: Resources | None = None,
    device=None,
) -> float:
    """The decision threshold by `rule` on the validation scores `val` (of `model`). 'youden_shifted' applies Youden's
    rule to the validation films pooled with their copies under the stress test's 'seen' shifts (exposure curves,
    contrast, blur, field of view, rotation: the kinds of change the robust augmentation trains on), so the
    threshold separates the classes under scanner-like changes, not only on the clean split; the 'unseen' shifts
    stay out of it and remain the stress test's check."""
    if rule != "youden_shifted":
        return choose_threshold(rule, val.labels, val.probs)
    res = as_resources(resources)
    shifted = seen_shift_probs(model, val.samples, preprocessing, tta=tta, resources=res, device=device)
    return pooled_youden(val.labels, val.probs, shifted)


def seen_shift_probs(
    model: torch.nn.Module,
    samples,
    preprocessing,
    *,
    tta: bool = False,
    resources: Resources | None = None,
    device=None,
) -> list[np.ndarray]:
    """P(PNEUMONIA) of the samples under each of the stress test's 'seen' shifts, every copy made from one decoding
    of each film (the cache of RESOURCES, default: a new context for this call)."""
    resources = as_resources(resources)
    return [
        predict_samples(model, samples, preprocessing, device=device, tta=tta, resources=resources, transform=s).probs
        for s in SHIFTS
        if s.group == "seen"
    ]


def pooled_youden(labels: np.ndarray, probs: np.ndarray, shifted: list[np.ndarray]) -> float:
    """Youden's rule on the films pooled with their shifted copies (the 'youden_shifted' rule's cut)."""
    labels = np.asarray(labels)
    return choose_threshold(
        "youden", np.concatenate([labels] * (1 + len(shifted))), np.concatenate([np.asarray(probs), *shifted])
    )


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, both recalls, both precisions, balanced accuracy and AUC at one threshold (no intervals)."""
    pred = (p >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    nan = float("nan")
    m = {
        "accuracy": (tp + tn) / len(y) if len(y) else nan,
        "sensitivity": tp / (tp + fn) if tp + fn else nan,  # PNEUMONIA recall
        "specificity": tn / (tn + fp) if tn + fp else nan,  # NORMAL recall
        "precision": tp / (tp + fp) if tp + fp else nan,  # PNEUMONIA precision
        "npv": tn / (tn + fn) if tn + fn else nan,  # NORMAL precision
    }
    m["balanced_accuracy"] = (m["sensitivity"] + m["specificity"]) / 2
    m["auc"] = auc_score(y, p)
    return m


def wilson_ci(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, list[float]]:
    """Wilson score intervals (stats.wilson) for accuracy and the two recalls: unlike the percentile bootstrap
    they stay honest when a small sample is all right or all wrong (10/10 is not certainty)."""
    pred = (p >= threshold).astype(int)
    groups = {"accuracy": np.ones_like(y, bool), "sensitivity": y == 1, "specificity": y == 0}
    return {
        name: list(wilson(int((pred[sel] == y[sel]).sum()), int(sel.sum())))
        for name, sel in groups.items()
        if sel.any()
    }


ECE_BINS = 15


def _bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    # equal-width bins [k/n, (k+1)/n), the last one closed at 1.0
    return np.clip(np.floor(np.asarray(probs, dtype=float) * n_bins).astype(int), 0, n_bins - 1)


def reliability_curve(labels, probs, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """Per equal-width bin of P(PNEUMONIA): its edges, image count, mean predicted P(PNEUMONIA) and observed
    PNEUMONIA share (None for an empty bin). JSON-ready; the data behind a reliability diagram."""
    y, p = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
    idx = _bin_index(p, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    return {
        "n_bins": int(n_bins),
        "edges": [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)],
        "count": [int(c) for c in count],
        "mean_p": [float(s / c) if c else None for s, c in zip(sum_p, count)],
        "frac_pos": [float(s / c) if c else None for s, c in zip(sum_y, count)],
    }


def expected_calibration_error(labels, probs, n_bins: int = ECE_BINS) -> float:
    """ECE of P(PNEUMONIA) as the confidence of the positive class: over `n_bins` equal-width bins of
    P(PNEUMONIA), sum_b (n_b / n) * |PNEUMONIA share in b - mean P(PNEUMONIA) in b|.

    This is the binary (positive-class) calibration error; it is not the top-label ECE of Guo et al. 2017,
    which bins max(p, 1 - p) and can hide a miscalibration that is symmetric about 0.5. NaN for no images."""
    r = reliability_curve(labels, probs, n_bins)
    n = sum(r["count"])
    if not n:
        return float("nan")
    return float(sum(c / n * abs(fy - fp) for c, fy, fp in zip(r["count"], r["frac_pos"], r["mean_p"]) if c))


def _p_shares(p: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The shape of a score distribution: shares of films at a few levels of P(PNEUMONIA)."""
    if not len(p):
        return {
            k: float("nan") for k in ("p>=0.99", "extreme (p<0.05 or p>0.95)", "0.4<=p<=0.7", "predicted PNEUMONIA")
        }
    return {
        "p>=0.99": float((p >= 0.99).mean()),
        "extreme (p<0.05 or p>0.95)": float(((p < 0.05) | (p > 0.95)).mean()),
        "0.4<=p<=0.7": float(((p >= 0.4) & (p <= 0.7)).mean()),
        "predicted PNEUMONIA": float(pred.mean()),
    }


def compute_metrics(scores: Scores, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything a report needs, JSON-ready."""
    y, p = scores.labels, scores.probs
    pred = (p >= threshold).astype(int)
    # intervals resample patients when every image carries one (films of one patient are not independent)
    patients = [s.patient for s in scores.samples]
    by_patient = bool(patients) and all(patients)
    m: dict[str, Any] = point_metrics(y, p, threshold)
    m.update(
        threshold=float(threshold),
        n=int(len(y)),
        n_per_class={c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
        confusion_matrix=confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        report=classification_report(y, pred, labels=[0, 1], target_names=list(CLASSES), digits=2, zero_division=0),
        ci95=bootstrap_ci(y, p, threshold, n_boot, seed, groups=patients if by_patient else None) if n_boot else {},
        ci95_unit="patient" if by_patient else "image",
        n_patients=len(set(patients)),
        # the shape of the score distribution, for claims about confidence (the log's entries 2, 5 and 7)
        p_shares=_p_shares(p, pred),
        # per class: "over-confident" is about NORMAL films given P(PNEUMONIA) near 1, not PNEUMONIA films there
        p_shares_by_class={c: _p_shares(p[y == i], pred[y == i]) for i, c in enumerate(CLASSES)},
        n_by_class={c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
        ci95_wilson=wilson_ci(y, p, threshold),
        mean_p_pneumonia={
            c: float(p[y == i].mean()) if (y == i).any() else float("nan") for i, c in enumerate(CLASSES)
        },
        ece=expected_calibration_error(y, p),
        reliability=reliability_curve(y, p),
    )
    return m


def format_metrics(m: dict[str, Any]) -> str:
    """The classification report plus the headline numbers with 95% intervals."""
    lines = [m["report"].rstrip(), ""]
    for k in ("accuracy", "sensitivity", "specificity", "auc"):
        ci = m.get("ci95", {}).get(k)
        extra = f"  (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        label = {"sensitivity": "sensitivity (PNEUMONIA recall)", "specificity": "specificity (NORMAL recall)"}.get(
            k, k
        )
        wil = m.get("ci95_wilson", {}).get(k)
        if wil and m["n"] < SMALL_N:  # the percentile bootstrap collapses on small, all-right samples
            extra += f"  (Wilson {wil[0]:.3f}-{wil[1]:.3f})"
        lines.append(f"{label:<32} {m[k]:.3f}{extra}")
    if "ece" in m:  # metrics saved before calibration was reported have none
        n_bins = m.get("reliability", {}).get("n_bins", ECE_BINS)
        lines.append(f"{'calibration error (ECE)':<32} {m['ece']:.3f}  ({n_bins} equal-width bins of P(PNEUMONIA))")
    lines.append(f"{'threshold':<32} {m['threshold']:.3f}   n = {m['n']}")
    return "\n".join(lines)


def balanced_subset(samples: list[Sample], per_class: int, seed: int = 0) -> list[int]:
    """Indices of `per_class` images per class, seeded (the log's 5 NORMAL + 5 PNEUMONIA)."""
    rng = np.random.default_rng(seed)
    idx = []
    for label in range(len(CLASSES)):
        pool = [i for i, s in enumerate(samples) if s.label == label]
        idx += sorted(rng.choice(pool, size=min(per_class, len(pool)), replace=False).tolist())
    return idx
