"""Re-measure site adaptation's guard on simulated sites of a run's validation films (docs/adaptation.md).

    python tools/site_study.py RUN_DIR [--data-dir DATA] [--max-films N] [--out table.csv]

Validation films only: the guard's limits are chosen here, never on a test split or the cohort."""

import argparse
import logging
import sys
import time

from pneumolib.core.io import write_text
from pneumolib.studies.runs import open_run
from pneumolib.studies.site import site_study


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--data-dir")
    ap.add_argument("--max-films", type=int, default=400, help="validation films drawn (seeded), per class mix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="CSV of the table")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    o = open_run(a.run_dir, a.data_dir)
    val = list(o.data.splits["val"])
    import torch

    g = torch.Generator().manual_seed(a.seed)
    order = torch.randperm(len(val), generator=g).tolist()
    ref = [val[i] for i in order[: len(order) // 3]]  # the relative adaptation's reference: other films
    val = [val[i] for i in order[len(order) // 3 :][: a.max_films]]
    t0 = time.time()
    df = site_study(o.predictor, val, seed=a.seed, progress=lambda s: print(s, file=sys.stderr, flush=True),
                    reference_films=ref)  # fmt: skip
    cols = ["condition", "n", "adapted", "plain_acc", "site_acc", "plain_bal", "always_bal", "site_bal", "relative_bal", "plain_rec_n",
            "site_rec_n", "plain_rec_p", "site_rec_p", "site_change", "stable", "class_mix_kept", "no_lost_certainty", "moved",
            "harm"]  # fmt: skip
    print(df[[c for c in cols if c in df]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"{len(val)} validation films of {a.run_dir}; {time.time() - t0:.0f} s", file=sys.stderr)
    if a.out:
        write_text(a.out, df.to_csv(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
