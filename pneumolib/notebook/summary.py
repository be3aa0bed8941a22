"""Notebook 00's tables: every claim of the log judged, and the log's own questions answered.

Computed from the series' finished runs (nothing is trained here; an entry whose runs are missing is said to be).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..studies import verdicts as V
from ..studies.catalogue import LOG_ENTRIES, MODIFIES, REGISTRY
from .display import caption, collapse_seed_flags
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
    rows, book = [], V.FilmBook()  # each run's per-film scores read once for every claim and comparison
    for entry, claims in V.CLAIMS.items():
        reference = {e: runs.get(e, []) for c in claims for e in c.needs if e in runs}
        reference.update(V.cohort_reference(entry, cohort_recipes(), runs.get(entry, [])))
        for c in claims:
            r = V.judge(c, runs.get(entry, []), reference, book=book)
            rows.append(dict(r, notebook=notebook_file(entry)))
    return rows


def _each(r: dict[str, Any]) -> str:
    """The seed count, then each seed's value where the row has them ('5: 0.120, -0.030, ...')."""
    return f"{r['n']}" + (f": {', '.join(fmt(v) for v in r['per_seed'])}" if r.get("per_seed") else "")


def show_claims(rows: list[dict[str, Any]], n_seeds: int, budget: str) -> None:
    """The one table (markdown, so the notebook links work) and the headline box above it, updated in place."""
    from IPython.display import Markdown, display

    lines = [
        "| entry | the log's claim | verdict | deciding number: mean over seeds [95% interval] | seeds: each one's value | "
        "comparisons: seed pairs in which this entry is higher | where |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(x: str) -> str:  # a '|' inside a cell (07's '|a - b|') would split its row
        return str(x).replace("|", "\\|")

    for r in rows:
        number = (
            f"{r['quantity']}: {fmt(r['mean'])} {span(r['interval']) or '[no interval]'} (holds if {r['claimed']})"
            if r["n"]
            else f"not judged: {collapse_seed_flags(r['note']) or 'no runs'}"
        )
        note = f" ({collapse_seed_flags(r['note'])})" if r["n"] and r["note"] else ""
        lines.append(
            f'| {r["entry"]} | "{cell(r["claim"])}" | **{r["verdict"]}**{cell(note)} | {cell(number)} | {_each(r)} | '
            f"{V.improvement(r)} | "
            f"[notebook {r['entry']}]({r['notebook']}#Log-vs-re-run) |".replace("\n", " ")
        )
    display(Markdown("\n".join(lines)))
    show_finding(rows, n_seeds, budget)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def finding(rows: list[dict[str, Any]], factors: list[dict[str, Any]] | None = None) -> str:
    """00's finding under its title, in plain sentences written from the judged claims (claims_table's rows) and,
    once computed, the account of 'everything PNEUMONIA' (account.account_rows' FACTORS): how many of the log's
    claims the re-run could test and how they came out, how many of those verdicts read a collapsed or untrained
    seed, and which entries over-call PNEUMONIA with the main cause of each. It changes when they do."""
    recipe = REGISTRY["recommended"].entry
    log = [r for r in rows if r["entry"] != recipe]
    word = [r["verdict"].split(" (")[0].split(":")[0] for r in log]
    tested = [r for r, w in zip(log, word) if w != V.NOT_TESTED]
    if not tested:
        return f"The re-run could test none of the log's {len(log)} claims on the runs it found."
    holds, fails, open_ = (word.count(w) for w in (V.HOLDS, V.FAILS, V.CANNOT_TELL))
    seeds = sorted({r["n"] for r in tested if r["n"]}) or [0]  # a row with no judged seed (maps that fail) has n 0
    at = _plural(seeds[0], "seed", "seeds") if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} seeds"
    text = (
        f"The re-run could test {len(tested)} of the log's {len(log)} claims: {holds} "
        f"{'holds' if holds == 1 else 'hold'}, {fails} {'does' if fails == 1 else 'do'} not hold, and {open_} "
        f"cannot be told either way at {at} (each row below says how many seeds or films would decide it)."
    )
    if open_:
        by = more_seeds([r for r, w in zip(log, word) if w == V.CANNOT_TELL])
        (k1, n1), (k2, n2) = by.items()
        text += (
            f" At the observed effects and spreads, {k1} seeds would decide about {n1} of those {open_} and {k2} "
            f"seeds about {n2}; the other {open_ - n2} would need more than {k2} seeds, or more seeds alone would "
            "not decide them."
        )
    flagged = sum(bool({V.COLLAPSED, V.UNTRAINED} & set(r.get("flags") or ())) for r in tested)
    if flagged:
        text += f" {_plural(flagged, 'verdict reads', 'verdicts read')} a seed that collapsed or did not learn."
    if factors is not None:
        from .account import main_causes

        causes = main_causes(factors)
        over = [e for es in causes.values() for e in es]
        measured = [f for f in factors if not f.get("missing")]
        text += f" Of the {len(measured)} entries with runs, {len(over)} call more films PNEUMONIA than truly are" + (
            ": " + "; ".join(f"{c} ({', '.join(es)})" for c, es in causes.items()) + "." if over else "."
        )
    return text


MORE_SEEDS = (10, 50)  # the seed counts 00's finding projects the undecided claims to


def more_seeds(undecided: list[dict[str, Any]], counts: tuple[int, ...] = MORE_SEEDS) -> dict[int, int]:
    """For each seed count K, how many of the UNDECIDED claims (judged rows, 'cannot tell') K seeds would decide at
    their observed effect and spread: each row's own power estimate (`needed`, from core.stats.SeedEffect.needed;
    a row without one, such as maps that fail their checks, is never counted). An estimate, not a promise."""
    seeds = [(r.get("needed") or (None, None))[0] for r in undecided]
    return {k: sum(1 for n in seeds if n is not None and n <= k) for k in counts}


def show_finding(
    rows: list[dict[str, Any]], n_seeds: int, budget: str, factors: list[dict[str, Any]] | None = None
) -> None:
    """The box under 00's title, updated in place: `finding`'s sentences, then the seeds and budget they rest on."""
    from IPython.display import Markdown, update_display

    update_display(
        Markdown(
            f"**Finding.** {finding(rows, factors)}\n\n*{n_seeds} seeds, {budget}; the table below gives each "
            "claim's verdict and deciding number, and the questions after it are answered from the same runs.*"
        ),
        display_id="headline-00",
    )


def _true_pneumonia_share(metrics: list[dict[str, Any]]) -> float:
    """The share of test films that truly are PNEUMONIA, from the first run with a test confusion matrix (every run
    of a series has the same test split); NaN without one."""
    cm = next((m["test"]["confusion_matrix"] for m in metrics if "confusion_matrix" in (m.get("test") or {})), None)
    return sum(cm[1]) / sum(map(sum, cm)) if cm else float("nan")


def plot_everything_pneumonia(runs: dict[str, list[dict[str, Any]]]):
    """'Why did the model call everything PNEUMONIA?' as a figure: per entry, every seed's share of test films called PNEUMONIA
    with its Wilson interval, a collapsed seed drawn as a red cross, and the test split's true share as a line, so a
    seed that calls (nearly) everything PNEUMONIA stands out from one that calls about the true share. Entries
    without runs are left out.

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
    caption(_pneumonia_caption(shown))
    return fig


def _pneumonia_caption(shown: list[tuple[Any, list[dict[str, Any]]]]) -> str:
    """What to see in plot_everything_pneumonia's figure, with its numbers: how many seeds call nearly every test
    film PNEUMONIA (and of which entries), how many collapsed on validation, and the true share."""
    seeds = [(c.entry, m) for c, ms in shown for m in ms]
    nearly = sorted({e for e, m in seeds if V.predicted_pneumonia(m).value >= V.COLLAPSE_SHARE})
    n_near = sum(V.predicted_pneumonia(m).value >= V.COLLAPSE_SHARE for _, m in seeds)
    fallen = sum(bool(V.collapsed(m)) for _, m in seeds)
    return (
        f"one point per seed ({len(seeds)} seeds of {len(shown)} entries): the share of the test films its model "
        f"calls PNEUMONIA at its own threshold, with its 95% Wilson interval. {n_near} of the {len(seeds)} seeds call "
        f"{V.COLLAPSE_SHARE:.0%} or more of them PNEUMONIA"
        + (f" (entries {', '.join(nearly)})" if nearly else "")
        + f"; {fallen} collapsed on validation (red crosses). The dashed line is the share that truly is PNEUMONIA, "
        f"{_true_pneumonia_share(shown[0][1]):.3f}: a point far above it over-calls PNEUMONIA."
    )


CHAIN_QUANTITIES = (("NORMAL recall", V.PerFilm("correct", "NORMAL")), ("PNEUMONIA recall", V.PerFilm("correct", "PNEUMONIA")),
                    ("balanced accuracy", None))  # fmt: skip


def _against(entry: str, runs: dict[str, list[dict[str, Any]]]) -> tuple[str, list[dict[str, Any]], str]:
    """(what ENTRY is compared with, its runs, a note): the entry it changes in the log's chain (MODIFIES); the
    recipe against the log's baseline trained at the recipe's budget when that was rendered (notebook 10's pair)."""
    if entry == REGISTRY["recommended"].entry and runs.get(MATCHED):
        return "01 at the recipe's budget", runs[MATCHED], "against the log's baseline at the recipe's budget"
    other = MODIFIES[entry]
    return other, runs.get(other, []), ""


SAME_NETWORKS = "no change: the same trained networks"


def same_networks(this: list[dict[str, Any]], base: list[dict[str, Any]]) -> bool:
    """Whether every seed of THIS evaluates the very checkpoint its seed of BASE does (a twin entry's adopted run,
    e.g. entry 08's report on entry 07's networks, or 05 on 04's when no ImageNet weights exist): then a difference
    between them is the evaluation's, never the training's."""
    from ..core.runs import RunDir, checkpoint_key

    def key(m: dict[str, Any]) -> str | None:
        ckpt = RunDir(m["run_dir"]).checkpoint if m.get("run_dir") else None
        return checkpoint_key(ckpt) if ckpt is not None and ckpt.is_file() else None

    by_seed = {(b.get("config") or {}).get("seed"): key(b) for b in base}
    pairs = [(key(m), by_seed.get((m.get("config") or {}).get("seed"))) for m in this]
    return bool(pairs) and all(a is not None and a == b for a, b in pairs)


def _change(
    q: V.PerFilm | None, this: list[dict], base: list[dict], book: V.FilmBook, same: bool = False
) -> tuple[str, str]:
    """(the paired difference with its interval, better / worse / cannot tell ...) for one quantity; SAME (the same
    networks on both sides) with no seed's value moved says so, not 'cannot tell'."""
    if not this or not base:
        return "not measured: runs missing", V.NOT_TESTED
    if not all(map(V.has_films, this + base)):
        return "not measured: no per-film scores (scores_test.csv)", V.NOT_TESTED
    try:
        e = V.balanced_effect(this, base, book=book) if q is None else V.film_effect(q, this, base, book=book)
    except V.NotMeasured as err:
        return f"not measured: {err.args[0]}", V.NOT_TESTED
    verdict, why = V.settle(e, ">", 0.0)
    if same and all(d == 0 for d in e.per_seed):
        verdict, why = SAME_NETWORKS, ""
    word = {V.HOLDS: "better", V.FAILS: "worse"}.get(verdict, verdict)
    return f"{fmt(e.point)} {span(V.clip_interval((e.low, e.high), (-1.0, 1.0)))}", word + (f": {why}" if why else "")


def better_or_worse(runs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """'Which entries made it worse or better?': each entry against the entry it changed (the log's chain,
    catalogue.MODIFIES), paired seed i against seed i on the same test films: NORMAL recall, PNEUMONIA recall and
    balanced accuracy, this minus the other (core.stats.seed_effect: the mean over seeds, its 95% interval from
    seeds, then patients within class), and the verdict of the rule (verdict_rule.settle against 0): better, worse,
    or cannot tell with what would decide it. An entry that asked for ImageNet weights and trained from random init
    is marked."""
    rows, book = [], V.FilmBook()
    for c in (*LOG_ENTRIES[1:], REGISTRY["recommended"]):
        this = runs.get(c.entry, [])
        other, base, why = _against(c.entry, runs)
        row = {"entry": c.entry, "experiment": c.name, "against": other}
        if c.pretrained and any(V.random_init(m) for m in this):
            row["experiment"] += " (random init: ImageNet weights missing)"
        same = same_networks(this, base)
        for label, q in CHAIN_QUANTITIES:
            diff, word = _change(q, this, base, book, same)
            row[f"{label}: this minus the other"], row[f"{label}: better or worse?"] = diff, word
        differs = bool(this) and {V.budget(m) for m in this} != {V.budget(m) for m in base}
        notes = ["trained at another budget than the other (not a like-for-like pair)" if differs else why]
        if same:
            notes.append(
                f"the same trained networks as entry {other} (no new training): a difference is the evaluation's"
            )
        # a collapsed seed on either side is a finding the difference carries: said, never silent
        for who, ms in (("this entry", this), ("the other", base)):
            fallen = [str((m.get("config") or {}).get("seed")) for m in ms if V.collapsed(m)]
            if fallen:
                notes.append(f"collapsed seed(s) of {who}: {', '.join(fallen)}")
        row["note"] = collapse_seed_flags("; ".join(n for n in notes if n))
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("entry")
    frame.attrs["column_groups"] = {
        f"{label}, this minus the entry it changed": ["against", f"{label}: this minus the other",
                                                      f"{label}: better or worse?"]
        for label, _ in CHAIN_QUANTITIES
    } | {"what each entry is, and notes": ["experiment", "note"]}  # fmt: skip
    return frame


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


def what_changed(table: pd.DataFrame) -> str:
    """The answer to 'which entries made it worse or better?', read from better_or_worse's table."""

    def named(e: str) -> str:
        init = "; random init, so not about ImageNet weights" if "random init" in table.loc[e, "experiment"] else ""
        return f"{e} (against {table.loc[e, 'against']}{init})"

    parts = []
    for label, _ in CHAIN_QUANTITIES:
        col = table[f"{label}: better or worse?"].astype(str)
        better = [named(e) for e, v in col.items() if v == "better"]
        worse = [named(e) for e, v in col.items() if v == "worse"]
        same = [e for e, v in col.items() if v == SAME_NETWORKS]
        open_ = [e for e, v in col.items() if v not in ("better", "worse", SAME_NETWORKS)]
        parts.append(
            f"{label}: better than the entry it changed: {', '.join(better) or 'no entry'}; worse: "
            f"{', '.join(worse) or 'no entry'}; "
            + (f"the same networks as the entry it changed (no new training): {', '.join(same)}; " if same else "")
            + f"cannot tell or not measured: {', '.join(open_) or 'none'} (the table gives each reason)"
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
    cohort_rows = [r for r in rows if r["entry"] == REGISTRY["recommended"].entry and "cohort" in r["claim"]]
    measured = next((r for r in cohort_rows if r.get("on_record")), None)  # the recipe as the record measured it
    cohort_row = next((r for r in cohort_rows if not r.get("on_record")), None)  # the recipe this series trains
    text = (
        f"The record holds {len(ms)} measurements on the external cohort; the highest NORMAL recall there is "
        f"{best['cohort']['specificity']:.3f} ({best['experiment']}, seed {best['seed']}, commit "
        f"{best['commit']}), and {len(reached)} of them reach the project's goal of {goal:.2f}."
    )
    if measured is not None:
        text += (
            f" The recipe as the record last measured it: '{measured['verdict']}' on the cohort claim"
            + (f" ({measured['note']})" if measured.get("note") else "")
            + "."
        )
    if cohort_row is not None:
        text += (
            f" The recipe this series trains (notebook 10): '{cohort_row['verdict']}' on the cohort claim"
            + (f" ({cohort_row['note']})" if cohort_row.get("note") else "")
            + "."
        )
    return text
