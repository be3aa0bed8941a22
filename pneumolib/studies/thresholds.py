"""Decision-threshold rules compared on validation films only, by cross-fitting over patients.

A rule fitted on the whole validation split and scored on it looks better than it is, and the test split is for the
final report. So each rule is fitted on a random half of the validation patients and scored on the other half,
over many splits (`compare_rules`): the mean held-out NORMAL recall, PNEUMONIA recall and balanced accuracy, with
the spread over splits. youden_shifted is fitted on its half's clean films pooled with their copies under the
stress test's 'seen' shifts (as evaluate.fit_threshold does) and scored on the other half's clean films.

`python -m pneumolib thresholds RUN_DIR... [--data-dir DIR]` prints the table for finished runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.evaluate import choose_threshold, point_metrics, pooled_youden, predict_samples, seen_shift_probs
from ..studies.runs import open_run

RULES = ("fixed:0.5", "youden", "youden_shifted", "balanced")


def _fit(rule: str, y: np.ndarray, p: np.ndarray, shifted: list[np.ndarray]) -> float:
    return pooled_youden(y, p, shifted) if rule == "youden_shifted" else choose_threshold(rule, y, p)


def compare_rules(
    labels: np.ndarray,
    probs: np.ndarray,
    patients: list[str],
    shifted: list[np.ndarray],
    rules: tuple[str, ...] = RULES,
    n_splits: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Each rule's held-out figures on validation by cross-fitting over patients.

    Args:
        labels: validation labels.
        probs: the model's clean P(PNEUMONIA) for them.
        patients: each film's patient (a patient's films stay on one side of a split).
        shifted: P(PNEUMONIA) of the same films under each 'seen' shift (youden_shifted pools them).
        rules: the threshold rules to compare.
        n_splits: random halvings of the patients; each half is fitted on and the other scored, both ways.
        seed: the splits' generator seed.

    Returns:
        {"rules": {rule: {"threshold_all": fitted on every validation film, "normal_recall", "pneumonia_recall",
        "balanced_accuracy": held-out means, "*_sd": their spread over splits, "threshold_sd"}}, "n_splits",
        "n_films", "method"}.
    """
    y, p = np.asarray(labels, dtype=int), np.asarray(probs, dtype=float)
    shifted = [np.asarray(s, dtype=float) for s in shifted]
    rows = _cross_fit(y, p, patients, shifted, rules, n_splits, seed)
    out = {r: _summary(r, v, y, p, shifted) for r, v in rows.items()}
    return {
        "rules": out,
        "n_splits": n_splits,
        "n_films": int(len(y)),
        "method": "each rule fitted on a random half of the validation patients and scored on the other half, "
        f"both ways, over {n_splits} halvings (seed {seed}); the test split is not read",
    }


def _cross_fit(
    y: np.ndarray,
    p: np.ndarray,
    patients: list[str],
    shifted: list[np.ndarray],
    rules: tuple[str, ...],
    n_splits: int,
    seed: int,
) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per rule, (threshold, NORMAL recall, PNEUMONIA recall, balanced accuracy) of every fit on one half of the
    patients scored on the other (both ways per halving; a half without both classes is skipped)."""
    ids = np.array(sorted(set(patients)))
    pat = np.array(patients)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[float, float, float, float]]] = {r: [] for r in rules}
    for _ in range(n_splits):
        half = set(rng.permutation(ids)[: len(ids) // 2])
        a = np.array([q in half for q in pat])
        for fit_on, score_on in ((a, ~a), (~a, a)):
            if len(np.unique(y[fit_on])) < 2 or len(np.unique(y[score_on])) < 2:
                continue
            for r in rules:
                t = _fit(r, y[fit_on], p[fit_on], [s[fit_on] for s in shifted])
                m = point_metrics(y[score_on], p[score_on], t)
                rows[r].append((t, m["specificity"], m["sensitivity"], (m["specificity"] + m["sensitivity"]) / 2))
    return rows


def _summary(
    rule: str, v: list[tuple[float, float, float, float]], y: np.ndarray, p: np.ndarray, shifted: list[np.ndarray]
) -> dict[str, float]:
    """One rule's row: the threshold fitted on every film, and the held-out means and spreads over the fits."""
    a = np.array(v) if v else np.full((1, 4), np.nan)
    return {
        "threshold_all": _fit(rule, y, p, shifted),
        "threshold_sd": float(a[:, 0].std()),
        "normal_recall": float(a[:, 1].mean()),
        "normal_recall_sd": float(a[:, 1].std()),
        "pneumonia_recall": float(a[:, 2].mean()),
        "pneumonia_recall_sd": float(a[:, 2].std()),
        "balanced_accuracy": float(a[:, 3].mean()),
        "balanced_accuracy_sd": float(a[:, 3].std()),
    }


def compare_run(run_dir, data_dir=None, rules: tuple[str, ...] = RULES, n_splits: int = 50) -> dict[str, Any]:
    """compare_rules on a finished run folder's validation split (the seeded split it was trained with)."""
    o = open_run(run_dir, data_dir)
    pred, data = o.predictor, o.data
    val = data["val"]
    clean = predict_samples(pred.model, val, pred.preprocessing, tta=pred.config.tta, resources=data.resources)
    shifted = seen_shift_probs(pred.model, val, pred.preprocessing, tta=pred.config.tta, resources=data.resources)
    r = compare_rules(
        clean.labels, clean.probs, [s.patient for s in val], shifted, rules, n_splits, seed=pred.config.seed
    )
    r.update(experiment=pred.config.name, checkpoint_threshold=pred.threshold, rule_trained=pred.config.threshold)
    return r


def format_rules(r: dict[str, Any]) -> str:
    """One line per rule: the threshold fitted on every validation film, then held-out means (sd)."""
    lines = [f"{'rule':<16}{'threshold':>10}{'NORMAL recall':>20}{'PNEUMONIA recall':>20}{'balanced acc':>20}"]
    for rule, v in r["rules"].items():
        lines.append(
            f"{rule:<16}{v['threshold_all']:>10.3f}"
            f"{v['normal_recall']:>13.3f} ({v['normal_recall_sd']:.3f})"
            f"{v['pneumonia_recall']:>13.3f} ({v['pneumonia_recall_sd']:.3f})"
            f"{v['balanced_accuracy']:>13.3f} ({v['balanced_accuracy_sd']:.3f})"
        )
    lines.append(f"{r['n_films']} validation films; {r['method']}")
    return "\n".join(lines)
