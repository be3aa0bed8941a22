"""What the notebooks show of one run: its config, report, history, Grad-CAM, thresholds, comparisons."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..analysis import plots
from ..analysis.cam import recorded_sanity
from ..core.config import ExperimentConfig, diff, format_diff
from ..data.dataset import resolve_data_dir
from ..notebook.display import (
    area_text,
    cam_gallery_caption,
    caption,
    fmt,
    grouped,
    history_caption,
    maps_checked,
    mask_gallery_caption,
    metrics_frame,
    one_class_epochs,
    report_caption,
    show,
    with_ci,
)
from ..notebook.series import Series, tidy
from ..studies import verdicts
from ..studies.catalogue import previous
from ..studies.experiment import RunResult


def wall_time(series: Series) -> None:
    """The notebook's wall time since series.start() ran."""
    print(series.wall_time())


def describe(config: ExperimentConfig) -> None:
    """What this entry changes from the previous one, and the training transform per class."""
    print(f"{config.entry} {config.name}: {config.title}")
    print(f"changes from the previous entry: {format_diff(diff(previous(config), config))}")
    for cls, spec in config.train_transforms:
        print(f"  {cls:<9} training transform: {spec}")
    weights = (
        "pretrained=True as the log wrote it (whether this machine has the ImageNet weights, and so what "
        "the run below trained from: the weights check)"
        if config.pretrained
        else "pretrained=False"
    )
    print(
        f"  model {config.model}, {config.in_channels} input channel(s), {weights}, "
        f"loss {config.loss}, decision rule {config.threshold}"
    )


def report(r: RunResult, split: str = "test") -> None:
    """Classification report with 95% bootstrap intervals, then confusion matrix and score histogram."""
    m = r.metrics[split]
    print(
        f"{r.config.name} (seed {r.config.seed}): {split} split, {m['n']} images"
        + (f" of {m['n_patients']} patients" if m.get("n_patients") else "")
    )
    show(metrics_frame(m))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.3), gridspec_kw={"width_ratios": [1, 1.6]})
    plots.plot_confusion(m, ax=ax[0])
    scores = r.test if split == "test" else None
    if scores is not None:
        plots.plot_scores(scores, r.threshold, ax=ax[1])
    fig.tight_layout()
    caption(report_caption(m, r.config.seed, split, scores is not None))


def history(r: RunResult) -> None:
    """Training curves (also for a reused checkpoint, whose training record travels with it)."""
    m = r.metrics
    if r.fit is None:
        print(f"seed {r.config.seed}: checkpoint reused; curves from its training record")
    if m.get("train_seconds"):
        print(f"training took {m['train_seconds'] / 60:.1f} min ({m['train_images_per_s']:.0f} train images/s)")
    for line in one_class_epochs(m.get("history") or [], r.data["val"] if r.data and "val" in r.data.splits else []):
        print(line)
    plots.plot_history(m["history"], m["best_epoch"])
    caption(history_caption(m["history"], m["best_epoch"], r.config.seed))


def gradcam(r, n_per_class: int = 4, title: str = "", mask_gallery: bool = False) -> None:
    """The Grad-CAM grid, then lung and heart lift per class with patient-level intervals, the mask check, the
    randomisation test and ROAD faithfulness. `mask_gallery`: also the gallery of the segmented (learned) masks,
    shown once in the series (notebook 01), where the masks are explained. `r` is a RunResult or a cam.Explanation."""
    from ..analysis.cam import format_report

    e = getattr(r, "explanation", r)
    if e is None:
        print("no Grad-CAM for this run (cam_per_class=0 or no test split)")
        return
    cam_gallery(e, n_per_class=n_per_class, title=title)
    print(format_report(e.report(per_image=False)))
    learned = sum(m == "learned" for m in e.mask_methods)
    if learned and mask_gallery:
        plots.plot_mask_gallery(e)
        caption(mask_gallery_caption(e))
    elif learned:
        print(
            f"lung masks from the shipped segmenter on {learned} of {len(e.mask_methods)} films "
            "(the gallery of such masks: notebook 01)"
        )


def cam_gallery(e, n_per_class: int = 4, title: str = "") -> None:
    """A Grad-CAM gallery (plots.plot_cam_grid) with its caption: per tile, where its map is hottest."""
    plots.plot_cam_grid(e, n_per_class=n_per_class, title=title)
    caption(cam_gallery_caption(e, n_per_class))


def augmentation_views(config: ExperimentConfig, samples) -> None:
    """plots.show_batched_vs_reference with its caption: training's augmentation drawn two ways."""
    plots.show_batched_vs_reference(config, samples)
    caption(
        "one training film per class, as decoded (first column), then random draws: in each pair of rows the upper "
        "one through the per-sample reference transforms (a note where the pipeline has none), the lower one "
        "through the batched augmentation training uses. The two rows should look alike in kind, not pixel for "
        "pixel."
    )


def shifts_view(image: np.ndarray, normalize: str | None = None) -> None:
    """plots.show_shifts with its caption: one film under every stress shift, and what the model sees of it."""
    from ..data.shifts import SHIFTS

    plots.show_shifts(image, normalize=normalize)
    caption(
        f"one test film, clean and under each of the {len(SHIFTS)} stress-test shifts (top row, each titled with its "
        "name and seen/unseen group)"
        + (
            f"; bottom row, the same films after the model's '{normalize}' normalisation: compare each with the clean "
            "one, an intensity shift that vanishes there cannot move the model"
            if normalize
            else ""
        )
        + "."
    )


def fixed_image(size: int = 64) -> np.ndarray:
    """A deterministic phantom (independent of the data folder) for cells whose output is pinned."""
    from ..data.fixture import make_phantom

    return make_phantom(np.random.default_rng(0), pneumonia=True, size=size).image


def central_focus_demo(image: np.ndarray | None = None) -> None:
    """CentralFocus on a fixed image: the figure, and numbers that pin its behaviour."""
    from ..data.transforms import CentralFocus

    image = fixed_image() if image is None else image
    cf = CentralFocus()
    out = cf(torch.from_numpy(image).unsqueeze(0)).squeeze(0).numpy().astype(float)
    m = cf.mask(*image.shape).numpy()
    centre, edge = m >= 1, m <= 0
    print(repr(cf))
    print(f"centre pixels changed: {np.abs(out - image)[centre].mean():.2f} grey levels on average")
    print(f"periphery pixels changed: {np.abs(out - image)[edge].mean():.2f} grey levels on average")
    plots.show_central_focus(image, cf)
    caption(
        "left, a phantom film; middle, CentralFocus's mask (1 = left sharp); right, the film after it: the periphery "
        f"blurred ({np.abs(out - image)[edge].mean():.2f} grey levels changed on average), the centre kept "
        f"({np.abs(out - image)[centre].mean():.2f})."
    )


def load_data(series: Series):
    """discover() the series' data folder (or the fixture), the val split of its first seed, and print its
    per-split class counts."""
    from ..data.dataset import discover

    root, _ = resolve_data_dir(series.data)
    data = discover(root, seed=series.seeds[0])
    print(series.tidy(repr(data)))
    return data


def colour_census(data) -> None:
    """Notebook 04: how this data folder's films store their pixels (imaging.colour_census over every split), and
    what that means for a greyscale against an RGB loader, read from the counts."""
    from ..data.imaging import colour_census as census

    files = [s.path for samples in data.splits.values() for s in samples]
    rows = census(files)
    show(
        pd.DataFrame(rows)
        .set_index(["format", "mode"])
        .astype(object)
        .where(lambda t: t.notna(), "- (not an RGB mode)")
    )
    colour = sum(r["files"] for r in rows if r["channels differ"] is not None)
    differ = sum(r["channels differ"] or 0 for r in rows)
    if not colour:
        print(
            f"none of the {len(files):,} films is a colour file: a greyscale and an RGB loader read the same grey "
            "values (the RGB one copies them to three channels)"
        )
    elif not differ:
        print(
            f"{colour:,} of the {len(files):,} films are colour files, and in every one the three channels are "
            "equal: grey pictures in colour files, so a greyscale and an RGB loader read the same values"
        )
    else:
        print(
            f"{differ:,} of the {colour:,} colour files carry channels that differ: for those a greyscale loader and "
            "an RGB one feed a model different values"
        )


def threshold_table(r: RunResult, extra_rules: tuple[str, ...] = ("youden", "sensitivity:0.95")) -> None:
    """Test metrics of the same model under several decision rules (the data-driven ones chosen on val)."""
    from ..analysis.evaluate import compute_metrics, fit_threshold, predict_samples

    p = r.predictor
    val = predict_samples(p.model, r.data["val"], p.preprocessing, tta=r.config.tta, resources=r.data.resources)
    rules = {f"fixed {r.threshold:.2f} (this entry)": r.threshold, "fixed 0.50": 0.5}
    for rule in extra_rules:
        rules[f"{rule} on val"] = fit_threshold(
            rule, p.model, val, p.preprocessing, tta=r.config.tta, resources=r.data.resources
        )
    rows = []
    for name, t in rules.items():
        m = compute_metrics(r.test, t, n_boot=0)
        rows.append(
            {
                "decision rule": name,
                "threshold": round(t, 3),
                "accuracy": round(m["accuracy"], 3),
                "NORMAL recall": round(m["specificity"], 3),
                "PNEUMONIA recall": round(m["sensitivity"], 3),
            }
        )
    show(pd.DataFrame(rows).set_index("decision rule"))


def subset_vs_full(r: RunResult) -> None:
    """The log's 10-image report next to the full test split, each with 95% bootstrap intervals."""
    sub, full = r.metrics["test_subset"], r.metrics["test"]
    per_class = ", ".join(f"{n} {c}" for c, n in sub["n_per_class"].items())
    print(f"the log's report: {sub['n']} test images ({per_class}); the full test split: {full['n']} images")
    show(
        pd.concat(
            {f"{sub['n']} images": metrics_frame(sub), f"full test split ({full['n']})": metrics_frame(full)}, axis=1
        )
    )
    plots.plot_comparison(
        [dict(sub, name=f"{sub['n']} images"), dict(full, name=f"full test ({full['n']})")],
        title="the 10-image report against the full test split (95% intervals)",
    )
    width = {  # the mean width of a split's intervals, over the metrics that have a finite one
        k: np.mean(
            [
                hi - lo
                for lo, hi in (x.get("ci95_wilson") or x.get("ci95") or {}).values()
                if np.isfinite([lo, hi]).all()
            ]
            or [np.nan]
        )
        for k, x in (("sub", sub), ("full", full))
    }
    caption(
        f"each metric on the log's {sub['n']} images and on the full test split ({full['n']}), with 95% intervals: "
        f"the {sub['n']}-image intervals are {fmt(width['sub'], 2)} wide on average, the full split's "
        f"{fmt(width['full'], 2)}."
    )


def weights_status(model: str = "resnet18") -> bool:
    """Say plainly whether ImageNet weights are on this machine."""
    from ..models.networks import WeightsUnavailable, resolve_weights

    try:
        print(f"ImageNet weights found: {tidy(str(resolve_weights(model)))}")
        print("So the runs below start from ImageNet weights, as the log's did.")
        return True
    except WeightsUnavailable as e:
        print(f"ImageNet weights NOT available: {tidy(str(e))}")
        print(
            "So the runs below train from RANDOM INIT (their saved configs say pretrained=False): they cannot "
            "confirm or refute what the log says about pretraining."
        )
        return False


def paired_difference(
    results,
    reference: list[dict],
    key: str = "specificity",
    label: str = "NORMAL recall",
    other: str = "the other entry",
) -> None:
    """This entry's test `key` against another entry's, seed by seed (verdicts.paired_by_seed): both values, the
    difference with its conservative 95% interval, and the count of seeds on each side, so that prose comparing two
    entries reads a printed count instead of stating a direction."""
    ms = [getattr(r, "metrics", r) for r in results]
    pairs = verdicts.paired_by_seed(ms, reference)
    if not pairs:
        print(f"{label}: no seed of {other} to pair with (render its notebook first)")
        return
    lower = equal = higher = 0
    for m, b in pairs:
        a, c = verdicts.metric(m, key), verdicts.metric(b, key)
        d = a - c
        lower, equal, higher = lower + (d.value < 0), equal + (d.value == 0), higher + (d.value > 0)
        ci = f" [{d.lo:+.3f}, {d.hi:+.3f}]" if d.has_interval else ""
        print(
            f"seed {(m.get('config') or {}).get('seed')}: {label} {a.value:.3f} here, {c.value:.3f} in {other}: "
            f"difference {d.value:+.3f}{ci}"
        )
    print(
        f"{label} here against {other}: lower on {lower}, equal on {equal}, higher on {higher} of {len(pairs)} "
        "seed(s) (test split; the interval is the conservative one of the verdict rule)"
    )


def lung_focus_table(metrics: list[dict]) -> None:
    """Grad-CAM lung lift (with patient-level 95% intervals) and heart/diaphragm lift per class for each run."""

    def cell(v: dict, key: str) -> str:
        mean = v.get(key, float("nan"))
        lo, hi = v.get(f"{key}_ci95", [float("nan")] * 2)
        return f"{mean:.2f} ({lo:.2f}-{hi:.2f})"

    rows = []
    for m in metrics:
        lf = m.get("lung_focus", {})
        n, p = lf.get("NORMAL", {}), lf.get("PNEUMONIA", {})
        rows.append(
            {
                "entry": m["entry"],
                "experiment": m["experiment"],
                "lung lift, NORMAL films": cell(n, "lung_lift"),
                "lung lift, PNEUMONIA films": cell(p, "lung_lift"),
                "heart lift, NORMAL films": cell(n, "heart_lift"),
                "heart lift, PNEUMONIA films": cell(p, "heart_lift"),
                "masks ok/failed": f"{n.get('masks_passed', 0) + p.get('masks_passed', 0)}/"
                f"{n.get('masks_failed', 0) + p.get('masks_failed', 0)}",
                "lung share of the input": area_text(n, p),
                "seed": (m.get("config") or {}).get("seed"),
                "maps' checks (ROAD, randomisation)": maps_checked(recorded_sanity(m.get("gradcam"))),
            }
        )
    frame = pd.DataFrame(rows).set_index("entry")
    lifts = [c for c in frame.columns if "lift" in c]
    who = ["experiment", "seed"]
    show(
        grouped(
            frame,
            {
                "lifts (95% interval)": who + lifts,
                "the masks and the maps' checks": who + [c for c in frame.columns if c not in lifts and c not in who],
            },
        )
    )
    sel = next((m["gradcam"]["selection"] for m in metrics if m.get("gradcam")), "the test films explained")
    print(
        "lift = share of the Grad-CAM (PNEUMONIA logit) energy inside the lung mask, or the heart/diaphragm box, "
        "divided by that region's share of the image: 1.0 = no preference. Mean over films, 95% interval from "
        f"resampling patients; lung lift only over masks that passed the check. Films: {sel}."
    )
    cropped = [m for m in metrics if (m.get("config") or {}).get("crop", "none") not in ("none", None)]
    if cropped:
        names = ", ".join(f"{m['entry']} ({(m.get('config') or {}).get('crop')} crop)" for m in cropped)
        print(
            f"Cropped inputs: {names}. Such a model sees only its crop, so its lift is measured in that input, where "
            "the lungs cover a larger share (the 'lung share of the input' column) and the highest possible lung "
            "lift, 1 / that share, is lower; a lung-mask model's input is black outside the dilated lung mask, so "
            "its maps can only fall on the lungs and the ring around them. Its lift is not comparable with the "
            "whole-film entries': read it beside its own share, not against their column."
        )


def compare_all(metrics: list[dict]) -> None:
    """The side-by-side table (95% intervals) and one figure for a list of runs' metrics."""
    from ..studies.experiment import comparison_rows

    # entries that asked for ImageNet weights but trained without them say so in the table and the figure
    def name(m):
        return f"{m['entry']} {m['experiment']}" + (
            " (random init)" if "unavailable" in str(m.get("weights", "")) else ""
        )

    table = []
    for m, row in zip(metrics, comparison_rows(metrics)):
        t = {"experiment": name(m)}
        for k, label in (
            ("accuracy", "accuracy"),
            ("sensitivity", "PNEUMONIA recall"),
            ("specificity", "NORMAL recall"),
            ("auc", "AUC"),
        ):
            t[label] = with_ci(row[k], row["ci95"].get(k))
        t["threshold"] = round(row["threshold"], 2)
        t["train min"] = round(row["minutes"], 1)
        if row.get("stress"):
            t["stress acc@ext"] = round(row["stress"].get("stress_accuracy_ext", float("nan")), 3)
            t["stress NORMAL recall"] = round(row["stress"].get("stress_specificity", float("nan")), 3)
        table.append(t)
    print(
        "test split, 95% bootstrap intervals by patient; seed "
        + ", ".join(sorted({str((m.get("config") or {}).get("seed")) for m in metrics}))
    )
    frame = pd.DataFrame(table).set_index("experiment")
    stress_cols = [c for c in ("stress acc@ext", "stress NORMAL recall") if c in frame]
    if stress_cols and frame[stress_cols].isna().any().any():
        print(
            "stress columns: 'not run' = no stress test of that run in RUNS (this notebook stress-tests the log's "
            "baseline and the recipe; 'python -m pneumolib stress RUN_DIR' runs it for any run)"
        )
        frame[stress_cols] = frame[stress_cols].astype(object).where(frame[stress_cols].notna(), "not run")
    if frame["train min"].isna().any():
        frame["train min"] = frame["train min"].astype(object).where(frame["train min"].notna(), "not recorded")
    metric_cols = ["accuracy", "PNEUMONIA recall", "NORMAL recall", "AUC", "threshold"]
    show(
        grouped(
            frame,
            {
                "test split (95% intervals by patient), at each run's threshold": metric_cols,
                "training time and stress test": [c for c in frame.columns if c not in metric_cols],
            },
        )
    )
    plots.plot_comparison(
        [dict(m["test"], name=name(m)) for m in metrics],
        title="every experiment's first seed on the test split (95% intervals by patient)",
    )
    spec = sorted((m["test"]["specificity"], name(m)) for m in metrics)
    caption(
        f"every experiment's first seed, one panel per test metric, each with its 95% interval by patient: NORMAL "
        f"recall runs from {fmt(spec[0][0])} ({spec[0][1]}) to {fmt(spec[-1][0])} ({spec[-1][1]}); points whose "
        "intervals overlap are not told apart by these films."
    )


def cam_table(expl) -> pd.DataFrame:
    """Grad-CAM per class of an Explanation as lifts (the region's share of the heatmap over its share of the image:
    1 = what a uniform heatmap scores), with 95% intervals by patient when the Explanation provides them, beside the
    maps' checks (a lift from maps that failed them, or were not checked, is marked so)."""
    from ..studies.verdicts import summary_lift

    rows = {}
    checks = maps_checked(expl.sanity)
    for cls, s in expl.summary().items():
        lung, heart = summary_lift(s, "lung_lift"), summary_lift(s, "heart_lift")
        rows[cls] = {
            "films": s["n"],
            "lung lift": with_ci(lung.value, (lung.lo, lung.hi) if lung.has_interval else None),
            "heart/diaphragm lift": with_ci(heart.value, (heart.lo, heart.hi) if heart.has_interval else None),
            "maps' checks (ROAD, randomisation)": checks,
        }
    print(
        "lift = the region's share of the heatmap / its share of the image (1 = a uniform heatmap); ROAD = Remove "
        "And Debias (Rong et al. 2022): how much removing the pixels a map ranks high hurts the prediction, against "
        "a random map"
    )
    return pd.DataFrame(rows).T


def inference_paths(results) -> None:
    """Notebook 04: each seed's model fed the test films four ways (drift.inference_paths); the rows are kept in
    the run's metrics under 'inference_paths' for the verdicts (and in its run folder, for the summary notebook),
    and shown as one table."""
    from ..studies import drift

    table = []
    for r in results:
        r.metrics["inference_paths"] = drift.inference_paths(r.predictor, r.data["test"], r.run_dir)
        for row in r.metrics["inference_paths"].values():
            shown = {"seed": r.config.seed, "inference": row["inference"]}
            if "error" in row:
                shown["refused"] = tidy(row["error"])
            else:
                shown.update(
                    {
                        k: round(v, 3)
                        for k, v in row.items()
                        if k not in ("inference", "n", "n_normal") and v is not None
                    }
                )
            table.append(shown)
    show(pd.DataFrame(table).set_index(["seed", "inference"]).fillna(""))
