"""Finished runs served as one checkpoint: fitted on their validation split, saved, scored on the test split.

The members' shared data is rebuilt (their holdout, the first member's seed), and the validation films a member
trained on (no usable val/ folder: each seed split its own) are counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..analysis.evaluate import Scores, compute_metrics, predict_samples
from ..core.io import CheckpointError, DataError
from ..core.runs import MEMBERS, RunDir
from ..core.stats import spread
from ..data.dataset import XRayData, apply_holdout, discover, prepare, resolve_data_dir
from ..models.checkpoint import Predictor, save_checkpoint
from ..training.ensemble import build_ensemble, validation_overlap

log = logging.getLogger(__name__)


@dataclass
class RunEnsemble:
    """What 'ensemble' built.

    Attributes:
        paths: the members' checkpoint files.
        root: the data source the members trained on.
        data: its splits (the first member's seed and the members' holdout).
        predictor: the ensemble, as served.
        record: what was fitted (extra['ensemble']: seeds, temperature, threshold rule, validation calibration,
            the holdout, and per member seed the validation films it trained on).
        test: the test split's metrics, or None without a test split.
    """

    paths: list[Path]
    root: Any
    data: XRayData
    predictor: Predictor
    record: dict[str, Any]
    test: dict[str, Any] | None


def _members_data(paths: list[Path], data_dir) -> tuple[Any, XRayData, Predictor]:
    """The data the members trained on: their shared holdout, the first member's val split."""
    root, _ = resolve_data_dir(data_dir)
    members = [Predictor.load(p) for p in paths]
    holdouts = {m.extra.get("holdout", "folders") for m in members}
    if len(holdouts) > 1:
        raise CheckpointError(
            f"{paths[0]}: the members were trained with different holdouts ({', '.join(sorted(holdouts))})"
        )
    first = members[0]  # its seed rebuilds the same val split when val/ is pooled with train/
    data = prepare(root, seed=first.config.seed, holdout=holdouts.pop(), image_size=first.preprocessing.view)
    if "val" not in data.splits or not data["val"]:
        raise DataError(f"{root}: no validation images to fit the temperature and threshold on")
    return root, data, first


def ensemble_runs(checkpoints: list, out: str | Path, data_dir=None, *, temperature: bool = True) -> RunEnsemble:
    """Build the ensemble of CHECKPOINTS (files or run folders; one = temperature scaling only) on the validation
    split of the data they trained on (DATA_DIR; default: $PNEUMOLIB_DATA_DIR, else the fixture), save it to OUT,
    then score it on the test split."""
    paths = [RunDir(c).checkpoint if Path(c).is_dir() else Path(c) for c in checkpoints]
    root, data, first = _members_data(paths, data_dir)
    pred = build_ensemble(paths, data["val"], temperature=temperature, resources=data.resources)
    rec = pred.extra["ensemble"]
    rec["holdout"] = data.holdout
    others = sorted(set(rec["seeds"]) - {first.config.seed})
    overlap = validation_overlap(
        data["val"], {s: apply_holdout(discover(root, seed=s), data.holdout)["train"] for s in others}
    )
    rec["val_films_trained_on"] = {str(k): n for k, n in overlap.items()}
    save_checkpoint(out, pred.model, pred.config, pred.threshold, pred.extra)
    test = None
    if "test" in data.splits and data["test"]:
        scores = predict_samples(
            pred.model, data["test"], pred.preprocessing, tta=pred.config.tta, resources=data.resources
        )
        test = compute_metrics(scores, pred.threshold, seed=0)
    return RunEnsemble(paths, root, data, pred, rec, test)


def train_members(config, data: XRayData, run_dir: Path | None, run_member, device) -> tuple[Predictor, Scores]:
    """A seed ensemble (config.members > 1): each member trained (or reused, or resumed, by its own key) in
    RUN/members/seedN on this run's split, then served as one checkpoint: logits averaged, temperature and threshold
    fitted on validation (training.ensemble.build_ensemble). RUN_MEMBER(config, folder) trains or reuses one member
    (studies.experiment passes run_experiment with this run's settings). Returns (the predictor, its validation
    scores)."""
    if run_dir is None:
        raise CheckpointError(
            f"{config.name}: a {config.members}-member ensemble trains each member in a folder; give --out"
        )
    paths, figures = [], []
    for k in range(config.members):
        member = replace(config, members=1, seed=config.seed + k)
        log.info("%s: member %d of %d (seed %d)", config.name, k + 1, config.members, member.seed)
        r = run_member(member, run_dir / MEMBERS / f"seed{member.seed}")
        paths.append(RunDir(r.run_dir).checkpoint)
        figures.append(
            {
                "seed": member.seed,
                **{k2: r.metrics["val"].get(k2) for k2 in ("accuracy", "sensitivity", "specificity", "auc")},
            }
        )
    pred = build_ensemble(paths, data["val"], combine="logit", device=device, resources=data.resources)
    pred.config = config
    rec = pred.extra["ensemble"]
    calibration = {m["seed"]: m for m in rec.get("members_val", [])}
    rec["members_val"] = [{**calibration.get(f["seed"], {}), **f} for f in figures]
    rec["members_val_spread"] = {
        k: spread([m[k] for m in rec["members_val"] if m.get(k) is not None])
        for k in ("accuracy", "sensitivity", "specificity", "auc", "nll", "ece", "nll_tempered", "ece_tempered")
    }
    save_checkpoint(RunDir(run_dir).checkpoint, pred.model, config, pred.threshold, pred.extra)
    val = predict_samples(pred.model, data["val"], pred.preprocessing, tta=config.tta, resources=data.resources)
    return pred, val
