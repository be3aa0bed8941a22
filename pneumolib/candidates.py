"""The recipe candidates' table: internal and stress-test metrics per seed, two threshold rules, seed ensembles.

Run folders are finished `train` runs; nothing is trained here and every number is recomputed from the
checkpoints (`python -m pneumolib candidates --data-dir DIR NAME=RUN_DIR[,RUN_DIR...] ...`). Columns per run:
internal test at the checkpoint threshold; stress mean and worst NORMAL recall over the shifts; held-out: mean
NORMAL recall over the shifts no candidate trains on (HELD_OUT); the 'youden' vs 'youden_shifted' thresholds, each
scored on the shifted test copies.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoint import Predictor
from .data import prepare
from .ensemble import build_ensemble
from .evaluate import expected_calibration_error, fit_threshold, point_metrics, predict_samples
from .runs import RunDir, load_metrics
from .stress import report_at, shifted_scores

HELD_OUT = ("high_contrast", "jpeg", "sharpen")


def _data(pred: Predictor, root, holdout: str):
    return prepare(root, seed=pred.config.seed, holdout=holdout, image_size=pred.preprocessing.view)


def _under_shifts(scores: dict, threshold: float) -> dict[str, float]:
    """The stress report at one threshold (stress.report_at), summarised as the candidate table reads it."""
    rep = report_at(scores, threshold)
    rows = {r["shift"]: r for r in rep.rows if r["shift"] != "clean"}
    s = rep.summary()

    def held(k):
        return float(np.mean([rows[n][k] for n in rows if n in HELD_OUT]))
    worst = min(rows, key=lambda k: rows[k]["specificity"])
    return {"threshold": threshold, "mean_spec": s["stress_specificity"], "mean_sens": s["stress_sensitivity"],
            "mean_acc_ext": s["stress_accuracy_ext"], "worst_spec": s["worst_specificity"], "worst_shift": worst,
            "held_spec": held("specificity"), "held_sens": held("sensitivity"), "held_acc_ext": held("accuracy_ext"),
            "mean_auc": s["stress_auc"],
            "clean": point_metrics(scores["clean"].labels, scores["clean"].probs, threshold)}


def analyse(pred: Predictor, data) -> dict:
    """One model's candidate row: clean and shifted test scores at its own threshold and at the Youden and
    youden_shifted thresholds fitted on validation."""
    test = shifted_scores(pred.model, data["test"], pred.preprocessing, tta=pred.config.tta)
    val = predict_samples(pred.model, data["val"], pred.preprocessing, tta=pred.config.tta)
    t_youden, t_shifted = (fit_threshold(rule, pred.model, val, pred.preprocessing, tta=pred.config.tta)
                           for rule in ("youden", "youden_shifted"))
    return {"checkpoint_threshold": pred.threshold,
            "ece_test": expected_calibration_error(test["clean"].labels, test["clean"].probs),
            "at_checkpoint": _under_shifts(test, pred.threshold),
            "youden": _under_shifts(test, t_youden),
            "youden_shifted": _under_shifts(test, t_shifted)}


def _fmt_run(label, r) -> str:
    c, s = r["at_checkpoint"]["clean"], r["at_checkpoint"]
    return (f"| {label} | {c['accuracy']:.3f} / {c['sensitivity']:.3f} / {c['specificity']:.3f} / {c['auc']:.3f} "
            f"| {r['ece_test']:.3f} | {s['mean_spec']:.3f} | {s['worst_spec']:.3f} ({s['worst_shift']}) "
            f"| {s['held_spec']:.3f} | {s['mean_auc']:.3f} |")


def _fmt_rule(label, r) -> str:
    y, s = r["youden"], r["youden_shifted"]
    return (f"| {label} | {y['threshold']:.3f} -> {s['threshold']:.3f} "
            f"| {y['mean_spec']:.3f} -> {s['mean_spec']:.3f} | {y['mean_sens']:.3f} -> {s['mean_sens']:.3f} "
            f"| {y['mean_acc_ext']:.3f} -> {s['mean_acc_ext']:.3f} | {y['held_spec']:.3f} -> {s['held_spec']:.3f} "
            f"| {y['held_acc_ext']:.3f} -> {s['held_acc_ext']:.3f} "
            f"| {y['clean']['specificity']:.3f} -> {s['clean']['specificity']:.3f} |")


def compare(root, groups: dict[str, list[Path]], *, ensemble: bool = True, progress=None) -> dict:
    """analyse() every run folder of every candidate (and, with ensemble, each candidate's seed ensemble)."""
    results: dict[str, dict] = {}
    for name, runs in groups.items():
        results[name] = {"runs": {}, "ensemble": None}
        for d in runs:
            run = RunDir(d)
            pred = Predictor.load(run.checkpoint)
            holdout = load_metrics(d).get("holdout", "folders")
            r = analyse(pred, _data(pred, root, holdout))
            r["seed"], r["budget"] = pred.config.seed, f"{pred.config.epochs}x{pred.config.max_train_images or 'all'}"
            results[name]["runs"][str(d)] = r
            if progress:
                progress(f"[{name}] {d}: done")
        if len(runs) > 1 and ensemble:
            first = Predictor.load(RunDir(runs[0]).checkpoint)
            data = _data(first, root, "folders")
            ens = build_ensemble([RunDir(d).checkpoint for d in runs], data["val"])
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
    text = []
    lines = []
    for name, g in results.items():
        rs = list(g["runs"].values())
        lines += [_fmt_run(f"{name} s{r['seed']} ({r['budget']})", r) for r in rs]
        if len(rs) > 1:
            at = [r["at_checkpoint"] for r in rs]
            cells = [f"NORMAL {_mean_sd([a['clean']['specificity'] for a in at])}, "
                     f"AUC {_mean_sd([a['clean']['auc'] for a in at])}", _mean_sd([r["ece_test"] for r in rs])]
            cells += [_mean_sd([a[k] for a in at]) for k in ("mean_spec", "worst_spec", "held_spec", "mean_auc")]
            lines.append(f"| **{name}, mean ± sd of {len(rs)} seeds** | " + " | ".join(cells) + " |")
        if g["ensemble"]:
            lines.append(_fmt_run(f"{name}, ensemble of {len(rs)} (T {g['ensemble']['temperature']:.2f})",
                                  g["ensemble"]))
    text.append(_table(["run (seed, budget)", "internal acc / PNEU / NORMAL / AUC", "ECE", "stress mean NORMAL",
            "stress worst NORMAL", "held-out NORMAL", "stress mean AUC"], lines))
    text.append("")
    lines = []
    for name, g in results.items():
        lines += [_fmt_rule(f"{name} s{r['seed']}", r) for r in g["runs"].values()]
        if g["ensemble"]:
            lines.append(_fmt_rule(f"{name}, ensemble", g["ensemble"]))
    text.append(_table(["run", "threshold youden -> youden_shifted", "mean NORMAL", "mean PNEU", "mean acc@37.5% NORMAL",
            "held-out NORMAL", "held-out acc@37.5%", "clean NORMAL"], lines))
    multi = [(n, g) for n, g in results.items() if len(g["runs"]) > 1]
    if len(multi) >= 2:  # the second candidate against the first, paired by seed
        (na, ga), (nb, gb) = multi[:2]
        a = {r["seed"]: r for r in ga["runs"].values()}
        b = {r["seed"]: r for r in gb["runs"].values()}
        seeds = sorted(set(a) & set(b))
        text.append(f"\n{nb} minus {na}, paired by seed ({', '.join(map(str, seeds))}): mean ± sd [better/equal/worse]")
        for label, get in [("internal AUC", lambda r: r["at_checkpoint"]["clean"]["auc"]),
                           ("internal NORMAL recall", lambda r: r["at_checkpoint"]["clean"]["specificity"]),
                           ("stress mean NORMAL recall", lambda r: r["at_checkpoint"]["mean_spec"]),
                           ("stress worst NORMAL recall", lambda r: r["at_checkpoint"]["worst_spec"]),
                           ("held-out NORMAL recall", lambda r: r["at_checkpoint"]["held_spec"]),
                           ("stress mean AUC", lambda r: r["at_checkpoint"]["mean_auc"])]:
            d = np.array([get(b[s]) - get(a[s]) for s in seeds])
            text.append(f"  {label:<28}{_mean_sd(d):>16}  [{(d > 5e-4).sum()}/{(abs(d) <= 5e-4).sum()}/{(d < -5e-4).sum()}]")
    every = [r for g in results.values() for r in g["runs"].values()]
    if len(every) > 1:
        d = {k: [r["youden_shifted"][k] - r["youden"][k] for r in every]
             for k in ("mean_spec", "mean_sens", "mean_acc_ext", "held_spec", "held_acc_ext")}
        text.append(f"\nyouden_shifted minus youden over {len(every)} runs (mean ± sd): "
              + ", ".join(f"{k} {_mean_sd(v)}" for k, v in d.items()))
    return "\n".join(text)
