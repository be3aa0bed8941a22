"""One experiment end to end: data, fit, evaluate, explain, and every artefact written to its run folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..analysis.cam import Explanation
from ..analysis.evaluate import Scores, balanced_subset, compute_metrics, fit_threshold, predict_samples
from ..core.config import ExperimentConfig
from ..core.distributed import SINGLE, World, main_first, rank_device
from ..core.io import OutputError, Protected, ensure_writable_dir, save_json
from ..core.runs import RunDir, clear_training, foreign_files, writer_lock
from ..core.runtime import get_device
from ..data.dataset import XRayData, apply_holdout, fingerprint, prepare, prescan, resolve_data_dir, summarise_errors
from ..models.checkpoint import CheckpointError, Predictor, preprocessing_for, save_checkpoint
from ..studies.comparison import compare_runs, comparison_rows, format_table  # noqa: F401 (re-exported)
from ..studies.ensemble import train_members
from ..studies.run_config import (  # noqa: F401 (adopt_twin, check_pretrained, data_fingerprint: re-exported)
    adopt_twin,
    check_pretrained,
    data_fingerprint,
    default_profile,
    describe_profile,
    resolve_config,
    sibling_member,
    training_differences,
)
from ..studies.target_maps import explain_code, lung_focus, other_targets
from ..training.fit import FitResult, fit

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RunSettings:
    """How one experiment is run (not what it trains: that is the config). Passed as one object, or as keyword
    arguments of run_experiment, which are checked against these fields.

    Attributes:
        profile: run size (default: fixture for the fixture, else cpu or gpu by device).
        overrides: config fields changed on top of the profile (a series' budget).
        device: auto | cpu | cuda | mps.
        on_missing_weights: 'fail' or 'random_init' (loudly labelled) when ImageNet weights are missing.
        reuse: reuse a finished run folder of the same training (training_differences).
        cam_per_class: Grad-CAM grid films per class (0: no Grad-CAM).
        focus_per_class: films per class the lung-focus lift is measured on.
        strict: refuse to start on any pre-scan finding.
        resume: continue an interrupted run; refuse a folder of another training.
        data: an already prepared XRayData (its cache serves every prediction).
        holdout: 'folders' or 'early_ids'.
        command: the CLI line recorded in metrics.json.
        world: the torchrun process group.
        workers: DataLoader processes.
        log_findings: log the pre-scan's findings.
        replace_other: retrain a folder that holds another training (else CheckpointError).
    """

    profile: str | None = None
    overrides: dict[str, Any] | None = None
    device: str = "auto"
    on_missing_weights: str = "fail"
    reuse: bool = True
    cam_per_class: int = 4
    focus_per_class: int = 50
    strict: bool = False
    resume: bool = False
    data: XRayData | None = None
    holdout: str = "folders"
    command: str | None = None
    world: World = SINGLE
    workers: int = 0
    log_findings: bool = True
    replace_other: bool = True


def run_experiment(
    config: ExperimentConfig,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    settings: RunSettings | None = None,
    **options: Any,
) -> RunResult:
    """Train (or reuse a finished run of the same training: training_differences), evaluate on test, Grad-CAM test
    images (lung-focus over focus_per_class per class; the notebooks plot the first few), and write
    checkpoint.pt, metrics.json, config.json and per-image scores into out_dir.

    Args:
        config: the experiment.
        data_dir: a Kaggle-layout folder (None: the bundled fixture).
        out_dir: the run folder (None: nothing written).
        settings: how to run it (RunSettings); keyword OPTIONS replace its fields (an unknown name is a TypeError).

    Returns:
        The RunResult (config as trained, fit, predictor, data, test scores, metrics, Grad-CAM).

    holdout='early_ids' replaces the folders' test split by the earliest-numbered patients (early_id_holdout).
    The data folder is pre-scanned once here (data.prepare); training, evaluation and Grad-CAM all use its cleaned
    sample lists and its decoded films (an unreadable test image is skipped and listed in metrics['skipped_files']).
    With resume=True, a finished run folder of another training is refused (CheckpointError naming what differs)
    instead of retrained. A folder that holds another training is retrained from scratch with its old checkpoint and
    every record of the old model removed (runs.clear_training), or refused (CheckpointError) with
    replace_other=False (the CLI without --retrain). Under torchrun (`world`, training.fit): rank 0 pre-scans first
    (filling the disk cache the others then read), every rank trains, and only rank 0 evaluates and writes; the other
    ranks return a RunResult without them."""
    s = replace(settings or RunSettings(), **options)
    root, is_fixture = resolve_data_dir(data_dir)
    profile = s.profile or default_profile(is_fixture, s.device)
    config, weights_used = resolve_config(config, profile, s.overrides, s.on_missing_weights)
    if out_dir is not None and s.world.is_main:  # before any work: an unwritable --out must not cost an epoch
        # a data folder is data through and through (a manifest's image root may hold the user's project: its
        # manifest file is what the CLI protects)
        ensure_writable_dir(out_dir, protect=Protected(folders=[root] if isinstance(root, Path) else []))
        with writer_lock(out_dir):  # one writer per run folder: a second training there is refused at once
            check_run_folder(out_dir, s.replace_other)
            return _run(config, root, is_fixture, profile, weights_used, Path(out_dir), s)
    return _run(config, root, is_fixture, profile, weights_used, Path(out_dir) if out_dir else None, s)


def check_run_folder(run_dir: str | Path, replace_other: bool) -> None:
    """Refuse a run folder holding files pneumolib did not write: always when a training would overwrite them (a
    user's own config.json or MODEL_CARD.md), otherwise unless REPLACE_OTHER (--retrain), which trains beside them
    and removes only pneumolib's own files."""
    colliding, other = foreign_files(run_dir)
    if colliding:
        raise OutputError(
            f"{run_dir}: holds {', '.join(colliding)} that pneumolib did not write, and a training "
            "would overwrite them; give another --out (or move them away)"
        )
    if other and not replace_other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise OutputError(
            f"{run_dir}: holds files pneumolib did not write ({shown}); give an empty folder as --out, "
            "or --retrain to train beside them (only pneumolib's own files are replaced)"
        )


def _run(
    config: ExperimentConfig,
    root: Path,
    is_fixture: bool,
    profile: str,
    weights_used: str,
    run_dir: Path | None,
    s: RunSettings,
) -> RunResult:
    """run_experiment's work, once the run folder (if any) is checked and locked."""
    data = _run_data(root, config, s)
    data_fp = fingerprint(data)
    logger.info(
        "%s %s on %s; %s; weights: %s",
        config.entry,
        config.name,
        "the bundled fixture" if is_fixture else root.name,
        describe_profile(config, s.device),
        weights_used,
    )
    t0 = time.perf_counter()
    source = None if is_fixture else root
    fitted, predictor, val = _train_or_reuse(config, data, run_dir, data_fp, weights_used, s, source)
    if predictor is None:  # a rank other than 0: rank 0 evaluates and writes
        return RunResult(config, fitted, None, data, None, {}, None, run_dir, list(data.notes))
    predictor = Predictor.sharing(predictor, data.resources)  # the data's decoded films serve every prediction below
    metrics = _run_record(config, predictor, fitted, data, data_fp, s, profile, root, is_fixture, weights_used, run_dir)
    # the kept checkpoint on validation at its threshold: the series' budget rule and collapse flag read it (point
    # values, the confusion matrix and Wilson intervals; no bootstrap: every run pays for this one)
    metrics["val"] = compute_metrics(val, predictor.threshold, n_boot=0, seed=config.seed)
    test = _evaluate_test(config, predictor, data, run_dir, metrics) if "test" in data.splits else None
    expl = None
    if s.cam_per_class and test is not None:
        expl = lung_focus(config, predictor, test, run_dir, data_fp, s, fresh=fitted is not None)
        metrics["lung_focus"] = expl.summary()  # per class: lung/heart lift with intervals, masks passed/failed
        metrics["gradcam"] = expl.report(per_image=False)
        n, seen = max(s.cam_per_class, s.focus_per_class), {"data": data_fp, "holdout": s.holdout}
        by_target, checks, key = other_targets(
            config, predictor, test, run_dir, n, seen, explain_code, fitted is not None, s.cam_per_class
        )
        if by_target:  # only where the entry's claims read maps of another class (entry 09's NORMAL-target rows)
            metrics["lung_focus_by_target"] = {expl.target: metrics["lung_focus"], **by_target}
            metrics["gradcam_by_target"] = checks
            metrics["lung_focus_by_target_key"] = key
    metrics["seconds"] = time.perf_counter() - t0
    if run_dir:
        _write_run(run_dir, config, metrics, test, fitted, predictor.threshold)
        metrics["run_dir"] = str(Path(run_dir).resolve())  # as load_metrics gives it: the verdicts read its films
    return RunResult(config, fitted, predictor, data, test, metrics, expl, run_dir, list(data.notes))


def _run_data(root: Path, config: ExperimentConfig, s: RunSettings) -> XRayData:
    """The run's data: pre-scanned once (rank 0 first under torchrun), with the holdout asked for."""
    if s.data is None:
        with main_first(s.world):
            return prepare(
                root,
                seed=config.seed,
                holdout=s.holdout,
                image_size=config.view,
                strict=s.strict,
                logger=logger if s.world.is_main and s.log_findings else None,
            )
    data = s.data if s.data.holdout == s.holdout else apply_holdout(s.data, s.holdout)
    if data.hygiene is None:  # given data not pre-scanned yet
        data = prescan(data, config.view, strict=s.strict)
        if s.log_findings:
            data.log_findings(logger)
    return data


def _member_runner(source: Path | None, s: RunSettings, data: XRayData, data_fp: str):
    """How a seed ensemble's member is trained or reused (train_members' RUN_MEMBER): with this run's data and
    settings, no Grad-CAM; a member another ensemble seed trained already is adopted, not trained again."""

    def member(cfg, out):
        sibling_member(out, cfg, s.holdout, data_fp)
        return run_experiment(cfg, source, out, settings=replace(s, data=data, cam_per_class=0))

    return member


def _train_or_reuse(
    config: ExperimentConfig,
    data: XRayData,
    run_dir: Path | None,
    data_fp: str,
    weights_used: str,
    s: RunSettings,
    source: Path | None,
) -> tuple[FitResult | None, Predictor | None]:
    """(the fit, or None when a finished run of the same training is reused; the predictor, or None on ranks > 0;
    the validation films' scores by the kept checkpoint, or None on ranks > 0). SOURCE: the members' data folder."""
    dev = rank_device(get_device(s.device), s.world)
    predictor, differs = None, []
    ckpt = RunDir(run_dir).checkpoint if run_dir else None
    if ckpt and ckpt.is_file():
        differs = training_differences(run_dir, config, s.holdout, data_fp)
        if not differs and s.reuse:
            predictor = Predictor.load(ckpt, device=dev)
            logger.info(
                "reusing %s (same training config, holdout and data; trained at commit %s); delete it to retrain",
                ckpt,
                predictor.extra.get("commit", "not recorded"),
            )
        elif differs and s.resume:
            raise CheckpointError(
                f"{ckpt}: --resume refused, the finished run there is another training "
                f"({'; '.join(differs)}); use another --out, or delete it to retrain"
            )
        elif differs and not s.replace_other:
            raise CheckpointError(
                f"{run_dir}: holds another training ({'; '.join(differs)}); use another --out, or "
                "--retrain to replace it and its records"
            )
    _clear_old_training(run_dir, predictor is None and not s.resume and ckpt is not None and ckpt.is_file(), differs, s)
    if predictor is not None:
        if s.world.is_main:
            return None, predictor, _refit_threshold(config, predictor, data, ckpt)
        return None, None, None
    if config.members > 1:
        return None, *train_members(config, data, run_dir, _member_runner(source, s, data, data_fp), dev)
    fitted = fit(
        config,
        data,
        run_dir,
        device=s.device,
        strict=s.strict,
        resume=s.resume,
        extra={"weights": weights_used, "holdout": s.holdout},
        world=s.world,
        workers=s.workers,
    )
    if not s.world.is_main:
        return fitted, None, None
    predictor = Predictor(fitted.model, config, fitted.threshold, device=dev)
    predictor.extra = {"ood": fitted.ood, "val_calibration": fitted.calibration}
    return fitted, predictor, fitted.val_scores


def _clear_old_training(run_dir: Path | None, clear: bool, differs: list[str], s: RunSettings) -> None:
    """Training anew in RUN_DIR (CLEAR): the old model's checkpoint and records must not outlive it. Every rank passes
    the barrier; rank 0 alone clears."""
    with main_first(s.world):
        if clear and s.world.is_main:
            gone = clear_training(run_dir)
            logger.warning(
                "%s: %s; removed its checkpoint and records (%s)",
                run_dir,
                f"held another training ({'; '.join(differs)})" if differs else "retraining",
                ", ".join(gone),
            )


def _refit_threshold(config: ExperimentConfig, predictor: Predictor, data: XRayData, ckpt: Path) -> Scores:
    """A reused checkpoint under this run's decision rule: the threshold fitted again on validation; when it moves,
    the checkpoint in this folder is rewritten with this run's config and threshold (the stress test and 'predict'
    read them). Returns the validation scores it read."""
    stored = predictor.threshold
    val = predict_samples(
        predictor.model, data["val"], predictor.preprocessing, tta=config.tta, resources=data.resources
    )
    predictor.threshold = fit_threshold(
        config.threshold, predictor.model, val, predictor.preprocessing, tta=config.tta, resources=data.resources
    )
    predictor.config = config
    if predictor.threshold != stored:
        save_checkpoint(ckpt, predictor.model, config, predictor.threshold, predictor.extra)
    return val


def _run_record(
    config: ExperimentConfig,
    predictor: Predictor,
    fitted: FitResult | None,
    data: XRayData,
    data_fp: str,
    s: RunSettings,
    profile: str,
    root: Path,
    is_fixture: bool,
    weights_used: str,
    run_dir: Path | None,
) -> dict[str, Any]:
    """metrics.json's fields about the run itself (what trained, on what, where, and its training record)."""
    metrics: dict[str, Any] = {
        "experiment": config.name,
        "entry": config.entry,
        "profile": profile,
        "data_dir": "fixture" if is_fixture else str(root),
        "weights": weights_used,
        "holdout": s.holdout,
        "data_fingerprint": data_fp,
        "device": str(predictor.device),
        "threshold": predictor.threshold,
        "config": config.to_dict(),
        "notes": list(data.notes),
        "command": s.command,
        "data_counts": data.counts(),
        "skipped_files": summarise_errors(data.bad_files, per_kind=20),
        "n_skipped_files": len(data.bad_files),
    }
    if fitted:
        metrics.update(
            best_epoch=fitted.best_epoch,
            history=fitted.history,
            train_seconds=fitted.seconds,
            train_images_per_s=fitted.train_images_per_s,
            trained_commit=fitted.commit,
        )
    else:  # reused: the training record travels in the checkpoint
        x = predictor.extra
        metrics.update(
            best_epoch=x.get("best_epoch"),
            history=x.get("history", []),
            train_seconds=x.get("seconds"),
            train_images_per_s=x.get("train_images_per_s"),
            reused_checkpoint=str(RunDir(run_dir).checkpoint) if run_dir and "ensemble" not in x else None,
            ensemble=x.get("ensemble"),
            trained_commit=x.get("commit", "not recorded (trained before commits were kept)"),
        )
    return metrics


def _evaluate_test(
    config: ExperimentConfig, predictor: Predictor, data: XRayData, run_dir: Path | None, metrics: dict[str, Any]
) -> Scores:
    """The test split's scores, its metrics (and the last epoch's, and the 10-image subset's) into METRICS."""
    pre = preprocessing_for(config)
    test = predict_samples(predictor.model, data["test"], pre, tta=config.tta, resources=data.resources)
    metrics["test"] = compute_metrics(test, predictor.threshold, seed=config.seed)
    metrics["test_last_epoch"] = last_epoch_metrics(
        predictor, run_dir, data["test"], metrics.get("history"), config, metrics.get("best_epoch")
    )
    if config.eval_subset_per_class:
        idx = balanced_subset(test.samples, config.eval_subset_per_class, seed=config.seed)
        metrics["test_subset"] = compute_metrics(test.subset(idx), predictor.threshold, seed=config.seed)
        metrics["test_subset"]["paths"] = [str(test.samples[i].path) for i in idx]
    return test


def _write_run(
    run_dir: Path,
    config: ExperimentConfig,
    metrics: dict[str, Any],
    test: Scores | None,
    fitted: FitResult | None,
    threshold: float,
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(run_dir)
    save_json(config.to_dict(), run.config)
    save_json(metrics, run.metrics)
    if test is not None:
        test.to_csv(run.scores_test, threshold)
    if fitted:
        fitted.val_scores.to_csv(run.scores_val, threshold)


def last_epoch_metrics(
    predictor: Predictor, run_dir, samples, history, config: ExperimentConfig, best_epoch
) -> dict[str, Any] | None:
    """Test metrics of the last epoch's weights at the checkpoint's threshold (RUN_DIR/last_epoch.pt, kept by fit
    when another epoch was kept), so a reader sees what keeping the best epoch changed; the kept epoch's own
    metrics when it was the last; None for a run trained before last_epoch.pt existed."""
    import copy

    import torch

    last = (history or [{}])[-1].get("epoch")
    if last is not None and last == best_epoch:
        return {"epoch": last, "same_as_kept": True}
    path = RunDir(run_dir).last_epoch if run_dir else None
    if path is None or not path.is_file():
        return None
    try:  # weights only: a file that carries code, or is not ours, is reported and skipped
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = copy.deepcopy(predictor.model)
        model.load_state_dict(state["state_dict"])
        epoch = int(state["epoch"])
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not a weights file
        logger.warning("%s: not used (not the last epoch's weights: %s)", path, str(e).splitlines()[0][:160])
        return None
    scores = predict_samples(model, samples, predictor.preprocessing, tta=config.tta, resources=predictor.resources)
    return dict(compute_metrics(scores, predictor.threshold, seed=config.seed), epoch=epoch)


# --- comparison across runs ---------------------------------------------------------------
