"""Command line: python -m pneumolib {experiments,run,train,evaluate,predict,stress,compare,bench} ..."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import config as C

class UsageError(ValueError):
    pass


def _user_errors():
    # imported here, so that --help and 'experiments' do not pay for importing torch
    from .checkpoint import ChannelMismatch, CheckpointError
    from .data import DataError
    from .imaging import ImageError
    from .models import WeightsUnavailable
    return (UsageError, C.UnknownExperiment, DataError, ImageError, CheckpointError, ChannelMismatch,
            WeightsUnavailable, FileNotFoundError)


def cmd_experiments(args) -> int:
    for cfg in C.REGISTRY.values():
        print(f"{cfg.entry}  {cfg.name:<36} {cfg.date}  {C.format_diff(C.diff(C.previous(cfg), cfg))}")
    return 0


def _configs(names: list[str]) -> list[C.ExperimentConfig]:
    if not names or names == ["all"]:
        return list(C.REGISTRY.values())
    return [C.get_config(n) for n in names]


def cmd_run(args) -> int:
    from .experiment import comparison_rows, format_table, run_experiment, resolve_data_dir
    root, is_fixture = resolve_data_dir(args.data_dir)
    out = Path(args.out)
    results = []
    for cfg in _configs(args.experiments):
        # the series must run end to end, so missing ImageNet weights mean a loudly labelled random init
        r = run_experiment(cfg, root if not is_fixture else None, out / f"{cfg.entry}_{cfg.name}",
                           profile=args.profile, device=args.device, on_missing_weights="random_init",
                           cam_per_class=args.cam_per_class, strict=args.strict)
        results.append(r.metrics)
        print()
    print(f"Results on the test split of {'the bundled fixture' if is_fixture else root} (run folders in {out}):")
    print(format_table(comparison_rows(results)))
    return 0


def cmd_train(args) -> int:
    from .evaluate import format_metrics
    from .experiment import run_experiment
    overrides = {k: getattr(args, k) for k in ("epochs", "image_size", "seed", "batch_size")
                 if getattr(args, k) is not None}
    r = run_experiment(C.get_config(args.experiment), args.data_dir, args.out, profile=args.profile,
                       overrides=overrides, device=args.device,
                       on_missing_weights="random_init" if args.allow_random_init else "fail",
                       reuse=not args.retrain, cam_per_class=args.cam_per_class, strict=args.strict,
                       resume=args.resume, holdout=args.holdout)
    if "test" in r.metrics:
        print(format_metrics(r.metrics["test"]))
    print(f"wrote {Path(args.out) / 'checkpoint.pt'}, metrics.json, scores_test.csv")
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import Predictor
    from .data import discover_split, prescan
    from .evaluate import compute_metrics, format_metrics, predict_samples, save_json
    pred = Predictor.load(args.checkpoint)
    data = discover_split(args.data_dir, args.split)  # an external cohort needs no train/ folder
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    data = prescan(data, pred.preprocessing.image_size)
    for e in data.bad_files:
        print(f"skipping unreadable file: {e}", file=sys.stderr)
    threshold = pred.threshold if args.threshold is None else args.threshold
    scores = predict_samples(pred.model, data[args.split], pred.preprocessing, tta=pred.config.tta)
    m = compute_metrics(scores, threshold, seed=0)
    print(f"{args.checkpoint}: {pred.config.name} on {args.data_dir}/{args.split}")
    print(format_metrics(m))
    if args.json:
        m = dict(m, checkpoint=str(args.checkpoint), split=args.split, experiment=pred.config.name)
        save_json(m, args.json)
    if args.scores:
        scores.to_csv(args.scores, threshold)
    return 0


def cmd_predict(args) -> int:
    from .checkpoint import Predictor
    pred = Predictor.load(args.checkpoint)
    for path, (label, p) in zip(args.images, pred.predict_files(args.images)):
        print(f"{path}\t{label}\tp_pneumonia={p:.4f}\tthreshold={pred.threshold:.3f}")
    if args.cam_dir:
        from .cam import explain, save_overlays
        from .data import Sample, patient_id
        samples = [Sample(Path(p), -1, patient_id(p), "predict") for p in args.images]
        expl = explain(pred.model, samples, pred.preprocessing, pred.threshold)
        for p in save_overlays(expl, args.cam_dir):
            print(f"wrote {p}")
    return 0


def cmd_compare(args) -> int:
    from .experiment import comparison_rows, format_table, load_metrics
    print(format_table(comparison_rows([load_metrics(d) for d in args.run_dirs])))
    return 0


def cmd_bench(args) -> int:
    from .bench import bench, format_bench
    from .evaluate import save_json
    from .experiment import resolve_data_dir
    root, _ = resolve_data_dir(args.data_dir)
    steps = args.steps or (200 if args.device == "cuda" else 20)
    r = bench(root, device=args.device, image_size=args.image_size, batch_size=args.batch_size, steps=steps,
              workers=args.workers)
    print(format_bench(r))
    if args.json:
        save_json(r, args.json)
    return 0


def cmd_stress(args) -> int:
    from .stress import stress_run
    for d in args.run_dirs:
        r = stress_run(d, args.data_dir, split=args.split, reuse=not args.recompute)
        print(f"{d}:")
        print(r.table())
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pneumolib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("experiments", help="list the registered experiments and what each changes")
    s.set_defaults(func=cmd_experiments)

    def common(s, data_required=False):
        s.add_argument("--data-dir", required=data_required,
                       help="Kaggle-layout folder ROOT/{train,val,test}/{NORMAL,PNEUMONIA} (default: $PNEUMOLIB_DATA_DIR, "
                            "else the bundled fixture)")
        s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
        s.add_argument("--profile", choices=list(C.PROFILES), default=None,
                       help="run size: fixture | cpu | gpu | full (default: fixture for the fixture, else cpu or gpu)")
        s.add_argument("--cam-per-class", type=int, default=4, help="Grad-CAM images per class (0 = none)")
        s.add_argument("--strict", action="store_true",
                       help="refuse to start on any pre-scan finding: unreadable or identical files, patients in two splits "
                            "(default: skip unreadable files and list everything)")

    s = sub.add_parser("run", help="train and evaluate experiments, then print a comparison table (the main job)")
    s.add_argument("experiments", nargs="*", default=["all"], help="names or entry numbers, or 'all' (default)")
    s.add_argument("--out", default="runs", help="folder for the run folders (default: runs)")
    common(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("train", help="train one experiment; writes RUN_DIR/checkpoint.pt, metrics.json, scores")
    s.add_argument("experiment", help="name or entry number (see 'experiments')")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--epochs", type=int)
    s.add_argument("--image-size", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--retrain", action="store_true", help="train even if RUN_DIR holds a matching checkpoint")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from RUN_DIR/last.pt (the last completed epoch)")
    s.add_argument("--holdout", default="folders", choices=["folders", "early_ids"],
                   help="test split: the data folder's test/ (default), or early_ids: the earliest-numbered patients of "
                        "each file-name family, a proxy for a new acquisition batch (notebook 10)")
    s.add_argument("--allow-random-init", action="store_true",
                   help="when ImageNet weights are missing, train from random init (recorded as such) instead of failing")
    common(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="report a checkpoint's metrics on a split")
    s.add_argument("checkpoint")
    s.add_argument("--data-dir", required=True,
                   help="DIR with DIR/<split>/{NORMAL,PNEUMONIA}, or a folder holding NORMAL/ and PNEUMONIA/ directly")
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--threshold", type=float, help="override the checkpoint's decision threshold")
    s.add_argument("--json", help="write the metrics as JSON here")
    s.add_argument("--scores", help="write per-image scores as CSV here")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="label and P(PNEUMONIA) for image files")
    s.add_argument("checkpoint")
    s.add_argument("images", nargs="+")
    s.add_argument("--cam-dir", help="write a Grad-CAM overlay PNG per image here")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("bench", help="training images/s: plain ImageFolder pipeline vs pneumolib's vs pure compute")
    s.add_argument("--data-dir", help="Kaggle-layout folder (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--steps", type=int, help="timed training steps per pipeline (default: 20 on CPU, 200 on GPU)")
    s.add_argument("--workers", type=int, default=0, help="DataLoader workers for the plain pipeline")
    s.add_argument("--json", help="write plain_img_s, pipeline_img_s, compute_img_s, device, image_size here")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("stress", help="simulated scanner shifts: a finished run's metrics on shifted copies of its "
                                      "test split (writes RUN_DIR/stress.json)")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--recompute", action="store_true", help="ignore a saved stress.json")
    s.set_defaults(func=cmd_stress)

    s = sub.add_parser("compare", help="print the comparison table for finished run folders")
    s.add_argument("run_dirs", nargs="+")
    s.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"pneumolib: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pneumolib: interrupted; the last completed epoch is saved: re-run 'train' with --resume to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
