"""Notebook 00's tables: every claim of the log judged, and the log's own questions answered.

Computed from the series' finished runs (nothing is trained here; an entry whose runs are missing is said to be).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core.config import LOG_ENTRIES, REGISTRY
from ..studies import verdicts as V
from .helpers import cohort_record, cohort_recipes, fmt, span
from .series import Series, load_runs

def notebook_file(entry: str) -> str:
    """The notebook of an entry ('01_2024-05-13_baseline.ipynb'), found in the repository's notebooks/ folder."""
    from pathlib import Path
    here = Path(__file__).resolve().parents[2] / "notebooks"
    found = sorted(here.glob(f"{entry}_*.ipynb"))
    return found[0].name if found else f"{entry}.ipynb"


def all_runs(series: Series) -> dict[str, list[dict[str, Any]]]:
    """Every entry's finished runs at this series' profile and seeds (metrics.json), by entry."""
    return load_runs([c.entry for c in REGISTRY.values()], series)


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
    lines = ["| entry | the log's claim | verdict | deciding number: mean over seeds [95% interval envelope] | "
             "seeds | where |", "|---|---|---|---|---|---|"]
    for r in rows:
        number = (f"{r['quantity']}: {fmt(r['mean'])} {span(r['interval'])} (holds if {r['claimed']})"
                  if r["n"] else f"not judged: {r['note'] or 'no runs'}")
        note = f" ({r['note']})" if r["n"] and r["note"] else ""
        lines.append(f"| {r['entry']} | \"{r['claim']}\" | **{r['verdict']}**{note} | {number} | {r['n']} | "
                     f"[notebook {r['entry']}]({r['notebook']}#Log-vs-re-run) |".replace("\n", " "))
    display(Markdown("\n".join(lines)))
    counts = pd.Series([r["verdict"].split(" (")[0] for r in rows]).value_counts()
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    update_display(Markdown(f"**{len(rows)} claims judged** ({n_seeds} seeds, {budget}): {tally}. The table below "
                            "gives each claim's verdict and deciding number; the questions after it are answered from "
                            "the same runs."), display_id="headline-00")


def _paired(this: list[dict], base: list[dict], key: str) -> list[V.Estimate]:
    """Paired test differences (this - base) in `key`, one per seed both entries have."""
    return [V.metric(m, key) - V.metric(b, key) for m, b in V.paired_by_seed(this, base)
            if key in (m.get("test") or {}) and key in (b.get("test") or {})]


def everything_pneumonia(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """'Why did the model call everything PNEUMONIA?': per entry, the share of test films it called PNEUMONIA
    (mean over seeds, with the envelope of the seeds' Wilson intervals), its NORMAL recall, and its collapsed seeds;
    the test split's true PNEUMONIA share beside them."""
    rows = []
    for c in (*LOG_ENTRIES, REGISTRY["recommended"]):
        ms = runs.get(c.entry, [])
        if not ms:
            missing = f"not measured: no finished run of entry {c.entry} in RUNS (render notebook {c.entry} first)"
            rows.append({"entry": c.entry, "experiment": c.name, "seeds": 0, "called PNEUMONIA": missing,
                         "truly PNEUMONIA": "", "NORMAL recall": "", "collapsed seeds": ""})
            continue
        shares = [V.predicted_pneumonia(m) for m in ms if "confusion_matrix" in (m.get("test") or {})]
        spec = [V.metric(m, "specificity") for m in ms]
        truth = [m["test"]["confusion_matrix"] for m in ms if "confusion_matrix" in m["test"]]
        true_share = (sum(cm[1]) / sum(map(sum, cm))) if (cm := (truth[0] if truth else None)) else float("nan")
        fallen = [f"seed {(m.get('config') or {}).get('seed')}" for m in ms if V.collapsed(m)]
        rows.append({"entry": c.entry, "experiment": c.name, "seeds": len(ms),
                     "called PNEUMONIA": f"{fmt(np.mean([s.value for s in shares]))} "
                                         f"{span((min(s.lo for s in shares), max(s.hi for s in shares)))}"
                     if shares else "not recorded",
                     "truly PNEUMONIA": fmt(true_share),
                     "NORMAL recall": f"{fmt(np.mean([e.value for e in spec]))} "
                                      f"{span((min(e.lo for e in spec), max(e.hi for e in spec)))}",
                     "collapsed seeds": ", ".join(fallen) or "none"})
    return pd.DataFrame(rows).set_index("entry")


def better_or_worse(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """'Which entries made it worse or better?': each entry's NORMAL recall and accuracy minus the baseline's, paired
    by seed, decided by the verdict rule (every seed's interval above 0: better; below: worse)."""
    base = runs.get("01", [])
    rows = []
    for c in (*LOG_ENTRIES[1:], REGISTRY["recommended"]):
        row = {"entry": c.entry, "experiment": c.name}
        for key, label in (("specificity", "NORMAL recall"), ("accuracy", "accuracy")):
            d = _paired(runs.get(c.entry, []), base, key)
            if not d:
                row[f"{label} minus baseline's"] = "not measured: runs missing"
                row[f"{label}: better or worse?"] = V.NOT_TESTED
                continue
            verdict, why = V.decide(d, ">", 0.0)
            word = {V.HOLDS: "better", V.FAILS: "worse"}.get(verdict, verdict)
            row[f"{label} minus baseline's"] = (f"{fmt(np.mean([e.value for e in d]))} "
                                                f"{span((min(e.lo for e in d), max(e.hi for e in d)))}")
            row[f"{label}: better or worse?"] = word + (f" ({why})" if why else "")
        budgets = {V.budget(m) for m in runs.get(c.entry, [])}
        differs = bool(budgets) and budgets != {V.budget(m) for m in base}
        row["note"] = ("trained at another budget than the baseline's (not a like-for-like pair)" if differs else "")
        rows.append(row)
    return pd.DataFrame(rows).set_index("entry")


def what_instead() -> None:
    """'What to do instead?': the external cohort's recorded measurements (docs/external_cohort), the only evidence
    about a new cohort; shown, never tuned on."""
    cohort_record()


def budget_text(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The budgets the loaded runs were trained at, in words ('6 epochs x 2000 films per epoch, 128 px')."""
    budgets = sorted({V.budget(m) for ms in runs.values() for m in ms}, key=str)
    return "; ".join(f"{e} epochs x {n or 'all'} films per epoch, {px} px" for e, n, px in budgets) or "no runs"
