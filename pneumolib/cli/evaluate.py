"""Evaluation commands: evaluate a checkpoint on a cohort, build an ensemble, write a model card, compare runs."""

from __future__ import annotations

import sys

from ..core import config as C
from .common import UsageError, command_line, data_source, float_in, manifest_args


def cohort_split(data_dir, split: str, image_size: int, resources=None):
    """One split of a cohort folder (no train/ needed), pre-scanned in RESOURCES (the predictor's context,
    data.resources.Resources, so the films are decoded once); its notes and skipped files on stderr."""
    from ..data.dataset import discover_split, prescan

    data = discover_split(data_dir, split)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    data = prescan(data, image_size, resources=resources)
    from ..data.dataset import summarise_errors

    for line in summarise_errors(data.bad_files):
        print(f"skipping unreadable file: {line}", file=sys.stderr)
    return data[split]


def _print_adapted(ev, args) -> None:
    """--adapt: the adapted model's metrics with the adaptation's record."""
    from ..analysis.adapt import ADAPTED_LABEL
    from ..analysis.evaluate import format_metrics

    a = ev.adaptation
    print(f"\n{ADAPTED_LABEL.upper()} (--adapt {args.adapt})")
    guard = a.extra.get("guard")
    if guard:
        print(
            guard["reason"]
            if guard.get("fell_back_to")
            else f"label-shift check passed: EM {guard['em_plain']:.3f} plain, {guard['em_adabn']:.3f} after AdaBN "
            f"(within {guard['tolerance']:.2f})"
        )
    if a.bn:
        print(
            f"BatchNorm statistics re-estimated in {', '.join(a.bn['layers'])} on {a.bn['n_images']} images "
            f"(alpha {a.bn['alpha']:.2f})"
        )
    if a.prior:
        pr = a.prior
        print(
            f"estimated PNEUMONIA share {pr['estimated_prior']:.3f} (training prior {pr['train_prior']:.3f}: "
            f"{pr['train_prior_source']}); threshold {pr['base_threshold']:.3f} -> {pr['threshold']:.3f}"
        )
        if pr.get("warning"):
            print(f"warning: {pr['warning']}")
    print(format_metrics(ev.record["adapted"]))
    if args.save_adapted:
        print(f"wrote {a.save(args.save_adapted)} (the adaptation is recorded in its extra['adaptation'])")


def cmd_evaluate(args) -> int:
    from ..analysis.evaluate import format_metrics
    from ..analysis.ood import describe
    from ..core.io import save_json
    from ..studies.card import record_evaluation
    from ..studies.cohort import evaluate_cohort

    if args.save_adapted and args.adapt not in ("bn", "prior", "both"):
        raise UsageError("--save-adapted needs --adapt bn|prior|both")
    if not 0.0 <= args.adapt_alpha <= 1.0:
        raise UsageError(f"--adapt-alpha must be between 0 and 1, got {args.adapt_alpha}")
    source = data_source(args, required=True)
    ev = evaluate_cohort(
        args.checkpoint,
        source,
        args.split,
        threshold=args.threshold,
        adapt_mode=args.adapt,
        adapt_alpha=args.adapt_alpha,
        read=cohort_split,  # says what it skipped
        command=command_line(args),
        argv=["pneumolib", *map(str, args.argv)],
    )
    m = ev.metrics
    print(f"{ev.checkpoint}: {ev.predictor.config.name} on {source}/{args.split}")
    print(format_metrics(m))
    if "ood" in m:  # is this cohort like the training data? (flags ~0.5% + ~1% of validation films)
        print(describe(m["ood"]))
    if "lungs_not_found" in m:  # the films whose lungs were not found were kept whole: say how many
        print(f"lung crop: lungs not found on {m['lungs_not_found']} of {len(ev.samples)} films (kept whole)")
    if ev.adaptation is not None:
        _print_adapted(ev, args)
    if ev.site is None and ev.adaptation is None:
        print(f"\nadaptation: {ev.record['adaptation_used']}")
    if ev.site is not None:
        print(f"\n{ev.site.line()}")
        if ev.site_metrics is not None:
            print(format_metrics(ev.site_metrics))
    if args.json:
        save_json(ev.record, args.json)
    if args.scores:
        ev.scores.to_csv(args.scores, ev.threshold, ev.columns)
    try:  # every evaluation is kept beside the checkpoint, for its model card
        print(f"recorded in {record_evaluation(ev.checkpoint, ev.record)}")
    except OSError as e:
        print(f"note: could not record the evaluation beside the checkpoint ({e})", file=sys.stderr)
    return 0


def add_evaluate(sub) -> None:
    s = sub.add_parser("evaluate", help="report a checkpoint's metrics on a split")
    s.add_argument("checkpoint")
    manifest_args(s)
    s.add_argument(
        "--data-dir",
        help="DIR with DIR/<split>/{NORMAL,PNEUMONIA}, or a folder holding NORMAL/ and PNEUMONIA/ directly",
    )
    s.add_argument("--split", default="test", choices=C.SPLITS)
    s.add_argument(
        "--threshold",
        type=float_in(0.0, 1.0),
        help="override the checkpoint's decision threshold (a number from 0 to 1)",
    )
    s.add_argument("--json", help="write the metrics as JSON here")
    s.add_argument("--scores", help="write per-image scores as CSV here")
    s.add_argument(
        "--adapt",
        choices=C.SITE_MODES + C.ADAPT_MODES,
        default="site",
        help="label-free adaptation to the cohort, reported beside the plain numbers: site (default) = bn when "
        "the cohort has at least 64 films and label-free checks pass (docs/adaptation.md); none = the model as "
        "trained only; bn = re-estimate the early BatchNorm statistics on its images (AdaBN); prior = estimate "
        "its class mix by EM and move the threshold; both = bn then prior",
    )
    s.add_argument(
        "--adapt-alpha",
        type=float_in(0.0, 1.0),
        default=1.0,
        help="bn: weight of the cohort's statistics against the training ones (default 1.0)",
    )
    s.add_argument("--save-adapted", metavar="PATH", help="save the adapted model as a new checkpoint here")
    s.set_defaults(func=cmd_evaluate)


def cmd_ensemble(args) -> int:
    from ..analysis.evaluate import format_metrics
    from ..core.io import save_json
    from ..studies.ensemble import ensemble_runs

    e = ensemble_runs(args.checkpoints, args.out, args.data_dir, temperature=not args.no_temperature)
    pred, rec, v = e.predictor, e.record, e.record["val"]
    overlap = rec["val_films_trained_on"]
    if any(overlap.values()):
        print(
            "warning: "
            + ", ".join(
                f"the member with seed {k} trained on {n} of the {v['n']} validation films"
                for k, n in overlap.items()
                if n
            )
            + f" (no usable val/ folder in {e.root}: each seed split its own); the fitted temperature and threshold "
            "are optimistic, the test split's numbers are not"
        )
    print(
        f"{len(e.paths)} member(s), seeds {', '.join(map(str, rec['seeds']))}; temperature {rec['temperature']:.3f}; "
        f"threshold ({rec['threshold_rule']}) {pred.threshold:.3f} (members: "
        f"{', '.join(f'{t:.3f}' for t in rec['member_thresholds'])})"
    )
    print(
        f"validation ({v['n']} films): NLL {v['nll_before']:.3f} -> {v['nll_after']:.3f}, "
        f"ECE {v['ece_before']:.3f} -> {v['ece_after']:.3f}"
    )
    out = {"checkpoint": str(args.out), **rec}
    if e.test is not None:
        out["test"] = e.test
        print(f"test split ({e.data.holdout} holdout):")
        print(format_metrics(e.test))
    print(f"wrote {args.out}")
    if args.json:
        save_json(out, args.json)
    return 0


def add_ensemble(sub) -> None:
    s = sub.add_parser(
        "ensemble",
        help="serve several runs (e.g. seeds) as one checkpoint: mean probability, "
        "temperature and threshold fitted on the validation split",
    )
    s.add_argument("checkpoints", nargs="+", help="checkpoint.pt files or run folders (one = temperature scaling only)")
    s.add_argument(
        "--data-dir",
        help="the training data folder (its val split fits the temperature and threshold; "
        "default: the bundled fixture)",
    )
    s.add_argument("--out", required=True, help="where to write the combined checkpoint")
    s.add_argument("--no-temperature", action="store_true", help="keep temperature 1 (plain averaging)")
    s.add_argument("--json", help="write what was fitted, and the test split's metrics, as JSON here")
    s.set_defaults(func=cmd_ensemble)


def cmd_card(args) -> int:
    from ..studies.card import write_model_card

    for d in args.run_dirs:
        print(f"wrote {write_model_card(d)}")
    return 0


def add_card(sub) -> None:
    s = sub.add_parser("card", help="write RUN_DIR/MODEL_CARD.md from what the run folder holds")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    s.set_defaults(func=cmd_card)


def cmd_compare(args) -> int:
    from ..studies.experiment import compare_runs

    print(compare_runs(args.run_dirs))
    return 0


def add_compare(sub) -> None:
    s = sub.add_parser("compare", help="print the comparison table for finished run folders")
    s.add_argument("run_dirs", nargs="+")
    s.set_defaults(func=cmd_compare)
