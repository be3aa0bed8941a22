"""Notebook 10's evidence: the ablation steps scored three ways (random split, stress test, early-ID holdout)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import ExperimentConfig
from ..core.runs import ablation_dir, matched_baseline_dir, seed_dirs
from ..studies.stress import external_accuracy, stress_run
from .catalogue import ABLATIONS, BASELINE

logger = logging.getLogger(__name__)

# The anchor pair: on the external cohort, strong augmentation kept NORMAL recall far above log-style augmentation
# (the README gives the recorded figures). A protocol that predicts external behaviour must order them so.
ANCHOR_LOW, ANCHOR_HIGH = BASELINE.name, "abl_robust_aug"


def ablation_configs() -> list[ExperimentConfig]:
    """The baseline, then each lever in the order it is added (the side branch included)."""
    return [BASELINE, *ABLATIONS.values()]


def summary_of(metrics: dict[str, Any]) -> dict[str, float]:
    t = metrics["test"]
    return {
        "accuracy": t["accuracy"],
        "sensitivity": t["sensitivity"],
        "specificity": t["specificity"],
        "auc": t["auc"],
        "accuracy_ext": external_accuracy(t["sensitivity"], t["specificity"]),
        "threshold": metrics["threshold"],
        "n": t["n"],
    }


def score_steps(
    data_dir,
    runs: str | Path,
    *,
    profile: str | None = None,
    device: str = "auto",
    configs: list[ExperimentConfig] | None = None,
    holdouts: tuple[str, ...] = ("folders", "early_ids"),
    overrides: dict[str, Any] | None = None,
    seeds: tuple[int, ...] = (0,),
) -> list[dict[str, Any]]:
    """Train (or reuse) every step for every seed under each holdout, stress-test the folder runs, and return one
    row per step, pooled over the seeds (pool_seeds): {'name', 'title', 'folders', 'stress', 'early_ids',
    'by_seed': {seed: the same three for that seed}}."""
    from ..data.dataset import resolve_data_dir
    from ..studies.experiment import default_profile, run_experiment

    profile = profile or default_profile(resolve_data_dir(data_dir)[1], device)
    rows = []
    trained: dict[tuple[int, str], list[Path]] = {}  # (seed, holdout) -> the steps' run folders so far
    for cfg in configs or ablation_configs():
        by_seed: dict[int, dict[str, Any]] = {}
        for seed in seeds:
            c = replace(cfg, seed=seed)
            one: dict[str, Any] = {}
            for holdout in holdouts:
                d = ablation_dir(runs, c, holdout)
                earlier = trained.setdefault((seed, holdout), [])
                same_training(d, earlier, c, data_dir, profile, overrides, holdout, runs)
                # the registered experiments' folder runs keep their Grad-CAM lung focus: the baseline's run folder
                # is notebook 01's too, and its metrics.json must not lose what notebook 01 wrote; the other steps
                # are scored by their numbers, not their maps
                r = run_experiment(
                    c,
                    data_dir,
                    d,
                    profile=profile,
                    device=device,
                    holdout=holdout,
                    cam_per_class=4 if holdout == "folders" and c.entry else 0,
                    overrides=overrides,
                    log_findings=not rows and not by_seed and not one,
                )  # the pre-scan's table once
                earlier.append(d)
                one[holdout] = summary_of(r.metrics)
                if holdout == "folders":
                    one["stress"] = stress_run(d, data_dir).summary()
            by_seed[seed] = one
        rows.append(pool_seeds(cfg.name, cfg.title if cfg.name != BASELINE.name else "the log's baseline", by_seed))
    return rows


def same_training(
    run_dir: Path,
    earlier: list[Path],
    config: ExperimentConfig,
    data_dir,
    profile: str,
    overrides: dict[str, Any] | None,
    holdout: str,
    runs: str | Path | None = None,
) -> Path | None:
    """Start an empty step folder from a run that trained exactly the same weights: an earlier step's (a step that
    changes only the decision rule, such as abl_youden_shifted), else, given RUNS, any finished run of this seed
    there (core.runs.seed_dirs: abl_lung_mask trains what notebook 10's recipe trains when the budgets agree, and
    differs only in its threshold rule). experiment.adopt_twin, the rule twin notebook entries use too; the step
    is then re-evaluated under its own rule, not retrained.

    Returns:
        the folder it came from, or None (nothing copied).
    """
    from ..studies.experiment import adopt_twin, data_fingerprint, resolve_config

    want, _ = resolve_config(config, profile, overrides, "random_init")
    candidates = list(earlier) + (seed_dirs(runs, config.seed) if runs is not None else [])
    return adopt_twin(run_dir, candidates, want, holdout, lambda: data_fingerprint(data_dir, want, holdout))


def pool_seeds(name: str, title: str, by_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One ablation row from per-seed ones: each protocol's numbers averaged over the seeds (all seeds have the
    same protocols), the per-seed rows kept under 'by_seed' (the anchor order is judged seed by seed)."""
    row: dict[str, Any] = {"name": name, "title": title, "by_seed": by_seed, "seeds": len(by_seed)}
    for part in ("folders", "stress", "early_ids"):
        parts = [one[part] for one in by_seed.values() if one.get(part)]
        if parts:
            row[part] = {
                k: float(np.mean([p[k] for p in parts]))
                for k in parts[0]
                if all(isinstance(p.get(k), (int, float)) for p in parts)
            }
    return row


def budget_of(config: ExperimentConfig, profile: str) -> dict[str, Any]:
    """The fields that set a run's training budget under a profile (image size, epochs, images per epoch, batch)."""
    from ..core.config import apply_profile

    c = apply_profile(config, profile)
    return {
        "image_size": c.image_size,
        "epochs": c.epochs,
        "max_train_images": c.max_train_images,
        "batch_size": c.batch_size,
    }


def budget_words(b: dict[str, Any]) -> str:
    """A training budget (budget_of's fields) in words, the one phrasing every notebook and CLI line uses.

    Args:
        b: image_size, epochs and max_train_images (None: every training image); batch_size when known.

    Returns:
        e.g. '4 epochs of 1500 training images per epoch at 128 px, batch 32'.
    """
    films = f"{b['max_train_images']} training images" if b.get("max_train_images") else "every training image"
    batch = f", batch {b['batch_size']}" if b.get("batch_size") else ""
    return f"{b['epochs']} epoch{'s' if b['epochs'] != 1 else ''} of {films} per epoch at {b['image_size']} px{batch}"


def matched_baseline(
    data_dir,
    runs: str | Path,
    *,
    profile: str,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The log's baseline trained with the recommended recipe's budget under `profile` (the ablation steps all
    use the shorter generic budget, which under-trains strong augmentation): the anchor pair at equal budget.
    `overrides` (a series' budget) apply on top. Returns one seed's {'folders', 'stress', 'run_dir', 'metrics'}
    (metrics.json with the stress summary under 'stress', for the verdicts)."""
    from ..studies.experiment import run_experiment
    from .catalogue import RECOMMENDED

    d = matched_baseline_dir(runs, seed)
    r = run_experiment(
        replace(BASELINE, seed=seed),
        data_dir,
        d,
        profile=profile,
        device=device,
        cam_per_class=0,
        overrides={**budget_of(RECOMMENDED, profile), **(overrides or {})},
        log_findings=False,
    )
    stress = stress_run(d, data_dir).summary()
    return {
        "folders": summary_of(r.metrics),
        "stress": stress,
        "run_dir": d,
        "metrics": {**r.metrics, "stress": stress},
    }


def ablation_frame(rows: list[dict[str, Any]]):
    """score_steps rows (or pool_seeds of matched_baseline's) as one pandas table: random split, stress test,
    early-ID holdout, each the mean over the row's seeds; the CLI prints it, the notebooks display it."""
    import pandas as pd

    out = {}
    if not rows:
        return pd.DataFrame()
    for r in rows:
        f, s, e = r["folders"], r.get("stress") or {}, r.get("early_ids") or {}
        out[r["name"]] = {
            ("", "seeds"): r.get("seeds", 1),
            ("random split", "accuracy"): f["accuracy"],
            ("random split", "NORMAL recall"): f["specificity"],
            ("random split", "AUC"): f["auc"],
            ("stress test", "acc@ext"): s.get("stress_accuracy_ext"),
            ("stress test", "NORMAL recall"): s.get("stress_specificity"),
            ("stress test", "AUC"): s.get("stress_auc"),
            ("early-ID holdout", "acc@ext"): e.get("accuracy_ext"),
            ("early-ID holdout", "NORMAL recall"): e.get("specificity"),
            ("early-ID holdout", "AUC"): e.get("auc"),
        }
    frame = pd.DataFrame(out).T.astype(float).round(3).dropna(axis=1, how="all")  # e.g. no early-ID run
    frame[("", "seeds")] = frame[("", "seeds")].astype(int)  # a count, not a mean
    return frame


PROTOCOL_SCORES = {
    "random split: accuracy": lambda r: r["folders"]["accuracy"],
    "random split: NORMAL recall": lambda r: r["folders"]["specificity"],
    "stress test: acc@ext": lambda r: (r.get("stress") or {}).get("stress_accuracy_ext", np.nan),
    "stress test: NORMAL recall": lambda r: (r.get("stress") or {}).get("stress_specificity", np.nan),
    "early-ID holdout: acc@ext": lambda r: (r.get("early_ids") or {}).get("accuracy_ext", np.nan),
    "early-ID holdout: NORMAL recall": lambda r: (r.get("early_ids") or {}).get("specificity", np.nan),
}


def anchor_order(row_low: dict[str, Any], row_high: dict[str, Any], score) -> str:
    """Whether a protocol score puts the anchor pair in the external cohort's order, seed by seed: 'right' when
    every seed does, 'WRONG' when none does, else 'seeds disagree'; with the count of seeds."""
    low, high = row_low.get("by_seed") or {0: row_low}, row_high.get("by_seed") or {0: row_high}
    seeds = [s for s in high if s in low]
    vals = [(score(low[s]), score(high[s])) for s in seeds]
    vals = [(lo, hi) for lo, hi in vals if not (np.isnan(lo) or np.isnan(hi))]
    if not vals:
        return "n/a"
    right = sum(hi > lo for lo, hi in vals)
    word = "right" if right == len(vals) else ("WRONG" if right == 0 else "seeds disagree")
    return f"{word} ({right}/{len(vals)})"


def protocol_agreement(rows: list[dict[str, Any]], target: str = "early-ID holdout: acc@ext") -> str:
    """How each protocol ranks the steps against the target ranking (Spearman over the seed means), and whether it
    puts the issue's external anchor pair (strong augmentation above log-style augmentation) in the right order,
    seed by seed (anchor_order)."""
    from scipy.stats import spearmanr

    by_name = {r["name"]: r for r in rows}
    t = np.array([PROTOCOL_SCORES[target](r) for r in rows], dtype=float)
    ranked = not np.isnan(t).all()  # without the target protocol there is no Spearman column at all
    lines = [
        f"{'protocol score':<34}"
        + (f"{'Spearman vs ' + target.split(':')[0]:>30}" if ranked else "")
        + f"{'anchor order (seeds right)':>30}"
    ]
    for name, fn in PROTOCOL_SCORES.items():
        v = np.array([fn(r) for r in rows], dtype=float)
        if np.isnan(v).all():
            continue  # a protocol this render did not run
        if name == target:
            rho = 1.0
        elif len(set(v.tolist())) < 2 or len(set(t.tolist())) < 2 or np.isnan(v).any() or np.isnan(t).any():
            rho = float("nan")  # a constant or missing score ranks nothing
        else:
            rho = spearmanr(v, t).statistic
        anchor = "n/a"
        if ANCHOR_LOW in by_name and ANCHOR_HIGH in by_name:
            anchor = anchor_order(by_name[ANCHOR_LOW], by_name[ANCHOR_HIGH], fn)
        shown = "n/a (constant)" if rho != rho else f"{rho:.2f}"
        lines.append(f"{name:<34}" + (f"{shown:>30}" if ranked else "") + f"{anchor:>30}")
    if not ranked:
        lines.append(f"no {target.split(':')[0]} in this render: no ranking to compare with, so no Spearman column")
    lines.append(
        f"anchor: on the external cohort {ANCHOR_HIGH} (strong augmentation) kept NORMAL recall above "
        f"{ANCHOR_LOW} (log-style augmentation); a protocol that predicts the cohort must order them so"
    )
    return "\n".join(lines)


def plot_protocols(rows: list[dict[str, Any]]):
    """Each step's accuracy under the three protocols: how far each falls from the random split."""
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    keys = [
        ("random split: accuracy", "random split (acc)"),
        ("stress test: acc@ext", "stress test (acc@ext)"),
        ("early-ID holdout: acc@ext", "early-ID holdout (acc@ext)"),
    ]
    fig, ax = plt.subplots(1, 2, figsize=(11, 0.38 * len(rows) + 1.6), sharey=True)
    y = np.arange(len(rows))

    def draw(a, k, label):
        v = [PROTOCOL_SCORES[k](r) for r in rows]
        if not np.isnan(np.array(v, dtype=float)).all():  # a protocol this render did not run: no empty legend entry
            a.plot(v, y, "o", label=label, alpha=0.8)

    for k, label in keys:
        draw(ax[0], k, label)
    for k, label in [
        ("random split: NORMAL recall", "random split"),
        ("stress test: NORMAL recall", "stress test"),
        ("early-ID holdout: NORMAL recall", "early-ID holdout"),
    ]:
        draw(ax[1], k, label)
    ax[0].set_title("accuracy", fontsize=9)
    ax[1].set_title("NORMAL recall", fontsize=9)
    ax[0].set_yticks(y, names, fontsize=8)
    ax[0].invert_yaxis()
    for a in ax:
        a.grid(axis="x", alpha=0.3)
        a.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
