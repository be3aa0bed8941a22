"""The verdict rule: a claim, its estimates over seeds, and holds / does not hold / cannot tell; flags on a run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..studies.verdict_estimates import (  # noqa: F401 (the verdicts' words)
    BUDGET_MIN_VAL_AUC,
    CANNOT_TELL,
    COHORT,
    COLLAPSE_SHARE,
    COLLAPSED,
    FAILS,
    HOLDS,
    MAPS_NOT_FAITHFUL,
    MIN_SEEDS,
    MIN_SEEDS_SPREAD,
    NOT_TESTED,
    SEEDS_DISAGREE,
    TOO_FEW_FILMS,
    UNTRAINED,
    Estimate,
    Measure,
    NotMeasured,
)


@dataclass(frozen=True)
class Claim:
    """One thing the log asserted, the quantity that tests it, and the side of `threshold` it claims."""

    entry: str
    quote: str  # the log's words
    quantity: str  # what is measured, in words
    direction: str  # ">": the claim holds when the quantity is above threshold; "<": below
    threshold: float
    measure: Measure  # (this run's metrics, {entry: the paired run's metrics}) -> Estimate
    needs: tuple[str, ...] = ()  # the entries whose runs it compares against
    needs_pretrained: bool = False  # about ImageNet weights: not tested by a run that trained from random init
    gradcam: bool = False  # about Grad-CAM maps: judged only when every run's maps pass their checks (maps_faithful)
    not_testable: str = ""  # why this re-run cannot test the claim at all (said instead of a verdict)
    # a quantity of all seeds together (a spread over seeds): (this entry's runs, {entry: its runs}) -> Estimate
    across_seeds: Callable[[list, dict[str, list]], Estimate] | None = None

    @property
    def claimed(self) -> str:
        return f"{self.direction} {self.threshold:g}"


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


def budget(m: dict[str, Any]) -> tuple:
    """What a run was trained with: (epochs, training films per epoch, image size)."""
    c = m.get("config") or {}
    return c.get("epochs"), c.get("max_train_images"), c.get("image_size")


UNTRAINED_AUC = 0.75  # validation AUC under this: the kept model ranks the films little better than chance


def untrained(m: dict[str, Any]) -> bool:
    """A run whose kept model did not learn, by validation evidence: its validation AUC is under UNTRAINED_AUC, or it
    collapsed (one class for nearly every validation film). Which epoch was kept does not decide it (regression:
    "EPOCH 1: untrained" was printed beside a test AUC of 0.970). Runs recorded without a validation AUC fall back
    to the old reading: a kept first epoch of several."""
    auc = (m.get("val") or {}).get("auc")
    if auc is None:
        return m.get("best_epoch") == 1 and (budget(m)[0] or 1) > 1
    return auc < UNTRAINED_AUC or bool(collapsed(m))


def collapsed(m: dict[str, Any]) -> str:
    """'' for a run that trained; else why it collapsed: its kept checkpoint puts COLLAPSE_SHARE or more of the
    validation films in one class at its own threshold (the log's symptom as a training failure: a verdict that
    reads such a seed reads a model that did not learn). Runs recorded before 'val' was kept are read from their
    kept epoch's validation share at 0.5."""
    val = m.get("val") or {}
    if "confusion_matrix" in val:
        cm = val["confusion_matrix"]
        n = sum(map(sum, cm))
        share, how = ((cm[0][1] + cm[1][1]) / n if n else float("nan")), "at its threshold"
    else:
        epoch = next((h for h in m.get("history") or [] if h.get("epoch") == m.get("best_epoch")), {})
        share, how = epoch.get("val_share_pneumonia", float("nan")), "at 0.5"
    if math.isnan(share):
        return ""
    for cls, x in (("PNEUMONIA", share), ("NORMAL", 1 - share)):
        if x >= COLLAPSE_SHARE:
            return f"calls {x:.0%} of validation films {cls} {how}"
    return ""


def budget_rule(baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """Does this budget train? The baseline's seeds must all avoid collapse (`collapsed`) and reach validation AUC
    BUDGET_MIN_VAL_AUC; the series is rendered at the smallest budget that passes (the notebooks state it).

    Args:
        baseline: the log's baseline runs' metrics (one per seed), all at one budget.

    Returns:
        {"passes": bool, "rows": per seed (seed, val AUC, kept epoch, collapse), "budget": (epochs, films, px)}.
    """
    rows = []
    for m in baseline:
        auc = (m.get("val") or {}).get("auc")
        if auc is None:  # recorded before 'val' was kept: the kept epoch's validation AUC
            auc = next(
                (h.get("val_auc") for h in m.get("history") or [] if h.get("epoch") == m.get("best_epoch")),
                float("nan"),
            )
        rows.append(
            {"seed": _seed(m), "val_auc": float(auc), "kept_epoch": m.get("best_epoch"), "collapse": collapsed(m)}
        )
    budgets = {budget(m) for m in baseline}
    ok = (
        bool(rows) and len(budgets) == 1 and all(r["val_auc"] >= BUDGET_MIN_VAL_AUC and not r["collapse"] for r in rows)
    )
    return {"passes": ok, "rows": rows, "budget": budgets.pop() if len(budgets) == 1 else None}


def _seed(m: dict[str, Any]) -> Any:
    return (m.get("config") or {}).get("seed")


def paired_by_seed(this: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """Runs of two entries paired by their seed (runs whose seed the other entry lacks are left out), for paired
    differences between entries.

    Args:
        this: one entry's runs (metrics.json dicts, one per seed).
        base: the entry compared with.

    Returns:
        (run of `this`, run of `base` with the same seed), in `this`'s order."""
    by_seed = {_seed(b): b for b in base}
    return [(m, by_seed[_seed(m)]) for m in this if _seed(m) in by_seed]


def _pairs(this: list[dict], reference: dict[str, list[dict]], needs: tuple[str, ...]):
    """(run, {entry: run}) per seed of `this`; each needed entry's run of the same seed, else each of its runs."""
    for m in this:
        choices: list[dict[str, dict]] = [{}]
        for e in needs:
            runs = reference.get(e) or []
            same = [r for r in runs if _seed(r) == _seed(m)] or runs
            choices = [dict(c, **{e: r}) for c in choices for r in same]
        for c in choices:
            yield m, c


def maps_faithful(m: dict[str, Any]) -> bool | None:
    """Whether a run's Grad-CAM maps passed their checks (cam.maps_pass: ROAD above a random map with a 95% interval
    by patient, changed by model randomisation); None when the run has no such record."""
    v = (m.get("gradcam") or {}).get("maps_pass")
    return None if v is None else bool(v)


def random_init(m: dict[str, Any]) -> bool:
    """Did this run ask for ImageNet weights and train from random init instead?"""
    return "unavailable" in str(m.get("weights", "")) or (m.get("config") or {}).get("pretrained") is False


def judge(
    claim: Claim,
    metrics_by_seed: list[dict[str, Any]],
    reference: dict[str, list[dict[str, Any]]] | None = None,
    min_seeds: int = MIN_SEEDS,
) -> dict[str, Any]:
    """The claim's quantity over all seeds, its interval, and the verdict (with a note when not tested)."""
    reference = reference or {}
    row = _blank_row(claim)
    note = _not_judged(claim, metrics_by_seed, reference)
    if note:
        row["note"] = note
        return row
    metrics_by_seed, scope = _cohort_scope(claim, metrics_by_seed, reference)
    if claim.gradcam:
        maps = _maps_unfaithful(claim, metrics_by_seed, reference)
        if maps:
            row.update(maps)
            return row
    try:
        estimates = _estimates(claim, metrics_by_seed, reference)
    except NotMeasured as e:
        row["note"] = f"not measured: {e.args[0]}"
        return row
    if any(math.isnan(e.value) for e in estimates):
        row["note"] = "not measured: NaN for some seed"
        return row
    c = combine(estimates, min_seeds)
    decision, why = decide(estimates, claim.direction, claim.threshold, min_seeds)
    row.update(
        n=len(metrics_by_seed), mean=c["mean"], range=c["range"], interval=c["interval"], verdict=decision, note=why
    )
    if claim.across_seeds is not None and not estimates[0].has_interval:
        row["verdict"] = CANNOT_TELL
        row["note"] = (
            f"a spread over seeds needs {MIN_SEEDS_SPREAD} or more seeds per entry (have {len(metrics_by_seed)})"
        )
    if scope:
        row["note"] = "; ".join(x for x in (row["note"], scope) if x)
    _flag_untrained(row, decision, metrics_by_seed)
    _flag_collapsed(row, claim, metrics_by_seed, reference)
    return row


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
    }


def _not_judged(claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]) -> str:
    """Why the claim cannot be judged on these runs at all (the row's note), or '' when it can."""
    if not metrics_by_seed:
        return "no runs"
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
        return (
            "no measurement of this training config on an unseen cohort: the record "
            "(docs/external_cohort) holds other recipes' only"
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
    measured = {_seed(r) for r in reference[COHORT]}
    scope = (
        (f"measured for seed(s) {', '.join(map(str, sorted(measured, key=str)))} of {len(metrics_by_seed)}")
        if len(measured) < len(metrics_by_seed)
        else ""
    )
    return [m for m in metrics_by_seed if _seed(m) in measured], scope


def _maps_unfaithful(
    claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]
) -> dict[str, str] | None:
    """For a Grad-CAM claim: the row's verdict and note when some run's maps fail their checks or were not checked;
    None when every run's maps pass."""
    runs = list(metrics_by_seed) + [r for e in claim.needs for r in reference.get(e, [])]
    checks = [maps_faithful(m) for m in runs]
    if any(c is False for c in checks):
        return {
            "verdict": MAPS_NOT_FAITHFUL,
            "note": f"{sum(c is False for c in checks)} of {len(runs)} runs' maps "
            "fail their checks (ROAD not above a random map, or unchanged by randomisation)",
        }
    if any(c is None for c in checks):
        return {"note": "the maps' checks (ROAD, randomisation) were not run"}
    return None


def _estimates(claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]) -> list:
    """The claim's estimates: one per seed (paired with the needed entries' runs), or one of all seeds together for a
    spread over seeds; NotMeasured propagates."""
    if claim.across_seeds is not None:
        return [claim.across_seeds(metrics_by_seed, {e: reference[e] for e in claim.needs})]
    return [claim.measure(m, refs) for m, refs in _pairs(metrics_by_seed, reference, claim.needs)]


def _flag_untrained(row: dict[str, Any], decision: str, metrics_by_seed: list[dict[str, Any]]) -> None:
    """Mark the verdict (DECISION, as decided) when some seed's kept model did not learn (untrained)."""
    young = [str(_seed(m)) for m in metrics_by_seed if untrained(m)]
    if young:
        row["verdict"] = f"{decision} ({UNTRAINED})"
        row["note"] = "; ".join(
            x
            for x in (
                row["note"],
                f"seed(s) {', '.join(young)} did not learn (validation AUC under {UNTRAINED_AUC} or one class)",
            )
            if x
        )


def _flag_collapsed(
    row: dict[str, Any], claim: Claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]
) -> None:
    """Mark the verdict when a judged run, or a run of the same seed it is compared with, collapsed."""
    fallen = [f"seed {_seed(m)} {collapsed(m)}" for m in metrics_by_seed if collapsed(m)]
    fallen += [
        f"entry {e} seed {_seed(r)} (compared with) {collapsed(r)}"
        for e in claim.needs
        if e != COHORT
        for r in reference.get(e, [])
        if collapsed(r) and _seed(r) in {_seed(m) for m in metrics_by_seed}
    ]
    if fallen:  # a collapse is a finding about training, never hidden inside a verdict about the log's question
        row["verdict"] = f"{row['verdict']} ({COLLAPSED})"
        row["note"] = "; ".join(x for x in (row["note"], "; ".join(fallen)) if x)
