"""Grad-CAM lifts of maps for the targets an entry's claims read beside the run's own P(PNEUMONIA) target.

Entry 09's NORMAL-target rows: one more Grad-CAM pass over the same films, only for an entry whose claims need it."""

from __future__ import annotations

import json
from typing import Any, Callable

from ..analysis.cam import explain_predictor
from ..core.runs import RunDir, checkpoint_key
from ..data.lungs import annotated_mask


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
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """({target: Explanation.summary()}, what they were computed from) for the targets other than PNEUMONIA that
    CONFIG's entry's claims read, over the first N_PER_CLASS test films per class (the films of the run's own
    lung_focus): no maps kept and no checks run (the claims read the lifts, gated by the PNEUMONIA-target maps'
    checks). Reused from the run folder's metrics.json while its key (checkpoint, SEEN data and holdout, threshold,
    CODE's digest, films, targets) is the same, unless the run was FRESH(ly trained). ({}, None) when none is needed.
    """
    wanted = [t for t in cam_targets(config.entry) if t != "PNEUMONIA"]
    if not wanted:
        return {}, None
    ckpt = RunDir(run_dir).checkpoint if run_dir else None
    key = json.loads(json.dumps({
        **seen, "targets": wanted, "n_per_class": n_per_class, "threshold": predictor.threshold, "code": code(),
        "checkpoint": checkpoint_key(ckpt) if ckpt and ckpt.is_file() else None,
    }))  # fmt: skip
    path = RunDir(run_dir).metrics if run_dir else None
    old = json.loads(path.read_text()) if path and path.is_file() and not fresh else {}
    kept = old.get("lung_focus_by_target") or {}
    if key["checkpoint"] and old.get("lung_focus_by_target_key") == key and all(t in kept for t in wanted):
        return {t: kept[t] for t in wanted}, key
    summaries = {
        t: explain_predictor(
            predictor, test.samples, n_per_class=n_per_class, target=t, sanity_per_class=0, seed=config.seed,
            keep_maps=False, exact_masks=annotated_mask,
        ).summary()
        for t in wanted
    }  # fmt: skip
    return summaries, key
