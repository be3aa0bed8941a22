"""Does site adaptation do harm? `analysis.site.adapt_to_site` on simulated sites made of validation films.

Each condition is a folder a hospital might bring: the films as they are, a scanner-like change (exposure,
contrast, blur), a change of class mix with and without a scanner change, a folder of one class, a folder mixing
two sites, and a small folder. For each, the same films are scored three ways: the model as trained ("plain"),
always adapted ("always"), and site mode ("site": adapted only when the label-free checks pass). Site mode does
no harm in a condition when its balanced accuracy (the mean of the two recalls) is at least plain's minus TOLERANCE
on the same films. Balanced, because a folder's class mix is whatever the hospital sent: on a folder of 90%
PNEUMONIA films, plain accuracy mostly measures PNEUMONIA recall; both recalls and the accuracy are in the table. Labels are read only here, to score the three; the decision never sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..analysis.adapt import EARLY_BN_LAYERS, adapt_bn
from ..analysis.evaluate import predict_samples
from ..analysis.site import MIN_FILMS, relative_bn, site_passes
from ..analysis.site_shift import score_reference
from ..data.samples import Sample
from ..data.shifts import SHIFTS_BY_NAME, two_sites
from ..models.checkpoint import Predictor

log = logging.getLogger(__name__)

TOLERANCE = 0.01  # one film in a hundred: what "no harm" allows


@dataclass(frozen=True)
class Condition:
    """A simulated site: which films (by class share and count) and what happens to each image."""

    name: str
    what: str
    pneumonia_share: float | None = None  # None: the films' own mix
    n: int | None = None  # None: all the films the mix allows
    shift: str | tuple[str, str] | None = None  # one shift, or two: a folder mixing two sites


CONDITIONS: tuple[Condition, ...] = (
    Condition("as_is", "validation films as they are"),
    Condition("darker", "exposure curve gamma 1.6", shift="darker"),
    Condition("brighter", "exposure curve gamma 0.6", shift="brighter"),
    Condition("low_contrast", "contrast x0.6", shift="low_contrast"),
    Condition("high_contrast", "contrast x1.5", shift="high_contrast"),
    Condition("blur", "a softer detector", shift="blur"),
    Condition("mostly_normal", "80% NORMAL, no scanner change", pneumonia_share=0.2),
    Condition("mostly_normal_darker", "80% NORMAL and gamma 1.6", pneumonia_share=0.2, shift="darker"),
    Condition("mostly_pneumonia_darker", "90% PNEUMONIA and gamma 1.6", pneumonia_share=0.9, shift="darker"),
    Condition("normal_only_darker", "NORMAL films only, gamma 1.6", pneumonia_share=0.0, shift="darker"),
    Condition("mostly_normal_low_contrast", "80% NORMAL and contrast x0.6", pneumonia_share=0.2, shift="low_contrast"),
    Condition("mostly_normal_blur", "80% NORMAL and a softer detector", pneumonia_share=0.2, shift="blur"),
    Condition("two_sites", "half gamma 1.6, half contrast x1.5", shift=("darker", "high_contrast")),
    Condition(
        "two_sites_mostly_normal",
        "80% NORMAL; half gamma 1.6, half contrast x1.5",
        pneumonia_share=0.2,
        shift=("darker", "high_contrast"),
    ),
    Condition("small_darker", f"{MIN_FILMS} films, gamma 1.6", n=MIN_FILMS, shift="darker"),
)


def _transform(shift) -> Callable | None:
    if shift is None:
        return None
    if isinstance(shift, str):
        return SHIFTS_BY_NAME[shift]
    return two_sites(*shift)


def folder(samples: list[Sample], cond: Condition, seed: int) -> list[Sample]:
    """The condition's films, drawn from SAMPLES with a seeded generator (the class mix it asks, as many as it
    allows)."""
    g = torch.Generator().manual_seed(seed)
    by = {c: [s for s in samples if s.label == c] for c in (0, 1)}
    by = {c: [v[i] for i in torch.randperm(len(v), generator=g).tolist()] for c, v in by.items()}
    if cond.pneumonia_share is None:
        out = by[0] + by[1]
    else:
        q = cond.pneumonia_share
        total = min(len(by[1]) / q if q > 0 else np.inf, len(by[0]) / (1 - q) if q < 1 else np.inf)
        n_p = int(round(total * q))
        out = by[0][: int(round(total)) - n_p] + by[1][:n_p]
    if cond.n is not None:
        out = [out[i] for i in torch.randperm(len(out), generator=g).tolist()[: cond.n]]
    return out


def _figures(labels: np.ndarray, called: np.ndarray) -> dict[str, float]:
    rec = {c: float(np.mean(called[labels == c] == c)) if (labels == c).any() else float("nan") for c in (0, 1)}
    known = [v for v in rec.values() if not np.isnan(v)]
    return {"acc": float(np.mean(called == labels)), "bal": float(np.mean(known)), "rec_n": rec[0], "rec_p": rec[1]}


def run_condition(predictor: Predictor, samples: list[Sample], cond: Condition, seed: int = 0, reference=None,
                  shift_reference: dict | None = None) -> dict:  # fmt: skip
    """One condition: the three ways' figures on the same films, the decision and whether site mode did harm.
    REFERENCE: the model adapted on other validation films, for the relative adaptation's figures ("relative");
    SHIFT_REFERENCE: those films' scores by class, which the site-change test compares the folder with (default:
    the checkpoint's validation scores, which include the study's own films)."""
    films, tf = folder(samples, cond, seed), _transform(cond.shift)
    p = site_passes(predictor, films, transform=tf, seed=seed, shift_reference=shift_reference)
    labels, t, decision = np.array([s.label for s in films]), predictor.threshold, p.decision
    plain, always = p.plain.probs, p.adapted.probs
    site = always if decision.adapted else plain
    row = {"condition": cond.name, "what": cond.what, "n": len(films), "adapted": decision.adapted}
    ways = [("plain", plain), ("always", always), ("site", site)]
    if reference is not None:
        rel = relative_bn(predictor.model, p.whole, reference)
        ways.append(("relative", predict_samples(rel, films, predictor.preprocessing, tta=predictor.config.tta,
                                                 resources=predictor.resources, transform=tf,
                                                 device=predictor.device).probs))  # fmt: skip
    for way, p in ways:
        row.update({f"{way}_{k}": v for k, v in _figures(labels, p >= t).items()})
    row.update({c.name: c.value for c in decision.checks})
    row["moved"] = decision.figures.get("moved", float("nan"))
    row["harm"] = bool(row["site_bal"] < row["plain_bal"] - TOLERANCE)
    return row


def site_study(predictor: Predictor, samples: list[Sample], conditions=CONDITIONS, seed: int = 0,
               progress: Callable[[str], None] | None = None, reference_films: list[Sample] | None = None):  # fmt: skip
    """Every condition on SAMPLES (validation films): a pandas DataFrame, one row per condition. With
    REFERENCE_FILMS (other validation films), the relative adaptation is measured too, and the site-change test
    compares each folder with those films' scores rather than the checkpoint's (which hold SAMPLES themselves), so
    a folder of the study's films is tested out of sample."""
    import pandas as pd

    reference = shift_reference = None
    if reference_films:
        reference = adapt_bn(predictor.model, reference_films, predictor.preprocessing, layers=EARLY_BN_LAYERS,
                             resources=predictor.resources, device=predictor.device)  # fmt: skip
        ref_scores = predict_samples(predictor.model, reference_films, predictor.preprocessing,
                                     tta=predictor.config.tta, resources=predictor.resources,
                                     device=predictor.device)  # fmt: skip
        shift_reference = score_reference([s.label for s in reference_films], ref_scores.probs)
    rows = []
    for cond in conditions:
        rows.append(run_condition(predictor, samples, cond, seed, reference, shift_reference))
        if progress:
            r = rows[-1]
            progress(f"{cond.name}: n={r['n']} adapted={r['adapted']} acc plain {r['plain_acc']:.3f} "
                     f"always {r['always_acc']:.3f} site {r['site_acc']:.3f}")  # fmt: skip
    return pd.DataFrame(rows)
