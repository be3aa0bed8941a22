"""One owner for reopening a finished run: its checkpoint, its record, and the data it was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.runs import RunDir, load_metrics
from ..data.dataset import Resources, XRayData, prepare, resolve_data_dir
from ..models.checkpoint import Predictor


@dataclass
class OpenRun:
    """A finished run folder reopened with its data.

    Attributes:
        run: the run folder's paths.
        metrics: its metrics.json.
        root: the data folder (or manifest) its films come from.
        predictor: the checkpoint, sharing the data's context (data.resources.Resources: one decode cache, one lung
            segmenter, the device): every film decoded once, the segmenter loaded once.
        data: the splits the run was trained on: the same seeded validation split and holdout.
    """

    run: RunDir
    metrics: dict[str, Any]
    root: Any
    predictor: Predictor
    data: XRayData


def open_run(run_dir: str | Path, data_dir: Any = None, *, device: str = "cpu") -> OpenRun:
    """Reopen a finished run folder with the data it was trained on.

    Args:
        run_dir: the run folder (it holds checkpoint.pt and metrics.json).
        data_dir: the data folder; default the one its metrics.json names (else the bundled fixture).
        device: where the model runs.

    Returns:
        The OpenRun: the predictor and the data carry one Resources.

    Raises:
        FileNotFoundError: no checkpoint or no metrics.json (one line).
    """
    run = RunDir(run_dir)
    if not run.checkpoint.is_file():
        raise FileNotFoundError(f"{run.checkpoint}: no checkpoint (is {run.path} a finished run folder?)")
    metrics = load_metrics(run_dir)
    if data_dir is None and metrics.get("data_dir") not in (None, "fixture"):
        data_dir = metrics["data_dir"]
    root, _ = resolve_data_dir(data_dir)
    pred = Predictor.load(run.checkpoint, device=device)
    data = prepare(
        root,
        seed=pred.config.seed,
        holdout=metrics.get("holdout", "folders"),
        image_size=pred.preprocessing.view,
        resources=Resources.new(device),
    )
    return OpenRun(run, metrics, root, Predictor.sharing(pred, data.resources), data)
