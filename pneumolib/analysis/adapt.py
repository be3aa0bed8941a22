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

`prior` guards its own assumption: it also runs EM on the AdaBN-adapted model's outputs, and when the two estimates
differ by more than PRIOR_AGREEMENT (the cohort's images changed, not only its class mix) it falls back to `both`
and says why in the record (`guard`) and the log.

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

from ..models.checkpoint import Predictor, save_checkpoint
from ..core.config import CLASSES, ExperimentConfig
from ..data.dataset import ensure_cache, DecodedCache, Sample, XRayDataset
from ..analysis.evaluate import Scores, predict_samples
from ..data.transforms import ByClass

log = logging.getLogger(__name__)

MODES = ("bn", "prior", "both")
EARLY_BN_LAYERS = ("bn1", "layer1", "layer2")  # the stem's BatchNorm and the first two residual stages
ADAPTED_LABEL = "adapted: uses the cohort's images, not its labels"
PRIOR_RANGE = (0.01, 0.99)  # an EM estimate outside this is taken as a sign of uncalibrated outputs, not used
# `prior` checks its label-shift assumption: EM on the plain model's outputs and on the AdaBN-adapted model's must
# agree within this (absolute PNEUMONIA share); when re-normalising the scanner moves the estimate more, the
# cohort's images changed, not only its class mix, and `prior` falls back to `both`
PRIOR_AGREEMENT = 0.10


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
def adapt_bn(model: nn.Module, samples: list[Sample], preprocessing, *,
             layers: tuple[str, ...] | None = EARLY_BN_LAYERS, alpha: float = 1.0,
             transform: Callable | None = None, batch_size: int = 64, cache: DecodedCache | None = None,
             device: torch.device | str | None = None) -> nn.Module:
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
    log.debug("re-estimated %d BatchNorm layer(s) under %s on %d images (alpha %.2f)", len(chosen), layers,
             len(ds), alpha)
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


def training_prior(config: ExperimentConfig, extra: dict[str, Any] | None = None,
                   counts: list[int] | dict[str, int] | None = None) -> tuple[float, str]:
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
        return {"mode": self.mode, "label": ADAPTED_LABEL, "base_threshold": self.base_threshold,
                "threshold": self.threshold, "n_images": len(self.scores.samples), "bn": self.bn,
                "prior": self.prior, **self.extra}

    def save(self, path: str | Path) -> Path:
        """The adapted model as a new checkpoint: same config, the adapted threshold, the adaptation recorded in
        its extra (under "adaptation")."""
        extra = {**self.predictor.extra, "adaptation": self.record()}
        return save_checkpoint(path, self.predictor.model, self.predictor.config, self.threshold, extra)


def adapt(predictor: Predictor, samples: list[Sample], mode: str, *, threshold: float | None = None,
          layers: tuple[str, ...] | None = EARLY_BN_LAYERS, alpha: float = 1.0, transform: Callable | None = None,
          train_counts: list[int] | dict[str, int] | None = None, cohort: str | None = None,
          batch_size: int = 64, cache: DecodedCache | None = None) -> Adaptation:
    """Adapt a checkpoint's predictor to a cohort's images (`mode`: bn | prior | both) and score the cohort with
    the result. `threshold` (default: the predictor's) is the level the prior correction keeps on the adjusted
    posterior; `transform` changes each decoded image first (a simulated shift, in tests and notebooks)."""
    if mode not in MODES:
        raise ValueError(f"unknown adaptation {mode!r} ({' | '.join(MODES)})")
    cache = predictor.cache if cache is None else cache
    base = predictor.threshold if threshold is None else float(threshold)
    model, bn_info, prior_info, guard = predictor.model, None, None, None
    pi, source = training_prior(predictor.config, predictor.extra, train_counts)

    def bn_adapted():
        m = adapt_bn(predictor.model, samples, predictor.preprocessing, layers=layers, alpha=alpha,
                     transform=transform, batch_size=batch_size, cache=cache, device=predictor.device)
        info = {"layers": list(layers) if layers is not None else "all", "alpha": float(alpha),
                "bn_modules": len(bn_layers(m, layers)), "n_images": len(samples),
                "method": "AdaBN, cumulative average over the cohort's images in file order"}
        return m, info

    def scored(m):
        return predict_samples(m, samples, predictor.preprocessing, tta=predictor.config.tta, cache=cache,
                               transform=transform, device=predictor.device)

    if mode in ("bn", "both"):
        model, bn_info = bn_adapted()
    scores = scored(model)
    if mode == "prior":  # the label-shift assumption, checked: does re-normalising the scanner move the estimate?
        plain_est = em_prior(scores.probs, pi)[0]
        bn_model, bn_check = bn_adapted()
        bn_scores = scored(bn_model)
        bn_est = em_prior(bn_scores.probs, pi)[0]
        guard = {"em_plain": plain_est, "em_adabn": bn_est, "tolerance": PRIOR_AGREEMENT,
                 "assumption_holds": bool(abs(plain_est - bn_est) <= PRIOR_AGREEMENT)}
        if not guard["assumption_holds"]:
            guard["fell_back_to"] = "both"
            guard["reason"] = (f"EM puts the PNEUMONIA share at {plain_est:.3f} on the model's outputs but at "
                               f"{bn_est:.3f} after AdaBN (more than {PRIOR_AGREEMENT:.2f} apart): the cohort's images "
                               "differ from training's, not only its class mix, so a prior correction alone can move "
                               "the threshold the wrong way; used --adapt both instead")
            log.warning("--adapt prior: %s", guard["reason"])
            mode, model, bn_info, scores = "both", bn_model, bn_check, bn_scores
    new_threshold = base
    if mode in ("prior", "both"):
        est, iters, ok = em_prior(scores.probs, pi)
        usable = ok and PRIOR_RANGE[0] <= est <= PRIOR_RANGE[1]
        new_threshold = threshold_for_prior(base, pi, est) if usable else base
        prior_info = {"train_prior": pi, "train_prior_source": source, "estimated_prior": est,
                      "estimated_normal_share": 1 - est, "em_iterations": iters, "converged": ok,
                      "base_threshold": base, "threshold": new_threshold,
                      "method": "EM (Saerens et al. 2002); threshold moved so the prior-adjusted posterior is cut "
                                "at the base threshold"}
        if not usable:
            # EM runs to 0 or 1 when the outputs are not calibrated posteriors (e.g. all squeezed near 0.5):
            # moving the threshold there would call every film one class
            prior_info["warning"] = (f"EM estimate {est:.3f} ({'converged' if ok else 'not converged'}) is outside "
                                     f"{PRIOR_RANGE[0]}-{PRIOR_RANGE[1]}: the model's outputs do not behave as "
                                     "calibrated posteriors; threshold left unchanged")
            log.warning("%s", prior_info["warning"])
    adapted = Predictor(model, predictor.config, new_threshold, predictor.preprocessing, predictor.device)
    adapted.extra = dict(predictor.extra)
    extra = {"cohort": cohort} if cohort else {}
    if guard is not None:
        extra["guard"] = guard
    return Adaptation(mode, adapted, scores, base, bn_info, prior_info, extra)
