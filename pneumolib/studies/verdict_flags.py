"""Flags on a run that a verdict carries: the budget it trained at, whether it learned or collapsed, its maps' checks."""

from __future__ import annotations

import math
from typing import Any

from ..core.config import CLASSES
from ..studies.verdict_estimates import BUDGET_MIN_VAL_AUC, COLLAPSE_SHARE, MAPS_NOT_FAITHFUL


def budget(m: dict[str, Any]) -> tuple:
    """What a run was trained with: (epochs, training films per epoch, image size)."""
    c = m.get("config") or {}
    return c.get("epochs"), c.get("max_train_images"), c.get("image_size")


UNTRAINED_AUC = 0.75  # validation AUC under this: the kept model ranks the films little better than chance


def untrained(m: dict[str, Any]) -> bool:
    """A run whose kept model did not learn, by validation evidence: its validation AUC is under UNTRAINED_AUC (it
    ranks the films little better than chance). Which epoch was kept does not decide it (regression: "EPOCH 1:
    untrained" was printed beside a test AUC of 0.970), nor does a collapse: a model that ranks well but calls one
    class for nearly every film is collapsed at its cut (`collapsed`), a different failure (regression: entry 02
    seed 4, validation AUC 0.901, was called untrained for calling 99.8% of validation films PNEUMONIA). Runs
    recorded without a validation AUC are read from their kept epoch's, and without that from the old reading: a
    kept first epoch of several."""
    auc = (m.get("val") or {}).get("auc")
    if auc is None:
        auc = next((h.get("val_auc") for h in m.get("history") or [] if h.get("epoch") == m.get("best_epoch")), None)
    if auc is None:
        return m.get("best_epoch") == 1 and (budget(m)[0] or 1) > 1
    return auc < UNTRAINED_AUC


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
            {"seed": seed_of(m), "val_auc": float(auc), "kept_epoch": m.get("best_epoch"), "collapse": collapsed(m)}
        )
    budgets = {budget(m) for m in baseline}
    ok = (
        bool(rows) and len(budgets) == 1 and all(r["val_auc"] >= BUDGET_MIN_VAL_AUC and not r["collapse"] for r in rows)
    )
    return {"passes": ok, "rows": rows, "budget": budgets.pop() if len(budgets) == 1 else None}


def seed_of(m: dict[str, Any]) -> Any:
    """The seed a run trained with (its config's)."""
    return (m.get("config") or {}).get("seed")


def _checks_record(m: dict[str, Any], target: str = "") -> dict[str, Any]:
    """The checks of a run's maps for TARGET: its own P(PNEUMONIA)-target maps' ('gradcam') when TARGET is empty,
    else that target's ('gradcam_by_target', target_maps.other_targets); {} when not recorded."""
    own = m.get("gradcam") or {}
    if not _other(target) or own.get("target") == target:
        return own
    return (m.get("gradcam_by_target") or {}).get(target) or {}


def _other(target: str) -> str:
    """TARGET when it is not the runs' own Grad-CAM target (every run's own maps are P(PNEUMONIA)'s), else ''."""
    return "" if target in ("", CLASSES[1]) else target


def maps_faithful(m: dict[str, Any], target: str = "") -> bool | None:
    """Whether a run's Grad-CAM maps (for TARGET: another target's, such as 09's NORMAL-target maps; default the run's
    own) passed their checks (cam.maps_pass: ROAD above a random map with a 95% interval by patient, changed by model
    randomisation); None when the run has no such record."""
    if maps_uncheckable(m, target):  # a record written before the ROAD rule knew a near-collapse: cannot check
        return None
    v = _checks_record(m, target).get("maps_pass")
    return None if v is None else bool(v)


def maps_uncheckable(m: dict[str, Any], target: str = "") -> bool:
    """Did a run's maps' checks (for TARGET, as maps_faithful) run and answer 'cannot check'? ROAD over a model
    whose output did not move under its removals (a collapsed one) measures nothing (cam_checks.maps_pass: None, the
    record's ROAD 'degenerate'), which is neither a pass nor a fail, nor a check that was not run."""
    from ..analysis.cam_checks import road_degenerate, road_of

    return road_degenerate(road_of(_checks_record(m, target)))


def random_init(m: dict[str, Any]) -> bool:
    """Did this run ask for ImageNet weights and train from random init instead?"""
    return "unavailable" in str(m.get("weights", "")) or (m.get("config") or {}).get("pretrained") is False


def maps_unfaithful(
    claim, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict]]
) -> dict[str, str] | None:
    """For a Grad-CAM claim: the row's verdict and note when some run's maps fail their checks, cannot be checked
    (the checks ran over a constant model output: maps_uncheckable) or were not checked; None when every run's maps
    pass."""
    runs = list(metrics_by_seed) + [r for e in claim.needs for r in reference.get(e, [])]
    checks = [maps_faithful(m, claim.cam_target) for m in runs]  # the maps the claim reads: its target's
    if any(c is False for c in checks):
        return {
            "verdict": MAPS_NOT_FAITHFUL,
            "note": f"{sum(c is False for c in checks)} of {len(runs)} runs' maps "
            "fail their checks (ROAD not above a random map, or unchanged by randomisation)",
        }
    if any(c is None for c in checks):
        constant = sum(c is None and maps_uncheckable(m, claim.cam_target) for m, c in zip(runs, checks))
        unrun = sum(c is None for c in checks) - constant
        said = [
            f"{constant} of {len(runs)} runs' maps cannot be checked: the checks ran, but the model's output stayed "
            "constant under ROAD's removals (a collapsed model), so ROAD has nothing to measure"
            if constant
            else "",
            _unrun(unrun, len(runs), _other(claim.cam_target)) if unrun else "",
        ]
        return {"note": "; ".join(x for x in said if x)}
    return None


def _unrun(unrun: int, n: int, target: str) -> str:
    if target:  # another target's maps (09's NORMAL-target): recorded with their checks since they are judged by them
        return f"not recorded: re-run the entry ({unrun} of {n} runs lack their {target}-target maps' checks)"
    return f"{unrun} of {n} runs' maps' checks (ROAD, randomisation) were not run"


def faithful_scope(
    needs: tuple[str, ...],
    runs: list[dict[str, Any]],
    reference: dict[str, list[dict]],
    min_seeds: int,
    target: str = "",
) -> tuple[list[dict[str, Any]], dict[str, list[dict]], str] | None:
    """For a Grad-CAM claim over several seeds: the seeds whose maps pass their checks, with each compared entry's run
    of the same seed passing too (only those maps are evidence of what the model uses), as (runs, reference cut to
    those seeds, a note naming who was left out and why). None when fewer than min(len(runs), MIN_SEEDS) seeds
    remain: then the maps, not the claim, are what the verdict reports (one seed must pass alone, three of five).
    Dropping a seed whose maps failed judges the claim on the models whose maps can be read, and says so: requiring
    every map to pass made a Grad-CAM claim harder to decide the more seeds were trained. TARGET: the maps the claim
    reads, when not the runs' own (maps_faithful)."""

    def ok(m: dict[str, Any]) -> bool:
        s = seed_of(m)
        return maps_faithful(m, target) is True and all(
            any(seed_of(r) == s and maps_faithful(r, target) is True for r in reference.get(e) or []) for e in needs
        )

    kept = [m for m in runs if ok(m)]
    if len(kept) < min(len(runs), min_seeds) or not kept:
        return None
    seeds = {seed_of(m) for m in kept}
    cut = {e: [r for r in rs if seed_of(r) in seeds] if e in needs else rs for e, rs in reference.items()}
    left = [str(seed_of(m)) for m in runs if not ok(m)]
    note = (
        f"judged on the {len(kept)} of {len(runs)} seeds whose maps pass their checks"
        + (" (and the compared entry's maps of the same seed)" if needs else "")
        + f"; seed{'s' if len(left) > 1 else ''} {', '.join(left)} left out"
    )
    return kept, cut, note
