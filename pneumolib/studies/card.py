"""Model cards (Hugging Face layout) written from what a run folder holds; every card name in one place."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

from ..analysis.adapt import ADAPTED_LABEL
from ..core.config import CLASSES
from ..core.io import RecordError, load_record, write_text
from ..core.runs import RunDir
from ..core.version import __version__
from ..studies.card_format import (  # noqa: F401 (re-exported: every name in one place)
    HEADLINE,
    ci_text,
    ensemble_lines,
    evaluation_section,
    limitations_lines,
    metrics_table,
    num_text,
    reconstructed_train_command,
    render_generic,
    threshold_rule_text,
    transforms_text,
    weights_text,
)
from ..studies.card_records import (  # noqa: F401 (re-exported: every name in one place)
    KERMANY,
    SPLIT_NAMES,
    CardRun,
    cohort_name,
    data_source,
    load_evaluations,
    read_run,
    record_evaluation,
)
from ..studies.shortcuts import format_audit

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
(`pneumolib.load("checkpoint.pt")`) or the command line \
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


def _front_matter(r: CardRun) -> str:
    """YAML front matter written by hand (pneumolib does not depend on a YAML library)."""
    fm = [
        "---",
        f"license: {r.source['license_id']}",
        "library_name: pytorch",
        "pipeline_tag: image-classification",
        "tags:",
    ]
    fm += [
        f"- {t}"
        for t in (
            "pneumolib",
            "chest-x-ray",
            "pneumonia",
            "image-classification",
            str(r.cfg.get("model", "resnet18")),
            "research-only",
            "not-for-clinical-use",
        )
    ]
    fm += ["metrics:"] + [f"- {m}" for m in ("accuracy", "recall", "roc_auc", "ece")]
    results = [("internal test split", r.test)] if r.test else []
    results += [(f"external cohort {e.get('cohort', e.get('_file'))}", e) for e in r.evals if "accuracy" in e]
    if results:
        fm += ["model-index:", f"- name: {json.dumps(str(r.name))}", "  results:"]
        for ds_name, m in results:
            fm += [
                "  - task:",
                "      type: image-classification",
                "      name: PNEUMONIA vs NORMAL",
                "    dataset:",
                f"      name: {json.dumps(ds_name)}",
                "      type: chest-x-ray",
                "    metrics:",
            ]
            for key, typ, label in (
                ("accuracy", "accuracy", "accuracy"),
                ("sensitivity", "recall", "PNEUMONIA recall"),
                ("specificity", "recall", "NORMAL recall"),
                ("auc", "roc_auc", "ROC AUC"),
                ("ece", "ece", "calibration error (ECE)"),
            ):
                v = m.get(key)
                if isinstance(v, (int, float)) and not math.isnan(float(v)):
                    fm += [f"    - type: {typ}", f'      name: "{label}"', f"      value: {float(v):.4f}"]
    return "\n".join(fm + ["---"])


def _model_details(r: CardRun) -> str:
    cfg, m, pre = r.cfg, r.metrics, r.preprocessing
    said = f'; the log said: "{cfg["log_said"].rstrip(".")}"' if cfg.get("log_said") else ""
    return "\n".join(
        [
            f"- Architecture: {cfg.get('model', '?')} (torchvision), {num_text(pre.get('in_channels'))} input channel(s), "
            f"two outputs (NORMAL = 0, PNEUMONIA = 1); the score is the softmax P(PNEUMONIA)"
            + (", averaged over the image and its horizontal flip (TTA)" if cfg.get("tta") else "")
            + ".",
            f"- Experiment: `{r.name}`"
            + (f", log entry {r.entry}" if r.entry else "")
            + (f" of {cfg['date']}" if cfg.get("date") else "")
            + said
            + ".",
            f"- Training: {num_text(cfg.get('epochs'))} epochs (best by validation loss: epoch {num_text(m.get('best_epoch'))}), "
            f"batch {num_text(cfg.get('batch_size'))}, {cfg.get('optimizer', '?')} lr {cfg.get('lr', '?')}"
            f"{', weight decay ' + str(cfg['weight_decay']) if cfg.get('weight_decay') else ''}, "
            f"scheduler {cfg.get('scheduler', '?')}, loss {cfg.get('loss', '?')}"
            f"{', label smoothing ' + str(cfg['label_smoothing']) if cfg.get('label_smoothing') else ''}, "
            f"sampler {cfg.get('sampler', '?')}, class weighting {cfg.get('class_weighting', '?')}, seed "
            f"{cfg.get('seed', '?')}, profile {m.get('profile', '?')}, device {m.get('device', '?')}, "
            f"{num_text((m.get('train_seconds') or float('nan')) / 60, 1)} training minutes.",
            f"- Training augmentation by class: {transforms_text(cfg)}.",
            f"- Files: `checkpoint.pt` ({(r.ckpt or {}).get('format') or 'not found'}: weights, config, preprocessing, "
            f"threshold), `metrics.json`, `scores_test.csv`; made with pneumolib {__version__}.",
            *ensemble_lines(m.get("ensemble")),
        ]
    )


def _training_data(r: CardRun) -> str:
    m, counts = r.metrics, r.metrics.get("data_counts")
    holdout = m.get("holdout", "folders")
    lines = [
        f"- Source: {r.source['source']}.",
        f"- Licence: {r.source['licence']}"
        + (f" (from {r.source['evidence']})" if r.source.get("evidence") else "")
        + (
            ". Cite the data set wherever results from this model are shown."
            if r.source["licence"] != "unknown"
            else "."
        ),
        f"- Data folder: `{m.get('data_dir', 'not recorded')}`; test split: "
        + ("the data folder's test/" if holdout == "folders" else f"the `{holdout}` holdout")
        + ".",
    ]
    if m.get("data_fingerprint"):
        lines.append(f"- Train and val files (paths and sizes) fingerprint: `{m['data_fingerprint']}`.")
    if isinstance(counts, dict) and counts:
        lines += ["", "| split | NORMAL | PNEUMONIA |", "|---|---:|---:|"]
        lines += [
            f"| {split} | {num_text((c or {}).get('NORMAL'))} | {num_text((c or {}).get('PNEUMONIA'))} |"
            for split, c in counts.items()
        ] + [""]
    else:
        npc = r.test.get("n_per_class") or {}
        lines.append(
            "- Counts: train and val not recorded in metrics.json; test: "
            + (", ".join(f"{c} {num_text(npc[c])}" for c in CLASSES if c in npc) or "not recorded")
            + "."
        )
    cc = ((r.ckpt or {}).get("extra") or {}).get("class_counts")
    if isinstance(cc, dict):
        lines.append(
            "- Images the model trained on (after the pre-scan): "
            + ", ".join(f"{c} {num_text(cc.get(c))}" for c in CLASSES)
            + "."
        )
    if r.cfg.get("max_train_images"):
        lines.append(
            f"- Each epoch used a class-stratified subsample of {num_text(r.cfg['max_train_images'])} training images."
        )
    lines += [f"- Note: {note}" for note in m.get("notes") or []]
    return "\n".join(lines)


def _preprocessing(r: CardRun) -> str:
    pre = r.preprocessing
    crop = ""
    if pre.get("crop", "none") != "none":
        crop = (
            f"cropped to its lung fields (the bounding box of the shipped lung segmenter's mask, found on the whole "
            f"film, plus {num_text(pre.get('crop_margin'), 2)} of the box's size on each side; segmenter "
            f"`{pre.get('crop_segmenter')}`; a film whose mask fails the segmenter's check is kept whole and "
            "flagged), then "
        )
    return (
        f"From the checkpoint{'' if r.ckpt else ' (not found: from metrics.json config)'}: every file is decoded "
        f"to 8-bit greyscale (DICOM through its modality and VOI transforms), {crop}resized to "
        f"{num_text(pre.get('image_size'))} x {num_text(pre.get('image_size'))} px (bilinear), scaled to [0, 1], "
        f"normalisation `{pre.get('normalize', '?')}`, and repeated to {num_text(pre.get('in_channels'))} channel(s). "
        "The same steps run at training and inference because they are saved in the checkpoint."
    )


def _threshold(r: CardRun) -> str:
    thr = r.metrics.get("threshold", (r.ckpt or {}).get("threshold"))
    return f"PNEUMONIA when P(PNEUMONIA) >= **{num_text(thr)}**; rule {threshold_rule_text(r.cfg.get('threshold'))}."


def _stress_lines(r: CardRun) -> list[str]:
    st = r.stress
    if not (st and st.get("rows")):
        return [
            f"Not run. `python -m pneumolib stress {r.run.path}` writes stress.json; re-write this card afterwards."
        ]
    lines = [
        "| shift | group | accuracy | accuracy at 37.5% NORMAL | PNEUMONIA recall | NORMAL recall | AUC |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {x.get('shift')} | {x.get('group') or ''} | {num_text(x.get('accuracy'))} | {num_text(x.get('accuracy_ext'))} "
        f"| {num_text(x.get('sensitivity'))} | {num_text(x.get('specificity'))} | {num_text(x.get('auc'))} |"
        for x in st["rows"]
    ]
    if st.get("summary"):
        lines += [
            "",
            "Means over the shifted copies: " + ", ".join(f"{k} {num_text(v)}" for k, v in st["summary"].items()) + ".",
        ]
    return lines + [
        "",
        f"At the checkpoint's threshold {num_text(st.get('threshold'))}, split `{st.get('split', 'test')}` "
        "(from stress.json).",
    ]


def _evaluation(r: CardRun) -> str:
    L = ["### Internal test split", ""]
    if r.test:
        L += metrics_table(r.test)
        sub = r.metrics.get("test_subset")
        if sub:
            L += [
                "",
                f"The log's {num_text(sub.get('n'))}-image report on this split: accuracy {num_text(sub.get('accuracy'))} "
                f"({ci_text(sub, 'accuracy') or 'no interval'}).",
            ]
    else:
        L.append("No test split was evaluated (metrics.json has no `test`).")
    L += ["", "### Stress test (simulated scanner shifts)", "", *_stress_lines(r), "", "### External cohorts", ""]
    if r.evals:
        L += ["Each `evaluate` of this checkpoint on another folder, from `evaluations/`:", ""]
        for rec in r.evals:
            L += evaluation_section(rec)
    else:
        L += [
            f"None recorded. `python -m pneumolib evaluate {r.run.checkpoint} --data-dir COHORT` records "
            "one in `evaluations/`.",
            "",
        ]
    ece = r.test.get("ece")
    L += [
        "### Calibration",
        "",
        "Expected calibration error (ECE) of P(PNEUMONIA): equal-width bins of P(PNEUMONIA), the mean absolute gap "
        "between predicted probability and observed PNEUMONIA share, weighted by bin size (0 is perfect).",
        "",
        f"- internal test: {num_text(ece) if ece is not None else 'not recorded'}",
    ]
    for rec in r.evals:
        line = (
            f"- {rec.get('cohort', rec.get('_file'))}: {num_text(rec.get('ece')) if 'ece' in rec else 'not recorded'}"
        )
        if isinstance(rec.get("adapted"), dict) and "ece" in rec["adapted"]:
            line += f" ({ADAPTED_LABEL}: {num_text(rec['adapted']['ece'])})"
        L.append(line)
    return "\n".join(L)


def _gradcam(r: CardRun) -> str:
    cam = r.metrics.get("gradcam")
    if isinstance(cam, dict) and isinstance(cam.get("summary"), dict):
        cam = cam["summary"]
    if not cam:
        return "Not recorded (the run was trained with --cam-per-class 0)."
    return "\n".join(
        [
            "From metrics.json `gradcam` (Grad-CAM of the test images; lung statistics use the lung-field masks):",
            "",
            *render_generic(cam),
        ]
    )


def _population(r: CardRun) -> str:
    """Who the model was trained on, and how it says a film is unlike them (its OOD reference)."""
    who = r.source.get("population")
    text = (
        f"**Intended population**: the training data's, {who}. Adults, other hospitals and other scanners are "
        "outside it until measured there."
        if who
        else "**Intended population**: the training data's, which this run folder does not describe."
    )
    ood = ((r.ckpt or {}).get("extra") or {}).get("ood")
    if ood:
        text += (
            f" `predict` and `evaluate` report how unlike the training films each film looks (Mahalanobis "
            f"distance of penultimate features; flagged above {num_text(ood.get('threshold'), 1)}, which flags "
            f"{num_text(100 * ood.get('val_flagged', float('nan')), 1)}% of validation films)."
        )
    else:
        text += " This checkpoint carries no out-of-distribution reference (trained before pneumolib had one)."
    return text


def _shortcuts(r: CardRun) -> str:
    """Every shortcut audit kept in the run folder (shortcuts_<split>.json, written by `shortcuts`)."""
    found = sorted(r.run.path.glob("shortcuts_*.json"))
    if not found:
        return (
            f"Not run. `python -m pneumolib shortcuts {r.run.path}` audits the validation split (a probe on "
            "acquisition statistics, reliance on pixels outside and inside the lungs, worst-group recall); "
            "re-write this card afterwards."
        )
    L = []
    for path in found:
        rep = load_record(path)
        if rep is None:
            L += [f"{path.name}: not a record pneumolib wrote (ignored; run `shortcuts` again)", ""]
            continue
        L += [f"On the `{rep.get('split')}` split ({path.name}):", "", "```", format_audit(rep), "```", ""]
    return "\n".join(L).rstrip()


def _reproduce(r: CardRun) -> str:
    if r.metrics.get("command"):
        L = ["Training, as recorded in metrics.json:", "", "```bash", str(r.metrics["command"]), "```"]
    else:
        L = [
            "metrics.json does not record the training command line; reconstructed from its config:",
            "",
            "```bash",
            reconstructed_train_command(r.run.path, r.metrics),
            "```",
        ]
    more = [e["command"] for e in r.evals if e.get("command")]
    if more:
        L += ["", "Evaluations, as recorded in evaluations/:", "", "```bash", *more, "```"]
    return "\n".join(L + ["", "This card:", "", "```bash", f"python -m pneumolib card {r.run.path}", "```"])


def render_model_card(run_dir: str | Path) -> str:
    """The model card of a finished run folder, as Markdown with YAML front matter (the CARD template filled by one
    small function per section); FileNotFoundError (one line) when the folder has no metrics.json, RecordError
    (one line) when a record there does not format as pneumolib writes it."""
    r = read_run(run_dir)
    try:
        return _render(r)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise RecordError(
            f"{r.run.metrics} (or another record in {r.run.path}) is not what pneumolib wrote "
            f"({type(e).__name__}: "
            f"{' '.join(str(e).split())[:80]})"
        ) from None


def _render(r: "CardRun") -> str:
    return CARD.substitute(
        front_matter=_front_matter(r),
        heading=f"{r.name}{f' (log entry {r.entry})' if r.entry else ''}: PNEUMONIA vs NORMAL chest X-ray classifier",
        title_line=f"{r.cfg['title']}.\n\n" if r.cfg.get("title") else "",
        model_details=_model_details(r),
        checkpoint=r.run.checkpoint,
        training_data=_training_data(r),
        preprocessing=_preprocessing(r),
        weights=weights_text(r.metrics.get("weights"), r.cfg),
        threshold=_threshold(r),
        evaluation=_evaluation(r),
        gradcam=_gradcam(r),
        shortcuts=_shortcuts(r),
        population=_population(r),
        limitations="\n".join(limitations_lines(r.metrics, r.stress, r.evals, r.source)),
        reproduce=_reproduce(r),
    )


def write_model_card(run_dir: str | Path) -> Path:
    """Write RUN_DIR/MODEL_CARD.md (atomically) and return its path."""
    text = render_model_card(run_dir)
    return write_text(RunDir(run_dir).card, text)
