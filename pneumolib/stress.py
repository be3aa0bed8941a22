"""Simulated scanner shifts: a validation protocol that stresses what a new cohort changes, not a random split."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from .evaluate import Scores, _point_metrics, predict_samples

# The external cohort of this data set is 37.5% NORMAL; the training folders are 26%.
EXTERNAL_NORMAL_SHARE = 0.375


def external_accuracy(sensitivity: float, specificity: float, normal_share: float = EXTERNAL_NORMAL_SHARE) -> float:
    """Accuracy re-weighted to another class mix: what the same recalls give on a cohort with that NORMAL share."""
    return normal_share * specificity + (1 - normal_share) * sensitivity


def _seed_of(x: torch.Tensor) -> int:
    # the same image always gets the same noise, so a shifted split is a fixed data set, not a random draw
    return int.from_bytes(hashlib.sha1(x.numpy().tobytes()).digest()[:4], "little")


def _gamma(g: float):
    return lambda x: ((x.float() / 255).pow(g) * 255).round().to(torch.uint8)


def _contrast(f: float):
    def shift(x):
        m = x.float().mean()
        return ((x.float() - m) * f + m).round().clamp(0, 255).to(torch.uint8)
    return shift


def _blur(sigma_at_128: float):
    def shift(x):
        s = sigma_at_128 * x.shape[-1] / 128
        k = int(2 * round(3 * s) + 1)
        return TF.gaussian_blur(x, [k, k], [s, s])
    return shift


def _low_res(factor: float):
    def shift(x):
        h, w = x.shape[-2:]
        small = TF.resize(x, [max(1, int(h * factor)), max(1, int(w * factor))], antialias=True)
        return TF.resize(small, [h, w], antialias=True)
    return shift


def _noise(std: float):
    def shift(x):
        g = torch.Generator().manual_seed(_seed_of(x))
        return (x.float() + torch.randn(x.shape, generator=g) * std).round().clamp(0, 255).to(torch.uint8)
    return shift


def _affine(**kw):
    return lambda x: TF.affine(x, **{"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0], **kw})


def _sharpen(f: float):
    return lambda x: TF.adjust_sharpness(x, f)


def _jpeg(q: int):
    def shift(x):
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(x.squeeze(0).numpy()).save(buf, format="JPEG", quality=q)
        return torch.from_numpy(np.array(Image.open(buf))).unsqueeze(0)
    return shift


@dataclass(frozen=True)
class Shift:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    # "seen": a kind of change the robust augmentation trains on (a recipe can learn to resist it by construction);
    # "unseen": in no recipe's augmentation, so it tests robustness that was not trained for
    group: str
    what: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# Each acts on a 1xHxW uint8 image at model size, before the checkpoint's own preprocessing.
SHIFTS: tuple[Shift, ...] = (
    Shift("darker", _gamma(1.6), "seen", "gamma 1.6: a harder exposure curve"),
    Shift("brighter", _gamma(0.6), "seen", "gamma 0.6: a softer exposure curve"),
    Shift("low_contrast", _contrast(0.6), "seen", "contrast x0.6 about the mean"),
    Shift("blur", _blur(1.2), "seen", "Gaussian blur, sigma 1.2 px at 128 px: a softer detector"),
    Shift("zoom_out", _affine(scale=0.85), "seen", "field of view 18% wider, black border"),
    Shift("rotate", _affine(angle=8.0), "seen", "rotated 8 degrees"),
    Shift("high_contrast", _contrast(1.5), "unseen", "contrast x1.5 about the mean, clipped"),
    Shift("low_res", _low_res(0.4), "unseen", "down to 40% and back up: a low-resolution source"),
    Shift("noise", _noise(12.0), "unseen", "Gaussian noise, 12 grey levels: a noisier detector"),
    Shift("jpeg", _jpeg(20), "unseen", "JPEG quality 20: heavy re-compression"),
    Shift("sharpen", _sharpen(4.0), "unseen", "edge enhancement (sharpness x4), as some scanners apply"),
)
SHIFTS_BY_NAME = {s.name: s for s in SHIFTS}


@dataclass
class StressReport:
    """Metrics on the clean split and on every shifted copy of it, at the checkpoint's own threshold."""

    rows: list[dict[str, Any]]
    threshold: float

    def summary(self) -> dict[str, float]:
        """Means over the shifted copies (all, and the unseen group), and the worst NORMAL recall."""
        shifted = [r for r in self.rows if r["shift"] != "clean"]
        unseen = [r for r in shifted if r["group"] == "unseen"]
        clean = next(r for r in self.rows if r["shift"] == "clean")

        def mean(rows, k):
            return float(np.mean([r[k] for r in rows])) if rows else float("nan")
        return {
            "clean_accuracy": clean["accuracy"], "clean_specificity": clean["specificity"], "clean_auc": clean["auc"],
            "stress_accuracy_ext": mean(shifted, "accuracy_ext"), "stress_specificity": mean(shifted, "specificity"),
            "stress_sensitivity": mean(shifted, "sensitivity"), "stress_auc": mean(shifted, "auc"),
            "unseen_accuracy_ext": mean(unseen, "accuracy_ext"), "unseen_specificity": mean(unseen, "specificity"),
            "unseen_auc": mean(unseen, "auc"),
            "worst_specificity": min(r["specificity"] for r in shifted) if shifted else float("nan"),
        }

    def table(self) -> str:
        head = f"{'shift':<15}{'group':<8}{'acc':>7}{'acc@ext':>9}{'sens':>7}{'spec':>7}{'AUC':>7}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['shift']:<15}{r['group']:<8}{r['accuracy']:>7.3f}{r['accuracy_ext']:>9.3f}"
                         f"{r['sensitivity']:>7.3f}{r['specificity']:>7.3f}{r['auc']:>7.3f}")
        s = self.summary()
        lines.append(f"{'mean shifted':<23}{'':>7}{s['stress_accuracy_ext']:>9.3f}{s['stress_sensitivity']:>7.3f}"
                     f"{s['stress_specificity']:>7.3f}{s['stress_auc']:>7.3f}")
        lines.append(f"acc@ext = accuracy re-weighted to {EXTERNAL_NORMAL_SHARE:.1%} NORMAL (the external cohort's mix); "
                     f"threshold {self.threshold:.3f}")
        return "\n".join(lines)


def stress_test(model: torch.nn.Module, samples, preprocessing, threshold: float, *, tta: bool = False,
                shifts: tuple[Shift, ...] = SHIFTS, cache=None) -> StressReport:
    """Score the clean split and one shifted copy per shift with the model's fixed threshold."""
    rows = []
    for shift in (None, *shifts):
        scores: Scores = predict_samples(model, samples, preprocessing, tta=tta, cache=cache, transform=shift)
        m = _point_metrics(scores.labels, scores.probs, threshold)
        rows.append({"shift": shift.name if shift else "clean", "group": shift.group if shift else "",
                     **m, "accuracy_ext": external_accuracy(m["sensitivity"], m["specificity"])})
    return StressReport(rows, threshold)


STRESS_FILE = "stress.json"


def _checkpoint_key(ckpt) -> str:
    st = ckpt.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def stress_run(run_dir, data_dir=None, *, split: str = "test", reuse: bool = True, log=print) -> StressReport:
    """The stress test of a finished run folder, on the same data and holdout it was trained with; the result is
    kept in RUN_DIR/stress.json and reused while checkpoint.pt is unchanged."""
    import json
    from pathlib import Path

    from .checkpoint import Predictor
    from .data import apply_holdout, discover, prescan
    from .evaluate import save_json
    from .experiment import load_metrics, resolve_data_dir

    log = log or (lambda s: None)
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint (is {run_dir} a finished run folder?)")
    out = run_dir / STRESS_FILE
    key = _checkpoint_key(ckpt)
    if reuse and out.is_file():
        saved = json.loads(out.read_text())
        if saved.get("checkpoint_key") == key and saved.get("split") == split:
            return StressReport(saved["rows"], saved["threshold"])
    metrics = load_metrics(run_dir)
    if data_dir is None and metrics.get("data_dir") not in (None, "fixture"):
        data_dir = metrics["data_dir"]
    root, _ = resolve_data_dir(data_dir)
    pred = Predictor.load(ckpt)
    data = discover(root, seed=pred.config.seed)
    data = apply_holdout(data, metrics.get("holdout", "folders"))
    data = prescan(data, pred.preprocessing.image_size)
    log(f"stress test of {run_dir} ({pred.config.name}) on {root} {split}: {len(SHIFTS)} shifts")
    report = stress_test(pred.model, data[split], pred.preprocessing, pred.threshold, tta=pred.config.tta)
    save_json({"checkpoint_key": key, "split": split, "threshold": report.threshold, "rows": report.rows,
               "summary": report.summary(), "holdout": metrics.get("holdout", "folders")}, out)
    return report
