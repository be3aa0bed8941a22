"""Whether an entry's verdicts depend on the training budget, and which verdict stands where they do not.

The same claims are judged on runs of a second root trained at a larger budget (the `cpu` profile's own), beside
the series' verdicts, and compared verdict by verdict.

The series renders every entry at one budget chosen by its budget rule; where that budget is below the `cpu` profile,
a verdict could be an artefact of short training. This module reads runs already trained at the profile's own budget
(nothing is trained here: a missing run is named, and its side is 'not measured'), judges them with the series' own
rule (`studies.verdicts.judge_entry`), and compares verdict by verdict.

Which verdict stands when they disagree: the one at the larger budget. The series' budget was chosen as the
*smallest* at which the baseline trains at all (no collapse, validation AUC >= 0.95); a claim about what a model
learns is about the model trained to convergence, and a longer training is closer to that and to the log's own runs
(trained on every film). A disagreement therefore says the short budget's verdict was an artefact of stopping
early, not the reverse. Where neither budget is at least as large in every respect (epochs, films per epoch, pixels),
neither stands. A side that cannot decide (cannot tell, not tested, one seed) is 'not decided at' that side, never
a disagreement: only two decided verdicts can disagree."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core.config import ExperimentConfig, apply_profile
from ..core.runs import RunDir, load_metrics, seed_dir
from ..studies.verdict_estimates import FAILS, HOLDS, NOT_TESTED
from ..studies.verdict_flags import budget
from ..studies.verdicts import judge_entry

PROFILE = "cpu"  # the profile whose own budget the sensitivity row compares against
ONE_SEED = "one seed: no interval"
AGREE = "agree"


def own_budget(config: ExperimentConfig, profile: str = PROFILE) -> tuple:
    """(epochs, films per epoch, px) of CONFIG at PROFILE's own budget (no render budget): what `budget` reads off a
    run trained that way."""
    c = apply_profile(config, profile)
    return c.epochs, c.max_train_images, c.image_size


def budget_text(b: tuple) -> str:
    """'6 epochs x 2000 films per epoch, 128 px' (None films: every film)."""
    e, n, px = b
    return f"{e} epochs x {n or 'all'} films per epoch, {px} px"


def load_profile_runs(
    root: str | Path,
    config: ExperimentConfig,
    seeds: Iterable[int],
    want: tuple,
    profile: str = PROFILE,
    folder: Callable[[Path, ExperimentConfig, int], Path] = seed_dir,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished runs of CONFIG under ROOT (FOLDER(root, config, seed): the series' layout) trained at PROFILE
    with budget WANT, read only (load_metrics); and, for every seed without one, why, naming its folder relative to
    ROOT. Nothing is trained or written."""
    root = Path(root)
    found, lacking = [], []
    for seed in seeds:
        d = folder(root, config, seed)
        name = d.relative_to(root).as_posix() if d.is_relative_to(root) else str(d)
        if not RunDir(d).is_finished():
            lacking.append(f"{name} (no finished run)")
            continue
        m = load_metrics(d)
        if m.get("profile") != profile or budget(m) != want:
            lacking.append(f"{name} (profile {m.get('profile')}, {budget_text(budget(m))}: not the '{profile}' budget)")
            continue
        found.append(m)
    return found, lacking


def larger(a: tuple, b: tuple) -> int:
    """+1 when budget B is at least A in every field (epochs, films per epoch with None = every film, px) and
    differs; -1 the other way; 0 when equal or neither is at least the other in every field."""

    def v(x):
        return math.inf if x is None else x

    ge = all(v(y) >= v(x) for x, y in zip(a, b))
    le = all(v(y) <= v(x) for x, y in zip(a, b))
    return 0 if ge == le else (1 if ge else -1)


def decided(row: dict[str, Any]) -> str:
    """The row's verdict when it decides the claim (holds / does not hold), else ''. One seed never decides: its
    interval (patients only) says nothing of the seed-to-seed spread the rule is about."""
    word = row["verdict"].split(" (")[0].split(":")[0]
    return word if word in (HOLDS, FAILS) and row["n"] >= 2 else ""


def side_text(row: dict[str, Any]) -> str:
    """A judged row in a few words: 'holds; 0.912 [0.893, 0.930], 5 seeds', 'one seed: no interval; 0.934, on the
    claimed side (> 0.9)' (a point value, not a verdict), or why it was not measured."""
    if not row["n"]:
        note = "no runs at this budget" if row["note"] in ("", "no runs") else row["note"]
        return f"{'not measured' if row['verdict'] == NOT_TESTED else row['verdict']}: {note}"
    if row["n"] == 1:
        m, d, t = row["mean"], row["direction"], row["threshold"]
        side = "on the claimed side" if (m > t if d == ">" else m < t) else "not on the claimed side"
        return f"{ONE_SEED}; {m:.3f}, {side} ({d} {t:g})"
    iv = row.get("interval")
    span = f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""
    return f"{row['verdict']}; {row['mean']:.3f}{span}, {row['n']} seeds"


def agreement(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str, b_larger: int) -> str:
    """'agree', 'do not agree: ... stands', or 'not decided at NAME' (one side cannot decide: not a disagreement),
    for one claim judged at two budgets (A: the series', B: the other root's; B_LARGER: `larger(a, b)`)."""
    va, vb = decided(a), decided(b)
    undecided = [n for n, v in ((name_a, va), (name_b, vb)) if not v]
    if undecided:
        return "not decided at the " + " nor at the ".join(undecided)
    if va == vb:
        return AGREE
    if b_larger == 0:
        return f"do not agree ({name_a}: {va}; {name_b}: {vb}); neither budget is larger in every respect, so neither stands"
    stands, verdict_ = (name_b, vb) if b_larger > 0 else (name_a, va)
    return (
        f"do not agree ({name_a}: {va}; {name_b}: {vb}): the {stands}'s verdict, {verdict_}, stands (the larger budget)"
    )


def compare(
    entry: str,
    runs: tuple[list[dict], dict[str, list[dict]]],
    other: tuple[list[dict], dict[str, list[dict]]],
    names: tuple[str, str] = ("series budget", f"{PROFILE} profile"),
) -> list[dict[str, Any]]:
    """ENTRY's claims judged on both sets of runs (each: (its runs' metrics, the reference runs its claims compare
    with), the verdict rule's own inputs), one row per claim: the claim, each side's verdict in words, and their
    agreement. The budgets are read off the runs."""
    (ms_a, ref_a), (ms_b, ref_b) = runs, other
    rows_a, rows_b = judge_entry(entry, ms_a, ref_a), judge_entry(entry, ms_b, ref_b)
    ba = {budget(m) for m in ms_a}
    bb = {budget(m) for m in ms_b}
    b_larger = larger(next(iter(ba)), next(iter(bb))) if len(ba) == len(bb) == 1 else 0
    return [
        {
            "claim": ra["claim"],
            "measured": ra["quantity"],
            names[0]: side_text(ra),
            names[1]: side_text(rb),
            "agreement": agreement(ra, rb, *names, b_larger),
        }
        for ra, rb in zip(rows_a, rows_b)
    ]


def verdict_line(rows: list[dict[str, Any]], names: tuple[str, str] = ("series budget", f"{PROFILE} profile")) -> str:
    """The comparison in one computed line: whether the verdicts decided at both budgets agree, which do not and
    which verdict stands, and how many claims are not decided at one of them."""
    both = [r for r in rows if not r["agreement"].startswith("not decided")]
    apart = [r for r in both if r["agreement"] != AGREE]
    open_ = len(rows) - len(both)
    tail = f"; {open_} of {len(rows)} claims not decided at one of them (see the table)" if open_ else ""
    if not both:
        return f"Not decided: no claim is decided at both the {names[0]} and the {names[1]}{tail}."
    if not apart:
        return f"The verdicts agree: the {len(both)} claim(s) decided at both budgets get the same verdict{tail}."
    said = "; ".join(f'"{r["claim"]}": {r["agreement"]}' for r in apart)
    return f"The verdicts do not agree on {len(apart)} of {len(both)} claim(s) decided at both: {said}{tail}."
