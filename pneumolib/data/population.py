"""Is a film from the training population? A check of the whole film, independent of the classifier's view.

Why a second check beside the classifier's own (analysis.ood): the recipe's classifier sees only the lungs, and an
adult's lungs, cut out and equalised, sit close to a child's in its penultimate features (adult chest films were
called PNEUMONIA with distances under its threshold). What differs is the whole film: the thorax's size against
the film, the bones, the proportions. The shipped lung segmenter was trained on whole paediatric films; its five
encoder levels describe a film from edges (level 0, 16 channels) to the thorax's layout (level 4, 256 channels).

The score: for each level, the Mahalanobis distance (Ledoit-Wolf covariance) of the film's per-channel means and
standard deviations from the training films', divided by that level's median distance over the validation films;
then the mean over the five levels (Lee et al. 2018's feature ensemble, with equal weights because there are no
out-of-population films to learn weights from). A film unusual at every scale scores high even when no single level
is extreme. Flagged above the FLAG_QUANTILE of the validation films' scores.

A reference is fitted at the end of every training run on its own training films (the checkpoint carries it), and
one fitted on the real paediatric training films ships in the package (`shipped_reference`, made by
`python -m pneumolib lungs population --data-dir DIR --ship`) with its provenance and measured flag rates.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.io import CheckpointError, atomic_write
from ..core.registry import SHIPPED
from ..core.stats import ledoit_wolf, mahalanobis
from .imaging import load_image
from .lungs import UNET, LungSegmenter, shipped_segmenter

log = logging.getLogger(__name__)

FORMAT = "pneumolib-population/1"
FLAG_QUANTILE = 0.99  # share of validation films under the threshold
LEVEL_DIMS = tuple(2 * c for c in UNET["channels"])  # mean and sd per channel, per encoder level
METHOD = (
    "whole film through the lung segmenter's encoder: per level, the Mahalanobis distance of its channel means and "
    "standard deviations from the training films' (Ledoit-Wolf), over the level's median validation distance; "
    "mean over the 5 levels; flagged above the 99th percentile of the validation films' scores"
)
# What the flag has been seen to do, for every output that shows it: one adult film cannot calibrate a detection
# rate, and the external cohort's report (issue 46's text, not measurements.json) has two more adult chest films
# that it did not flag.
LIMIT = (
    "population= flags films unlike the training children's (about 1% of theirs); of 3 adult chest films measured, "
    "it flagged only the one it was checked on (the other two scored 1.38 and 1.39 against 1.479), so a film it "
    "does not flag is not shown to be a child's chest film"
)


def _split(feats: np.ndarray) -> list[np.ndarray]:
    edges = np.cumsum((0,) + LEVEL_DIMS)
    if feats.ndim != 2 or feats.shape[1] != edges[-1]:
        raise ValueError(f"population features must be N x {edges[-1]}, got {feats.shape}")
    return [feats[:, a:b] for a, b in zip(edges[:-1], edges[1:])]


class PopulationReference:
    """The training films' encoder statistics, as a distance and a threshold.

    Precision matrices are stored as float16 scaled by their largest entry (distances within 0.1% of float64:
    tests/test_population.py), so the shipped reference stays under 1 MB.
    """

    def __init__(
        self,
        means: list[np.ndarray],
        precisions: list[np.ndarray],
        medians: list[float],
        threshold: float,
        info: dict[str, Any] | None = None,
    ):
        self.means = [np.asarray(m, np.float32) for m in means]
        self.precisions = [np.asarray(p, np.float32) for p in precisions]
        self.medians = [float(m) for m in medians]
        self.threshold = float(threshold)
        self.info = dict(info or {})

    def level_distances(self, feats: np.ndarray) -> np.ndarray:
        """N x 5: each level's Mahalanobis distance over its validation median."""
        parts = _split(np.asarray(feats, np.float32))
        return np.stack(
            [mahalanobis(x, m, p) / med for x, m, p, med in zip(parts, self.means, self.precisions, self.medians)], 1
        )

    def scores(self, feats: np.ndarray) -> np.ndarray:
        """The population score per film (1.0 = a typical validation film's distance at every level)."""
        return self.level_distances(feats).mean(1)

    def flag(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, flagged) per film."""
        s = self.scores(feats)
        return s, s > self.threshold

    def to_state(self) -> dict[str, Any]:
        scales = [float(np.abs(p).max()) or 1.0 for p in self.precisions]
        return {
            "format": FORMAT,
            "means": [torch.from_numpy(m) for m in self.means],
            "precisions": [torch.from_numpy(p / s).half() for p, s in zip(self.precisions, scales)],
            "scales": scales,
            "medians": self.medians,
            "threshold": self.threshold,
            "info": self.info,
        }

    @staticmethod
    def state_problem(state: Any) -> str | None:
        """Why STATE is not a population reference pneumolib wrote (types, shapes, finite values), or None; checked
        before any of it is used, so a crafted one is one line, never a crash or a flag that never fires."""
        import math

        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return f"format {state.get('format') if isinstance(state, dict) else type(state).__name__!r}, expected {FORMAT}"
        n = len(LEVEL_DIMS)
        for key in ("means", "precisions", "scales", "medians"):
            if not isinstance(state.get(key), (list, tuple)) or len(state[key]) != n:
                return f"{key} must be a list of {n} levels"
        for d, m, p in zip(LEVEL_DIMS, state["means"], state["precisions"]):
            if not isinstance(m, torch.Tensor) or tuple(m.shape) != (d,):
                return f"a level's mean must be a tensor of {d} values"
            if not isinstance(p, torch.Tensor) or tuple(p.shape) != (d, d):
                return f"a level's precision must be a {d} x {d} tensor"
            if not (torch.isfinite(m.float()).all() and torch.isfinite(p.float()).all()):
                return "a level's mean or precision is not finite"
        for key in ("scales", "medians"):
            if not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in state[key]
            ):
                return f"{key} must be finite numbers > 0"
        t = state.get("threshold")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            return f"threshold {t!r} must be a finite number > 0"
        if not isinstance(state.get("info", {}), dict):
            return "info must be a mapping"
        return None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PopulationReference":
        problem = cls.state_problem(state)
        if problem:
            raise CheckpointError(f"not a population reference pneumolib wrote ({problem})")
        precisions = [p.float().numpy() * s for p, s in zip(state["precisions"], state["scales"])]
        return cls(
            [m.numpy() for m in state["means"]], precisions, state["medians"], state["threshold"], state.get("info")
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write(Path(path), lambda tmp: torch.save(self.to_state(), tmp))

    @classmethod
    def load(cls, path: str | Path) -> "PopulationReference":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise CheckpointError(f"{path}: not a readable population reference ({type(e).__name__})") from None
        try:
            return cls.from_state(state)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None


def fit_reference(
    train_feats: np.ndarray, val_feats: np.ndarray, info: dict[str, Any] | None = None
) -> PopulationReference:
    """Fit on the training films' statistics, normalise and set the threshold on the validation films'.

    Args:
        train_feats: N x 992 statistics of training films (`film_statistics`).
        val_feats: M x 992 statistics of validation films (never the test split).
        info: provenance to keep with the reference.

    Returns:
        The reference, its info holding n_fit, n_val, the validation share flagged and the method.
    """
    means, precisions, medians = [], [], []
    for tr, va in zip(_split(train_feats), _split(val_feats)):
        mean, precision = ledoit_wolf(tr)
        means.append(mean)
        precisions.append(precision)
        medians.append(float(np.median(mahalanobis(va, mean, precision))) or 1.0)
    ref = PopulationReference(means, precisions, medians, float("inf"))
    s = ref.scores(val_feats)
    ref.threshold = float(np.quantile(s, FLAG_QUANTILE))
    ref.info = {
        **(info or {}),
        "n_fit": int(len(train_feats)),
        "n_val": int(len(val_feats)),
        "val_flagged": float((s > ref.threshold).mean()),
        "method": METHOD,
    }
    return ref


def _identity(path: str | Path) -> tuple:
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def film_statistics(
    paths: list[str | Path], segmenter: LungSegmenter | None = None, batch_size: int = 32
) -> np.ndarray:
    """N x 992 encoder statistics of the films at these paths (any size, DICOM included), read whole. Each film's
    are computed once per segmenter (its `statistics` memo, keyed by the file's path, size and modification time):
    the reference every fit makes and every prediction's check reuse them.

    Args:
        paths: readable films (the caller has checked them: data.imaging raises ImageError otherwise).
        segmenter: default the shipped one.
        batch_size: films decoded and passed at a time (a full-size DICOM is tens of MB decoded).

    Returns:
        float32 N x 992.
    """
    seg = segmenter or shipped_segmenter()
    memo = seg.statistics
    keys = [_identity(p) for p in paths]
    todo = [(k, p) for k, p in zip(keys, paths) if k not in memo]
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        stats = seg.encoder_statistics([np.asarray(load_image(p), dtype=np.uint8) for _, p in chunk])
        memo.update({k: v for (k, _), v in zip(chunk, stats)})
    return np.stack([memo[k] for k in keys]) if keys else np.zeros((0, sum(LEVEL_DIMS)), np.float32)


def shipped_path() -> Path:
    return Path(str(resources.files("pneumolib") / "weights" / "population_reference.pt"))


SHIPPED.register("population reference", lambda: shipped_path(), lambda path: PopulationReference.load(path))


def shipped_reference() -> PopulationReference:
    """The reference fitted on the real paediatric training films (Kaggle chest_xray, the package's split), with
    its provenance and measured flag rates in `.info`; loaded once per process."""
    return SHIPPED.get("population reference")
