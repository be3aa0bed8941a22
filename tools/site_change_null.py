"""How often does the site guard's first check call a training-site folder a site change? (docs/adaptation.md)

    python tools/site_change_null.py VAL_SCORES.csv [--draws 200] [--films 64] [--seed 7]

VAL_SCORES.csv: `evaluate RUN/checkpoint.pt --split val --adapt none --scores VAL_SCORES.csv` (validation films
only, never a test split). Each draw splits the validation films at random: a third is the reference (what the
checkpoint keeps), the rest the pool a folder is drawn from, either the whole pool or FILMS films at a PNEUMONIA
share of 20% or 90% (drawn without replacement). analysis.site_shift.shift_test then asks whether the folder is a
site change; every folder here is from the training site, so the share called a change is the check's false-
adaptation rate, to be read against its level ALPHA."""

import argparse
import sys
import time

import numpy as np

from pneumolib.analysis.site_shift import ALPHA, score_reference, shift_test
from pneumolib.core.io import RecordError
from pneumolib.core.scores import read_scores


def rate(y: np.ndarray, p: np.ndarray, share: float | None, films: int, draws: int, seed: int) -> np.ndarray:
    """The p-values of DRAWS training-site folders (see the module docstring)."""
    rng, out = np.random.default_rng(seed), []
    for r in range(draws):
        idx = rng.permutation(len(y))
        ref, pool = idx[: len(y) // 3], idx[len(y) // 3 :]
        reference = score_reference(y[ref], p[ref])
        if share is None:
            folder = p[pool]
        else:
            k = int(round(share * films))
            i1, i0 = pool[y[pool] == 1], pool[y[pool] == 0]
            folder = np.concatenate([p[rng.choice(i1, k, replace=False)], p[rng.choice(i0, films - k, replace=False)]])
        out.append(shift_test(folder, reference, seed=r, n_boot=100).p_value)
    return np.array(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--films", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    try:
        df = read_scores(a.scores, split="val")
    except (OSError, RecordError) as e:
        print(f"error: {e}" if isinstance(e, RecordError) else f"error: {a.scores}: {e.strerror}", file=sys.stderr)
        return 2
    if df["y"].nunique() < 2:  # a test split's file has no 'val' rows: it is never read here
        print(f"error: {a.scores}: needs validation films (split 'val') of both classes", file=sys.stderr)
        return 2
    y, p = df["y"].to_numpy(), df["p_pneumonia"].to_numpy(float)
    t0 = time.time()
    print(f"{len(y)} validation films ({int(y.sum())} PNEUMONIA); {a.draws} draws each; level ALPHA = {ALPHA}")
    for share in (None, 0.2, 0.9):
        ps = rate(y, p, share, a.films, a.draws, a.seed)
        what = "the whole pool" if share is None else f"{a.films} films, {share:.0%} PNEUMONIA"
        print(f"{what:>28}: called a site change in {np.mean(ps < ALPHA):.1%} (median p {np.median(ps):.2f})")
    print(f"{time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
