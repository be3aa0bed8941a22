"""The public API: load a checkpoint, predict files and get whole records, explain, train (run), list, segment lungs.

Everything `python -m pneumolib predict` prints comes from `predict` here; the CLI only formats it. The names are
re-exported by `pneumolib` itself (`import pneumolib; pneumolib.predict(...)`). Training is `run` (as the CLI's
main job): the training loop itself is `pneumolib.training.fit`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.config import CLASSES, SITE_MODES, ExperimentConfig, diff, format_diff
from .studies.catalogue import REGISTRY, get_config, previous

if TYPE_CHECKING:  # imported where used: importing the API (the CLI's 'experiments') costs no torch
    import numpy as np

    from .analysis.cam import Explanation
    from .data.dataset import DecodedCache
    from .data.imaging import ImageError
    from .data.resources import Resources
    from .models.checkpoint import Prediction, Predictor
    from .studies.experiment import RunResult

__all__ = ["Prediction", "load", "predict", "predict_folder", "explain", "run", "experiments", "segment_lungs"]


def __getattr__(name: str):
    if name == "Prediction":  # the served record's class, imported when first asked for
        from .models.checkpoint import Prediction

        return Prediction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """Load a checkpoint with its preprocessing and decision threshold.

    Args:
        checkpoint: a checkpoint file, or a run folder holding checkpoint.pt.
        device: "cpu", "cuda" or "mps".

    Returns:
        The Predictor (model, config, preprocessing, threshold, training record in `.extra`).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it (every field is checked first).
    """
    from .models.checkpoint import Predictor

    return Predictor.load(checkpoint, device=device)


def _predictor(checkpoint: str | Path | Predictor) -> Predictor:
    from .models.checkpoint import Predictor

    return checkpoint if isinstance(checkpoint, Predictor) else load(checkpoint)


def predict(
    checkpoint: str | Path | Predictor,
    files: list[str | Path],
    cache: Resources | DecodedCache | None = None,
    *,
    resources: Resources | None = None,
) -> tuple[list[Prediction], list[ImageError]]:
    """Predict image files (JPEG, PNG, DICOM; any size), each film through the network once.

    Args:
        checkpoint: a Predictor, a checkpoint file or a run folder.
        files: the films.
        cache: the context to decode and segment in, a pneumolib.data.resources.Resources (or a bare DecodedCache,
            its cache); default the predictor's own. The name from before the context existed, still taken.
        resources: the same, by its name (a Resources); given both, `resources` wins.

    Returns:
        (one Prediction per readable film, in the order given; the refused files, each an ImageError naming the
        file and the problem). One bad film never costs the others their prediction.
    """
    pred = _predictor(checkpoint)
    given = resources if resources is not None else cache
    if given is not None:
        from .models.checkpoint import Predictor

        pred = Predictor.sharing(pred, given)
    return pred.predict_records(files)


@dataclass
class FolderPrediction:
    """What `predict_folder` returns.

    Attributes:
        records: one Prediction per readable film, in the order given (`adapted` says which model answered).
        refused: the files that could not be read, each an ImageError naming the file and the problem.
        site: the site-adaptation decision (analysis.site.SiteDecision: adapted or not, and why), or None when
            adaptation was not asked for.
        predictor: the model that answered (the site-adapted one when `site.adapted`), e.g. for Grad-CAM.
    """

    records: list[Prediction]
    refused: list[ImageError]
    site: Any
    predictor: Predictor


def predict_folder(
    checkpoint: str | Path | Predictor, files: list[str | Path], adapt: str = "site"
) -> FolderPrediction:
    """Predict a folder of films from one site, adapted to it when that is safe (analysis.site).

    Args:
        checkpoint: a Predictor, a checkpoint file or a run folder.
        files: the films (at least analysis.site.MIN_FILMS readable ones for adaptation to be tried).
        adapt: "site" (re-estimate the early BatchNorm statistics on these films when the label-free checks pass)
            or "none" (the model as trained).

    Returns:
        The FolderPrediction. Out-of-distribution and population flags always come from the model as trained
        (adaptation would pull an unusual film's features towards the folder's); the label and P(PNEUMONIA) come
        from the model the decision names.
    """
    import dataclasses

    from .analysis.site import adapt_to_site, too_few
    from .data.samples import unlabelled

    if adapt not in SITE_MODES:
        raise ValueError(f"unknown adapt mode {adapt!r} ({' | '.join(SITE_MODES)})")
    pred = _predictor(checkpoint)
    records, refused = pred.predict_records(files)
    if adapt == "none" or not records:  # no readable film: nothing was scored, nothing to say about adapting
        return FolderPrediction(records, refused, None, pred)
    samples = [unlabelled(r.path) for r in records]
    if len(samples) < 2:
        return FolderPrediction(records, refused, too_few(len(samples)), pred)
    used, scores, decision = adapt_to_site(pred, samples)
    if decision.adapted:
        records = [
            dataclasses.replace(r, label=CLASSES[int(p >= used.threshold)], p_pneumonia=float(p), adapted=True)
            for r, p in zip(records, scores.probs)
        ]
    return FolderPrediction(records, refused, decision, used)


def explain(checkpoint: str | Path | Predictor, files: list[str | Path], target: str = "predicted") -> Explanation:
    """Grad-CAM maps of the given films, on the model's input and ready to overlay on each film at its own size.

    Args:
        checkpoint: a Predictor, a checkpoint file or a run folder.
        files: readable films (use `predict` first to sort out unreadable ones).
        target: "predicted" (the class the threshold picks), "PNEUMONIA" or "NORMAL".

    Returns:
        The Explanation (maps, probabilities, lung masks and their check, lift); `cam.save_overlays` writes PNGs.
    """
    from .analysis.cam import explain as explain_maps
    from .data.samples import unlabelled

    pred = _predictor(checkpoint)
    samples = [unlabelled(f) for f in files]
    return explain_maps(
        pred.model,
        samples,
        pred.preprocessing,
        pred.threshold,
        target=target,
        tta=bool(pred.config.tta),
        resources=pred.resources,
    )


def run(
    experiment: str | ExperimentConfig,
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    *,
    profile: str | None = None,
    retrain: bool = False,
    **overrides: Any,
) -> RunResult:
    """Train one experiment (or reuse a finished run of exactly the same training in `out`), then evaluate it.

    Args:
        experiment: a registered name or entry number ("baseline", "10"), or a config.
        data_dir: a Kaggle-layout folder (default: $PNEUMOLIB_DATA_DIR, else the bundled fixture).
        out: the run folder (checkpoint.pt, metrics.json, scores, Grad-CAM results).
        profile: "fixture", "cpu", "gpu", ... (default: by the data and the device).
        retrain: train even when `out` holds the same training; replace another training held there.
        **overrides: config fields to change (epochs=3, seed=1, ...), each checked.

    Returns:
        The RunResult: config, predictor, test scores and metrics, Grad-CAM explanation.

    Raises:
        ConfigError: an unknown field or a value out of range.
        CheckpointError: `out` holds another training and retrain is False.
    """
    from .studies.experiment import run_experiment

    config = experiment if isinstance(experiment, ExperimentConfig) else get_config(str(experiment))
    return run_experiment(
        config,
        data_dir,
        out,
        profile=profile,
        overrides=overrides or None,
        on_missing_weights="random_init",
        reuse=not retrain,
        replace_other=retrain,
    )


def experiments() -> dict[str, str]:
    """The registered experiments, one per log entry, and what each changes from the one before.

    Returns:
        {name: "entry date: the diff"}, in entry order.
    """
    return {c.name: f"{c.entry} {c.date}: {format_diff(diff(previous(c), c))}" for c in REGISTRY.values()}


def segment_lungs(files: list[str | Path]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The shipped lung segmenter's masks, at each film's own size.

    Args:
        files: films (DICOM included).

    Returns:
        One (film as uint8 H x W, bool lung mask H x W, "" or why the mask fails the lung check) per file.

    Raises:
        ImageError: a file that cannot be read.
    """
    from .data.lungs import film_problem, shipped_segmenter

    seg = shipped_segmenter()
    out = []
    for f in files:
        film, mask = seg.segment_file(f)
        out.append((film, mask, film_problem(film) or seg.check.problems(mask)))
    return out
