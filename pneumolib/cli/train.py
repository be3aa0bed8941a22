"""Training commands: experiments, run (the main job), train, bench, ablate."""

from __future__ import annotations

import logging
from pathlib import Path

from ..core import config as C
from ..studies import catalogue
from .common import command_line, common_args, data_source, int_in, manifest_args


def cmd_experiments(args) -> int:
    from ..api import experiments
    from ..studies.catalogue import ablation_steps, candidate_steps

    for name, line in experiments().items():
        head, what = line.split(": ", 1)  # the API's "entry date: the diff"
        entry, date = head.split(" ", 1)
        print(f"{entry}  {name:<36} {date}  {what}")
    if args.ablations:
        print("\nablation chain (notebook 10, 'ablate'): each step adds one lever to the one before")
        for name, what in ablation_steps().items():
            print(f"    {name:<36} {what}")
        print("\nrecipe candidates: each a diff from the ablation step nearest to it")
        for name, what in candidate_steps().items():
            print(f"    {name:<36} {what}")
    return 0


def add_experiments(sub) -> None:
    s = sub.add_parser("experiments", help="list the registered experiments and what each changes")
    s.add_argument("--ablations", action="store_true", help="also list notebook 10's ablation steps")
    s.set_defaults(func=cmd_experiments)


def cmd_run(args) -> int:
    from ..data.dataset import resolve_data_dir
    from ..studies.card import write_model_card
    from ..studies.catalogue import run_plan
    from ..studies.experiment import comparison_rows, format_table, run_experiment

    root, is_fixture = resolve_data_dir(data_source(args))
    out, results = Path(args.out), []
    for cfg, folder in run_plan(args.experiments, args.seeds, out):  # with --seeds: RUNS/NN_name/seedS
        # the series must run end to end, so missing ImageNet weights mean a loudly labelled random init
        r = run_experiment(
            cfg,
            root if not is_fixture else None,
            folder,
            workers=args.workers,
            profile=args.profile,
            device=args.device,
            on_missing_weights="random_init",
            cam_per_class=args.cam_per_class,
            strict=args.strict,
            command=command_line(args),
            reuse=not args.retrain,
            replace_other=args.retrain,
        )
        write_model_card(folder)
        results.append(r.metrics)
        print()
    print(f"Results on the test split of {'the bundled fixture' if is_fixture else root} (run folders in {out}):")
    print(format_table(comparison_rows(results)))
    return 0


def add_run(sub) -> None:
    s = sub.add_parser("run", help="train and evaluate experiments, then print a comparison table (the main job)")
    s.add_argument("experiments", nargs="*", default=["all"], help="names or entry numbers, or 'all' (default)")
    s.add_argument("--out", default="runs", help="folder for the run folders (default: runs)")
    s.add_argument(
        "--retrain",
        action="store_true",
        help="train even where a run folder holds a finished run; replaces a run folder that holds another "
        "training, with its records (without it, such a folder is refused)",
    )
    s.add_argument(
        "--seeds",
        nargs="+",
        type=int_in(0, 2**32 - 1),
        metavar="S",
        help="train each experiment once per seed, into OUT/NN_name/seedS (the notebooks' layout)",
    )
    common_args(s)
    s.set_defaults(func=cmd_run)


def cmd_train(args) -> int:
    from ..analysis.evaluate import format_metrics
    from ..core import distributed
    from ..core.runtime import get_device
    from ..studies.experiment import run_experiment

    overrides = {
        k: getattr(args, k) for k in ("epochs", "image_size", "seed", "batch_size") if getattr(args, k) is not None
    }
    if args.init_from:
        overrides["init_from"] = str(Path(args.init_from).resolve())
    if args.no_sync_bn:
        overrides["sync_bn"] = False
    source = data_source(args)
    world = distributed.start(get_device(args.device))  # under torchrun: join the process group; else one process
    if not world.is_main:  # rank 0 alone logs and writes
        logging.getLogger("pneumolib").setLevel(logging.WARNING)
    try:
        r = run_experiment(
            catalogue.get_config(args.experiment),
            source,
            args.out,
            profile=args.profile,
            overrides=overrides,
            device=args.device,
            command=command_line(args),
            on_missing_weights="random_init" if args.allow_random_init else "fail",
            reuse=not args.retrain,
            replace_other=args.retrain,
            cam_per_class=args.cam_per_class,
            strict=args.strict,
            resume=args.resume,
            holdout=args.holdout,
            world=world,
            workers=args.workers,
        )
    finally:
        distributed.stop()
    if not world.is_main:
        return 0
    if "test" in r.metrics:
        print(format_metrics(r.metrics["test"]))
    from ..studies.card import write_model_card

    write_model_card(args.out)  # the card reads what the run folder now holds
    print(f"wrote {Path(args.out) / 'checkpoint.pt'}, metrics.json, scores_test.csv, MODEL_CARD.md")
    return 0


def add_train(sub) -> None:
    s = sub.add_parser("train", help="train one experiment; writes RUN_DIR/checkpoint.pt, metrics.json, scores")
    s.add_argument("experiment", help="name or entry number (see 'experiments')")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--epochs", type=int_in(1, C.MAX_EPOCHS))
    s.add_argument("--image-size", type=int_in(32, C.MAX_IMAGE_SIZE))
    s.add_argument("--batch-size", type=int_in(1, C.MAX_BATCH_SIZE))
    s.add_argument("--seed", type=int_in(0, 2**32 - 1))
    s.add_argument(
        "--retrain",
        action="store_true",
        help="train even if RUN_DIR holds a matching checkpoint; replaces a RUN_DIR that holds another "
        "training, removing its records (without it, such a folder is refused)",
    )
    s.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from RUN_DIR/last.pt (the last completed epoch)",
    )
    s.add_argument(
        "--holdout",
        default="folders",
        choices=C.HOLDOUTS,
        help="test split: the data folder's test/ (default), or early_ids: the earliest-numbered patients of "
        "each file-name family, a proxy for a new acquisition batch (notebook 10)",
    )
    s.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="fine-tune: start from this pneumolib checkpoint's weights (same model and input channels), "
        "recorded in the run's config",
    )
    s.add_argument(
        "--allow-random-init",
        action="store_true",
        help="when ImageNet weights are missing, train from random init (recorded as such) instead of failing",
    )
    s.add_argument(
        "--no-sync-bn",
        action="store_true",
        help="under torchrun: BatchNorm statistics per process instead of over the global batch "
        "(recorded in the config as sync_bn=false)",
    )
    common_args(s)
    s.set_defaults(func=cmd_train)


def cmd_bench(args) -> int:
    from ..core.io import save_json
    from ..data.dataset import resolve_data_dir
    from ..studies.bench import bench, format_bench

    root, _ = resolve_data_dir(data_source(args))
    steps = args.steps or (200 if args.device == "cuda" else 20)
    r = bench(
        root,
        experiment=args.experiment,
        device=args.device,
        image_size=args.image_size,
        batch_size=args.batch_size,
        steps=steps,
        workers=args.workers,
    )
    print(format_bench(r))
    if args.json:
        save_json(r, args.json)
    return 0


def add_bench(sub) -> None:
    s = sub.add_parser("bench", help="training images/s: plain ImageFolder pipeline vs pneumolib's vs pure compute")
    s.add_argument("--data-dir", help="Kaggle-layout folder (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture)")
    manifest_args(s)
    s.add_argument(
        "--experiment",
        default="baseline",
        help="whose training transforms and preprocessing the pipeline applies (default: baseline)",
    )
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--image-size", type=int_in(32, C.MAX_IMAGE_SIZE), default=128)
    s.add_argument("--batch-size", type=int_in(1, C.MAX_BATCH_SIZE), default=32)
    s.add_argument(
        "--steps", type=int_in(1, 100_000), help="timed training steps per pipeline (default: 20 on CPU, 200 on GPU)"
    )
    s.add_argument("--workers", type=int_in(0, 64), default=0, help="DataLoader workers for the plain pipeline")
    s.add_argument(
        "--json", help="write plain_img_s, pipeline_img_s, compute_img_s, device, image_size, experiment here"
    )
    s.set_defaults(func=cmd_bench)


def cmd_ablate(args) -> int:
    from ..data.dataset import resolve_data_dir
    from ..studies.catalogue import RECOMMENDED
    from ..studies.protocol import ablation_configs, ablation_frame, protocol_agreement, score_steps

    root, is_fixture = resolve_data_dir(args.data_dir)
    holdouts = C.HOLDOUTS if args.holdout == "both" else (args.holdout,)
    configs = [catalogue.get_config(n) for n in args.steps] if args.steps else ablation_configs()
    configs += [RECOMMENDED] if args.with_recommended else []
    rows = score_steps(
        None if is_fixture else root,
        args.runs,
        profile=args.profile,
        device=args.device,
        configs=configs,
        holdouts=holdouts,
        seeds=tuple(args.seeds),
    )
    print(ablation_frame(rows).to_string())
    if "early_ids" in holdouts and "folders" in holdouts:
        print()
        print(protocol_agreement(rows))
    return 0


def add_ablate(sub) -> None:
    s = sub.add_parser(
        "ablate",
        help="train (or reuse) notebook 10's ablation steps one lever at a time, stress-test "
        "them, and print the table scored by each validation protocol",
    )
    s.add_argument("--data-dir", help="Kaggle-layout folder (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture)")
    s.add_argument(
        "--runs",
        default="runs",
        help="folder of run folders (default: runs; steps go to "
        "RUNS/ablation/STEP/seedS, RUNS/early_ids/STEP/seedS, the baseline "
        "to RUNS/01_baseline/seedS)",
    )
    s.add_argument(
        "--seeds",
        nargs="+",
        type=int_in(0, 2**32 - 1),
        default=[0],
        metavar="S",
        help="train every step once per seed; the table shows the seeds' means, the anchor order is "
        "judged seed by seed (default: 0)",
    )
    s.add_argument(
        "--holdout",
        default="both",
        choices=(*C.HOLDOUTS, "both"),
        help="score on the folders' test split, the early-ID holdout, or both (default)",
    )
    s.add_argument(
        "--steps",
        nargs="+",
        metavar="NAME",
        help="only these steps (default: the whole chain, 'python -m pneumolib experiments --ablations' lists it)",
    )
    s.add_argument("--with-recommended", action="store_true", help="also train the recommended recipe (entry 10)")
    s.add_argument("--profile", choices=list(C.PROFILES), default=None)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.set_defaults(func=cmd_ablate)
