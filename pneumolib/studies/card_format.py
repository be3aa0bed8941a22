"""How a model card words numbers and records: metric tables, intervals, weights, thresholds, limitations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..analysis.adapt import ADAPTED_LABEL
from ..core.config import CLASSES
from ..core.stats import SMALL_N


# --- formatting -------------------------------------------------------------------------------------------
def num_text(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if math.isnan(f) else f"{f:.{digits}f}"


def ci_text(m: dict[str, Any], key: str, which: str = "ci95") -> str:
    ci = (m.get(which) or {}).get(key)
    if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return ""
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


HEADLINE = (
    ("accuracy", "accuracy"),
    ("sensitivity", "PNEUMONIA recall (sensitivity)"),
    ("specificity", "NORMAL recall (specificity)"),
    ("precision", "PNEUMONIA precision"),
    ("npv", "NORMAL precision"),
    ("balanced_accuracy", "balanced accuracy"),
    ("auc", "ROC AUC"),
)


def metrics_table(m: dict[str, Any]) -> list[str]:
    wilson = any((m.get("ci95_wilson") or {}).values())
    head = "| metric | value | 95% CI (bootstrap) |" + (" 95% CI (Wilson) |" if wilson else "")
    lines = [head, "|---|---:|---:|" + ("---:|" if wilson else "")]
    for k, label in HEADLINE:
        if k not in m:
            continue
        row = f"| {label} | {num_text(m[k])} | {ci_text(m, k)} |"
        if wilson:
            row += f" {ci_text(m, k, 'ci95_wilson')} |"
        lines.append(row)
    if "ece" in m:
        lines.append(f"| calibration error (ECE) | {num_text(m['ece'])} | |" + (" |" if wilson else ""))
    npc = m.get("n_per_class") or {}
    per = ", ".join(f"{c} {num_text(npc[c])}" for c in CLASSES if c in npc)
    lines += ["", f"n = {num_text(m.get('n'))} ({per}); threshold {num_text(m.get('threshold'))}."]
    cm = m.get("confusion_matrix")
    if cm:
        lines.append(f"Confusion matrix (rows true, columns predicted; NORMAL, PNEUMONIA): {cm}.")
    return lines


def _fmt_value(v: Any, key: str = "") -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) or v is None:
        return num_text(v)
    if (
        isinstance(v, (list, tuple))
        and len(v) == 2
        and all(isinstance(x, (int, float)) or x is None for x in v)
        and "per_image" not in key
    ):
        # a pair under a name with "ci" in it is an interval; any other pair, e.g. a map size, is a pair
        return f"{num_text(v[0])}-{num_text(v[1])}" if "ci" in key.lower() else f"{num_text(v[0])} x {num_text(v[1])}"
    if isinstance(v, (str, bool)):
        return str(v)
    return None


def render_generic(obj: Any, depth: int = 0) -> list[str]:
    """Whatever a summary dict holds: a table when it is {class: {stat: number}}, else nested bullets."""
    if not isinstance(obj, dict) or not obj:
        return [f"{'  ' * depth}- {_fmt_value(obj) or 'not recorded'}"]
    if all(isinstance(v, dict) for v in obj.values()) and set(obj) & set(CLASSES):
        cols = []
        for v in obj.values():
            cols += [k for k, x in v.items() if _fmt_value(x, k) is not None and k not in cols]
        lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for name, v in obj.items():
            lines.append(f"| {name} | " + " | ".join(_fmt_value(v.get(c), c) or "" for c in cols) + " |")
        return lines
    lines = []
    for k, v in obj.items():
        f = _fmt_value(v, k)
        if f is not None:
            lines.append(f"{'  ' * depth}- {k}: {f}")
        elif isinstance(v, dict) and depth < 2:
            lines.append(f"{'  ' * depth}- {k}:")
            lines += render_generic(v, depth + 1) if not (set(v) & set(CLASSES)) else ["", *render_generic(v), ""]
        elif isinstance(v, (list, tuple)):
            lines.append(f"{'  ' * depth}- {k}: {len(v)} values (in metrics.json)")
    return lines


def weights_text(weights: str | None, config: dict[str, Any]) -> str:
    if not weights:
        return "not recorded in metrics.json"
    w = weights.strip()
    if w == "random init":
        text = "**random init**: trained from randomly initialised weights; no pretrained weights were used."
    elif w.startswith("random init"):
        text = (
            f"**random init**: trained from randomly initialised weights ({w[len('random init') :].strip(' ()')}); "
            "the experiment asked for ImageNet weights, which the training machine did not have."
        )
    elif w.lower().startswith("imagenet"):
        text = f"**ImageNet-pretrained**: started from torchvision's ImageNet weights for {config.get('model', '?')} ({w})."
    else:
        text = f"{w}."
    if config.get("init_from"):
        text += f" Fine-tuned from the pneumolib checkpoint {config['init_from']}."
    return text


def threshold_rule_text(rule: str | None) -> str:
    kind, _, arg = (rule or "").partition(":")
    if kind == "fixed":
        return f"`{rule}`: a fixed value, chosen before seeing any data"
    if kind == "youden":
        return "`youden`: the threshold that maximises sensitivity + specificity (Youden's J) on the validation split"
    if kind == "youden_shifted":
        return (
            "`youden_shifted`: Youden's J on the validation split pooled with its copies under the stress "
            "test's seen shifts (exposure, contrast, blur, field of view, rotation)"
        )
    if kind == "sensitivity":
        return f"`{rule}`: the highest threshold whose PNEUMONIA recall on the validation split is at least {arg}"
    return f"`{rule}`" if rule else "not recorded"


def transforms_text(config: dict[str, Any]) -> str:
    tt = config.get("train_transforms") or []
    try:
        return "; ".join(f"{c}: `{t}`" for c, t in tt) or "none"
    except (TypeError, ValueError):
        return str(tt)


def reconstructed_train_command(run_dir: Path, metrics: dict[str, Any]) -> str:
    cfg = metrics.get("config") or {}
    parts = [
        "python -m pneumolib train",
        str(metrics.get("entry") or cfg.get("entry") or metrics.get("experiment")),
        "--out",
        str(run_dir),
    ]
    parts += ["--data-dir", str(metrics.get("data_dir") or "fixture")]
    profile = metrics.get("profile")
    if profile:
        parts += ["--profile", str(profile)]
    default = {}
    try:  # flags only where the run differs from its profile's defaults
        from ..core.config import apply_profile
        from .catalogue import get_config

        default = apply_profile(get_config(str(metrics.get("entry") or cfg.get("name"))), profile).to_dict()
    except (KeyError, ValueError):
        pass
    for key, flag in (
        ("epochs", "--epochs"),
        ("image_size", "--image-size"),
        ("batch_size", "--batch-size"),
        ("seed", "--seed"),
    ):
        if key in cfg and (cfg[key] != default.get(key) or key == "seed"):
            parts += [flag, str(cfg[key])]
    if (
        str(metrics.get("weights", "")).startswith("random init (")
        or cfg.get("pretrained") is False
        and default.get("pretrained")
    ):
        parts.append("--allow-random-init")
    if cfg.get("init_from"):
        parts += ["--init-from", str(cfg["init_from"])]
    if metrics.get("holdout", "folders") != "folders":
        parts += ["--holdout", str(metrics["holdout"])]
    return " ".join(parts)


def _layers(layers: Any) -> str:
    return ", ".join(map(str, layers)) if isinstance(layers, (list, tuple)) else str(layers)


def evaluation_section(rec: dict[str, Any]) -> list[str]:
    name = rec.get("cohort") or rec.get("_file", "?")
    lines = [f"#### {name}", ""]
    facts = [f"data: `{rec.get('data_dir', '?')}` split `{rec.get('split', '?')}`"]
    if rec.get("date"):
        facts.append(f"date {rec['date']}")
    ct = rec.get("checkpoint_threshold")
    if ct is not None and rec.get("threshold") is not None and abs(float(ct) - float(rec["threshold"])) > 1e-12:
        facts.append(f"threshold overridden: {num_text(rec['threshold'])} instead of the checkpoint's {num_text(ct)}")
    else:
        facts.append(f"the checkpoint's threshold {num_text(rec.get('threshold'))}")
    lines += ["; ".join(facts) + ".", ""]
    lines += metrics_table(rec)
    ad = rec.get("adapted")
    if isinstance(ad, dict):
        a = ad.get("adaptation") or {}
        lines += ["", f"**{a.get('label', ADAPTED_LABEL)}** (mode `{a.get('mode', '?')}`):", ""]
        if a.get("bn"):
            b = a["bn"]
            lines.append(
                f"- BatchNorm statistics re-estimated in {_layers(b.get('layers'))} (alpha {num_text(b.get('alpha'), 2)}, "
                f"{num_text(b.get('bn_modules'))} layers, {num_text(b.get('n_images'))} images)."
            )
        if a.get("prior"):
            pr = a["prior"]
            lines.append(
                f"- Estimated PNEUMONIA share {num_text(pr.get('estimated_prior'))} (training prior "
                f"{num_text(pr.get('train_prior'))}: {pr.get('train_prior_source', '?')}); threshold "
                f"{num_text(pr.get('base_threshold'))} -> {num_text(pr.get('threshold'))}."
                + (f" Warning: {pr['warning']}." if pr.get("warning") else "")
            )
        lines += [""] + metrics_table(ad)
    site = rec.get("site")
    if isinstance(site, dict):  # site mode: whether the figures above came with an adapted model, and why
        state = "adapted to this cohort" if site.get("adapted") is True else "not adapted (the model as trained)"
        lines += ["", f"Site adaptation: {state}: {site.get('reason', '?')}."]
    elif isinstance(rec.get("adaptation_used"), str):  # every record says which model its figures come from
        lines += ["", f"Adaptation: {rec['adaptation_used']}."]
    if rec.get("command"):
        lines += ["", f"Command: `{rec['command']}`"]
    return lines + [""]


def limitations_lines(
    metrics: dict[str, Any], stress: dict[str, Any] | None, evals: list[dict[str, Any]], source: dict[str, str]
) -> list[str]:
    test = metrics.get("test") or {}
    out = [
        "- A research reproduction of a dated experiment log, not a validated medical device: it has not been "
        "evaluated prospectively or against radiologists."
    ]
    if source.get("license_id") == "unknown" and metrics.get("data_dir") in (None, "fixture"):
        out.append("- Trained and tested on synthetic phantoms: its numbers describe the phantoms, not patients.")
    elif source is not None and "Kermany" in source.get("source", ""):
        out.append(
            "- Trained on one public paediatric data set; films from other hospitals, scanners, ages or "
            "views may look different to the model."
        )
    n = test.get("n")
    if n is not None and n < SMALL_N:
        out.append(f"- The internal test split has only {n} images: its intervals are wide.")
    if metrics.get("holdout", "folders") == "folders":
        out.append(
            "- The internal test split comes from the same source as the training data; scores on it "
            "overstate what the model does on a new cohort."
        )
    if stress and stress.get("rows"):
        shifted = [r for r in stress["rows"] if r.get("shift") != "clean"]
        if shifted:
            worst = min(shifted, key=lambda r: r.get("specificity", float("inf")))
            clean = next((r for r in stress["rows"] if r.get("shift") == "clean"), {})
            out.append(
                f"- Under simulated scanner shifts (stress test) NORMAL recall falls to "
                f"{num_text(worst.get('specificity'))} ({worst.get('shift')}) from {num_text(clean.get('specificity'))} "
                f"on the clean split."
            )
    for rec in evals:
        if rec.get("specificity") is not None and test.get("specificity") is not None:
            out.append(
                f"- On cohort {rec.get('cohort', rec.get('_file'))}: NORMAL recall {num_text(rec['specificity'])}, "
                f"PNEUMONIA recall {num_text(rec.get('sensitivity'))} (internal test: {num_text(test['specificity'])}, "
                f"{num_text(test.get('sensitivity'))})."
            )
    rule = (metrics.get("config") or {}).get("threshold") or ""
    chosen = (
        "is fixed, not tuned to any data" if rule.startswith("fixed") else "was chosen on the internal validation split"
    )
    out.append(
        f"- The decision threshold {chosen}; a cohort with another class mix or another scanner may need "
        "another one (`evaluate --adapt prior` estimates the cohort's class mix from its images only)."
    )
    out.append("- Grad-CAM maps show where the score is sensitive, not why; they are no evidence of correct reasoning.")
    return out


def ensemble_lines(rec: dict | None) -> list[str]:
    """The model card's lines about a seed ensemble (metrics.json's 'ensemble' record): its members, how they are
    combined, and its validation NLL and ECE beside each member's alone with the members' spread; [] for one
    network."""
    if not isinstance(rec, dict) or not rec.get("seeds"):
        return []
    v, members = rec.get("val") or {}, [m for m in rec.get("members_val") or [] if isinstance(m, dict)]
    seeds = ", ".join(str(s) for s in rec["seeds"])
    lines = [
        f"- Ensemble: {len(rec['seeds'])} networks (seeds {seeds}), their {rec.get('combine', '?')}s averaged and "
        f"divided by one temperature {num_text(rec.get('temperature'))} fitted on the validation films; the threshold "
        f"rule {rec.get('threshold_rule', '?')} applied to the combined scores.",
        f"- Validation ({num_text(v.get('n'))} films), the ensemble: NLL {num_text(v.get('nll_after'))} (before its "
        f"temperature {num_text(v.get('nll_before'))}), ECE {num_text(v.get('ece_after'))} (before "
        f"{num_text(v.get('ece_before'))}); the temperature is fitted and measured on the same films.",
    ]
    for m in members:
        lines.append(
            f"- Member seed {m.get('seed', '?')} alone: accuracy {num_text(m.get('accuracy'))}, PNEUMONIA recall "
            f"{num_text(m.get('sensitivity'))}, NORMAL recall {num_text(m.get('specificity'))}, AUC "
            f"{num_text(m.get('auc'))}, NLL {num_text(m.get('nll'))} ({num_text(m.get('nll_tempered'))} with its own "
            f"temperature), ECE {num_text(m.get('ece'))} ({num_text(m.get('ece_tempered'))})."
        )
    spread = rec.get("members_val_spread") or {}
    ranges = [
        f"{label} {num_text(s.get('min'))}-{num_text(s.get('max'))}"
        for key, label in (("accuracy", "accuracy"), ("specificity", "NORMAL recall"), ("nll", "NLL"))
        if isinstance(s := spread.get(key), dict) and s.get("n")
    ]
    if ranges:
        lines.append(f"- The members' spread on validation: {'; '.join(ranges)}.")
    return lines
