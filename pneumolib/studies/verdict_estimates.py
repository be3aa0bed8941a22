"""What a verdict weighs: an estimate with its interval, read from one run's metrics (recalls, lifts, shares, the cohort)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..core.stats import SMALL_N, seed_sd_gap, wilson

HOLDS, FAILS, CANNOT_TELL, NOT_TESTED = "holds", "does not hold", "cannot tell", "not tested"
# the two reasons evidence cannot decide: every seed's own interval straddles the threshold, or seeds decide apart
TOO_FEW_FILMS, SEEDS_DISAGREE = "cannot tell: too few films", "cannot tell: seeds disagree"


UNTRAINED = "untrained seed"  # a run whose kept model did not learn (verdict_rule.untrained): judged, and flagged


MAPS_NOT_FAITHFUL = "cannot tell (maps not faithful)"


RANDOM_INIT = (
    "random init"  # an entry that asked for ImageNet weights and trained from random init: said in its verdict
)


COLLAPSED = "collapsed seed"  # a run whose kept checkpoint calls (almost) every validation film one class


COLLAPSE_SHARE = 0.95  # ... at or above this share of the validation films in one class


# the series' budget rule: the smallest budget at which no baseline seed collapses and every one reaches this AUC
BUDGET_MIN_VAL_AUC = 0.95


# Without a sampling interval per seed (Grad-CAM shares, stress-test means), the spread over seeds is the only
# evidence of uncertainty; fewer seeds than this give no verdict.
MIN_SEEDS = 3


# "Attention on X" is read as a lift whose interval lies above 1 (more of the map than X's area would get under a
# uniform map); "not on X" as one whose interval lies below 1. Judged only for maps that pass their own checks.
NO_PREFERENCE = 1.0


# the names notebook 04 gives the inference paths it compares (drift.compare_inference rows)
CHECKPOINT_PATH = "checkpoint preprocessing (pneumolib)"


LOG_PATH = "log: convert('L') + Grayscale(3)"


IMAGENET_PATH = "ImageNet Normalize at inference only"


class NotMeasured(KeyError):
    """The runs' metrics lack what a claim needs (a notebook cell that adds it did not run)."""


@dataclass(frozen=True)
class Estimate:
    """One seed's value of a quantity, with its 95% interval when there is one (bootstrap by patient or Wilson)."""

    value: float
    lo: float | None = None
    hi: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def half_width(self) -> float | None:
        return (self.hi - self.lo) / 2 if self.has_interval else None

    def __sub__(self, other: "Estimate") -> "Estimate":
        # a difference of two quantities measured on the same films (a lift of two entries' maps): half-widths added
        # in quadrature, as for independent errors; errors on the same films correlate positively, so this is wide
        if self.has_interval and other.has_interval:
            v, h = self.value - other.value, (self.half_width**2 + other.half_width**2) ** 0.5
            return Estimate(v, v - h, v + h)
        return Estimate(self.value - other.value)

    def __abs__(self) -> "Estimate":
        if not self.has_interval:
            return Estimate(abs(self.value))
        if self.lo <= 0 <= self.hi:
            return Estimate(abs(self.value), 0.0, max(-self.lo, self.hi))
        a, b = sorted((abs(self.lo), abs(self.hi)))
        return Estimate(abs(self.value), a, b)


def lowest(estimates: Iterable[Estimate]) -> Estimate:
    """The minimum of several quantities (its interval: the minimum of the bounds)."""
    es = list(estimates)
    v = min(e.value for e in es)
    if all(e.has_interval for e in es):
        return Estimate(v, min(e.lo for e in es), min(e.hi for e in es))
    return Estimate(v)


# --- reading one run's metrics -----------------------------------------------------------------
def metric(m: dict[str, Any], key: str, split: str = "test") -> Estimate:
    """A headline metric (accuracy, sensitivity = PNEUMONIA recall, specificity = NORMAL recall, auc) of one run,
    with its interval: Wilson for small samples (where the percentile bootstrap collapses), else the bootstrap."""
    if split not in m or key not in m[split]:
        raise NotMeasured(f"{split}.{key}")
    t = m[split]
    v = float(t[key])
    ci = t.get("ci95_wilson", {}).get(key) if t.get("n", 0) < SMALL_N else None
    ci = ci or t.get("ci95", {}).get(key)
    return Estimate(v, *map(float, ci)) if ci else Estimate(v)


def share(m: dict[str, Any], key: str, split: str = "test", cls: str | None = None) -> Estimate:
    """A share of the split's images (compute_metrics' p_shares, e.g. '0.4<=p<=0.7'), or of one class's images
    (p_shares_by_class), with a Wilson interval."""
    t = m.get(split, {})
    shares, n = t.get("p_shares", {}), t.get("n")
    if cls is not None:
        shares, n = (t.get("p_shares_by_class") or {}).get(cls, {}), (t.get("n_by_class") or {}).get(cls)
    if key not in shares or not n:
        raise NotMeasured(f"{split}.p_shares{'_by_class[' + cls + ']' if cls else ''}[{key}]")
    v, n = float(shares[key]), int(n)
    return Estimate(v, *wilson(v * n, n))


def normal_right(m: dict[str, Any], split: str = "test") -> Estimate:
    """How many NORMAL films of the split were predicted NORMAL: an exact count (its interval is itself)."""
    cm = (m.get(split) or {}).get("confusion_matrix")
    if not cm:
        raise NotMeasured(f"{split}.confusion_matrix")
    k = float(cm[0][0])
    return Estimate(k, k, k)


BOOT_SEEDS = 2000  # bootstrap resamples of seeds for a spread over seeds


MIN_SEEDS_SPREAD = 5  # a spread over fewer seeds has no useful interval


def spread_gap(stable: list[dict[str, Any]], others: list[list[dict[str, Any]]], key: str = "accuracy") -> Estimate:
    """min over `others` of the seed-to-seed SD of a test metric, minus `stable`'s SD: above 0 when `stable` is the
    steadiest. Interval: bootstrap over seeds (core.stats.seed_sd_gap), with at least MIN_SEEDS_SPREAD seeds per
    entry; fewer give a value without an interval."""
    value, lo, hi = seed_sd_gap(
        [metric(m, key).value for m in stable],
        [[metric(m, key).value for m in g] for g in others],
        n_boot=BOOT_SEEDS,
        min_seeds=MIN_SEEDS_SPREAD,
    )
    return Estimate(value) if lo is None else Estimate(value, lo, hi)


COHORT = "external_cohort"  # reference entry: the record's measurements of this training config (cohort_references)


def cohort_references(record: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The record's measurements made of these runs' training configs (matched by ExperimentConfig.training_key;
    `record`: recipes.json's entries, each with its 'config' from git history or None for a prototype), each
    returned with the seed of the run it measures."""
    from ..core.config import ExperimentConfig

    keys = {
        ExperimentConfig.from_dict(m["config"]).training_key(): m["config"].get("seed") for m in runs if m.get("config")
    }
    out = []
    for rec in record:
        if rec.get("config") and ExperimentConfig.from_dict(rec["config"]).training_key() in keys:
            out.append(dict(rec, config=dict(rec["config"])))
    return out


# reference entry: the record's newest measurement of the recipe as it was then trained (cohort_as_measured), judged
# in place of runs by a claim with on_record=COHORT_MEASURED, whatever the recipe has become since
COHORT_MEASURED = "external_cohort_as_measured"


def cohort_as_measured(record: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The record's measurements (recipes.json's entries) of experiment NAME as the package trained it at the newest
    commit the record measured it, one per measured seed, whatever its training config: the recipe as the cohort saw
    it, which a claim judges from the record alone. Prototypes outside the package (no config) are left out."""
    packaged = [r for r in record if (r.get("config") or {}).get("name") == name]
    newest = packaged[-1]["commit"] if packaged else None  # the record is in the order it was measured
    return [dict(r, config=dict(r["config"])) for r in packaged if r["commit"] == newest]


def cohort_networks(rec: dict[str, Any]) -> int:
    """How many networks the measured model averaged (a config from before `members` existed: one)."""
    return int((rec.get("config") or {}).get("members") or 1)


def cohort_adapted(recs: list[dict[str, Any]]) -> str:
    """The recorded NORMAL recalls under each `--adapt` mode beside the unadapted one, with their Wilson intervals
    and the record's own notes: 'with --adapt bn, both, prior: 0.889 (0.842 to 0.924; prior: "the prior guard fell
    back to bn")'; '' when the record holds none."""
    parts = []
    for rec in recs:
        by_value: dict[float, list[str]] = {}
        for mode, v in (rec.get("cohort_adapted_specificity") or {}).items():
            by_value.setdefault(float(v), []).append(mode)
        notes = rec.get("cohort_adapted_notes") or {}
        for v, modes in by_value.items():
            lo, hi = wilson(v * int(rec["n_normal"]), int(rec["n_normal"]))
            said = "".join(f'; {m}: "{notes[m]}"' for m in modes if m in notes)
            seed = f"seed {(rec.get('config') or {}).get('seed')}: " if len(recs) > 1 else ""
            parts.append(f"{seed}with --adapt {', '.join(modes)}: {v:.3f} ({lo:.3f} to {hi:.3f}{said})")
    return "; ".join(parts)


def cohort_changes(runs: list[dict[str, Any]], measured: list[dict[str, Any]]) -> str:
    """How these runs' training differs from the recipe as the record measured it ('members 1 -> 3'), from their
    configs (the fields that change the weights, seed aside); '' when there is nothing to compare."""
    from ..core.config import EVAL_ONLY_FIELDS, ExperimentConfig, diff

    configs = [m["config"] for m in runs if m.get("config")]
    if not configs or not measured:
        return ""
    then, now = ExperimentConfig.from_dict(measured[0]["config"]), ExperimentConfig.from_dict(configs[0])
    changed = {k: v for k, v in diff(then, now).items() if k not in (*EVAL_ONLY_FIELDS, "seed")}
    return ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())


def cohort_as_measured_text(recs: list[dict[str, Any]]) -> str:
    """What a record-judged row says beside its number: which model the record measured, and its adapted figures
    ('recorded at commit 8281ef7 (one network, seed 0), without adaptation; with --adapt bn: ...')."""
    if not recs:
        return ""
    nets = sorted({cohort_networks(r) for r in recs})
    words = ", ".join("one network" if n == 1 else f"an ensemble of {n} networks" for n in nets)
    seeds = ", ".join(str((r.get("config") or {}).get("seed")) for r in recs)
    commits = ", ".join(dict.fromkeys(r["commit"] for r in recs))
    head = f"recorded at commit {commits} ({words}, seed{'s' if len(recs) > 1 else ''} {seeds}), without adaptation"
    return "; ".join(x for x in (head, cohort_adapted(recs)) if x)


def cohort_specificity(m: dict[str, Any], rec: dict[str, Any]) -> Estimate:
    """A recorded NORMAL recall on the external cohort, with a Wilson interval over its NORMAL films."""
    v, n = float(rec["cohort_specificity"]), int(rec["n_normal"])
    return Estimate(v, *wilson(v * n, n))


def summary_lift(s: dict[str, Any], key: str) -> Estimate:
    """A region's Grad-CAM lift ('lung_lift' or 'heart_lift') from one class's cam.Explanation.summary(): the mean
    of per-image lifts, with its 95% interval by patient."""
    if key not in s:
        raise NotMeasured(f"lung_focus.{key}")
    ci = s.get(f"{key}_ci95")
    return Estimate(float(s[key]), *map(float, ci)) if ci else Estimate(float(s[key]))


def _mean(es: list[Estimate]) -> Estimate:
    v = sum(e.value for e in es) / len(es)
    if all(e.has_interval for e in es):  # the bounds averaged: as if the two were perfectly correlated
        return Estimate(v, sum(e.lo for e in es) / len(es), sum(e.hi for e in es) / len(es))
    return Estimate(v)


def lung_lift(m: dict[str, Any], cls: str | None = None) -> Estimate:
    """Grad-CAM lung lift: the heatmap's share inside the lungs over the lungs' share of the image (1 = a
    uniform heatmap), for one class or the mean of both."""
    lf = m.get("lung_focus") or {}
    classes = [cls] if cls else [c for c in ("NORMAL", "PNEUMONIA") if c in lf]
    if not classes or any(c not in lf for c in classes):
        raise NotMeasured("lung_focus")
    return _mean([summary_lift(lf[c], "lung_lift") for c in classes])


def heart_lift(m: dict[str, Any], cls: str = "NORMAL") -> Estimate:
    """The heatmap's share in the heart / lower-diaphragm box over the box's share of the image."""
    s = (m.get("lung_focus") or {}).get(cls)
    if not s:
        raise NotMeasured("lung_focus.heart_lift")
    return summary_lift(s, "heart_lift")


def target_lift(m: dict[str, Any], key: str, cls: str, target: str) -> Estimate:
    """A region's lift ('lung_lift', 'heart_lift') on the films of class CLS, from Grad-CAM maps of class TARGET:
    'lung_focus_by_target'[TARGET][CLS] (Explanation.summary() of maps for that target) when recorded, else
    'lung_focus' when the run's maps are of TARGET (metrics' gradcam.target)."""
    by_target = (m.get("lung_focus_by_target") or {}).get(target)
    if by_target is None and (m.get("gradcam") or {}).get("target") == target:
        by_target = m.get("lung_focus")
    if not by_target or cls not in by_target:
        raise NotMeasured(
            f"not recorded: re-run the entry (this run's Grad-CAM maps are of target "
            f"{(m.get('gradcam') or {}).get('target', '?')}; run_experiment now records {target}-target maps on the "
            f"{cls} films too, lung_focus_by_target)"
        )
    return summary_lift(by_target[cls], key)


def predicted_pneumonia(m: dict[str, Any], split: str = "test") -> Estimate:
    """Share of the split's images predicted PNEUMONIA, with a Wilson interval."""
    if split not in m or "confusion_matrix" not in m[split]:
        raise NotMeasured(f"{split}.confusion_matrix")
    cm = m[split]["confusion_matrix"]
    k, n = cm[0][1] + cm[1][1], sum(map(sum, cm))
    return Estimate(k / n, *wilson(k, n))


def inference_path(m: dict[str, Any], path: str, key: str) -> Estimate:
    """A metric of one inference path of notebook 04 (rows that nb.inference_paths adds to the metrics)."""
    rows = m.get("inference_paths") or {}
    r = rows.get(path)
    if not r or key not in r:
        raise NotMeasured(f"inference_paths[{path}]")
    n = int(r["n_normal"] if key == "NORMAL recall" else r["n"])
    v = float(r[key])
    return Estimate(v, *wilson(v * n, n))


def stress(m: dict[str, Any], key: str) -> Estimate:
    """A stress-test summary value (means over the shifted copies); no sampling interval."""
    s = m.get("stress") or {}
    if key not in s:
        raise NotMeasured(f"stress.{key}")
    return Estimate(float(s[key]))


def gap(m: dict[str, Any]) -> Estimate:
    """|PNEUMONIA recall - NORMAL recall|: 0 for a model that treats both classes alike."""
    return abs(metric(m, "sensitivity") - metric(m, "specificity"))


# --- claims ------------------------------------------------------------------------------------
Measure = Callable[[dict[str, Any], dict[str, dict[str, Any]]], Estimate]
