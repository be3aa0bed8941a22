"""Audits of finished runs: the stress test, the shortcut audit, threshold rules, the recipe candidates."""

from __future__ import annotations

import sys

from ..core import config as C
from .common import UsageError, data_source, int_in, manifest_args


def cmd_stress(args) -> int:
    from ..studies.stress import stress_run

    for d in args.run_dirs:
        r = stress_run(d, data_source(args), split=args.split, reuse=not args.recompute)
        print(f"{d}:")
        print(r.table())
        print()
    return 0


def add_stress(sub) -> None:
    s = sub.add_parser(
        "stress",
        help="simulated scanner shifts: a finished run's metrics on shifted copies of its "
        "test split (writes RUN_DIR/stress.json)",
    )
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    manifest_args(s)
    s.add_argument(
        "--split",
        default="val",
        choices=C.SPLITS,
        help="the split to shift (default val: the stress test is for choosing a recipe; test is for the final report)",
    )
    s.add_argument("--recompute", action="store_true", help="ignore a saved stress.json")
    s.set_defaults(func=cmd_stress)


def cmd_shortcuts(args) -> int:
    from ..core.io import save_json
    from ..studies.shortcuts import Probes, audit_run, format_audit

    reps, probes = {}, Probes()  # runs trained on the same films share one fitted probe
    for d in args.run_dirs:
        reps[str(d)] = rep = audit_run(d, args.data_dir, split=args.split, seed=args.seed, probes=probes)
        print(f"{d} ({rep['experiment']}) on {args.split}:")
        print(format_audit(rep))
        print()
    if args.json:  # one run: its report; several: keyed by run folder
        save_json(next(iter(reps.values())) if len(reps) == 1 else reps, args.json)
    return 0


def add_shortcuts(sub) -> None:
    s = sub.add_parser(
        "shortcuts",
        help="shortcut audit of a finished run: a probe on acquisition statistics, the "
        "model's reliance on pixels outside and inside the lungs, worst-group recall "
        "(writes RUN_DIR/shortcuts_SPLIT.json)",
    )
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    s.add_argument(
        "--split",
        default="val",
        choices=C.SPLITS,
        help="the split to audit (default val: the audit is used for selection)",
    )
    s.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of the probe and the bootstrap")
    s.add_argument("--json", help="also write the report here")
    s.set_defaults(func=cmd_shortcuts)


def cmd_thresholds(args) -> int:
    from ..core.io import save_json
    from ..studies.thresholds import compare_run, format_rules

    reps = {}
    for d in args.run_dirs:
        reps[str(d)] = r = compare_run(d, args.data_dir, n_splits=args.splits)
        print(
            f"{d} ({r['experiment']}, trained rule {r['rule_trained']}, checkpoint threshold "
            f"{r['checkpoint_threshold']:.3f}):"
        )
        print(format_rules(r))
        print()
    if args.json:
        save_json(next(iter(reps.values())) if len(reps) == 1 else reps, args.json)
    return 0


def add_thresholds(sub) -> None:
    s = sub.add_parser(
        "thresholds",
        help="compare decision-threshold rules on a finished run's validation split by "
        "cross-fitting over patients (never the test split)",
    )
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    s.add_argument("--splits", type=int_in(1, 10_000), default=50, help="random halvings of the patients (default 50)")
    s.add_argument("--json", help="also write the comparison here")
    s.set_defaults(func=cmd_thresholds)


def cmd_candidates(args) -> int:
    from ..core.io import save_json
    from ..data.dataset import resolve_data_dir
    from ..studies.candidates import compare, format_selection, parse_groups, report, report_file, select

    if args.select:  # the choice, on validation only
        sel = select(parse_groups(args.groups))
        if args.json:
            save_json(sel, args.json)
        print(format_selection(sel))
        return 0
    if args.from_json:
        print(report_file(args.from_json))
        return 0
    if not args.groups:
        raise UsageError("name at least one candidate NAME=RUN_DIR[,RUN_DIR...] (or --from-json FILE)")
    try:
        groups = parse_groups(args.groups)
    except ValueError as e:
        raise UsageError(str(e)) from None
    root, _ = resolve_data_dir(args.data_dir)
    results = compare(
        root, groups, ensemble=not args.no_ensemble, progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    if args.json:
        save_json(results, args.json)
    print(report(results))
    return 0


def add_candidates(sub) -> None:
    s = sub.add_parser(
        "candidates",
        help="the recipe candidates' table from finished run folders: internal test, stress "
        "mean/worst/held-out NORMAL recall, youden vs youden_shifted, seed ensembles",
    )
    s.add_argument("groups", nargs="*", metavar="NAME=RUN_DIR[,RUN_DIR...]")
    s.add_argument(
        "--data-dir",
        help="the data folder the runs trained on (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture)",
    )
    s.add_argument("--json", help="write every computed number here")
    s.add_argument("--no-ensemble", action="store_true", help="skip each candidate's seed ensemble")
    s.add_argument("--from-json", help="print the tables from a saved --json file instead of recomputing")
    s.add_argument(
        "--select",
        action="store_true",
        help="choose the recipe on validation only: the lung criterion from each run's shortcuts_val.json, "
        "then validation AUC, paired by seed (reads no test split)",
    )
    s.set_defaults(func=cmd_candidates)
