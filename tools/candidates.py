"""Issue 12's candidate table: every seed's internal test and stress-test NORMAL recall, two threshold rules under
the shifts, and the seed ensemble of each candidate.

    python tools/candidates.py DATA_DIR NAME=RUN_DIR[,RUN_DIR...] [NAME=...] [--json OUT.json] [--no-ensemble]
    python tools/candidates.py - - --from-json OUT.json     # the tables again, from a saved --json

Run folders are finished `train` runs (checkpoint.pt, metrics.json, stress.json from `stress`). Nothing is trained
here; every number is recomputed from the checkpoints and printed, so the table in the README can be re-made.

Columns, per run:
- internal: the run's own test split at its checkpoint threshold (acc / PNEUMONIA recall / NORMAL recall / AUC);
- stress mean / worst: NORMAL recall over the 11 simulated shifts, mean and minimum (the selection signal);
- held-out: mean NORMAL recall over the shifts that no candidate trains on (high_contrast, jpeg, sharpen); the
  sharpness candidate trains on noise and resolution, so 'unseen' low_res and noise are not unseen for it;
- rule 'youden' vs 'youden_shifted': the threshold chosen on the clean validation split vs on the validation split
  pooled with its copies under the 'seen' shifts; each scored on the shifted test copies (mean NORMAL recall,
  mean PNEUMONIA recall, mean accuracy re-weighted to the cohort's 37.5% NORMAL), over all shifts and held-out ones.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pneumolib.checkpoint import Predictor
from pneumolib.data import apply_holdout, discover, prescan, resolve_data_dir
from pneumolib.ensemble import build_ensemble
from pneumolib.evaluate import expected_calibration_error, fit_threshold, point_metrics, predict_samples
from pneumolib.shifts import SHIFTS
from pneumolib.stress import external_accuracy

HELD_OUT = ("high_contrast", "jpeg", "sharpen")


def _data(pred: Predictor, root, holdout: str):
    data = discover(root, seed=pred.config.seed)
    data = apply_holdout(data, holdout)
    return prescan(data, pred.preprocessing.image_size)


def _scores(pred: Predictor, samples, shifts):
    """{'clean': (labels, probs), shift name: (labels, probs)}"""
    out = {}
    for shift in (None, *shifts):
        s = predict_samples(pred.model, samples, pred.preprocessing, tta=pred.config.tta, transform=shift)
        out[shift.name if shift else "clean"] = (s.labels, s.probs)
    return out


def _under_shifts(test, threshold: float) -> dict[str, float]:
    rows = {k: point_metrics(y, p, threshold) for k, (y, p) in test.items() if k != "clean"}

    def mean(keys, m):
        return float(np.mean([rows[k][m] for k in keys]))
    allk, held = list(rows), [k for k in rows if k in HELD_OUT]
    ext = {k: external_accuracy(r["sensitivity"], r["specificity"]) for k, r in rows.items()}
    worst = min(rows, key=lambda k: rows[k]["specificity"])
    return {"threshold": threshold,
            "mean_spec": mean(allk, "specificity"), "mean_sens": mean(allk, "sensitivity"),
            "mean_acc_ext": float(np.mean(list(ext.values()))),
            "worst_spec": rows[worst]["specificity"], "worst_shift": worst,
            "held_spec": mean(held, "specificity"), "held_sens": mean(held, "sensitivity"),
            "held_acc_ext": float(np.mean([ext[k] for k in held])),
            "mean_auc": mean(allk, "auc"),
            "clean": point_metrics(*test["clean"], threshold)}


def analyse(pred: Predictor, data) -> dict:
    test = _scores(pred, data["test"], SHIFTS)
    val = predict_samples(pred.model, data["val"], pred.preprocessing, tta=pred.config.tta)
    t_youden, t_shifted = (fit_threshold(rule, pred.model, val, pred.preprocessing, tta=pred.config.tta)
                           for rule in ("youden", "youden_shifted"))
    return {"checkpoint_threshold": pred.threshold,
            "ece_test": expected_calibration_error(*test["clean"]),
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir")
    ap.add_argument("groups", nargs="+", help="NAME=RUN_DIR[,RUN_DIR...]")
    ap.add_argument("--json")
    ap.add_argument("--no-ensemble", action="store_true")
    ap.add_argument("--from-json", help="print the tables from a saved --json file instead of recomputing")
    args = ap.parse_args(argv)
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()))
        return 0
    root, _ = resolve_data_dir(args.data_dir)
    results: dict[str, dict] = {}
    for g in args.groups:
        name, _, dirs = g.partition("=")
        runs = [Path(d) for d in dirs.split(",") if d]
        results[name] = {"runs": {}, "ensemble": None}
        for d in runs:
            pred = Predictor.load(d / "checkpoint.pt")
            holdout = json.loads((d / "metrics.json").read_text()).get("holdout", "folders")
            r = analyse(pred, _data(pred, root, holdout))
            r["seed"], r["budget"] = pred.config.seed, f"{pred.config.epochs}x{pred.config.max_train_images or 'all'}"
            results[name]["runs"][str(d)] = r
            print(f"[{name}] {d}: done", file=sys.stderr, flush=True)
        if len(runs) > 1 and not args.no_ensemble:
            first = Predictor.load(runs[0] / "checkpoint.pt")
            data = _data(first, root, "folders")
            ens = build_ensemble([d / "checkpoint.pt" for d in runs], data["val"])
            r = analyse(ens, data)
            r["temperature"] = ens.extra["ensemble"]["temperature"]
            results[name]["ensemble"] = r
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    report(results)
    return 0


def _table(header: list[str], lines: list[str]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("\n".join(lines))


def _mean_sd(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def report(results: dict) -> None:
    """Print the two tables (markdown) from analyse()'s results."""
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
    _table(["run (seed, budget)", "internal acc / PNEU / NORMAL / AUC", "ECE", "stress mean NORMAL",
            "stress worst NORMAL", "held-out NORMAL", "stress mean AUC"], lines)
    print()
    lines = []
    for name, g in results.items():
        lines += [_fmt_rule(f"{name} s{r['seed']}", r) for r in g["runs"].values()]
        if g["ensemble"]:
            lines.append(_fmt_rule(f"{name}, ensemble", g["ensemble"]))
    _table(["run", "threshold youden -> youden_shifted", "mean NORMAL", "mean PNEU", "mean acc@37.5% NORMAL",
            "held-out NORMAL", "held-out acc@37.5%", "clean NORMAL"], lines)
    multi = [(n, g) for n, g in results.items() if len(g["runs"]) > 1]
    if len(multi) >= 2:  # the second candidate against the first, paired by seed
        (na, ga), (nb, gb) = multi[:2]
        a = {r["seed"]: r for r in ga["runs"].values()}
        b = {r["seed"]: r for r in gb["runs"].values()}
        seeds = sorted(set(a) & set(b))
        print(f"\n{nb} minus {na}, paired by seed ({', '.join(map(str, seeds))}): mean ± sd [better/equal/worse]")
        for label, get in [("internal AUC", lambda r: r["at_checkpoint"]["clean"]["auc"]),
                           ("internal NORMAL recall", lambda r: r["at_checkpoint"]["clean"]["specificity"]),
                           ("stress mean NORMAL recall", lambda r: r["at_checkpoint"]["mean_spec"]),
                           ("stress worst NORMAL recall", lambda r: r["at_checkpoint"]["worst_spec"]),
                           ("held-out NORMAL recall", lambda r: r["at_checkpoint"]["held_spec"]),
                           ("stress mean AUC", lambda r: r["at_checkpoint"]["mean_auc"])]:
            d = np.array([get(b[s]) - get(a[s]) for s in seeds])
            print(f"  {label:<28}{_mean_sd(d):>16}  [{(d > 5e-4).sum()}/{(abs(d) <= 5e-4).sum()}/{(d < -5e-4).sum()}]")
    every = [r for g in results.values() for r in g["runs"].values()]
    if len(every) > 1:
        d = {k: [r["youden_shifted"][k] - r["youden"][k] for r in every]
             for k in ("mean_spec", "mean_sens", "mean_acc_ext", "held_spec", "held_acc_ext")}
        print(f"\nyouden_shifted minus youden over {len(every)} runs (mean ± sd): "
              + ", ".join(f"{k} {_mean_sd(v)}" for k, v in d.items()))


if __name__ == "__main__":
    sys.exit(main())
