"""Serve several runs as one checkpoint: a seed ensemble, temperature scaling and a threshold fitted on validation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from ..analysis.adapt import validation_calibration
from ..analysis.evaluate import Scores, expected_calibration_error, fit_threshold
from ..data.resources import Resources, as_resources
from ..models.checkpoint import CheckpointError, Predictor
from ..models.inference import probabilities, view_outputs
from ..models.networks import Ensemble

logger = logging.getLogger(__name__)

LOG_T_BOUNDS = (-3.0, 3.0)  # temperatures from 0.05 to 20: wider means the validation split is the problem


def nll(logits: torch.Tensor, labels: np.ndarray, temperature: float = 1.0, combine: str = "prob") -> float:
    """Mean negative log-likelihood of the labels under probabilities(logits, T, combine)."""
    p = np.clip(probabilities(logits, temperature, combine), 1e-7, 1 - 1e-7)
    y = np.asarray(labels)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_temperature(logits: torch.Tensor, labels: np.ndarray, combine: str = "prob") -> float:
    """The temperature that minimises the validation NLL (Guo et al. 2017) of the probabilities the model serves
    (COMBINE: how the members are combined), searched over log T: one scalar, so it rescales confidence without
    changing any ranking (the AUC)."""
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        raise ValueError("temperature scaling needs both classes in the validation data")
    res = minimize_scalar(
        lambda lt: nll(logits, y, float(np.exp(lt)), combine),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    t = float(np.exp(res.x))
    if min(abs(res.x - b) for b in LOG_T_BOUNDS) < 1e-2:
        logger.warning(
            "fitted temperature %.3g is at the edge of its search range: the validation split may be "
            "too small or one-sided for calibration",
            t,
        )
    return t


def _check_compatible(paths: list[Path], preds: list[Predictor]) -> None:
    first = preds[0]
    for path, p in zip(paths[1:], preds[1:]):
        if p.preprocessing != first.preprocessing:
            raise CheckpointError(
                f"{path}: preprocessing {p.preprocessing.to_dict()} differs from {paths[0]}'s "
                f"{first.preprocessing.to_dict()}; an ensemble's members must share it"
            )
        if p.config.model != first.config.model or p.config.tta != first.config.tta:
            raise CheckpointError(
                f"{path}: model {p.config.model} (TTA {p.config.tta}) differs from {paths[0]}'s "
                f"{first.config.model} (TTA {first.config.tta})"
            )
        if isinstance(p.model, Ensemble):
            raise CheckpointError(f"{path}: already an ensemble; combine the original runs' checkpoints instead")
    if isinstance(first.model, Ensemble):
        raise CheckpointError(f"{paths[0]}: already an ensemble; combine the original runs' checkpoints instead")


def _before_after(logits: torch.Tensor, labels: np.ndarray, t: float, combine: str = "prob") -> dict[str, float]:
    """Validation NLL and ECE of the probabilities served from LOGITS before (T = 1) and after temperature T."""
    p1, pt = probabilities(logits, 1.0, combine), probabilities(logits, t, combine)
    return {
        "nll_before": nll(logits, labels, 1.0, combine),
        "nll_after": nll(logits, labels, t, combine),
        "ece_before": expected_calibration_error(labels, p1),
        "ece_after": expected_calibration_error(labels, pt),
    }


def member_calibration(logits: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """One member's validation NLL and ECE from its own logits (V x 1 x N x 2, at T = 1), as trained and with its own
    temperature fitted on the same films (what the ensemble's figures are compared with)."""
    t = fit_temperature(logits, labels) if len(np.unique(labels)) > 1 else 1.0
    c = _before_after(logits, labels, t)
    return {
        "nll": c["nll_before"],
        "ece": c["ece_before"],
        "temperature": t,
        "nll_tempered": c["nll_after"],
        "ece_tempered": c["ece_after"],
    }


def validation_overlap(val_samples, member_train: dict[int, list]) -> dict[int, int]:
    """How many of the validation films each member (by seed) trained on. When the data has no usable val/ folder,
    every seed builds its own val split from the pooled training films, so a seed ensemble's validation split holds
    other members' training films: a temperature and threshold fitted there are optimistic, and the caller says so."""
    val = {str(s.path) for s in val_samples}
    return {seed: len(val & {str(s.path) for s in train}) for seed, train in member_train.items()}


def build_ensemble(
    checkpoints: list[str | Path],
    val_samples,
    *,
    temperature: bool = True,
    device: str | torch.device = "cpu",
    combine: str = "prob",
    resources: Resources | None = None,
) -> Predictor:
    """One Predictor serving the checkpoints' average probability (a seed ensemble; one checkpoint = plain
    temperature scaling), with the temperature fitted on `val_samples` when asked, and the first member's threshold
    rule re-applied to the combined validation scores. What was done and measured is in predictor.extra['ensemble'].
    RESOURCES: the context the validation films are decoded in (default: a new one), which the returned predictor
    carries."""
    paths = [Path(c) for c in checkpoints]
    if not paths:
        raise ValueError("no checkpoints to combine")
    resources = as_resources(resources, device)  # one context: the validation pass, the threshold, the predictor
    preds = [Predictor.load(p, device=device) for p in paths]
    _check_compatible(paths, preds)
    cfg, pre = preds[0].config, preds[0].preprocessing
    model = Ensemble([p.model for p in preds], combine=combine).to(device).eval()
    labels = np.array([s.label for s in val_samples])
    logits, feats = view_outputs(model, val_samples, pre, tta=cfg.tta, features=True, resources=resources)  # one pass
    t = fit_temperature(logits, labels, combine) if temperature else 1.0
    model.temperature.fill_(t)
    pt = probabilities(logits, t, combine)  # what the served model reports on these films
    threshold = fit_threshold(
        cfg.threshold, model, Scores(list(val_samples), pt), pre, tta=cfg.tta, device=device, resources=resources
    )
    seeds = [p.config.seed for p in preds]
    # the pass above kept every member's logits (at T = 1: the temperature is filled in afterwards)
    members = [member_calibration(logits[:, j : j + 1], labels) for j in range(len(preds))]
    record: dict[str, Any] = {
        "members": [str(p) for p in paths],
        "seeds": seeds,
        "temperature": t,
        "fitted_temperature": temperature,
        "combine": combine,
        "threshold_rule": cfg.threshold,
        "member_thresholds": [p.threshold for p in preds],
        "val": dict(n=int(len(labels)), **_before_after(logits, labels, t, combine)),
        # each member alone on the same films: as trained, and with its own temperature fitted there, so the
        # ensemble's gain is read against a single network given the same calibration step
        "members_val": [{"seed": s, **m} for s, m in zip(seeds, members)],
    }
    if len(set(seeds)) < len(seeds):
        logger.warning("members share a seed (%s): they are not independent runs", seeds)
    out = Predictor(model, cfg, threshold, pre, device, resources=resources)
    out.extra = {
        **preds[0].extra,
        "ensemble": record,
        "val_calibration": validation_calibration(labels, pt, threshold, feats.numpy(), seed=cfg.seed),
    }
    for k in ("history", "best_epoch"):  # one member's training record would misdescribe the combination
        out.extra.pop(k, None)
    return out
