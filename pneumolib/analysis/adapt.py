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

import torch
from torch import nn

from ..analysis.adapt_prior import (  # noqa: F401 (re-exported: every adaptation name in one place)
    BBSE_MIN_SEPARATION,
    MAX_KEPT_FEATURES,
    MIXTURE_P,
    PRIOR_AGREEMENT,
    PRIOR_RANGE,
    adjust_posterior,
    bbse_prior,
    bcts_em_prior,
    em_prior,
    mixture_check,
    prior_guard,
    threshold_for_calibrated_prior,
    threshold_for_prior,
    training_prior,
    validation_calibration,
)
from ..analysis.evaluate import Scores, predict_samples
from ..core.config import ADAPT_MODES
from ..data.dataset import Sample
from ..data.resources import Resources
from ..data.transforms import ByClass
from ..models.checkpoint import Predictor, save_checkpoint
from ..models.inference import sample_batches

log = logging.getLogger(__name__)

MODES = ADAPT_MODES  # the names, owned by core.config (the command line offers them without importing torch)
EARLY_BN_LAYERS = ("bn1", "layer1", "layer2")  # the stem's BatchNorm and the first two residual stages
ADAPTED_LABEL = "adapted: uses the cohort's images, not its labels"


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
    resources: Resources | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A copy of `model` whose BatchNorm running statistics in `layers` are re-estimated on the samples' images
    (decoded uint8 -> `transform`, e.g. a simulated shift -> `preprocessing`), in the samples' order, without
    gradients and without labels; other layers keep the training statistics. The new statistics are
    alpha * cohort + (1 - alpha) * training. The input model is left unchanged. The films are decoded through the
    cache of `resources` (default: a new context for this call)."""
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
    batches = sample_batches(
        samples,
        preprocessing,
        batch_size=_even_batches(len(samples), batch_size),
        resources=resources,
        transform=transform,
    )
    for x in batches:  # model inputs only: the labels are never read
        adapted(x.to(device))
    for name, bn in chosen:
        mean0, var0, momentum = saved[name]
        bn.running_mean.mul_(alpha).add_(mean0.to(device), alpha=1 - alpha)
        bn.running_var.mul_(alpha).add_(var0.to(device), alpha=1 - alpha)
        bn.momentum = momentum
        bn.eval()
    log.debug(
        "re-estimated %d BatchNorm layer(s) under %s on %d images (alpha %.2f)",
        len(chosen),
        layers,
        len(samples),
        alpha,
    )
    return adapted


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


@dataclass
class _CohortPasses:
    """The two things `adapt` does to a cohort's images, with its settings bound once: AdaBN on a copy of the
    predictor's model, and a scoring pass of a model over the cohort (both through the predictor's context, so one
    decode cache, and `transform`, so every mode sees the same inputs)."""

    predictor: Predictor
    samples: list[Sample]
    layers: tuple[str, ...] | None
    alpha: float
    transform: Callable | None
    batch_size: int

    def bn_adapted(self) -> tuple[nn.Module, dict[str, Any]]:
        """The AdaBN-adapted copy of the predictor's model, and the record of what was re-estimated."""
        p = self.predictor
        m = adapt_bn(
            p.model,
            self.samples,
            p.preprocessing,
            layers=self.layers,
            alpha=self.alpha,
            transform=self.transform,
            batch_size=self.batch_size,
            resources=p.resources,
            device=p.device,
        )
        info = {
            "layers": list(self.layers) if self.layers is not None else "all",
            "alpha": float(self.alpha),
            "bn_modules": len(bn_layers(m, self.layers)),
            "n_images": len(self.samples),
            "method": "AdaBN, cumulative average over the cohort's images in file order",
        }
        return m, info

    def scored(self, model: nn.Module) -> Scores:
        """MODEL's scores on the cohort, with the penultimate features of the same pass (the prior guard's mixture
        check reads them)."""
        p = self.predictor
        return predict_samples(
            model,
            self.samples,
            p.preprocessing,
            tta=p.config.tta,
            resources=p.resources,
            transform=self.transform,
            device=p.device,
            features=True,
        )


def _check_adabn_agreement(guard: dict[str, Any], plain_probs, bn_probs, train_prior: float) -> None:
    """The guard's last check, in place: EM on the plain and on the AdaBN-adapted outputs must agree within
    PRIOR_AGREEMENT, since re-normalising the scanner must not move a pure label shift's estimate."""
    plain_est, bn_est = em_prior(plain_probs, train_prior)[0], em_prior(bn_probs, train_prior)[0]
    guard.update(em_plain=plain_est, em_adabn=bn_est)
    if abs(plain_est - bn_est) > PRIOR_AGREEMENT:
        guard.update(
            ok=False,
            reason=(
                f"EM puts the PNEUMONIA share at {plain_est:.3f} on the model's outputs but at {bn_est:.3f} after "
                f"AdaBN (more than {PRIOR_AGREEMENT:.2f} apart): the cohort's images differ from training's"
            ),
        )


def _guarded_prior(
    passes: _CohortPasses, train_prior: float
) -> tuple[dict[str, Any], Scores, tuple[nn.Module, dict[str, Any], Scores] | None]:
    """The prior guard on the cohort: (guard record, the plain model's scores, and (AdaBN model, its record, its
    scores) when the guard's checks on the plain outputs passed, else None). The guard reads the plain model's
    outputs and features, because the validation calibration describes that model."""
    predictor = passes.predictor
    plain = passes.scored(predictor.model)
    ref = (predictor.extra or {}).get("ood") or {}
    guard = prior_guard(
        plain.probs,
        (predictor.extra or {}).get("val_calibration"),
        plain.features,
        ref.get("precision"),
        seed=predictor.config.seed,
    )
    bn_run = None
    if guard["ok"]:  # re-normalising the scanner must not move the estimate either
        bn_model, bn_check = passes.bn_adapted()
        bn_scores = passes.scored(bn_model)
        _check_adabn_agreement(guard, plain.probs, bn_scores.probs, train_prior)
        bn_run = bn_model, bn_check, bn_scores
    guard["assumption_holds"] = guard["ok"]
    return guard, plain, bn_run


def _fall_back_to_bn(guard: dict[str, Any], mode: str) -> str:
    """A failed guard: the threshold stays, the cohort gets AdaBN only; said in the record and the log."""
    guard["fell_back_to"] = "bn"
    guard["reason"] += "; the threshold is not moved: used --adapt bn instead"
    log.warning("--adapt %s: %s", mode, guard["reason"])
    return "bn"


def _prior_threshold(
    cal: dict[str, Any], guard: dict[str, Any], base: float, train_prior: float, source: str
) -> tuple[float, dict[str, Any]]:
    """The threshold the guard's checked estimate moves BASE to, and the record of the prior correction."""
    est = guard["em_bcts"]
    new_threshold = threshold_for_calibrated_prior(base, cal, est)
    info = {
        "train_prior": train_prior,
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
    return new_threshold, info


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
) -> Adaptation:
    """Adapt a checkpoint's predictor to a cohort's images (`mode`: bn | prior | both) and score the cohort with
    the result. `threshold` (default: the predictor's) is the level the prior correction keeps on the adjusted
    posterior; `transform` changes each decoded image first (a simulated shift, in tests and notebooks). The films
    are decoded through the predictor's context (Predictor.resources)."""
    if mode not in MODES:
        raise ValueError(f"unknown adaptation {mode!r} ({' | '.join(MODES)})")
    base = predictor.threshold if threshold is None else float(threshold)
    model, bn_info, prior_info, guard, scores = predictor.model, None, None, None, None
    pi, source = training_prior(predictor.config, predictor.extra, train_counts)
    passes = _CohortPasses(predictor, samples, layers, alpha, transform, batch_size)
    if mode in ("prior", "both"):
        guard, plain, bn_run = _guarded_prior(passes, pi)
        if not guard["ok"]:
            mode = _fall_back_to_bn(guard, mode)
        elif mode == "prior":
            model, scores = predictor.model, plain
        else:  # both: the AdaBN model, its threshold moved by the checked estimate
            model, bn_info, scores = bn_run
    if mode == "bn":
        model, bn_info = passes.bn_adapted()
        scores = passes.scored(model)
    new_threshold = base
    if mode in ("prior", "both"):  # the guard passed: its checked estimate moves the threshold
        new_threshold, prior_info = _prior_threshold(predictor.extra["val_calibration"], guard, base, pi, source)
    adapted = Predictor(
        model, predictor.config, new_threshold, predictor.preprocessing, predictor.device, resources=predictor.resources
    )
    adapted.extra = dict(predictor.extra)
    extra = {"cohort": cohort} if cohort else {}
    if guard is not None:
        extra["guard"] = guard
    return Adaptation(mode, adapted, scores, base, bn_info, prior_info, extra)
