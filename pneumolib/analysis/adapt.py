"""Label-free adaptation to a new cohort: early-layer BatchNorm re-estimation (AdaBN) and EM prior-shift correction.

Both use the cohort's images only, never its labels, so a hospital can run them on films it has not labelled:

- `bn`: AdaBN (Li et al. 2016): the BatchNorm running statistics are re-estimated on the cohort's images, but only
  in the early blocks (bn1, layer1, layer2 by default). Plain re-estimation of every layer fails when the cohort's
  class mix differs from training, because the later layers' statistics depend on the class mix (Vianna et al.
  2024, "Channel-Selective Normalization for Label-Shift Robust Test-Time Adaptation"); the early layers mostly
  see the scanner (exposure, contrast, sharpness). `alpha` interpolates with the training statistics.
- `prior`: the cohort's PNEUMONIA share is estimated from the model's outputs by EM (Saerens, Latinne &
  Decaestecker 2002, "Adjusting the outputs of a classifier to new a priori probabilities"), and the decision
  threshold moves so that the prior-adjusted posterior is cut at the checkpoint's own threshold.
- `both`: bn, then prior on the adapted model's outputs.

`prior` moves the threshold only when its estimate can be trusted (`prior_guard`), else it falls back to `bn` and
says why in the record (`guard`) and the log:
- the checkpoint must carry its validation calibration (`validation_calibration`, written at the end of training:
  the confusion matrix at its threshold and a bias-corrected temperature scaling, BCTS, fitted on validation);
- black-box shift estimation (BBSE, Lipton et al. 2018: the cohort's predicted PNEUMONIA share read through the
  validation confusion matrix) must be defined (the model separates the validation classes well enough to invert
  it) and inside [0, 1];
- EM on the BCTS-calibrated outputs (Alexandari et al. 2020) must agree with BBSE within PRIOR_AGREEMENT: the two
  read different things (hard decisions vs calibrated probabilities), so when the cohort's images changed and not
  only its class mix, they part ways, where two EM runs sharing one miscalibration did not;
- and EM on the plain and on the AdaBN-adapted outputs must agree within PRIOR_AGREEMENT (re-normalising the
  scanner must not move the estimate).

An EM estimate that runs to 0 or 1 (outputs that do not behave as calibrated posteriors, e.g. all squeezed near
0.5) leaves the threshold unchanged, with a warning in the record.

A prior correction assumes the images of each class look as they did in training (a pure label shift). Under a
covariate shift, where one class looks like the other to the model, it can move the threshold the wrong way.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..analysis.evaluate import Scores, platt, predict_samples
from ..core.config import CLASSES, ExperimentConfig
from ..data.dataset import DecodedCache, Sample, XRayDataset, ensure_cache
from ..data.transforms import ByClass
from ..models.checkpoint import Predictor, save_checkpoint

log = logging.getLogger(__name__)

MODES = ("bn", "prior", "both")
EARLY_BN_LAYERS = ("bn1", "layer1", "layer2")  # the stem's BatchNorm and the first two residual stages
ADAPTED_LABEL = "adapted: uses the cohort's images, not its labels"
PRIOR_RANGE = (0.01, 0.99)  # an EM estimate outside this is taken as a sign of uncalibrated outputs, not used
# `prior` checks its label-shift assumption: EM on the plain model's outputs and on the AdaBN-adapted model's must
# agree within this (absolute PNEUMONIA share); when re-normalising the scanner moves the estimate more, the
# cohort's images changed, not only its class mix, and `prior` falls back to `both`
PRIOR_AGREEMENT = 0.10
BBSE_MIN_SEPARATION = 0.3  # TPR - FPR on validation below this: inverting the confusion matrix amplifies noise


MAX_KEPT_FEATURES = 2000  # validation films whose features the checkpoint keeps for the mixture check
MIXTURE_P = 0.01  # the mixture check refuses when fewer than this share of label-shift resamples fit as badly


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
        (P calibrated to the validation class mix = sigmoid(a * logit(p) + b)), "features" and "labels" (kept
        films), "method"}.
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
    """Whether a prior estimate from these cohort outputs can be trusted (the module docstring's checks but AdaBN's):
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


# --- BatchNorm re-estimation (AdaBN) ----------------------------------------------------------------------
def bn_layers(model: nn.Module, layers: tuple[str, ...] | None = EARLY_BN_LAYERS) -> list[tuple[str, nn.Module]]:
    """(name, module) of the BatchNorm layers under the named top-level children (all of them for None); for an
    ensemble, under those children of every member."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            parts = name.split(".")
            top = parts[2] if parts[0] == "members" and len(parts) > 2 else parts[0]  # an ensemble member's stage
            if layers is None or top in layers:
                out.append((name, m))
    return out


def _even_batches(n: int, batch_size: int) -> int:
    # the cumulative average (momentum=None) weights every batch equally: near-equal batches weight images equally
    return math.ceil(n / math.ceil(n / batch_size))


@torch.no_grad()
def adapt_bn(
    model: nn.Module,
    samples: list[Sample],
    preprocessing,
    *,
    layers: tuple[str, ...] | None = EARLY_BN_LAYERS,
    alpha: float = 1.0,
    transform: Callable | None = None,
    batch_size: int = 64,
    cache: DecodedCache | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A copy of `model` whose BatchNorm running statistics in `layers` are re-estimated on the samples' images
    (decoded uint8 -> `transform`, e.g. a simulated shift -> `preprocessing`), in the samples' order, without
    gradients and without labels; other layers keep the training statistics. The new statistics are
    alpha * cohort + (1 - alpha) * training. The input model is left unchanged."""
    if not samples:
        raise ValueError("BatchNorm adaptation needs at least one image")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if isinstance(transform, ByClass):
        raise ValueError("a by-class transform would use the labels; adaptation takes a label-free transform")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    adapted = copy.deepcopy(model).to(device).eval()
    chosen = bn_layers(adapted, layers)
    if not chosen:
        raise ValueError(f"no BatchNorm layers under {layers} in this model")
    saved = {name: (bn.running_mean.clone(), bn.running_var.clone(), bn.momentum) for name, bn in chosen}
    for _, bn in chosen:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches, not an exponential one
        bn.train()  # only these layers; everything else stays in eval mode
    ds = XRayDataset(samples, preprocessing, transform, ensure_cache(cache))
    loader = torch.utils.data.DataLoader(ds, batch_size=_even_batches(len(ds), batch_size), shuffle=False)
    for x, _, _ in loader:  # the labels the dataset yields are not used
        adapted(x.to(device))
    for name, bn in chosen:
        mean0, var0, momentum = saved[name]
        bn.running_mean.mul_(alpha).add_(mean0.to(device), alpha=1 - alpha)
        bn.running_var.mul_(alpha).add_(var0.to(device), alpha=1 - alpha)
        bn.momentum = momentum
        bn.eval()
    log.debug(
        "re-estimated %d BatchNorm layer(s) under %s on %d images (alpha %.2f)", len(chosen), layers, len(ds), alpha
    )
    return adapted


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


# --- both together ----------------------------------------------------------------------------------------
@dataclass
class Adaptation:
    """An adapted model and threshold, the adapted model's scores on the cohort, and what was done."""

    mode: str
    predictor: Predictor
    scores: Scores
    base_threshold: float
    bn: dict[str, Any] | None = None
    prior: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.predictor.threshold

    @property
    def model(self) -> nn.Module:
        return self.predictor.model

    def record(self) -> dict[str, Any]:
        """JSON-ready: what the adaptation did and what it estimated."""
        return {
            "mode": self.mode,
            "label": ADAPTED_LABEL,
            "base_threshold": self.base_threshold,
            "threshold": self.threshold,
            "n_images": len(self.scores.samples),
            "bn": self.bn,
            "prior": self.prior,
            **self.extra,
        }

    def save(self, path: str | Path) -> Path:
        """The adapted model as a new checkpoint: same config, the adapted threshold, the adaptation recorded in
        its extra (under "adaptation")."""
        extra = {**self.predictor.extra, "adaptation": self.record()}
        return save_checkpoint(path, self.predictor.model, self.predictor.config, self.threshold, extra)


def adapt(
    predictor: Predictor,
    samples: list[Sample],
    mode: str,
    *,
    threshold: float | None = None,
    layers: tuple[str, ...] | None = EARLY_BN_LAYERS,
    alpha: float = 1.0,
    transform: Callable | None = None,
    train_counts: list[int] | dict[str, int] | None = None,
    cohort: str | None = None,
    batch_size: int = 64,
    cache: DecodedCache | None = None,
) -> Adaptation:
    """Adapt a checkpoint's predictor to a cohort's images (`mode`: bn | prior | both) and score the cohort with
    the result. `threshold` (default: the predictor's) is the level the prior correction keeps on the adjusted
    posterior; `transform` changes each decoded image first (a simulated shift, in tests and notebooks)."""
    if mode not in MODES:
        raise ValueError(f"unknown adaptation {mode!r} ({' | '.join(MODES)})")
    cache = predictor.cache if cache is None else cache
    base = predictor.threshold if threshold is None else float(threshold)
    model, bn_info, prior_info, guard, scores = predictor.model, None, None, None, None
    pi, source = training_prior(predictor.config, predictor.extra, train_counts)

    def bn_adapted():
        m = adapt_bn(
            predictor.model,
            samples,
            predictor.preprocessing,
            layers=layers,
            alpha=alpha,
            transform=transform,
            batch_size=batch_size,
            cache=cache,
            device=predictor.device,
        )
        info = {
            "layers": list(layers) if layers is not None else "all",
            "alpha": float(alpha),
            "bn_modules": len(bn_layers(m, layers)),
            "n_images": len(samples),
            "method": "AdaBN, cumulative average over the cohort's images in file order",
        }
        return m, info

    def scored(m):  # the features of the same pass feed the prior guard's mixture check
        return predict_samples(
            m,
            samples,
            predictor.preprocessing,
            tta=predictor.config.tta,
            cache=cache,
            transform=transform,
            device=predictor.device,
            features=True,
        )

    if mode in ("prior", "both"):
        # the guard reads the plain model's outputs and features: the validation calibration describes that model
        plain = scored(predictor.model)
        ref = (predictor.extra or {}).get("ood") or {}
        guard = prior_guard(
            plain.probs,
            (predictor.extra or {}).get("val_calibration"),
            plain.features,
            ref.get("precision"),
            seed=predictor.config.seed,
        )
        if guard["ok"]:  # re-normalising the scanner must not move the estimate either
            bn_model, bn_check = bn_adapted()
            bn_scores = scored(bn_model)
            plain_est, bn_est = em_prior(plain.probs, pi)[0], em_prior(bn_scores.probs, pi)[0]
            guard.update(em_plain=plain_est, em_adabn=bn_est)
            if abs(plain_est - bn_est) > PRIOR_AGREEMENT:
                guard.update(
                    ok=False,
                    reason=(
                        f"EM puts the PNEUMONIA share at {plain_est:.3f} on the model's outputs but at {bn_est:.3f} after "
                        f"AdaBN (more than {PRIOR_AGREEMENT:.2f} apart): the cohort's images differ from training's"
                    ),
                )
        guard["assumption_holds"] = guard["ok"]
        if not guard["ok"]:
            guard["fell_back_to"] = "bn"
            guard["reason"] += "; the threshold is not moved: used --adapt bn instead"
            log.warning("--adapt %s: %s", mode, guard["reason"])
            mode = "bn"
        elif mode == "prior":
            model, scores = predictor.model, plain
        else:  # both: the AdaBN model, its threshold moved by the checked estimate
            model, bn_info, scores = bn_model, bn_check, bn_scores
    if mode == "bn":
        model, bn_info = bn_adapted()
        scores = scored(model)
    new_threshold = base
    if mode in ("prior", "both"):  # the guard passed: its checked estimate moves the threshold
        cal = predictor.extra["val_calibration"]
        est = guard["em_bcts"]
        new_threshold = threshold_for_calibrated_prior(base, cal, est)
        prior_info = {
            "train_prior": pi,
            "train_prior_source": source,
            "estimated_prior": est,
            "estimated_normal_share": 1 - est,
            "bbse": guard["bbse"],
            "val_prior": cal["val_prior"],
            "base_threshold": base,
            "threshold": new_threshold,
            "method": "EM on the BCTS-calibrated outputs (Alexandari et al. 2020), checked against BBSE "
            "(Lipton et al. 2018); threshold moved so that the decision is made at the same "
            "calibrated posterior under the estimated class mix",
        }
    adapted = Predictor(model, predictor.config, new_threshold, predictor.preprocessing, predictor.device)
    adapted.extra = dict(predictor.extra)
    extra = {"cohort": cohort} if cohort else {}
    if guard is not None:
        extra["guard"] = guard
    return Adaptation(mode, adapted, scores, base, bn_info, prior_info, extra)
