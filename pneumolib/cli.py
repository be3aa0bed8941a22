"""Command line: python -m pneumolib {experiments,run,train,evaluate,ensemble,predict,explain,stress,candidates,compare,bench,card,ablate} ..."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .core import config as C

class UsageError(ValueError):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit code 2): a bad value is named, no usage block, no traceback."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is out of range: it must be {'from ' + str(lo) + ' to ' + str(hi) if hi is not None else 'at least ' + str(lo)}")
        return v
    return parse


def float_in(lo: float, hi: float):
    """An argparse type: a finite number in [lo, hi] (NaN and infinity refused)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= v <= hi:  # False for NaN too
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be a number from {lo:g} to {hi:g}")
        return v
    return parse


def _user_errors():
    # imported here, so that --help and 'experiments' do not pay for importing torch
    from .models.checkpoint import ChannelMismatch, CheckpointError
    from .data.dataset import DataError
    from .data.imaging import ImageError
    from .core.io import OutputError, RecordError
    from .models.networks import WeightsError, WeightsUnavailable
    return (UsageError, C.UnknownExperiment, C.ConfigError, DataError, ImageError, CheckpointError, ChannelMismatch,
            WeightsUnavailable, WeightsError, OutputError, RecordError, FileNotFoundError)


def _source(args, required: bool = False):
    """--data-dir, or --data-csv with --image-root (a CSV manifest), as one data source; None for the default."""
    csv = getattr(args, "data_csv", None)
    if csv:
        if args.data_dir:
            raise UsageError("give --data-dir or --data-csv, not both")
        from .data.dataset import Manifest
        return Manifest(Path(csv).expanduser().resolve(),
                        Path(args.image_root or Path(csv).parent).expanduser().resolve())
    if getattr(args, "image_root", None):
        raise UsageError("--image-root goes with --data-csv")
    if required and not args.data_dir:
        raise UsageError("give the data: --data-dir DIR, or --data-csv FILE --image-root DIR")
    return args.data_dir


_OUTPUT_FILES = ("json", "scores", "save_adapted", "figure")  # options naming one output file, in any command


def _film_roots(files) -> list[Path]:
    """The data roots of films given by name: a film in a class folder (ROOT/<split>/NORMAL/x.png) makes ROOT/<split>
    a data folder that outputs stay out of."""
    from .core.config import CLASSES
    out = []
    for f in files:
        parent = Path(f).expanduser().resolve().parent
        if parent.name in CLASSES:
            out.append(parent.parent)
    return out


def _protected(args):
    """Everything this command reads, which none of its outputs may replace or land in (core.io.Protected): the
    checkpoint(s) and their run records, the run folders' records, the data folder, the manifest, the films and
    weights named (and the data folders of films in class folders), and the bundled fixture."""
    from .core.io import Protected
    from .core.runs import record_files
    from .data.fixture import fixture_dir
    prot = Protected(folders=[fixture_dir()])
    for name in ("checkpoint", "init_from", "weights", "data_csv", "from_json"):
        v = getattr(args, name, None)
        if v:
            prot.add(files=[v])
            if name == "checkpoint" or name == "init_from":
                p = Path(v)
                prot.add(files=record_files(p if p.is_dir() else p.parent))
    for c in getattr(args, "checkpoints", None) or []:
        p = Path(c)
        prot.add(files=[c, *record_files(p if p.is_dir() else p.parent)])
    if args.command not in ("train", "run", "ablate"):  # those write their own run folders' records
        for d in getattr(args, "run_dirs", None) or []:
            prot.add(files=record_files(d))
    prot.add(folders=[getattr(args, "data_dir", None)])  # a manifest's image root may hold the user's project
    films = list(getattr(args, "images", None) or []) + list(getattr(args, "files", None) or [])
    prot.add(films=films, folders=_film_roots(films))
    return prot


def _check_outputs(args) -> None:
    """Before any work: every output the command line names can be written, is not a link, and is none of the
    command's inputs (OutputError, one line)."""
    from .core.io import ensure_writable_dir, ensure_writable_file
    names = [n for n in (*_OUTPUT_FILES, "out", "cam_dir") if getattr(args, n, None)]
    if not names:
        return
    prot = _protected(args)
    for name in _OUTPUT_FILES:
        if getattr(args, name, None):
            ensure_writable_file(getattr(args, name), prot)
    out = getattr(args, "out", None)
    if out:
        file_out = args.command == "ensemble" or (args.command == "lungs" and args.action in ("train", "population"))
        (ensure_writable_file if file_out else ensure_writable_dir)(out, protect=prot)
    if getattr(args, "cam_dir", None):
        ensure_writable_dir(args.cam_dir, protect=prot)


def _manifest_args(s) -> None:
    s.add_argument("--data-csv", metavar="FILE", help="a CSV manifest instead of a folder: columns path,label,patient"
                   "[,split] (labels NORMAL/PNEUMONIA); without split, patient-grouped val and test splits are built")
    s.add_argument("--image-root", metavar="DIR", help="with --data-csv: the folder its paths are relative to "
                   "(default: the CSV's folder)")


def cmd_experiments(args) -> int:
    for cfg in C.REGISTRY.values():
        print(f"{cfg.entry}  {cfg.name:<36} {cfg.date}  {C.format_diff(C.diff(C.previous(cfg), cfg))}")
    if args.ablations:
        print("\nablation chain (notebook 10, 'ablate'): each step adds one lever to the one before")
        prev = C.BASELINE
        for cfg in C.ABLATIONS.values():
            base = C.ABLATIONS.get("abl_robust_aug", prev) if cfg.name == "abl_per_image" else prev
            print(f"    {cfg.name:<36} {C.format_diff(C.diff(base, cfg))}")
            prev = cfg if cfg.name != "abl_per_image" else prev
        print("\nrecipe candidates: each a diff from the ablation step nearest to it")
        for cfg in C.CANDIDATES.values():
            base = min(C.ABLATIONS.values(), key=lambda a: len(C.diff(a, cfg)))
            d = C.diff(base, cfg)
            print(f"    {cfg.name:<36} " + (f"{base.name} + {C.format_diff(d)}" if d else f"= {base.name}"))
    return 0


def _configs(names: list[str]) -> list[C.ExperimentConfig]:
    if not names or names == ["all"]:
        return list(C.REGISTRY.values())
    return [C.get_config(n) for n in names]


def cmd_run(args) -> int:
    from .data.dataset import resolve_data_dir
    from .studies.experiment import comparison_rows, format_table, run_experiment
    root, is_fixture = resolve_data_dir(_source(args))
    out = Path(args.out)
    results = []
    from dataclasses import replace

    from .studies.card import write_model_card
    from .core.runs import entry_dir, seed_dir
    for cfg in _configs(args.experiments):
        for seed in args.seeds or [None]:
            # with --seeds, one run folder per seed (RUNS/NN_name/seedS: the notebooks' layout)
            folder = entry_dir(out, cfg)
            if seed is not None:
                cfg, folder = replace(cfg, seed=seed), seed_dir(out, cfg, seed)
            # the series must run end to end, so missing ImageNet weights mean a loudly labelled random init
            r = run_experiment(cfg, root if not is_fixture else None, folder, workers=args.workers,
                               profile=args.profile, device=args.device, on_missing_weights="random_init",
                               cam_per_class=args.cam_per_class, strict=args.strict, command=_command_line(),
                               reuse=not args.retrain, replace_other=args.retrain)
            write_model_card(folder)
            results.append(r.metrics)
            print()
    print(f"Results on the test split of {'the bundled fixture' if is_fixture else root} (run folders in {out}):")
    print(format_table(comparison_rows(results)))
    return 0


def cmd_train(args) -> int:
    from .core import distributed
    from .analysis.evaluate import format_metrics
    from .studies.experiment import run_experiment
    from .core.runtime import get_device
    overrides = {k: getattr(args, k) for k in ("epochs", "image_size", "seed", "batch_size")
                 if getattr(args, k) is not None}
    if args.init_from:
        overrides["init_from"] = str(Path(args.init_from).resolve())
    if args.no_sync_bn:
        overrides["sync_bn"] = False
    source = _source(args)
    world = distributed.start(get_device(args.device))  # under torchrun: join the process group; else one process
    if not world.is_main:  # rank 0 alone logs and writes
        logging.getLogger("pneumolib").setLevel(logging.WARNING)
    try:
        r = run_experiment(C.get_config(args.experiment), source, args.out, profile=args.profile,
                           overrides=overrides, device=args.device, command=_command_line(),
                           on_missing_weights="random_init" if args.allow_random_init else "fail",
                           reuse=not args.retrain, replace_other=args.retrain, cam_per_class=args.cam_per_class,
                           strict=args.strict, resume=args.resume, holdout=args.holdout, world=world,
                           workers=args.workers)
    finally:
        distributed.stop()
    if not world.is_main:
        return 0
    if "test" in r.metrics:
        print(format_metrics(r.metrics["test"]))
    from .studies.card import write_model_card
    write_model_card(args.out)  # the card reads what the run folder now holds
    print(f"wrote {Path(args.out) / 'checkpoint.pt'}, metrics.json, scores_test.csv, MODEL_CARD.md")
    return 0


def _ensemble_data(paths: list[Path], data_dir):
    """The data the members trained on: their shared holdout, the first member's val split."""
    from .models.checkpoint import Predictor
    from .data.dataset import prepare, resolve_data_dir

    root, _ = resolve_data_dir(data_dir)
    members = [Predictor.load(p) for p in paths]
    holdouts = {m.extra.get("holdout", "folders") for m in members}
    if len(holdouts) > 1:
        raise UsageError(f"{paths[0]}: the members were trained with different holdouts ({', '.join(sorted(holdouts))})")
    first = members[0]  # its seed rebuilds the same val split when val/ is pooled with train/
    data = prepare(root, seed=first.config.seed, holdout=holdouts.pop(), image_size=first.preprocessing.view)
    if "val" not in data.splits or not data["val"]:
        raise UsageError(f"{root}: no validation images to fit the temperature and threshold on")
    return root, data, first


def cmd_ensemble(args) -> int:
    from .models.checkpoint import save_checkpoint
    from .data.dataset import apply_holdout, discover
    from .training.ensemble import build_ensemble, validation_overlap
    from .analysis.evaluate import compute_metrics, format_metrics, predict_samples
    from .core.io import save_json
    from .core.runs import RunDir

    paths = [RunDir(c).checkpoint if Path(c).is_dir() else Path(c) for c in args.checkpoints]
    root, data, first = _ensemble_data(paths, args.data_dir)
    pred = build_ensemble(paths, data["val"], temperature=not args.no_temperature)
    rec, v = pred.extra["ensemble"], pred.extra["ensemble"]["val"]
    rec["holdout"] = data.holdout
    others = sorted(set(rec["seeds"]) - {first.config.seed})
    overlap = validation_overlap(data["val"], {s: apply_holdout(discover(root, seed=s), data.holdout)["train"]
                                               for s in others})
    rec["val_films_trained_on"] = {str(k): n for k, n in overlap.items()}
    if any(overlap.values()):
        print("warning: " + ", ".join(f"the member with seed {k} trained on {n} of the {v['n']} validation films"
                                      for k, n in overlap.items() if n)
              + f" (no usable val/ folder in {root}: each seed split its own); the fitted temperature and threshold "
              "are optimistic, the test split's numbers are not")
    save_checkpoint(args.out, pred.model, pred.config, pred.threshold, pred.extra)
    print(f"{len(paths)} member(s), seeds {', '.join(map(str, rec['seeds']))}; temperature {rec['temperature']:.3f}; "
          f"threshold ({rec['threshold_rule']}) {pred.threshold:.3f} (members: "
          f"{', '.join(f'{t:.3f}' for t in rec['member_thresholds'])})")
    print(f"validation ({v['n']} films): NLL {v['nll_before']:.3f} -> {v['nll_after']:.3f}, "
          f"ECE {v['ece_before']:.3f} -> {v['ece_after']:.3f}")
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


def _cohort(data_dir, split: str, image_size: int, cache=None):
    """One split of a cohort folder (no train/ needed), pre-scanned into CACHE (the predictor's, so the films are
    decoded once); its notes and skipped files on stderr."""
    from .data.dataset import discover_split, prescan
    data = discover_split(data_dir, split)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    data = prescan(data, image_size, cache=cache)
    from .data.dataset import summarise_errors
    for line in summarise_errors(data.bad_files):
        print(f"skipping unreadable file: {line}", file=sys.stderr)
    return data[split]


def _adapted(pred, samples, threshold: float, cohort: str, args) -> dict:
    """--adapt: the adapted model's metrics with the adaptation's record, printed as they are computed."""
    from .analysis.adapt import ADAPTED_LABEL, adapt
    from .analysis.evaluate import compute_metrics, format_metrics
    a = adapt(pred, samples, args.adapt, threshold=threshold, alpha=args.adapt_alpha, cohort=cohort)
    am = compute_metrics(a.scores, a.threshold, seed=0)
    print(f"\n{ADAPTED_LABEL.upper()} (--adapt {args.adapt})")
    guard = a.extra.get("guard")
    if guard:
        print(guard["reason"] if guard.get("fell_back_to") else
              f"label-shift check passed: EM {guard['em_plain']:.3f} plain, {guard['em_adabn']:.3f} after AdaBN "
              f"(within {guard['tolerance']:.2f})")
    if a.bn:
        print(f"BatchNorm statistics re-estimated in {', '.join(a.bn['layers'])} on {a.bn['n_images']} images "
              f"(alpha {a.bn['alpha']:.2f})")
    if a.prior:
        pr = a.prior
        print(f"estimated PNEUMONIA share {pr['estimated_prior']:.3f} (training prior {pr['train_prior']:.3f}: "
              f"{pr['train_prior_source']}); threshold {pr['base_threshold']:.3f} -> {pr['threshold']:.3f}")
        if pr.get("warning"):
            print(f"warning: {pr['warning']}")
    print(format_metrics(am))
    if args.save_adapted:
        print(f"wrote {a.save(args.save_adapted)} (the adaptation is recorded in its extra['adaptation'])")
    return dict(am, adaptation=a.record())


def cmd_evaluate(args) -> int:
    from datetime import datetime, timezone

    from .studies.card import cohort_name, record_evaluation
    from .models.checkpoint import Predictor, checkpoint_file
    from .analysis.evaluate import compute_metrics, format_metrics, predict_samples
    from .core.io import make_dir, save_json
    from .core.runs import RunDir
    if args.save_adapted and not args.adapt:
        raise UsageError("--save-adapted needs --adapt bn|prior|both")
    if not 0.0 <= args.adapt_alpha <= 1.0:
        raise UsageError(f"--adapt-alpha must be between 0 and 1, got {args.adapt_alpha}")
    source = _source(args, required=True)
    args.checkpoint = str(checkpoint_file(args.checkpoint))
    # before the work: the record kept beside the checkpoint goes into pneumolib's own folder, never through a link
    make_dir(RunDir(Path(args.checkpoint).parent).evaluations, ours=True)
    pred = Predictor.load(args.checkpoint)
    samples = _cohort(source, args.split, pred.preprocessing.view, pred.cache)
    threshold = pred.threshold if args.threshold is None else args.threshold
    # one pass: the scores and the features the OOD flag reads
    scores = predict_samples(pred.model, samples, pred.preprocessing, tta=pred.config.tta, cache=pred.cache,
                             features=bool(pred.extra.get("ood")))
    m = compute_metrics(scores, threshold, seed=0)
    print(f"{args.checkpoint}: {pred.config.name} on {source}/{args.split}")
    print(format_metrics(m))
    from .analysis import ood
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
    record = dict(m, checkpoint=str(Path(args.checkpoint).resolve()), split=args.split,
                  experiment=pred.config.name, cohort=cohort,
                  data_dir=str(source) if args.data_csv else str(Path(args.data_dir).expanduser().resolve()),
                  checkpoint_threshold=pred.threshold, threshold_override=args.threshold,
                  date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  command=_command_line(), argv=list(sys.argv), adapted=adapted)
    if args.json:
        save_json(record, args.json)
    if args.scores:
        scores.to_csv(args.scores, threshold, columns)
    try:  # every evaluation is kept beside the checkpoint, for its model card
        print(f"recorded in {record_evaluation(args.checkpoint, record)}")
    except OSError as e:
        print(f"note: could not record the evaluation beside the checkpoint ({e})", file=sys.stderr)
    return 0


def cmd_card(args) -> int:
    from .studies.card import write_model_card
    for d in args.run_dirs:
        print(f"wrote {write_model_card(d)}")
    return 0


def cmd_predict(args) -> int:
    from .api import load, predict
    from .core.io import ensure_writable_dir
    if args.cam_dir:  # before the work, not after it
        ensure_writable_dir(args.cam_dir)
    pred = load(args.checkpoint)
    records, refused = predict(pred, args.images)
    for r in records:
        print(r.line())
    if records and records[0].ood_distance is None:
        print("note: this checkpoint carries no out-of-distribution reference (trained before pneumolib had one)",
              file=sys.stderr)
    for e in refused:  # every good film was predicted first; each refused one is named with its reason
        print(f"pneumolib: error: {e}", file=sys.stderr)
    sys.stderr.flush()
    if args.cam_dir and records:
        _predict_overlays(pred, [Path(r.path) for r in records], args)
    return 2 if refused else 0


def _predict_overlays(pred, paths: list[Path], args) -> None:
    from .api import explain
    from .analysis.cam import save_overlays, target_label
    # the same P (TTA included) and threshold as the prediction lines; overlays on the film at its own size
    expl = explain(pred, paths, target=args.cam_target)
    print(f"{expl.method} at {expl.layer} (native map {expl.map_size[0]} x {expl.map_size[1]} cells), target: "
          f"{target_label(args.cam_target)}; overlays at the film's own size, long side at most 1024 px")
    for p in save_overlays(expl, args.cam_dir):
        print(f"wrote {p}")


def cmd_explain(args) -> int:
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    from .analysis import plots
    from .analysis.cam import DEFAULT_METHOD, explain_predictor, format_report
    from .models.checkpoint import Predictor
    from .core.io import ensure_writable_dir, save_figure, save_json
    from .data.lungs import annotated_mask
    from .core.runs import RunDir
    from .models.checkpoint import checkpoint_file
    args.method = args.method or DEFAULT_METHOD
    source = _source(args, required=True)
    args.checkpoint = str(checkpoint_file(args.checkpoint))
    out = Path(args.out) if args.out else RunDir(Path(args.checkpoint).resolve().parent).gradcam
    ensure_writable_dir(out, ours=not args.out, protect=_protected(args))  # the run's gradcam/: never a link
    pred = Predictor.load(args.checkpoint)
    samples = _cohort(source, args.split, pred.preprocessing.view, pred.cache)
    if args.compare:
        return _compare_methods(pred, samples, args)
    # lung masks: annotated where a film has one (the shared data's lung_masks/, the fixture), else the segmenter's
    expl = explain_predictor(pred, samples, n_per_class=args.n, target=args.target,
                             sanity_per_class=args.sanity_n, seed=args.seed, method=args.method, layer=args.layer,
                             exact_masks=annotated_mask)
    rep = dict(expl.report(), checkpoint=str(Path(args.checkpoint).resolve()), experiment=pred.config.name,
               data_dir=str(Path(args.data_dir).expanduser().resolve()), split=args.split, command=_command_line())
    stem = f"{args.method.replace('+', 'p')}_{args.split}_{args.target.lower()}"
    figures = {out / f"{stem}_grid.png": plots.plot_cam_grid(expl, n_per_class=min(args.grid_n, args.n),
                                                             title=f"{pred.config.name} on {args.split}"),
               out / f"{stem}_lung_masks.png": plots.plot_mask_gallery(expl)}
    for path, fig in figures.items():
        save_figure(fig, path, dpi=100)  # rendered in memory, written by the one writer (savefig follows links)
        plt.close(fig)
    json_path = Path(args.json) if args.json else out / f"{stem}.json"
    save_json(rep, json_path)
    print(f"{args.checkpoint}: {pred.config.name} on {source}/{args.split}")
    print(format_report(rep))
    for path in [*figures, json_path]:
        print(f"wrote {path}")
    return 0


def _compare_methods(pred, samples, args) -> int:
    from .analysis.cam import choose_method, compare_methods, format_comparison
    from .core.io import save_json
    from .data.lungs import annotated_mask
    methods = [m for m in args.compare.split(",") if m]
    layers = [x for x in args.layers.split(",") if x]
    rows = compare_methods(pred, samples, methods=methods, layers=layers, n_per_class=args.n,
                           sanity_per_class=args.sanity_n, seed=args.seed, target=args.target,
                           exact_masks=annotated_mask)
    print(format_comparison(rows))
    if args.json:
        save_json({"rows": rows, "choice": choose_method(rows), "checkpoint": str(Path(args.checkpoint).resolve()),
                   "command": _command_line()}, args.json)
    return 0


def cmd_compare(args) -> int:
    from .studies.experiment import compare_runs
    print(compare_runs(args.run_dirs))
    return 0


def cmd_bench(args) -> int:
    from .studies.bench import bench, format_bench
    from .core.io import save_json
    from .data.dataset import resolve_data_dir
    root, _ = resolve_data_dir(_source(args))
    steps = args.steps or (200 if args.device == "cuda" else 20)
    r = bench(root, experiment=args.experiment, device=args.device, image_size=args.image_size,
              batch_size=args.batch_size, steps=steps, workers=args.workers)
    print(format_bench(r))
    if args.json:
        save_json(r, args.json)
    return 0


def cmd_ablate(args) -> int:
    from .core.config import RECOMMENDED
    from .data.dataset import resolve_data_dir
    from .studies.protocol import ablation_configs, ablation_frame, protocol_agreement, score_steps
    root, is_fixture = resolve_data_dir(args.data_dir)
    holdouts = ("folders", "early_ids") if args.holdout == "both" else (args.holdout,)
    configs = [C.get_config(n) for n in args.steps] if args.steps else ablation_configs()
    configs += [RECOMMENDED] if args.with_recommended else []
    rows = score_steps(None if is_fixture else root, args.runs, profile=args.profile, device=args.device,
                       configs=configs, holdouts=holdouts, seeds=tuple(args.seeds))
    print(ablation_frame(rows).to_string())
    if "early_ids" in holdouts and "folders" in holdouts:
        print()
        print(protocol_agreement(rows))
    return 0


def cmd_candidates(args) -> int:
    from .studies.candidates import compare, format_selection, parse_groups, report, report_file, select
    from .data.dataset import resolve_data_dir
    from .core.io import save_json
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
    results = compare(root, groups, ensemble=not args.no_ensemble,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        save_json(results, args.json)
    print(report(results))
    return 0


def _lungs_coverage(L, seg, args) -> int:
    """lungs coverage: how much annotated lung the lung-mask view keeps, per dilation (validation by default)."""
    from .core.io import save_json
    if not args.data_dir:
        raise UsageError("lungs coverage needs --data-dir (a folder holding chest_xray/ and lung_masks/)")
    split = args.split or "val"  # the dilation is chosen on validation films, never the test split
    pairs = L.discover_masks(args.data_dir).get(split, [])
    if not pairs:
        raise UsageError(f"{args.data_dir}: no annotated masks in the {split} split")
    r = L.mask_coverage(seg, pairs)
    print(f"{split} split, {len(pairs)} annotated films; kept = share of films keeping at least "
          f"{L.COVERAGE_KEEP:.0%} of their annotated lung; mean and 5th percentile of the share kept")
    print(L.format_coverage(r))
    if args.json:
        save_json({**r, "split": split, "dilations": {str(k): v for k, v in r["dilations"].items()}}, args.json)
    return 0


def _lungs_population(seg, args) -> int:
    """lungs population: fit the whole-film population reference on a data folder's training films (threshold on its
    validation films), report the share of each split flagged and the score of any FILES given."""
    from .core.io import save_json
    from .data import population as P
    from .data.dataset import discover
    from .data.imaging import ImageError
    from .data.lungs import shipped_digest
    import numpy as np
    if not args.data_dir:
        raise UsageError("lungs population needs --data-dir (a Kaggle-layout folder, or one holding chest_xray/)")
    root = Path(args.data_dir)
    data = discover(root / "chest_xray" if (root / "chest_xray" / "train").is_dir() else root, seed=args.seed)
    feats = {split: P.film_statistics([s.path for s in data[split]], seg) for split in ("train", "val", "test")
             if data[split]}
    ref = P.fit_reference(feats["train"], feats["val"], info={
        "command": _command_line(), "commit": _commit(), "data": str(data.root), "seed": args.seed,
        "segmenter": args.weights or shipped_digest()})
    report = {"threshold": ref.threshold, "quantile": P.FLAG_QUANTILE, "n_fit": len(feats["train"])}
    for split, f in feats.items():
        score, flagged = ref.flag(f)
        report[split] = {"n": int(len(f)), "flagged": int(flagged.sum()), "share": float(flagged.mean()),
                         "median": float(np.median(score))}
        print(f"{split}: {int(flagged.sum())} of {len(f)} films flagged ({flagged.mean():.1%}), median score "
              f"{np.median(score):.3f}")
    ref.info.update({k: report[k] for k in ("test",) if k in report})
    print(f"threshold {ref.threshold:.3f} (the {P.FLAG_QUANTILE:.0%} quantile of validation scores)")
    report["files"], problems = {}, []
    for f in args.files:
        try:
            score, flagged = ref.flag(P.film_statistics([f], seg))
        except ImageError as e:
            problems.append(str(e))
            continue
        report["files"][f] = {"score": float(score[0]), "flagged": bool(flagged[0])}
        print(f"{f}\tscore={score[0]:.3f}\t{'NOT FROM THE TRAINING POPULATION' if flagged[0] else 'like training'}")
    for e in problems:
        print(f"pneumolib: error: {e}", file=sys.stderr)
    if args.ship or args.out:
        out = P.shipped_path() if args.ship else Path(args.out)
        print(f"wrote {ref.save(out)}")
    if args.json:
        save_json(report, args.json)
    return 2 if problems else 0


def cmd_lungs(args) -> int:
    from .data import lungs as L
    from .core.io import save_json
    if args.action == "train":
        if not args.data_dir:
            raise UsageError("lungs train needs --data-dir (a folder holding chest_xray/ and lung_masks/)")
        from .training.lungs import train_segmenter
        seg, history = train_segmenter(args.data_dir, epochs=args.epochs, seed=args.seed,
                                         provenance={"command": _command_line(), "commit": _commit()})
        test = L.discover_masks(args.data_dir).get("test", [])
        if test:
            r = L.evaluate_pairs(seg, test)
            seg.provenance["test"] = {k: r[k] for k in ("n", "dice_mean", "dice_p05", "dice_min")}
            print(f"test: Dice mean {r['dice_mean']:.4f}, 5th percentile {r['dice_p05']:.4f} ({r['n']} films)")
        out = L.shipped_weights() if args.ship else Path(args.out or "lungs_unet.pt")
        print(f"wrote {seg.save(out)} (best epoch {seg.provenance['best_epoch']}, val Dice "
              f"{seg.provenance['val_dice_at_size']:.4f}, {seg.provenance['train_seconds'] / 60:.1f} min)")
        if args.json:
            save_json({"provenance": seg.provenance, "history": history}, args.json)
        return 0
    seg = L.LungSegmenter.load(args.weights)
    if args.action == "coverage":
        return _lungs_coverage(L, seg, args)
    if args.action == "population":
        return _lungs_population(seg, args)
    if args.action == "evaluate":
        args.split = args.split or "test"
        if not args.data_dir:
            raise UsageError("lungs evaluate needs --data-dir (a folder holding chest_xray/ and lung_masks/)")
        pairs = L.discover_masks(args.data_dir).get(args.split, [])
        if not pairs:
            raise UsageError(f"{args.data_dir}: no annotated masks in the {args.split} split")
        r = L.evaluate_pairs(seg, pairs)
        r.update(L.qc_report(seg, pairs))
        films = sorted({p.image.parent.parent for p in pairs})  # every film of the split, annotated or not
        every = [f for d in films for f in sorted(d.rglob("*")) if f.suffix.lower() in L.IMAGE_SUFFIXES]
        r.update(L.qc_on_films(seg, every))
        print(f"{args.split}: Dice mean {r['dice_mean']:.4f}, 5th percentile {r['dice_p05']:.4f}, min "
              f"{r['dice_min']:.4f} ({r['n']} annotated films); quality check passed on {r['qc_pass_rate']:.1%} of "
              f"their predicted masks and on {r['qc_pass_rate_all_films']:.1%} of all {r['n_films']} films of the "
              f"split; annotated masks failing it: {r['qc_false_fail']}; masks with Dice < 0.9 passing it: "
              f"{r['qc_false_pass']} of {r['qc_bad_masks']}")
        if args.json:
            save_json(r, args.json)
        if args.figure:
            import matplotlib
            matplotlib.use("Agg")
            from .core.io import save_figure
            save_figure(L.plot_comparison(seg, pairs, r["dice"]), args.figure, dpi=120)
            print(f"wrote {args.figure}")
        return 0
    if not args.files or not args.out:
        raise UsageError("lungs segment needs FILES... and --out DIR")
    refused = L.segment_files(seg, args.files, args.out, lambda line: print(line))
    for e in refused:
        print(f"pneumolib: error: {e}", file=sys.stderr)
    return 2 if refused else 0


def _commit() -> str:
    from .core.runtime import git_commit
    return git_commit()


def cmd_stress(args) -> int:
    from .studies.stress import stress_run
    for d in args.run_dirs:
        r = stress_run(d, _source(args), split=args.split, reuse=not args.recompute)
        print(f"{d}:")
        print(r.table())
        print()
    return 0


def cmd_shortcuts(args) -> int:
    from .core.io import save_json
    from .studies.shortcuts import Probes, audit_run, format_audit
    reps, probes = {}, Probes()  # runs trained on the same films share one fitted probe
    for d in args.run_dirs:
        reps[str(d)] = rep = audit_run(d, args.data_dir, split=args.split, seed=args.seed, probes=probes)
        print(f"{d} ({rep['experiment']}) on {args.split}:")
        print(format_audit(rep))
        print()
    if args.json:  # one run: its report; several: keyed by run folder
        save_json(next(iter(reps.values())) if len(reps) == 1 else reps, args.json)
    return 0


def default_workers() -> int:
    """DataLoader workers for this machine: none on 4 cores or fewer (the decoded films are in memory and the model
    needs the cores), else half the cores up to 8."""
    import os
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(8, cores // 2)


def _common_args(s, data_required: bool = False) -> None:
    """The options every training command shares (data source, device, profile, Grad-CAM count, pre-scan, workers)."""
    s.add_argument("--data-dir", required=data_required,
                   help="Kaggle-layout folder ROOT/{train,val,test}/{NORMAL,PNEUMONIA} (default: $PNEUMOLIB_DATA_DIR, "
                        "else the bundled fixture)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--profile", choices=list(C.PROFILES), default=None,
                   help="run size: smoke | fixture | cpu | gpu | full (default: fixture for the fixture, else cpu or gpu)")
    s.add_argument("--cam-per-class", type=int_in(0, 1000), default=4, help="Grad-CAM images per class (0 = none)")
    s.add_argument("--strict", action="store_true",
                   help="refuse to start on any pre-scan finding: unreadable or identical files, patients in two splits "
                        "(default: skip unreadable files and list everything)")
    _manifest_args(s)
    s.add_argument("--workers", type=int_in(0, 64), default=default_workers(),
                   help=f"DataLoader processes serving decoded films (default on this machine: {default_workers()}; "
                        "results do not depend on it)")


def _add_experiments(sub) -> None:
    s = sub.add_parser("experiments", help="list the registered experiments and what each changes")
    s.add_argument("--ablations", action="store_true", help="also list notebook 10's ablation steps")
    s.set_defaults(func=cmd_experiments)


def _add_run(sub) -> None:
    s = sub.add_parser("run", help="train and evaluate experiments, then print a comparison table (the main job)")
    s.add_argument("experiments", nargs="*", default=["all"], help="names or entry numbers, or 'all' (default)")
    s.add_argument("--out", default="runs", help="folder for the run folders (default: runs)")
    s.add_argument("--retrain", action="store_true",
                   help="train even where a run folder holds a finished run; replaces a run folder that holds another "
                        "training, with its records (without it, such a folder is refused)")
    s.add_argument("--seeds", nargs="+", type=int_in(0, 2**32 - 1), metavar="S",
                   help="train each experiment once per seed, into OUT/NN_name/seedS (the notebooks' layout)")
    _common_args(s)
    s.set_defaults(func=cmd_run)


def _add_train(sub) -> None:
    s = sub.add_parser("train", help="train one experiment; writes RUN_DIR/checkpoint.pt, metrics.json, scores")
    s.add_argument("experiment", help="name or entry number (see 'experiments')")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--epochs", type=int_in(1, C.MAX_EPOCHS))
    s.add_argument("--image-size", type=int_in(32, C.MAX_IMAGE_SIZE))
    s.add_argument("--batch-size", type=int_in(1, C.MAX_BATCH_SIZE))
    s.add_argument("--seed", type=int_in(0, 2**32 - 1))
    s.add_argument("--retrain", action="store_true",
                   help="train even if RUN_DIR holds a matching checkpoint; replaces a RUN_DIR that holds another "
                        "training, removing its records (without it, such a folder is refused)")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from RUN_DIR/last.pt (the last completed epoch)")
    s.add_argument("--holdout", default="folders", choices=["folders", "early_ids"],
                   help="test split: the data folder's test/ (default), or early_ids: the earliest-numbered patients of "
                        "each file-name family, a proxy for a new acquisition batch (notebook 10)")
    s.add_argument("--init-from", metavar="CHECKPOINT",
                   help="fine-tune: start from this pneumolib checkpoint's weights (same model and input channels), "
                        "recorded in the run's config")
    s.add_argument("--allow-random-init", action="store_true",
                   help="when ImageNet weights are missing, train from random init (recorded as such) instead of failing")
    s.add_argument("--no-sync-bn", action="store_true",
                   help="under torchrun: BatchNorm statistics per process instead of over the global batch "
                        "(recorded in the config as sync_bn=false)")
    _common_args(s)
    s.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    s = sub.add_parser("evaluate", help="report a checkpoint's metrics on a split")
    s.add_argument("checkpoint")
    _manifest_args(s)
    s.add_argument("--data-dir",
                   help="DIR with DIR/<split>/{NORMAL,PNEUMONIA}, or a folder holding NORMAL/ and PNEUMONIA/ directly")
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--threshold", type=float_in(0.0, 1.0),
                   help="override the checkpoint's decision threshold (a number from 0 to 1)")
    s.add_argument("--json", help="write the metrics as JSON here")
    s.add_argument("--scores", help="write per-image scores as CSV here")
    s.add_argument("--adapt", choices=["bn", "prior", "both"],
                   help="label-free adaptation to the cohort, reported beside the plain numbers: bn = re-estimate the "
                        "early BatchNorm statistics on its images (AdaBN); prior = estimate its class mix by EM and move "
                        "the threshold; both = bn then prior")
    s.add_argument("--adapt-alpha", type=float_in(0.0, 1.0), default=1.0,
                   help="bn: weight of the cohort's statistics against the training ones (default 1.0)")
    s.add_argument("--save-adapted", metavar="PATH", help="save the adapted model as a new checkpoint here")
    s.set_defaults(func=cmd_evaluate)


def _add_ensemble(sub) -> None:
    s = sub.add_parser("ensemble", help="serve several runs (e.g. seeds) as one checkpoint: mean probability, "
                                        "temperature and threshold fitted on the validation split")
    s.add_argument("checkpoints", nargs="+", help="checkpoint.pt files or run folders (one = temperature scaling only)")
    s.add_argument("--data-dir", help="the training data folder (its val split fits the temperature and threshold; "
                                      "default: the bundled fixture)")
    s.add_argument("--out", required=True, help="where to write the combined checkpoint")
    s.add_argument("--no-temperature", action="store_true", help="keep temperature 1 (plain averaging)")
    s.add_argument("--json", help="write what was fitted, and the test split's metrics, as JSON here")
    s.set_defaults(func=cmd_ensemble)


def _add_card(sub) -> None:
    s = sub.add_parser("card", help="write RUN_DIR/MODEL_CARD.md from what the run folder holds")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    s.set_defaults(func=cmd_card)


def _add_predict(sub) -> None:
    s = sub.add_parser("predict", help="label and P(PNEUMONIA) for image files")
    s.add_argument("checkpoint")
    s.add_argument("images", nargs="+")
    s.add_argument("--cam-dir", help="write a Grad-CAM overlay PNG per image here, on the film at its own size "
                                      "(long side capped at 1024 px)")
    s.add_argument("--cam-target", default="predicted", choices=["predicted", "PNEUMONIA", "NORMAL"],
                   help="the class the overlay explains (default: the predicted class)")
    s.set_defaults(func=cmd_predict)


def _add_explain(sub) -> None:
    s = sub.add_parser("explain", help="Grad-CAM for a checkpoint on a split: grid, lung masks with their check, "
                                       "lung/heart lift with intervals, randomisation test, ROAD faithfulness")
    s.add_argument("checkpoint")
    s.add_argument("--data-dir", required=True,
                   help="DIR with DIR/<split>/{NORMAL,PNEUMONIA}, or a folder holding NORMAL/ and PNEUMONIA/ directly")
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--n", type=int_in(1, 100_000), default=50, help="films per class: the first N in file-path order (default 50)")
    s.add_argument("--target", default="PNEUMONIA", choices=["PNEUMONIA", "NORMAL", "predicted"],
                   help="the class each map explains (default PNEUMONIA: the same question for every model)")
    s.add_argument("--grid-n", type=int_in(1, 64), default=4, help="films per class in the grid figure (default 4)")
    s.add_argument("--method", default=None, choices=["gradcam", "hirescam", "layercam", "gradcam++", "eigencam"],
                   help="CAM method (default: cam.DEFAULT_METHOD, hirescam)")
    s.add_argument("--layer", default="auto", choices=["auto", "layer1", "layer2", "layer3", "layer4"],
                   help="ResNet stage whose last block is read (default auto: the deepest with at least 8 x 8 cells)")
    s.add_argument("--sanity-n", type=int_in(0, 1000), default=8,
                   help="films per class for the randomisation test and ROAD faithfulness (default 8; 0 = skip)")
    s.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of the re-initialised layers, random maps, ROAD noise")
    s.add_argument("--compare", metavar="METHODS", help="compare CAM methods instead (comma-separated, e.g. "
                   "gradcam,hirescam,gradcam++) at --layers: empty maps, ROAD vs a random map, randomisation, lifts")
    s.add_argument("--layers", default="layer3,layer4", help="with --compare: the ResNet stages to try")
    s.add_argument("--json", help="write the report here (default: OUT/gradcam_<split>_<target>.json)")
    s.add_argument("--out", help="folder for the figures (default: gradcam/ beside the checkpoint)")
    s.set_defaults(func=cmd_explain)


def _add_bench(sub) -> None:
    s = sub.add_parser("bench", help="training images/s: plain ImageFolder pipeline vs pneumolib's vs pure compute")
    s.add_argument("--data-dir", help="Kaggle-layout folder (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture)")
    _manifest_args(s)
    s.add_argument("--experiment", default="baseline",
                   help="whose training transforms and preprocessing the pipeline applies (default: baseline)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--image-size", type=int_in(32, C.MAX_IMAGE_SIZE), default=128)
    s.add_argument("--batch-size", type=int_in(1, C.MAX_BATCH_SIZE), default=32)
    s.add_argument("--steps", type=int_in(1, 100_000), help="timed training steps per pipeline (default: 20 on CPU, 200 on GPU)")
    s.add_argument("--workers", type=int_in(0, 64), default=0, help="DataLoader workers for the plain pipeline")
    s.add_argument("--json", help="write plain_img_s, pipeline_img_s, compute_img_s, device, image_size, "
                                  "experiment here")
    s.set_defaults(func=cmd_bench)


def _add_stress(sub) -> None:
    s = sub.add_parser("stress", help="simulated scanner shifts: a finished run's metrics on shifted copies of its "
                                      "test split (writes RUN_DIR/stress.json)")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    _manifest_args(s)
    s.add_argument("--split", default="val", choices=["train", "val", "test"],
                   help="the split to shift (default val: the stress test is for choosing a recipe; test is for the "
                        "final report)")
    s.add_argument("--recompute", action="store_true", help="ignore a saved stress.json")
    s.set_defaults(func=cmd_stress)


def _add_shortcuts(sub) -> None:
    s = sub.add_parser("shortcuts", help="shortcut audit of a finished run: a probe on acquisition statistics, the "
                                         "model's reliance on pixels outside and inside the lungs, worst-group recall "
                                         "(writes RUN_DIR/shortcuts_SPLIT.json)")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    s.add_argument("--split", default="val", choices=["train", "val", "test"],
                   help="the split to audit (default val: the audit is used for selection)")
    s.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of the probe and the bootstrap")
    s.add_argument("--json", help="also write the report here")
    s.set_defaults(func=cmd_shortcuts)


def _add_ablate(sub) -> None:
    s = sub.add_parser("ablate", help="train (or reuse) notebook 10's ablation steps one lever at a time, stress-test "
                                      "them, and print the table scored by each validation protocol")
    s.add_argument("--data-dir", help="Kaggle-layout folder (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture)")
    s.add_argument("--runs", default="runs", help="folder of run folders (default: runs; steps go to "
                                                  "RUNS/ablation/STEP/seedS, RUNS/early_ids/STEP/seedS, the baseline "
                                                  "to RUNS/01_baseline/seedS)")
    s.add_argument("--seeds", nargs="+", type=int_in(0, 2**32 - 1), default=[0], metavar="S",
                   help="train every step once per seed; the table shows the seeds' means, the anchor order is "
                        "judged seed by seed (default: 0)")
    s.add_argument("--holdout", default="both", choices=["folders", "early_ids", "both"],
                   help="score on the folders' test split, the early-ID holdout, or both (default)")
    s.add_argument("--steps", nargs="+", metavar="NAME", help="only these steps (default: the whole chain, "
                                                              "'python -m pneumolib experiments --ablations' lists it)")
    s.add_argument("--with-recommended", action="store_true", help="also train the recommended recipe (entry 10)")
    s.add_argument("--profile", choices=list(C.PROFILES), default=None)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.set_defaults(func=cmd_ablate)


def _add_candidates(sub) -> None:
    s = sub.add_parser("candidates", help="the recipe candidates' table from finished run folders: internal test, stress "
                                          "mean/worst/held-out NORMAL recall, youden vs youden_shifted, seed ensembles")
    s.add_argument("groups", nargs="*", metavar="NAME=RUN_DIR[,RUN_DIR...]")
    s.add_argument("--data-dir", help="the data folder the runs trained on (default: $PNEUMOLIB_DATA_DIR, else the "
                                      "bundled fixture)")
    s.add_argument("--json", help="write every computed number here")
    s.add_argument("--no-ensemble", action="store_true", help="skip each candidate's seed ensemble")
    s.add_argument("--from-json", help="print the tables from a saved --json file instead of recomputing")
    s.add_argument("--select", action="store_true",
                   help="choose the recipe on validation only: the lung criterion from each run's shortcuts_val.json, "
                        "then validation AUC, paired by seed (reads no test split)")
    s.set_defaults(func=cmd_candidates)


def _add_lungs(sub) -> None:
    s = sub.add_parser("lungs", help="the lung-field segmenter: train it on annotated masks, evaluate its Dice, "
                                     "segment films (DICOM included), measure mask coverage, fit the whole-film "
                                     "population reference")
    s.add_argument("action", choices=["train", "evaluate", "segment", "coverage", "population"])
    s.add_argument("files", nargs="*", help="segment: the films; population: films to score against the reference")
    s.add_argument("--data-dir", help="train/evaluate/coverage: a folder holding chest_xray/ and lung_masks/ (or the "
                                      "fixture's masks/ layout); population: a Kaggle-layout folder or one holding "
                                      "chest_xray/")
    s.add_argument("--weights", help="evaluate/segment: a segmenter file (default: the one shipped in the package)")
    s.add_argument("--split", default=None, choices=["train", "val", "test"],
                   help="evaluate: default test; coverage: default val")
    s.add_argument("--epochs", type=int_in(1, C.MAX_EPOCHS), default=30)
    s.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    s.add_argument("--out", help="train: where to write the segmenter (default lungs_unet.pt); segment: folder for "
                                 "masks and overlays; population: where to write the reference", default=None)
    s.add_argument("--ship", action="store_true", help="train/population: write the weights or the reference into "
                                                       "the package (maintainers)")
    s.add_argument("--json", help="train: history and provenance; evaluate: dice_mean, dice_p05, n, per-film Dice; "
                                  "population: flag rates per split and the FILES' scores")
    s.add_argument("--figure", help="evaluate: a PNG of the worst-Dice films and others, annotated vs learned masks")
    s.set_defaults(func=cmd_lungs)


def _add_compare(sub) -> None:
    s = sub.add_parser("compare", help="print the comparison table for finished run folders")
    s.add_argument("run_dirs", nargs="+")
    s.set_defaults(func=cmd_compare)


def _add_thresholds(sub) -> None:
    s = sub.add_parser("thresholds", help="compare decision-threshold rules on a finished run's validation split by "
                                          "cross-fitting over patients (never the test split)")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--data-dir", help="default: the folder the run was trained on")
    s.add_argument("--splits", type=int_in(1, 10_000), default=50, help="random halvings of the patients (default 50)")
    s.add_argument("--json", help="also write the comparison here")
    s.set_defaults(func=cmd_thresholds)


def cmd_thresholds(args) -> int:
    from .core.io import save_json
    from .studies.thresholds import compare_run, format_rules
    reps = {}
    for d in args.run_dirs:
        reps[str(d)] = r = compare_run(d, args.data_dir, n_splits=args.splits)
        print(f"{d} ({r['experiment']}, trained rule {r['rule_trained']}, checkpoint threshold "
              f"{r['checkpoint_threshold']:.3f}):")
        print(format_rules(r))
        print()
    if args.json:
        save_json(next(iter(reps.values())) if len(reps) == 1 else reps, args.json)
    return 0


_COMMANDS = (_add_experiments, _add_run, _add_train, _add_evaluate, _add_ensemble, _add_card, _add_predict,
             _add_explain, _add_bench, _add_stress, _add_shortcuts, _add_ablate, _add_candidates, _add_lungs,
             _add_compare, _add_thresholds)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job, each added by its own `_add_<command>`."""
    p = ArgumentParser(prog="python -m pneumolib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for add in _COMMANDS:
        add(sub)
    return p


def reference_markdown(width: int = 100) -> str:
    """The command-line reference as Markdown, generated from `build_parser` (the docs site's command-line page is
    built from it, so the page cannot drift from the parser).

    Args:
        width: the column width the help text is wrapped at.

    Returns:
        One section per sub-command: its one-line summary, then its `--help` text in a code block.
    """
    def formatter(prog):
        return argparse.HelpFormatter(prog, width=width)

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = {c.dest: c.help for c in sub._choices_actions}
    parts = []
    for name, sp in sub.choices.items():
        sp.formatter_class = formatter
        parts.append(f"## `{name}`\n\n{summary.get(name, '')}\n\n```text\n{sp.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def _command_line() -> str:
    """The command that asked for this run, as a user would type it (recorded in metrics.json and the model card)."""
    return "python -m pneumolib " + shlex.join(sys.argv[1:])


def configure_logging(verbose: bool = False) -> None:
    """The library logs through `logging`; the CLI shows its INFO lines as plain text on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("pneumolib")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        configure_logging()
        return _dispatch(args)
    except KeyboardInterrupt:  # first: the user-error tuple below imports torch, which a Ctrl-C must not wait for
        print(f"pneumolib: interrupted; {interrupted_advice(args)}", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    """Run the command; a user's error is one line and exit code 2 (a KeyboardInterrupt goes to main)."""
    try:
        _check_outputs(args)
        return args.func(args)
    except KeyboardInterrupt:
        raise
    except _user_errors() as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"pneumolib: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:  # not about a file the user named: a bug, shown as one
            raise
        print(f"pneumolib: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2


def interrupted_advice(args) -> str:
    """What a Ctrl-C left, in the words of the command it stopped (every file is written whole or not at all)."""
    if args is None:
        return "nothing was written"
    if args.command == "train":
        state = Path(args.out) / "last.pt"
        if state.is_file():
            return f"the last completed epoch is kept in {state}: run the same command with --resume to continue"
        return "no epoch had completed, so there is nothing to resume; run the same command again to start over"
    if args.command in ("run", "ablate"):
        return "finished runs are kept and reused: run the same command again to go on"
    return "no output was left half-written; run the same command again"


if __name__ == "__main__":
    sys.exit(main())
