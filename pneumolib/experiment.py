"""One experiment end to end: data, fit, evaluate, explain, and every artefact written to its run folder."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .cam import Explanation, explain
from .checkpoint import Predictor, preprocessing_for
from .config import ExperimentConfig, apply_profile
from .data import XRayData, apply_holdout, discover
from .evaluate import Scores, balanced_subset, compute_metrics, predict_samples, save_json
from .fixture import fixture_dir
from .models import WeightsUnavailable, resolve_weights
from .train import FitResult, fit, get_device

DATA_ENV = "PNEUMOLIB_DATA_DIR"


def resolve_data_dir(data_dir: str | Path | None = None) -> tuple[Path, bool]:
    """(folder, is_fixture): the given folder, else $PNEUMOLIB_DATA_DIR, else the bundled fixture."""
    chosen = data_dir or os.environ.get(DATA_ENV) or None
    if chosen in (None, "", "fixture"):
        return fixture_dir(), True
    path = Path(chosen).expanduser().resolve()
    return path, path == fixture_dir().resolve()


def default_profile(is_fixture: bool, device: str = "auto") -> str:
    if is_fixture:
        return "fixture"
    return "gpu" if get_device(device).type == "cuda" else "cpu"


def describe_profile(config: ExperimentConfig, device: str = "auto") -> str:
    sub = f", {config.max_train_images} train images per epoch" if config.max_train_images else ""
    return (f"profile {config.profile}: {config.image_size} px, {config.epochs} epochs, batch {config.batch_size}{sub}, "
            f"device {get_device(device)}")


def check_pretrained(config: ExperimentConfig, on_missing: str = "fail",
                     log: Callable[[str], Any] = print) -> tuple[ExperimentConfig, str]:
    """Returns (config to train, what was used). on_missing='random_init' trains from random init and says so
    loudly, recording pretrained=False in the saved config; 'fail' raises WeightsUnavailable."""
    if not config.pretrained:
        return config, "random init"
    try:
        path = resolve_weights(config.model)
        return config, f"ImageNet weights from {path}"
    except WeightsUnavailable as e:
        if on_missing != "random_init":
            raise
        log(f"NOT PRETRAINED: {e}. This run trains {config.name} from RANDOM INIT instead, and its saved "
            "config says pretrained=False.")
        return replace(config, pretrained=False), "random init (ImageNet weights unavailable)"


@dataclass
class RunResult:
    config: ExperimentConfig
    fit: FitResult | None
    predictor: Predictor
    data: XRayData
    test: Scores | None
    metrics: dict[str, Any]
    explanation: Explanation | None
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return self.predictor.threshold


def run_experiment(config: ExperimentConfig, data_dir: str | Path | None = None, out_dir: str | Path | None = None,
                   *, profile: str | None = None, overrides: dict[str, Any] | None = None, device: str = "auto",
                   on_missing_weights: str = "fail", reuse: bool = True, cam_per_class: int = 4,
                   focus_per_class: int = 50,
                   strict: bool = False, resume: bool = False, log: Callable[[str], Any] | None = print,
                   data: XRayData | None = None, holdout: str = "folders") -> RunResult:
    """Train (or reuse a finished run with the same training key), evaluate on test, Grad-CAM test images
    (lung-focus over focus_per_class per class; the notebooks plot the first few),
    and write checkpoint.pt, metrics.json, config.json and per-image scores into out_dir.
    holdout='early_ids' replaces the folders' test split by the earliest-numbered patients (early_id_holdout)."""
    log = log or (lambda s: None)
    root, is_fixture = resolve_data_dir(data_dir)
    profile = profile or default_profile(is_fixture, device)
    config = apply_profile(config, profile)
    if overrides:  # explicit settings (e.g. --epochs) win over the profile's
        config = replace(config, **overrides)
    config, weights_used = check_pretrained(config, on_missing_weights, log)
    data = data or discover(root, seed=config.seed)
    data = apply_holdout(data, holdout)
    log(f"{config.entry} {config.name} on {'the bundled fixture' if is_fixture else root}; "
        f"{describe_profile(config, device)}; weights: {weights_used}")
    run_dir = Path(out_dir) if out_dir else None
    dev = get_device(device)
    t0 = time.perf_counter()
    fitted, predictor = None, None
    ckpt = run_dir / "checkpoint.pt" if run_dir else None
    if reuse and ckpt and ckpt.is_file():
        old = Predictor.load(ckpt, device=dev)
        if old.config.training_key() == config.training_key() and old.extra.get("holdout", "folders") == holdout:
            predictor = old
            log(f"reusing {ckpt} (same training config); delete it to retrain")
    if predictor is None:
        fitted = fit(config, data, run_dir, device=device, log=log, strict=strict, resume=resume,
                     extra={"weights": weights_used, "holdout": holdout})
        predictor = Predictor(fitted.model, config, fitted.threshold, device=dev)
    else:
        from .evaluate import choose_threshold
        val = predict_samples(predictor.model, data["val"], predictor.preprocessing, tta=config.tta)
        predictor.threshold = choose_threshold(config.threshold, val.labels, val.probs)
        predictor.config = config
    pre = preprocessing_for(config)
    metrics: dict[str, Any] = {"experiment": config.name, "entry": config.entry, "profile": profile,
                               "data_dir": "fixture" if is_fixture else str(root), "weights": weights_used,
                               "holdout": holdout,
                               "device": str(dev), "threshold": predictor.threshold, "config": config.to_dict(),
                               "notes": list(data.notes)}
    if fitted:
        metrics.update(best_epoch=fitted.best_epoch, history=fitted.history, train_seconds=fitted.seconds,
                       train_images_per_s=fitted.train_images_per_s)
    else:  # reused: the training record travels in the checkpoint
        x = predictor.extra
        metrics.update(best_epoch=x.get("best_epoch"), history=x.get("history", []), train_seconds=x.get("seconds"),
                       train_images_per_s=x.get("train_images_per_s"), reused_checkpoint=str(ckpt))
    test = None
    if "test" in data.splits:
        test = predict_samples(predictor.model, data["test"], pre, tta=config.tta)
        metrics["test"] = compute_metrics(test, predictor.threshold, seed=config.seed)
        if config.eval_subset_per_class:
            idx = balanced_subset(test.samples, config.eval_subset_per_class, seed=config.seed)
            metrics["test_subset"] = compute_metrics(test.subset(idx), predictor.threshold, seed=config.seed)
            metrics["test_subset"]["paths"] = [str(test.samples[i].path) for i in idx]
    expl = None
    if cam_per_class and test is not None:
        # the grid shows cam_per_class images per class; the lung-focus statistic uses focus_per_class
        idx = balanced_subset(test.samples, max(cam_per_class, focus_per_class), seed=config.seed)
        expl = explain(predictor.model, [test.samples[i] for i in idx], pre, predictor.threshold)
        metrics["lung_focus"] = expl.summary()
    metrics["seconds"] = time.perf_counter() - t0
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(config.to_dict(), run_dir / "config.json")
        save_json(metrics, run_dir / "metrics.json")
        if test is not None:
            test.to_csv(run_dir / "scores_test.csv", predictor.threshold)
        if fitted:
            fitted.val_scores.to_csv(run_dir / "scores_val.csv", predictor.threshold)
    return RunResult(config, fitted, predictor, data, test, metrics, expl, run_dir, list(data.notes))


# --- comparison across runs ---------------------------------------------------------------
def comparison_rows(metrics_list: list[dict[str, Any]], split: str = "test") -> list[dict[str, Any]]:
    rows = []
    for m in metrics_list:
        t = m.get(split) or {}
        lf = m.get("lung_focus", {})
        rows.append({
            "entry": m.get("entry", ""), "name": m.get("experiment", "?"), "weights": m.get("weights", ""),
            "accuracy": t.get("accuracy", float("nan")), "sensitivity": t.get("sensitivity", float("nan")),
            "specificity": t.get("specificity", float("nan")), "auc": t.get("auc", float("nan")),
            "threshold": m.get("threshold", float("nan")), "ci95": t.get("ci95", {}),
            "focus_normal": lf.get("NORMAL", {}).get("lung_focus", float("nan")),
            "focus_pneumonia": lf.get("PNEUMONIA", {}).get("lung_focus", float("nan")),
            "minutes": (m.get("train_seconds") or float("nan")) / 60, "n": t.get("n", 0),
            "holdout": m.get("holdout", "folders"), "stress": m.get("stress"),
        })
    return rows


def _ci(r: dict[str, Any], k: str) -> str:
    lo, hi = r["ci95"].get(k, [float("nan")] * 2)
    return f"{r[k]:.3f} ({lo:.2f}-{hi:.2f})"


def format_table(rows: list[dict[str, Any]]) -> str:
    """One line per run: test metrics with bootstrap 95% intervals, threshold, lung focus, time; and the stress
    test's means when the run folder has a stress.json."""
    stressed = any(r.get("stress") for r in rows)
    head = (f"{'#':<3}{'experiment':<32}{'accuracy':>19}{'PNEUMONIA recall':>19}{'NORMAL recall':>19}{'AUC':>19}"
            f"{'thr':>6}{'focusN':>7}{'focusP':>7}{'min':>6}" + (f"{'str.acc@ext':>12}{'str.NORMAL':>11}" if stressed else ""))
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["name"] + (" [early-ID]" if r.get("holdout") == "early_ids" else "")
        line = (f"{r['entry']:<3}{name[:31]:<32}{_ci(r, 'accuracy'):>19}{_ci(r, 'sensitivity'):>19}"
                f"{_ci(r, 'specificity'):>19}{_ci(r, 'auc'):>19}{r['threshold']:>6.2f}{r['focus_normal']:>7.2f}"
                f"{r['focus_pneumonia']:>7.2f}{r['minutes']:>6.1f}")
        if stressed:
            st = r.get("stress") or {}
            line += f"{st.get('stress_accuracy_ext', float('nan')):>12.3f}{st.get('stress_specificity', float('nan')):>11.3f}"
        lines.append(line)
    lines.append("test split (early-ID: the early-ID holdout's), (bootstrap 95% CI); focus = share of Grad-CAM energy inside the lung fields; min = training "
                 "minutes" + ("; str. = mean over the stress test's shifted copies, accuracy re-weighted to 37.5% NORMAL"
                              if stressed else ""))
    return "\n".join(lines)


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / "metrics.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no metrics.json (is {run_dir} a finished run folder?)")
    m = json.loads(p.read_text())
    stress = Path(run_dir) / "stress.json"
    if stress.is_file():  # written by 'python -m pneumolib stress RUN_DIR'
        m["stress"] = json.loads(stress.read_text()).get("summary")
    return m
