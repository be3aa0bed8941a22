"""The comparison table of finished runs: test accuracy, recalls and AUC with intervals, lifts, budget, minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..core.io import RecordError
from ..core.runs import RunDir, load_metrics
from ..studies.verdict_estimates import NotMeasured, summary_lift


def _lift(per_class: dict[str, Any], key: str = "lung_lift") -> float:
    try:
        return summary_lift(per_class, key).value
    except NotMeasured:
        return float("nan")


def compare_runs(run_dirs: Iterable[str | Path]) -> str:
    """The comparison table of finished run folders (`compare`). A metrics.json that does not format as pneumolib
    writes it (a planted or damaged record) is one RecordError line naming it, never a traceback."""
    rows = []
    for d in run_dirs:
        m = load_metrics(d)
        try:
            row = comparison_rows([m])
            format_table(row)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
            raise RecordError(
                f"{RunDir(d).metrics}: not a record pneumolib wrote ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:80]})"
            ) from None
        rows += row
    return format_table(rows)


def comparison_rows(metrics_list: list[dict[str, Any]], split: str = "test") -> list[dict[str, Any]]:
    rows = []
    for m in metrics_list:
        t = m.get(split) or {}
        lf = m.get("lung_focus", {})
        rows.append(
            {
                "entry": m.get("entry", ""),
                "name": m.get("experiment", "?"),
                "weights": m.get("weights", ""),
                "accuracy": t.get("accuracy", float("nan")),
                "sensitivity": t.get("sensitivity", float("nan")),
                "specificity": t.get("specificity", float("nan")),
                "auc": t.get("auc", float("nan")),
                "threshold": m.get("threshold", float("nan")),
                "ci95": t.get("ci95", {}),
                "lift_normal": _lift(lf.get("NORMAL", {})),
                "lift_pneumonia": _lift(lf.get("PNEUMONIA", {})),
                "minutes": (m.get("train_seconds") or float("nan")) / 60,
                "n": t.get("n", 0),
                "holdout": m.get("holdout", "folders"),
                "stress": m.get("stress"),
                "seed": (m.get("config") or {}).get("seed"),
                "epochs": (m.get("config") or {}).get("epochs"),
                "max_train_images": (m.get("config") or {}).get("max_train_images"),
            }
        )
    return rows


def _ci(r: dict[str, Any], k: str) -> str:
    lo, hi = r["ci95"].get(k, [float("nan")] * 2)
    return f"{r[k]:.3f} ({lo:.2f}-{hi:.2f})"


def format_table(rows: list[dict[str, Any]]) -> str:
    """One line per run: test metrics with bootstrap 95% intervals, threshold, Grad-CAM lung lift, time; and the stress
    test's means when the run folder has a stress.json."""
    stressed = any(r.get("stress") for r in rows)
    head = (
        f"{'#':<3}{'experiment':<32}{'seed, budget':<15}{'accuracy':>19}{'PNEUMONIA recall':>19}{'NORMAL recall':>19}{'AUC':>19}"
        f"{'thr':>6}{'liftN':>7}{'liftP':>7}{'min':>6}" + (f"{'str.acc@ext':>12}{'str.NORMAL':>11}" if stressed else "")
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["name"] + (" [early-ID]" if r.get("holdout") == "early_ids" else "")
        budget = f"s{r.get('seed')} {r.get('epochs')}x{r.get('max_train_images') or 'all'}"
        line = (
            f"{r['entry']:<3}{name[:31]:<32}{budget:<15}{_ci(r, 'accuracy'):>19}{_ci(r, 'sensitivity'):>19}"
            f"{_ci(r, 'specificity'):>19}{_ci(r, 'auc'):>19}{r['threshold']:>6.2f}{r['lift_normal']:>7.2f}"
            f"{r['lift_pneumonia']:>7.2f}{r['minutes']:>6.1f}"
        )
        if stressed:
            st = r.get("stress") or {}
            line += f"{st.get('stress_accuracy_ext', float('nan')):>12.3f}{st.get('stress_specificity', float('nan')):>11.3f}"
        lines.append(line)
    lines.append(
        "budget = epochs x training images per epoch; test split (early-ID: the early-ID holdout's), (bootstrap 95% CI); lift = Grad-CAM (PNEUMONIA logit) energy share inside the lung fields / their area share, 1 = no preference "
        "(NORMAL / PNEUMONIA films); min = training "
        "minutes"
        + (
            "; str. = mean over the stress test's shifted copies, accuracy re-weighted to 37.5% NORMAL"
            if stressed
            else ""
        )
    )
    return "\n".join(lines)
