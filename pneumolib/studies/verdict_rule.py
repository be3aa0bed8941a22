"""The verdict rule: a claim, its evidence over seeds, and holds / does not hold / cannot tell; flags on a run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..core.stats import SeedEffect, seed_mean
from ..studies.verdict_estimates import (  # noqa: F401 (the verdicts' words)
    BUDGET_MIN_VAL_AUC,
    CANNOT_TELL,
    COHORT,
    COHORT_MEASURED,
    COLLAPSE_SHARE,
    COLLAPSED,
    FAILS,
    HOLDS,
    MAPS_NOT_FAITHFUL,
    MIN_SEEDS,
    MIN_SEEDS_SPREAD,
    NOT_TESTED,
    RANDOM_INIT,
    SEEDS_DISAGREE,
    TOO_FEW_FILMS,
    UNTRAINED,
    Estimate,
    Measure,
    NotMeasured,
    cohort_changes,
)
from ..studies.verdict_films import FilmBook, PerFilm, film_effect, has_films, with_arms
from ..studies.verdict_flags import (  # noqa: F401 (re-exported: the verdicts' flags)
    UNTRAINED_AUC,
    budget,
    budget_rule,
    collapsed,
    faithful_scope,
    maps_faithful,
    maps_uncheckable,
    maps_unfaithful,
    random_init,
    seed_of,
    untrained,
)


@dataclass(frozen=True)
class Claim:
    """One thing the log asserted, the quantity that tests it, and the side of `threshold` it claims.

    A per-film quantity (FILM: a recall, the accuracy, a share of films) is judged on the runs' per-film scores:
    the mean over seeds, and for a comparison (VERSUS: the entry compared with) the mean of the per-seed paired
    difference this minus VERSUS on the same films (VERSUS read with FILM_OTHER when given). Anything else is read
    from each run's metrics by MEASURE. FINDING says, in the log's words, what holding and not holding mean."""

    entry: str
    quote: str  # the log's words
    quantity: str  # what is measured, in words
    direction: str  # ">": the claim holds when the quantity is above threshold; "<": below
    threshold: float
    measure: Measure | None = None  # (this run's metrics, {entry: the paired run's metrics}) -> Estimate
    needs: tuple[str, ...] = ()  # the entries whose runs it compares against
    needs_pretrained: bool = False  # about ImageNet weights: not tested by a run that trained from random init
    gradcam: bool = False  # about Grad-CAM maps: judged only when every run's maps pass their checks (maps_faithful)
    not_testable: str = ""  # why this re-run cannot test the claim at all (said instead of a verdict)
    # a quantity of all seeds together (a spread over seeds): (this entry's runs, {entry: its runs}) -> Estimate
    across_seeds: Callable[[list, dict[str, list]], Estimate] | None = None
    film: PerFilm | None = None
    versus: str = ""
    film_other: PerFilm | None = None
    exact: bool = False  # an exact count per seed (no sampling): decided seed by seed (decide)
    finding: tuple[str, str] = ("", "")  # (when it holds, when it does not), for the entry's plain sentence
    label: str = ""  # the quantity's short name in that sentence ('NORMAL recall')
    # the values the quantity can take, which its printed interval is clipped to (None: a per-film quantity's own,
    # [0, 1] for a share and [-1, 1] for a difference of shares; else unbounded)
    bounds: tuple[float, float] | None = None
    cam_target: str = ""  # the Grad-CAM target whose maps it reads, when not the run's own (run_experiment records it)
    # a MEASURE difference's one-run value (for the probability of improvement); and the same quantity read per film
    # when no mean over films gives it ((runs, reference, FilmBook) -> (SeedEffect, how) or None for the recorded
    # values): a Grad-CAM lift against another entry's (verdict_films.lift_effect), the smallest recall gap (gap_effect)
    arm: Callable[[dict], float] | None = None
    per_film: Callable[[list, dict, FilmBook], tuple[SeedEffect, str] | None] | None = None
    main: bool = False  # the finding the log's entry is about: first in the entry's headline (else its first claim)
    # judged on the records under this reference entry in place of the runs (verdict_estimates.COHORT_MEASURED: the
    # cohort's measurement of the recipe as it was then, which no later render can change), e.g. COHORT_MEASURED
    on_record: str = ""
    # (the judged runs or records) -> what the row shows beside its number (a record's adapted figures), said in its
    # note and its sentence
    beside: Callable[[list[dict[str, Any]]], str] | None = None

    def __post_init__(self):
        if self.versus and self.versus not in self.needs:
            object.__setattr__(self, "needs", (*self.needs, self.versus))
        if self.measure is None and self.film is None and self.across_seeds is None and not self.not_testable:
            raise ValueError(f"claim {self.quote!r}: give a per-film quantity, a measure or a spread")

    @property
    def limits(self) -> tuple[float, float] | None:
        """The parameter range of the quantity (BOUNDS, else a share's [0, 1] or a difference's [-1, 1])."""
        if self.bounds is not None or self.film is None:
            return self.bounds
        return (-1.0, 1.0) if self.versus else (0.0, 1.0)

    @property
    def claimed(self) -> str:
        return f"{self.direction} {self.threshold:g}"

    def read(self, m: dict[str, Any], refs: dict[str, dict[str, Any]]) -> Estimate:
        """One seed's estimate from its recorded metrics (MEASURE, or FILM's recorded counterpart)."""
        if self.measure is not None:
            return self.measure(m, refs)
        this = self.film.recorded(m)
        other = (self.film_other or self.film).recorded(refs[self.versus]) if self.versus else None
        if this is None or (self.versus and other is None):
            raise NotMeasured("scores_test.csv (the quantity re-thresholds each film's P(PNEUMONIA))")
        return this - other if self.versus else this


def verdict(interval: tuple[float, float] | None, direction: str, threshold: float) -> str:
    """'holds' when the whole interval is on the claimed side of the threshold, 'does not hold' when it is all on
    the other side (or on the threshold), 'cannot tell at this n' when it straddles it or there is none."""
    if interval is None or any(x is None or math.isnan(x) for x in interval):
        return CANNOT_TELL
    lo, hi = interval
    if direction == ">":
        return HOLDS if lo > threshold else (FAILS if hi <= threshold else CANNOT_TELL)
    if direction == "<":
        return HOLDS if hi < threshold else (FAILS if lo >= threshold else CANNOT_TELL)
    raise ValueError(f"direction must be '>' or '<', not {direction!r}")


def clip_interval(
    interval: tuple[float, float] | None, bounds: tuple[float, float] | None
) -> tuple[float, float] | None:
    """An interval cut to the values its quantity can take (a recall's interval ends at 1, not 1.02): the t-widened
    interval of a mean near a bound reaches past it. Against a threshold inside the range the verdict is the same
    (an end moves only where it lay beyond a bound, so never across the threshold)."""
    if interval is None or bounds is None:
        return interval
    lo, hi = interval
    return (min(max(lo, bounds[0]), bounds[1]), max(min(hi, bounds[1]), bounds[0]))


def combine(estimates: list[Estimate], min_seeds: int = MIN_SEEDS) -> dict[str, Any]:
    """Mean, range over seeds and one interval for the quantity: the envelope of the per-seed intervals when every
    seed has one (test-set sampling and seed-to-seed variation together), else the range over seeds when there
    are at least `min_seeds` seeds, else none."""
    vals = [e.value for e in estimates]
    out: dict[str, Any] = {
        "n": len(vals),
        "mean": float("nan"),
        "range": None,
        "interval": None,
        "per_seed": all(e.has_interval for e in estimates) and bool(vals),
    }
    if not vals:
        return out
    out["mean"] = sum(vals) / len(vals)
    out["range"] = (min(vals), max(vals))
    if out["per_seed"]:
        out["interval"] = (min(e.lo for e in estimates), max(e.hi for e in estimates))
    elif len(vals) >= min_seeds:
        out["interval"] = out["range"]
    return out


def decide(estimates: list[Estimate], direction: str, threshold: float, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, why) for a quantity measured once per seed.

    With a 95% interval per seed (bootstrap by patient, Wilson, or an exact count): every seed's interval on the
    claimed side -> holds; every one on the other side -> does not hold; some seeds one way and some the other ->
    'seeds disagree'; otherwise some seed's own interval straddles the threshold -> 'too few films'. Without
    per-seed intervals (stress means), the range over at least `min_seeds` seeds decides, and a range across the
    threshold means the seeds disagree."""
    if not estimates:
        return NOT_TESTED, "no runs"
    if all(e.has_interval for e in estimates):
        each = [verdict((e.lo, e.hi), direction, threshold) for e in estimates]
        if all(v == each[0] for v in each) and each[0] != CANNOT_TELL:
            return each[0], ""
        if HOLDS in each and FAILS in each:
            open_ = each.count(CANNOT_TELL)  # every seed is accounted for: the rest straddle the threshold
            return SEEDS_DISAGREE, (
                f"{each.count(HOLDS)} seed(s) hold, {each.count(FAILS)} do not"
                + (f", {open_} straddle{'s' if open_ == 1 else ''} {threshold:g}" if open_ else "")
            )
        return TOO_FEW_FILMS, (f"{each.count(CANNOT_TELL)} of {len(each)} seeds' 95% intervals straddle {threshold:g}")
    vals = [e.value for e in estimates]
    if len(vals) < min_seeds:
        return CANNOT_TELL, f"no sampling interval: needs {min_seeds} or more seeds"
    v = verdict((min(vals), max(vals)), direction, threshold)
    return (
        (
            SEEDS_DISAGREE,
            f"the seeds' values, from {min(vals):.3f} to {max(vals):.3f}, lie on both sides of {threshold:g}",
        )
        if v == CANNOT_TELL
        else (v, "")
    )


def paired_by_seed(this: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """Runs of two entries paired by their seed (runs whose seed the other entry lacks are left out), for paired
    differences between entries.

    Args:
        this: one entry's runs (metrics.json dicts, one per seed).
        base: the entry compared with.

    Returns:
        (run of `this`, run of `base` with the same seed), in `this`'s order."""
    by_seed = {seed_of(b): b for b in base}
    return [(m, by_seed[seed_of(m)]) for m in this if seed_of(m) in by_seed]


def _pairs(this: list[dict], reference: dict[str, list[dict]], needs: tuple[str, ...]):
    """(run, {entry: run}) per seed of `this`; each needed entry's run of the same seed, else each of its runs."""
    for m in this:
        choices: list[dict[str, dict]] = [{}]
        for e in needs:
            runs = reference.get(e) or []
            same = [r for r in runs if seed_of(r) == seed_of(m)] or runs
            choices = [dict(c, **{e: r}) for c in choices for r in same]
        for c in choices:
            yield m, c


def judge(
    claim: Claim,
    metrics_by_seed: list[dict[str, Any]],
    reference: dict[str, list[dict[str, Any]]] | None = None,
    min_seeds: int = MIN_SEEDS,
    book: FilmBook | None = None,
) -> dict[str, Any]:
    """The claim's quantity over all seeds, its interval, and the verdict (with a note when not tested).

    Returns:
        The row: entry, claim, quantity, claimed, n (seeds), mean, range (over seeds), interval, verdict, note;
        and per_seed, p_improve (comparisons), n_films, evidence (what the interval resamples), needed (seeds,
        films) for an undecided one, flags, and the claim's finding/label/direction/threshold for `headline`.
    """
    reference = reference or {}
    row = _blank_row(claim)
    if claim.on_record:  # the record's measurements are the evidence, whatever this render trained
        metrics_by_seed = reference.get(claim.on_record) or []
    note = _not_judged(claim, metrics_by_seed, reference)
    if note:
        row["note"] = note
        _flag_random_init(row, claim, metrics_by_seed)
        return row
    metrics_by_seed, scope = _cohort_scope(claim, metrics_by_seed, reference)
    if claim.gradcam and (maps := maps_unfaithful(claim, metrics_by_seed, reference)):
        kept = faithful_scope(claim.needs, metrics_by_seed, reference, MIN_SEEDS, claim.cam_target)
        kept = kept if len(metrics_by_seed) > 1 else None  # one seed's maps must pass
        if kept is None:
            row.update(maps)
            return row
        metrics_by_seed, reference, faithful = kept
        scope = "; ".join(x for x in (scope, faithful) if x)
    try:
        row.update(_evidence(claim, metrics_by_seed, reference, min_seeds, book))
    except NotMeasured as e:  # 'not recorded: re-run the entry' is said as it is
        row["note"] = e.args[0] if e.args[0].startswith("not recorded") else f"not measured: {e.args[0]}"
        return row
    row["interval"] = clip_interval(row.get("interval"), claim.limits)
    row["beside"] = claim.beside(metrics_by_seed) if claim.beside else ""
    row["note"] = "; ".join(x for x in (row["note"], scope, row["beside"]) if x)
    decision = row["verdict"]
    _flag_untrained(row, decision, metrics_by_seed)
    _flag_collapsed(row, claim, metrics_by_seed, reference)
    _flag_random_init(row, claim, metrics_by_seed)
    return row


def settle(effect: SeedEffect, direction: str, threshold: float) -> tuple[str, str]:
    """(verdict, note) from where a mean over seeds' interval lies against the threshold: holds / does not hold /
    cannot tell, the last with how many seeds or films would decide it at the observed effect (SeedEffect.needed)."""
    side = effect.side(threshold)
    if side == 0:
        return CANNOT_TELL, needed_text(effect.needed(threshold))
    if direction not in "<>":
        raise ValueError(f"direction must be '>' or '<', not {direction!r}")
    return (HOLDS if (side > 0) == (direction == ">") else FAILS), ""


def needed_text(needed: tuple[int | None, int | None] | None) -> str:
    """'about 9 seeds (or 1,400 films per seed) would decide it', from SeedEffect.needed."""
    if needed is None:
        return "the effect sits on the threshold: no count decides it"
    seeds, films = needed
    if seeds and films:
        return f"about {seeds:,} seeds (or {films:,} films per seed) would decide it"
    if seeds:
        return f"about {seeds:,} seeds would decide it (more films alone would not)"
    if films:
        return f"about {films:,} films per seed would decide it (more seeds alone would not)"
    return "neither more seeds nor more films alone would decide it at this effect"


def spread_needed(est: Estimate, n: int, threshold: float) -> tuple[int | None, None] | None:
    """About how many seeds per entry would decide a quantity of all seeds together (a spread over seeds, its
    interval from resampling N seeds) at its observed value: its interval's half-width shrinks as 1/sqrt(seeds).
    More films per seed do not narrow it (None). None when the value sits on the threshold. An estimate."""
    gap, half = abs(est.value - threshold), (est.hi - est.lo) / 2
    if gap < 1e-12 or not math.isfinite(half):
        return None
    return max(n + 1, math.ceil(n * (half / gap) ** 2)), None


def _effect_fields(e: SeedEffect, claim: Claim, evidence: str) -> dict[str, Any]:
    verdict_, note = settle(e, claim.direction, claim.threshold)
    return {
        "n": e.n_seeds,
        "mean": e.point,
        "range": (min(e.per_seed), max(e.per_seed)),
        "interval": (e.low, e.high),
        "per_seed": e.per_seed,
        "p_improve": e.p_improve,
        "n_films": e.n_films,
        "needed": e.needed(claim.threshold) if verdict_ == CANNOT_TELL else None,
        "evidence": evidence,
        "verdict": verdict_,
        "note": note,
    }


def _exact(claim: Claim, estimates: list[Estimate], min_seeds: int) -> dict[str, Any]:
    """An exact count per seed (no films sampled): decided when every seed lies on one side; when the seeds
    disagree and there are enough of them, the mean over seeds decides, its interval from the seeds' spread, with how
    many seeds would decide it, and the note keeps what each seed said."""
    c, (decision, why) = combine(estimates, min_seeds), decide(estimates, claim.direction, claim.threshold)
    if decision != SEEDS_DISAGREE or len(estimates) < min_seeds:
        return {"n": len(estimates), "mean": c["mean"], "range": c["range"], "interval": c["interval"],
                "per_seed": tuple(e.value for e in estimates), "evidence": "exact counts, seed by seed",
                "verdict": decision, "note": why}  # fmt: skip
    out = _effect_fields(seed_mean([e.value for e in estimates]), claim, "exact counts; seeds resampled (t over seeds)")
    out["note"] = "; ".join(x for x in (f"seed by seed: {why}", out["note"]) if x)
    return out


def _evidence(
    claim: Claim, ms: list[dict[str, Any]], reference: dict[str, list[dict]], min_seeds: int, book: FilmBook | None
) -> dict:
    """The row's numbers and verdict: per-film (paired) evidence when every run has its scores (read through BOOK),
    else the seeds' recorded values; a spread over seeds and exact counts keep their own rules. NotMeasured
    propagates."""
    if claim.across_seeds is not None:
        est = claim.across_seeds(ms, {e: reference[e] for e in claim.needs})
        if not est.has_interval:
            return {"n": len(ms), "mean": est.value, "verdict": CANNOT_TELL, "evidence": "spread over seeds",
                    "note": f"a spread over seeds needs {MIN_SEEDS_SPREAD} or more seeds per entry (have {len(ms)})"}  # fmt: skip
        v = verdict((est.lo, est.hi), claim.direction, claim.threshold)
        needed = spread_needed(est, len(ms), claim.threshold) if v == CANNOT_TELL else None
        return {"n": len(ms), "mean": est.value, "interval": (est.lo, est.hi), "evidence": "seeds resampled",
                "verdict": v, "needed": needed, "note": needed_text(needed) if needed is not None or v == CANNOT_TELL else ""}  # fmt: skip
    other = reference.get(claim.versus) if claim.versus else None
    if claim.film is not None and all(map(has_films, ms + (other or []))):
        e = film_effect(claim.film, ms, other, claim.film_other, book=book)
        how = "paired per film, seed i against seed i" if other is not None else "per film"
        return _effect_fields(e, claim, f"{how}; seeds, then patients within class, resampled")
    if claim.per_film is not None and (got := claim.per_film(ms, reference, book)) is not None:
        return _effect_fields(got[0], claim, got[1])
    estimates = [claim.read(m, refs) for m, refs in _pairs(ms, reference, claim.needs)]
    if any(math.isnan(e.value) for e in estimates):
        raise NotMeasured("NaN for some seed")
    if claim.exact:
        return _exact(claim, estimates, min_seeds)
    own = all(e.has_interval for e in estimates)
    if not own and len(estimates) < min_seeds:
        return {"n": len(ms), "mean": sum(e.value for e in estimates) / len(estimates), "verdict": CANNOT_TELL,
                "evidence": "the seeds' values", "note": f"no sampling interval: needs {min_seeds} or more seeds"}  # fmt: skip
    e = with_arms(seed_mean([x.value for x in estimates], [x.half_width for x in estimates] if own else None), claim, ms, reference)  # fmt: skip
    how = "the seeds' values (t over seeds)" + (" and their own intervals" if own else "")
    return _effect_fields(e, claim, how + ("; no per-film scores" if claim.film is not None else ""))


def _blank_row(claim: Claim) -> dict[str, Any]:
    """judge's row before anything is measured: the claim's words, no values, not tested."""
    return {
        "entry": claim.entry,
        "claim": claim.quote,
        "quantity": claim.quantity,
        "claimed": claim.claimed,
        "n": 0,
        "mean": float("nan"),
        "range": None,
        "interval": None,
        "verdict": NOT_TESTED,
        "note": "",
        "per_seed": (),
        "p_improve": None,
        "n_films": 0,
        "evidence": "",
        "needed": None,
        "flags": [],
        "finding": claim.finding,
        "label": claim.label or claim.quantity,
        "direction": claim.direction,
        "threshold": claim.threshold,
        "versus": claim.versus,
        "main": claim.main,
        "beside": "",
        "on_record": claim.on_record,
    }


def _not_judged(claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]) -> str:
    """Why the claim cannot be judged on these runs at all (the row's note), or '' when it can."""
    if not metrics_by_seed:
        return "no measurement of this recipe in the record (docs/external_cohort)" if claim.on_record else "no runs"
    budgets = sorted({budget(m) for m in metrics_by_seed}, key=str)
    if len(budgets) > 1:  # seeds at different budgets are different experiments: never pooled into one verdict
        return "seeds trained at different budgets (epochs, films per epoch, px): " + "; ".join(
            f"{e}x{n or 'all'} @{px}" for e, n, px in budgets
        )
    if claim.not_testable:
        return claim.not_testable
    if claim.needs_pretrained and any(random_init(m) for m in metrics_by_seed):
        return "trained from random init: the claim is about ImageNet weights"
    missing = [e for e in claim.needs if not reference.get(e)]
    if missing == [COHORT]:
        changes = cohort_changes(metrics_by_seed, reference.get(COHORT_MEASURED) or [])
        return (
            "no measurement of this training config on an unseen cohort: the record (docs/external_cohort) holds "
            "other training configs' only" + (f" (since the recipe it last measured: {changes})" if changes else "")
        )
    if missing:
        return f"no run of entry {', '.join(missing)} loaded to compare with"
    return ""


def _cohort_scope(
    claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]
) -> tuple[list[dict[str, Any]], str]:
    """(the runs to judge, what they cover): a cohort measurement is of one seed's model, so a claim that needs one
    judges the measured seeds only, and says so when that is not every seed."""
    if COHORT not in claim.needs:
        return metrics_by_seed, ""
    measured = {seed_of(r) for r in reference[COHORT]}
    scope = (
        (f"measured for seed(s) {', '.join(map(str, sorted(measured, key=str)))} of {len(metrics_by_seed)}")
        if len(measured) < len(metrics_by_seed)
        else ""
    )
    return [m for m in metrics_by_seed if seed_of(m) in measured], scope


def _flag_untrained(row: dict[str, Any], decision: str, metrics_by_seed: list[dict[str, Any]]) -> None:
    """Mark the verdict (DECISION, as decided) when some seed's kept model did not learn (untrained: validation AUC
    near chance); a seed that ranks but calls one class is marked by `_flag_collapsed` instead."""
    young = [str(seed_of(m)) for m in metrics_by_seed if untrained(m)]
    if young:
        row["verdict"] = f"{decision} ({UNTRAINED})"
        row["flags"] = [*row.get("flags", []), UNTRAINED]
        row["note"] = "; ".join(
            x
            for x in (
                row["note"],
                f"seed(s) {', '.join(young)} did not learn (validation AUC under {UNTRAINED_AUC})",
            )
            if x
        )


def _flag_collapsed(
    row: dict[str, Any], claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]
) -> None:
    """Mark the verdict when a judged run, or a run of the same seed it is compared with, collapsed."""
    fallen = [f"seed {seed_of(m)} {collapsed(m)}" for m in metrics_by_seed if collapsed(m)]
    fallen += [
        f"entry {e} seed {seed_of(r)} (compared with) {collapsed(r)}"
        for e in claim.needs
        if e != COHORT
        for r in reference.get(e, [])
        if collapsed(r) and seed_of(r) in {seed_of(m) for m in metrics_by_seed}
    ]
    if fallen:  # a collapse is a finding about training, never hidden inside a verdict about the log's question
        row["verdict"] = f"{row['verdict']} ({COLLAPSED})"
        row["flags"] = [*row.get("flags", []), COLLAPSED]
        row["note"] = "; ".join(x for x in (row["note"], "; ".join(fallen)) if x)


def _flag_random_init(row: dict[str, Any], claim: Claim, metrics_by_seed: list[dict[str, Any]]) -> None:
    """Say in the verdict when the entry asked for ImageNet weights and its runs trained from random init: such a
    verdict is about the recipe without pretraining, and cannot speak for pretraining."""
    from ..studies.catalogue import UnknownExperiment, get_config

    try:
        asked = get_config(claim.entry).pretrained
    except UnknownExperiment:
        return
    if asked and any(random_init(m) for m in metrics_by_seed):
        row["verdict"] = f"{row['verdict']} ({RANDOM_INIT})"
        row["flags"] = [*row.get("flags", []), RANDOM_INIT]
        row["note"] = "; ".join(
            x for x in (row["note"], "trained from random init: it cannot speak for ImageNet pretraining") if x
        )
