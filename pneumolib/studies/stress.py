"""Simulated scanner shifts: a validation protocol that stresses what a new cohort changes, not a random split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..analysis.evaluate import Scores, point_metrics, predict_samples
from ..core.io import load_record, save_json
from ..core.runs import RunDir, checkpoint_key
from ..data.resources import Resources, as_resources
from ..data.shifts import SHIFTS, Shift
from ..studies.runs import open_run

# The external cohort of this data set is 37.5% NORMAL; the training folders are 26%.
EXTERNAL_NORMAL_SHARE = 0.375


def external_accuracy(sensitivity: float, specificity: float, normal_share: float = EXTERNAL_NORMAL_SHARE) -> float:
    """Accuracy re-weighted to another class mix: what the same recalls give on a cohort with that NORMAL share."""
    return normal_share * specificity + (1 - normal_share) * sensitivity


@dataclass
class StressReport:
    """Metrics on the clean split and on every shifted copy of it, at the checkpoint's own threshold."""

    rows: list[dict[str, Any]]
    threshold: float
    split: str = "test"

    def summary(self) -> dict[str, float]:
        """Means over the shifted copies (all, and the unseen group), and the worst NORMAL recall."""
        shifted = [r for r in self.rows if r["shift"] != "clean"]
        # 'unseen' for this recipe where the rows say so (the recipe's own augmentation), else the fixed grouping
        unseen = [r for r in shifted if not r.get("seen", r["group"] != "unseen")]
        clean = next(r for r in self.rows if r["shift"] == "clean")

        def mean(rows, k):
            return float(np.mean([r[k] for r in rows])) if rows else float("nan")

        return {
            "clean_accuracy": clean["accuracy"],
            "clean_specificity": clean["specificity"],
            "clean_auc": clean["auc"],
            "stress_accuracy_ext": mean(shifted, "accuracy_ext"),
            "stress_specificity": mean(shifted, "specificity"),
            "stress_sensitivity": mean(shifted, "sensitivity"),
            "stress_auc": mean(shifted, "auc"),
            "unseen_accuracy_ext": mean(unseen, "accuracy_ext"),
            "unseen_specificity": mean(unseen, "specificity"),
            "unseen_auc": mean(unseen, "auc"),
            "worst_specificity": min(r["specificity"] for r in shifted) if shifted else float("nan"),
        }

    def table(self) -> str:
        head = f"{'shift':<15}{'trained':<8}{'acc':>7}{'acc@ext':>9}{'sens':>7}{'spec':>7}{'AUC':>7}"
        lines = [f"scored on the {self.split} split", head, "-" * len(head)]
        for r in self.rows:
            seen = ("seen" if r["seen"] else "unseen") if "seen" in r else r["group"]
            lines.append(
                f"{r['shift']:<15}{seen:<8}{r['accuracy']:>7.3f}{r['accuracy_ext']:>9.3f}"
                f"{r['sensitivity']:>7.3f}{r['specificity']:>7.3f}{r['auc']:>7.3f}"
            )
        s = self.summary()
        lines.append(
            f"{'mean shifted':<23}{'':>7}{s['stress_accuracy_ext']:>9.3f}{s['stress_sensitivity']:>7.3f}"
            f"{s['stress_specificity']:>7.3f}{s['stress_auc']:>7.3f}"
        )
        lines.append(
            f"acc@ext = accuracy re-weighted to {EXTERNAL_NORMAL_SHARE:.1%} NORMAL (the external cohort's mix); "
            f"threshold {self.threshold:.3f}; trained = whether the recipe's augmentation includes the "
            "change (seen) or not (unseen)"
        )
        return "\n".join(lines)


def shifted_scores(
    model: torch.nn.Module,
    samples,
    preprocessing,
    *,
    tta: bool = False,
    shifts: tuple[Shift, ...] = SHIFTS,
    resources: Resources | None = None,
) -> dict[str, Scores]:
    """Scores of the clean split ('clean') and of one shifted copy per shift (by shift name); every copy is made from
    one decoding of each film (the cache of RESOURCES, default: a new context for this call)."""
    resources = as_resources(resources)
    return {
        shift.name if shift else "clean": predict_samples(
            model, samples, preprocessing, tta=tta, resources=resources, transform=shift
        )
        for shift in (None, *shifts)
    }


def report_at(scores: dict[str, Scores], threshold: float, train_transforms=None, split: str = "test") -> StressReport:
    """The stress report of shifted_scores at one threshold; with the recipe's train_transforms (config's pairs),
    each shift row says whether that recipe trains on it ('seen')."""
    by_name = {s.name: s for s in SHIFTS}
    specs = [spec for _, spec in train_transforms] if train_transforms is not None else None
    rows = []
    for name, sc in scores.items():
        m = point_metrics(sc.labels, sc.probs, threshold)
        shift = by_name.get(name)
        row = {
            "shift": name,
            "group": shift.group if shift else "",
            **m,
            "accuracy_ext": external_accuracy(m["sensitivity"], m["specificity"]),
        }
        if specs is not None and shift is not None:
            row["seen"] = shift.seen_by(specs)
        rows.append(row)
    return StressReport(rows, threshold, split)


def stress_test(
    model: torch.nn.Module,
    samples,
    preprocessing,
    threshold: float,
    *,
    tta: bool = False,
    shifts: tuple[Shift, ...] = SHIFTS,
    resources: Resources | None = None,
    train_transforms=None,
    split: str = "test",
) -> StressReport:
    """Score the clean split and one shifted copy per shift with the model's fixed threshold (films decoded in
    RESOURCES, as in shifted_scores)."""
    return report_at(
        shifted_scores(model, samples, preprocessing, tta=tta, shifts=shifts, resources=resources),
        threshold,
        train_transforms,
        split,
    )


logger = logging.getLogger(__name__)


def stress_run(run_dir, data_dir=None, *, split: str = "test", reuse: bool = True) -> StressReport:
    """The stress test of a finished run folder, on the same data and holdout it was trained with; the result is
    kept in RUN_DIR/stress.json (test; stress_<split>.json for another split) and reused while checkpoint.pt is
    unchanged."""
    run = RunDir(run_dir)
    ckpt = run.checkpoint
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint (is {run.path} a finished run folder?)")
    out = run.stress_for(split)
    key = checkpoint_key(ckpt)
    saved = load_record(out) if reuse else None  # data only; a record that is not what we wrote is recomputed
    if saved is not None and saved.get("checkpoint_key") == key and saved.get("split") == split:
        try:
            rows = [dict(r) for r in saved["rows"]]
            report = StressReport(rows, float(saved["threshold"]), split)
            report.table()  # every row formats: a planted row is caught here, not in the caller's print
            return report
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
            logger.info("%s: not reused, recomputed (%s)", out, e)
    o = open_run(run_dir, data_dir)
    metrics, root, pred, data = o.metrics, o.root, o.predictor, o.data
    logger.info(
        "stress test of %s (%s) on %s %s: %d shifts", run.path.name, pred.config.name, root.name, split, len(SHIFTS)
    )
    report = stress_test(
        pred.model,
        data[split],
        pred.preprocessing,
        pred.threshold,
        tta=pred.config.tta,
        train_transforms=pred.config.train_transforms,
        split=split,
        resources=data.resources,
    )
    save_json(
        {
            "checkpoint_key": key,
            "split": split,
            "threshold": report.threshold,
            "rows": report.rows,
            "summary": report.summary(),
            "holdout": metrics.get("holdout", "folders"),
        },
        out,
    )
    return report
