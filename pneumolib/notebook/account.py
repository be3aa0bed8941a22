"""Notebook 00's account of "everything PNEUMONIA": each entry's over-calling taken apart into its causes.

Each factor is a number with a 95% interval, and a paragraph is written from those numbers. The factors: how well the
model ranks the test films (AUC), where the decision cut lies (the share of test films called PNEUMONIA at 0.5 and at
the validation-chosen 'balanced' threshold, beside the true share), the training class mix the model was fitted to,
the kept epoch and the collapsed seeds, and a transform applied to one class only (how well a sharpness statistic of
the training films, as the entry's augmentation shows them, predicts the label). Per-film quantities (a film called
PNEUMONIA) are averaged over seeds with core.stats.seed_effect's two-level bootstrap (seeds, then patients within
class); per-run quantities (AUC, kept epoch) go through it with one value per seed, which then resamples the seeds
only. Nothing is trained here; the runs' score files (scores_test.csv, scores_val.csv) are read."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.evaluate import choose_threshold
from ..core.config import ExperimentConfig
from ..core.runs import RunDir, ablation_dir, load_metrics
from ..core.scores import read_scores
from ..core.stats import SeedEffect, auc_score, seed_effect, wilson
from ..studies import catalogue
from ..studies import verdict_rule as V
from ..studies.drift import inference_shares
from .one_class import one_class_shortcut, transformed_class

THRESHOLD_RULE = "balanced"  # the validation rule of notebook 10's recipe (analysis.evaluate.balanced_threshold)
GOOD_RANKING = 0.90  # an AUC whose whole interval lies above this ranks the films well: the cut decides the calls


@dataclass(frozen=True)
class Scored:
    """One finished run: its metrics.json and its per-film scores on the test and validation splits (val: None
    where the run has no validation scores and the caller did not need them)."""

    seed: int
    metrics: dict[str, Any]
    test: pd.DataFrame
    val: pd.DataFrame | None

    @classmethod
    def load(
        cls, runs_root: str | Path, config: ExperimentConfig, seed: int, metrics: dict | None = None, need_val=True
    ) -> Scored | None:
        """The run of CONFIG at SEED with its score files, or None when it has no test scores (or, with NEED_VAL,
        no validation scores) or no metrics. A log entry's runs live in RUNS/NN_name/seed{S}, an ablation step's in
        RUNS/ablation/STEP/seed{S}. METRICS: its metrics.json as already loaded (read from the folder if None)."""
        d = RunDir(ablation_dir(runs_root, replace(config, seed=int(seed))))
        if not d.scores_test.is_file() or (need_val and not d.scores_val.is_file()):
            return None
        if metrics is None:
            try:
                metrics = load_metrics(d.path)
            except FileNotFoundError:
                return None
        val = read_scores(d.scores_val) if d.scores_val.is_file() else None
        return cls(int(seed), metrics, read_scores(d.scores_test, split="test"), val)


def scored_runs(runs_root: str | Path, config: ExperimentConfig, metrics: list[dict[str, Any]]) -> list[Scored]:
    """The runs of CONFIG whose metrics were loaded, with their score files (a run without them is left out)."""
    runs = (Scored.load(runs_root, config, int((m.get("config") or {}).get("seed", 0)), m) for m in metrics)
    return [r for r in runs if r is not None]


def common_films(runs: list[Scored]) -> pd.DataFrame:
    """The test films every run scored (path, patient, y: 1 = PNEUMONIA), in the first run's order."""
    paths = set.intersection(*(set(r.test["path"]) for r in runs))
    first = runs[0].test
    return first[first["path"].isin(paths)][["path", "patient", "label", "y"]].reset_index(drop=True)


def per_film(runs: list[Scored], films: pd.DataFrame, column: str) -> np.ndarray:
    """seeds x films: each run's COLUMN of its test scores, aligned to FILMS by path."""
    return np.stack([r.test.set_index("path").loc[films["path"], column].to_numpy() for r in runs])


def over_seeds(a, b=None, films: pd.DataFrame | None = None, bounds=(0.0, 1.0)) -> SeedEffect:
    """seed_effect of a seeds x films array (paired with B when given): patients resampled within class when FILMS
    is given, the seeds only for one column per seed. With one seed, its value and no interval. The interval is
    cut to BOUNDS, the values the quantity can take (a share, an AUC: 0 to 1; a difference of shares: -1 to 1),
    since seed_effect's t-based interval over five scattered seeds can reach past them."""
    a = np.asarray(a, dtype=float)
    if a.shape[0] < 2:
        d = a if b is None else a - np.asarray(b, dtype=float)
        v = float(np.nanmean(d))
        return SeedEffect(v, float("nan"), float("nan"), (v,), None, 1, a.shape[1])
    if films is None:
        e = seed_effect(a, b)
    else:
        e = seed_effect(a, b, patients=films["patient"].to_numpy(), strata=films["y"].to_numpy())
    lo, hi = (-1.0, 1.0) if b is not None and bounds == (0.0, 1.0) else bounds
    return replace(e, low=max(e.low, lo), high=min(e.high, hi))


def per_run(values, bounds=(0.0, 1.0)) -> SeedEffect:
    """The mean over seeds of one number per run, with seeds-only resampling."""
    return over_seeds(np.asarray(values, dtype=float)[:, None], bounds=bounds)


def decision_cut(runs: list[Scored]) -> dict[str, Any]:
    """The ranking and the cut: each run's test AUC; the share of test films, and of NORMAL test films, called
    PNEUMONIA at 0.5 and at the threshold the 'balanced' rule chooses on that run's validation scores, and the paired
    difference of the first; the true share."""
    films = common_films(runs)
    y = films["y"].to_numpy()
    p = per_film(runs, films, "p_pneumonia")
    cuts = np.array([choose_threshold(THRESHOLD_RULE, r.val["y"], r.val["p_pneumonia"]) for r in runs])
    at_half, at_cut = (p >= 0.5).astype(float), (p >= cuts[:, None]).astype(float)
    normal = np.where(y == 0, 1.0, np.nan)[None, :]  # NaN: a PNEUMONIA film does not count
    return {
        "n_test": len(films),
        "true_share": float(y.mean()),
        "n_true": int(y.sum()),
        "auc": per_run([auc_score(y, row) for row in p]),
        "called_05": over_seeds(at_half, films=films),
        "called_cut": over_seeds(at_cut, films=films),
        "cut_shift": over_seeds(at_cut, at_half, films=films),
        "normal_called_05": over_seeds(at_half * normal, films=films),
        "normal_called_cut": over_seeds(at_cut * normal, films=films),
        "cuts": tuple(float(c) for c in cuts),
        "own_thresholds": tuple(float(r.metrics.get("threshold", 0.5)) for r in runs),
    }


def class_prior(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The training split's class mix (metrics.json data_counts) and the share of PNEUMONIA films the model was
    fitted to: the split's share under the shuffle sampler, one half under the balanced sampler (each class drawn
    equally often)."""
    counts = (metrics[0].get("data_counts") or {}).get("train") or {}
    n_p, n_n = int(counts.get("PNEUMONIA", 0)), int(counts.get("NORMAL", 0))
    sampler = (metrics[0].get("config") or {}).get("sampler", "shuffle")
    split_share = n_p / (n_p + n_n) if n_p + n_n else float("nan")
    same = all(((m.get("data_counts") or {}).get("train") or {}) == counts for m in metrics)
    return {
        "n_pneumonia": n_p,
        "n_train": n_p + n_n,
        "split_share": split_share,
        "sampler": sampler,
        "effective": 0.5 if sampler == "balanced" else split_share,
        "same_for_every_seed": same,
        "class_weighting": (metrics[0].get("config") or {}).get("class_weighting", "none"),
    }


def kept_and_collapsed(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's kept epoch (of how many) and the runs that collapsed (verdicts.collapsed: the kept checkpoint puts
    nearly every validation film in one class), with the collapsed share's Wilson interval."""
    fallen = {int((m.get("config") or {}).get("seed", 0)): V.collapsed(m) for m in metrics if V.collapsed(m)}
    k, n, seeds = len(fallen), len(metrics), [int((m.get("config") or {}).get("seed", 0)) for m in metrics]
    epochs = (metrics[0].get("config") or {}).get("epochs")
    return {
        "kept": per_run([m.get("best_epoch", float("nan")) for m in metrics], bounds=(1, epochs or np.inf)),
        "kept_epochs": tuple(m.get("best_epoch") for m in metrics),
        "epochs": epochs,
        "collapsed": fallen,
        "collapsed_share": (k / n if n else float("nan"), *wilson(k, n)),
        "to_pneumonia": sorted(s for s, why in fallen.items() if "PNEUMONIA" in why),
        "collapsed_epochs": tuple(m.get("best_epoch") for m in metrics if "PNEUMONIA" in V.collapsed(m)),
        "first_epoch": [
            s for s, m in zip(seeds, metrics) if m.get("best_epoch") == 1 < (epochs or 1) and s not in fallen
        ],
    }


def account_rows(runs_root, runs: dict[str, list[dict]], data=None, max_films: int = 1000) -> list[dict[str, Any]]:
    """Every log entry's factors, from its finished runs (RUNS_ROOT, the metrics in RUNS by entry) and, for an entry
    with a one-class transform, the training films of DATA (XRayData; None: that factor is left out). An entry
    without runs, or whose runs have no score files, gets a row that says so."""
    rows = []
    for cfg in catalogue.LOG_ENTRIES:
        metrics = runs.get(cfg.entry) or []
        scored = scored_runs(runs_root, cfg, metrics) if metrics else []
        row: dict[str, Any] = {"entry": cfg.entry, "title": cfg.title, "seeds": len(scored)}
        found = {r.seed for r in scored}  # a run without its score files is left out, and said to be
        row["left_out"] = [s for s in (int((m.get("config") or {}).get("seed", 0)) for m in metrics) if s not in found]
        if not scored:
            row["missing"] = "no finished run in RUNS" if not metrics else "its runs have no score files"
            rows.append(row)
            continue
        ms = [r.metrics for r in scored]
        row.update(decision_cut(scored), prior=class_prior(ms), kept=kept_and_collapsed(ms), shortcut=None)
        row["inference"] = {k: per_run(v) for k, v in (inference_shares(ms) or {}).items()}  # 04's, once rendered
        if data is not None and transformed_class(cfg):
            size = int((ms[0].get("config") or {}).get("image_size") or cfg.image_size)
            row["shortcut"] = one_class_shortcut(cfg, data["train"], data.cache, size, max_films=max_films)
        rows.append(row)
    return rows


def interval_text(e: SeedEffect | tuple) -> str:
    """'[low, high]' of a SeedEffect or a (value, low, high) tuple; 'no interval (one seed)' without one."""
    lo, hi = (e.low, e.high) if isinstance(e, SeedEffect) else e[1:]
    return "no interval (one seed)" if np.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]"


def _value(e: SeedEffect | tuple, signed: bool = False) -> str:
    return f"{(e.point if isinstance(e, SeedEffect) else e[0]):{'+' if signed else ''}.3f}"


def _seeds(values) -> str:
    return ", ".join("?" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in values)


def _cut_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The ranking's and the cut's rows of _factor_rows."""
    own = sorted(set(r["own_thresholds"]))
    return [
        ("ranking: test AUC", _value(r["auc"]), interval_text(r["auc"]), f"per seed {_seeds(r['auc'].per_seed)}"),
        (
            "cut: share called PNEUMONIA at 0.5",
            _value(r["called_05"]),
            interval_text(r["called_05"]),
            f"truly PNEUMONIA {r['true_share']:.3f} ({r['n_true']} of {r['n_test']} test films)"
            + ("" if own == [0.5] else f"; the runs' own threshold {_seeds(own)}"),
        ),
        (
            f"cut: share called PNEUMONIA at the validation '{THRESHOLD_RULE}' threshold",
            _value(r["called_cut"]),
            interval_text(r["called_cut"]),
            f"threshold per seed {_seeds(r['cuts'])}",
        ),
        ("cut: change (validation threshold minus 0.5)", _value(r["cut_shift"]), interval_text(r["cut_shift"]), ""),
        ("cut: NORMAL films called PNEUMONIA at 0.5", _value(r["normal_called_05"]),
         interval_text(r["normal_called_05"]), f"{r['n_test'] - r['n_true']} NORMAL test films"),
        ("cut: NORMAL films called PNEUMONIA at the validation threshold", _value(r["normal_called_cut"]),
         interval_text(r["normal_called_cut"]), ""),
    ]  # fmt: skip


def _factor_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(factor, value, 95% interval, detail) for one entry's row of account_rows."""
    p, k = r["prior"], r["kept"]
    out = _cut_rows(r) + [
        (
            "class prior: training share PNEUMONIA the model was fitted to",
            f"{p['effective']:.3f}",
            "exact count",
            f"{p['n_pneumonia']} of {p['n_train']} training films ({p['split_share']:.3f}), {p['sampler']} sampler"
            + ("" if p["class_weighting"] in (None, "none") else f", class weighting {p['class_weighting']}")
            + ("" if p["same_for_every_seed"] else "; the first seed's split (the seeds' splits differ)"),
        ),
        (
            "kept epoch",
            _value(k["kept"]),
            interval_text(k["kept"]),
            f"per seed {_seeds(k['kept_epochs'])} of {k['epochs']}",
        ),
        (
            "collapsed seeds (share of seeds)",
            _value(k["collapsed_share"]),
            interval_text(k["collapsed_share"]),
            "; ".join(f"seed {s} {why}" for s, why in k["collapsed"].items()) or "none",
        ),
    ]
    out += _inference_rows(r.get("inference"))
    sc = r.get("shortcut")
    if sc:
        out.append(
            (
                f"shortcut: {'periphery-minus-centre ' if sc.get('contrast') else ''}sharpness AUC, {sc['class']} "
                "films transformed",
                _value(sc["auc"]),
                interval_text(sc["auc"]),
                f"without it (the baseline's augmentation) {_value(sc['reference'])} {interval_text(sc['reference'])}; "
                f"{sc['class']} gets {sc['spec']}; {sc['n_films']} training films, {sc['n_patients']} patients",
            )
        )
    return out


def _inference_rows(f: dict[str, SeedEffect] | None) -> list[tuple[str, str, str, str]]:
    """Entry 04's inference paths as factors: what the log blamed against what moves the calls."""
    if not f:
        return []
    return [
        ("inference: predictions changed by the log's greyscale path", _value(f["log_changed"]),
         interval_text(f["log_changed"]), "the channel mismatch the log named as the cause"),
        ("inference: predictions changed by ImageNet normalisation", _value(f["imagenet_changed"]),
         interval_text(f["imagenet_changed"]), f"called PNEUMONIA then {_iv(f['imagenet_called'])}, with the "
         f"checkpoint's own preprocessing {_iv(f['plain_called'])}"),
    ]  # fmt: skip


def _inference(f: dict[str, SeedEffect] | None) -> str:
    """04's finding in words, from _inference_rows' numbers: which inference change moves the calls more."""
    if not f:
        return ""
    more = _side(per_run(np.subtract(f["imagenet_changed"].per_seed, f["log_changed"].per_seed), (-1.0, 1.0)), 0.0)
    verdict = {1: "so normalisation at inference, not the channel mismatch, is what moves the calls",
               0: "which of the two moves more calls cannot be told at this number of seeds",
               -1: "so the channel mismatch moves more calls than the normalisation"}[more]  # fmt: skip
    return (
        f" At inference, the log's greyscale path (the channel mismatch it blamed) changed {_iv(f['log_changed'])} "
        f"of the predictions; ImageNet normalisation the training did not use changed {_iv(f['imagenet_changed'])}"
        f" and called {_iv(f['imagenet_called'])} of the films PNEUMONIA: {verdict}."
    )


def _left_out(r: dict[str, Any]) -> str:
    seeds = r.get("left_out") or []
    return f"; seed {', '.join(map(str, seeds))} left out: no score files" if seeds else ""


def account_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """account_rows as one table: a row per (entry, factor) with its value, 95% interval and detail."""
    out = []
    for r in rows:
        if r.get("missing"):
            out.append((f"{r['entry']} {r['title']}", "not measured", "", "", r["missing"]))
            continue
        name = f"{r['entry']} {r['title']} ({r['seeds']} seed{'s' if r['seeds'] != 1 else ''}{_left_out(r)})"
        out += [(name, *f) for f in _factor_rows(r)]
    return pd.DataFrame(out, columns=["entry", "factor", "value", "95% interval", "detail"]).set_index(
        ["entry", "factor"]
    )


def _side(e: SeedEffect, margin: float) -> int:
    """+1 / -1 when the interval lies above / below MARGIN, 0 when it straddles it; with one seed, by its value."""
    if np.isnan(e.low):
        return int(np.sign(e.point - margin))
    return e.side(margin)


def _iv(e: SeedEffect | tuple, signed: bool = False) -> str:
    return f"{_value(e, signed)} {interval_text(e)}"


def _symptom(r: dict[str, Any]) -> tuple[int, str]:
    """(+1 over-calls: more films called PNEUMONIA than truly are, or most NORMAL films called PNEUMONIA / 0 about
    the true share / -1 under-calls, the sentence saying so)."""
    c, truth, normal = r["called_05"], r["true_share"], r["normal_called_05"]
    side = _side(c, truth)
    most = _side(normal, 0.5) > 0
    normal_text = f", and {_iv(normal)} of the NORMAL films" + (", most of them" if most else "")
    if c.point >= V.COLLAPSE_SHARE:
        return 1, f"calls {_iv(c)} of the test films PNEUMONIA at 0.5, nearly all of them, where {truth:.3f} truly are"
    how = {1: "more than", 0: "about as many as", -1: "fewer than"}[side]
    text = f"calls {_iv(c)} of the test films PNEUMONIA at 0.5, {how} the {truth:.3f} that truly are{normal_text}"
    return (1 if most else side), text


def _ranking(r: dict[str, Any]) -> tuple[int, str]:
    """(+1 ranks well / 0 moderately / -1 barely above chance, the sentence)."""
    a = r["auc"]
    if _side(a, GOOD_RANKING) > 0:
        return 1, f"It ranks the films well (test AUC {_iv(a)}): what it calls PNEUMONIA is set by where the cut lies"
    if _side(a, V.UNTRAINED_AUC) < 0:
        return -1, f"It ranks the films little better than chance (test AUC {_iv(a)}): no threshold can repair that"
    return 0, f"It ranks the films only moderately (test AUC {_iv(a)})"


def _cut(r: dict[str, Any]) -> tuple[int, str]:
    """(-1 the validation threshold lowers the share called PNEUMONIA / 0 no measurable change / +1 raises it, ...)."""
    s, before, after = r["cut_shift"], r["called_05"], r["called_cut"]
    side = _side(s, 0.0)
    closer = (
        f"; the seeds agree more closely at it (interval half-width {after.half_width:.3f} against "
        f"{before.half_width:.3f} at 0.5)"
        if after.half_width < before.half_width / 2
        else ""
    )
    closer += (
        f"; NORMAL films called PNEUMONIA: {_iv(r['normal_called_05'])} at 0.5, {_iv(r['normal_called_cut'])} at it"
    )
    if side == 0:
        return (
            0,
            f"moving the cut to the threshold the '{THRESHOLD_RULE}' rule picks on validation changes the share called PNEUMONIA by {_iv(s, True)}, not measurably on average{closer}",
        )
    word = "lowers" if side < 0 else "raises"
    return side, (
        f"the threshold the '{THRESHOLD_RULE}' rule picks on validation (mean {np.mean(r['cuts']):.3f}) {word} the share "
        f"called PNEUMONIA to {_iv(after)}, a change of {_iv(s, True)}{closer}"
    )


def _prior(r: dict[str, Any]) -> str:
    p, k = r["prior"], r["kept"]
    text = f"it was fitted to a training mix of {p['effective']:.3f} PNEUMONIA ({p['sampler']} sampler)"
    if k["to_pneumonia"]:
        text += (
            f", and {len(k['to_pneumonia'])} of {r['seeds']} seeds (seed {', '.join(map(str, k['to_pneumonia']))}) "
            f"collapsed to PNEUMONIA: the kept checkpoint (epoch {_seeds(k['collapsed_epochs'])} of {k['epochs']}) calls "
            + (
                "nearly every validation film PNEUMONIA, the mix's majority: collapsed at its cut onto the mix (how "
                "well it ranks is the ranking's part)"
                if p["effective"] > 0.5
                else "nearly every validation film PNEUMONIA although the mix has no majority: collapsed at its cut"
            )
        )
    if k.get("first_epoch"):  # not collapsed, yet the least-trained checkpoint: the rule's choice, said
        text += (f"; on seed {', '.join(map(str, k['first_epoch']))} the checkpoint rule (lowest validation loss) "
                 f"kept epoch 1 of {k['epochs']}, the least-trained model")  # fmt: skip
    return text


def _shortcut(r: dict[str, Any]) -> tuple[int, str]:
    """(+1 a shortcut toward PNEUMONIA / -1 toward NORMAL / 0 none measured, the sentence or '')."""
    sc = r.get("shortcut")
    if not sc:
        return 0, ""
    if not sc["auc"][1] > sc["reference"][2]:
        return 0, (
            f"the transform applied to {sc['class']} films only does not make their sharpness predict the label more "
            f"than without it (AUC {_iv(sc['auc'])} against {_iv(sc['reference'])})"
        )
    other = "PNEUMONIA" if sc["class"] == "NORMAL" else "NORMAL"
    text = (
        f"the transform applied to {sc['class']} films only is a shortcut: the training films' sharpness alone "
        f"tells the classes apart with AUC {_iv(sc['auc'])}, against {_iv(sc['reference'])} without it; no test film "
        f"carries it, so to a model that learned it every test film looks like a {other} film"
    )
    return (1 if other == "PNEUMONIA" else -1), text


NO_SINGLE_CAUSE = "no single factor measured here accounts for it"


def _cause_phrase(symptom: int, rank: int, cut: int, shortcut: int, collapsed: int, seeds: int, majority: bool):
    """The main cause as a phrase (the one owner of its wording: _cause makes it a sentence, main_causes groups the
    entries by it), from the factors' signs, the count of seeds collapsed to PNEUMONIA, and whether PNEUMONIA was
    the training mix's MAJORITY; None when the entry does not over-call PNEUMONIA."""
    if symptom <= 0 and not collapsed:
        return None
    if shortcut > 0 and collapsed * 2 < seeds:
        return "the one-class transform, learned as a shortcut that points to PNEUMONIA" + (
            f" (and {collapsed} collapsed seed{'s' if collapsed != 1 else ''})" if collapsed else ""
        )
    if collapsed:
        why = "collapsed seeds, which fall back on the training mix" if majority else "collapsed seeds (not the mix)"
        return why + (", after a shortcut that points to PNEUMONIA" if shortcut > 0 else "")
    if rank > 0 and cut < 0:
        return "the decision cut; the ranking is sound, and the validation threshold corrects it"
    if rank < 0:
        return "the model did not learn to rank the films"
    return NO_SINGLE_CAUSE


def _cause(*factors) -> str:
    """The sentence naming the main cause (_cause_phrase's arguments)."""
    phrase = _cause_phrase(*factors)
    if phrase is None:
        return "So this entry does not call everything PNEUMONIA."
    if phrase == NO_SINGLE_CAUSE:
        return NO_SINGLE_CAUSE[:1].upper() + NO_SINGLE_CAUSE[1:] + "."
    return f"The main cause here: {phrase}."


def entry_paragraph(r: dict[str, Any]) -> str:
    """Why one entry calls (or does not call) everything PNEUMONIA, in words written from its factors."""
    if r.get("missing"):
        return f"Entry {r['entry']}: not measured ({r['missing']})."
    symptom, says = _symptom(r)
    rank, ranks = _ranking(r)
    cut, cuts = _cut(r)
    short, shortcut = _shortcut(r)
    seeds = f"{r['seeds']} seed{'s' if r['seeds'] != 1 else ''}{_left_out(r)}"
    parts = [
        f"Entry {r['entry']} ({r['title']}, {seeds}) {says}.",
        ranks + ";",
    ]
    parts.append(f"{cuts}; {_prior(r)}" + (f"; {shortcut}." if shortcut else "."))
    parts.append(
        _cause(symptom, rank, cut, short, len(r["kept"]["to_pneumonia"]), r["seeds"], r["prior"]["effective"] > 0.5)
    )
    return " ".join(parts) + _inference(r.get("inference"))


def why_paragraph(rows: list[dict[str, Any]]) -> str:
    """The answer to 'why did the model call everything PNEUMONIA?', written from account_rows' numbers: one
    paragraph per entry with runs, after a line naming the entries that over-call at 0.5."""
    measured = [r for r in rows if not r.get("missing")]
    if not measured:
        return "Not answered: no entry has finished runs with score files in RUNS (render notebooks 01-09 first)."
    over = [r["entry"] for r in measured if _symptom(r)[0] > 0 or r["kept"]["to_pneumonia"]]
    lead = (
        f"Of the {len(measured)} entries with runs, {len(over)} call more test films PNEUMONIA than truly are, "
        f"or most NORMAL films PNEUMONIA, or have a seed that collapsed to PNEUMONIA: {', '.join(over) or 'none'}."
    )
    return "\n\n".join([lead, *(entry_paragraph(r) for r in measured)])


def main_causes(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The main cause of each entry that over-calls PNEUMONIA (why_paragraph's closing sentence, as a phrase) ->
    the entries it names, in the order of the rows: what 00's finding under its title says in one sentence."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r.get("missing"):
            continue
        phrase = _cause_phrase(_symptom(r)[0], _ranking(r)[0], _cut(r)[0], _shortcut(r)[0],
                               len(r["kept"]["to_pneumonia"]), r["seeds"], r["prior"]["effective"] > 0.5)  # fmt: skip
        if phrase is not None:
            out.setdefault(phrase, []).append(r["entry"])
    return out
