"""Is there anything for site adaptation to correct? A label-free test of a folder's scores against validation's.

Re-estimating BatchNorm statistics corrects a change in how films look (a scanner, an exposure, a site): such a
change moves the scores of the films of a class away from where validation's films of that class sat. It cannot
correct a change in the class mix, and on films that look like the training site's it still moves the scores
(towards NORMAL, on validation's own films; a likely reason, not measured: the statistics it replaces were
gathered on augmented training batches): on the recipe ensemble's own test split
it moved PNEUMONIA recall from 0.960 to 0.880 with every other check passing (docs/adaptation.md).

So the question the guard asks first is: could this folder's scores be validation films in some other class mix?
The folder's scores are compared with the best mixture of validation's two class-conditional score distributions
(F = q F_pneumonia + (1 - q) F_normal, q fitted to the folder): the statistic is the Kolmogorov-Smirnov distance to
the closest such mixture. Its null distribution is drawn by resampling validation's own films (a folder of n films
in the fitted mix, against a reference resampled the same way), so a folder from the training site in any class
mix passes about 1 - ALPHA of the time, and `site` adaptation is refused there: there is no covariate shift to
correct. A folder whose films of one class score elsewhere (the external cohort's NORMAL films had a median
P(PNEUMONIA) of 0.353 for the lung-mask network) has no such mixture, and adaptation is tried.

ALPHA was set before measuring; the reference is the checkpoint's validation scores (analysis.adapt_prior.
validation_calibration keeps them), read from labelled validation films at training time, never a test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHA = 0.05  # the share of training-site folders that may still be adapted: a conventional test level, set a priori
N_BOOT = 200  # null draws: a p-value resolution of 0.005, well below ALPHA
MIXES = np.linspace(0.0, 1.0, 101)  # the class mixes searched: steps of 1%
MIN_PER_CLASS = 10  # validation films of each class the reference needs


@dataclass(frozen=True)
class ShiftTest:
    """The folder's distance to the closest validation mixture, the mix that reached it, and the p-value."""

    distance: float
    mix: float
    p_value: float
    n_boot: int

    @property
    def shifted(self) -> bool:
        return self.p_value < ALPHA

    def says(self) -> str:
        if self.shifted:
            return (
                f"the folder's scores are not validation's in any class mix (distance {self.distance:.3f}, "
                f"p = {self.p_value:.3f} < {ALPHA})"
            )
        return (
            f"the folder's scores look like validation's at a PNEUMONIA share of {self.mix:.0%} (distance "
            f"{self.distance:.3f}, p = {self.p_value:.2f}): a class mix adaptation cannot correct, no site change"
        )


def score_reference(labels, probs) -> dict[str, list[float]]:
    """Validation's P(PNEUMONIA) by class, kept in the checkpoint (float32 lists: about 4 KB for 465 films)."""
    y, p = np.asarray(labels, dtype=int), np.asarray(probs, dtype=np.float32)
    return {"normal": p[y == 0].tolist(), "pneumonia": p[y == 1].tolist()}


def usable(reference: dict[str, Any] | None) -> bool:
    """Whether REFERENCE holds enough films of each class to test against."""
    return bool(reference) and all(len(reference.get(k, ())) >= MIN_PER_CLASS for k in ("normal", "pneumonia"))


def _cdf(sorted_values: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_values, at, side="right") / max(len(sorted_values), 1)


def mixture_distance(folder, normal, pneumonia) -> tuple[float, float]:
    """(KS distance from FOLDER's empirical CDF to the closest mixture q F_pneumonia + (1 - q) F_normal, that q)."""
    f, n0, n1 = (np.sort(np.asarray(v, dtype=float)) for v in (folder, normal, pneumonia))
    at = np.concatenate([f, n0, n1])
    ff, c0, c1 = _cdf(f, at), _cdf(n0, at), _cdf(n1, at)
    # the sup over points of |F_folder - F_mix| (both step functions jump only at these points; left limits too)
    eps = 1e-12
    ffl, c0l, c1l = _cdf(f, at - eps), _cdf(n0, at - eps), _cdf(n1, at - eps)
    mix = MIXES[:, None]
    d = np.maximum(
        np.abs(ff[None] - (mix * c1[None] + (1 - mix) * c0[None])).max(axis=1),
        np.abs(ffl[None] - (mix * c1l[None] + (1 - mix) * c0l[None])).max(axis=1),
    )
    k = int(np.argmin(d))
    return float(d[k]), float(MIXES[k])


def shift_test(folder_probs, reference: dict[str, Any], *, seed: int = 0, n_boot: int = N_BOOT) -> ShiftTest:
    """The module's test of FOLDER_PROBS (the model as trained's P(PNEUMONIA) on the folder) against REFERENCE
    (score_reference of validation films). Seeded: the same folder gets the same p-value."""
    normal, pneumonia = (np.asarray(reference[k], dtype=float) for k in ("normal", "pneumonia"))
    folder = np.asarray(folder_probs, dtype=float)
    d, q = mixture_distance(folder, normal, pneumonia)
    rng, n = np.random.default_rng(seed), len(folder)
    at_least = 0
    for _ in range(n_boot):  # a training-site folder of n films in mix q, and a reference drawn the same way
        k = rng.binomial(n, q)
        fake = np.concatenate([rng.choice(pneumonia, k), rng.choice(normal, n - k)])
        ref0, ref1 = rng.choice(normal, len(normal)), rng.choice(pneumonia, len(pneumonia))
        at_least += mixture_distance(fake, ref0, ref1)[0] >= d
    return ShiftTest(d, q, (at_least + 1) / (n_boot + 1), n_boot)
