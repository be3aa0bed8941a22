"""Which training a run asks for (profile, overrides, ImageNet weights) and whether a run folder holds it already.

The one rule for reusing a run folder (training_differences), and for starting one from a finished twin (adopt_twin).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core.config import ExperimentConfig, apply_profile, diff, format_diff
from ..core.runs import MEMBERS, RunDir
from ..core.runtime import get_device
from ..data.dataset import fingerprint, prepare, resolve_data_dir
from ..models.checkpoint import CheckpointError, read_checkpoint
from ..models.networks import WeightsUnavailable, resolve_weights

logger = logging.getLogger(__name__)


def default_profile(is_fixture: bool, device: str = "auto") -> str:
    if is_fixture:
        return "fixture"
    return "gpu" if get_device(device).type == "cuda" else "cpu"


def describe_profile(config: ExperimentConfig, device: str = "auto") -> str:
    sub = f", {config.max_train_images} train images per epoch" if config.max_train_images else ""
    return (
        f"profile {config.profile}: {config.image_size} px, {config.epochs} epochs, batch {config.batch_size}{sub}, "
        f"device {get_device(device)}"
    )


def check_pretrained(
    config: ExperimentConfig, on_missing: str = "fail", warn: bool = True
) -> tuple[ExperimentConfig, str]:
    """Returns (config to train, what was used). on_missing='random_init' trains from random init and says so
    loudly (unless warn=False: a caller that only asks which config a run would train, whose run then warns once),
    recording pretrained=False in the saved config; 'fail' raises WeightsUnavailable."""
    if not config.pretrained:
        return config, "random init"
    try:
        path = resolve_weights(config.model)
        return config, f"ImageNet weights from {path}"
    except WeightsUnavailable as e:
        if on_missing != "random_init":
            raise
        if warn:
            logger.warning(
                "NOT PRETRAINED: %s. %s's model starts from RANDOM INIT instead (trained now, or reused from "
                "a finished run of that config), and its saved config says pretrained=False.",
                e,
                config.name,
            )
        return replace(config, pretrained=False), "random init (ImageNet weights unavailable)"


def resolve_config(
    config: ExperimentConfig,
    profile: str,
    overrides: dict[str, Any] | None = None,
    on_missing_weights: str = "fail",
    warn: bool = True,
) -> tuple[ExperimentConfig, str]:
    """The config a run trains: resized to the profile, explicit overrides on top (e.g. --epochs), pretrained
    weights checked (check_pretrained). Returns (config, what weights were used)."""
    config = apply_profile(config, profile)
    if overrides:
        config = replace(config, **overrides)
    return check_pretrained(config, on_missing_weights, warn)


def training_differences(
    run_dir: str | Path, config: ExperimentConfig, holdout: str, data_fingerprint: str
) -> list[str]:
    """Why RUN_DIR's checkpoint is not the training asked for: [] when config (training fields, profile and
    budget included), holdout and data all match, so the run can be reused; else one phrase per difference.
    The one rule for reuse: run_experiment, the CLI and the notebooks all ask it."""
    ckpt = RunDir(run_dir).checkpoint
    if not ckpt.is_file():
        return ["no checkpoint"]
    try:
        state = read_checkpoint(ckpt)
        old = ExperimentConfig.from_dict(state["config"])
    except (CheckpointError, KeyError, ValueError, TypeError) as e:
        return [f"unreadable checkpoint ({e})"]
    extra = state.get("extra") or {}
    out = []
    if old.training_key() != config.training_key():
        out.append(f"config: {format_diff(diff(old, config)) or 'training fields'}")
    if extra.get("holdout", "folders") != holdout:
        out.append(f"holdout: {extra.get('holdout', 'folders')} -> {holdout}")
    if extra.get("data_fingerprint") != data_fingerprint:
        out.append(f"data: train/val files {extra.get('data_fingerprint') or 'not recorded'} -> {data_fingerprint}")
    return out


def data_fingerprint(data_dir: str | Path | None, config: ExperimentConfig, holdout: str = "folders") -> str:
    """The train/val fingerprint a run of CONFIG on DATA_DIR records in its checkpoint (training_differences reads it)."""
    root, _ = resolve_data_dir(data_dir)
    return fingerprint(prepare(root, seed=config.seed, holdout=holdout, image_size=config.view))


def adopt_twin(
    run_dir: str | Path,
    candidates: Iterable[str | Path],
    config: ExperimentConfig,
    holdout: str,
    data_fp: Callable[[], str],
) -> Path | None:
    """Start an empty run folder from the first finished candidate that trained exactly CONFIG (training_differences
    finds nothing): its checkpoint, its last epoch's weights and the results kept per checkpoint (stress test,
    Grad-CAM, each re-checked against the checkpoint when read) are copied, so the run is re-evaluated, not
    retrained. The one rule for a training that exists already: twin notebook entries and decision-rule-only
    ablation steps both use it. DATA_FP is called once, only if a candidate is finished. Returns the folder copied
    from, else None."""
    run_dir = Path(run_dir)
    if RunDir(run_dir).checkpoint.is_file():
        return None
    fp = None
    for twin in map(Path, candidates):
        if twin.resolve() == run_dir.resolve() or not RunDir(twin).is_finished():
            continue
        fp = fp or data_fp()
        if training_differences(twin, config, holdout, fp):
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = RunDir(twin)
        for path in (kept.checkpoint, kept.last_epoch, kept.stress, kept.explanation):
            if path.is_file():
                shutil.copy2(path, run_dir / path.name)
        logger.info(
            "%s trains exactly what %s trained (config, holdout and data): its checkpoint is re-evaluated "
            "here, not retrained",
            run_dir,
            twin,
        )
        return twin
    return None


def sibling_member(out: Path, config, holdout: str, data_fp: str) -> Path | None:
    """Start member folder OUT (RUN/members/seedN) from the same member of another ensemble seed's run of the same
    experiment (RUN/../seed*/members/seedN) when that one trained exactly CONFIG on the same data
    (run_config.adopt_twin: config, holdout and data fingerprint): the seed ensembles S, S+1, ... share members
    (ensemble S trains seeds S..S+k-1 on a split that does not depend on S where the data has its own validation
    folder), and each was trained again for every ensemble seed that names it. Returns the folder copied from, or
    None."""
    siblings = sorted(Path(out).parent.parent.parent.glob(f"seed*/{MEMBERS}/{Path(out).name}"))
    return adopt_twin(out, siblings, config, holdout, lambda: data_fp)
