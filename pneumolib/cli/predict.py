"""Prediction commands: predict films (with Grad-CAM overlays), explain a checkpoint on a split."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core import config as C
from .common import command_line, data_source, int_in, protected
from .evaluate import cohort_split


def cmd_predict(args) -> int:
    from ..api import load, predict_folder
    from ..core.io import ensure_writable_dir

    if args.cam_dir:  # before the work, not after it
        ensure_writable_dir(args.cam_dir)
    result = predict_folder(load(args.checkpoint), args.images, adapt=args.adapt)
    records, refused, pred = result.records, result.refused, result.predictor
    site = result.site  # said once, before the lines it explains, whatever the folder's size
    if site is not None:
        print(f"note: {site.line()}", file=sys.stderr, flush=True)
    for r in records:
        print(r.line())
    if any(r.population_score is not None for r in records):
        from ..data.population import LIMIT

        print(f"note: {LIMIT}", file=sys.stderr)
    if records and records[0].ood_distance is None:
        print(
            "note: this checkpoint carries no out-of-distribution reference (trained before pneumolib had one)",
            file=sys.stderr,
        )
    for e in refused:  # every good film was predicted first; each refused one is named with its reason
        print(f"pneumolib: error: {e}", file=sys.stderr)
    sys.stderr.flush()
    if args.cam_dir and records:
        _predict_overlays(pred, [Path(r.path) for r in records], args)
    return 2 if refused else 0


def _predict_overlays(pred, paths: list[Path], args) -> None:
    from ..analysis.cam import save_overlays, target_label
    from ..api import explain

    # the same P (TTA included) and threshold as the prediction lines; overlays on the film at its own size
    expl = explain(pred, paths, target=args.cam_target)
    print(
        f"{expl.method} at {expl.layer} (native map {expl.map_size[0]} x {expl.map_size[1]} cells), target: "
        f"{target_label(args.cam_target)}; overlays at the film's own size, long side at most 1024 px"
    )
    for p in save_overlays(expl, args.cam_dir):
        print(f"wrote {p}")


def add_predict(sub) -> None:
    s = sub.add_parser("predict", help="label and P(PNEUMONIA) for image files")
    s.add_argument("checkpoint")
    s.add_argument("images", nargs="+")
    s.add_argument(
        "--cam-dir",
        help="write a Grad-CAM overlay PNG per image here, on the film at its own size (long side capped at 1024 px)",
    )
    s.add_argument(
        "--cam-target",
        default="predicted",
        choices=["predicted", "PNEUMONIA", "NORMAL"],
        help="the class the overlay explains (default: the predicted class)",
    )
    s.add_argument(
        "--adapt",
        default="site",
        choices=C.SITE_MODES,
        help="site (default): with at least 64 readable films from one site, re-estimate the model's early BatchNorm "
        "statistics on them when label-free checks say it is safe (docs/adaptation.md); none: the model as trained. "
        "A single film is always scored by the model as trained",
    )
    s.set_defaults(func=cmd_predict)


def cmd_explain(args) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    from ..analysis import plots
    from ..analysis.cam import DEFAULT_METHOD, explain_predictor, format_report
    from ..core.io import ensure_writable_dir, save_figure, save_json
    from ..core.runs import RunDir
    from ..data.lungs import annotated_mask
    from ..models.checkpoint import Predictor, checkpoint_file

    args.method = args.method or DEFAULT_METHOD
    source = data_source(args, required=True)
    args.checkpoint = str(checkpoint_file(args.checkpoint))
    out = Path(args.out) if args.out else RunDir(Path(args.checkpoint).resolve().parent).gradcam
    ensure_writable_dir(out, ours=not args.out, protect=protected(args))  # the run's gradcam/: never a link
    pred = Predictor.load(args.checkpoint)
    samples = cohort_split(source, args.split, pred.preprocessing.view, pred.resources)
    if args.compare:
        return _compare_methods(pred, samples, args)
    # lung masks: annotated where a film has one (the shared data's lung_masks/, the fixture), else the segmenter's
    expl = explain_predictor(
        pred,
        samples,
        n_per_class=args.n,
        target=args.target,
        sanity_per_class=args.sanity_n,
        seed=args.seed,
        method=args.method,
        layer=args.layer,
        exact_masks=annotated_mask,
    )
    rep = dict(
        expl.report(),
        checkpoint=str(Path(args.checkpoint).resolve()),
        experiment=pred.config.name,
        data_dir=str(Path(args.data_dir).expanduser().resolve()),
        split=args.split,
        command=command_line(args),
    )
    stem = f"{args.method.replace('+', 'p')}_{args.split}_{args.target.lower()}"
    figures = {
        out / f"{stem}_grid.png": plots.plot_cam_grid(
            expl, n_per_class=min(args.grid_n, args.n), title=f"{pred.config.name} on {args.split}"
        ),
        out / f"{stem}_lung_masks.png": plots.plot_mask_gallery(expl),
    }
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
    from ..analysis.cam import choose_method, compare_methods, format_comparison
    from ..core.io import save_json
    from ..data.lungs import annotated_mask

    methods = [m for m in args.compare.split(",") if m]
    layers = [x for x in args.layers.split(",") if x]
    rows = compare_methods(
        pred,
        samples,
        methods=methods,
        layers=layers,
        n_per_class=args.n,
        sanity_per_class=args.sanity_n,
        seed=args.seed,
        target=args.target,
        exact_masks=annotated_mask,
    )
    print(format_comparison(rows))
    if args.json:
        save_json(
            {
                "rows": rows,
                "choice": choose_method(rows),
                "checkpoint": str(Path(args.checkpoint).resolve()),
                "command": command_line(args),
            },
            args.json,
        )
    return 0


def add_explain(sub) -> None:
    s = sub.add_parser(
        "explain",
        help="Grad-CAM for a checkpoint on a split: grid, lung masks with their check, "
        "lung/heart lift with intervals, randomisation test, ROAD faithfulness",
    )
    s.add_argument("checkpoint")
    s.add_argument(
        "--data-dir",
        required=True,
        help="DIR with DIR/<split>/{NORMAL,PNEUMONIA}, or a folder holding NORMAL/ and PNEUMONIA/ directly",
    )
    s.add_argument("--split", default="test", choices=C.SPLITS)
    s.add_argument(
        "--n", type=int_in(1, 100_000), default=50, help="films per class: the first N in file-path order (default 50)"
    )
    s.add_argument(
        "--target",
        default="PNEUMONIA",
        choices=["PNEUMONIA", "NORMAL", "predicted"],
        help="the class each map explains (default PNEUMONIA: the same question for every model)",
    )
    s.add_argument("--grid-n", type=int_in(1, 64), default=4, help="films per class in the grid figure (default 4)")
    from ..analysis.cam_methods import METHODS  # the registry (no heavy import): a method registered there is offered

    s.add_argument(
        "--method", default=None, choices=list(METHODS), help="CAM method (default: cam.DEFAULT_METHOD, hirescam)"
    )
    s.add_argument(
        "--layer",
        default="auto",
        choices=["auto", "layer1", "layer2", "layer3", "layer4"],
        help="ResNet stage whose last block is read (default auto: the deepest with at least 8 x 8 cells)",
    )
    s.add_argument(
        "--sanity-n",
        type=int_in(0, 1000),
        default=8,
        help="films per class for the randomisation test and ROAD faithfulness (default 8; 0 = skip)",
    )
    s.add_argument(
        "--seed",
        type=int_in(0, 2**32 - 1),
        default=0,
        help="seed of the re-initialised layers, random maps, ROAD noise",
    )
    s.add_argument(
        "--compare",
        metavar="METHODS",
        help="compare CAM methods instead (comma-separated, e.g. "
        "gradcam,hirescam,gradcam++) at --layers: empty maps, ROAD vs a random map, randomisation, lifts",
    )
    s.add_argument("--layers", default="layer3,layer4", help="with --compare: the ResNet stages to try")
    s.add_argument("--json", help="write the report here (default: OUT/gradcam_<split>_<target>.json)")
    s.add_argument("--out", help="folder for the figures (default: gradcam/ beside the checkpoint)")
    s.set_defaults(func=cmd_explain)
