"""Small helpers that keep the numbered notebooks thin."""
from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from . import plots
from .config import ExperimentConfig, diff, format_diff, previous
from .experiment import RunResult, default_profile, resolve_data_dir

FIGURE_DPI = 120
_started = time.perf_counter()  # reset by provenance(); wall_time() reports from it
_roots: dict[str, str] = {}  # absolute prefix -> what outputs print instead (see tidy)
_seed_budget: dict[str, int] = {}  # set by provenance(): the smaller budget of the seeds after the first, if any
BUDGET_FIELDS = ("epochs", "max_train_images", "image_size", "batch_size")


def setup(data_dir: str | None, profile: str | None, device: str = "auto"):
    """Resolve where the data comes from and how big the run is; say it in one line."""
    root, is_fixture = resolve_data_dir(data_dir)
    profile = profile or default_profile(is_fixture, device)
    plt.rcParams["figure.dpi"] = FIGURE_DPI
    _roots[str(root)] = root.name  # outputs name the data folder, never its absolute path
    _show_library_log()
    if is_fixture:
        print(f"No PNEUMOLIB_DATA_DIR set: using the bundled synthetic fixture ({root.name}), profile '{profile}'.")
    else:
        print(f"Data: the folder '{root.name}', profile '{profile}'.")
    return (None if is_fixture else root), profile


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


def gradcam(r, n_per_class: int = 4, title: str = "") -> None:
    """The Grad-CAM grid, then lung and heart lift per class with patient-level intervals, the mask check (with a
    gallery of masks when they were segmented, not exact), the randomisation test and ROAD faithfulness.
    `r` is a RunResult or a cam.Explanation."""
    from .cam import format_report

    e = getattr(r, "explanation", r)
    if e is None:
        print("no Grad-CAM for this run (cam_per_class=0 or no test split)")
        return
    plots.plot_cam_grid(e, n_per_class=n_per_class, title=title)
    print(format_report(e.report(per_image=False)))
    if any(m != "exact" for m in e.mask_methods):
        plots.plot_mask_gallery(e)


def fixed_image(size: int = 64) -> np.ndarray:
    """A deterministic phantom (independent of the data folder) for cells whose output is pinned."""
    from .fixture import make_phantom

    return make_phantom(np.random.default_rng(0), pneumonia=True, size=size).image


def central_focus_demo(image: np.ndarray | None = None) -> None:
    """CentralFocus on a fixed image: the figure, and numbers that pin its behaviour."""
    from .transforms import CentralFocus

    image = fixed_image() if image is None else image
    cf = CentralFocus()
    out = cf(torch.from_numpy(image).unsqueeze(0)).squeeze(0).numpy().astype(float)
    m = cf.mask(*image.shape).numpy()
    centre, edge = m >= 1, m <= 0
    print(repr(cf))
    print(f"centre pixels changed: {np.abs(out - image)[centre].mean():.2f} grey levels on average")
    print(f"periphery pixels changed: {np.abs(out - image)[edge].mean():.2f} grey levels on average")
    plots.show_central_focus(image, cf)


def runs_dir(base: str | Path, config: ExperimentConfig) -> Path:
    return Path(base) / f"{config.entry}_{config.name}"


def load_data(data_dir: str | Path | None, seed: int = 0):
    """discover() the data folder (or the fixture) and print its per-split class counts."""
    from .data import discover

    root, _ = resolve_data_dir(data_dir)
    data = discover(root, seed=seed)
    print(tidy(repr(data)))
    return data


def threshold_table(r: RunResult, extra_rules: tuple[str, ...] = ("youden", "sensitivity:0.95")) -> None:
    """Test metrics of the same model under several decision rules (the data-driven ones chosen on val)."""
    from .evaluate import compute_metrics, fit_threshold, predict_samples

    p = r.predictor
    val = predict_samples(p.model, r.data["val"], p.preprocessing, tta=r.config.tta)
    rules = {f"fixed {r.threshold:.2f} (this entry)": r.threshold, "fixed 0.50": 0.5}
    for rule in extra_rules:
        rules[f"{rule} on val"] = fit_threshold(rule, p.model, val, p.preprocessing, tta=r.config.tta)
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
    plots.plot_comparison([dict(sub, name=f"{sub['n']} images"), dict(full, name=f"full test ({full['n']})")])


def weights_status(model: str = "resnet18") -> bool:
    """Say plainly whether ImageNet weights are on this machine."""
    from .models import WeightsUnavailable, resolve_weights

    try:
        print(f"ImageNet weights found: {tidy(str(resolve_weights(model)))}")
        print("So the runs below start from ImageNet weights, as the log's did.")
        return True
    except WeightsUnavailable as e:
        print(f"ImageNet weights NOT available: {tidy(str(e))}")
        print("So the runs below train from RANDOM INIT (their saved configs say pretrained=False): they cannot "
              "confirm or refute what the log says about pretraining.")
        return False


def all_experiments(data_dir, runs: str | Path, profile: str | None, device: str = "auto",
                    seeds: Iterable[int] | str | int = (0,)) -> list[dict]:
    """The metrics of every registered experiment's first seed (see experiments_by_seed)."""
    return [ms[0] for ms in experiments_by_seed(data_dir, runs, profile, device, seeds).values()]


def lung_focus_table(metrics: list[dict]) -> None:
    """Grad-CAM lung lift (with patient-level 95% intervals) and heart/diaphragm lift per class for each run."""
    from .experiment import lung_lift_of

    def cell(v: dict, key: str) -> str:
        mean = lung_lift_of(v) if key == "lung_lift" else v.get(key, float("nan"))
        lo, hi = v.get(f"{key}_ci95", [float("nan")] * 2)
        return f"{mean:.2f} ({lo:.2f}-{hi:.2f})"

    print(f"{'#':<3}{'experiment':<36}{'lung NORMAL':>19}{'lung PNEUMONIA':>19}{'heart NORMAL':>19}"
          f"{'heart PNEUMONIA':>19}{'masks ok/failed':>17}")
    for m in metrics:
        lf = m.get("lung_focus", {})
        n, p = lf.get("NORMAL", {}), lf.get("PNEUMONIA", {})
        masks = f"{n.get('masks_passed', 0) + p.get('masks_passed', 0)}/{n.get('masks_failed', 0) + p.get('masks_failed', 0)}"
        print(f"{m['entry']:<3}{m['experiment'][:35]:<36}{cell(n, 'lung_lift'):>19}{cell(p, 'lung_lift'):>19}"
              f"{cell(n, 'heart_lift'):>19}{cell(p, 'heart_lift'):>19}{masks:>17}")
    sel = next((m["gradcam"]["selection"] for m in metrics if m.get("gradcam")), "the test films explained")
    print("lift = share of the Grad-CAM (PNEUMONIA logit) energy inside the lung mask, or the heart/diaphragm box, "
          "divided by that region's share of the image: 1.0 = no preference. Mean over films, 95% interval from "
          f"resampling patients; lung lift only over masks that passed the check. Films: {sel}.")


def compare_all(metrics: list[dict]) -> None:
    """The side-by-side table (95% intervals) and one figure for a list of runs' metrics."""
    from .experiment import comparison_rows

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
    _display(pd.DataFrame(table).set_index("experiment"))
    plots.plot_comparison([dict(m["test"], name=name(m)) for m in metrics])


# --- notebook series v2: provenance, seeds, computed verdicts, tables as DataFrames --------------------------
def tidy(text: str) -> str:
    """Text without the absolute paths of the machine that ran it: the data folder by its name, the repository as
    '.', the home folder as '~', the temporary folder as '$TMPDIR'."""
    repo = Path(__file__).resolve().parents[1]
    subs = dict(_roots)
    subs.setdefault(str(repo), ".")
    subs.setdefault(tempfile.gettempdir(), "$TMPDIR")
    subs.setdefault(str(Path.home()), "~")
    for prefix in sorted(subs, key=len, reverse=True):  # the longest prefix first: /work/main/runs before /work
        if prefix and prefix != "/":
            text = text.replace(prefix, subs[prefix])
    return text


class _NotebookHandler(logging.Handler):
    """pneumolib's log lines (training epochs, reuse notices, warnings) in the cell's output, paths tidied."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(tidy(self.format(record)) + "\n")  # the stream of the cell running now
        except Exception:  # noqa: BLE001 - a log line must never break a cell
            self.handleError(record)


def _show_library_log(level: int = logging.INFO) -> None:
    import warnings

    if not getattr(warnings.formatwarning, "_tidy", False):  # warnings name their source file: tidy that too
        plain = warnings.formatwarning

        def formatwarning(*args, **kwargs):
            return tidy(plain(*args, **kwargs))
        formatwarning._tidy = True
        warnings.formatwarning = formatwarning
    log = logging.getLogger("pneumolib")
    if not any(isinstance(h, _NotebookHandler) for h in log.handlers):
        log.addHandler(_NotebookHandler())
    log.setLevel(level)


def _display(obj) -> None:
    # whole cell texts: the claims, notes and refusals in these tables are sentences, not values to abbreviate
    with pd.option_context("display.max_colwidth", None):
        try:
            from IPython.display import display
        except ImportError:  # outside IPython: plain text
            print(obj)
            return
        display(obj)


def _fmt(v: Any, digits: int = 3) -> str:
    try:
        return "nan" if v is None or np.isnan(v) else f"{v:.{digits}f}"
    except TypeError:
        return str(v)


def _span(pair) -> str:
    return "" if pair is None else f"[{_fmt(pair[0])}, {_fmt(pair[1])}]"  # brackets: bounds may be negative


def _with_ci(v: float, ci) -> str:
    return f"{_fmt(v)} ({_fmt(ci[0], 2)}-{_fmt(ci[1], 2)})" if ci else _fmt(v)


def metrics_frame(m: dict[str, Any]) -> pd.DataFrame:
    """A split's headline metrics with their 95% intervals (by patient when the films carry patients; Wilson
    intervals too for small samples, where the percentile bootstrap collapses)."""
    from .evaluate import SMALL_N

    names = {"accuracy": "accuracy", "sensitivity": "PNEUMONIA recall", "specificity": "NORMAL recall",
             "precision": "PNEUMONIA precision", "npv": "NORMAL precision", "auc": "AUC"}
    unit = "patients" if m.get("ci95_unit") == "patient" else "images"
    rows = []
    for k, label in names.items():
        if k not in m:
            continue
        row = {"metric": label, "value": round(float(m[k]), 3)}
        ci = m.get("ci95", {}).get(k)
        row[f"95% CI (bootstrap over {unit})"] = f"{_fmt(ci[0])}-{_fmt(ci[1])}" if ci else ""
        wil = m.get("ci95_wilson", {}).get(k)
        if m.get("n", SMALL_N) < SMALL_N:
            row["95% CI (Wilson)"] = f"{_fmt(wil[0])}-{_fmt(wil[1])}" if wil else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


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


def seed_list(seeds: Iterable[int] | str | int | None) -> list[int]:
    """SEEDS as a list of ints, whether given as [0, 1, 2], '0,1,2' (papermill -p, the environment) or 0."""
    if seeds is None or seeds == "":
        return [0]
    if isinstance(seeds, int):
        return [seeds]
    if isinstance(seeds, str):
        return [int(s) for s in seeds.strip("[]() ").replace(" ", "").split(",") if s]
    return [int(s) for s in seeds]


def git_commit(repo: str | Path | None = None) -> str:
    """Short hash of HEAD, '+dirty' when the code (anything but the notebooks, whose outputs a render rewrites)
    differs from it; 'unknown' outside a git checkout."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)notebooks"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_budget(text: str | dict | None) -> dict[str, int]:
    """A training budget written 'epochs=3,max_train_images=1000' (papermill -p, the environment) as a dict; ''
    or None -> {}. Only the fields that size a run are accepted."""
    if not text:
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.isdigit():
                raise ValueError(f"seed budget {text!r}: expected NAME=INTEGER pairs such as "
                                 "'epochs=3,max_train_images=1000'")
            items.append((key, int(value)))
    bad = [k for k, _ in items if k not in BUDGET_FIELDS]
    if bad:
        raise ValueError(f"seed budget {text!r}: unknown field(s) {', '.join(bad)}; allowed: {', '.join(BUDGET_FIELDS)}")
    return {k: int(v) for k, v in items}


def budget_for_seed(seeds: list[int], seed: int) -> dict[str, int]:
    """The overrides a seed trains with: none for the first seed, the provenance cell's seed budget for the rest."""
    return dict(_seed_budget) if seeds and seed != seeds[0] else {}


def provenance(profile: str, device: str = "auto", seeds=(0,), seed_budget: str | dict | None = None) -> list[int]:
    """Print what produced this notebook's outputs (pneumolib version, git commit, profile, device, seeds, and the
    smaller budget of the seeds after the first when the machine cannot afford the full one) and start the clock
    that wall_time() reads. Returns the seeds as a list."""
    global _started, _seed_budget
    from . import __version__
    from .runtime import get_device

    _started = time.perf_counter()
    seeds = seed_list(seeds)
    _seed_budget = parse_budget(seed_budget)
    print(f"pneumolib {__version__}, commit {git_commit()}; profile {profile}; device {get_device(device)}; "
          f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}: {', '.join(map(str, seeds))}")
    if _seed_budget and len(seeds) > 1:
        print(f"seed {seeds[0]} trains with the '{profile}' profile's budget; seed(s) "
              f"{', '.join(map(str, seeds[1:]))} with a smaller one ({', '.join(f'{k}={v}' for k, v in _seed_budget.items())}),"
              " which this machine can afford: their spread understates the full budget's seed-to-seed stability")
    return seeds


def wall_time() -> None:
    """The notebook's wall time since provenance() ran."""
    print(f"wall time: {(time.perf_counter() - _started) / 60:.1f} min (from the provenance cell to here)")


def seed_dir(runs: str | Path, config: ExperimentConfig, seed: int) -> Path:
    return runs_dir(runs, config) / f"seed{seed}"


def reusable_run(runs: str | Path, config: ExperimentConfig, seed: int, profile: str,
                 overrides: dict[str, Any] | None = None) -> Path | None:
    """Another entry's finished run folder for this seed that trained exactly this config (same training key,
    holdout and profile), e.g. notebook 05's from-scratch run is notebook 04's when no ImageNet weights exist."""
    from .config import apply_profile
    from .runs import RunDir, load_metrics

    want = replace(apply_profile(replace(config, seed=seed), profile), **(overrides or {}))
    keys = {want.training_key(), replace(want, pretrained=False).training_key()}
    for d in sorted(Path(runs).glob(f"[0-9][0-9]_*/seed{seed}")):
        if not RunDir(d).is_finished():
            continue
        try:
            m = load_metrics(d)
            key = ExperimentConfig.from_dict(m["config"]).training_key()
        except (KeyError, ValueError, TypeError):
            continue
        if key in keys and m.get("profile") == profile and m.get("holdout", "folders") == "folders":
            return d
    return None


def run_seeds(config: ExperimentConfig, data_dir, runs: str | Path, profile: str | None, seeds=(0,),
              device: str = "auto", **kwargs) -> list[RunResult]:
    """Train (or reuse) one run per seed, in RUNS/NN_name/seed{S}; the seed is the config's `seed` field. Entries
    that ask for ImageNet weights train from random init when they are missing, and say so. Seeds after the first
    train with the provenance cell's seed budget when one is set. A seed whose folder is empty starts from another
    entry's checkpoint when that entry trained exactly the same config (it is then re-evaluated, not retrained)."""
    import shutil

    from .experiment import run_experiment
    from .runs import RunDir

    kwargs.setdefault("on_missing_weights", "random_init")
    kwargs.setdefault("resume", True)  # an interrupted render continues its runs from their last finished epoch
    explicit = kwargs.pop("overrides", None) or {}
    seeds = seed_list(seeds)
    if profile is None:
        _, is_fixture = resolve_data_dir(data_dir)
        profile = default_profile(is_fixture, device)
    out = []
    for seed in seeds:
        cfg = replace(config, seed=seed)
        overrides = {**budget_for_seed(seeds, seed), **explicit}
        d = seed_dir(runs, config, seed)
        if not RunDir(d).checkpoint.is_file():
            twin = reusable_run(runs, cfg, seed, profile, overrides)
            if twin is not None and twin.resolve() != d.resolve():
                d.mkdir(parents=True, exist_ok=True)
                shutil.copy2(RunDir(twin).checkpoint, RunDir(d).checkpoint)
                print(f"seed {seed}: same training config as {twin.parent.name}/{twin.name}: its checkpoint is "
                      "re-evaluated here, not retrained")
        out.append(run_experiment(cfg, data_dir, d, profile=profile, device=device, overrides=overrides or None,
                                  **kwargs))
    return out


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
        row.update({"budget": f"{c.get('epochs')} ep x {c.get('max_train_images') or 'all'} img",
                    "threshold": _fmt(m.get("threshold"), 2), "best epoch": str(m.get("best_epoch")),
                    "weights": "random init" if "random init" in str(m.get("weights", "")) else str(m.get("weights"))})
        rows.append(row)
        index.append(f"seed {(m.get('config') or {}).get('seed')}")
    n = len(ms)
    label = f"{n} seed{'s' if n != 1 else ''}"
    mean = {lab: _fmt(float(np.mean([m["test"][k] for m in ms]))) for k, lab in keys}
    rng = {lab: f"{_fmt(min(m['test'][k] for m in ms))}-{_fmt(max(m['test'][k] for m in ms))}" for k, lab in keys}
    rows += [mean, rng]
    index += [f"mean of {label}", f"range over {label}"]
    return pd.DataFrame(rows, index=index).fillna("")


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


def load_runs(entries: Iterable[str], runs: str | Path, profile: str, seeds=(0,)) -> dict[str, list[dict]]:
    """Other notebooks' finished runs (their metrics.json, per seed), for the comparisons a claim needs. Only runs
    of the same profile count; nothing is trained here. Says what it found."""
    from .config import get_config
    from .runs import load_metrics

    out: dict[str, list[dict]] = {}
    for entry in entries:
        cfg = get_config(entry)
        found = []
        for seed in seed_list(seeds):
            try:
                m = load_metrics(seed_dir(runs, cfg, seed))
            except FileNotFoundError:
                continue
            if m.get("profile") == profile:
                found.append(m)
        out[cfg.entry] = found
        seeds_found = ", ".join(str(m["config"]["seed"]) for m in found)
        print(f"entry {cfg.entry} ({cfg.name}): " + (f"seed(s) {seeds_found} loaded" if found else
              f"no finished '{profile}' run in its folder: run notebook {cfg.entry} first; claims that compare "
              "with it are not tested here"))
    return out


def experiments_by_seed(data_dir, runs: str | Path, profile: str | None, device: str = "auto",
                        seeds=(0,)) -> dict[str, list[dict]]:
    """Every registered experiment's metrics per seed: from its seed folders when they hold a finished run of the
    same training config and profile, else trained now (pretrained entries from random init without weights)."""
    from .config import REGISTRY, apply_profile
    from .experiment import run_experiment
    from .runs import load_metrics

    out: dict[str, list[dict]] = {}
    seeds = seed_list(seeds)
    for cfg in REGISTRY.values():
        out[cfg.entry] = []
        for seed in seeds:
            c = replace(cfg, seed=seed)
            d = seed_dir(runs, cfg, seed)
            extra = budget_for_seed(seeds, seed)
            try:
                m = load_metrics(d)
                same = (m.get("profile") == profile and ExperimentConfig.from_dict(m["config"]).training_key()
                        in {replace(apply_profile(c, profile), **extra).training_key(),
                            replace(apply_profile(replace(c, pretrained=False), profile), **extra).training_key()})
            except (FileNotFoundError, KeyError, ValueError):
                same = False
            if not same:
                m = run_experiment(c, data_dir, d, profile=profile, device=device, overrides=extra or None,
                                   on_missing_weights="random_init").metrics
            out[cfg.entry].append(m)
    return out


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
            row[label] = f"{_fmt(float(np.mean(v)))} ({_fmt(min(v))}-{_fmt(max(v))})"
        rows.append(row)
        index.append(f"{entry} {m0['experiment']}" + (" (random init)" if "unavailable" in str(m0.get("weights", ""))
                                                       else ""))
    print("test split: mean over seeds (range over seeds)")
    return pd.DataFrame(rows, index=index)


def log_vs_rerun(entry: str, metrics_by_seed, reference: dict[str, list] | None = None) -> None:
    """The log's claims for this entry, each with the quantity measured over all seeds, its interval and a verdict
    (pneumolib.verdicts holds the claims and the rule)."""
    from . import verdicts as V

    ms = [_metrics_of(r) for r in metrics_by_seed]
    reference = {k: [_metrics_of(r) for r in v] for k, v in (reference or {}).items()}
    rows = []
    # the claim column quotes the log (entries 01-09) or, for the recommended recipe, its own hypothesis
    for r in V.judge_entry(entry, ms, reference):
        rows.append({"claim": f"\"{r['claim']}\"", "measured": r["quantity"], "holds if": r["claimed"],
                     "mean": _fmt(r["mean"]), "range over seeds": _span(r["range"]), "interval": _span(r["interval"]),
                     "seeds": r["n"], "verdict": r["verdict"], "note": r["note"]})
    n = len(ms)
    print(f"{n} seed{'s' if n != 1 else ''}. Verdict: 'holds' when the whole interval is on the claimed side, "
          "'does not hold' when it is all on the other side, else 'cannot tell at this n'. Interval: the envelope "
          "of the seeds' 95% intervals (bootstrap by patient, Wilson for small samples); without one, the range "
          f"over {V.MIN_SEEDS} or more seeds.")
    _display(pd.DataFrame(rows).set_index("claim"))


def inference_paths(results) -> None:
    """Notebook 04: each seed's model fed the test films four ways (drift.compare_inference); the rows are kept in
    the run's metrics under 'inference_paths' for the verdicts, and shown as one table."""
    from . import drift
    from .verdicts import CHECKPOINT_PATH, LOG_PATH

    table = []
    for r in results:
        size = r.predictor.preprocessing.image_size
        test = r.data["test"]
        rows = drift.compare_inference(r.predictor, test, {
            CHECKPOINT_PATH: None,
            LOG_PATH: drift.log_entry4_inference(size),
            "ImageNet Normalize at inference only": drift.imagenet_normalised_inference(size),
            "1 grey channel into the 3-channel model": drift.single_channel_inference(size),
        })
        n_normal = sum(s.label == 0 for s in test)
        r.metrics["inference_paths"] = {row["inference"]: dict(row, n=len(test), n_normal=n_normal) for row in rows}
        for row in rows:
            shown = {"seed": r.config.seed, "inference": row["inference"]}
            if "error" in row:
                shown["refused"] = tidy(row["error"])
            else:
                shown.update({k: round(v, 3) for k, v in row.items() if k not in ("inference",) and v is not None})
            table.append(shown)
    _display(pd.DataFrame(table).set_index(["seed", "inference"]).fillna(""))


def cam_table(expl) -> pd.DataFrame:
    """Grad-CAM per class of an Explanation as lifts (the region's share of the heatmap over its share of the image:
    1 = what a uniform heatmap scores), with 95% intervals by patient when the Explanation provides them."""
    from .verdicts import HEART_BOX_AREA, lift

    rows = {}
    for cls, s in expl.summary().items():
        lung = lift(s, "lung_lift", "lung_focus", "lung_area")
        heart = lift(s, "heart_lift", "heart_box", HEART_BOX_AREA)
        rows[cls] = {"films": s["n"],
                     "lung lift": _with_ci(lung.value, (lung.lo, lung.hi) if lung.has_interval else None),
                     "heart/diaphragm lift": _with_ci(heart.value, (heart.lo, heart.hi) if heart.has_interval else None)}
    print("lift = the region's share of the heatmap / its share of the image (1 = a uniform heatmap)")
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


def stress_seeds(results, data_dir=None) -> dict[str, Any]:
    """The stress test of every seed's run (cached in its run folder); each run's metrics keep the summary under
    'stress', for the verdicts."""
    from .stress import stress_run

    reports = {}
    for r in results:
        rep = stress_run(r.run_dir, data_dir)
        r.metrics["stress"] = rep.summary()
        reports[f"{r.config.name}, seed {r.config.seed}"] = rep
    return reports


def ablation_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """protocol.score_steps rows (or matched_baseline's) as one table: random split, stress test, early-ID holdout."""
    out = {}
    if not rows:
        return pd.DataFrame()
    for r in rows:
        f, s, e = r["folders"], r.get("stress") or {}, r.get("early_ids") or {}
        out[r["name"]] = {
            ("random split", "accuracy"): f["accuracy"], ("random split", "NORMAL recall"): f["specificity"],
            ("random split", "AUC"): f["auc"],
            ("stress test", "acc@ext"): s.get("stress_accuracy_ext"), ("stress test", "NORMAL recall"): s.get("stress_specificity"),
            ("stress test", "AUC"): s.get("stress_auc"),
            ("early-ID holdout", "acc@ext"): e.get("accuracy_ext"), ("early-ID holdout", "NORMAL recall"): e.get("specificity"),
            ("early-ID holdout", "AUC"): e.get("auc")}
    return pd.DataFrame(out).T.astype(float).round(3).dropna(axis=1, how="all")  # e.g. no early-ID run


def budget(config: ExperimentConfig, profile: str) -> None:
    """The training budget of a config under a profile, in words."""
    from .config import apply_profile

    c = apply_profile(config, profile)
    print(f"{c.name} under profile {profile}: {c.image_size} px, {c.epochs} epochs, batch {c.batch_size}, "
          f"{c.max_train_images or 'all'} training images per epoch")


def holdout_list(holdouts: str | Iterable[str]) -> tuple[str, ...]:
    """The ablation's protocols as a tuple ('folders,early_ids' from papermill or the environment; 'none' or ''
    skips the ablation); says what this render leaves out."""
    items = [h for h in (holdouts.replace(" ", "").split(",") if isinstance(holdouts, str) else holdouts) if h]
    if items in ([], ["none"]):
        print("the ablation was not trained in this render (HOLDOUTS=none): seven more runs than this machine's time "
              "allowed; its table, the protocol ranking and their figure are empty here")
        return ()
    bad = [h for h in items if h not in ("folders", "early_ids")]
    if bad or "folders" not in items:
        raise ValueError(f"HOLDOUTS {holdouts!r}: 'folders' plus optionally 'early_ids', or 'none' "
                         f"(got {', '.join(bad) or 'no folders'})")
    if "early_ids" not in items:
        print("this render scores the steps on the random split and the stress test only: the early-ID holdout was "
              "not trained (HOLDOUTS), so its columns are empty and no protocol is ranked against it")
    return tuple(items)


def ablation(data_dir, runs: str | Path, profile: str, device: str = "auto",
             holdouts: str | Iterable[str] = ("folders", "early_ids")) -> list[dict[str, Any]]:
    """Notebook 10's ablation rows (protocol.score_steps) under the chosen protocols; [] when HOLDOUTS skips it."""
    from .protocol import score_steps

    chosen = holdout_list(holdouts)
    return score_steps(data_dir, runs, profile=profile, device=device, holdouts=chosen) if chosen else []


def protocols(rows: list[dict[str, Any]]):
    """How each protocol ranks the ablation steps, and the figure; a line when there is no ablation."""
    from .protocol import plot_protocols, protocol_agreement

    if not rows:
        print("no ablation in this render: nothing to rank")
        return None
    print(protocol_agreement(rows))
    return plot_protocols(rows)


def matched_baseline(config: ExperimentConfig, data_dir, runs: str | Path, profile: str, device: str = "auto",
                     train: bool = True) -> dict[str, Any] | None:
    """Notebook 10's anchor pair at equal budget: the log's baseline trained with `config`'s budget (or reused from
    its folder), shown as an ablation row; None, said in one line, when this render does not train it."""
    from .protocol import budget_of, matched_baseline as train_matched

    if not train:
        b = budget_of(config, profile)
        print(f"not trained in this render (MATCHED=False): the log's baseline at the recipe's budget "
              f"({b['epochs']} epochs of {b['max_train_images'] or 'all'} images at {b['image_size']} px) is one more "
              "full-length run; the claims that compare with it are marked not tested")
        return None
    matched = train_matched(data_dir, runs, profile=profile, device=device)
    budget(config, profile)
    _display(ablation_frame([matched]))
    return matched


def matched_stress(matched: dict[str, Any] | None, data_dir=None) -> dict[str, Any]:
    """The matched baseline's stress report keyed for stress_table, or nothing when it was not trained."""
    from .stress import stress_run

    return {"log's baseline, same budget": stress_run(matched["run_dir"], data_dir)} if matched else {}
