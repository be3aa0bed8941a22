"""An experiment's Grad-CAM results: computed on its test films, kept beside their checkpoint and reused.

They are reused while the checkpoint, data, settings and code are the same.

lung_focus: the run's own P(PNEUMONIA)-target maps with their checks. other_targets: the lifts of maps for the
targets an entry's claims read beside it, with those maps' own checks (entry 09's NORMAL-target rows: one more pass
over the same films, only for an entry whose claims need it)."""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING, Any, Callable

from ..analysis.cam import Explanation, explain_predictor
from ..core.runs import RunDir, checkpoint_key
from ..data.lungs import annotated_mask

if TYPE_CHECKING:
    from pathlib import Path

    from ..analysis.evaluate import Scores
    from ..core.config import ExperimentConfig
    from ..models.checkpoint import Predictor

logger = logging.getLogger(__name__)


def cam_targets(entry: str) -> tuple[str, ...]:
    """The Grad-CAM targets an entry's claims read (studies.catalogue.claims.cam_targets); () for most entries."""
    from ..studies.catalogue.claims import cam_targets as targets

    return targets(entry)


def other_targets(
    config,
    predictor,
    test,
    run_dir,
    n_per_class: int,
    seen: dict[str, Any],
    code: Callable[[], str],
    fresh: bool,
    checks_per_class: int = 0,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """({target: Explanation.summary()}, {target: its maps' checks}, what they were computed from) for the targets
    other than PNEUMONIA that CONFIG's entry's claims read, over the first N_PER_CLASS test films per class (the
    films of the run's own lung_focus), no maps kept. Their own checks (ROAD, randomisation: cam_checks.maps_pass)
    run on the first CHECKS_PER_CLASS films per class, as the run's own maps' do, because a claim about the
    NORMAL-target maps is evidence only if those maps pass (verdict_flags.maps_faithful reads them). Reused from the
    run folder's metrics.json while its key (checkpoint, SEEN data and holdout, threshold, CODE's digest, films,
    checks, targets) is the same, unless the run was FRESH(ly trained). ({}, {}, None) when none is needed."""
    wanted = [t for t in cam_targets(config.entry) if t != "PNEUMONIA"]
    if not wanted:
        return {}, {}, None
    ckpt = RunDir(run_dir).checkpoint if run_dir else None
    key = json.loads(json.dumps({
        **seen, "targets": wanted, "n_per_class": n_per_class, "threshold": predictor.threshold, "code": code(),
        "checks_per_class": checks_per_class, "checkpoint": checkpoint_key(ckpt) if ckpt and ckpt.is_file() else None,
    }))  # fmt: skip
    path = RunDir(run_dir).metrics if run_dir else None
    old = json.loads(path.read_text()) if path and path.is_file() and not fresh else {}
    kept, kept_checks = old.get("lung_focus_by_target") or {}, old.get("gradcam_by_target") or {}
    if key["checkpoint"] and old.get("lung_focus_by_target_key") == key and all(t in kept for t in wanted):
        return {t: kept[t] for t in wanted}, {t: kept_checks.get(t) or {} for t in wanted}, key
    summaries, checks = {}, {}
    for t in wanted:
        expl = explain_predictor(
            predictor, test.samples, n_per_class=n_per_class, target=t, sanity_per_class=checks_per_class,
            seed=config.seed, keep_maps=False, exact_masks=annotated_mask,
        )  # fmt: skip
        summaries[t] = expl.summary()
        report = expl.report(per_image=False)
        checks[t] = {k: report.get(k) for k in ("maps_pass", "road", "randomisation_rank_corr", "target")}
    return summaries, checks, key


def lung_focus(
    config: ExperimentConfig,
    predictor: Predictor,
    test: Scores,
    run_dir: Path | None,
    data_fp: str,
    s: Any,
    fresh: bool,
) -> Explanation:
    """Grad-CAM of the test films (S: the run's studies.experiment.RunSettings), kept per checkpoint (reused when the checkpoint, data and code are the same).
    The grid shows the first cam_per_class films per class; lift over the first focus_per_class per class;
    P(PNEUMONIA)'s log-odds as target for every run (so runs compare), the TTA the predictor uses; randomisation
    and ROAD checks on the grid's films; lung masks: the annotated ones where a film has one (the shared data's
    lung_masks/, the fixture's phantoms), the shipped segmenter's elsewhere."""
    ckpt = RunDir(run_dir).checkpoint if run_dir else None
    settings = dict(
        n_per_class=max(s.cam_per_class, s.focus_per_class),
        target="PNEUMONIA",
        sanity_per_class=s.cam_per_class,
        seed=config.seed,
    )
    key = {
        **settings,
        "checkpoint": checkpoint_key(ckpt) if ckpt and ckpt.is_file() else None,
        "data": data_fp,
        "holdout": s.holdout,
        "threshold": predictor.threshold,
        "code": explain_code(),
    }
    expl = None if fresh else cached_explanation(run_dir, key)
    if expl is None:
        expl = explain_predictor(predictor, test.samples, exact_masks=annotated_mask, **settings)
        keep_explanation(run_dir, key, expl)
    return expl


def explain_code(root: Path | None = None) -> str:
    """A digest of the package's source (ROOT: the package folder, default this one), so that a Grad-CAM cache
    written by other code is not reused. Every module counts: the maps, their checks (ROAD, randomisation), the lung
    masks, the model's scoring and the films' preprocessing all shape what is kept, and a digest of two facade
    modules once let a cache keep a check's verdict its fixed module no longer gives. Read once per process."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    return _source_digest(str(root))


@functools.lru_cache(maxsize=4)
def _source_digest(root: str) -> str:
    import hashlib
    from pathlib import Path

    h = hashlib.sha1()
    for f in sorted(Path(root).rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def cached_explanation(run_dir, key: dict[str, Any]) -> Explanation | None:
    """The Grad-CAM results kept in RUN_DIR for the same checkpoint, data and settings (a twin run folder's copy
    counts: notebooks 05 and 08 re-show 04's and 07's), or None. The file is read as data only (Explanation.load:
    no pickle), and one that does not parse is recomputed, never trusted."""
    path = RunDir(run_dir).explanation if run_dir else None
    if key.get("checkpoint") is None or path is None or not path.is_file():
        return None
    try:
        expl, saved_key = Explanation.load(path)
    except ValueError as e:
        logger.info("%s: not reused, recomputed (%s)", path, e)
        return None
    if saved_key != json.loads(json.dumps(key)):
        return None
    logger.info("Grad-CAM results reused from %s (same checkpoint, data and settings)", path)
    return expl


def keep_explanation(run_dir, key: dict[str, Any], expl: Explanation) -> None:
    """Keep Grad-CAM results beside the checkpoint they explain (cached_explanation reads them back)."""
    if run_dir is None or key.get("checkpoint") is None:
        return
    expl.save(RunDir(run_dir).explanation, key)
