"""Notebook 00's "what instead": the levers against over-calling, each measured where this render has its runs.

A lever is a pair of run sets that differ in it: two steps of notebook 10's ablation (RUNS/ablation/STEP/seed{S}),
two of the log's entries (the same transforms for both classes: entry 01 against 02 or 03), or one entry's own
scores cut at two thresholds (nothing trained). Each is measured on the test films both arms scored, seed by seed,
as a paired difference (the lever's arm minus the other) of NORMAL recall and of the share called PNEUMONIA, with
core.stats.seed_effect's interval and probability of improvement. A lever whose runs are absent is said to be."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.evaluate import choose_threshold
from ..studies import catalogue
from ..studies import verdict_rule as V
from .account import THRESHOLD_RULE, Scored, common_films, interval_text, over_seeds, per_film

ABLATION = "notebook 10's ablation"
ENTRIES = "the log's entries"


@dataclass(frozen=True)
class Lever:
    """One lever: the runs with it (THIS), the runs without it (BEFORE), where they come from, and whether it is
    measured by cutting THIS's own scores at the validation threshold instead of 0.5 (BEFORE is then THIS), or at 0.5
    whatever rule THIS's checkpoint carries (AT_HALF: a training lever alone, its threshold rule set aside)."""

    name: str
    this: str
    before: str
    source: str
    rethreshold: bool = False
    at_half: bool = False


LEVERS = (
    Lever("balanced sampler (and Youden's threshold on validation)", "abl_balanced", "baseline", ABLATION),
    Lever("balanced sampler alone: both arms cut at 0.5", "abl_balanced", "baseline", ABLATION, at_half=True),
    Lever(
        f"validation threshold on the log's baseline: the '{THRESHOLD_RULE}' rule instead of 0.5",
        "baseline",
        "baseline",
        "entry 01's scores cut again (nothing trained)",
        rethreshold=True,
    ),
    Lever(
        f"validation threshold: the '{THRESHOLD_RULE}' rule instead of Youden's on shifted validation copies",
        "abl_balanced_threshold",
        "abl_lung_mask",
        ABLATION,
    ),
    Lever("the same transforms for both classes (01) instead of blur on NORMAL only (02)", "01", "02", ENTRIES),
    Lever("the same transforms for both classes (01) instead of blur on PNEUMONIA only (03)", "01", "03", ENTRIES),
    Lever("lung input: the lung-field crop", "abl_lungs", "abl_youden_shifted", ABLATION),
    Lever("lung input: black outside the dilated lung mask, equalised inside", "abl_lung_mask", "abl_lungs", ABLATION),
)


def arm(runs_root: str | Path, name: str, seeds: list[int], profile: str) -> dict[int, Scored]:
    """The finished runs of experiment or ablation step NAME at PROFILE, by seed, with their test scores (and their
    validation scores, None where the run has none: only a cut again needs them)."""
    cfg = catalogue.get_config(name)
    runs = (Scored.load(runs_root, cfg, int(seed), need_val=False) for seed in seeds)
    return {r.seed: r for r in runs if r is not None and r.metrics.get("profile") == profile}


def _absent(lever: Lever, which: list[str]) -> str:
    if lever.source == ABLATION:
        return f"not trained in this render (no finished run of {', '.join(which)} in RUNS/ablation)"
    return f"not rendered: no finished run of {', '.join(which)} in RUNS"


def _calls(runs: list[Scored], films: pd.DataFrame, cut: bool, at_half: bool = False) -> np.ndarray:
    """seeds x films, 1 = called PNEUMONIA: by each run's own decision, at 0.5 (AT_HALF), or (CUT) at the threshold
    the validation rule picks on that run's validation scores."""
    if at_half:
        return (per_film(runs, films, "p_pneumonia") >= 0.5).astype(float)
    if not cut:
        return (per_film(runs, films, "prediction") == "PNEUMONIA").astype(float)
    cuts = [choose_threshold(THRESHOLD_RULE, r.val["y"], r.val["p_pneumonia"]) for r in runs]
    return (per_film(runs, films, "p_pneumonia") >= np.array(cuts)[:, None]).astype(float)


def measure(lever: Lever, runs_root: str | Path, seeds: list[int], profile: str) -> dict[str, Any]:
    """One lever's row: the paired differences (with it minus without) of NORMAL recall and of the share called
    PNEUMONIA over the seeds both arms have, on the test films both scored; 'missing' says why when it cannot be
    measured."""
    a = arm(runs_root, lever.this, seeds, profile)
    if lever.rethreshold:  # the validation threshold needs the validation scores
        a = {s: r for s, r in a.items() if r.val is not None}
    b = a if lever.rethreshold else arm(runs_root, lever.before, seeds, profile)
    row: dict[str, Any] = {"lever": lever.name, "source": lever.source, "this": lever.this, "before": lever.before}
    row["at_half"] = lever.at_half
    paired = sorted(set(a) & set(b))
    if not paired:
        row["missing"] = _absent(
            lever, [n for n, arm_ in ((lever.this, a), (lever.before, b)) if not arm_] or [lever.this, lever.before]
        )
        return row
    ra, rb = [a[s] for s in paired], [b[s] for s in paired]
    films = common_films(ra + rb)
    called_a = _calls(ra, films, cut=lever.rethreshold, at_half=lever.at_half)
    called_b = _calls(rb, films, cut=False, at_half=lever.at_half)
    normal = np.where(films["y"].to_numpy() == 0, 1.0, np.nan)[None, :]  # NaN: a PNEUMONIA film does not count
    row.update(
        seeds=paired,
        normal_recall=over_seeds((1 - called_a) * normal, (1 - called_b) * normal, films=films),
        called=over_seeds(called_a, called_b, films=films),
    )
    budgets = {V.budget(r.metrics) for r in ra + rb}
    row["note"] = "" if len(budgets) == 1 else "the two arms were trained at different budgets"
    return row


def levers(runs_root: str | Path, seeds: list[int], profile: str) -> list[dict[str, Any]]:
    """Every lever of LEVERS, measured on this render's runs (or said to be missing)."""
    return [measure(lv, runs_root, seeds, profile) for lv in LEVERS]


def levers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The levers as one table: what is compared, the seeds, NORMAL recall's change with its 95% interval and the
    probability of improvement, and the change in the share called PNEUMONIA."""
    out = []
    for r in rows:
        compared = f"{r['this']} vs {r['before']}" if r["this"] != r["before"] else f"{r['this']}: cut vs 0.5"
        compared += " (both at 0.5)" if r.get("at_half") else ""
        if r.get("missing"):
            out.append((r["lever"], compared, r["source"], 0, r["missing"], "", "", ""))
            continue
        n, c = r["normal_recall"], r["called"]
        p = "" if n.p_improve is None else f"{n.p_improve:.2f}"
        out.append(
            (
                r["lever"],
                compared,
                r["source"],
                len(r["seeds"]),
                f"{n.point:+.3f} {interval_text(n)}",
                p,
                f"{c.point:+.3f} {interval_text(c)}",
                r["note"],
            )
        )
    cols = [
        "lever",
        "compared",
        "source",
        "seeds",
        "NORMAL recall: change [95%]",
        "P(improvement)",
        "share called PNEUMONIA: change [95%]",
        "note",
    ]
    return pd.DataFrame(out, columns=cols).set_index("lever")


def levers_answer(rows: list[dict[str, Any]]) -> str:
    """The levers' table in words: which raised NORMAL recall (interval above 0), which lowered it, which changed it
    not measurably, and which were not measured in this render."""

    def said(r):
        n = r["normal_recall"]
        return f"{r['lever']} ({n.point:+.3f} {interval_text(n)})"

    measured = [r for r in rows if not r.get("missing")]
    side = {id(r): (0 if np.isnan(r["normal_recall"].low) else r["normal_recall"].side(0.0)) for r in measured}
    groups = [
        ("raised NORMAL recall", [said(r) for r in measured if side[id(r)] > 0]),
        ("lowered it", [said(r) for r in measured if side[id(r)] < 0]),
        (
            "changed it not measurably (the interval straddles 0, or one seed)",
            [said(r) for r in measured if not side[id(r)]],
        ),
    ]
    text = "; ".join(f"{what}: {'; '.join(items)}" for what, items in groups if items)
    text = f"Measured in this render: {text}." if text else "No lever was measured in this render."
    missing = [f"{r['lever']} ({r['missing']})" for r in rows if r.get("missing")]
    return text + (f" Not measured: {'; '.join(missing)}." if missing else "")
