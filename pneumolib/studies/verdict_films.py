"""Per-film evidence for a verdict: each run's test scores (scores_test.csv), one quantity per film, paired by seed.

A claim about a recall, the accuracy or a share of films is a mean over films, so its evidence is the films
themselves: seeds x films arrays, and for a comparison the same films scored by both entries' runs of the same
seed, which `core.stats.seed_effect` turns into a mean over seeds with a two-level (seeds, patients) interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.config import CLASSES
from ..core.io import RecordError
from ..core.runs import RunDir
from ..core.scores import read_scores
from ..core.stats import SeedEffect, probability_of_improvement, seed_effect, seed_statistic
from ..studies.verdict_estimates import NotMeasured, gap, lung_lift, metric, predicted_pneumonia, share

WHATS = ("correct", "called PNEUMONIA", "p>=0.99", "0.4<=p<=0.7", "extreme")

BOOT = 2000  # the two-level bootstrap's resamples


@dataclass(frozen=True)
class PerFilm:
    """A quantity that is a mean over films of a 1/0 value: WHAT per film (right, called PNEUMONIA, or its
    P(PNEUMONIA) in a band), over the films of class CLS only (None: every film), with predictions re-made at
    THRESHOLD from P(PNEUMONIA) (None: the run's own recorded predictions)."""

    what: str
    cls: str | None = None
    threshold: float | None = None

    def __post_init__(self):
        if self.what not in WHATS or self.cls not in (None, *CLASSES):
            raise ValueError(f"PerFilm({self.what!r}, {self.cls!r}): what must be one of {WHATS}")

    def values(self, films: dict[str, np.ndarray]) -> np.ndarray:
        """One value per film (NaN where the film does not count)."""
        p, y = films["p"], films["label"]
        pred = films["pred"] if self.threshold is None else (p >= self.threshold).astype(int)
        v = {
            "correct": pred == y,
            "called PNEUMONIA": pred == 1,
            "p>=0.99": p >= 0.99,
            "0.4<=p<=0.7": (p >= 0.4) & (p <= 0.7),
            "extreme": (p < 0.05) | (p > 0.95),
        }[self.what].astype(float)
        if self.cls is not None:
            v[y != CLASSES.index(self.cls)] = np.nan
        return v

    def recorded(self, m: dict[str, Any]):
        """The same quantity from a run's recorded metrics (an Estimate), for runs without per-film scores; None when
        the metrics cannot give it (a re-made threshold)."""
        if self.threshold is not None:
            return None
        key = {
            ("correct", "NORMAL"): "specificity",
            ("correct", "PNEUMONIA"): "sensitivity",
            ("correct", None): "accuracy",
        }
        if (self.what, self.cls) in key:
            return metric(m, key[(self.what, self.cls)])
        if self.what == "called PNEUMONIA" and self.cls is None:
            return predicted_pneumonia(m)
        name = "extreme (p<0.05 or p>0.95)" if self.what == "extreme" else self.what
        return share(m, name, cls=self.cls)


def has_films(m: dict[str, Any]) -> bool:
    """Whether the run's folder (metrics' 'run_dir') holds its per-film test scores."""
    d = m.get("run_dir")
    return bool(d) and RunDir(d).scores_test.is_file()


def films(m: dict[str, Any]) -> dict[str, np.ndarray]:
    """A run's test films from RUN_DIR/scores_test.csv (read by core.scores.read_scores): path, patient, label
    (1 = PNEUMONIA), p (P(PNEUMONIA)) and pred (the run's recorded prediction)."""
    if not has_films(m):
        raise NotMeasured("scores_test.csv (per-film test scores in the run folder, metrics' run_dir)")
    try:
        df = read_scores(RunDir(m["run_dir"]).scores_test, split="test")
    except RecordError as e:
        raise NotMeasured(str(e)) from None
    return {
        "path": df["path"].to_numpy(dtype=object),
        "patient": df["patient"].to_numpy(dtype=object),
        "label": df["y"].to_numpy(),
        "p": df["p_pneumonia"].to_numpy(),
        "pred": df["called"].to_numpy(),
    }


class FilmBook:
    """The runs' test films, each run's file read once however many claims use it: the caller (judge_entry, the
    summary) makes one book for the runs it judges and passes it down; nothing is kept beyond it."""

    def __init__(self):
        self._films: dict[str, dict[str, np.ndarray]] = {}

    def films(self, m: dict[str, Any]) -> dict[str, np.ndarray]:
        key = str(m.get("run_dir"))
        if key not in self._films:
            self._films[key] = films(m)
        return self._films[key]

    def lifts(self, m: dict[str, Any]) -> dict[str, np.ndarray] | None:
        key = "lifts:" + str(m.get("run_dir"))
        if key not in self._films:
            self._films[key] = lifts(m)
        return self._films[key]


def lifts(m: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """A run's per-film Grad-CAM lung lifts (its own P(PNEUMONIA)-target maps: path, patient, label, lift; NaN where
    the lung mask failed its check) from RUN_DIR/explanation.npz, when that file was computed from the run's
    checkpoint as it is now; None otherwise (no such file, another checkpoint's, or unreadable)."""
    from ..analysis.cam_explanation import Explanation
    from ..core.runs import checkpoint_key

    run = RunDir(m["run_dir"]) if m.get("run_dir") else None
    if run is None or not run.explanation.is_file() or not run.checkpoint.is_file():
        return None
    try:
        expl, key = Explanation.load(run.explanation, pixels=False)  # the per-film numbers only
    except ValueError:
        return None
    if not key or key.get("checkpoint") != checkpoint_key(run.checkpoint):
        return None
    lift = np.asarray(expl.lung_lift, float)
    return {
        "path": np.array([str(x.path) for x in expl.samples], dtype=object),
        "patient": np.array([x.patient for x in expl.samples], dtype=object),
        "label": np.array([x.label for x in expl.samples]),
        "lift": np.where(np.isfinite(lift), lift, np.nan),
    }


def _seed(m: dict[str, Any]) -> Any:
    return (m.get("config") or {}).get("seed")


def film_arrays(
    q: PerFilm,
    runs: list[dict[str, Any]],
    other: list[dict[str, Any]] | None = None,
    q_other: PerFilm | None = None,
    book: FilmBook | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """(A, B, patients, labels): seeds x films arrays of Q over the films every run scored, in the first run's
    order; with OTHER, B holds its run of the same seed (seeds the other entry lacks are left out), read with
    Q_OTHER (default Q). BOOK: the caller's already-read films (default: read here)."""
    book = book or FilmBook()
    pairs = [(m, None) for m in runs]
    if other is not None:
        by_seed = {_seed(b): b for b in other}
        pairs = [(m, by_seed[_seed(m)]) for m in runs if _seed(m) in by_seed]
    if not pairs:
        raise NotMeasured("no seed that both entries ran")
    a_f = [book.films(m) for m, _ in pairs]
    b_f = [book.films(b) for _, b in pairs] if other is not None else []
    keep, order = _common_films(a_f[0], a_f + b_f)
    if not keep:
        raise NotMeasured("no test film that every run scored")
    a = _matrix(a_f, order, q.values)
    b = _matrix(b_f, order, (q_other or q).values) if other is not None else None
    return a, b, a_f[0]["patient"][keep], a_f[0]["label"][keep]


def _common_films(first: dict[str, np.ndarray], tables: list[dict[str, np.ndarray]]) -> tuple[list[int], list]:
    """(indices in FIRST, paths in that order) of the films every one of TABLES holds (each a dict with 'path')."""
    common = set(first["path"]).intersection(*(set(f["path"]) for f in tables))
    keep = [i for i, p in enumerate(first["path"]) if p in common]
    return keep, list(first["path"][keep])


def _matrix(tables: list[dict[str, np.ndarray]], order: list, value) -> np.ndarray:
    """Seeds x films: VALUE(table) of each table, its films put in ORDER (paths)."""
    rows = []
    for f in tables:
        at = {p: i for i, p in enumerate(f["path"])}
        rows.append(value(f)[np.array([at[x] for x in order])])
    return np.stack(rows)


def film_effect(
    q: PerFilm,
    runs: list[dict[str, Any]],
    other: list[dict[str, Any]] | None = None,
    q_other: PerFilm | None = None,
    n_boot: int = BOOT,
    book: FilmBook | None = None,
) -> SeedEffect:
    """The mean over seeds of Q (or of Q minus OTHER's Q_OTHER, seed i against seed i on the same films), with
    seed_effect's interval: seeds resampled, then patients within class."""
    a, b, patients, labels = film_arrays(q, runs, other, q_other, book)
    return seed_effect(a, b, patients=patients, strata=labels, n_boot=n_boot)


def balanced_effect(
    runs: list[dict[str, Any]], other: list[dict[str, Any]], n_boot: int = BOOT, book: FilmBook | None = None
) -> SeedEffect:
    """Balanced accuracy (the mean of the two recalls), this minus OTHER, seed i against seed i on the same films:
    each film's 1/0 'right' weighted by films / (2 x its class's films), so that the mean over films is the mean of
    the recalls, with seed_effect's interval (seeds, then patients within class)."""
    a, b, patients, labels = film_arrays(PerFilm("correct"), runs, other, book=book)
    counts = {c: int((labels == c).sum()) for c in np.unique(labels)}
    if len(counts) < 2:
        raise NotMeasured("balanced accuracy needs test films of both classes")
    w = np.array([len(labels) / (2 * counts[c]) for c in labels])
    return seed_effect(a * w, b * w, patients=patients, strata=labels, n_boot=n_boot)


def with_arms(e: SeedEffect, claim, runs: list[dict[str, Any]], reference: dict[str, list[dict]]) -> SeedEffect:
    """A comparison computed from the seeds' recorded values (a Claim.measure difference, such as a Grad-CAM lift
    against another entry's) with its probability of improvement, as the per-film comparisons have it: the share
    of seed pairs in which this entry's one-run value (claim.arm) beats the compared entry's (claim.needs[0]).
    Unchanged for a claim without an arm."""
    from dataclasses import replace

    other = reference.get(claim.needs[0]) if claim.arm is not None and claim.needs else None
    if not other:
        return e
    seeds = {_seed(m) for m in runs}
    try:  # the compared entry's runs of the judged seeds, as the difference pairs them
        a = [claim.arm(m) for m in runs]
        b = [claim.arm(r) for r in other if _seed(r) in seeds]
    except NotMeasured:
        return e
    a, b = [x for x in a if x == x], [x for x in b if x == x]  # a NaN value is no seed's win or loss
    return replace(e, p_improve=probability_of_improvement(a, b)) if a and b else e


def lift_effect(
    runs: list[dict[str, Any]], other: list[dict[str, Any]], n_boot: int = BOOT, book: FilmBook | None = None
) -> SeedEffect | None:
    """The Grad-CAM lung lift, this entry minus OTHER, seed i against seed i on the same Grad-CAM films (the first
    films per class of the test split, the same for every run), each seed's lift the mean of its two classes' means
    (seed_effect balanced by class), with seed_effect's interval: seeds, then patients within class, the same
    patients for both arms. Used only where it reproduces every seed's recorded difference (the films both arms
    count are those each recorded its lift over); None otherwise, or when some run's per-film lifts are not kept
    for its checkpoint: the caller then reads the recorded values."""
    book = book or FilmBook()
    by_seed = {_seed(b): b for b in other}
    pairs = [(m, by_seed[_seed(m)]) for m in runs if _seed(m) in by_seed]
    got = [(book.lifts(m), book.lifts(b)) for m, b in pairs]
    if not got or any(x is None or y is None for x, y in got):
        return None
    first = got[0][0]
    keep, order = _common_films(first, [f for pair in got for f in pair])
    if not keep or len(set(first["label"][keep])) < 2:
        return None
    a, b = (_matrix([pair[k] for pair in got], order, lambda f: f["lift"]) for k in (0, 1))
    labels = first["label"][keep]
    try:
        e = seed_effect(a, b, patients=first["patient"][keep], strata=labels, n_boot=n_boot, balanced=True)
    except ValueError:  # a seed with no counted film of a class: the recorded values decide
        return None
    try:
        recorded = [lung_lift(m).value - lung_lift(r).value for m, r in pairs]
    except NotMeasured:
        return None
    if not np.allclose(e.per_seed, recorded, atol=1e-6, equal_nan=False):
        return None  # the films both arms count are not those each recorded its lift over: the recorded values decide
    return e


def gap_effect(
    runs: list[dict[str, Any]],
    reference: dict[str, list[dict[str, Any]]],
    entries: tuple[str, ...],
    n_boot: int = BOOT,
    book: FilmBook | None = None,
) -> SeedEffect | None:
    """The smallest recall gap (|PNEUMONIA recall - NORMAL recall|) of ENTRIES minus this entry's, seed i of every
    entry on the same test films, each gap read from the films under the bootstrap's weights (seed_statistic:
    seeds, then patients within class, the same draws for every entry). Used only where it reproduces every seed's
    recorded value; None otherwise, or when some run has no per-film scores or no seed ran in every entry: the
    caller then reads the recorded values."""
    book = book or FilmBook()
    others = [{_seed(b): b for b in reference.get(e) or []} for e in entries]
    rows = [[m, *(o[_seed(m)] for o in others)] for m in runs if all(_seed(m) in o for o in others)]
    if not rows or not all(has_films(x) for row in rows for x in row):
        return None
    tables = [[book.films(x) for x in row] for row in rows]
    keep, order = _common_films(tables[0][0], [t for row in tables for t in row])
    labels = tables[0][0]["label"][keep]
    if not keep or len(set(labels)) < 2:
        return None
    right = [_matrix([row[k] for row in tables], order, PerFilm("correct").values) for k in range(len(entries) + 1)]
    masks = [(labels == c).astype(float) for c in (0, 1)]

    def gaps(r, w):  # each seed's |PNEUMONIA recall - NORMAL recall| under film weights w
        normal, pneumonia = ((r * m * w).sum(-1) / (m * w).sum(-1) for m in masks)
        return np.abs(pneumonia - normal)

    def value(w):
        return np.min([gaps(r, w) for r in right[1:]], axis=0) - gaps(right[0], w)

    patients = tables[0][0]["patient"][keep]
    e = seed_statistic(value, len(rows), len(keep), patients=patients, strata=labels, n_boot=n_boot)
    try:
        recorded = [min(gap(o).value for o in row[1:]) - gap(row[0]).value for row in rows]
    except NotMeasured:
        return None
    return e if np.allclose(e.per_seed, recorded, atol=1e-6) else None
