"""Train (or finish) every seed's run of the notebook series ahead of the render, exactly as the notebooks would.

The render (tools/render_notebooks.sh) reuses a finished run whose training, holdout and data match
(studies.experiment.training_differences) and resumes an interrupted one from its last epoch, so the many CPU hours
of training can be spread over several sessions and the render itself stays one command at one commit.

usage: python tools/train_series.py DATA_DIR RUNS [--profile cpu] [--seeds 0,1,2,3,4] [--budget k=v,...] [targets...]
targets: entries (01 .. 10; 10 = the recipe, a seed ensemble: each seed S trains members S, S+1, S+2 at the
series' budget, or at the recipe's own budget without --budget), 'ablation' (notebook 10's steps on the random
split, --skip-steps as in the notebook) and 'matched' (the log's baseline at the recipe's budget); default 01-09.
Target 10 also runs each seed's stress test.

The runs of notebooks 01 and 10's sensitivity row (their verdicts at the cpu profile's own budget) go into a root of
their own, since run folders are keyed by entry and seed only: `--profile cpu` with no --budget, e.g.
python tools/train_series.py DATA_DIR SENS_RUNS 01 10 matched --profile cpu --seeds 0,1,2,3,4
then render with PNEUMOLIB_SENSITIVITY_RUNS=SENS_RUNS (the render only reads them).
"""

from __future__ import annotations

import argparse
import logging
import time

from pneumolib.notebook import series
from pneumolib.studies.catalogue import get_config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("runs")
    p.add_argument("entries", nargs="*", default=["01", "02", "03", "04", "05", "06", "07", "08", "09"])
    p.add_argument("--skip-steps", default="", help="ablation side branches to leave out, e.g. abl_per_image")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--budget", default="")
    p.add_argument("--device", default="auto")
    a = p.parse_intermixed_args()  # entries may come before or after the options
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    s = series.start(a.data_dir, a.profile, a.device, a.seeds, a.budget, a.runs)
    for entry in a.entries:
        t = time.perf_counter()
        if entry == "ablation":  # what notebook 10 trains with its default HOLDOUTS
            series.ablation(s, holdouts="folders", skip=a.skip_steps)
        elif entry == "matched":
            series.matched_baseline(s)
        else:
            results = series.run_seeds(get_config(entry), s)
            if entry == "10":  # its claims read the stress test (stress.json, as notebook 10's stress cell keeps it)
                series.stress_seeds(results, s)
        print(f"{entry}: {time.perf_counter() - t:.0f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
