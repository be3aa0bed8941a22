"""Entry 4: what a train/inference preprocessing mismatch does, measured against the checkpoint's own path."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from ..core.config import CLASSES
from ..data.dataset import Sample
from ..models.checkpoint import ChannelMismatch, Predictor
from ..models.inference import predict_proba


def log_entry4_inference(image_size: int) -> Callable[[str], torch.Tensor]:
    """The log's inference path: Image.open(p).convert("L"), Grayscale(3), Resize, ToTensor."""
    t = T.Compose([T.Grayscale(num_output_channels=3), T.Resize((image_size, image_size)), T.ToTensor()])
    return lambda path: t(Image.open(path).convert("L"))


def imagenet_normalised_inference(image_size: int) -> Callable[[str], torch.Tensor]:
    """A mismatch that does matter: ImageNet normalisation at inference for a model trained without it."""
    t = T.Compose(
        [
            T.Grayscale(num_output_channels=3),
            T.Resize((image_size, image_size)),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    return lambda path: t(Image.open(path).convert("L"))


def single_channel_inference(image_size: int) -> Callable[[str], torch.Tensor]:
    """One grey channel fed to a 3-channel model: pneumolib refuses it instead of guessing."""
    t = T.Compose([T.Resize((image_size, image_size)), T.ToTensor()])
    return lambda path: t(Image.open(path).convert("L"))


class _Loaded(torch.utils.data.Dataset):
    """Each sample's file through one inference path's own loader (file -> model input)."""

    def __init__(self, samples: list[Sample], load: Callable[[str], torch.Tensor]):
        self.samples, self.load = samples, load

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.load(self.samples[i].path)


def compare_inference(
    predictor: Predictor,
    samples: list[Sample],
    variants: dict[str, Callable[[str], torch.Tensor] | None],
    batch_size: int = 64,
) -> list[dict]:
    """For each variant (None = the checkpoint's own preprocessing): accuracy, NORMAL and PNEUMONIA recall,
    mean P(PNEUMONIA) per class, share predicted PNEUMONIA; or the error it raised."""
    y = np.array([s.label for s in samples])
    rows = []
    for name, load in variants.items():
        inputs = _Loaded(samples, load or predictor.preprocess)
        try:
            if len(inputs):
                predictor.check_input(inputs[0].unsqueeze(0))
            probs = predict_proba(
                predictor.model, inputs, batch_size=batch_size, tta=predictor.config.tta, device=predictor.device
            )
        except ChannelMismatch as e:
            rows.append({"inference": name, "error": str(e)})
            continue
        pred = (probs >= predictor.threshold).astype(int)
        rows.append(
            {
                "inference": name,
                "accuracy": float((pred == y).mean()),
                "NORMAL recall": float((pred[y == 0] == 0).mean()),
                "PNEUMONIA recall": float((pred[y == 1] == 1).mean()),
                **{f"mean p | {c}": float(probs[y == i].mean()) for i, c in enumerate(CLASSES)},
                "share predicted PNEUMONIA": float(pred.mean()),
                "max |p - p_checkpoint|": None,
                "_probs": probs,
            }
        )
    ref = next((r["_probs"] for r in rows if "_probs" in r), None)
    for r in rows:
        if "_probs" in r:
            probs = r.pop("_probs")
            r["max |p - p_checkpoint|"] = float(np.abs(probs - ref).max())
            # paired: the same films through both paths (what a verdict on the mismatch needs)
            r["share of predictions changed"] = float(
                ((probs >= predictor.threshold) != (ref >= predictor.threshold)).mean()
            )
    return rows


def inference_paths(predictor: Predictor, samples: list[Sample], run_dir=None) -> dict[str, dict]:
    """Notebook 04's comparison: the model fed the samples four ways (its checkpoint's preprocessing, the log's
    convert('L') + Grayscale(3), ImageNet normalisation at inference only, one grey channel into a 3-channel model).

    Args:
        predictor: the run's model with its preprocessing and threshold.
        samples: the films (the test split, for the verdicts).
        run_dir: when given, the result is kept in RUN_DIR/inference_paths.json with the checkpoint's key, where
            core.runs.load_metrics finds it for the summary notebook.

    Returns:
        compare_inference's rows keyed by path name, each with the number of films 'n' and of NORMAL films
        'n_normal'.
    """
    from ..core.io import save_json
    from ..core.runs import RunDir, checkpoint_key
    from .verdict_estimates import CHECKPOINT_PATH, IMAGENET_PATH, LOG_PATH

    size = predictor.preprocessing.image_size
    rows = compare_inference(
        predictor,
        samples,
        {
            CHECKPOINT_PATH: None,
            LOG_PATH: log_entry4_inference(size),
            IMAGENET_PATH: imagenet_normalised_inference(size),
            "1 grey channel into the 3-channel model": single_channel_inference(size),
        },
    )
    n_normal = sum(s.label == 0 for s in samples)
    paths = {row["inference"]: dict(row, n=len(samples), n_normal=n_normal) for row in rows}
    if run_dir is not None:
        run = RunDir(run_dir)
        save_json({"checkpoint_key": checkpoint_key(run.checkpoint), "paths": paths}, run.inference_paths)
    return paths


def inference_shares(metrics: list[dict]) -> dict[str, list[float]] | None:
    """Per seed, from notebook 04's recorded inference paths (inference_paths): the share of predictions the log's
    greyscale path changed (the channel mismatch the log blamed), the share ImageNet normalisation at inference only
    changed, and the share of films called PNEUMONIA under it and under the checkpoint's own preprocessing; None
    when some run lacks them (04 not rendered at this code)."""
    from .verdict_estimates import CHECKPOINT_PATH, IMAGENET_PATH, LOG_PATH

    rows = [m.get("inference_paths") or {} for m in metrics]
    if not rows or not all(all(k in r for k in (CHECKPOINT_PATH, LOG_PATH, IMAGENET_PATH)) for r in rows):
        return None
    changed, called = "share of predictions changed", "share predicted PNEUMONIA"
    return {
        "log_changed": [float(r[LOG_PATH][changed]) for r in rows],
        "imagenet_changed": [float(r[IMAGENET_PATH][changed]) for r in rows],
        "imagenet_called": [float(r[IMAGENET_PATH][called]) for r in rows],
        "plain_called": [float(r[CHECKPOINT_PATH][called]) for r in rows],
    }


def format_rows(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"{r['inference']:<44} refused: {r['error']}")
        else:
            lines.append(
                f"{r['inference']:<44} acc {r['accuracy']:.3f}  NORMAL recall {r['NORMAL recall']:.3f}  "
                f"PNEUMONIA recall {r['PNEUMONIA recall']:.3f}  predicted PNEUMONIA "
                f"{r['share predicted PNEUMONIA']:.0%}  max |dp| {r['max |p - p_checkpoint|']:.3f}"
            )
    return "\n".join(lines)
