"""The out-of-distribution score of films against a checkpoint's reference (extra['ood']): one implementation.

Serving (models.checkpoint's `Predictor.predict_records`) and evaluation (analysis.ood, the evaluate command) both
score films here, so a served flag and an evaluated one are the same number by construction. The reference itself
is fitted in analysis.ood; this module only reads it: the Mahalanobis distance of a film's penultimate features
from the training films' (flagged beyond the reference's threshold), and the whole-film population check
(data.population) when the reference carries one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.stats import mahalanobis
from ..data import population


def distances(ref: dict[str, Any], feats: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of feats from the reference."""
    return mahalanobis(feats, ref["mean"], ref["precision"])


def flag(ref: dict[str, Any] | None, feats: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(distance, flagged) per film from the penultimate features the prediction pass read; None without a
    reference. The whole-film check is `population_flag`."""
    if not ref or feats is None:
        return None
    d = distances(ref, feats)
    return d, d > ref["threshold"]


def population_flag(ref: dict[str, Any] | None, paths: list) -> tuple[np.ndarray, np.ndarray] | None:
    """(score, flagged) per film by the reference's whole-film population check; None when it carries none (a
    checkpoint saved before the check existed)."""
    if not ref or not ref.get("population"):
        return None
    return population.PopulationReference.from_state(ref["population"]).flag(population.film_statistics(paths))
