"""Label-shift estimation for `adapt` (analysis.adapt): the EM prior correction and the guard that trusts it.

- the prior shift (Saerens, Latinne & Decaestecker 2002): a posterior under a new class prior, the threshold that
  makes the same decision, the EM estimate of a cohort's PNEUMONIA share, and the prior the outputs are
  calibrated to (`training_prior`);
- the guard (`prior_guard`): what the checkpoint keeps about its validation outputs (`validation_calibration`),
  BBSE, EM on the BCTS-calibrated outputs and the feature-mixture check, which must agree before `prior` moves a
  threshold (analysis.adapt's docstring gives the reasoning and the references).

Every name here is re-exported by analysis.adapt, where callers import them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..analysis.evaluate import platt
from ..analysis.site_shift import score_reference
from ..core.config import CLASSES, ExperimentConfig

PRIOR_RANGE = (0.01, 0.99)  # an EM estimate outside this is taken as a sign of uncalibrated outputs, not used
# `prior` checks its label-shift assumption: EM on the plain model's outputs and on the AdaBN-adapted model's must
# agree within this (absolute PNEUMONIA share); when re-normalising the scanner moves the estimate more, the
# cohort's images changed, not only its class mix, and `prior` falls back to `both`
PRIOR_AGREEMENT = 0.10
BBSE_MIN_SEPARATION = 0.3  # TPR - FPR on validation below this: inverting the confusion matrix amplifies noise


MAX_KEPT_FEATURES = 2000  # validation films whose features the checkpoint keeps for the mixture check
MIXTURE_P = 0.01  # the mixture check refuses when fewer than this share of label-shift resamples fit as badly


# --- prior shift (Saerens et al. 2002) --------------------------------------------------------------------
def adjust_posterior(probs, train_prior: float, new_prior: float) -> np.ndarray:
    """P(PNEUMONIA | x) under a new class prior: p * pi'/pi / (p * pi'/pi + (1 - p) (1 - pi')/(1 - pi))."""
    p = np.asarray(probs, dtype=float)
    a, b = new_prior / train_prior, (1 - new_prior) / (1 - train_prior)
    num = p * a
    return num / (num + (1 - p) * b)


def threshold_for_prior(threshold: float, train_prior: float, new_prior: float) -> float:
    """The threshold on the unadjusted p that equals cutting the prior-adjusted posterior at `threshold`
    (the adjustment is monotone in p, so the decisions are the same)."""
    t = float(threshold)
    if t <= 0.0 or t >= 1.0:
        return t
    a, b = new_prior / train_prior, (1 - new_prior) / (1 - train_prior)
    return t * b / (a * (1 - t) + t * b)


def em_prior(probs, train_prior: float = 0.5, *, tol: float = 1e-6, max_iter: int = 1000) -> tuple[float, int, bool]:
    """EM estimate of the cohort's P(PNEUMONIA) from outputs calibrated to `train_prior`:
    (estimate, iterations, converged). Starts at the training prior."""
    if not 0.0 < train_prior < 1.0:
        raise ValueError(f"the training prior must be strictly between 0 and 1, got {train_prior}")
    p = np.clip(np.asarray(probs, dtype=float), 1e-6, 1 - 1e-6)
    if not len(p):
        raise ValueError("the prior estimate needs at least one image")
    prior = float(train_prior)
    for i in range(1, max_iter + 1):
        new = float(adjust_posterior(p, train_prior, prior).mean())
        new = min(max(new, 1e-6), 1 - 1e-6)
        if abs(new - prior) < tol:
            return new, i, True
        prior = new
    return prior, max_iter, False


def _train_counts(extra: dict[str, Any] | None) -> list[int] | None:
    """Training counts per class from the checkpoint's extra['class_counts'] (train writes it), else None."""
    c = (extra or {}).get("class_counts")
    if isinstance(c, dict) and all(k in c for k in CLASSES):
        return [int(c[k]) for k in CLASSES]
    return None


def training_prior(
    config: ExperimentConfig, extra: dict[str, Any] | None = None, counts: list[int] | dict[str, int] | None = None
) -> tuple[float, str]:
    """The P(PNEUMONIA) the model's outputs are calibrated to, and how it was found: 0.5 for a balanced sampler
    or balanced class weights, else the training class share (from `counts` or the checkpoint's extra), else an
    assumed 0.5, said so."""
    if config.sampler == "balanced":
        return 0.5, "balanced sampler: training batches held both classes equally often"
    if config.class_weighting == "balanced":
        return 0.5, "class-balanced loss weights: both classes counted equally in training"
    if isinstance(counts, dict):
        counts = [int(counts[k]) for k in CLASSES] if all(k in counts for k in CLASSES) else None
    counts = counts or _train_counts(extra)
    if counts and sum(counts) and 0 < counts[1] < sum(counts):
        return counts[1] / sum(counts), f"training class share: {counts[1]} PNEUMONIA of {sum(counts)} images"
    return 0.5, "ASSUMED 0.5: the checkpoint records neither a balanced sampler nor its training class counts"


# --- the guard: can a prior estimate be trusted? ---------------------------------------------------------
def validation_calibration(labels, probs, threshold: float, features=None, seed: int = 0) -> dict[str, Any]:
    """What `prior` needs to know about the model's outputs on validation, kept in the checkpoint at training's end.

    Args:
        labels: validation labels.
        probs: the model's P(PNEUMONIA) on them.
        threshold: the checkpoint's decision threshold.
        features: their penultimate features (N x D), for the mixture check (float16, at most MAX_KEPT_FEATURES).
        seed: which films are kept when there are more.

    Returns:
        {"n", "val_prior" (PNEUMONIA share), "threshold", "tpr", "fpr" (at that threshold), "bcts": {"a", "b"}
        (P calibrated to the validation class mix = sigmoid(a * logit(p) + b)), "val_scores" (P by class,
        analysis.site_shift), "features" and "labels" (kept films), "method"}.
    """
    y = np.asarray(labels, dtype=int)
    pred = np.clip(np.asarray(probs, dtype=float), 1e-6, 1 - 1e-6) >= threshold
    pos, neg = max(int((y == 1).sum()), 1), max(int((y == 0).sum()), 1)
    a, b = platt(y, probs) if len(np.unique(y)) == 2 else (1.0, 0.0)  # BCTS: calibrated to the validation mix
    kept = {}
    if features is not None and len(y):
        idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:MAX_KEPT_FEATURES])
        kept = {
            "features": torch.as_tensor(np.asarray(features)[idx], dtype=torch.float16),
            "labels": torch.as_tensor(y[idx], dtype=torch.uint8),
        }
    return {
        "n": int(len(y)),
        "val_prior": float(y.mean()) if len(y) else float("nan"),
        "threshold": float(threshold),
        "tpr": float((pred & (y == 1)).sum() / pos),
        "fpr": float((pred & (y == 0)).sum() / neg),
        "bcts": {"a": a, "b": b},
        # validation's scores by class: the site guard's reference for "could this folder be validation films in
        # another class mix?" (analysis.site_shift)
        "val_scores": score_reference(y, probs),
        **kept,
        "method": "confusion matrix at the checkpoint threshold; bias-corrected temperature scaling "
        "(logistic fit on logit p) on the validation films",
    }


def threshold_for_calibrated_prior(threshold: float, cal: dict[str, Any], new_prior: float) -> float:
    """The threshold on the model's P(PNEUMONIA) that makes the same decision as the base threshold, at the same
    calibrated posterior, once the class mix is NEW_PRIOR instead of the validation's: BCTS maps p to a posterior
    at the validation mix, the prior correction (Saerens et al.) moves it to the new mix, and the result is mapped
    back to p."""
    t = float(threshold)
    if not 0.0 < t < 1.0:
        return t
    a, b = cal["bcts"]["a"], cal["bcts"]["b"]
    if not a > 0:
        return t
    level = 1 / (1 + np.exp(-(a * np.log(t / (1 - t)) + b)))  # the base decision's calibrated posterior
    pv = min(max(cal["val_prior"], 0.01), 0.99)
    moved = threshold_for_prior(level, pv, min(max(new_prior, 0.01), 0.99))
    return float(1 / (1 + np.exp(-((np.log(moved / (1 - moved)) - b) / a))))


def bbse_prior(probs, cal: dict[str, Any]) -> float:
    """BBSE: the cohort's PNEUMONIA share from its predicted share at the validation threshold, (q - FPR) / (TPR - FPR)
    (not clipped: a value outside [0, 1] says the estimate cannot be trusted)."""
    q = float((np.asarray(probs) >= cal["threshold"]).mean())
    sep = cal["tpr"] - cal["fpr"]
    return (q - cal["fpr"]) / sep if sep > 0 else float("nan")


def bcts_em_prior(probs, cal: dict[str, Any]) -> tuple[float, bool]:
    """EM on the outputs calibrated by the validation BCTS (their prior is then the validation class mix)."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-6, 1 - 1e-6)
    z = cal["bcts"]["a"] * np.log(p / (1 - p)) + cal["bcts"]["b"]
    q = 1 / (1 + np.exp(-z))
    est, _, ok = em_prior(q, min(max(cal["val_prior"], 0.01), 0.99))
    return est, ok


def _mixture_fit(feats: np.ndarray, mu_n: np.ndarray, mu_p: np.ndarray, precision: np.ndarray) -> tuple[float, float]:
    """(pi, r2): the PNEUMONIA share whose mixture of the class means best explains the films' mean feature (in the
    Mahalanobis metric), and the squared distance left over."""
    m = feats.mean(0)
    v, u = mu_p - mu_n, m - mu_n
    pv = precision @ v
    pi = float((u @ pv) / max(float(v @ pv), 1e-12))
    r = u - np.clip(pi, 0, 1) * v
    return pi, float(r @ precision @ r)


def mixture_check(
    feats: np.ndarray, cal: dict[str, Any], precision, n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Is the cohort's mean penultimate feature a mixture of the validation classes' means, as a pure label shift
    (the class-conditional images unchanged) implies? Scanner changes move the features off the line between the
    two class means; a class-mix change moves them along it. The leftover distance is compared with resamples of
    the validation films themselves (class means from one half, films drawn from the other at the cohort's
    estimated mix and size): `p` is the share of resamples that fit as badly.

    Args:
        feats: the cohort's penultimate features (N x D).
        cal: the checkpoint's validation calibration (with its kept features and labels).
        precision: the OOD reference's precision matrix (the metric).
        n_boot: resamples.
        seed: their generator's seed.

    Returns:
        {"pi_features", "r2", "p", "n_boot"}; p is None when the calibration kept no features.
    """
    if cal is None or "features" not in cal:
        return {"pi_features": None, "r2": None, "p": None, "n_boot": 0}
    vf = np.asarray(cal["features"], dtype=np.float64)
    vy = np.asarray(cal["labels"], dtype=int)
    P = np.asarray(precision, dtype=np.float64)
    mu_n, mu_p = vf[vy == 0].mean(0), vf[vy == 1].mean(0)
    pi, r2 = _mixture_fit(np.asarray(feats, dtype=np.float64), mu_n, mu_p, P)
    rng = np.random.default_rng(seed)
    n, mix = len(feats), float(np.clip(pi, 0.02, 0.98))
    null = []
    for _ in range(n_boot):
        half = rng.random(len(vy)) < 0.5
        a0, a1 = np.flatnonzero(half & (vy == 0)), np.flatnonzero(half & (vy == 1))
        b0, b1 = np.flatnonzero(~half & (vy == 0)), np.flatnonzero(~half & (vy == 1))
        if min(len(a0), len(a1), len(b0), len(b1)) == 0:
            continue
        k = rng.binomial(n, mix)
        draw = np.concatenate([rng.choice(b1, k), rng.choice(b0, n - k)])
        null.append(_mixture_fit(vf[draw], vf[a0].mean(0), vf[a1].mean(0), P)[1])
    p = float((np.asarray(null) >= r2).mean()) if null else None
    return {"pi_features": pi, "r2": r2, "p": p, "n_boot": len(null)}


def prior_guard(probs, cal: dict[str, Any] | None, feats=None, precision=None, seed: int = 0) -> dict[str, Any]:
    """Whether a prior estimate from these cohort outputs can be trusted (analysis.adapt's docstring's checks but AdaBN's):
    {"ok", "reason" (when not), "bbse", "em_bcts", "mixture", ...}."""
    if not cal:
        return {
            "ok": False,
            "reason": "this checkpoint carries no validation calibration (trained before pneumolib kept "
            "one), so its prior estimate cannot be checked",
        }
    sep = cal["tpr"] - cal["fpr"]
    bbse = bbse_prior(probs, cal)
    em, converged = bcts_em_prior(probs, cal)
    g = {"bbse": bbse, "em_bcts": em, "em_converged": converged, "separation": sep, "tolerance": PRIOR_AGREEMENT}
    if not sep >= BBSE_MIN_SEPARATION:
        reason = (
            f"the validation TPR - FPR is {sep:.2f} (< {BBSE_MIN_SEPARATION}): the confusion matrix cannot be "
            "inverted reliably"
        )
    elif not -0.05 <= bbse <= 1.05:
        reason = (
            f"BBSE puts the PNEUMONIA share at {bbse:.3f}, outside [0, 1]: the cohort's predictions do not "
            "follow the validation confusion matrix (its images changed, not only its class mix)"
        )
    elif not (converged and PRIOR_RANGE[0] <= em <= PRIOR_RANGE[1]):
        reason = f"EM on the calibrated outputs gives {em:.3f} ({'converged' if converged else 'not converged'})"
    elif abs(bbse - em) > PRIOR_AGREEMENT:
        reason = (
            f"BBSE puts the PNEUMONIA share at {bbse:.3f} and EM on the calibrated outputs at {em:.3f}, more than "
            f"{PRIOR_AGREEMENT:.2f} apart: the outputs are not calibrated for this cohort (a covariate shift)"
        )
    else:
        mix = (
            mixture_check(feats, cal, precision, seed=seed)
            if feats is not None and precision is not None
            else {"p": None}
        )
        g["mixture"] = mix
        if mix["p"] is None:
            reason = (
                "the checkpoint keeps no validation features (or no OOD reference), so the label-shift assumption "
                "cannot be checked on the images"
            )
        elif mix["p"] < MIXTURE_P:
            reason = (
                f"the cohort's mean feature is not a mixture of the validation classes' (leftover {mix['r2']:.2f}; "
                f"{mix['p']:.1%} of {mix['n_boot']} label-shift resamples fit as badly): its images changed, not "
                "only its class mix"
            )
        else:
            return {**g, "ok": True}
    return {**g, "ok": False, "reason": reason}
