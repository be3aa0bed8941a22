"""Small helpers that keep the numbered notebooks thin."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import plots
from .config import ExperimentConfig, diff, format_diff, previous
from .experiment import RunResult, default_profile, resolve_data_dir


def setup(data_dir: str | None, profile: str | None, device: str = "auto"):
    """Resolve where the data comes from and how big the run is; say it in one line."""
    root, is_fixture = resolve_data_dir(data_dir)
    profile = profile or default_profile(is_fixture, device)
    plt.rcParams["figure.dpi"] = 72  # keeps committed notebooks small; X-ray tiles compress poorly
    if is_fixture:
        print(f"No PNEUMOLIB_DATA_DIR set: using the bundled synthetic fixture ({root.name}), profile '{profile}'.")
    else:
        print(f"Data: {root}, profile '{profile}'.")
    return (None if is_fixture else root), profile


def describe(config: ExperimentConfig) -> None:
    """What this entry changes from the previous one, and the training transform per class."""
    print(f"{config.entry} {config.name}: {config.title}")
    print(f"changes from the previous entry: {format_diff(diff(previous(config), config))}")
    for cls, spec in config.train_transforms:
        print(f"  {cls:<9} training transform: {spec}")
    print(f"  model {config.model}, {config.in_channels} input channel(s), pretrained={config.pretrained}, "
          f"loss {config.loss}, decision rule {config.threshold}")


def report(r: RunResult, split: str = "test") -> None:
    """Classification report with 95% bootstrap intervals, then confusion matrix and score histogram."""
    from .evaluate import format_metrics

    m = r.metrics[split]
    print(f"{r.config.name}: {split} split, {m['n']} images")
    print(format_metrics(m))
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
        print(f"checkpoint reused: {m.get('reused_checkpoint')}; curves from its training record")
    if m.get("train_seconds"):
        print(f"training took {m['train_seconds'] / 60:.1f} min ({m['train_images_per_s']:.0f} train images/s)")
    plots.plot_history(m["history"], m["best_epoch"])


def gradcam(r: RunResult, n_per_class: int = 4) -> None:
    """The Grad-CAM grid and the lung-focus score per class."""
    e = r.explanation
    plots.plot_cam_grid(e, n_per_class=n_per_class)
    for cls, s in e.summary().items():
        print(f"{cls:<9} lung focus {s['lung_focus']:.2f} (a uniform heatmap would score {s['lung_area']:.2f}); "
              f"heart/diaphragm box {s['heart_box']:.2f} (uniform: 0.18); n = {s['n']}")
    print(f"lung masks: {', '.join(sorted(set(e.mask_methods)))}")


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
    print(data)
    return data


def threshold_table(r: RunResult, extra_rules: tuple[str, ...] = ("youden", "sensitivity:0.95")) -> None:
    """Test metrics of the same model under several decision rules (the data-driven ones chosen on val)."""
    from .evaluate import choose_threshold, compute_metrics, predict_samples

    val = predict_samples(r.predictor.model, r.data["val"], r.predictor.preprocessing, tta=r.config.tta)
    rules = {f"fixed {r.threshold:.2f} (this entry)": r.threshold, "fixed 0.50": 0.5}
    for rule in extra_rules:
        rules[f"{rule} on val"] = choose_threshold(rule, val.labels, val.probs)
    print(f"{'decision rule':<32}{'thr':>6}{'acc':>7}{'NORMAL rec':>11}{'PNEU rec':>9}")
    for name, t in rules.items():
        m = compute_metrics(r.test, t, n_boot=0)
        print(f"{name:<32}{t:>6.3f}{m['accuracy']:>7.3f}{m['specificity']:>11.3f}{m['sensitivity']:>9.3f}")


def subset_vs_full(r: RunResult) -> None:
    """The log's 10-image report next to the full test split, each with 95% bootstrap intervals."""
    from .evaluate import format_metrics

    sub, full = r.metrics["test_subset"], r.metrics["test"]
    print(f"--- {sub['n']} images ({sub['n_per_class']}) ---")
    print(format_metrics(sub))
    print(f"\n--- full test split, {full['n']} images ---")
    print(format_metrics(full))
    plots.plot_comparison([dict(sub, name=f"{sub['n']} images"), dict(full, name=f"full test ({full['n']})")])


def weights_status(model: str = "resnet18") -> bool:
    """Say plainly whether ImageNet weights are on this machine."""
    from .models import WeightsUnavailable, resolve_weights

    try:
        print(f"ImageNet weights found: {resolve_weights(model)}")
        return True
    except WeightsUnavailable as e:
        print(f"ImageNet weights NOT available: {e}")
        print("So this run trains from RANDOM INIT: it cannot confirm or refute what the log says about pretraining.")
        return False


def all_experiments(data_dir, runs: str | Path, profile: str | None, device: str = "auto") -> list[dict]:
    """The metrics of every registered experiment: read from its run folder when that holds a finished run of the
    same training config, else trained now (the pretrained entries from random init when weights are missing)."""
    from .config import REGISTRY, apply_profile
    from .experiment import load_metrics, run_experiment

    out = []
    for cfg in REGISTRY.values():
        d = runs_dir(runs, cfg)
        try:
            m = load_metrics(d)
            same = (ExperimentConfig.from_dict(m["config"]).training_key()
                    == apply_profile(cfg, m.get("profile", profile)).training_key())
        except (FileNotFoundError, KeyError, ValueError):
            same = False
        if not (same and (profile is None or m.get("profile") == profile)):
            m = run_experiment(cfg, data_dir, d, profile=profile, device=device, log=None,
                               on_missing_weights="random_init").metrics
        out.append(m)
    return out


def lung_focus_table(metrics: list[dict]) -> None:
    """Grad-CAM lung focus per class for each run, against what a uniform heatmap would score."""
    print(f"{'#':<3}{'experiment':<36}{'NORMAL':>8}{'PNEUMONIA':>11}{'uniform':>9}")
    for m in metrics:
        lf = m.get("lung_focus", {})
        n, p = lf.get("NORMAL", {}), lf.get("PNEUMONIA", {})
        print(f"{m['entry']:<3}{m['experiment'][:35]:<36}{n.get('lung_focus', float('nan')):>8.2f}"
              f"{p.get('lung_focus', float('nan')):>11.2f}{n.get('lung_area', float('nan')):>9.2f}")
    print("lung focus = share of the Grad-CAM energy inside the lung mask, over the first 50 test images per class; "
          "'uniform' = the lung mask's share of the image (what a flat heatmap scores)")


def compare_all(metrics: list[dict]) -> None:
    """The side-by-side table (95% intervals) and one figure for a list of runs' metrics."""
    from .experiment import comparison_rows, format_table

    print(format_table(comparison_rows(metrics)))
    # entries that asked for ImageNet weights but trained without them say so in the figure too
    rows = [dict(m["test"], name=f"{m['entry']} {m['experiment']}"
                 + (" (random init)" if "unavailable" in str(m.get("weights", "")) else ""))
            for m in metrics]
    plots.plot_comparison(rows)
