"""The lung segmenter's command: train, evaluate, segment, coverage, population."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core import config as C
from .common import UsageError, command_line, commit, int_in


def _lungs_coverage(L, seg, args) -> int:
    """lungs coverage: how much annotated lung the lung-mask view keeps, per dilation (validation by default)."""
    from ..core.io import save_json

    if not args.data_dir:
        raise UsageError("lungs coverage needs --data-dir (a folder holding chest_xray/ and lung_masks/)")
    split = args.split or "val"  # the dilation is chosen on validation films, never the test split
    pairs = L.discover_masks(args.data_dir).get(split, [])
    if not pairs:
        raise UsageError(f"{args.data_dir}: no annotated masks in the {split} split")
    r = L.mask_coverage(seg, pairs)
    print(
        f"{split} split, {len(pairs)} annotated films; kept = share of films keeping at least "
        f"{L.COVERAGE_KEEP:.0%} of their annotated lung; mean and 5th percentile of the share kept"
    )
    print(L.format_coverage(r))
    if args.json:
        save_json({**r, "split": split, "dilations": {str(k): v for k, v in r["dilations"].items()}}, args.json)
    return 0


def _lungs_population(seg, args) -> int:
    """lungs population: fit the whole-film population reference on a data folder's training films (threshold on its
    validation films), report the share of each split flagged and the score of any FILES given."""
    from ..core.io import save_json
    from ..data import population as P
    from ..studies.lungs import fit_population

    if not args.data_dir:
        raise UsageError("lungs population needs --data-dir (a Kaggle-layout folder, or one holding chest_xray/)")
    info = {"command": command_line(args), "commit": commit(), "segmenter": args.weights}
    fit = fit_population(args.data_dir, seg, args.files, seed=args.seed, info=info)
    for split in fit.splits:
        r = fit.report[split]
        print(f"{split}: {r['flagged']} of {r['n']} films flagged ({r['share']:.1%}), median score {r['median']:.3f}")
    print(f"threshold {fit.reference.threshold:.3f} (the {P.FLAG_QUANTILE:.0%} quantile of validation scores)")
    for f, score, flagged in fit.scored:
        print(f"{f}\tscore={score:.3f}\t{'NOT FROM THE TRAINING POPULATION' if flagged else 'like training'}")
    for e in fit.problems:
        print(f"pneumolib: error: {e}", file=sys.stderr)
    if args.ship or args.out:
        out = P.shipped_path() if args.ship else Path(args.out)
        print(f"wrote {fit.reference.save(out)}")
    if args.json:
        save_json(fit.report, args.json)
    return 2 if fit.problems else 0


def _lungs_train(args) -> int:
    """lungs train: train the segmenter on annotated masks, test it on the test split's, write it."""
    from ..core.io import save_json
    from ..data import lungs as L
    from ..studies.lungs import train_tested_segmenter

    if not args.data_dir:
        raise UsageError("lungs train needs --data-dir (a folder holding chest_xray/ and lung_masks/)")
    provenance = {"command": command_line(args), "commit": commit()}
    seg, history, r = train_tested_segmenter(args.data_dir, epochs=args.epochs, seed=args.seed, provenance=provenance)
    if r is not None:
        print(f"test: Dice mean {r['dice_mean']:.4f}, 5th percentile {r['dice_p05']:.4f} ({r['n']} films)")
    out = L.shipped_weights() if args.ship else Path(args.out or "lungs_unet.pt")
    print(
        f"wrote {seg.save(out)} (best epoch {seg.provenance['best_epoch']}, val Dice "
        f"{seg.provenance['val_dice_at_size']:.4f}, {seg.provenance['train_seconds'] / 60:.1f} min)"
    )
    if args.json:
        save_json({"provenance": seg.provenance, "history": history}, args.json)
    return 0


def _lungs_evaluate(L, seg, args) -> int:
    """lungs evaluate: Dice on a split's annotated masks (test by default), and how often the mask check passes."""
    from ..core.io import save_json
    from ..studies.lungs import annotated_pairs, evaluate_segmenter

    args.split = args.split or "test"
    if not args.data_dir:
        raise UsageError("lungs evaluate needs --data-dir (a folder holding chest_xray/ and lung_masks/)")
    pairs = annotated_pairs(args.data_dir, args.split)
    r = evaluate_segmenter(seg, pairs)
    print(
        f"{args.split}: Dice mean {r['dice_mean']:.4f}, 5th percentile {r['dice_p05']:.4f}, min "
        f"{r['dice_min']:.4f} ({r['n']} annotated films); quality check passed on {r['qc_pass_rate']:.1%} of "
        f"their predicted masks and on {r['qc_pass_rate_all_films']:.1%} of all {r['n_films']} films of the "
        f"split; annotated masks failing it: {r['qc_false_fail']}; masks with Dice < 0.9 passing it: "
        f"{r['qc_false_pass']} of {r['qc_bad_masks']}"
    )
    if args.json:
        save_json(r, args.json)
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from ..core.io import save_figure

        save_figure(L.plot_comparison(seg, pairs, r["dice"]), args.figure, dpi=120)
        print(f"wrote {args.figure}")
    return 0


def cmd_lungs(args) -> int:
    from ..data import lungs as L

    if args.action == "train":
        return _lungs_train(args)
    seg = L.LungSegmenter.load(args.weights)
    if args.action == "coverage":
        return _lungs_coverage(L, seg, args)
    if args.action == "population":
        return _lungs_population(seg, args)
    if args.action == "evaluate":
        return _lungs_evaluate(L, seg, args)
    if not args.files or not args.out:
        raise UsageError("lungs segment needs FILES... and --out DIR")
    refused = L.segment_files(seg, args.files, args.out, lambda line: print(line))
    for e in refused:
        print(f"pneumolib: error: {e}", file=sys.stderr)
    return 2 if refused else 0


def add_lungs(sub) -> None:
    s = sub.add_parser(
        "lungs",
        help="the lung-field segmenter: train it on annotated masks, evaluate its Dice, "
        "segment films (DICOM included), measure mask coverage, fit the whole-film "
        "population reference",
    )
    s.add_argument("action", choices=["train", "evaluate", "segment", "coverage", "population"])
    s.add_argument("files", nargs="*", help="segment: the films; population: films to score against the reference")
    s.add_argument(
        "--data-dir",
        help="train/evaluate/coverage: a folder holding chest_xray/ and lung_masks/ (or the "
        "fixture's masks/ layout); population: a Kaggle-layout folder or one holding "
        "chest_xray/",
    )
    s.add_argument("--weights", help="evaluate/segment: a segmenter file (default: the one shipped in the package)")
    s.add_argument("--split", default=None, choices=C.SPLITS, help="evaluate: default test; coverage: default val")
    s.add_argument("--epochs", type=int_in(1, C.MAX_EPOCHS), default=30)
    s.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    s.add_argument(
        "--out",
        help="train: where to write the segmenter (default lungs_unet.pt); segment: folder for "
        "masks and overlays; population: where to write the reference",
        default=None,
    )
    s.add_argument(
        "--ship",
        action="store_true",
        help="train/population: write the weights or the reference into the package (maintainers)",
    )
    s.add_argument(
        "--json",
        help="train: history and provenance; evaluate: dice_mean, dice_p05, n, per-film Dice; "
        "population: flag rates per split and the FILES' scores",
    )
    s.add_argument("--figure", help="evaluate: a PNG of the worst-Dice films and others, annotated vs learned masks")
    s.set_defaults(func=cmd_lungs)
