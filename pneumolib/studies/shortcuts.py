"""Shortcut audit: how far a model's decisions rest on acquisition statistics and on pixels outside the lungs.

Three measurements of one run on one split (validation by default: the audit is used for selection):
- a probe: gradient boosting on ten global image statistics that describe acquisition, not anatomy, trained on the
  training split; its AUC on the split says how much a model could learn without looking at a lung;
- reliance: the change in P(PNEUMONIA), and the share of flipped decisions, when the pixels outside (or inside) the
  lung fields are replaced by a neutral fill; a model that looks at the lungs changes little for the outside;
- worst group: each class's recall within the half of its films the probe finds typical of the class and the half
  it finds atypical, with intervals by patient; a shortcut-using model fails on the atypical half.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

from ..analysis.cam import lung_mask
from ..core.config import CLASSES
from ..core.io import save_json
from ..core.stats import auc_with_interval, patient_bootstrap
from ..data.dataset import Sample, file_rows
from ..data.lungs import LungSegmenter, annotated_mask
from ..data.resources import Resources, as_resources
from ..models.checkpoint import Predictor
from ..models.inference import predict_proba
from ..studies.runs import open_run

log = logging.getLogger(__name__)

PROBE_SIZE = 224  # the probe reads every film squashed to this size, whatever the model's input
BORDER = 20  # px at PROBE_SIZE: the width of each border strip
BLACK = 10  # grey level at or below which a pixel counts as near-black (collimation, padding)
PROBE_FEATURES = (
    "grey_mean",
    "grey_std",
    "grey_p05",
    "grey_p95",
    "black_share",
    "log_laplacian_var",
    "border_top_mean",
    "border_bottom_mean",
    "border_left_mean",
    "border_right_mean",
)
FILL = "the film's mean grey level (in the model's input frame)"
FILL_MASKED = "black (0): what a lung-mask view shows outside its dilated mask"


def global_stats(img: np.ndarray) -> np.ndarray:
    """The probe's ten statistics (PROBE_FEATURES) of a uint8 film at PROBE_SIZE."""
    a = img.astype(np.float64)
    lap = ndi.laplace(a)
    return np.array(
        [
            a.mean(),
            a.std(),
            np.percentile(a, 5),
            np.percentile(a, 95),
            float((img <= BLACK).mean()),
            np.log1p(lap.var()),
            a[:BORDER].mean(),
            a[-BORDER:].mean(),
            a[:, :BORDER].mean(),
            a[:, -BORDER:].mean(),
        ]
    )


def probe_features(samples: list[Sample], resources: Resources | None = None, view=None) -> np.ndarray:
    """The statistics of each whole film squashed to PROBE_SIZE; with `view` (a model's decode view, e.g. a lung
    crop), of what that model sees instead, resized to PROBE_SIZE. Decoded in RESOURCES (default: a new context)."""
    cache = as_resources(resources).cache

    def image(s):
        if view is None:
            return cache.get(s.path, PROBE_SIZE)
        a = cache.get(s.path, view)
        return (
            a
            if a.shape == (PROBE_SIZE, PROBE_SIZE)
            else np.asarray(Image.fromarray(a).resize((PROBE_SIZE, PROBE_SIZE), Image.BILINEAR))
        )

    return np.stack([global_stats(image(s)) for s in samples]) if samples else np.zeros((0, len(PROBE_FEATURES)))


def fit_probe(train: list[Sample], seed: int = 0, resources: Resources | None = None, view=None):
    """Gradient boosting on the global statistics of the training films (scikit-learn's, seeded)."""
    from sklearn.ensemble import GradientBoostingClassifier

    probe = GradientBoostingClassifier(random_state=seed)
    probe.fit(probe_features(train, resources, view), np.array([s.label for s in train]))
    return probe


class Probes:
    """Fitted probes kept by whoever audits several runs (a notebook's Series, a CLI call over several run folders),
    keyed by the training films' fingerprint (paths and sizes), the seed and the view: runs trained on the same data
    share one probe instead of refitting the same seeded model. Owned by the caller; nothing is kept between calls
    otherwise."""

    def __init__(self):
        self._fitted: dict[tuple, Any] = {}

    def get(self, train: list[Sample], seed: int, resources: Resources, view=None):
        key = (train_fingerprint(train), int(seed), view)
        if key not in self._fitted:
            self._fitted[key] = fit_probe(train, seed, resources, view)
        else:
            log.info("shortcut probe reused (same training films, seed and view)")
        return self._fitted[key]

    def __len__(self) -> int:
        return len(self._fitted)


def train_fingerprint(train: list[Sample]) -> str:
    """A digest of the training films a probe is fitted on (data.dataset.file_rows: path, label and size of each)."""
    import hashlib

    return hashlib.sha1("\n".join(file_rows("train", train)).encode()).hexdigest()[:16]


def masks_in_view(
    pred: Predictor,
    samples: list[Sample],
    exact_masks: Callable | None = annotated_mask,
    segmenter: LungSegmenter | None = None,
) -> tuple[list[np.ndarray | None], dict[str, int]]:
    """Each film's lung mask in the model's input frame (annotated where the film has one, else learned; a learned
    mask that fails its check is None: that film is left out of the reliance). The films and the segmenter are the
    predictor's context's (Predictor.resources), unless SEGMENTER is asked for explicitly."""
    own = segmenter is None  # the cache's segmenter drew the crop boxes: its masks and decisions are used as they are
    cache = pred.resources.cache
    segmenter = segmenter or pred.resources.segmenter
    view, out, counts = pred.preprocessing.view, [], {"annotated": 0, "learned": 0, "failed": 0}
    for s in samples:
        img = cache.get(s.path, view)
        box = cache.box(s.path, view)
        film_mask = cache.lung_mask(s.path, view) if box is not None and own else None
        m, how, problem = lung_mask(s, img, exact_masks, segmenter, box, film_mask)
        counts["failed" if problem else how] += 1
        out.append(None if problem else m)
    return out, counts


def _probs(pred: Predictor, images: np.ndarray) -> np.ndarray:
    return pred.predict_proba(pred.preprocessing(torch.from_numpy(images)[:, None]))


def reliance(
    pred: Predictor,
    samples: list[Sample],
    masks: list[np.ndarray | None],
    region: str,
    batch_size: int = 64,
    seed: int = 0,
    clean: np.ndarray | None = None,
) -> dict[str, Any]:
    """Replace the pixels outside (region='outside') or inside ('inside') each film's lung mask by FILL, and report
    the mean absolute change in P(PNEUMONIA) with a 95% interval by patient, the mean signed change, and the share
    of decisions that flip at the checkpoint's threshold; per class too. CLEAN: the films' P(PNEUMONIA) as they
    are, when the caller has them already (the audit predicts them once for all three measurements). The films are
    decoded in the predictor's context (Predictor.resources)."""
    if region not in ("outside", "inside"):
        raise ValueError(f"region must be 'outside' or 'inside', not {region!r}")
    cache = pred.resources.cache
    keep = [i for i, m in enumerate(masks) if m is not None]
    masked = pred.preprocessing.crop == "lung_mask"
    before, after = [], []
    for start in range(0, len(keep), batch_size):
        idx = keep[start : start + batch_size]
        imgs = np.stack([cache.get(samples[i].path, pred.preprocessing.view) for i in idx])
        filled = imgs.copy()
        for j, i in enumerate(idx):
            where = ~masks[i] if region == "outside" else masks[i]
            # a lung-mask view is black outside its dilated mask by construction: black is its neutral fill (a grey
            # one would show the model a picture it never saw in training, and flip it for that reason alone)
            filled[j][where] = 0 if masked else np.uint8(round(float(imgs[j].mean())))
        before.append(_probs(pred, imgs) if clean is None else np.asarray(clean)[idx])
        after.append(_probs(pred, filled))
    p0 = np.concatenate(before) if before else np.zeros(0)
    p1 = np.concatenate(after) if after else np.zeros(0)
    labels = np.array([samples[i].label for i in keep])
    patients = [samples[i].patient for i in keep]
    flipped = (p0 >= pred.threshold) != (p1 >= pred.threshold)

    def block(sel: np.ndarray) -> dict[str, Any]:
        pats = [p for p, s in zip(patients, sel) if s]
        d = p1[sel] - p0[sel]
        return {
            "n": int(sel.sum()),
            "mean_abs_change": float(np.abs(d).mean()) if len(d) else float("nan"),
            "mean_abs_change_ci95": patient_bootstrap(np.abs(d), pats, seed=seed),
            "mean_change": float(d.mean()) if len(d) else float("nan"),
            "flipped_share": float(flipped[sel].mean()) if sel.any() else float("nan"),
            "flipped_share_ci95": patient_bootstrap(flipped[sel].astype(float), pats, seed=seed),
        }

    out = block(np.ones(len(keep), bool))
    out["per_class"] = {c: block(labels == i) for i, c in enumerate(CLASSES) if (labels == i).any()}
    out.update(region=region, fill=FILL_MASKED if masked else FILL, left_out=len(samples) - len(keep))
    return out


def worst_group(
    samples: list[Sample], probs: np.ndarray, threshold: float, probe_scores: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """Within each class, the half of its films the probe finds typical of the class (PNEUMONIA: probe score above
    the class's median; NORMAL: below) and the atypical half; the model's recall in each, with a 95% interval by
    patient. The worst of the four is what a shortcut costs the films that do not carry it."""
    labels = np.array([s.label for s in samples])
    correct = ((np.asarray(probs) >= threshold).astype(int) == labels).astype(float)
    groups = []
    for i, c in enumerate(CLASSES):
        sel = np.flatnonzero(labels == i)
        if not len(sel):
            continue
        med = np.median(probe_scores[sel])
        typical = probe_scores[sel] > med if i == 1 else probe_scores[sel] <= med
        for half, mask in (("probe agrees", typical), ("probe disagrees", ~typical)):
            idx = sel[mask]
            groups.append(
                {
                    "class": c,
                    "half": half,
                    "n": int(len(idx)),
                    "recall": float(correct[idx].mean()) if len(idx) else float("nan"),
                    "ci95": patient_bootstrap(correct[idx], [samples[j].patient for j in idx], seed=seed),
                }
            )
    worst = min((g for g in groups if g["n"]), key=lambda g: g["recall"], default=None)
    return {
        "groups": groups,
        "worst": worst,
        "note": "recall of each class within the half of its films the shortcut probe finds typical of the class "
        "and the half it finds atypical (split at the class's median probe score)",
    }


def audit(
    pred: Predictor,
    train: list[Sample],
    samples: list[Sample],
    *,
    seed: int = 0,
    exact_masks: Callable | None = annotated_mask,
    segmenter: LungSegmenter | None = None,
    probes: Probes | None = None,
) -> dict[str, Any]:
    """The three measurements on `samples`, the probe trained on `train` (see the module docstring). The clean films
    are predicted once (the worst-group recall and both reliance measurements use that pass); PROBES (the caller's)
    reuses a probe fitted on the same training films. Everything is decoded in the predictor's context
    (Predictor.resources: studies.runs.open_run gives it the data's)."""
    res = pred.resources
    probes = probes if probes is not None else Probes()
    probe = probes.get(train, seed, res)
    scores = probe.predict_proba(probe_features(samples, res))[:, 1]
    labels = [s.label for s in samples]
    patients = [s.patient for s in samples]
    auc, ci = auc_with_interval(np.array(labels), scores, patients, seed=seed)
    # the same probe on what the model sees (a lung crop removes borders and collimation by construction)
    view = pred.preprocessing.view
    seen_probe = probes.get(train, seed, res, view)
    seen = seen_probe.predict_proba(probe_features(samples, res, view))[:, 1]
    auc_in, ci_in = auc_with_interval(np.array(labels), seen, patients, seed=seed)
    probs = predict_proba(
        pred.model, samples, pred.preprocessing, tta=bool(pred.config.tta), resources=res, device=pred.device
    )
    masks, counts = masks_in_view(pred, samples, exact_masks, segmenter)
    return {
        "n": len(samples),
        "probe_auc": auc,
        "probe_auc_ci95": ci,
        "probe_auc_model_input": auc_in,
        "probe_auc_model_input_ci95": ci_in,
        "probe": {
            "features": list(PROBE_FEATURES),
            "model": "sklearn GradientBoostingClassifier (defaults)",
            "trained_on": f"{len(train)} training films",
            "size": PROBE_SIZE,
            "border_px": BORDER,
            "mean_score": {
                c: float(scores[np.array(labels) == i].mean()) for i, c in enumerate(CLASSES) if i in labels
            },
        },
        "outside_lung_reliance": reliance(pred, samples, masks, "outside", seed=seed, clean=probs),
        "inside_lung_reliance": reliance(pred, samples, masks, "inside", seed=seed, clean=probs),
        "worst_group": worst_group(samples, probs, pred.threshold, scores, seed),
        "masks": counts,
    }


def audit_run(
    run_dir, data_dir=None, *, split: str = "val", seed: int = 0, probes: Probes | None = None
) -> dict[str, Any]:
    """The audit of a finished run folder on one split of the data it was trained with (same seeded validation split
    and holdout); kept as RUN_DIR/shortcuts_<split>.json, which the model card shows. PROBES: the caller's, shared
    over several runs."""
    o = open_run(run_dir, data_dir)
    run, root, pred, data = o.run, o.root, o.predictor, o.data
    log.info("shortcut audit of %s (%s) on %s %s", run.path.name, pred.config.name, root.name, split)
    rep = audit(pred, data["train"], data[split], seed=seed, probes=probes)
    rep.update(split=split, experiment=pred.config.name, checkpoint=str(run.checkpoint.resolve()), data_dir=str(root))
    save_json(rep, run.path / f"shortcuts_{split}.json")
    return rep


def _ci(v: list[float]) -> str:
    return f"{v[0]:.3f}-{v[1]:.3f}" if v and np.all(np.isfinite(v)) else "n/a"


def format_audit(rep: dict[str, Any]) -> str:
    """The audit as a few lines of text (the CLI's output; the card's section)."""
    lines = [
        f"shortcut probe ({len(rep['probe']['features'])} global statistics, no lung seen): AUC "
        f"{rep['probe_auc']:.3f} (95% CI by patient {_ci(rep['probe_auc_ci95'])}) on {rep['n']} films"
    ]
    if rep.get("probe_auc_model_input") is not None:
        lines.append(
            f"the same probe on the model's input (after its crop, if any): AUC "
            f"{rep['probe_auc_model_input']:.3f} ({_ci(rep['probe_auc_model_input_ci95'])})"
        )
    for key, what in (("outside_lung_reliance", "outside"), ("inside_lung_reliance", "inside")):
        r = rep[key]
        lines.append(
            f"pixels {what} the lungs replaced by a neutral fill: mean |change in P(PNEUMONIA)| "
            f"{r['mean_abs_change']:.3f} ({_ci(r['mean_abs_change_ci95'])}), mean change "
            f"{r['mean_change']:+.3f}, decisions flipped {r['flipped_share']:.1%} of {r['n']} films"
        )
    for g in rep["worst_group"]["groups"]:
        lines.append(f"  {g['class']:<9} {g['half']:<16} n={g['n']:<4} recall {g['recall']:.3f} ({_ci(g['ci95'])})")
    w = rep["worst_group"]["worst"]
    if w:
        lines.append(f"worst group: {w['class']}, {w['half']}: recall {w['recall']:.3f}")
    m = rep["masks"]
    lines.append(
        f"lung masks: {m['annotated']} annotated, {m['learned']} learned, {m['failed']} failed their check "
        f"(left out of the reliance)"
    )
    return "\n".join(lines)
