"""What the notebooks show over seeds: seed tables, the budget rule, headlines and verdicts, ablation, cohort."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..analysis.cam import recorded_sanity
from ..core.config import ExperimentConfig
from ..notebook.cohort_views import cohort_recipes
from ..notebook.display import caption, collapse_seed_flags, fmt, grouped, maps_checked, metrics_of, show, span, with_ci
from ..notebook.series import tidy
from ..studies import verdicts


def seed_table(results) -> pd.DataFrame:
    """Per-seed test metrics (95% intervals by patient), then their mean and range over the seeds; `show` displays
    it as two tables (the test metrics, then each seed's training record) of at most MAX_COLUMNS columns."""
    ms = [metrics_of(r) for r in results]
    keys = (
        ("accuracy", "accuracy"),
        ("sensitivity", "PNEUMONIA recall"),
        ("specificity", "NORMAL recall"),
        ("auc", "AUC"),
    )
    rows, index = [], []
    for m in ms:
        t = m["test"]
        row = {label: with_ci(t[k], t.get("ci95", {}).get(k)) for k, label in keys}
        c = m.get("config") or {}
        best = m.get("best_epoch")
        last = m.get("test_last_epoch")
        row.update(
            {
                "budget": f"{c.get('epochs')} ep x {c.get('max_train_images') or 'all'} img",
                "threshold": fmt(m.get("threshold"), 2),
                "trained at commit": str(m.get("trained_commit", "")),
                # a model that did not learn, by validation evidence (verdict_rule.untrained), not by its epoch
                "kept epoch": f"{best} (UNTRAINED)" if verdicts.untrained(m) else str(best),
                "last epoch: accuracy / NORMAL recall": (
                    "= kept"
                    if last and last.get("same_as_kept")
                    else f"{fmt(last['accuracy'])} / {fmt(last['specificity'])} (epoch {last['epoch']})"
                    if last
                    else "not kept (trained before last_epoch.pt)"
                ),
                "weights": "random init" if "random init" in str(m.get("weights", "")) else str(m.get("weights")),
                # the kept checkpoint on validation: one class for >= 95% of films is a collapse, flagged here and
                # in every verdict that reads this seed (studies.verdicts.collapsed)
                # collapsed at its cut, which a model that ranks well can be too: not the same as untrained
                "collapsed?": _collapse_cell(m),
                "Grad-CAM maps' checks": (
                    maps_checked(recorded_sanity(m.get("gradcam"))) if m.get("gradcam") else "no Grad-CAM run"
                ),
            }
        )
        rows.append(row)
        index.append(f"seed {(m.get('config') or {}).get('seed')}")
    n = len(ms)
    label = f"{n} seed{'s' if n != 1 else ''}"
    mean = {lab: fmt(float(np.mean([m["test"][k] for m in ms]))) for k, lab in keys}
    rng = {lab: f"{fmt(min(m['test'][k] for m in ms))}-{fmt(max(m['test'][k] for m in ms))}" for k, lab in keys}
    rows += [mean, rng]
    index += [f"mean of {label}", f"range over {label}"]
    frame = pd.DataFrame(rows, index=index).fillna("")
    metrics = [lab for _, lab in keys] + ["threshold"]
    return grouped(
        frame,
        {
            "test split per seed (95% intervals by patient), then over the seeds": metrics,
            "each seed's training": [c for c in frame.columns if c not in metrics],
        },
    )


def _collapse_cell(m: dict[str, Any]) -> str:
    """'no', or 'COLLAPSED at its cut: calls 100% of ... (validation AUC 0.901)': the cut failed, whatever the
    ranking (untrained, a ranking near chance, is the 'kept epoch' column's)."""
    why = verdicts.collapsed(m)
    if not why:
        return "no"
    auc = (m.get("val") or {}).get("auc")
    return f"COLLAPSED at its cut: {why}" + (f" (validation AUC {fmt(auc)})" if auc is not None else "")


def budget_check(results) -> None:
    """The series' budget rule on the baseline's seeds (studies.verdicts.budget_rule): the series is rendered at the
    smallest budget at which no baseline seed collapses and every one reaches the validation AUC bar."""
    r = verdicts.budget_rule([metrics_of(x) for x in results])
    e, n, px = r["budget"] or (None, None, None)
    print(
        f"Budget rule (pneumolib.studies.verdicts.budget_rule): every baseline seed's kept checkpoint reaches "
        f"validation AUC >= {verdicts.BUDGET_MIN_VAL_AUC} and none collapses (>= {verdicts.COLLAPSE_SHARE:.0%} of "
        f"validation films in one class). Budget here: "
        + (f"{e} epochs x {n or 'all'} films per epoch, {px} px." if r["budget"] else "seeds at different budgets.")
    )
    show(
        pd.DataFrame(
            [
                {
                    "seed": x["seed"],
                    "validation AUC": fmt(x["val_auc"]),
                    "kept epoch": x["kept_epoch"],
                    "collapsed?": x["collapse"] or "no",
                }
                for x in r["rows"]
            ]
        ).set_index("seed")
    )
    print(
        "The budget "
        + (
            "PASSES the rule."
            if r["passes"]
            else "FAILS the rule: verdicts at this budget read models that did not train."
        )
    )


def checkpoint_table(results) -> pd.DataFrame:
    """Checkpoint stability per seed: validation metrics of the kept (best, lowest val loss) epoch next to the last
    epoch's, from the training record."""
    rows, index = [], []
    for r in results:
        m = metrics_of(r)
        hist = m.get("history") or []
        if not hist:
            continue
        best = next((h for h in hist if h["epoch"] == m.get("best_epoch")), hist[-1])
        last = hist[-1]
        rows.append(
            {
                "best epoch": int(best["epoch"]),
                "last epoch": int(last["epoch"]),
                "val loss (best)": round(best["val_loss"], 3),
                "val loss (last)": round(last["val_loss"], 3),
                "val AUC (best)": round(best["val_auc"], 3),
                "val AUC (last)": round(last["val_auc"], 3),
                "val acc@0.5 (best)": round(best["val_acc"], 3),
                "val acc@0.5 (last)": round(last["val_acc"], 3),
            }
        )
        index.append(f"seed {(m.get('config') or {}).get('seed')}")
    epochs = ["best epoch", "last epoch"]
    return grouped(
        pd.DataFrame(rows, index=index),
        {
            "validation loss and AUC, kept (best) and last epoch": epochs
            + ["val loss (best)", "val loss (last)", "val AUC (best)", "val AUC (last)"],
            "validation accuracy at 0.5, kept (best) and last epoch": epochs
            + ["val acc@0.5 (best)", "val acc@0.5 (last)"],
        },
    )


def seed_overview(by_entry: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per experiment: mean and range over its seeds of the test metrics."""
    rows, index = [], []
    for entry, ms in by_entry.items():
        if not ms:
            continue
        m0 = ms[0]
        row = {"seeds": len(ms)}
        for k, label in (
            ("accuracy", "accuracy"),
            ("sensitivity", "PNEUMONIA recall"),
            ("specificity", "NORMAL recall"),
            ("auc", "AUC"),
        ):
            v = [m["test"][k] for m in ms]
            row[label] = f"{fmt(float(np.mean(v)))} ({fmt(min(v))}-{fmt(max(v))})"
        rows.append(row)
        index.append(
            f"{entry} {m0['experiment']}" + (" (random init)" if "unavailable" in str(m0.get("weights", "")) else "")
        )
    print("test split: mean over seeds (range over seeds)")
    return pd.DataFrame(rows, index=index)


HEADLINE_PENDING = (
    "*Finding: filled in by the verdict cell ('Log vs re-run') when the notebook has run to it; "
    "if you see this line, it has not.*"
)


def headline(entry: str) -> None:
    """The finding box under a notebook's title: a placeholder now, replaced by `log_vs_rerun` with the entry's
    finding in at most two plain sentences (verdicts.headline: its main claim, then how the others fared), a Jupyter
    display updated in place, so the box is computed from the same runs as the verdict table, never typed."""
    from IPython.display import Markdown, display

    display(Markdown(HEADLINE_PENDING), display_id=f"headline-{entry}")


def headline_markdown(entry: str, rows: list[dict[str, Any]], n_seeds: int, budget: str) -> str:
    """The box under the title: the entry's finding in at most two plain sentences (verdicts.headline, from the
    judged claims' numbers), then on a line of its own the seeds and budget it rests on."""
    text = verdicts.headline(rows) or "The log made no claim to judge here."
    return (
        f"**Finding.** {text}\n\n*{n_seeds} seed{'s' if n_seeds != 1 else ''}, {budget}; each claim with its "
        "number, interval and verdict: [Log vs re-run](#Log-vs-re-run).*"
    )


def rule_text(n: int) -> str:
    """The verdict rule in two sentences (pneumolib.studies.verdict_rule.settle), printed above the verdict table."""
    return (
        f"{n} seed{'s' if n != 1 else ''}, one budget. Each quantity is the mean over seeds, and a comparison the "
        "mean of paired differences, seed i against the other entry's seed i on the same test films; its 95% interval "
        "resamples the seeds, then the patients within each class (pneumolib.core.stats.seed_effect), widened by "
        "Student's t for few seeds, and is clipped to what the quantity can take. The claim holds when the whole "
        "interval lies on its side of the threshold, does not hold when it lies on the other side, and 'cannot "
        "tell' says how many seeds or films would decide it (pneumolib.studies.verdict_rule.settle)."
    )


def judge_inputs(
    entry: str, metrics_by_seed, reference: dict[str, list] | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The verdict rule's inputs for ENTRY: its runs' metrics, and the runs its claims compare with, plus the cohort
    record's measurements of these very runs when a claim needs them (what log_vs_rerun and the sensitivity row
    judge)."""
    from ..studies import verdicts as V

    ms = [metrics_of(r) for r in metrics_by_seed]
    reference = {k: [metrics_of(r) for r in v] for k, v in (reference or {}).items()}
    # the record's measurements of these very runs, and of the recipe as the record last measured it
    reference.update(V.cohort_reference(entry, cohort_recipes(), ms))
    return ms, reference


def log_vs_rerun(entry: str, metrics_by_seed, reference: dict[str, list] | None = None) -> None:
    """The log's claims for this entry, each with the quantity measured over all seeds, its interval and a verdict
    (pneumolib.studies.verdicts holds the claims, pneumolib.studies.verdict_rule the rule)."""
    from ..studies import verdicts as V

    ms, reference = judge_inputs(entry, metrics_by_seed, reference)
    judged = V.judge_entry(entry, ms, reference)
    budgets = sorted({V.budget(m) for m in ms}, key=str)
    budget = "; ".join(f"{e} epochs x {n or 'all'} films per epoch, {px} px" for e, n, px in budgets)
    from IPython.display import Markdown, update_display

    update_display(Markdown(headline_markdown(entry, judged, len(ms), budget)), display_id=f"headline-{entry}")
    print("Each claim in plain words (the table below gives its quantity, interval and note):")
    for r in judged:
        print(f"- {collapse_seed_flags(V.sentence(r))}")
    print(rule_text(len(ms)))
    show(verdict_frame(judged))


def verdict_frame(judged: list[dict[str, Any]]) -> pd.DataFrame:
    """The 'Log vs re-run' table from judged rows (verdicts.judge): the claim (the log's words for entries 01-09, the
    recipe's own hypothesis for 10), what is measured, the mean, interval, each seed's value (the seeds' range where
    only that was recorded) and, for a comparison, the probability of improvement in words (verdicts.improvement),
    the verdict and its note: MAX_COLUMNS wide."""
    rows = []
    for r in judged:
        each = r.get("per_seed") or ()
        seeds = (
            f"{', '.join(fmt(v) for v in each)} ({r['n']})"
            if each  # the seeds' own values, disagreement and all (issue 47); else their range
            else f"{span(r['range'])} ({r['n']})"
            if r["range"]
            else f"({r['n']})"
        )
        better = verdicts.improvement(r)
        rows.append(
            {
                "claim": f'"{r["claim"]}"',
                "measured": r["quantity"],
                "holds if": r["claimed"],
                "mean": fmt(r["mean"]) if r["n"] else "not measured (see note)",
                "interval": span(r["interval"]),
                "per seed (n); P(improvement)": seeds + (f"; {better}" if better else ""),
                "verdict": r["verdict"],
                "note": collapse_seed_flags(r["note"]),
            }
        )
    return pd.DataFrame(rows).set_index("claim")


def stress_table(reports: dict[str, Any]) -> pd.DataFrame:
    """Per-shift metrics of stress reports (stress.StressReport) by model: the reports of one model's seeds (named
    'MODEL, seed N' or 'MODEL seed N') pooled into one block, each cell the mean over its seeds with their range,
    so that 5 seeds of 2 models are two tables of at most MAX_COLUMNS columns (`show`), not 40 columns."""
    import re

    cols = {"accuracy_ext": "acc@ext", "sensitivity": "PNEUMONIA recall", "specificity": "NORMAL recall", "auc": "AUC"}
    by_model: dict[str, list[pd.DataFrame]] = {}
    groups: dict[str, str] = {}
    for name, rep in reports.items():
        df = pd.DataFrame(rep.rows).set_index("shift")
        groups.update(df["group"].to_dict())
        df = df[list(cols)].astype(float)
        shifted = df.drop(index="clean", errors="ignore")
        df.loc["mean of shifted"] = shifted.mean()
        df.loc["worst shifted"] = shifted.min()
        model = re.sub(r",? seed \S+$", "", name)
        by_model.setdefault(model, []).append(df.rename(columns=cols))

    def cell(values: list[float]) -> str:
        if len(values) == 1:
            return fmt(values[0])
        return f"{fmt(float(np.mean(values)))} ({fmt(min(values))}-{fmt(max(values))})"

    frames = {}
    for model, dfs in by_model.items():
        n = len(dfs)
        title = f"{model} ({n} seed{'s' if n != 1 else ''}{': mean (range over seeds)' if n > 1 else ''})"
        frames[title] = pd.DataFrame(
            {c: [cell([d.loc[i, c] for d in dfs]) for i in dfs[0].index] for c in cols.values()}, index=dfs[0].index
        )
    out = pd.concat(frames, axis=1)
    out.insert(0, ("", "group"), [groups.get(i, "") for i in out.index])
    print("acc@ext = accuracy re-weighted to the external cohort's 37.5% NORMAL; each model at its own threshold")
    return grouped(out, {t: [("", "group"), *[(t, c) for c in cols.values()]] for t in frames})


def protocols(rows: list[dict[str, Any]]):
    """How each protocol ranks the ablation steps, and the figure; a line when there is no ablation."""
    from ..studies.protocol import plot_protocols, protocol_agreement

    if not rows:
        print("no ablation in this render: nothing to rank")
        return None
    print(protocol_agreement(rows))
    fig = plot_protocols(rows)
    acc = [r["folders"]["accuracy"] for r in rows]
    stress = [(r.get("stress") or {}).get("stress_accuracy_ext", np.nan) for r in rows]
    drop = np.nanmean(np.array(acc, float) - np.array(stress, float)) if not np.isnan(stress).all() else np.nan
    caption(
        f"each of the {len(rows)} ablation steps (rows, top to bottom as in the table) scored by each protocol: "
        f"left accuracy, right NORMAL recall. A protocol that agrees with the random split draws its points on top of "
        f"it; the stress test's acc@ext lies {fmt(drop)} below the random split's accuracy on average over the steps."
    )
    return fig


def ablation_table(rows: list[dict[str, Any]]) -> None:
    """The ablation rows (or the matched baseline's) as one table, every score to three decimals; a line when there
    are none."""
    from ..studies.protocol import ablation_frame
    from ..studies.stress import EXTERNAL_NORMAL_SHARE

    if not rows:
        print("no rows: not trained in this render (see above)")
        return
    frame = ablation_frame(rows)
    if any(col == "acc@ext" for _, col in frame.columns):
        print(
            f"acc@ext = accuracy re-weighted to {EXTERNAL_NORMAL_SHARE:.1%} NORMAL films, the external cohort's "
            "mix; each model at its own threshold"
        )
    with pd.option_context("display.float_format", "{:.3f}".format):  # one row alone would print 0.610 as 0.61
        show(frame)


def budget(config: ExperimentConfig, profile: str) -> None:
    """The training budget of a config under a profile, in words."""
    from ..studies.protocol import budget_of, budget_words

    print(f"{config.name} under profile {profile}: {budget_words(budget_of(config, profile))}")


def shortcut_audit(reports: dict[str, dict]) -> None:
    """Shortcut audits (shortcuts.audit_run reports) by name, as the CLI prints them."""
    from ..studies.shortcuts import format_audit

    for name, rep in reports.items():
        print(f"{name} ({rep['split']} split, {rep['n']} films):")
        print(tidy(format_audit(rep)))
        print()


def audit_reading(reports: dict[str, dict]) -> None:
    """The shortcut audits read in words, computed from their numbers: the share of decisions that filling the
    outside (and the inside) of the lung fields flips, against the lung criterion fixed before any audit
    (studies.candidates.LUNG_BOUND); the probe's AUC on the whole film and on the model's input; the worst group."""
    from ..studies.candidates import LUNG_BOUND

    for name, rep in reports.items():
        out, ins = rep["outside_lung_reliance"], rep["inside_lung_reliance"]
        per = out.get("per_class", {})
        looks = out["flipped_share"] <= LUNG_BOUND and out["mean_abs_change"] < ins["mean_abs_change"]
        w = (rep.get("worst_group") or {}).get("worst") or {}
        print(
            f"{name}: filling everything outside the lung fields flips {out['flipped_share']:.1%} "
            f"{span(out.get('flipped_share_ci95'))} of the decisions (NORMAL films "
            f"{per.get('NORMAL', {}).get('flipped_share', float('nan')):.1%}, PNEUMONIA films "
            f"{per.get('PNEUMONIA', {}).get('flipped_share', float('nan')):.1%}); filling the inside flips "
            f"{ins['flipped_share']:.1%}. By the lung criterion (at most {LUNG_BOUND:.0%} flipped by the outside, and "
            f"less change from the outside than from the inside: mean |change| {fmt(out['mean_abs_change'])} vs "
            f"{fmt(ins['mean_abs_change'])}) this model "
            + (
                "looks at the lungs."
                if looks
                else "READS OUTSIDE THE LUNGS: its decisions depend on the film's "
                "surroundings, not only on the lung fields."
            )
            + f" A probe on ten acquisition statistics separates the classes with AUC {fmt(rep['probe_auc'])} on "
            f"the whole film and {fmt(rep.get('probe_auc_model_input'))} on the model's input (0.5 = no shortcut "
            f"to learn); the worst group is the {w.get('class', '?')} films on which the "
            f"{str(w.get('half', '?')).replace('probe ', 'probe ')} with the label, recall {fmt(w.get('recall'))} "
            f"{span(w.get('ci95'))}."
        )
    print(
        "(For a lung-mask model, 'outside' is the ring its dilation keeps around the lung mask, filled black; the "
        "rest of the film is black in its input already.)"
    )
