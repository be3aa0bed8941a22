"""Model cards and evaluation records: what a run folder knows about its model, in a file a person reads.

`write_model_card(run_dir)` writes RUN_DIR/MODEL_CARD.md in the Hugging Face model-card layout (YAML front
matter, then sections). Every number in it is read from the run folder's files (metrics.json, checkpoint.pt,
stress.json, evaluations/*.json, scores_test.csv); a number that is not there is reported as not recorded.
`record_evaluation` keeps one JSON per cohort that `evaluate` scored, in RUN_DIR/evaluations/.
"""
from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.adapt import ADAPTED_LABEL
from ..core.config import CLASSES
from ..core.io import RecordError, load_record, make_dir, read_record, save_json, write_text
from ..core.runs import RunDir
from ..core.stats import SMALL_N
from ..core.version import __version__
from ..studies.shortcuts import format_audit

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
KERMANY = {
    "source": "Kermany, Zhang and Goldbaum, \"Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
              "for Classification\", Mendeley Data v2, 2018, doi:10.17632/rscbjbr9sj.2 (paediatric chest "
              "radiographs; the Kaggle \"Chest X-Ray Images (Pneumonia)\" download)",
    "licence": "CC BY 4.0", "license_id": "cc-by-4.0",
    "population": "children aged one to five, frontal chest radiographs from one hospital (Guangzhou Women and "
                  "Children's Medical Center; Kermany et al., Cell 2018)",
}


# --- evaluation records -----------------------------------------------------------------------------------
def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "cohort"


def cohort_name(data_dir: str | Path, split: str = "test", adapt: str | None = None) -> str:
    """A file-name-safe name for a cohort: the data folder's name (the parent's, when the folder is itself a
    split folder holding NORMAL/ and PNEUMONIA/), '_<split>' unless the split is test, '.adapt-<mode>' if adapted."""
    p = Path(data_dir).expanduser().resolve()
    if p.name in SPLIT_NAMES and all((p / c).is_dir() for c in CLASSES):
        base, split, where = p.parent.name, p.name, p.parent
    else:
        base, where = p.name, p
    # the folder's name, then a digest of its full path: /a/real and /b/real are two cohorts, two records
    digest = hashlib.sha1(str(where).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = f"{_sanitise(base)}-{digest}" + ("" if split == "test" else f"_{split}")
    return name + (f".adapt-{adapt}" if adapt else "")


def record_evaluation(checkpoint: str | Path, record: dict[str, Any], name: str | None = None) -> Path:
    """Write `record` to RUN_DIR/evaluations/<name>.json, RUN_DIR being the checkpoint's folder (atomic)."""
    name = _sanitise(name or record.get("cohort") or "cohort")
    folder = make_dir(RunDir(Path(checkpoint).parent).evaluations, ours=True)  # never through a planted link
    return save_json(record, folder / f"{name}.json")


def load_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every evaluation record in RUN_DIR/evaluations, by file name; unreadable files are skipped and logged."""
    folder = RunDir(run_dir).evaluations
    out = []
    if folder.is_symlink():
        log.warning("%s: a symbolic link, not pneumolib's folder; its records are not read", folder)
        return out
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rec = load_record(p)  # a damaged or planted record is logged and left out
        if rec is not None:
            out.append(dict(rec, _file=p.name))
    return out


# --- reading the run folder -------------------------------------------------------------------------------
def data_source(data_dir: str | None) -> dict[str, str]:
    """Where the training data came from and its licence, when the data folder says so (a README naming
    Kermany et al. or CC BY 4.0, or the data set's own folder name chest_xray); else unknown."""
    if data_dir in (None, "", "fixture"):
        return {"source": "the bundled synthetic fixture (pneumolib.fixture: phantoms with exact lung and lesion "
                          "masks, not patients)", "licence": "unknown", "license_id": "unknown"}
    p = Path(data_dir)
    for readme in [p / n for n in ("README.md", "README.txt", "README")] + \
                  [p.parent / n for n in ("README.md", "README.txt", "README")]:
        try:
            text = readme.read_text(errors="replace")
        except OSError:
            continue
        if "kermany" in text.lower() or "cc by 4.0" in text.lower():
            return dict(KERMANY, evidence=str(readme))
    if p.name == "chest_xray":
        return dict(KERMANY, evidence=f"the folder name {p.name}")
    return {"source": f"{data_dir} (a user's folder; its origin is not recorded)", "licence": "unknown",
            "license_id": "unknown"}


def _checkpoint_info(run: RunDir) -> dict[str, Any] | None:
    if not run.checkpoint.is_file():
        return None
    from ..models.checkpoint import CheckpointError, read_checkpoint
    try:
        state = read_checkpoint(run.checkpoint)
    except CheckpointError as e:
        log.warning("%s", e)
        return None
    return {k: state.get(k) for k in ("format", "preprocessing", "threshold", "in_channels", "classes", "extra")}


# --- formatting -------------------------------------------------------------------------------------------
def _num(v: Any, digits: int = 3) -> str:
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


def _ci(m: dict[str, Any], key: str, which: str = "ci95") -> str:
    ci = (m.get(which) or {}).get(key)
    if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return ""
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


HEADLINE = (("accuracy", "accuracy"), ("sensitivity", "PNEUMONIA recall (sensitivity)"),
            ("specificity", "NORMAL recall (specificity)"), ("precision", "PNEUMONIA precision"),
            ("npv", "NORMAL precision"), ("balanced_accuracy", "balanced accuracy"), ("auc", "ROC AUC"))


def _metrics_table(m: dict[str, Any]) -> list[str]:
    wilson = any((m.get("ci95_wilson") or {}).values())
    head = "| metric | value | 95% CI (bootstrap) |" + (" 95% CI (Wilson) |" if wilson else "")
    lines = [head, "|---|---:|---:|" + ("---:|" if wilson else "")]
    for k, label in HEADLINE:
        if k not in m:
            continue
        row = f"| {label} | {_num(m[k])} | {_ci(m, k)} |"
        if wilson:
            row += f" {_ci(m, k, 'ci95_wilson')} |"
        lines.append(row)
    if "ece" in m:
        lines.append(f"| calibration error (ECE) | {_num(m['ece'])} | |" + (" |" if wilson else ""))
    npc = m.get("n_per_class") or {}
    per = ", ".join(f"{c} {_num(npc[c])}" for c in CLASSES if c in npc)
    lines += ["", f"n = {_num(m.get('n'))} ({per}); threshold {_num(m.get('threshold'))}."]
    cm = m.get("confusion_matrix")
    if cm:
        lines.append(f"Confusion matrix (rows true, columns predicted; NORMAL, PNEUMONIA): {cm}.")
    return lines


def _fmt_value(v: Any, key: str = "") -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) or v is None:
        return _num(v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) or x is None for x in v) \
            and "per_image" not in key:
        # a pair under a name with "ci" in it is an interval; any other pair, e.g. a map size, is a pair
        return f"{_num(v[0])}-{_num(v[1])}" if "ci" in key.lower() else f"{_num(v[0])} x {_num(v[1])}"
    if isinstance(v, (str, bool)):
        return str(v)
    return None


def _render_generic(obj: Any, depth: int = 0) -> list[str]:
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
            lines += _render_generic(v, depth + 1) if not (set(v) & set(CLASSES)) else ["", *_render_generic(v), ""]
        elif isinstance(v, (list, tuple)):
            lines.append(f"{'  ' * depth}- {k}: {len(v)} values (in metrics.json)")
    return lines


def _weights_text(weights: str | None, config: dict[str, Any]) -> str:
    if not weights:
        return "not recorded in metrics.json"
    w = weights.strip()
    if w == "random init":
        text = "**random init**: trained from randomly initialised weights; no pretrained weights were used."
    elif w.startswith("random init"):
        text = (f"**random init**: trained from randomly initialised weights ({w[len('random init'):].strip(' ()')}); "
                "the experiment asked for ImageNet weights, which the training machine did not have.")
    elif w.lower().startswith("imagenet"):
        text = f"**ImageNet-pretrained**: started from torchvision's ImageNet weights for {config.get('model', '?')} ({w})."
    else:
        text = f"{w}."
    if config.get("init_from"):
        text += f" Fine-tuned from the pneumolib checkpoint {config['init_from']}."
    return text


def _threshold_rule(rule: str | None) -> str:
    kind, _, arg = (rule or "").partition(":")
    if kind == "fixed":
        return f"`{rule}`: a fixed value, chosen before seeing any data"
    if kind == "youden":
        return "`youden`: the threshold that maximises sensitivity + specificity (Youden's J) on the validation split"
    if kind == "youden_shifted":
        return ("`youden_shifted`: Youden's J on the validation split pooled with its copies under the stress "
                "test's seen shifts (exposure, contrast, blur, field of view, rotation)")
    if kind == "sensitivity":
        return (f"`{rule}`: the highest threshold whose PNEUMONIA recall on the validation split is at least "
                f"{arg}")
    return f"`{rule}`" if rule else "not recorded"


def _transforms_text(config: dict[str, Any]) -> str:
    tt = config.get("train_transforms") or []
    try:
        return "; ".join(f"{c}: `{t}`" for c, t in tt) or "none"
    except (TypeError, ValueError):
        return str(tt)


def _reconstructed_train_command(run_dir: Path, metrics: dict[str, Any]) -> str:
    cfg = metrics.get("config") or {}
    parts = ["python -m pneumolib train", str(metrics.get("entry") or cfg.get("entry") or metrics.get("experiment")),
             "--out", str(run_dir)]
    parts += ["--data-dir", str(metrics.get("data_dir") or "fixture")]
    profile = metrics.get("profile")
    if profile:
        parts += ["--profile", str(profile)]
    default = {}
    try:  # flags only where the run differs from its profile's defaults
        from ..core.config import apply_profile, get_config
        default = apply_profile(get_config(str(metrics.get("entry") or cfg.get("name"))), profile).to_dict()
    except (KeyError, ValueError):
        pass
    for key, flag in (("epochs", "--epochs"), ("image_size", "--image-size"), ("batch_size", "--batch-size"),
                      ("seed", "--seed")):
        if key in cfg and (cfg[key] != default.get(key) or key == "seed"):
            parts += [flag, str(cfg[key])]
    if str(metrics.get("weights", "")).startswith("random init (") or cfg.get("pretrained") is False and default.get("pretrained"):
        parts.append("--allow-random-init")
    if cfg.get("init_from"):
        parts += ["--init-from", str(cfg["init_from"])]
    if metrics.get("holdout", "folders") != "folders":
        parts += ["--holdout", str(metrics["holdout"])]
    return " ".join(parts)


def _layers(layers: Any) -> str:
    return ", ".join(map(str, layers)) if isinstance(layers, (list, tuple)) else str(layers)


def _evaluation_section(rec: dict[str, Any]) -> list[str]:
    name = rec.get("cohort") or rec.get("_file", "?")
    lines = [f"#### {name}", ""]
    facts = [f"data: `{rec.get('data_dir', '?')}` split `{rec.get('split', '?')}`"]
    if rec.get("date"):
        facts.append(f"date {rec['date']}")
    ct = rec.get("checkpoint_threshold")
    if ct is not None and rec.get("threshold") is not None and abs(float(ct) - float(rec["threshold"])) > 1e-12:
        facts.append(f"threshold overridden: {_num(rec['threshold'])} instead of the checkpoint's {_num(ct)}")
    else:
        facts.append(f"the checkpoint's threshold {_num(rec.get('threshold'))}")
    lines += ["; ".join(facts) + ".", ""]
    lines += _metrics_table(rec)
    ad = rec.get("adapted")
    if isinstance(ad, dict):
        a = ad.get("adaptation") or {}
        lines += ["", f"**{a.get('label', ADAPTED_LABEL)}** (mode `{a.get('mode', '?')}`):", ""]
        if a.get("bn"):
            b = a["bn"]
            lines.append(f"- BatchNorm statistics re-estimated in {_layers(b.get('layers'))} (alpha {_num(b.get('alpha'), 2)}, "
                         f"{_num(b.get('bn_modules'))} layers, {_num(b.get('n_images'))} images).")
        if a.get("prior"):
            pr = a["prior"]
            lines.append(f"- Estimated PNEUMONIA share {_num(pr.get('estimated_prior'))} (training prior "
                         f"{_num(pr.get('train_prior'))}: {pr.get('train_prior_source', '?')}); threshold "
                         f"{_num(pr.get('base_threshold'))} -> {_num(pr.get('threshold'))}."
                         + (f" Warning: {pr['warning']}." if pr.get("warning") else ""))
        lines += [""] + _metrics_table(ad)
    if rec.get("command"):
        lines += ["", f"Command: `{rec['command']}`"]
    return lines + [""]


def _limitations(metrics: dict[str, Any], stress: dict[str, Any] | None, evals: list[dict[str, Any]],
                 source: dict[str, str]) -> list[str]:
    test = metrics.get("test") or {}
    out = ["- A research reproduction of a dated experiment log, not a validated medical device: it has not been "
           "evaluated prospectively or against radiologists."]
    if source.get("license_id") == "unknown" and metrics.get("data_dir") in (None, "fixture"):
        out.append("- Trained and tested on synthetic phantoms: its numbers describe the phantoms, not patients.")
    elif source is not None and "Kermany" in source.get("source", ""):
        out.append("- Trained on one public paediatric data set; films from other hospitals, scanners, ages or "
                   "views may look different to the model.")
    n = test.get("n")
    if n is not None and n < SMALL_N:
        out.append(f"- The internal test split has only {n} images: its intervals are wide.")
    if metrics.get("holdout", "folders") == "folders":
        out.append("- The internal test split comes from the same source as the training data; scores on it "
                   "overstate what the model does on a new cohort.")
    if stress and stress.get("rows"):
        shifted = [r for r in stress["rows"] if r.get("shift") != "clean"]
        if shifted:
            worst = min(shifted, key=lambda r: r.get("specificity", float("inf")))
            clean = next((r for r in stress["rows"] if r.get("shift") == "clean"), {})
            out.append(f"- Under simulated scanner shifts (stress test) NORMAL recall falls to "
                       f"{_num(worst.get('specificity'))} ({worst.get('shift')}) from {_num(clean.get('specificity'))} "
                       f"on the clean split.")
    for rec in evals:
        if rec.get("specificity") is not None and test.get("specificity") is not None:
            out.append(f"- On cohort {rec.get('cohort', rec.get('_file'))}: NORMAL recall {_num(rec['specificity'])}, "
                       f"PNEUMONIA recall {_num(rec.get('sensitivity'))} (internal test: {_num(test['specificity'])}, "
                       f"{_num(test.get('sensitivity'))}).")
    rule = (metrics.get("config") or {}).get("threshold") or ""
    chosen = ("is fixed, not tuned to any data" if rule.startswith("fixed")
              else "was chosen on the internal validation split")
    out.append(f"- The decision threshold {chosen}; a cohort with another class mix or another scanner may need "
               "another one (`evaluate --adapt prior` estimates the cohort's class mix from its images only).")
    out.append("- Grad-CAM maps show where the score is sensitive, not why; they are no evidence of correct reasoning.")
    return out


# --- the card ---------------------------------------------------------------------------------------------
CARD = string.Template("""$front_matter

# $heading

${title_line}\
A pneumolib run folder's model: a research reproduction of a dated experiment log, **not a diagnostic device**. \
Every number below is read from this run folder's files.

## Model details

$model_details

## Intended use

Research and teaching: re-running and auditing the experiment log, studying shortcut learning, calibration and \
dataset shift in chest X-ray classifiers, and as a baseline to compare against. Use it from Python \
(`pneumolib.checkpoint.Predictor.load("checkpoint.pt")`) or the command line \
(`python -m pneumolib predict $checkpoint IMAGE...`); the checkpoint carries its preprocessing and threshold.

$population

## Out-of-scope use

- Any clinical decision: diagnosis, triage, screening or treatment. This is a research reproduction, **not a \
diagnostic device**; it has no regulatory clearance and was not validated clinically.
- Images unlike the training data: other body parts, lateral views, adults (when trained on paediatric films), \
other scanners or hospitals without first measuring it there (`python -m pneumolib evaluate`).
- Telling bacterial from viral pneumonia, or any finding other than pneumonia: it has two classes only.

## Training data

$training_data

## Preprocessing

$preprocessing

## Weights

$weights

## Decision threshold

$threshold

## Evaluation

$evaluation

## Grad-CAM summary

$gradcam

## Shortcut audit

$shortcuts

## Known limitations

$limitations

## How to reproduce

$reproduce
""")


@dataclass
class _Run:
    """What a card is made from: the run folder's files, read once."""

    run: RunDir
    metrics: dict[str, Any]
    cfg: dict[str, Any]
    ckpt: dict[str, Any] | None
    stress: dict[str, Any] | None
    evals: list[dict[str, Any]]
    source: dict[str, str]

    @property
    def test(self) -> dict[str, Any]:
        return self.metrics.get("test") or {}

    @property
    def name(self) -> str:
        return self.metrics.get("experiment") or self.cfg.get("name") or self.run.path.name

    @property
    def entry(self) -> str:
        return self.metrics.get("entry") or self.cfg.get("entry") or ""

    @property
    def preprocessing(self) -> dict[str, Any]:
        return (self.ckpt or {}).get("preprocessing") or {k: self.cfg.get(k) for k in
                                                          ("image_size", "in_channels", "normalize")}


def _read_run(run_dir: str | Path) -> _Run:
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise FileNotFoundError(f"{run.metrics}: no metrics.json (is {run.path} a finished run folder?)")
    metrics = read_record(run.metrics)  # RecordError: one line naming the file and what is wrong
    metrics = _md(metrics)
    return _Run(run, metrics, metrics.get("config") or {}, _checkpoint_info(run),
                _md(load_record(run.stress)), _md(load_evaluations(run.path)),
                data_source(metrics.get("data_dir")))


def _front_matter(r: _Run) -> str:
    """YAML front matter written by hand (pneumolib does not depend on a YAML library)."""
    fm = ["---", f"license: {r.source['license_id']}", "library_name: pytorch", "pipeline_tag: image-classification",
          "tags:"]
    fm += [f"- {t}" for t in ("pneumolib", "chest-x-ray", "pneumonia", "image-classification",
                              str(r.cfg.get("model", "resnet18")), "research-only", "not-for-clinical-use")]
    fm += ["metrics:"] + [f"- {m}" for m in ("accuracy", "recall", "roc_auc", "ece")]
    results = [("internal test split", r.test)] if r.test else []
    results += [(f"external cohort {e.get('cohort', e.get('_file'))}", e) for e in r.evals if "accuracy" in e]
    if results:
        fm += ["model-index:", f"- name: {json.dumps(str(r.name))}", "  results:"]
        for ds_name, m in results:
            fm += ["  - task:", "      type: image-classification", "      name: PNEUMONIA vs NORMAL",
                   "    dataset:", f"      name: {json.dumps(ds_name)}", "      type: chest-x-ray", "    metrics:"]
            for key, typ, label in (("accuracy", "accuracy", "accuracy"), ("sensitivity", "recall", "PNEUMONIA recall"),
                                    ("specificity", "recall", "NORMAL recall"), ("auc", "roc_auc", "ROC AUC"),
                                    ("ece", "ece", "calibration error (ECE)")):
                v = m.get(key)
                if isinstance(v, (int, float)) and not math.isnan(float(v)):
                    fm += [f"    - type: {typ}", f"      name: \"{label}\"", f"      value: {float(v):.4f}"]
    return "\n".join(fm + ["---"])


def _model_details(r: _Run) -> str:
    cfg, m, pre = r.cfg, r.metrics, r.preprocessing
    said = f"; the log said: \"{cfg['log_said'].rstrip('.')}\"" if cfg.get("log_said") else ""
    return "\n".join([
        f"- Architecture: {cfg.get('model', '?')} (torchvision), {_num(pre.get('in_channels'))} input channel(s), "
        f"two outputs (NORMAL = 0, PNEUMONIA = 1); the score is the softmax P(PNEUMONIA)"
        + (", averaged over the image and its horizontal flip (TTA)" if cfg.get("tta") else "") + ".",
        f"- Experiment: `{r.name}`" + (f", log entry {r.entry}" if r.entry else "")
        + (f" of {cfg['date']}" if cfg.get("date") else "") + said + ".",
        f"- Training: {_num(cfg.get('epochs'))} epochs (best by validation loss: epoch {_num(m.get('best_epoch'))}), "
        f"batch {_num(cfg.get('batch_size'))}, {cfg.get('optimizer', '?')} lr {cfg.get('lr', '?')}"
        f"{', weight decay ' + str(cfg['weight_decay']) if cfg.get('weight_decay') else ''}, "
        f"scheduler {cfg.get('scheduler', '?')}, loss {cfg.get('loss', '?')}"
        f"{', label smoothing ' + str(cfg['label_smoothing']) if cfg.get('label_smoothing') else ''}, "
        f"sampler {cfg.get('sampler', '?')}, class weighting {cfg.get('class_weighting', '?')}, seed "
        f"{cfg.get('seed', '?')}, profile {m.get('profile', '?')}, device {m.get('device', '?')}, "
        f"{_num((m.get('train_seconds') or float('nan')) / 60, 1)} training minutes.",
        f"- Training augmentation by class: {_transforms_text(cfg)}.",
        f"- Files: `checkpoint.pt` ({(r.ckpt or {}).get('format') or 'not found'}: weights, config, preprocessing, "
        f"threshold), `metrics.json`, `scores_test.csv`; made with pneumolib {__version__}."])


def _training_data(r: _Run) -> str:
    m, counts = r.metrics, r.metrics.get("data_counts")
    holdout = m.get("holdout", "folders")
    lines = [f"- Source: {r.source['source']}.",
             f"- Licence: {r.source['licence']}" + (f" (from {r.source['evidence']})" if r.source.get("evidence") else "")
             + (". Cite the data set wherever results from this model are shown." if r.source["licence"] != "unknown"
                else "."),
             f"- Data folder: `{m.get('data_dir', 'not recorded')}`; test split: "
             + ("the data folder's test/" if holdout == "folders" else f"the `{holdout}` holdout") + "."]
    if m.get("data_fingerprint"):
        lines.append(f"- Train and val files (paths and sizes) fingerprint: `{m['data_fingerprint']}`.")
    if isinstance(counts, dict) and counts:
        lines += ["", "| split | NORMAL | PNEUMONIA |", "|---|---:|---:|"]
        lines += [f"| {split} | {_num((c or {}).get('NORMAL'))} | {_num((c or {}).get('PNEUMONIA'))} |"
                  for split, c in counts.items()] + [""]
    else:
        npc = r.test.get("n_per_class") or {}
        lines.append("- Counts: train and val not recorded in metrics.json; test: "
                     + (", ".join(f"{c} {_num(npc[c])}" for c in CLASSES if c in npc) or "not recorded") + ".")
    cc = ((r.ckpt or {}).get("extra") or {}).get("class_counts")
    if isinstance(cc, dict):
        lines.append("- Images the model trained on (after the pre-scan): "
                     + ", ".join(f"{c} {_num(cc.get(c))}" for c in CLASSES) + ".")
    if r.cfg.get("max_train_images"):
        lines.append(f"- Each epoch used a class-stratified subsample of {_num(r.cfg['max_train_images'])} training "
                     "images.")
    lines += [f"- Note: {note}" for note in m.get("notes") or []]
    return "\n".join(lines)


def _preprocessing(r: _Run) -> str:
    pre = r.preprocessing
    crop = ""
    if pre.get("crop", "none") != "none":
        crop = (f"cropped to its lung fields (the bounding box of the shipped lung segmenter's mask, found on the whole "
                f"film, plus {_num(pre.get('crop_margin'), 2)} of the box's size on each side; segmenter "
                f"`{pre.get('crop_segmenter')}`; a film whose mask fails the segmenter's check is kept whole and "
                "flagged), then ")
    return (f"From the checkpoint{'' if r.ckpt else ' (not found: from metrics.json config)'}: every file is decoded "
            f"to 8-bit greyscale (DICOM through its modality and VOI transforms), {crop}resized to "
            f"{_num(pre.get('image_size'))} x {_num(pre.get('image_size'))} px (bilinear), scaled to [0, 1], "
            f"normalisation `{pre.get('normalize', '?')}`, and repeated to {_num(pre.get('in_channels'))} channel(s). "
            "The same steps run at training and inference because they are saved in the checkpoint.")


def _threshold(r: _Run) -> str:
    thr = r.metrics.get("threshold", (r.ckpt or {}).get("threshold"))
    return f"PNEUMONIA when P(PNEUMONIA) >= **{_num(thr)}**; rule {_threshold_rule(r.cfg.get('threshold'))}."


def _stress_lines(r: _Run) -> list[str]:
    st = r.stress
    if not (st and st.get("rows")):
        return [f"Not run. `python -m pneumolib stress {r.run.path}` writes stress.json; re-write this card afterwards."]
    lines = ["| shift | group | accuracy | accuracy at 37.5% NORMAL | PNEUMONIA recall | NORMAL recall | AUC |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {x.get('shift')} | {x.get('group') or ''} | {_num(x.get('accuracy'))} | {_num(x.get('accuracy_ext'))} "
              f"| {_num(x.get('sensitivity'))} | {_num(x.get('specificity'))} | {_num(x.get('auc'))} |"
              for x in st["rows"]]
    if st.get("summary"):
        lines += ["", "Means over the shifted copies: "
                  + ", ".join(f"{k} {_num(v)}" for k, v in st["summary"].items()) + "."]
    return lines + ["", f"At the checkpoint's threshold {_num(st.get('threshold'))}, split `{st.get('split', 'test')}` "
                        "(from stress.json)."]


def _evaluation(r: _Run) -> str:
    L = ["### Internal test split", ""]
    if r.test:
        L += _metrics_table(r.test)
        sub = r.metrics.get("test_subset")
        if sub:
            L += ["", f"The log's {_num(sub.get('n'))}-image report on this split: accuracy {_num(sub.get('accuracy'))} "
                      f"({_ci(sub, 'accuracy') or 'no interval'})."]
    else:
        L.append("No test split was evaluated (metrics.json has no `test`).")
    L += ["", "### Stress test (simulated scanner shifts)", "", *_stress_lines(r), "", "### External cohorts", ""]
    if r.evals:
        L += ["Each `evaluate` of this checkpoint on another folder, from `evaluations/`:", ""]
        for rec in r.evals:
            L += _evaluation_section(rec)
    else:
        L += [f"None recorded. `python -m pneumolib evaluate {r.run.checkpoint} --data-dir COHORT` records "
              "one in `evaluations/`.", ""]
    ece = r.test.get("ece")
    L += ["### Calibration", "",
          "Expected calibration error (ECE) of P(PNEUMONIA): equal-width bins of P(PNEUMONIA), the mean absolute gap "
          "between predicted probability and observed PNEUMONIA share, weighted by bin size (0 is perfect).", "",
          f"- internal test: {_num(ece) if ece is not None else 'not recorded'}"]
    for rec in r.evals:
        line = f"- {rec.get('cohort', rec.get('_file'))}: {_num(rec.get('ece')) if 'ece' in rec else 'not recorded'}"
        if isinstance(rec.get("adapted"), dict) and "ece" in rec["adapted"]:
            line += f" ({ADAPTED_LABEL}: {_num(rec['adapted']['ece'])})"
        L.append(line)
    return "\n".join(L)


def _gradcam(r: _Run) -> str:
    cam = r.metrics.get("gradcam")
    if isinstance(cam, dict) and isinstance(cam.get("summary"), dict):
        cam = cam["summary"]
    if not cam:
        return "Not recorded (the run was trained with --cam-per-class 0)."
    return "\n".join(["From metrics.json `gradcam` (Grad-CAM of the test images; lung statistics use the lung-field "
                      "masks):", "", *_render_generic(cam)])


def _population(r: _Run) -> str:
    """Who the model was trained on, and how it says a film is unlike them (its OOD reference)."""
    who = r.source.get("population")
    text = (f"**Intended population**: the training data's, {who}. Adults, other hospitals and other scanners are "
            "outside it until measured there." if who else
            "**Intended population**: the training data's, which this run folder does not describe.")
    ood = ((r.ckpt or {}).get("extra") or {}).get("ood")
    if ood:
        text += (f" `predict` and `evaluate` report how unlike the training films each film looks (Mahalanobis "
                 f"distance of penultimate features; flagged above {_num(ood.get('threshold'), 1)}, which flags "
                 f"{_num(100 * ood.get('val_flagged', float('nan')), 1)}% of validation films).")
    else:
        text += " This checkpoint carries no out-of-distribution reference (trained before pneumolib had one)."
    return text


def _shortcuts(r: _Run) -> str:
    """Every shortcut audit kept in the run folder (shortcuts_<split>.json, written by `shortcuts`)."""
    found = sorted(r.run.path.glob("shortcuts_*.json"))
    if not found:
        return (f"Not run. `python -m pneumolib shortcuts {r.run.path}` audits the validation split (a probe on "
                "acquisition statistics, reliance on pixels outside and inside the lungs, worst-group recall); "
                "re-write this card afterwards.")
    L = []
    for path in found:
        rep = load_record(path)
        if rep is None:
            L += [f"{path.name}: not a record pneumolib wrote (ignored; run `shortcuts` again)", ""]
            continue
        L += [f"On the `{rep.get('split')}` split ({path.name}):", "", "```", format_audit(rep), "```", ""]
    return "\n".join(L).rstrip()


def _reproduce(r: _Run) -> str:
    if r.metrics.get("command"):
        L = ["Training, as recorded in metrics.json:", "", "```bash", str(r.metrics["command"]), "```"]
    else:
        L = ["metrics.json does not record the training command line; reconstructed from its config:", "",
             "```bash", _reconstructed_train_command(r.run.path, r.metrics), "```"]
    more = [e["command"] for e in r.evals if e.get("command")]
    if more:
        L += ["", "Evaluations, as recorded in evaluations/:", "", "```bash", *more, "```"]
    return "\n".join(L + ["", "This card:", "", "```bash", f"python -m pneumolib card {r.run.path}", "```"])


def _md(v: Any) -> Any:
    """Text copied from a record into the card, inert: HTML escaped, one line, no backtick or table bar to break
    out of a code span or a table (a planted record cannot inject markup or headings). Recursive."""
    if isinstance(v, str):
        return html.escape(" ".join(v.split()), quote=False).replace("`", "'").replace("|", "\\|")
    if isinstance(v, dict):
        return {k: _md(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_md(x) for x in v]
    return v


def render_model_card(run_dir: str | Path) -> str:
    """The model card of a finished run folder, as Markdown with YAML front matter (the CARD template filled by one
    small function per section); FileNotFoundError (one line) when the folder has no metrics.json, RecordError
    (one line) when a record there does not format as pneumolib writes it."""
    r = _read_run(run_dir)
    try:
        return _render(r)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise RecordError(f"{r.run.metrics} (or another record in {r.run.path}) is not what pneumolib wrote "
                          f"({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:80]})") from None


def _render(r: "_Run") -> str:
    return CARD.substitute(
        front_matter=_front_matter(r),
        heading=f"{r.name}{f' (log entry {r.entry})' if r.entry else ''}: PNEUMONIA vs NORMAL chest X-ray classifier",
        title_line=f"{r.cfg['title']}.\n\n" if r.cfg.get("title") else "",
        model_details=_model_details(r), checkpoint=r.run.checkpoint, training_data=_training_data(r),
        preprocessing=_preprocessing(r), weights=_weights_text(r.metrics.get("weights"), r.cfg),
        threshold=_threshold(r), evaluation=_evaluation(r), gradcam=_gradcam(r), shortcuts=_shortcuts(r),
        population=_population(r),
        limitations="\n".join(_limitations(r.metrics, r.stress, r.evals, r.source)), reproduce=_reproduce(r))


def write_model_card(run_dir: str | Path) -> Path:
    """Write RUN_DIR/MODEL_CARD.md (atomically) and return its path."""
    text = render_model_card(run_dir)
    return write_text(RunDir(run_dir).card, text)
