"""What the numbered notebooks show: tables, figures and verdicts of finished runs (series.py trains them)."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..analysis import plots
from ..analysis.cam import recorded_sanity
from ..core.config import ExperimentConfig, diff, format_diff, previous
from ..data.dataset import resolve_data_dir
from ..notebook.series import Series, tidy
from ..studies import verdicts
from ..studies.experiment import RunResult

FIGURE_DPI = 120


def use_notebook_style() -> None:
    """Figures at FIGURE_DPI in the notebook's outputs; tables shown whole (pandas would otherwise hide columns past
    20 and rows past 60 behind '...', and the verdicts read the hidden ones)."""
    plt.rcParams["figure.dpi"] = FIGURE_DPI
    for key, value in (("display.max_columns", None), ("display.max_rows", None), ("display.max_colwidth", None),
                       ("display.width", 10_000)):
        pd.set_option(key, value)


def wall_time(series: Series) -> None:
    """The notebook's wall time since series.start() ran."""
    print(series.wall_time())


def describe(config: ExperimentConfig) -> None:
    """What this entry changes from the previous one, and the training transform per class."""
    print(f"{config.entry} {config.name}: {config.title}")
    print(f"changes from the previous entry: {format_diff(diff(previous(config), config))}")
    for cls, spec in config.train_transforms:
        print(f"  {cls:<9} training transform: {spec}")
    weights = ("pretrained=True as the log wrote it (whether this machine has the ImageNet weights, and so what "
               "the run below trained from: the weights check)" if config.pretrained else "pretrained=False")
    print(f"  model {config.model}, {config.in_channels} input channel(s), {weights}, "
          f"loss {config.loss}, decision rule {config.threshold}")


def report(r: RunResult, split: str = "test") -> None:
    """Classification report with 95% bootstrap intervals, then confusion matrix and score histogram."""
    m = r.metrics[split]
    print(f"{r.config.name} (seed {r.config.seed}): {split} split, {m['n']} images"
          + (f" of {m['n_patients']} patients" if m.get("n_patients") else ""))
    _display(metrics_frame(m))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.3), gridspec_kw={"width_ratios": [1, 1.6]})
    plots.plot_confusion(m, ax=ax[0])
    scores = r.test if split == "test" else None
    if scores is not None:
        plots.plot_scores(scores, r.threshold, ax=ax[1])
    fig.tight_layout()


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


def gradcam(r, n_per_class: int = 4, title: str = "", mask_gallery: bool = False) -> None:
    """The Grad-CAM grid, then lung and heart lift per class with patient-level intervals, the mask check, the
    randomisation test and ROAD faithfulness. `mask_gallery`: also the gallery of the segmented (learned) masks,
    shown once in the series (notebook 01), where the masks are explained. `r` is a RunResult or a cam.Explanation."""
    from ..analysis.cam import format_report

    e = getattr(r, "explanation", r)
    if e is None:
        print("no Grad-CAM for this run (cam_per_class=0 or no test split)")
        return
    plots.plot_cam_grid(e, n_per_class=n_per_class, title=title)
    print(format_report(e.report(per_image=False)))
    learned = sum(m == "learned" for m in e.mask_methods)
    if learned and mask_gallery:
        plots.plot_mask_gallery(e)
    elif learned:
        print(f"lung masks from the shipped segmenter on {learned} of {len(e.mask_methods)} films "
              "(the gallery of such masks: notebook 01)")


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
    _display(pd.DataFrame(rows).set_index(["format", "mode"]).astype(object).where(
        lambda t: t.notna(), "- (not an RGB mode)"))
    colour = sum(r["files"] for r in rows if r["channels differ"] is not None)
    differ = sum(r["channels differ"] or 0 for r in rows)
    if not colour:
        print(f"none of the {len(files):,} films is a colour file: a greyscale and an RGB loader read the same grey "
              "values (the RGB one copies them to three channels)")
    elif not differ:
        print(f"{colour:,} of the {len(files):,} films are colour files, and in every one the three channels are "
              "equal: grey pictures in colour files, so a greyscale and an RGB loader read the same values")
    else:
        print(f"{differ:,} of the {colour:,} colour files carry channels that differ: for those a greyscale loader and "
              "an RGB one feed a model different values")


def threshold_table(r: RunResult, extra_rules: tuple[str, ...] = ("youden", "sensitivity:0.95")) -> None:
    """Test metrics of the same model under several decision rules (the data-driven ones chosen on val)."""
    from ..analysis.evaluate import compute_metrics, fit_threshold, predict_samples

    p = r.predictor
    val = predict_samples(p.model, r.data["val"], p.preprocessing, tta=r.config.tta, cache=r.data.cache)
    rules = {f"fixed {r.threshold:.2f} (this entry)": r.threshold, "fixed 0.50": 0.5}
    for rule in extra_rules:
        rules[f"{rule} on val"] = fit_threshold(rule, p.model, val, p.preprocessing, tta=r.config.tta, cache=r.data.cache)
    rows = []
    for name, t in rules.items():
        m = compute_metrics(r.test, t, n_boot=0)
        rows.append({"decision rule": name, "threshold": round(t, 3), "accuracy": round(m["accuracy"], 3),
                     "NORMAL recall": round(m["specificity"], 3), "PNEUMONIA recall": round(m["sensitivity"], 3)})
    _display(pd.DataFrame(rows).set_index("decision rule"))


def subset_vs_full(r: RunResult) -> None:
    """The log's 10-image report next to the full test split, each with 95% bootstrap intervals."""
    sub, full = r.metrics["test_subset"], r.metrics["test"]
    per_class = ", ".join(f"{n} {c}" for c, n in sub["n_per_class"].items())
    print(f"the log's report: {sub['n']} test images ({per_class}); the full test split: {full['n']} images")
    _display(pd.concat({f"{sub['n']} images": metrics_frame(sub), f"full test split ({full['n']})": metrics_frame(full)},
                       axis=1))
    plots.plot_comparison([dict(sub, name=f"{sub['n']} images"), dict(full, name=f"full test ({full['n']})")],
                          title="the 10-image report against the full test split (95% intervals)")


def weights_status(model: str = "resnet18") -> bool:
    """Say plainly whether ImageNet weights are on this machine."""
    from ..models.networks import WeightsUnavailable, resolve_weights

    try:
        print(f"ImageNet weights found: {tidy(str(resolve_weights(model)))}")
        print("So the runs below start from ImageNet weights, as the log's did.")
        return True
    except WeightsUnavailable as e:
        print(f"ImageNet weights NOT available: {tidy(str(e))}")
        print("So the runs below train from RANDOM INIT (their saved configs say pretrained=False): they cannot "
              "confirm or refute what the log says about pretraining.")
        return False


def _area(*by_class: dict) -> str:
    """The mean share of the explained images the lung mask covers, over the classes that record it."""
    areas = [c["lung_area"] for c in by_class if isinstance(c.get("lung_area"), (int, float))]
    return f"{np.mean(areas):.0%}" if areas else "not recorded"


def paired_difference(results, reference: list[dict], key: str = "specificity", label: str = "NORMAL recall",
                      other: str = "the other entry") -> None:
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
        print(f"seed {(m.get('config') or {}).get('seed')}: {label} {a.value:.3f} here, {c.value:.3f} in {other}: "
              f"difference {d.value:+.3f}{ci}")
    print(f"{label} here against {other}: lower on {lower}, equal on {equal}, higher on {higher} of {len(pairs)} "
          "seed(s) (test split; the interval is the conservative one of the verdict rule)")


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
        rows.append({"entry": m["entry"], "experiment": m["experiment"],
                     "lung lift, NORMAL films": cell(n, "lung_lift"), "lung lift, PNEUMONIA films": cell(p, "lung_lift"),
                     "heart lift, NORMAL films": cell(n, "heart_lift"),
                     "heart lift, PNEUMONIA films": cell(p, "heart_lift"),
                     "masks ok/failed": f"{n.get('masks_passed', 0) + p.get('masks_passed', 0)}/"
                                        f"{n.get('masks_failed', 0) + p.get('masks_failed', 0)}",
                     "lung share of the input": _area(n, p),
                     "seed": (m.get("config") or {}).get("seed"),
                     "maps' checks (ROAD, randomisation)": maps_checked(recorded_sanity(m.get("gradcam")))})
    _display(pd.DataFrame(rows).set_index("entry"))
    sel = next((m["gradcam"]["selection"] for m in metrics if m.get("gradcam")), "the test films explained")
    print("lift = share of the Grad-CAM (PNEUMONIA logit) energy inside the lung mask, or the heart/diaphragm box, "
          "divided by that region's share of the image: 1.0 = no preference. Mean over films, 95% interval from "
          f"resampling patients; lung lift only over masks that passed the check. Films: {sel}.")
    cropped = [m for m in metrics if (m.get("config") or {}).get("crop", "none") not in ("none", None)]
    if cropped:
        names = ", ".join(f"{m['entry']} ({(m.get('config') or {}).get('crop')} crop)" for m in cropped)
        print(f"Cropped inputs: {names}. Such a model sees only its crop, so its lift is measured in that input, where "
              "the lungs cover a larger share (the 'lung share of the input' column) and the highest possible lung "
              "lift, 1 / that share, is lower; a lung-mask model's input is black outside the dilated lung mask, so "
              "its maps can only fall on the lungs and the ring around them. Its lift is not comparable with the "
              "whole-film entries': read it beside its own share, not against their column.")


def compare_all(metrics: list[dict]) -> None:
    """The side-by-side table (95% intervals) and one figure for a list of runs' metrics."""
    from ..studies.experiment import comparison_rows

    # entries that asked for ImageNet weights but trained without them say so in the table and the figure
    def name(m):
        return f"{m['entry']} {m['experiment']}" + (" (random init)" if "unavailable" in str(m.get("weights", "")) else "")

    table = []
    for m, row in zip(metrics, comparison_rows(metrics)):
        t = {"experiment": name(m)}
        for k, label in (("accuracy", "accuracy"), ("sensitivity", "PNEUMONIA recall"),
                         ("specificity", "NORMAL recall"), ("auc", "AUC")):
            t[label] = _with_ci(row[k], row["ci95"].get(k))
        t["threshold"] = round(row["threshold"], 2)
        t["train min"] = round(row["minutes"], 1)
        if row.get("stress"):
            t["stress acc@ext"] = round(row["stress"].get("stress_accuracy_ext", float("nan")), 3)
            t["stress NORMAL recall"] = round(row["stress"].get("stress_specificity", float("nan")), 3)
        table.append(t)
    print("test split, 95% bootstrap intervals by patient; seed "
          + ", ".join(sorted({str((m.get("config") or {}).get("seed")) for m in metrics})))
    frame = pd.DataFrame(table).set_index("experiment")
    stress_cols = [c for c in ("stress acc@ext", "stress NORMAL recall") if c in frame]
    if stress_cols and frame[stress_cols].isna().any().any():
        print("stress columns: 'not run' = no stress test of that run in RUNS (this notebook stress-tests the log's "
              "baseline and the recipe; 'python -m pneumolib stress RUN_DIR' runs it for any run)")
        frame[stress_cols] = frame[stress_cols].astype(object).where(frame[stress_cols].notna(), "not run")
    if frame["train min"].isna().any():
        frame["train min"] = frame["train min"].astype(object).where(frame["train min"].notna(), "not recorded")
    _display(frame)
    plots.plot_comparison([dict(m["test"], name=name(m)) for m in metrics],
                          title="every experiment's first seed on the test split (95% intervals by patient)")


# --- notebook series v2: provenance, seeds, computed verdicts, tables as DataFrames --------------------------
def _display(obj) -> None:
    # whole cell texts: the claims, notes and refusals in these tables are sentences, not values to abbreviate
    with pd.option_context("display.max_colwidth", None, "display.max_columns", None, "display.max_rows", None,
                           "display.width", 10_000):
        try:
            from IPython.display import display
        except ImportError:  # outside IPython: plain text
            print(obj)
            return
        display(obj)


def fmt(v: Any, digits: int = 3) -> str:
    try:
        return "nan" if v is None or np.isnan(v) else f"{v:.{digits}f}"
    except TypeError:
        return str(v)


def span(pair) -> str:
    return "" if pair is None else f"[{fmt(pair[0])}, {fmt(pair[1])}]"  # brackets: bounds may be negative


def _with_ci(v: float, ci) -> str:
    return f"{fmt(v)} ({fmt(ci[0], 2)}-{fmt(ci[1], 2)})" if ci else fmt(v)


def metrics_frame(m: dict[str, Any]) -> pd.DataFrame:
    """A split's headline metrics with their 95% intervals (by patient when the films carry patients; Wilson
    intervals too for small samples, where the percentile bootstrap collapses)."""
    from ..core.stats import SMALL_N

    names = {"accuracy": "accuracy", "sensitivity": "PNEUMONIA recall", "specificity": "NORMAL recall",
             "precision": "PNEUMONIA precision", "npv": "NORMAL precision", "auc": "AUC"}
    # a precision is undefined when no film is called that class (a collapsed model): say so, not NaN
    undefined = {"precision": "undefined: no film called PNEUMONIA", "npv": "undefined: no film called NORMAL",
                 "sensitivity": "undefined: no PNEUMONIA film", "specificity": "undefined: no NORMAL film",
                 "auc": "undefined: films of one class only"}
    unit = "patients" if m.get("ci95_unit") == "patient" else "images"
    rows = []
    for k, label in names.items():
        if k not in m:
            continue
        v = m[k]
        known = v is not None and not np.isnan(float(v))
        row = {"metric": label, "value": round(float(v), 3) if known else undefined.get(k, "undefined")}
        ci = m.get("ci95", {}).get(k) if known else None
        row[f"95% CI (bootstrap over {unit})"] = f"{fmt(ci[0])}-{fmt(ci[1])}" if _finite(ci) else ""
        wil = m.get("ci95_wilson", {}).get(k) if known else None
        if m.get("n", SMALL_N) < SMALL_N:
            row["95% CI (Wilson)"] = f"{fmt(wil[0])}-{fmt(wil[1])}" if _finite(wil) else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def _finite(pair) -> bool:
    return bool(pair) and all(x is not None and np.isfinite(float(x)) for x in pair)


def one_class_epochs(history: list[dict[str, float]], val_samples) -> list[str]:
    """Epochs whose model called every val film one class at 0.5 (the log's symptom). Read from the epoch's share
    of films called PNEUMONIA when the history has it; older histories only have val accuracy, which equals a
    class's share of the val films in that case (consistent with it, not proof; and on a balanced val split it
    cannot say which class)."""
    labels = [s.label for s in val_samples]
    if not labels or not history:
        return []
    n, n_pneu = len(labels), sum(labels)
    found: dict[str, list[int]] = {}
    for h in history:
        share = h.get("val_share_pneumonia")
        if share is not None:
            cls = "PNEUMONIA" if share == 1.0 else ("NORMAL" if share == 0.0 else None)
            if cls:
                found.setdefault(f"called every val film {cls}", []).append(int(h["epoch"]))
            continue
        k = round(h["val_acc"] * n)
        if abs(h["val_acc"] * n - k) < 1e-6 and k in (n_pneu, n - n_pneu):
            cls = "one class" if n_pneu == n - n_pneu else ("PNEUMONIA" if k == n_pneu else "NORMAL")
            found.setdefault(f"val accuracy at 0.5 = the {cls} share of the {n} val films, consistent with every "
                             f"val film called {cls}", []).append(int(h["epoch"]))
    return [f"epoch(s) {', '.join(map(str, e))}: {what}" for what, e in found.items()]


def _metrics_of(x) -> dict[str, Any]:
    return x.metrics if hasattr(x, "metrics") else x


def seed_table(results) -> pd.DataFrame:
    """Per-seed test metrics (95% intervals by patient), then their mean and range over the seeds."""
    ms = [_metrics_of(r) for r in results]
    keys = (("accuracy", "accuracy"), ("sensitivity", "PNEUMONIA recall"), ("specificity", "NORMAL recall"),
            ("auc", "AUC"))
    rows, index = [], []
    for m in ms:
        t = m["test"]
        row = {label: _with_ci(t[k], t.get("ci95", {}).get(k)) for k, label in keys}
        c = m.get("config") or {}
        best = m.get("best_epoch")
        last = m.get("test_last_epoch")
        row.update({"budget": f"{c.get('epochs')} ep x {c.get('max_train_images') or 'all'} img",
                    "threshold": fmt(m.get("threshold"), 2), "trained at commit": str(m.get("trained_commit", "")),
                    # a kept first epoch (of several) is an untrained model judged as a result: say so
                    "kept epoch": f"{best} (EPOCH 1: untrained)" if best == 1 and (c.get("epochs") or 1) > 1 else str(best),
                    "last epoch: accuracy / NORMAL recall": (
                        "= kept" if last and last.get("same_as_kept") else
                        f"{fmt(last['accuracy'])} / {fmt(last['specificity'])} (epoch {last['epoch']})" if last else
                        "not kept (trained before last_epoch.pt)"),
                    "weights": "random init" if "random init" in str(m.get("weights", "")) else str(m.get("weights")),
                    # the kept checkpoint on validation: one class for >= 95% of films is a collapse, flagged here and
                    # in every verdict that reads this seed (studies.verdicts.collapsed)
                    "collapsed?": f"COLLAPSED: {verdicts.collapsed(m)}" if verdicts.collapsed(m) else "no",
                    "Grad-CAM maps' checks": (maps_checked(recorded_sanity(m.get("gradcam"))) if m.get("gradcam")
                                              else "no Grad-CAM run")})
        rows.append(row)
        index.append(f"seed {(m.get('config') or {}).get('seed')}")
    n = len(ms)
    label = f"{n} seed{'s' if n != 1 else ''}"
    mean = {lab: fmt(float(np.mean([m["test"][k] for m in ms]))) for k, lab in keys}
    rng = {lab: f"{fmt(min(m['test'][k] for m in ms))}-{fmt(max(m['test'][k] for m in ms))}" for k, lab in keys}
    rows += [mean, rng]
    index += [f"mean of {label}", f"range over {label}"]
    return pd.DataFrame(rows, index=index).fillna("")


def budget_check(results) -> None:
    """The series' budget rule on the baseline's seeds (studies.verdicts.budget_rule): the series is rendered at the
    smallest budget at which no baseline seed collapses and every one reaches the validation AUC bar."""
    r = verdicts.budget_rule([_metrics_of(x) for x in results])
    e, n, px = r["budget"] or (None, None, None)
    print(f"Budget rule (pneumolib.studies.verdicts.budget_rule): every baseline seed's kept checkpoint reaches "
          f"validation AUC >= {verdicts.BUDGET_MIN_VAL_AUC} and none collapses (>= {verdicts.COLLAPSE_SHARE:.0%} of "
          f"validation films in one class). Budget here: " + (f"{e} epochs x {n or 'all'} films per epoch, {px} px."
                                                              if r["budget"] else "seeds at different budgets."))
    _display(pd.DataFrame([{"seed": x["seed"], "validation AUC": fmt(x["val_auc"]), "kept epoch": x["kept_epoch"],
                            "collapsed?": x["collapse"] or "no"} for x in r["rows"]]).set_index("seed"))
    print("The budget " + ("PASSES the rule." if r["passes"] else
                           "FAILS the rule: verdicts at this budget read models that did not train."))


def checkpoint_table(results) -> pd.DataFrame:
    """Checkpoint stability per seed: validation metrics of the kept (best, lowest val loss) epoch next to the last
    epoch's, from the training record."""
    rows, index = [], []
    for r in results:
        m = _metrics_of(r)
        hist = m.get("history") or []
        if not hist:
            continue
        best = next((h for h in hist if h["epoch"] == m.get("best_epoch")), hist[-1])
        last = hist[-1]
        rows.append({"best epoch": int(best["epoch"]), "last epoch": int(last["epoch"]),
                     "val loss (best)": round(best["val_loss"], 3), "val loss (last)": round(last["val_loss"], 3),
                     "val AUC (best)": round(best["val_auc"], 3), "val AUC (last)": round(last["val_auc"], 3),
                     "val acc@0.5 (best)": round(best["val_acc"], 3), "val acc@0.5 (last)": round(last["val_acc"], 3)})
        index.append(f"seed {(m.get('config') or {}).get('seed')}")
    return pd.DataFrame(rows, index=index)


def seed_overview(by_entry: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per experiment: mean and range over its seeds of the test metrics."""
    rows, index = [], []
    for entry, ms in by_entry.items():
        if not ms:
            continue
        m0 = ms[0]
        row = {"seeds": len(ms)}
        for k, label in (("accuracy", "accuracy"), ("sensitivity", "PNEUMONIA recall"),
                         ("specificity", "NORMAL recall"), ("auc", "AUC")):
            v = [m["test"][k] for m in ms]
            row[label] = f"{fmt(float(np.mean(v)))} ({fmt(min(v))}-{fmt(max(v))})"
        rows.append(row)
        index.append(f"{entry} {m0['experiment']}" + (" (random init)" if "unavailable" in str(m0.get("weights", ""))
                                                       else ""))
    print("test split: mean over seeds (range over seeds)")
    return pd.DataFrame(rows, index=index)


HEADLINE_PENDING = ("*Headline: filled in by the verdict cell ('Log vs re-run') when the notebook has run to it; "
                    "if you see this line, it has not.*")


def headline(entry: str) -> None:
    """The headline box under a notebook's title: a placeholder now, replaced by `log_vs_rerun` with each claim of
    the log, its verdict and the number that decides it (a Jupyter display updated in place, so the box is computed
    from the same runs as the verdict table, never typed)."""
    from IPython.display import Markdown, display
    display(Markdown(HEADLINE_PENDING), display_id=f"headline-{entry}")


def headline_markdown(entry: str, rows: list[dict[str, Any]], n_seeds: int, budget: str) -> str:
    """The headline's text from the judged claims (verdicts.judge rows)."""
    lines = [f"**What the log claimed, and what this re-run found** ({n_seeds} seed{'s' if n_seeds != 1 else ''}, "
             f"{budget}; every number is printed by the verdict table in [Log vs re-run](#Log-vs-re-run)):", "",
             "| the log's claim | verdict | deciding number: mean over seeds [95% interval envelope] |",
             "|---|---|---|"]
    for r in rows:
        number = (f"{r['quantity']}: {fmt(r['mean'])} {span(r['interval']) or '[no interval]'} "
                  f"(holds if {r['claimed']})"
                  if r["n"] else f"not judged: {r['note'] or 'no runs'}")
        lines.append(f"| \"{r['claim']}\" | **{r['verdict']}** | {number} |".replace("\n", " "))
    return "\n".join(lines)


def log_vs_rerun(entry: str, metrics_by_seed, reference: dict[str, list] | None = None) -> None:
    """The log's claims for this entry, each with the quantity measured over all seeds, its interval and a verdict
    (pneumolib.verdicts holds the claims and the rule)."""
    from ..studies import verdicts as V

    ms = [_metrics_of(r) for r in metrics_by_seed]
    reference = {k: [_metrics_of(r) for r in v] for k, v in (reference or {}).items()}
    if any(V.COHORT in c.needs for c in V.CLAIMS.get(entry, ())):  # the record's measurements of these very runs
        reference[V.COHORT] = V.cohort_references(cohort_recipes(), ms)
    rows = []
    judged = V.judge_entry(entry, ms, reference)
    budgets = sorted({V.budget(m) for m in ms}, key=str)
    budget = "; ".join(f"{e} epochs x {n or 'all'} films per epoch, {px} px" for e, n, px in budgets)
    from IPython.display import Markdown, update_display
    update_display(Markdown(headline_markdown(entry, judged, len(ms), budget)), display_id=f"headline-{entry}")
    # the claim column quotes the log (entries 01-09) or, for the recommended recipe, its own hypothesis
    for r in judged:
        rows.append({"claim": f"\"{r['claim']}\"", "measured": r["quantity"], "holds if": r["claimed"],
                     "mean": fmt(r["mean"]) if r["n"] else "not measured (see note)",
                     "range over seeds": span(r["range"]), "interval": span(r["interval"]),
                     "seeds": r["n"], "verdict": r["verdict"], "note": r["note"]})
    n = len(ms)
    print(f"{n} seed{'s' if n != 1 else ''}, one budget. Verdict (pneumolib.verdicts.decide): 'holds' when every "
          "seed's 95% interval (bootstrap by patient; Wilson below 100 films; a count is exact) is on the claimed "
          "side, 'does not hold' when every one is on the other side, 'seeds disagree' when seeds decide both ways, "
          f"'too few films' when a seed's own interval straddles the threshold; without per-seed intervals, the range "
          f"over {V.MIN_SEEDS} or more seeds decides. 'interval' shows the envelope of the seeds' intervals.")
    _display(pd.DataFrame(rows).set_index("claim"))


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
                shown.update({k: round(v, 3) for k, v in row.items() if k not in ("inference", "n", "n_normal")
                              and v is not None})
            table.append(shown)
    _display(pd.DataFrame(table).set_index(["seed", "inference"]).fillna(""))


def maps_checked(sanity: dict[str, Any] | None) -> str:
    """The maps' checks in words, for every table that shows lifts: ROAD (the model's map against a random map, with
    a 95% interval by patient) and the randomisation test (rank correlation with a re-initialised model's map)."""
    from ..analysis.cam import maps_pass
    if not sanity:
        return "NOT CHECKED (no ROAD or randomisation test was run on these maps): lifts not to be read"
    fa, rc = sanity.get("faithfulness") or {}, sanity.get("randomisation_rank_corr") or {}
    ci = fa.get("model_minus_random_ci95")
    verdict = {True: "pass", False: "FAIL", None: "undecided"}[maps_pass(sanity)]
    return (f"{verdict}: ROAD model - random map {fmt(fa.get('model_minus_random'))} {span(ci)}, randomisation rank "
            f"correlation {fmt(rc.get('mean'))} ({sanity.get('n')} films)")


def cam_table(expl) -> pd.DataFrame:
    """Grad-CAM per class of an Explanation as lifts (the region's share of the heatmap over its share of the image:
    1 = what a uniform heatmap scores), with 95% intervals by patient when the Explanation provides them, beside the
    maps' checks (a lift from maps that failed them, or were not checked, is marked so)."""
    from ..studies.verdicts import summary_lift

    rows = {}
    checks = maps_checked(expl.sanity)
    for cls, s in expl.summary().items():
        lung, heart = summary_lift(s, "lung_lift"), summary_lift(s, "heart_lift")
        rows[cls] = {"films": s["n"],
                     "lung lift": _with_ci(lung.value, (lung.lo, lung.hi) if lung.has_interval else None),
                     "heart/diaphragm lift": _with_ci(heart.value, (heart.lo, heart.hi) if heart.has_interval else None),
                     "maps' checks (ROAD, randomisation)": checks}
    print("lift = the region's share of the heatmap / its share of the image (1 = a uniform heatmap); ROAD = Remove "
          "And Debias (Rong et al. 2022): how much removing the pixels a map ranks high hurts the prediction, against "
          "a random map")
    return pd.DataFrame(rows).T


def stress_table(reports: dict[str, Any]) -> pd.DataFrame:
    """Per-shift metrics of one or more stress reports (stress.StressReport), side by side."""
    cols = {"accuracy_ext": "acc@ext", "sensitivity": "PNEUMONIA recall", "specificity": "NORMAL recall", "auc": "AUC"}
    frames, groups = {}, {}
    for name, rep in reports.items():
        df = pd.DataFrame(rep.rows).set_index("shift")
        groups.update(df["group"].to_dict())
        df = df[list(cols)]
        shifted = df.drop(index="clean", errors="ignore")
        df.loc["mean of shifted"] = shifted.mean()
        df.loc["worst shifted"] = shifted.min()
        frames[name] = df.rename(columns=cols).round(3)
    out = pd.concat(frames, axis=1)
    out.insert(0, "group", [groups.get(i, "") for i in out.index])
    print("acc@ext = accuracy re-weighted to the external cohort's 37.5% NORMAL; each model at its own threshold")
    return out


def protocols(rows: list[dict[str, Any]]):
    """How each protocol ranks the ablation steps, and the figure; a line when there is no ablation."""
    from ..studies.protocol import plot_protocols, protocol_agreement

    if not rows:
        print("no ablation in this render: nothing to rank")
        return None
    print(protocol_agreement(rows))
    return plot_protocols(rows)


def ablation_table(rows: list[dict[str, Any]]) -> None:
    """The ablation rows (or the matched baseline's) as one table, every score to three decimals; a line when there
    are none."""
    from ..studies.protocol import ablation_frame
    from ..studies.stress import EXTERNAL_NORMAL_SHARE

    if not rows:
        print("no rows: not trained in this render (see above)")
        return
    frame = ablation_frame(rows)
    if any(col == "acc@ext" for _, col in frame.columns):
        print(f"acc@ext = accuracy re-weighted to {EXTERNAL_NORMAL_SHARE:.1%} NORMAL films, the external cohort's "
              "mix; each model at its own threshold")
    with pd.option_context("display.float_format", "{:.3f}".format):  # one row alone would print 0.610 as 0.61
        _display(frame)


def budget(config: ExperimentConfig, profile: str) -> None:
    """The training budget of a config under a profile, in words."""
    from ..studies.protocol import budget_of, budget_words

    print(f"{config.name} under profile {profile}: {budget_words(budget_of(config, profile))}")


def shortcut_audit(reports: dict[str, dict]) -> None:
    """Shortcut audits (shortcuts.audit_run reports) by name, as the CLI prints them."""
    from ..studies.shortcuts import format_audit
    for name, rep in reports.items():
        print(f"{name} ({rep['split']} split, {rep['n']} films):")
        print(tidy(format_audit(rep)))
        print()


def audit_reading(reports: dict[str, dict]) -> None:
    """The shortcut audits read in words, computed from their numbers: the share of decisions that filling the
    outside (and the inside) of the lung fields flips, against the lung criterion fixed before any audit
    (studies.candidates.LUNG_BOUND); the probe's AUC on the whole film and on the model's input; the worst group."""
    from ..studies.candidates import LUNG_BOUND
    for name, rep in reports.items():
        out, ins = rep["outside_lung_reliance"], rep["inside_lung_reliance"]
        per = out.get("per_class", {})
        looks = out["flipped_share"] <= LUNG_BOUND and out["mean_abs_change"] < ins["mean_abs_change"]
        w = (rep.get("worst_group") or {}).get("worst") or {}
        print(f"{name}: filling everything outside the lung fields flips {out['flipped_share']:.1%} "
              f"{span(out.get('flipped_share_ci95'))} of the decisions (NORMAL films "
              f"{per.get('NORMAL', {}).get('flipped_share', float('nan')):.1%}, PNEUMONIA films "
              f"{per.get('PNEUMONIA', {}).get('flipped_share', float('nan')):.1%}); filling the inside flips "
              f"{ins['flipped_share']:.1%}. By the lung criterion (at most {LUNG_BOUND:.0%} flipped by the outside, and "
              f"less change from the outside than from the inside: mean |change| {fmt(out['mean_abs_change'])} vs "
              f"{fmt(ins['mean_abs_change'])}) this model "
              + ("looks at the lungs." if looks else "READS OUTSIDE THE LUNGS: its decisions depend on the film's "
                 "surroundings, not only on the lung fields.")
              + f" A probe on ten acquisition statistics separates the classes with AUC {fmt(rep['probe_auc'])} on "
              f"the whole film and {fmt(rep.get('probe_auc_model_input'))} on the model's input (0.5 = no shortcut "
              f"to learn); the worst group is the {w.get('class', '?')} films on which the "
              f"{str(w.get('half', '?')).replace('probe ', 'probe ')} with the label, recall {fmt(w.get('recall'))} "
              f"{span(w.get('ci95'))}.")
    print("(For a lung-mask model, 'outside' is the ring its dilation keeps around the lung mask, filled black; the "
          "rest of the film is black in its input already.)")


def cohort_recipes() -> list[dict]:
    """docs/external_cohort/recipes.json: the training config of each recorded measurement (from git history)."""
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "docs" / "external_cohort" / "recipes.json"
    return json.loads(path.read_text())["recipes"] if path.is_file() else []


def cohort_measurements() -> list[dict] | None:
    """docs/external_cohort/measurements.json's measurements; None in an installed package without the docs/."""
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "docs" / "external_cohort" / "measurements.json"
    return json.loads(path.read_text())["measurements"] if path.is_file() else None


def cohort_record() -> pd.DataFrame:
    """The external cohort's recorded measurements (docs/external_cohort, a copy of the record kept by whoever holds
    the cohort): not reproducible from this repository; shown, never tuned on."""
    measurements = cohort_measurements()
    if measurements is None:  # an installed package without the repository's docs/
        print("the external cohort's record is in the repository's docs/external_cohort/ (not installed)")
        return pd.DataFrame()
    rows = []
    for m in measurements:
        c = m["cohort"]
        rows.append({"date": m.get("date", ""), "commit": m["commit"], "recipe": m["experiment"],
                     "budget": m.get("profile", ""), "seed": m["seed"],
                     "cohort accuracy": c["accuracy"], "PNEUMONIA recall": c["sensitivity"],
                     "NORMAL recall": c["specificity"], "AUC": c["auc"],
                     "internal NORMAL recall": m["internal_test"]["specificity"]})
    print("recorded by whoever holds the external cohort (624 films); not reproducible from this repository")
    df = pd.DataFrame(rows)
    _display(df)
    return df
