"""The statistics every layer shares: Wilson intervals, ROC AUC, and intervals that resample patients.

One owner for each estimate, so that a metric means the same in `evaluate`, the verdicts, Grad-CAM's lift and the
shortcut audit."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import rankdata

SMALL_N = 100  # below this many films, Wilson intervals replace the percentile bootstrap (which collapses there)

__all__ = [
    "SMALL_N",
    "wilson",
    "auc_score",
    "patient_bootstrap",
    "auc_with_interval",
    "SeedEffect",
    "seed_effect",
    "seed_mean",
]


def wilson(k: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    Args:
        k: successes (a share times n is rounded to the nearest count).
        n: trials.
        z: the normal quantile (1.96 for 95%).

    Returns:
        (low, high), both NaN when n is 0.
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    k = round(k)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def spread(values) -> dict[str, float | int | None]:
    """How far a few runs' values lie apart (members of an ensemble, seeds): n, min, max, max - min and the sample
    SD (None below two values). A description of these runs, not an interval for the next one."""
    v = np.asarray([float(x) for x in values], dtype=float)
    if v.size == 0:
        return {"n": 0, "min": None, "max": None, "range": None, "sd": None}
    sd = float(np.std(v, ddof=1)) if v.size > 1 else None
    return {"n": int(v.size), "min": float(v.min()), "max": float(v.max()), "range": float(np.ptp(v)), "sd": sd}


def auc_score(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC of binary labels by the rank (Mann-Whitney) formula, ties counted half: the value sklearn's
    roc_auc_score gives, without its per-call input validation (which made 1,000 bootstrap draws cost seconds).

    Args:
        y: labels, 1 = PNEUMONIA.
        p: scores, higher = more PNEUMONIA.

    Returns:
        The AUC; NaN unless both classes are present.
    """
    y = np.asarray(y)
    pos = y == 1
    n1 = int(pos.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(np.asarray(p, dtype=float))
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def patient_bootstrap(
    values: np.ndarray, patients: list[str], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile interval of the mean of per-image values, resampling patients (all of a patient's images
    together), since films of one patient are not independent.

    Args:
        values: one number per image; NaN values are left out.
        patients: one patient id per image.
        n_boot: resamples.
        seed: the resampling's seed.
        level: coverage of the interval.

    Returns:
        [low, high]; NaNs when no value is finite.
    """
    values = np.asarray(values, float)
    ok = ~np.isnan(values)
    pats = np.array(patients, dtype=object)[ok]
    if not ok.any():
        return [float("nan")] * 2
    uniq, inv = np.unique(pats.astype(str), return_inverse=True)
    sums = np.bincount(inv, weights=values[ok], minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return [float(np.percentile(means, lo)), float(np.percentile(means, hi))]


def auc_with_interval(
    labels: np.ndarray, scores: np.ndarray, patients: list[str], n_boot: int = 1000, seed: int = 0
) -> tuple[float, list[float]]:
    """ROC AUC and its 95% percentile interval from resampling patients.

    Args:
        labels: 1 = PNEUMONIA.
        scores: higher = more PNEUMONIA.
        patients: one patient id per film.
        n_boot: resamples (those that lose a class are skipped).
        seed: the resampling's seed.

    Returns:
        (AUC, [low, high]); NaNs when a class is missing.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, float)
    if len(set(labels.tolist())) < 2:
        return float("nan"), [float("nan")] * 2
    auc = auc_score(labels, scores)
    uniq, inv = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    members = [np.flatnonzero(inv == i) for i in range(len(uniq))]
    rng, boots = np.random.default_rng(seed), []
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(uniq), len(uniq))])
        if len(set(labels[idx].tolist())) == 2:
            boots.append(auc_score(labels[idx], scores[idx]))
    return auc, [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else [float("nan")] * 2


def mahalanobis(feats: np.ndarray, mean, precision) -> np.ndarray:
    """Mahalanobis distance of each row of FEATS from MEAN under the PRECISION matrix (arrays or tensors).

    Args:
        feats: N x D features.
        mean: D.
        precision: D x D, the inverse covariance.

    Returns:
        N distances (float32).
    """
    d = np.asarray(feats, dtype=np.float32) - np.asarray(mean, dtype=np.float32)
    return np.sqrt(np.clip(((d @ np.asarray(precision, dtype=np.float32)) * d).sum(1), 0, None)).astype(np.float32)


def ledoit_wolf(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of FEATS under Ledoit-Wolf shrinkage (the covariance of sklearn's LedoitWolf, inverted
    directly: the shrunk covariance is well conditioned, and this is a few times faster than the estimator's
    pseudo-inverse, which matters because every training run fits two such references).

    Args:
        feats: N x D, N >= 1.

    Returns:
        (mean D, precision D x D), float64.
    """
    from sklearn.covariance import ledoit_wolf as shrunk

    x = np.asarray(feats, dtype=np.float64)
    mean = x.mean(0)
    cov, _ = shrunk(x - mean, assume_centered=True)
    return mean, np.linalg.inv(cov)


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 1000, seed: int = 0, level: float = 0.95, groups=None
) -> dict[str, list[float]]:
    """Percentile intervals from resampling with replacement: images, or with `groups` (one id per image, e.g. the
    patient) whole groups, since the films of one patient are not independent evidence.

    All draws at once: each draw is a count per film (how many times the resample holds it), and every metric is a
    count-weighted sum over the films (AUC by the weighted Mann-Whitney formula, ties counted half), the same values
    point_metrics gives on the resampled films (tests/test_evaluate.py compares them draw by draw)."""
    rng = np.random.default_rng(seed)
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    n = len(y)
    if groups is not None:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        n_groups = int(inverse.max()) + 1 if n else 0
        drawn = rng.integers(0, n_groups, (n_boot, n_groups)) if n_groups else np.zeros((n_boot, 0), int)
        per_group = np.stack([np.bincount(d, minlength=n_groups) for d in drawn]) if n_groups else drawn
        counts = per_group[:, inverse] if n else np.zeros((n_boot, 0))
    else:
        drawn = rng.integers(0, n, (n_boot, n)) if n else np.zeros((n_boot, 0), int)
        counts = np.stack([np.bincount(d, minlength=n) for d in drawn]) if n else drawn
    draws = weighted_metrics(counts.astype(float), y, p, threshold)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for k, vals in draws.items():
        vals = vals[~np.isnan(vals)]
        out[k] = [float(np.percentile(vals, lo)), float(np.percentile(vals, hi))] if len(vals) else [float("nan")] * 2
    return out


def weighted_metrics(w: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """point_metrics for B resamples at once, each given as a count per film (B x N)."""
    pred = (p >= threshold).astype(int)
    tp, tn = w @ ((pred == 1) & (y == 1)), w @ ((pred == 0) & (y == 0))
    fp, fn = w @ ((pred == 1) & (y == 0)), w @ ((pred == 0) & (y == 1))
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = {
            "accuracy": (tp + tn) / total,
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "precision": tp / (tp + fp),
            "npv": tn / (tn + fn),
        }
        m["balanced_accuracy"] = (m["sensitivity"] + m["specificity"]) / 2
        # weighted Mann-Whitney: over the distinct scores in ascending order, each positive's weight times the
        # negative weight strictly below its score plus half the negative weight tied with it
        _, level = np.unique(p, return_inverse=True)
        onehot = np.zeros((len(p), int(level.max()) + 1 if len(p) else 0))
        onehot[np.arange(len(p)), level] = 1.0
        pos_u, neg_u = (w * (y == 1)) @ onehot, (w * (y == 0)) @ onehot
        below = np.cumsum(neg_u, axis=1) - neg_u
        n1, n0 = pos_u.sum(1), neg_u.sum(1)
        auc = (pos_u * (below + 0.5 * neg_u)).sum(1) / (n1 * n0)
        m["auc"] = np.where((n1 > 0) & (n0 > 0), auc, np.nan)
    return {k: np.asarray(v, dtype=float) for k, v in m.items()}


def seed_sd_gap(
    stable: list[float], others: list[list[float]], n_boot: int = 2000, seed: int = 0, min_seeds: int = 5
) -> tuple[float, float | None, float | None]:
    """min over OTHERS of the seed-to-seed SD, minus STABLE's SD, with a percentile interval from resampling each
    group's seeds (seeded); (value, None, None) when a group has fewer than MIN_SEEDS seeds."""

    def sd(xs) -> float:
        xs = np.asarray(xs, float)
        return float(xs.std(ddof=1)) if len(xs) > 1 else float("nan")

    value = min(sd(g) for g in others) - sd(stable)
    if min(len(g) for g in [stable, *others]) < min_seeds:
        return value, None, None
    rng = np.random.default_rng(seed)
    boots = [
        min(sd(rng.choice(g, len(g))) for g in others) - sd(rng.choice(stable, len(stable))) for _ in range(n_boot)
    ]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return value, float(lo), float(hi)


# --- effects over seeds: rliable's practice (Agarwal et al. 2021), paired on the same films ---------------------------
@dataclass(frozen=True)
class SeedEffect:
    """The mean over seeds of a per-seed quantity (or of a paired per-seed difference), with its interval.

    Attributes:
        point: the mean over seeds (for a difference: of arm A's value minus arm B's, seed by seed).
        low, high: point -+ the root of the two parts below (seeds, then patients within each seed).
        per_seed: each seed's value (or difference), in seed order.
        p_improve: the share of seed pairs (i of A, j of B) in which A's value exceeds B's, ties counted half
            (rliable's probability of improvement); None for one arm.
        n_seeds, n_films: what was resampled (n_films 0: no per-film data, the seeds' own intervals stood in).
        seed_part, film_part: the squared half-widths the seeds and the films contribute (each already times its
            quantile squared), kept apart so that `needed` can say which count would decide.
    """

    point: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    p_improve: float | None
    n_seeds: int
    n_films: int
    seed_part: float = float("nan")
    film_part: float = float("nan")

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def side(self, margin: float = 0.0) -> int:
        """+1 when the whole interval lies above MARGIN, -1 when below, 0 when it straddles it."""
        return 1 if self.low > margin else -1 if self.high < margin else 0

    def needed(self, margin: float = 0.0, cap: int = 100_000) -> tuple[int | None, int | None] | None:
        """At the observed effect and spread, about how many seeds (films fixed), and how many films per seed (seeds
        fixed), would put the interval on one side of MARGIN. The seeds' part shrinks as t(n-1)^2/n, the films' part
        as 1/films; a count whose own part cannot close the gap alone (the other part is already wider than the
        effect) is None. None when the effect sits on the margin. A power estimate, not a promise."""
        from scipy.stats import t

        gap2 = (self.point - margin) ** 2
        if gap2 < 1e-24 or not math.isfinite(self.half_width):
            return None
        seed_part, film_part = self.seed_part, self.film_part
        if not (math.isfinite(seed_part) and math.isfinite(film_part)):  # no parts kept: the whole width shrinks
            scale = self.half_width**2 / gap2
            return max(self.n_seeds + 1, math.ceil(self.n_seeds * scale)), max(
                self.n_films + 1, math.ceil(self.n_films * scale)
            )
        per_seed_var = seed_part * self.n_seeds / t.ppf(0.975, max(self.n_seeds - 1, 1)) ** 2 if self.n_seeds > 1 else 0
        seeds = _fewest(lambda n: t.ppf(0.975, n - 1) ** 2 * per_seed_var / n + film_part < gap2, self.n_seeds + 1, cap)
        films = None
        if self.n_films and seed_part < gap2 and film_part > 0:
            films = max(self.n_films + 1, math.ceil(self.n_films * film_part / (gap2 - seed_part)))
        return seeds, films


def _fewest(ok, low: int, cap: int) -> int | None:
    """The smallest n in [LOW, CAP) with OK(n), for an OK that, once true, stays true as n grows (the seeds' part
    t(n-1)^2/n only shrinks): a bisection, about 17 quantiles where a scan to the cap took 100,000 (regression: a
    seed count that could not decide made each 'cannot tell' verdict take seconds)."""
    if low >= cap or not ok(cap - 1):
        return None
    hi = cap - 1  # ok(hi) holds
    while low < hi:
        mid = (low + hi) // 2
        if ok(mid):
            hi = mid
        else:
            low = mid + 1
    return hi


def probability_of_improvement(a, b) -> float:
    """rliable's probability of improvement: the share of seed pairs (i of arm A, j of arm B) in which A's value
    exceeds B's, ties counted half. A and B: one value per seed of each arm."""
    pa, pb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float((pa[:, None] > pb[None, :]).mean() + 0.5 * (pa[:, None] == pb[None, :]).mean())


def seed_mean(values, half_widths=None, level: float = 0.95) -> SeedEffect:
    """The mean over seeds of a quantity that is not a per-film average (a Grad-CAM lift with its own interval by
    patient, a stress-test mean), with an interval from the seeds: their spread, taken as unbiased variance over
    seeds and widened by Student's t with seeds - 1 degrees of freedom; plus, when each seed's value has its own
    interval (HALF_WIDTHS, at the same level), the films' part: the seeds were scored on the same films, so their
    sampling errors are taken as perfectly correlated, and the mean's is the mean of the seeds' half-widths. One
    seed: the films' part only (seed-to-seed variation unmeasured)."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        raise ValueError("seed_mean needs at least one seed")
    q = 1 - (1 - level) / 2
    seed_part = float(t.ppf(q, n - 1) ** 2 * v.var(ddof=1) / n) if n > 1 else 0.0
    film_part = float(np.mean(half_widths)) ** 2 if half_widths is not None and len(half_widths) else 0.0
    half, point = math.sqrt(seed_part + film_part), float(v.mean())
    return SeedEffect(point, point - half, point + half, tuple(map(float, v)), None, n, 0, seed_part, film_part)


def _patient_index(patients, n: int) -> tuple[np.ndarray, int]:
    if patients is None:
        return np.arange(n), n
    _, idx = np.unique(np.asarray(patients), return_inverse=True)
    return idx.reshape(-1), int(idx.max()) + 1


def _patient_weights(rng, rows: int, idx: np.ndarray, n_pat: int, strata) -> np.ndarray:
    """(rows x films) weights: how often each film's patient is drawn when patients are resampled with replacement
    within each stratum (the class of their films), so that every draw keeps the class mix."""
    groups = np.zeros(n_pat, dtype=int)
    if strata is not None:
        groups[idx] = np.unique(np.asarray(strata).reshape(-1), return_inverse=True)[1].reshape(-1)
    counts = np.zeros((rows, n_pat))
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=rows)
    return counts[:, idx]


def _means(values: np.ndarray, counted: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean over the counted films of each row (the last axis)."""
    return (values * w).sum(-1) / np.maximum((counted * w).sum(-1), 1e-12)


def _seed_means(counted: np.ndarray, strata, balanced: bool):
    """f(values, w): each seed's mean under film weights w, over its counted films, or (BALANCED) the mean of its
    strata's means."""
    if balanced and strata is None:
        raise ValueError("a balanced mean needs the films' strata")
    parts = [(np.asarray(strata).reshape(-1) == c).astype(float) for c in np.unique(strata)] if balanced else None

    def part(v, m, w):  # a stratum's mean; NaN where it has no counted film (never a silent 0)
        den = (counted * m * w).sum(-1)
        return np.where(den > 0, (v * m * w).sum(-1) / np.where(den > 0, den, 1.0), np.nan)

    def mean_of(v, w):
        if parts is None:
            return _means(v, counted, w)
        return np.mean([part(v, m, w) for m in parts], axis=0)

    return mean_of


def _arms(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(counted, A, B) for seed_effect: the films that count (not NaN in either arm), and the arms with NaN as 0."""
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError("seed_effect takes seeds x films arrays")
    if b is not None and np.shape(b) != a.shape:
        raise ValueError(f"paired arms must have the same seeds and films: {a.shape} vs {np.shape(b)}")
    b = None if b is None else np.asarray(b, dtype=float)
    counted = ~np.isnan(a) if b is None else ~(np.isnan(a) | np.isnan(b))
    return counted, np.where(counted, a, 0.0), None if b is None else np.where(counted, b, 0.0)


def seed_effect(
    a,
    b=None,
    *,
    patients=None,
    strata=None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    balanced: bool = False,
) -> SeedEffect:
    """The mean over seeds of a per-film average (recall: 1/0 per film of the class, NaN elsewhere; accuracy: 1/0
    per film), for one arm A, or paired: A minus B, where row s of A and of B are the same seed index scored on the
    same films (columns).

    The interval is rliable's two-level bootstrap: seeds are resampled, and patients are resampled (within STRATA,
    the films' class), with the same draws for both arms of a difference. Its two parts are kept apart, because
    five seeds are too few for a percentile interval: the seed part's variance is scaled to the unbiased one and
    widened by Student's t with seeds - 1 degrees of freedom, the patients' part by the normal quantile, and the
    interval is point +- the root of their sum (one seed: the films' part only, seed-to-seed variation unmeasured).
    Simulated runs with a known effect (tests/test_seed_effect.py) are covered
    about 95% of the time, where the plain percentile interval covered 86%.

    Args:
        a, b: arrays (seeds x films) of per-film values, NaN where a film does not count.
        patients: one id per film (films of one patient are drawn together); default each film its own.
        strata: one label per film, to resample patients within (default: none).
        balanced: each seed's value is the mean of its per-stratum means (a quantity recorded as the mean of the
            two classes' means, such as a Grad-CAM lift), not the mean over all its films; needs STRATA.
    """
    counted, va, vb = _arms(a, b)
    n_seeds, n_films = counted.shape
    mean_of = _seed_means(counted, strata if balanced else None, balanced)

    def value(w):  # per-seed values (or paired differences) under film weights w (broadcast over seeds)
        return mean_of(va, w) - (0.0 if vb is None else mean_of(vb, w))

    e = seed_statistic(value, n_seeds, n_films, patients=patients, strata=strata, n_boot=n_boot, level=level, seed=seed)
    ones = np.ones(n_films)
    return e if b is None else replace(e, p_improve=probability_of_improvement(mean_of(va, ones), mean_of(vb, ones)))


def seed_statistic(
    value, n_seeds: int, n_films: int, *, patients=None, strata=None, n_boot: int = 2000, level: float = 0.95, seed=0
) -> SeedEffect:
    """seed_effect's interval for any per-seed statistic of the films: VALUE(w) gives each seed's value (an array of
    N_SEEDS) under film weights w (1 x N_FILMS; ones: the films as they are), e.g. the smallest of several entries'
    recall gaps minus this entry's, which is no mean over films. Seeds are resampled, and patients within STRATA,
    the same draws for every entry the statistic reads; the two parts combine as in seed_effect. No probability of
    improvement (one statistic, not two arms)."""
    from scipy.stats import norm, t

    per_seed = np.asarray(value(np.ones(n_films)), dtype=float)
    if np.isnan(per_seed).any():
        raise ValueError("a seed has no counted film in some stratum: its balanced mean is undefined")
    rng = np.random.default_rng(seed)
    seed_part = per_seed[rng.integers(0, n_seeds, size=(n_boot, n_seeds))].mean(-1)
    w = _patient_weights(rng, n_boot, *_patient_index(patients, n_films), strata)
    film_part = np.stack([value(w[i : i + 1]).mean() for i in range(n_boot)])
    q = 1 - (1 - level) / 2
    seed_var = t.ppf(q, n_seeds - 1) ** 2 * seed_part.var() * n_seeds / (n_seeds - 1) if n_seeds > 1 else 0.0
    film_var = norm.ppf(q) ** 2 * np.nanvar(film_part)  # a balanced draw that left a stratum empty is skipped
    point, half = float(per_seed.mean()), float(np.sqrt(seed_var + film_var))
    ends, parts = (point - half, point + half), (float(seed_var), float(film_var))
    return SeedEffect(point, *ends, tuple(map(float, per_seed)), None, n_seeds, n_films, *parts)
