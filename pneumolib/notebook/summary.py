"""Notebook 00's tables: every claim of the log judged, and the log's own questions answered.

Computed from the series' finished runs (nothing is trained here; an entry whose runs are missing is said to be).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..studies import verdicts as V
from ..studies.catalogue import LOG_ENTRIES, REGISTRY
from .helpers import cohort_measurements, cohort_recipes, cohort_record, fmt, span
from .series import Series, load_matched_baseline, load_runs


def notebook_file(entry: str) -> str:
    """The notebook of an entry ('01_2024-05-13_baseline.ipynb'), found in the repository's notebooks/ folder."""
    from pathlib import Path

    here = Path(__file__).resolve().parents[2] / "notebooks"
    found = sorted(here.glob(f"{entry}_*.ipynb"))
    return found[0].name if found else f"{entry}.ipynb"


MATCHED = "matched_baseline"  # the key notebook 10's claims compare with (verdicts' `needs`)


def all_runs(series: Series) -> dict[str, list[dict[str, Any]]]:
    """Every entry's finished runs at this series' profile and seeds (metrics.json), by entry, and under
    'matched_baseline' the log's baseline trained at the recipe's budget (notebook 10's anchor pair), so that the
    recipe's claims and its like-for-like comparison read the same runs as notebook 10."""
    runs = load_runs([c.entry for c in REGISTRY.values()], series)
    runs[MATCHED] = load_matched_baseline(series)
    return runs


def claims_table(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every claim judged (verdicts.judge) on the entry's runs, with the runs of the entries it compares with."""
    rows = []
    for entry, claims in V.CLAIMS.items():
        reference = {e: runs.get(e, []) for c in claims for e in c.needs if e in runs}
        if any(V.COHORT in c.needs for c in claims):
            reference[V.COHORT] = V.cohort_references(cohort_recipes(), runs.get(entry, []))
        for c in claims:
            r = V.judge(c, runs.get(entry, []), reference)
            rows.append(dict(r, notebook=notebook_file(entry)))
    return rows


def show_claims(rows: list[dict[str, Any]], n_seeds: int, budget: str) -> None:
    """The one table (markdown, so the notebook links work) and the headline box above it, updated in place."""
    from IPython.display import Markdown, display, update_display

    lines = [
        "| entry | the log's claim | verdict | deciding number: mean over seeds [95% interval envelope] | "
        "seeds | where |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        number = (
            f"{r['quantity']}: {fmt(r['mean'])} {span(r['interval']) or '[no interval]'} (holds if {r['claimed']})"
            if r["n"]
            else f"not judged: {r['note'] or 'no runs'}"
        )
        note = f" ({r['note']})" if r["n"] and r["note"] else ""
        lines.append(
            f'| {r["entry"]} | "{r["claim"]}" | **{r["verdict"]}**{note} | {number} | {r["n"]} | '
            f"[notebook {r['entry']}]({r['notebook']}#Log-vs-re-run) |".replace("\n", " ")
        )
    display(Markdown("\n".join(lines)))
    counts = pd.Series([r["verdict"].split(" (")[0] for r in rows]).value_counts()
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    update_display(
        Markdown(
            f"**{len(rows)} claims judged** ({n_seeds} seeds, {budget}): {tally}. The table below "
            "gives each claim's verdict and deciding number; the questions after it are answered from "
            "the same runs."
        ),
        display_id="headline-00",
    )


def _paired(this: list[dict], base: list[dict], key: str) -> list[V.Estimate]:
    """Paired test differences (this - base) in `key`, one per seed both entries have."""
    return [
        V.metric(m, key) - V.metric(b, key)
        for m, b in V.paired_by_seed(this, base)
        if key in (m.get("test") or {}) and key in (b.get("test") or {})
    ]


def _true_pneumonia_share(metrics: list[dict[str, Any]]) -> float:
    """The share of test films that truly are PNEUMONIA, from the first run with a test confusion matrix (every run
    of a series has the same test split); NaN without one."""
    cm = next((m["test"]["confusion_matrix"] for m in metrics if "confusion_matrix" in (m.get("test") or {})), None)
    return sum(cm[1]) / sum(map(sum, cm)) if cm else float("nan")


def everything_pneumonia(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """'Why did the model call everything PNEUMONIA?': per entry, the share of test films it called PNEUMONIA
    (mean over seeds, with the envelope of the seeds' Wilson intervals), its NORMAL recall, and its collapsed seeds;
    the test split's true PNEUMONIA share beside them."""
    rows = []
    for c in (*LOG_ENTRIES, REGISTRY["recommended"]):
        ms = runs.get(c.entry, [])
        if not ms:
            missing = f"not measured: no finished run of entry {c.entry} in RUNS (render notebook {c.entry} first)"
            rows.append(
                {
                    "entry": c.entry,
                    "experiment": c.name,
                    "seeds": 0,
                    "called PNEUMONIA": missing,
                    "truly PNEUMONIA": "",
                    "NORMAL recall": "",
                    "collapsed seeds": "",
                }
            )
            continue
        shares = [V.predicted_pneumonia(m) for m in ms if "confusion_matrix" in (m.get("test") or {})]
        spec = [V.metric(m, "specificity") for m in ms]
        true_share = _true_pneumonia_share(ms)
        fallen = [f"seed {(m.get('config') or {}).get('seed')}" for m in ms if V.collapsed(m)]
        rows.append(
            {
                "entry": c.entry,
                "experiment": c.name,
                "seeds": len(ms),
                "called PNEUMONIA": f"{fmt(np.mean([s.value for s in shares]))} "
                f"{span((min(s.lo for s in shares), max(s.hi for s in shares)))}"
                if shares
                else "not recorded",
                "truly PNEUMONIA": fmt(true_share),
                "NORMAL recall": f"{fmt(np.mean([e.value for e in spec]))} "
                f"{span((min(e.lo for e in spec), max(e.hi for e in spec)))}",
                "collapsed seeds": ", ".join(fallen) or "none",
            }
        )
    return pd.DataFrame(rows).set_index("entry")


def plot_everything_pneumonia(runs: dict[str, list[dict[str, Any]]]):
    """The table of `everything_pneumonia` as a figure: per entry, every seed's share of test films called PNEUMONIA
    with its Wilson interval, a collapsed seed drawn as a red cross, and the test split's true share as a line, so a
    seed that calls (nearly) everything PNEUMONIA stands out from one that calls about the true share. Entries
    without runs are left out (the table says why).

    Args:
        runs: metrics per entry, as `all_runs` returns them.

    Returns:
        The matplotlib figure, or None when no entry has a run with a test confusion matrix.
    """
    import matplotlib.pyplot as plt

    shown = [
        (c, [m for m in runs.get(c.entry, []) if "confusion_matrix" in (m.get("test") or {})])
        for c in (*LOG_ENTRIES, REGISTRY["recommended"])
    ]
    shown = [(c, ms) for c, ms in shown if ms]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.4))
    labelled: set[str] = set()
    for i, (c, ms) in enumerate(shown):
        for j, m in enumerate(ms):
            e = V.predicted_pneumonia(m)
            bad = V.collapsed(m)
            label = "collapsed seed" if bad else "seed (95% Wilson interval)"
            ax.errorbar(
                i + (j - (len(ms) - 1) / 2) * 0.18,
                e.value,
                yerr=[[max(0.0, e.value - e.lo)], [max(0.0, e.hi - e.value)]],
                fmt="x" if bad else "o",
                color="tab:red" if bad else "tab:blue",
                ms=6,
                capsize=2,
                label=None if label in labelled else label,
            )
            labelled.add(label)
    ax.axhline(_true_pneumonia_share(shown[0][1]), color="grey", ls="--", lw=1, label="truly PNEUMONIA (test split)")
    ax.set_xticks(range(len(shown)), [c.entry for c, _ in shown])
    ax.set_xlabel("entry")
    ax.set_ylabel("test films called PNEUMONIA")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def better_or_worse(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """'Which entries made it worse or better?': each entry's NORMAL recall and accuracy minus the baseline's, paired
    by seed, decided by the verdict rule (every seed's interval above 0: better; below: worse)."""
    rows = []
    for c in (*LOG_ENTRIES[1:], REGISTRY["recommended"]):
        row = {"entry": c.entry, "experiment": c.name}
        # the recipe trains longer than the log's entries: paired with the baseline at its own budget when rendered
        matched = c.entry == REGISTRY["recommended"].entry and bool(runs.get(MATCHED))
        base = runs.get(MATCHED if matched else "01", [])
        for key, label in (("specificity", "NORMAL recall"), ("accuracy", "accuracy")):
            d = _paired(runs.get(c.entry, []), base, key)
            if not d:
                row[f"{label} minus baseline's"] = "not measured: runs missing"
                row[f"{label}: better or worse?"] = V.NOT_TESTED
                continue
            verdict, why = V.decide(d, ">", 0.0)
            word = {V.HOLDS: "better", V.FAILS: "worse"}.get(verdict, verdict)
            row[f"{label} minus baseline's"] = (
                f"{fmt(np.mean([e.value for e in d]))} {span((min(e.lo for e in d), max(e.hi for e in d)))}"
            )
            row[f"{label}: better or worse?"] = word + (f" ({why})" if why else "")
        budgets = {V.budget(m) for m in runs.get(c.entry, [])}
        differs = bool(budgets) and budgets != {V.budget(m) for m in base}
        notes = [
            "trained at another budget than the baseline's (not a like-for-like pair)"
            if differs
            else "against the log's baseline trained at the recipe's budget (notebook 10's anchor pair)"
            if matched
            else ""
        ]
        # a collapsed seed on either side is a finding the difference carries: said, never silent
        for who, ms in (("this entry", runs.get(c.entry, [])), ("the baseline", base)):
            fallen = [str((m.get("config") or {}).get("seed")) for m in ms if V.collapsed(m)]
            if fallen:
                notes.append(f"collapsed seed(s) of {who}: {', '.join(fallen)}")
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    return pd.DataFrame(rows).set_index("entry")


def what_instead() -> None:
    """'What to do instead?': the external cohort's recorded measurements (docs/external_cohort), the only evidence
    about a new cohort; shown, never tuned on."""
    cohort_record()


def budget_text(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The budgets the loaded runs were trained at, in words, each with the entries trained at it ('entries 01-09:
    6 epochs x 2000 films per epoch, 128 px; entry 10: 20 epochs x all films per epoch, 128 px')."""
    by_budget: dict[tuple, list[str]] = {}
    for entry, ms in runs.items():
        for b in {V.budget(m) for m in ms}:
            by_budget.setdefault(b, []).append(entry)

    def entries(names: list[str]) -> str:
        if names == [MATCHED]:
            return "the log's baseline at the recipe's budget"
        nums = sorted(n for n in names if n != MATCHED)
        extra = " and the log's baseline at the recipe's budget" if MATCHED in names else ""
        return _entries(nums) + extra

    def _entries(nums: list[str]) -> str:
        if len(nums) == 1:
            return f"entry {nums[0]}"
        digits = [int(n) for n in nums if n.isdigit()]
        if len(digits) == len(nums) and digits == list(range(digits[0], digits[-1] + 1)):
            return f"entries {nums[0]}-{nums[-1]}"
        return "entries " + ", ".join(nums)

    parts = [
        f"{entries(names)}: {e} epochs x {n or 'all'} films per epoch, {px} px"
        for (e, n, px), names in sorted(by_budget.items(), key=lambda kv: sorted(kv[1]))
    ]
    return "; ".join(parts) or "no runs"


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def why_everything_pneumonia(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The answer to the log's first question, in words computed from the runs: does the baseline call everything
    PNEUMONIA at this budget, and which entries do (a seed collapsed to PNEUMONIA on the validation split, or a mean
    share called PNEUMONIA on the test split at or above verdicts.COLLAPSE_SHARE), each with what it changed."""
    from ..core.config import diff, format_diff
    from ..studies.catalogue import previous

    base = runs.get("01") or []
    if not base:
        return "Not answered: entry 01 has no finished run in RUNS (render notebook 01 first)."
    truth = _true_pneumonia_share(base)

    def to_pneumonia(ms):
        return [str((m.get("config") or {}).get("seed")) for m in ms if "films PNEUMONIA" in V.collapsed(m)]

    share = _mean(V.predicted_pneumonia(m).value for m in base if "confusion_matrix" in (m.get("test") or {}))
    spec = _mean(V.metric(m, "specificity").value for m in base)
    fallen = to_pneumonia(base)
    if fallen:
        text = (
            f"At this budget the log's baseline itself shows the symptom: seed(s) {', '.join(fallen)} of "
            f"{len(base)} collapsed to PNEUMONIA, so the budget does not train the baseline (notebook 01's budget "
            "rule) and the entries below are compared with a model that did not learn."
        )
    else:
        text = (
            f"At this budget the log's baseline does not call everything PNEUMONIA: its {len(base)} seed(s) call "
            f"{share:.3f} of the test films PNEUMONIA (mean; {truth:.3f} truly are), with NORMAL recall "
            f"{spec:.3f}, and no seed collapsed to PNEUMONIA."
        )
    symptom = []
    for c in LOG_ENTRIES[1:]:
        ms = runs.get(c.entry) or []
        if not ms:
            continue
        s = _mean(V.predicted_pneumonia(m).value for m in ms if "confusion_matrix" in (m.get("test") or {}))
        seeds = to_pneumonia(ms)
        if seeds or s >= V.COLLAPSE_SHARE:
            symptom.append(
                f"{c.entry} ({format_diff(diff(previous(c), c))}): {s:.3f} called PNEUMONIA, NORMAL recall "
                f"{_mean(V.metric(m, 'specificity').value for m in ms):.3f}"
                + (f", seed(s) {', '.join(seeds)} collapsed to PNEUMONIA" if seeds else "")
            )
    if symptom:
        text += (
            " The log's symptom (a seed that calls 95% or more of the validation films PNEUMONIA, or 95% or more "
            "of the test films called PNEUMONIA on average) appears in: " + "; ".join(symptom) + "."
        )
    else:
        text += " No other entry shows the log's symptom (no seed collapsed to PNEUMONIA, no mean share of 95%)."
    return text


def what_changed(table: pd.DataFrame) -> str:
    """The answer to 'which entries made it worse or better?', read from better_or_worse's table."""
    parts = []
    for label in ("NORMAL recall", "accuracy"):
        col = table[f"{label}: better or worse?"].astype(str)
        better = [e for e, v in col.items() if v == "better"]
        worse = [e for e, v in col.items() if v == "worse"]
        open_ = [e for e, v in col.items() if v not in ("better", "worse")]
        parts.append(
            f"{label}: better than the baseline on every seed: {', '.join(better) or 'no entry'}; worse "
            f"on every seed: {', '.join(worse) or 'no entry'}; undecided: {', '.join(open_) or 'none'} "
            "(the table gives each reason)"
        )
    return ". ".join(parts) + "."


def what_instead_answer(rows: list[dict[str, Any]], goal: float = 0.90) -> str:
    """The answer to 'what to do instead?', computed from the cohort record (docs/external_cohort) and from the
    claims table's verdict on the recipe's cohort claim: the best recorded cohort NORMAL recall against the project's
    goal, and whether the recipe this series trains has been measured there."""
    ms = cohort_measurements()
    if ms is None:
        return "Not answered here: the cohort record is in the repository's docs/external_cohort/ (not installed)."
    best = max(ms, key=lambda m: m["cohort"]["specificity"])
    reached = [m for m in ms if m["cohort"]["specificity"] >= goal]
    cohort_row = next((r for r in rows if r["entry"] == REGISTRY["recommended"].entry and "cohort" in r["claim"]), None)
    text = (
        f"The record holds {len(ms)} measurements on the external cohort; the highest NORMAL recall there is "
        f"{best['cohort']['specificity']:.3f} ({best['experiment']}, seed {best['seed']}, commit "
        f"{best['commit']}), and {len(reached)} of them reach the project's goal of {goal:.2f}."
    )
    if cohort_row is not None:
        text += (
            f" The recipe this series trains (notebook 10): '{cohort_row['verdict']}' on the cohort claim"
            + (f" ({cohort_row['note']})" if cohort_row.get("note") else "")
            + "."
        )
    return text
