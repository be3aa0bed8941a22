"""A checkpoint evaluated on a cohort: its metrics, out-of-distribution flags, lung-crop notes, adaptation, record.

The one pass over the cohort's films gives the scores and the features the OOD flag reads; the evaluation record is
what 'evaluate' keeps beside the checkpoint for its model card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..analysis import ood
from ..analysis.adapt import Adaptation, adapt
from ..analysis.evaluate import Scores, compute_metrics, predict_samples
from ..core.config import ADAPT_MODES, CLASSES
from ..core.io import make_dir
from ..core.runs import RunDir
from ..data.dataset import Sample, discover_split, prescan
from ..data.resources import Resources
from ..data.sources import source_for
from ..models.checkpoint import Predictor, checkpoint_file
from ..studies.card_records import cohort_name


def cohort_samples(source, split: str, image_size, resources: Resources | None = None) -> list[Sample]:
    """One split of a cohort (a folder without train/, a bare pair of class folders, a manifest), pre-scanned in
    RESOURCES (the predictor's context, so the films are decoded once); unreadable films left out."""
    return prescan(discover_split(source, split), image_size, resources=resources)[split]


@dataclass
class CohortEvaluation:
    """What 'evaluate' reports and keeps.

    Attributes:
        checkpoint: the checkpoint file evaluated.
        predictor: the loaded checkpoint.
        samples: the cohort's readable films.
        scores: their scores (and penultimate features, when the checkpoint carries an OOD reference).
        threshold: the threshold the metrics are taken at (the checkpoint's, or the override).
        metrics: compute_metrics' record, with 'ood' (the flags' summary) and 'lungs_not_found' (a lung crop) where
            they apply.
        columns: the per-film columns the scores CSV adds (OOD distance and flags, the lung-crop note).
        adaptation: the label-free adaptation, when bn, prior or both was asked for.
        record: the evaluation record (metrics, provenance, and under 'adapted' the adapted model's metrics; under
            'site' the site-adaptation decision, when site mode was asked for).
        site: site mode's decision (analysis.site.SiteDecision), or None when another mode was asked for.
        site_metrics: the site-adapted model's metrics, when site mode adapted.
    """

    checkpoint: str
    predictor: Predictor
    samples: list[Sample]
    scores: Scores
    threshold: float
    metrics: dict[str, Any]
    columns: dict[str, list]
    adaptation: Adaptation | None
    record: dict[str, Any]
    site: Any = None
    site_metrics: dict[str, Any] | None = None


def _flags(pred: Predictor, samples: list[Sample], scores: Scores, m: dict[str, Any]) -> dict[str, list]:
    """Is this cohort like the training data (flags ~0.5% + ~1% of validation films), and where a lung crop is
    used, on how many films were the lungs not found (kept whole): into M, and the per-film columns."""
    far, columns = ood.flag(pred.extra.get("ood"), scores.features), {}
    if far is not None:
        whole = ood.population_flag(pred.extra["ood"], [s.path for s in samples])
        m["ood"] = ood.summary(pred.extra["ood"], *far, whole=whole)
        columns = {"ood_distance": [f"{v:.2f}" for v in far[0]], "ood_flag": [int(v) for v in far[1]]}
        if whole is not None:
            columns.update(population_score=[f"{v:.3f}" for v in whole[0]], population_flag=[int(v) for v in whole[1]])
    if pred.preprocessing.crop != "none":
        notes = [pred.input_note(s.path) for s in samples]
        m["lungs_not_found"] = sum(n.startswith("lungs=NOT FOUND") for n in notes)
        columns["lungs"] = [n.removeprefix("lungs=") for n in notes]
    return columns


def evaluate_cohort(
    checkpoint: str | Path,
    source,
    split: str = "test",
    *,
    threshold: float | None = None,
    adapt_mode: str | None = None,
    adapt_alpha: float = 1.0,
    read: Callable[..., list[Sample]] = cohort_samples,
    command: str = "",
    argv: list[str] | None = None,
) -> CohortEvaluation:
    """Evaluate CHECKPOINT (a file or a run folder) on SPLIT of SOURCE (a folder, a Manifest, any data.sources.Source).

    Args:
        threshold: decide at this threshold instead of the checkpoint's.
        adapt_mode: "site" (analysis.site: adapted when the label-free checks pass), "bn", "prior" or "both": adapt
            to the cohort without its labels, reported beside the plain numbers; None or "none": not adapted.
        adapt_alpha: bn: the weight of the cohort's statistics against the training ones.
        read: (source, split, image size, the predictor's context) -> the cohort's films (the CLI's says what it skipped).
        command, argv: how it was asked for, for the record.

    Returns:
        The CohortEvaluation; nothing is written but the checkpoint's evaluations/ folder, made first.
    """
    checkpoint = str(checkpoint_file(checkpoint))
    # before the work: the record kept beside the checkpoint goes into pneumolib's own folder, never through a link
    make_dir(RunDir(Path(checkpoint).parent).evaluations, ours=True)
    pred = Predictor.load(checkpoint)
    samples = read(source, split, pred.preprocessing.view, pred.resources)
    override, threshold = threshold, pred.threshold if threshold is None else threshold
    features = bool(pred.extra.get("ood"))  # one pass: the scores and the features the OOD flag reads
    scores = predict_samples(
        pred.model, samples, pred.preprocessing, tta=pred.config.tta, resources=pred.resources, features=features
    )
    m = compute_metrics(scores, threshold, seed=0)
    columns = _flags(pred, samples, scores, m)
    classic = adapt_mode if adapt_mode in ADAPT_MODES else None  # else site mode, or none
    cohort = cohort_name(source_for(source).named_after(), split, classic)
    a, site, site_metrics, adapted, used, more = _adapt(
        pred, samples, scores, threshold, adapt_mode, adapt_alpha, cohort
    )
    columns.update(more)
    record = dict(
        m,
        checkpoint=str(Path(checkpoint).resolve()),
        split=split,
        experiment=pred.config.name,
        cohort=cohort,
        data_dir=source_for(source).describe(),
        checkpoint_threshold=pred.threshold,
        threshold_override=override,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command,
        argv=list(argv or []),
        adapted=adapted,
        site=None if site is None else site.record(),
        adaptation_used=used,
    )
    return CohortEvaluation(checkpoint, pred, samples, scores, threshold, m, columns, a, record, site, site_metrics)


def _adapt(pred: Predictor, samples, scores: Scores, threshold: float, mode, alpha: float, cohort: str):
    """evaluate_cohort's adaptation: (the classic adaptation or None, the site decision or None, the site-adapted
    metrics or None, the record's 'adapted' entry, which model was used in words, the scores file's columns)."""
    classic = mode if mode in ADAPT_MODES else None
    site, site_scores = _site(pred, samples, scores, threshold) if mode == "site" else (None, None)
    site_metrics = None if site_scores is None else compute_metrics(site_scores, threshold, seed=0)
    a = adapt(pred, samples, classic, threshold=threshold, alpha=alpha, cohort=cohort) if classic else None
    adapted = None if a is None else dict(compute_metrics(a.scores, a.threshold, seed=0), adaptation=a.record())
    if site_metrics is not None:
        adapted = dict(site_metrics, adaptation=site.record())
    used = adaptation_used(mode, site, a)
    adapted_scores, cut = (site_scores, threshold) if a is None else (a.scores, a.threshold)
    columns = _adapted_columns(used, len(samples), adapted_scores, cut)
    return a, site, site_metrics, adapted, used, columns


def _site(pred: Predictor, samples: list[Sample], scores: Scores, threshold: float):
    """Site mode on the cohort's films: the decision, and the adapted model's metrics when it adapted."""
    from ..analysis.site import adapt_to_site

    _, site_scores, decision = adapt_to_site(pred, samples, threshold=threshold, plain=scores)
    return decision, site_scores if decision.adapted else None


def adaptation_used(mode: str | None, site, a) -> str:
    """In words, which model the adapted figures and columns come from: recorded in the evaluation record and in
    every row of the scores file, so no output leaves it unsaid."""
    if site is not None:
        return "site: adapted (AdaBN)" if site.adapted else "site: not adapted (the model as trained)"
    if a is not None:
        return f"{mode} (asked for)"
    return "none (--adapt none: the model as trained)"


def _adapted_columns(used: str, n: int, adapted: Scores | None, threshold: float) -> dict[str, list]:
    """The scores file's adaptation columns for N films: what was used, on every row, and the adapted model's
    P(PNEUMONIA) and decision beside the plain ones when a model was adapted (p_pneumonia and prediction stay the
    model as trained's)."""
    cols: dict[str, list] = {"adaptation": [used] * n}
    if adapted is not None:
        cols["p_pneumonia_adapted"] = [f"{p:.6f}" for p in adapted.probs]
        cols["prediction_adapted"] = [CLASSES[int(p >= threshold)] for p in adapted.probs]
    return cols
