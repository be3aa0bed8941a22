"""Judge the log's claims on a folder of finished series runs, without a notebook: one line per claim (entry, claim,
mean [95% interval], verdict), each entry's plain sentence, the share of tested claims that cannot tell, and how
many of those more seeds would decide at the observed effects and spreads (SeedEffect.needed: an estimate).

It reads RUNS/NN_name/seedS (what tools/train_series.py and the notebooks write) and trains nothing; an entry
without runs is skipped. The same rule as the notebooks (studies.verdicts), so its figures are theirs.

usage: python tools/verdict_table.py RUNS [--profile cpu] [--seeds 0,1,2,3,4] [entries...]
"""

from __future__ import annotations

import argparse
import contextlib
import io

from pneumolib.notebook import series, summary
from pneumolib.studies import verdicts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs")
    p.add_argument("entries", nargs="*", default=[f"{i:02d}" for i in range(1, 10)])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seeds", default="0,1,2,3,4")
    a = p.parse_intermixed_args()
    with contextlib.redirect_stdout(io.StringIO()):  # the data folder is not read: only the runs' records are
        s = series.start("fixture", a.profile, "cpu", a.seeds, "", a.runs)
    print(f"runs: {a.runs}; profile {a.profile}; seeds {a.seeds}; rule: studies.verdicts (as the notebooks)")
    tested = undecided = 0
    open_rows: list[dict] = []  # the undecided claims' rows
    for entry in a.entries:
        with contextlib.redirect_stdout(io.StringIO()):  # load_runs says what it found; the table is enough here
            own = series.load_runs([entry], s).get(entry, [])
            ref = series.load_compared(entry, s)
        if not own:
            continue
        rows = verdicts.judge_entry(entry, own, ref)
        print(f"\n{entry} ({len(own)} seeds): {verdicts.headline(rows)}")
        for r in rows:
            iv = r.get("interval")
            span = f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""
            print(f"  {r['claim'][:60]:60} {r['mean']:.3f}{span}  {r['verdict']}")
            if not r["verdict"].startswith("not tested"):
                tested += 1
                if r["verdict"].startswith("cannot tell"):
                    undecided += 1
                    open_rows.append(r)
    print(f"\ncannot tell: {undecided} of {tested} tested claims" + (f" ({undecided / tested:.0%})" if tested else ""))
    if open_rows:  # the power estimate (core.stats.SeedEffect.needed) read across claims: not a promise
        by = summary.more_seeds(open_rows, (10, 20, 50))
        print("at the observed effects and spreads, the seeds that would decide them: "
              + ", ".join(f"{k} seeds {n}" for k, n in by.items()) + f" of the {undecided}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
