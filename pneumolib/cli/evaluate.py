"""Evaluation commands: evaluate a checkpoint on a cohort, build an ensemble, write a model card, compare runs."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import UsageError, command_line, data_source, float_in, manifest_args


def cohort_split(data_dir, split: str, image_size: int, cache=None):
    """One split of a cohort folder (no train/ needed), pre-scanned into CACHE (the predictor's, so the films are
    decoded once); its notes and skipped files on stderr."""
    from ..data.dataset import discover_split, prescan

    data = discover_split(data_dir, split)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    data = prescan(data, image_size, cache=cache)
    from ..data.dataset import summarise_errors

    for line in summarise_errors(data.bad_files):
        print(f"skipping unreadable file: {line}", file=sys.stderr)
    return data[split]


def _adapted(pred, samples, threshold: float, cohort: str, args) -> dict:
    """--adapt: the adapted model's metrics with the adaptation's record, printed as they are computed."""
    from ..analysis.adapt import ADAPTED_LABEL, adapt
    from ..analysis.evaluate import compute_metrics, format_metrics

    a = adapt(pred, samples, args.adapt, threshold=threshold, alpha=args.adapt_alpha, cohort=cohort)
    am = compute_metrics(a.scores, a.threshold, seed=0)
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
    print(format_metrics(am))
    if args.save_adapted:
        print(f"wrote {a.save(args.save_adapted)} (the adaptation is recorded in its extra['adaptation'])")
    return dict(am, adaptation=a.record())


def cmd_evaluate(args) -> int:
    from datetime import datetime, timezone

    from ..analysis.evaluate import compute_metrics, format_metrics, predict_samples
    from ..core.io import make_dir, save_json
    from ..core.runs import RunDir
    from ..models.checkpoint import Predictor, checkpoint_file
    from ..studies.card import cohort_name, record_evaluation

    if args.save_adapted and not args.adapt:
        raise UsageError("--save-adapted needs --adapt bn|prior|both")
    if not 0.0 <= args.adapt_alpha <= 1.0:
        raise UsageError(f"--adapt-alpha must be between 0 and 1, got {args.adapt_alpha}")
    source = data_source(args, required=True)
    args.checkpoint = str(checkpoint_file(args.checkpoint))
    # before the work: the record kept beside the checkpoint goes into pneumolib's own folder, never through a link
    make_dir(RunDir(Path(args.checkpoint).parent).evaluations, ours=True)
    pred = Predictor.load(args.checkpoint)
    samples = cohort_split(source, args.split, pred.preprocessing.view, pred.cache)
    threshold = pred.threshold if args.threshold is None else args.threshold
    # one pass: the scores and the features the OOD flag reads
    scores = predict_samples(
        pred.model,
        samples,
        pred.preprocessing,
        tta=pred.config.tta,
        cache=pred.cache,
        features=bool(pred.extra.get("ood")),
    )
    m = compute_metrics(scores, threshold, seed=0)
    print(f"{args.checkpoint}: {pred.config.name} on {source}/{args.split}")
    print(format_metrics(m))
    from ..analysis import ood

    far, columns = ood.flag(pred.extra.get("ood"), scores.features), {}
    if far is not None:  # is this cohort like the training data? (flags ~0.5% + ~1% of validation films)
        whole = ood.population_flag(pred.extra["ood"], [s.path for s in samples])
        m["ood"] = ood.summary(pred.extra["ood"], *far, whole=whole)
        print(ood.describe(m["ood"]))
        columns = {"ood_distance": [f"{v:.2f}" for v in far[0]], "ood_flag": [int(v) for v in far[1]]}
        if whole is not None:
            columns.update(population_score=[f"{v:.3f}" for v in whole[0]], population_flag=[int(v) for v in whole[1]])
    if pred.preprocessing.crop != "none":  # the films whose lungs were not found were kept whole: say how many
        notes = [pred.input_note(s.path) for s in samples]
        m["lungs_not_found"] = sum(n.startswith("lungs=NOT FOUND") for n in notes)
        print(f"lung crop: lungs not found on {m['lungs_not_found']} of {len(samples)} films (kept whole)")
        columns["lungs"] = [n.removeprefix("lungs=") for n in notes]
    cohort = cohort_name(source.csv.with_suffix("") if args.data_csv else source, args.split, args.adapt)
    adapted = _adapted(pred, samples, threshold, cohort, args) if args.adapt else None
    record = dict(
        m,
        checkpoint=str(Path(args.checkpoint).resolve()),
        split=args.split,
        experiment=pred.config.name,
        cohort=cohort,
        data_dir=str(source) if args.data_csv else str(Path(args.data_dir).expanduser().resolve()),
        checkpoint_threshold=pred.threshold,
        threshold_override=args.threshold,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command_line(),
        argv=list(sys.argv),
        adapted=adapted,
    )
    if args.json:
        save_json(record, args.json)
    if args.scores:
        scores.to_csv(args.scores, threshold, columns)
    try:  # every evaluation is kept beside the checkpoint, for its model card
        print(f"recorded in {record_evaluation(args.checkpoint, record)}")
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
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument(
        "--threshold",
        type=float_in(0.0, 1.0),
        help="override the checkpoint's decision threshold (a number from 0 to 1)",
    )
    s.add_argument("--json", help="write the metrics as JSON here")
    s.add_argument("--scores", help="write per-image scores as CSV here")
    s.add_argument(
        "--adapt",
        choices=["bn", "prior", "both"],
        help="label-free adaptation to the cohort, reported beside the plain numbers: bn = re-estimate the "
        "early BatchNorm statistics on its images (AdaBN); prior = estimate its class mix by EM and move "
        "the threshold; both = bn then prior",
    )
    s.add_argument(
        "--adapt-alpha",
        type=float_in(0.0, 1.0),
        default=1.0,
        help="bn: weight of the cohort's statistics against the training ones (default 1.0)",
    )
    s.add_argument("--save-adapted", metavar="PATH", help="save the adapted model as a new checkpoint here")
    s.set_defaults(func=cmd_evaluate)


def _ensemble_data(paths: list[Path], data_dir):
    """The data the members trained on: their shared holdout, the first member's val split."""
    from ..data.dataset import prepare, resolve_data_dir
    from ..models.checkpoint import Predictor

    root, _ = resolve_data_dir(data_dir)
    members = [Predictor.load(p) for p in paths]
    holdouts = {m.extra.get("holdout", "folders") for m in members}
    if len(holdouts) > 1:
        raise UsageError(
            f"{paths[0]}: the members were trained with different holdouts ({', '.join(sorted(holdouts))})"
        )
    first = members[0]  # its seed rebuilds the same val split when val/ is pooled with train/
    data = prepare(root, seed=first.config.seed, holdout=holdouts.pop(), image_size=first.preprocessing.view)
    if "val" not in data.splits or not data["val"]:
        raise UsageError(f"{root}: no validation images to fit the temperature and threshold on")
    return root, data, first


def cmd_ensemble(args) -> int:
    from ..analysis.evaluate import compute_metrics, format_metrics, predict_samples
    from ..core.io import save_json
    from ..core.runs import RunDir
    from ..data.dataset import apply_holdout, discover
    from ..models.checkpoint import save_checkpoint
    from ..training.ensemble import build_ensemble, validation_overlap

    paths = [RunDir(c).checkpoint if Path(c).is_dir() else Path(c) for c in args.checkpoints]
    root, data, first = _ensemble_data(paths, args.data_dir)
    pred = build_ensemble(paths, data["val"], temperature=not args.no_temperature)
    rec, v = pred.extra["ensemble"], pred.extra["ensemble"]["val"]
    rec["holdout"] = data.holdout
    others = sorted(set(rec["seeds"]) - {first.config.seed})
    overlap = validation_overlap(
        data["val"], {s: apply_holdout(discover(root, seed=s), data.holdout)["train"] for s in others}
    )
    rec["val_films_trained_on"] = {str(k): n for k, n in overlap.items()}
    if any(overlap.values()):
        print(
            "warning: "
            + ", ".join(
                f"the member with seed {k} trained on {n} of the {v['n']} validation films"
                for k, n in overlap.items()
                if n
            )
            + f" (no usable val/ folder in {root}: each seed split its own); the fitted temperature and threshold "
            "are optimistic, the test split's numbers are not"
        )
    save_checkpoint(args.out, pred.model, pred.config, pred.threshold, pred.extra)
    print(
        f"{len(paths)} member(s), seeds {', '.join(map(str, rec['seeds']))}; temperature {rec['temperature']:.3f}; "
        f"threshold ({rec['threshold_rule']}) {pred.threshold:.3f} (members: "
        f"{', '.join(f'{t:.3f}' for t in rec['member_thresholds'])})"
    )
    print(
        f"validation ({v['n']} films): NLL {v['nll_before']:.3f} -> {v['nll_after']:.3f}, "
        f"ECE {v['ece_before']:.3f} -> {v['ece_after']:.3f}"
    )
    out = {"checkpoint": str(args.out), **rec}
    if "test" in data.splits and data["test"]:
        scores = predict_samples(pred.model, data["test"], pred.preprocessing, tta=pred.config.tta, cache=data.cache)
        out["test"] = compute_metrics(scores, pred.threshold, seed=0)
        print(f"test split ({data.holdout} holdout):")
        print(format_metrics(out["test"]))
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
