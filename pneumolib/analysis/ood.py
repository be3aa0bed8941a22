"""Out-of-distribution score: how unlike the training films a film looks to the model, so unfamiliar films are flagged.

The score is the Mahalanobis distance of a film's penultimate features (the input of the final linear layer) from
the training films' (Lee et al. 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples"), with
a Ledoit-Wolf covariance; the flag threshold is the 99.5th percentile of the validation films' distances, so about
0.5% of validation films are flagged (the whole-film check below flags about 1%: together at most 1.5%, inside the
2% a paediatric cohort may lose to the flags). It travels in the checkpoint (extra['ood']), fitted at the end of training.
A model trained on paediatric films from one hospital answers with confidence on adult films from another; this
is what tells the user it should not be trusted there. The penultimate features see only the model's view (the
recipe's: the lungs alone), so the reference also carries a whole-film check (data.population, under 'population'):
a film is unlike the training films when either flags it.
The reference is fitted here; films are scored against it by models.ood_score (`distances`, `flag`,
`population_flag`, re-exported here), the one scoring code that serving (models.checkpoint) uses too.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..core.stats import ledoit_wolf
from ..data import population
from ..data.dataset import Sample, subsample
from ..data.resources import Resources
from ..models.inference import view_outputs
from ..models.ood_score import distances, flag, population_flag  # noqa: F401 (re-exported: scored where served)

log = logging.getLogger(__name__)

FLAG_QUANTILE = 0.995  # share of validation films under the threshold
MAX_FIT = 2000  # training films the reference is fitted on (a seeded, class-stratified subsample)
METHOD = (
    "Mahalanobis distance of the penultimate features from the training films' (Ledoit-Wolf covariance); "
    "flagged above the 99.5th percentile of the validation films' distances"
)


def features(
    model: torch.nn.Module,
    samples: list[Sample],
    preprocessing,
    *,
    resources: Resources | None = None,
    device=None,
    batch_size: int = 64,
) -> np.ndarray:
    """N x D penultimate features (the final linear layer's input) of the model, or of an ensemble's first member,
    read from the one inference pass (models.inference.view_outputs). Where the films' predictions are also
    wanted, ask that pass for both (evaluate.predict_samples(features=True)) instead of calling this."""
    _, feats = view_outputs(
        model, list(samples), preprocessing, resources=resources, device=device, batch_size=batch_size, features=True
    )
    return feats.numpy()


def fit_reference(train_features: np.ndarray, val_features: np.ndarray) -> dict[str, Any]:
    """The reference a checkpoint carries: mean, precision matrix (float32 tensors) and the flag threshold."""
    mean, precision = ledoit_wolf(train_features)
    ref = {"mean": torch.tensor(mean, dtype=torch.float32), "precision": torch.tensor(precision, dtype=torch.float32)}
    d_val = distances(ref, val_features)
    ref.update(
        threshold=float(np.quantile(d_val, FLAG_QUANTILE)) if len(d_val) else float("inf"),
        n_fit=int(len(train_features)),
        n_val=int(len(val_features)),
        val_flagged=float((d_val > np.quantile(d_val, FLAG_QUANTILE)).mean()) if len(d_val) else float("nan"),
        val_median=float(np.median(d_val)) if len(d_val) else float("nan"),
        method=METHOD,
    )
    return ref


def reference_for(
    model: torch.nn.Module,
    train: list[Sample],
    val: list[Sample],
    preprocessing,
    *,
    val_features: np.ndarray | None = None,
    seed: int = 0,
    resources: Resources | None = None,
    device=None,
) -> dict[str, Any]:
    """Fit the reference on up to MAX_FIT training films (seeded, class-stratified) and calibrate on validation; the
    whole-film population reference (data.population) on the same films, under 'population'.
    VAL_FEATURES: the validation films' penultimate features when the validation pass already read them."""
    fit_on = subsample(train, MAX_FIT, seed)
    val_feats = (
        val_features
        if val_features is not None
        else features(model, val, preprocessing, resources=resources, device=device)
    )
    ref = fit_reference(features(model, fit_on, preprocessing, resources=resources, device=device), val_feats)
    pop = population.fit_reference(
        population.film_statistics([s.path for s in fit_on]), population.film_statistics([s.path for s in val])
    )
    ref["population"] = pop.to_state()
    log.info(
        "OOD reference: %d training films, threshold %.1f (flags %.1f%% of %d validation films); whole-film "
        "population threshold %.3f (flags %.1f%%)",
        ref["n_fit"],
        ref["threshold"],
        100 * ref["val_flagged"],
        ref["n_val"],
        pop.threshold,
        100 * pop.info["val_flagged"],
    )
    return ref


def score(predictor, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray] | None:
    """(distance, flagged) per film for a checkpoint that carries a reference; None for one that does not. A pass of
    its own, in the predictor's context: where the predictions are wanted too, use predict_samples(features=True)
    and `flag`."""
    ref = (predictor.extra or {}).get("ood")
    if not ref:
        return None
    return flag(
        ref,
        features(
            predictor.model, samples, predictor.preprocessing, resources=predictor.resources, device=predictor.device
        ),
    )


def summary(
    ref: dict[str, Any], d: np.ndarray, flagged: np.ndarray, whole: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, Any]:
    """A cohort's OOD record: share flagged against validation's, median distance against validation's; with WHOLE
    (population_flag's result), the whole-film check's and the share flagged by either."""
    out = {
        "n": int(len(d)),
        "flagged": int(flagged.sum()),
        "share_flagged": float(flagged.mean()) if len(d) else 0.0,
        "median_distance": float(np.median(d)) if len(d) else float("nan"),
        "threshold": ref["threshold"],
        "val_share_flagged": ref.get("val_flagged"),
        "val_median_distance": ref.get("val_median"),
        "method": ref.get("method", METHOD),
    }
    if whole is not None:
        info = ref["population"].get("info", {})
        either = flagged | whole[1]
        out["population"] = {
            "flagged": int(whole[1].sum()),
            "share_flagged": float(whole[1].mean()) if len(d) else 0.0,
            "median_score": float(np.median(whole[0])) if len(d) else float("nan"),
            "threshold": ref["population"]["threshold"],
            "val_share_flagged": info.get("val_flagged"),
            "method": info.get("method", population.METHOD),
        }
        out["either_flagged"] = int(either.sum())
        out["either_share"] = float(either.mean()) if len(d) else 0.0
    return out


def describe(s: dict[str, Any]) -> str:
    """One or two lines for a cohort: how many films look unlike training, and whether the cohort does."""
    line = (
        f"out-of-distribution: {s['flagged']} of {s['n']} films ({s['share_flagged']:.1%}) beyond the threshold "
        f"{s['threshold']:.1f} that flags {s['val_share_flagged']:.1%} of validation films; median distance "
        f"{s['median_distance']:.1f} (validation {s['val_median_distance']:.1f})"
    )
    share = s["share_flagged"]
    if "population" in s:
        p = s["population"]
        line += (
            f"\nwhole-film population check: {p['flagged']} of {s['n']} films ({p['share_flagged']:.1%}) above "
            f"{p['threshold']:.3f}, which flags {p['val_share_flagged']:.1%} of validation films; either check: "
            f"{s['either_flagged']} ({s['either_share']:.1%})"
        )
        share = s["either_share"]
    if s["n"] >= 20 and share > 0.1:
        line += (
            "\nWARNING: this cohort is unlike the training data (more than 10% of its films flagged): the "
            "metrics and predictions here may not hold; the model was trained on paediatric films from one "
            "hospital"
        )
    return line
