"""The recipe candidates: the selection on validation (select), and the test-split table for the final report.

`select` is how a recipe is chosen (issue 22): a candidate must look at the lungs (its shortcut audit on validation
stays within LUNG_BOUND), and among those the validation metrics decide, over seeds trained at one budget, paired
by seed. The test split is never read by it.

The test-split table (compare/report) describes candidates after the choice:

Run folders are finished `train` runs; nothing is trained here and every number is recomputed from the
checkpoints (`python -m pneumolib candidates --data-dir DIR NAME=RUN_DIR[,RUN_DIR...] ...`). Columns per run:
internal test at the checkpoint threshold; stress mean and worst NORMAL recall over the shifts; held-out: mean
NORMAL recall over the shifts no candidate trains on (HELD_OUT); the 'youden' vs 'youden_shifted' thresholds, each
scored on the shifted test copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.evaluate import expected_calibration_error, fit_threshold, point_metrics, predict_samples
from ..core.io import RecordError, load_record, read_record
from ..core.runs import RunDir, load_metrics
from ..core.scores import read_scores
from ..core.stats import auc_score
from ..models.checkpoint import Predictor
from ..studies.runs import open_run
from ..studies.stress import report_at, shifted_scores
from ..training.ensemble import build_ensemble

HELD_OUT = ("high_contrast", "jpeg", "sharpen")

# A model "looks at the lungs" when replacing every pixel outside its lung fields by a neutral fill flips at most
# this share of its validation decisions (mean over seeds), and changes P(PNEUMONIA) less than the same change
# inside the lungs does. Set before any candidate's audit was run: a model whose answer changes on more than one
# film in ten when nothing inside the lungs changed reads the film's surroundings.
LUNG_BOUND = 0.10


def _val_metrics(run_dir: Path) -> dict[str, float]:
    """AUC and both recalls on the run's validation split at its checkpoint threshold (scores_val.csv)."""
    df = read_scores(RunDir(run_dir).scores_val)
    y, p, called = df["y"].to_numpy(), df["p_pneumonia"].to_numpy(), df["called"].to_numpy()
    return {
        "n": len(df),
        "auc": auc_score(y, p),
        "pneumonia_recall": float(called[y == 1].mean()),
        "normal_recall": float((1 - called[y == 0]).mean()),
        "balanced_accuracy": float((called[y == 1].mean() + (1 - called[y == 0]).mean()) / 2),
    }


def _audit(run_dir: Path) -> dict | None:
    f = RunDir(run_dir).path / "shortcuts_val.json"
    return load_record(f)


def report_file(path: str | Path) -> str:
    """The tables of a saved `candidates --json` file; RecordError (one line) for a file that is not one."""
    results = read_record(path, typed=False)
    try:
        return report(results)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise RecordError(
            f"{path}: not a `candidates --json` file pneumolib wrote ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:80]})"
        ) from None


def select(groups: dict[str, list[Path]], bound: float = LUNG_BOUND) -> dict:
    """Validation evidence per candidate and seed, the lung criterion, and the choice: among the candidates that
    meet it, the highest mean validation AUC (ties: balanced accuracy); None when none meets it or none was audited.
    Reads only scores_val.csv and shortcuts_val.json (`shortcuts RUN_DIR --split val`) in each run folder."""
    out: dict = {"bound": bound, "candidates": {}}
    for name, runs in groups.items():
        rows = []
        for d in runs:
            m, a = _val_metrics(d), _audit(d)
            cfg = load_metrics(d).get("config") or {}
            rows.append(
                {
                    "run": str(d),
                    "seed": cfg.get("seed"),
                    "budget": f"{cfg.get('epochs')}x{cfg.get('max_train_images') or 'all'}",
                    **m,
                    "outside_flipped": a["outside_lung_reliance"]["flipped_share"] if a else None,
                    "outside_change": a["outside_lung_reliance"]["mean_abs_change"] if a else None,
                    "inside_change": a["inside_lung_reliance"]["mean_abs_change"] if a else None,
                    "probe_auc": a["probe_auc"] if a else None,
                    "probe_auc_input": a.get("probe_auc_model_input") if a else None,
                    "worst_group": a["worst_group"]["worst"]["recall"] if a else None,
                }
            )
        audited = all(r["outside_flipped"] is not None for r in rows)
        mean = {
            k: float(np.mean([r[k] for r in rows]))
            for k in ("auc", "balanced_accuracy", "normal_recall", "pneumonia_recall")
        }
        if audited:
            mean.update(
                {
                    k: float(np.mean([r[k] for r in rows]))
                    for k in ("outside_flipped", "outside_change", "inside_change", "worst_group")
                }
            )
        looks = audited and mean["outside_flipped"] <= bound and mean["outside_change"] < mean["inside_change"]
        budgets = {r["budget"] for r in rows}
        out["candidates"][name] = {
            "runs": rows,
            "mean": mean,
            "audited": audited,
            "looks_at_lungs": looks,
            "budgets": sorted(budgets),
        }
    eligible = [n for n, c in out["candidates"].items() if c["looks_at_lungs"]]
    out["chosen"] = max(
        eligible,
        key=lambda n: (out["candidates"][n]["mean"]["auc"], out["candidates"][n]["mean"]["balanced_accuracy"]),
        default=None,
    )
    if len({b for c in out["candidates"].values() for b in c["budgets"]}) > 1:
        out["warning"] = "candidates trained at different budgets: not comparable"
    return out


def format_selection(sel: dict) -> str:
    """The selection as a markdown table, paired differences against the first candidate, and the choice."""

    def f(v, fmt=".3f"):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        "| candidate, seed (budget) | val AUC | val PNEUMONIA / NORMAL recall | outside-lung flips | "
        "outside / inside mean abs change | worst group recall | probe AUC: whole film / model input |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in sel["candidates"].items():
        for r in c["runs"]:
            lines.append(
                f"| {name} s{r['seed']} ({r['budget']}) | {f(r['auc'])} | {f(r['pneumonia_recall'])} / "
                f"{f(r['normal_recall'])} | {f(r['outside_flipped'], '.1%')} | {f(r['outside_change'])} / "
                f"{f(r['inside_change'])} | {f(r['worst_group'])} | {f(r['probe_auc'])} / "
                f"{f(r['probe_auc_input'])} |"
            )
        m = c["mean"]
        lines.append(
            f"| **{name}, mean of {len(c['runs'])}** | {f(m['auc'])} | {f(m['pneumonia_recall'])} / "
            f"{f(m['normal_recall'])} | {f(m.get('outside_flipped'), '.1%')} | {f(m.get('outside_change'))} "
            f"/ {f(m.get('inside_change'))} | {f(m.get('worst_group'))} | |"
        )
    names = list(sel["candidates"])
    if len(names) >= 2:
        base = {r["seed"]: r for r in sel["candidates"][names[0]]["runs"]}
        for other in names[1:]:
            runs = {r["seed"]: r for r in sel["candidates"][other]["runs"]}
            seeds = sorted(set(base) & set(runs))
            if len(seeds) >= 2:
                lines.append(
                    f"\n{other} minus {names[0]}, paired by seed ({', '.join(map(str, seeds))}): mean ± sd "
                    "[better/equal/worse]"
                )
                for k in ("auc", "normal_recall", "pneumonia_recall", "outside_flipped", "worst_group"):
                    if any(runs[s][k] is None or base[s][k] is None for s in seeds):
                        continue
                    d = np.array([runs[s][k] - base[s][k] for s in seeds])
                    lines.append(
                        f"  {k:<18}{_mean_sd(d):>16}  [{(d > 5e-4).sum()}/{(abs(d) <= 5e-4).sum()}/{(d < -5e-4).sum()}]"
                    )
    for name, c in sel["candidates"].items():
        why = (
            "not audited (run `shortcuts RUN_DIR --split val`)"
            if not c["audited"]
            else "looks at the lungs"
            if c["looks_at_lungs"]
            else f"reads outside the lungs (flips {c['mean']['outside_flipped']:.1%} > {sel['bound']:.0%}, or changes "
            "more outside than inside)"
        )
        lines.append(f"- {name}: {why}")
    lines.append(
        f"choice (highest mean validation AUC among those that look at the lungs): "
        f"{sel['chosen'] or 'none: no candidate meets the lung criterion'}"
    )
    if sel.get("warning"):
        lines.append(f"WARNING: {sel['warning']}")
    return "\n".join(lines)


def _under_shifts(scores: dict, threshold: float) -> dict[str, float]:
    """The stress report at one threshold (stress.report_at), summarised as the candidate table reads it."""
    rep = report_at(scores, threshold)
    rows = {r["shift"]: r for r in rep.rows if r["shift"] != "clean"}
    s = rep.summary()

    def held(k):
        return float(np.mean([rows[n][k] for n in rows if n in HELD_OUT]))

    worst = min(rows, key=lambda k: rows[k]["specificity"])
    return {
        "threshold": threshold,
        "mean_spec": s["stress_specificity"],
        "mean_sens": s["stress_sensitivity"],
        "mean_acc_ext": s["stress_accuracy_ext"],
        "worst_spec": s["worst_specificity"],
        "worst_shift": worst,
        "held_spec": held("specificity"),
        "held_sens": held("sensitivity"),
        "held_acc_ext": held("accuracy_ext"),
        "mean_auc": s["stress_auc"],
        "clean": point_metrics(scores["clean"].labels, scores["clean"].probs, threshold),
    }


def analyse(pred: Predictor, data) -> dict:
    """One model's candidate row: clean and shifted test scores at its own threshold and at the Youden and
    youden_shifted thresholds fitted on validation."""
    test = shifted_scores(pred.model, data["test"], pred.preprocessing, tta=pred.config.tta, resources=data.resources)
    val = predict_samples(pred.model, data["val"], pred.preprocessing, tta=pred.config.tta, resources=data.resources)
    t_youden, t_shifted = (
        fit_threshold(rule, pred.model, val, pred.preprocessing, tta=pred.config.tta, resources=data.resources)
        for rule in ("youden", "youden_shifted")
    )
    return {
        "checkpoint_threshold": pred.threshold,
        "ece_test": expected_calibration_error(test["clean"].labels, test["clean"].probs),
        "at_checkpoint": _under_shifts(test, pred.threshold),
        "youden": _under_shifts(test, t_youden),
        "youden_shifted": _under_shifts(test, t_shifted),
    }


def _fmt_run(label, r) -> str:
    c, s = r["at_checkpoint"]["clean"], r["at_checkpoint"]
    return (
        f"| {label} | {c['accuracy']:.3f} / {c['sensitivity']:.3f} / {c['specificity']:.3f} / {c['auc']:.3f} "
        f"| {r['ece_test']:.3f} | {s['mean_spec']:.3f} | {s['worst_spec']:.3f} ({s['worst_shift']}) "
        f"| {s['held_spec']:.3f} | {s['mean_auc']:.3f} |"
    )


def _fmt_rule(label, r) -> str:
    y, s = r["youden"], r["youden_shifted"]
    return (
        f"| {label} | {y['threshold']:.3f} -> {s['threshold']:.3f} "
        f"| {y['mean_spec']:.3f} -> {s['mean_spec']:.3f} | {y['mean_sens']:.3f} -> {s['mean_sens']:.3f} "
        f"| {y['mean_acc_ext']:.3f} -> {s['mean_acc_ext']:.3f} | {y['held_spec']:.3f} -> {s['held_spec']:.3f} "
        f"| {y['held_acc_ext']:.3f} -> {s['held_acc_ext']:.3f} "
        f"| {y['clean']['specificity']:.3f} -> {s['clean']['specificity']:.3f} |"
    )


def compare(root, groups: dict[str, list[Path]], *, ensemble: bool = True, progress=None) -> dict:
    """analyse() every run folder of every candidate (and, with ensemble, each candidate's seed ensemble)."""
    results: dict[str, dict] = {}
    for name, runs in groups.items():
        results[name] = {"runs": {}, "ensemble": None}
        for d in runs:
            o = open_run(d, root)
            pred = o.predictor
            r = analyse(pred, o.data)
            r["seed"], r["budget"] = pred.config.seed, f"{pred.config.epochs}x{pred.config.max_train_images or 'all'}"
            results[name]["runs"][str(d)] = r
            if progress:
                progress(f"[{name}] {d}: done")
        if len(runs) > 1 and ensemble:
            data = open_run(runs[0], root).data  # the first member's seeded split
            ens = build_ensemble([RunDir(d).checkpoint for d in runs], data["val"], resources=data.resources)
            r = analyse(ens, data)
            r["temperature"] = ens.extra["ensemble"]["temperature"]
            results[name]["ensemble"] = r
    return results


def parse_groups(specs: list[str]) -> dict[str, list[Path]]:
    """['NAME=RUN_DIR[,RUN_DIR...]', ...] -> {NAME: [Path, ...]}; ValueError naming a malformed one."""
    out = {}
    for g in specs:
        name, sep, dirs = g.partition("=")
        runs = [Path(d) for d in dirs.split(",") if d]
        if not sep or not name or not runs:
            raise ValueError(f"candidate {g!r}: expected NAME=RUN_DIR[,RUN_DIR...]")
        out[name] = runs
    return out


def _table(header: list[str], lines: list[str]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *lines])


def _mean_sd(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def report(results: dict) -> str:
    """The two tables (markdown) and the paired differences, as text, from compare()'s results."""
    text = [_runs_table(results), "", _rules_table(results)]
    text += _paired_candidates(results)
    text += _shifted_minus_youden(results)
    return "\n".join(text)


def _runs_table(results: dict) -> str:
    """One row per run (and per candidate's mean ± sd over seeds, and its ensemble) at the checkpoint threshold."""
    lines = []
    for name, g in results.items():
        rs = list(g["runs"].values())
        lines += [_fmt_run(f"{name} s{r['seed']} ({r['budget']})", r) for r in rs]
        if len(rs) > 1:
            at = [r["at_checkpoint"] for r in rs]
            cells = [
                f"NORMAL {_mean_sd([a['clean']['specificity'] for a in at])}, "
                f"AUC {_mean_sd([a['clean']['auc'] for a in at])}",
                _mean_sd([r["ece_test"] for r in rs]),
            ]
            cells += [_mean_sd([a[k] for a in at]) for k in ("mean_spec", "worst_spec", "held_spec", "mean_auc")]
            lines.append(f"| **{name}, mean ± sd of {len(rs)} seeds** | " + " | ".join(cells) + " |")
        if g["ensemble"]:
            lines.append(
                _fmt_run(f"{name}, ensemble of {len(rs)} (T {g['ensemble']['temperature']:.2f})", g["ensemble"])
            )
    return _table(
        [
            "run (seed, budget)",
            "internal acc / PNEU / NORMAL / AUC",
            "ECE",
            "stress mean NORMAL",
            "stress worst NORMAL",
            "held-out NORMAL",
            "stress mean AUC",
        ],
        lines,
    )


def _rules_table(results: dict) -> str:
    """One row per run (and ensemble): the 'youden' threshold against 'youden_shifted', on the shifted test copies."""
    lines = []
    for name, g in results.items():
        lines += [_fmt_rule(f"{name} s{r['seed']}", r) for r in g["runs"].values()]
        if g["ensemble"]:
            lines.append(_fmt_rule(f"{name}, ensemble", g["ensemble"]))
    return _table(
        [
            "run",
            "threshold youden -> youden_shifted",
            "mean NORMAL",
            "mean PNEU",
            "mean acc@37.5% NORMAL",
            "held-out NORMAL",
            "held-out acc@37.5%",
            "clean NORMAL",
        ],
        lines,
    )


def _paired_candidates(results: dict) -> list[str]:
    """The second candidate with several seeds against the first, paired by seed; [] with fewer than two."""
    multi = [(n, g) for n, g in results.items() if len(g["runs"]) > 1]
    if len(multi) < 2:
        return []
    (na, ga), (nb, gb) = multi[:2]
    a = {r["seed"]: r for r in ga["runs"].values()}
    b = {r["seed"]: r for r in gb["runs"].values()}
    seeds = sorted(set(a) & set(b))
    text = [f"\n{nb} minus {na}, paired by seed ({', '.join(map(str, seeds))}): mean ± sd [better/equal/worse]"]
    for label, get in [
        ("internal AUC", lambda r: r["at_checkpoint"]["clean"]["auc"]),
        ("internal NORMAL recall", lambda r: r["at_checkpoint"]["clean"]["specificity"]),
        ("stress mean NORMAL recall", lambda r: r["at_checkpoint"]["mean_spec"]),
        ("stress worst NORMAL recall", lambda r: r["at_checkpoint"]["worst_spec"]),
        ("held-out NORMAL recall", lambda r: r["at_checkpoint"]["held_spec"]),
        ("stress mean AUC", lambda r: r["at_checkpoint"]["mean_auc"]),
    ]:
        d = np.array([get(b[s]) - get(a[s]) for s in seeds])
        text.append(
            f"  {label:<28}{_mean_sd(d):>16}  [{(d > 5e-4).sum()}/{(abs(d) <= 5e-4).sum()}/{(d < -5e-4).sum()}]"
        )
    return text


def _shifted_minus_youden(results: dict) -> list[str]:
    """youden_shifted minus youden over every run (mean ± sd); [] for a single run."""
    every = [r for g in results.values() for r in g["runs"].values()]
    if len(every) <= 1:
        return []
    d = {
        k: [r["youden_shifted"][k] - r["youden"][k] for r in every]
        for k in ("mean_spec", "mean_sens", "mean_acc_ext", "held_spec", "held_acc_ext")
    }
    return [
        f"\nyouden_shifted minus youden over {len(every)} runs (mean ± sd): "
        + ", ".join(f"{k} {_mean_sd(v)}" for k, v in d.items())
    ]
