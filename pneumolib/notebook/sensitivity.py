"""Notebooks 01 and 10's sensitivity row: their verdicts at the series' budget beside those at the cpu profile.

The same claims are judged on runs trained at the `cpu` profile's own budget (studies.sensitivity), read from a
second root, never trained here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..core.runs import matched_baseline_dir
from ..notebook.display import show
from ..notebook.seed_views import judge_inputs
from ..studies import sensitivity as SE
from ..studies.catalogue import BASELINE, RECOMMENDED, get_config
from ..studies.verdicts import CLAIMS, compared_with

ENV = (
    "PNEUMOLIB_SENSITIVITY_RUNS"  # the root of the cpu-profile runs: ROOT/01_baseline/seed{S}, ROOT/10_recommended/...
)
LABEL = "SENSITIVITY_RUNS"  # what outputs print instead of that root's path
NAMES = ("series budget", f"{SE.PROFILE} profile")


def train_command(entry: str, seeds: list[int]) -> str:
    """The command that trains ENTRY's cpu-profile runs (and what its claims compare with) into the root."""
    targets = [entry, *compared_with(entry)]
    if any("matched_baseline" in c.needs for c in CLAIMS.get(entry, ())):
        targets.append("matched")
    return (
        f"python tools/train_series.py DATA_DIR {LABEL} {' '.join(targets)} --profile {SE.PROFILE} "
        f"--seeds {','.join(map(str, seeds))} (no --budget)"
    )


def _reference(entry: str, root: Path, seeds: list[int], lacking: list[str]) -> dict[str, list[dict]]:
    """The runs ENTRY's claims compare with, from ROOT at the cpu profile's own budget (read only); what is missing
    is added to LACKING."""
    ref: dict[str, list[dict]] = {}
    for e in compared_with(entry):
        cfg = get_config(e)
        ref[cfg.entry], miss = SE.load_profile_runs(root, cfg, seeds, SE.own_budget(cfg))
        lacking += miss
    if any("matched_baseline" in c.needs for c in CLAIMS.get(entry, ())):  # the baseline at the recipe's budget
        ref["matched_baseline"], miss = SE.load_profile_runs(
            root, BASELINE, seeds, SE.own_budget(RECOMMENDED), folder=lambda r, c, s: matched_baseline_dir(r, s)
        )
        lacking += miss
    return ref


def sensitivity(
    entry: str, series, results, reference: dict[str, list] | None = None, root: str | Path | None = None
) -> None:
    """ENTRY's claims judged at this render's budget (the verdict table's very inputs: RESULTS and REFERENCE) and at
    the cpu profile's own budget on the runs under ROOT (PNEUMOLIB_SENSITIVITY_RUNS, read only), side by side with
    their agreement, then the computed line. Without ROOT, or when this render already trains at that budget, one
    line says so. Runs missing under ROOT are named, and the sensitivity is not measured for them."""
    ms, ref = judge_inputs(entry, results, reference)
    cfg = get_config(entry)
    want = SE.own_budget(cfg)
    if {SE.budget(m) for m in ms} == {want}:
        print(f"this render trains at the '{SE.PROFILE}' profile's own budget ({SE.budget_text(want)}): no smaller "
              "budget to check, so no sensitivity row")  # fmt: skip
        return
    if not root:
        print(f"the sensitivity to the budget was not measured in this render: no '{SE.PROFILE}'-profile runs were "
              f"given ({ENV} unset). To measure it: {train_command(entry, series.seeds)}, then render with "
              f"{ENV}={LABEL}")  # fmt: skip
        return
    root = Path(root)
    other, lacking = SE.load_profile_runs(root, cfg, series.seeds, want)
    _, other_ref = judge_inputs(entry, other, _reference(entry, root, series.seeds, lacking))
    _say_found(entry, other, lacking, series.seeds)
    if not other:
        print(f"the sensitivity is not measured in this render: {LABEL} holds no run of entry {entry} at the "
              f"'{SE.PROFILE}' profile's own budget ({SE.budget_text(want)})")  # fmt: skip
        return
    rows = SE.compare(entry, (ms, ref), (other, other_ref), NAMES)
    table = pd.DataFrame(rows).set_index("claim")
    show(table)
    print(SE.verdict_line(rows, NAMES))


def _say_found(entry: str, other: list[dict[str, Any]], lacking: list[str], seeds: list[int]) -> None:
    """What the cpu-profile side rests on: its seeds, and the runs it lacks (named; not trained here)."""
    found = ", ".join(str(m["config"]["seed"]) for m in other) or "none"
    n = len(other)
    words = f"{n} seed{'s' if n != 1 else ''}" + (f" ({SE.ONE_SEED})" if n == 1 else "")
    print(f"the '{SE.PROFILE}' profile's runs (read from {LABEL}, never trained here): seed(s) {found} of entry "
          f"{entry}, {words}")  # fmt: skip
    if lacking:
        print(f"lacking: {'; '.join(f'{LABEL}/{x}' for x in lacking)}. The sensitivity is not measured for them (not trained here; "
              f"{train_command(entry, seeds)} trains them)")  # fmt: skip
