"""Whether maps can be trusted: the randomisation test, ROAD faithfulness against random maps, method comparison."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

import cv2  # comes with grad-cam
import numpy as np
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from scipy.stats import spearmanr
from torch import nn

from ..analysis.cam_explanation import Explanation, batch, explain
from ..analysis.cam_maps import CAM, first_per_class, resolve_layer
from ..analysis.cam_methods import DEFAULT_METHOD
from ..core.config import CLASSES
from ..core.stats import patient_bootstrap
from ..data.dataset import Sample
from ..data.lungs import LungSegmenter
from ..data.resources import Resources, as_resources
from ..models.inference import class_probabilities, combine_of, view_logits
from ..models.networks import members, stage_blocks


# --- sanity and faithfulness ------------------------------------------------------------------
def randomise_top(model: nn.Module, blocks: tuple[str, ...] = ("layer4", "fc"), seed: int = 0) -> nn.Module:
    """A copy of `model` whose `blocks` are re-initialised (torchvision's ResNet init, from a seeded generator):
    the cascading model-parameter randomisation of Adebayo et al. 2018, "Sanity Checks for Saliency Maps"."""
    g = torch.Generator().manual_seed(int(seed))
    device = next(model.parameters()).device
    out = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        for name in blocks:
            for m in (mod for net in members(out) for mod in getattr(net, name).modules()):
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                elif isinstance(m, nn.BatchNorm2d):
                    m.reset_parameters()  # weight 1, bias 0, running statistics reset: no randomness
                elif isinstance(m, nn.Linear):
                    bound = 1 / math.sqrt(m.in_features)
                    nn.init.uniform_(m.weight, -bound, bound, generator=g)
                    if m.bias is not None:
                        nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return out.to(device)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between paired maps, one value per image (NaN where a map is constant)."""
    out = []
    for x, y in zip(a, b):
        x, y = np.ravel(x), np.ravel(y)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(float("nan"))
        else:
            out.append(float(spearmanr(x, y)[0]))
    return np.array(out)


class _SeededImputer(NoisyLinearImputer):
    """ROAD's noisy linear imputation (each removed pixel = the weighted mean of its 8 neighbours, solved as one
    sparse system, plus noise), with the noise from a seeded generator instead of the global RNG, the system
    built vectorised, and one solve for images whose channels are identical (a grey film fed to 3 channels)."""

    def __init__(self, generator: torch.Generator, noise: float = 0.01):
        super().__init__(noise)
        self.generator = generator

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import spsolve

        c, h, w = img.shape
        missing = np.flatnonzero(mask.reshape(-1).numpy() < 0.5)
        if len(missing) == 0:
            return img
        grey = all(torch.equal(img[0], img[k]) for k in range(1, c))
        values = img[:1] if grey else img
        flat = values.reshape(values.shape[0], -1).double().numpy()
        var = np.full(h * w, -1)
        var[missing] = np.arange(len(missing))
        ys, xs = np.divmod(missing, w)
        rows, cols, data = [], [], []
        diag = np.zeros(len(missing))
        rhs = np.zeros((len(missing), flat.shape[0]))
        for (dy, dx), weight in self.weighting:
            ny, nx = ys + dy, xs + dx
            inside = np.flatnonzero((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))
            diag[inside] += weight
            nb = ny[inside] * w + nx[inside]
            unknown = var[nb] >= 0
            rows.append(inside[unknown]), cols.append(var[nb[unknown]]), data.append(np.full(unknown.sum(), weight))
            np.subtract.at(rhs, inside[~unknown], weight * flat[:, nb[~unknown]].T)
        k = np.arange(len(missing))
        a = coo_matrix(
            (np.concatenate([*data, -diag]), (np.concatenate([*rows, k]), np.concatenate([*cols, k]))),
            shape=(len(missing), len(missing)),
        ).tocsc()
        sol = np.asarray(spsolve(a, rhs)).reshape(len(missing), -1).T  # channels x missing
        filled = torch.tensor(sol, dtype=torch.float32)
        filled = filled + self.noise * torch.randn(filled.shape, generator=self.generator)
        out = img.reshape(c, -1).clone()
        out[:, missing] = filled.expand(c, -1) if grey else filled
        return out.reshape_as(img)


def road(
    model: nn.Module,
    x: torch.Tensor,
    maps: np.ndarray,
    classes,
    *,
    tta: bool = False,
    percentiles: tuple[int, ...] = (20, 40, 60, 80),
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """ROAD (Rong et al. 2022; pytorch_grad_cam.metrics.road's removal rules and noisy linear imputation) on the
    probability of each map's class, as predict reports it (TTA included): the mean change in that probability
    when the most-relevant (MoRF) or least-relevant (LeRF) p% of pixels are imputed, over `percentiles`.
    combined = (LeRF - MoRF) / 2, ROADCombined's score: higher = the map ranks pixels by what the model uses.
    The perturbed copies go through the model in batches (ROADCombined runs one forward per percentile)."""
    imputer = _SeededImputer(torch.Generator().manual_seed(int(seed)))
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    classes = torch.as_tensor(np.asarray(classes, int))
    n = len(classes)

    def prob(batch: torch.Tensor) -> torch.Tensor:
        return class_probabilities(
            view_logits(model, batch, tta=tta, batch_size=batch_size, device=device), combine=combine_of(model)
        )

    x = x.cpu()
    base = prob(x)[torch.arange(n), classes]
    perturbed = [
        rule(p, imputer)(x[i], torch.from_numpy(np.asarray(maps[i], np.float32)))
        for rule in (RemoveMostRelevantFirst, RemoveLeastRelevantFirst)
        for p in percentiles
        for i in range(n)
    ]
    after = prob(torch.stack(perturbed))[torch.arange(len(perturbed)), classes.repeat(2 * len(percentiles))]
    change = (after - base.repeat(2 * len(percentiles))).reshape(2, len(percentiles), n).mean(1).numpy()
    morf, lerf = change
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}


def random_maps(n: int, map_size: tuple[int, int], image_size: int, seed: int = 0) -> np.ndarray:
    """Seeded uniform random cells at the model map's native size, upsampled the same way (bilinear): the
    chance baseline a faithfulness score must beat."""
    rng = np.random.default_rng(seed)
    h, w = map_size if map_size[0] else (image_size, image_size)
    cells = rng.random((n, h, w)).astype(np.float32)
    return (
        np.stack([cv2.resize(c, (image_size, image_size), interpolation=cv2.INTER_LINEAR) for c in cells])
        if n
        else np.zeros((0, image_size, image_size), np.float32)
    )


def _randomisation_record(corr: np.ndarray, blocks: tuple[str, ...], seed: int) -> dict[str, Any]:
    """The randomisation test's record: the mean and per-film rank correlations of the trained model's maps with
    the maps after re-initialising BLOCKS."""
    return {
        "mean": float(np.nanmean(corr)) if np.isfinite(corr).any() else float("nan"),
        "per_image": [None if np.isnan(c) else float(c) for c in corr],
        "reinitialised": list(blocks),
        "seed": seed,
        "note": "Spearman correlation of the trained model's map with the map after re-initialising "
        f"{' and '.join(blocks)}; near 1 = the map ignores the learned weights",
    }


def _faithfulness_record(
    faith_model: dict[str, np.ndarray],
    faith_rand: dict[str, np.ndarray],
    percentiles: tuple[int, ...],
    map_size: tuple[int, int],
    seed: int,
    patients: list[str],
) -> dict[str, Any]:
    """ROAD's record: the model's maps against seeded random maps (means of the combined, MoRF and LeRF scores),
    and 95% intervals resampling PATIENTS for each and for their paired difference."""
    fa = {
        "metric": f"ROAD combined (LeRF - MoRF) / 2 on P(map class), percentiles {list(percentiles)}",
        "model": float(np.mean(faith_model["combined"])),
        "random": float(np.mean(faith_rand["combined"])),
        "model_morf": float(np.mean(faith_model["morf"])),
        "random_morf": float(np.mean(faith_rand["morf"])),
        "model_lerf": float(np.mean(faith_model["lerf"])),
        "random_lerf": float(np.mean(faith_rand["lerf"])),
        "random_map": f"uniform random {map_size[0]} x {map_size[1]} cells, seed {seed}, upsampled",
        "note": "higher = removing the pixels the map ranks high hurts more than removing those it ranks low",
    }
    for key, v in (
        ("model", faith_model["combined"]),
        ("random", faith_rand["combined"]),
        ("model_minus_random", faith_model["combined"] - faith_rand["combined"]),
    ):
        if key == "model_minus_random":
            fa[key] = float(np.mean(v))
        fa[f"{key}_ci95"] = patient_bootstrap(v, patients, seed=seed)  # 95% interval, resampling patients
    # a model whose output does not move whatever is removed (a collapsed one) gives ROAD nothing to measure
    fa["degenerate"] = bool(
        max(np.max(np.abs(faith_model["combined"])), np.max(np.abs(faith_rand["combined"]))) < DEGENERATE_ROAD
    )
    return fa


def sanity_checks(
    model: nn.Module,
    expl: Explanation,
    preprocessing,
    *,
    per_class: int = 4,
    seed: int = 0,
    resources: Resources | None = None,
    percentiles: tuple[int, ...] = (20, 40, 60, 80),
    blocks: tuple[str, ...] = ("layer4", "fc"),
) -> dict[str, Any]:
    """On the first `per_class` films of each class in `expl`: (1) the model-parameter randomisation test, the
    Spearman correlation of each map with the map of the same network with `blocks` re-initialised (near 1 =
    the map does not depend on what was learned); (2) ROAD faithfulness of the model's maps and of seeded
    random maps at the same resolution. Returns a JSON-ready dict; also stored in expl.sanity. The films are decoded
    in `resources` (default: a new context for this call)."""
    resources = as_resources(resources)
    idx = [
        i
        for label in range(len(CLASSES))
        for i in [j for j, s in enumerate(expl.samples) if s.label == label][:per_class]
    ]
    if not idx:
        return {}
    chosen = [expl.samples[i] for i in idx]
    _, x = batch(chosen, preprocessing, resources.cache)
    classes = expl.classes[idx] if len(expl.classes) else np.ones(len(idx), int)
    if len(expl.cams):
        trained = expl.cams[idx]
    else:
        _, module = resolve_layer(model, expl.layer, preprocessing.image_size, preprocessing.in_channels)
        with CAM(model, expl.method, module) as cam:
            trained = cam.maps(x, classes, expl.tta)
    random_model = randomise_top(model, blocks, seed)
    with CAM(random_model, expl.method, stage_blocks(random_model, expl.layer)) as cam:
        randomised = cam.maps(x, classes, expl.tta)
    corr = rank_correlation(trained, randomised)
    rand = random_maps(len(idx), expl.map_size, preprocessing.image_size, seed)
    faith_model = road(model, x, trained, classes, tta=expl.tta, percentiles=percentiles, seed=seed)
    faith_rand = road(model, x, rand, classes, tta=expl.tta, percentiles=percentiles, seed=seed)
    out = {
        "n": len(idx),
        "films": f"first {per_class} per class of the explained films",
        "randomisation_rank_corr": _randomisation_record(corr, blocks, seed),
        "faithfulness": _faithfulness_record(
            faith_model, faith_rand, percentiles, expl.map_size, seed, [s.patient for s in chosen]
        ),
    }
    out["maps_pass"] = maps_pass(out)
    expl.sanity = out
    return out


DEGENERATE_ROAD = 1e-4  # every film's ROAD score, model's and random map's, within this of 0: the output is constant
# ROAD's resolution as printed (3 decimals): a model whose mean ROAD scores (MoRF and LeRF, its map's and the random
# map's) all lie within this of 0 barely moves under the removals (a nearly collapsed model): nothing to check maps
# by; and a pass needs the difference's lower bound at least this far above 0, never a '0.000 [0.000, 0.000]' pass
ROAD_RESOLUTION = 5e-4


def road_degenerate(road: dict[str, Any]) -> bool:
    """Can ROAD say nothing about these maps? Its record is 'degenerate' (every film's score constant), or the
    model's output barely moves under any removal: the mean MoRF and LeRF scores of its map and of the random map
    all within ROAD_RESOLUTION of 0 (records without them: the flag alone)."""
    keys = ("model_morf", "model_lerf", "random_morf", "random_lerf")
    scores = [road.get(k) for k in keys]
    still = all(v is not None and v == v for v in scores) and max(abs(v) for v in scores) < ROAD_RESOLUTION
    return bool(road.get("degenerate")) or still


RANDOMISATION_MAX_CORR = 0.8  # a map whose rank correlation with the randomised model's stays above this ignores


def maps_pass(sanity: dict[str, Any] | None) -> bool | None:
    """Do a run's maps pass their own checks: ROAD beats the random map (the paired difference's 95% interval by
    patient lies above 0, by at least ROAD_RESOLUTION) and the randomisation test changes them (mean rank correlation below
    RANDOMISATION_MAX_CORR)? None when the checks were not run, or cannot check: a model whose output does not
    move under ROAD's removals (a collapsed one) gives a difference of 0 that is neither a pass nor a fail."""
    fa, rc = (sanity or {}).get("faithfulness") or {}, (sanity or {}).get("randomisation_rank_corr") or {}
    ci = fa.get("model_minus_random_ci95")
    if not ci or rc.get("mean") is None or any(v is None or v != v for v in (*ci, rc["mean"])):
        return None
    if road_degenerate(fa):  # regression: a collapsed model's "0.000 [0.000, 0.000]" was a pass
        return None
    return bool(ci[0] >= ROAD_RESOLUTION and rc["mean"] < RANDOMISATION_MAX_CORR)


def explain_predictor(
    predictor,
    samples: list[Sample],
    *,
    n_per_class: int | None = None,
    target: str = "PNEUMONIA",
    sanity_per_class: int = 4,
    seed: int = 0,
    keep_maps: bool = True,
    layer: str = "auto",
    method: str = DEFAULT_METHOD,
    exact_masks: Callable[[Path], Path | None] | None = None,
    segmenter: LungSegmenter | None = None,
) -> Explanation:
    """explain() with everything taken from a checkpoint.Predictor (preprocessing, threshold, TTA), on the first
    `n_per_class` films per class (all when None), plus sanity_checks on the first `sanity_per_class`; in the
    predictor's context (Predictor.resources: the films it decoded already, its segmenter)."""
    selection = f"all {len(samples)} films given"
    if n_per_class is not None:
        samples, selection = first_per_class(samples, n_per_class)
    expl = explain(
        predictor.model,
        samples,
        predictor.preprocessing,
        predictor.threshold,
        method=method,
        target=target,
        tta=bool(predictor.config.tta),
        layer=layer,
        resources=predictor.resources,
        keep_maps=keep_maps,
        selection=selection,
        exact_masks=exact_masks,
        segmenter=segmenter,
    )
    if sanity_per_class and any(s.label in (0, 1) for s in samples):
        sanity_checks(
            predictor.model,
            expl,
            predictor.preprocessing,
            per_class=sanity_per_class,
            seed=seed,
            resources=predictor.resources,
        )
    return expl


def compare_methods(
    predictor,
    samples: list[Sample],
    *,
    methods=("gradcam", "hirescam", "gradcam++"),
    layers=("layer3", "layer4"),
    n_per_class: int = 50,
    sanity_per_class: int = 8,
    seed: int = 0,
    target: str = "PNEUMONIA",
    exact_masks: Callable[[Path], Path | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (method, layer): the share of empty maps, ROAD of the model's maps against a random map (their
    paired difference with a 95% interval by patient), the randomisation test, whether the maps pass their checks,
    and the lung and heart lift per class with intervals. The evidence choose_method reads."""
    rows, segmenter = [], predictor.resources.segmenter
    for method in methods:
        for layer in layers:
            e = explain_predictor(
                predictor,
                samples,
                n_per_class=n_per_class,
                target=target,
                sanity_per_class=sanity_per_class,
                seed=seed,
                method=method,
                layer=layer,
                exact_masks=exact_masks,
                keep_maps=False,
                segmenter=segmenter,
            )
            rep = e.report(per_image=False)
            fa, rc = road_of(rep), rep.get("randomisation_rank_corr") or {}
            rows.append(
                {
                    "method": method,
                    "layer": rep["layer"],
                    "map_size": rep["map_size"],
                    "n": rep["n"],
                    "empty_share": rep["empty_maps"] / max(rep["n"], 1),
                    "road_model": fa.get("model"),
                    "road_random": fa.get("random"),
                    "road_model_minus_random": fa.get("model_minus_random"),
                    "road_model_minus_random_ci95": fa.get("model_minus_random_ci95"),
                    "randomisation_rank_corr": rc.get("mean"),
                    "maps_pass": rep.get("maps_pass"),
                    "lung_lift": rep["lung_lift"],
                    "heart_lift": rep["heart_lift"],
                    "mask_source": rep.get("mask_source"),
                    "learned_mask_cost": rep.get("learned_mask_cost"),
                }
            )
    return rows


def road_of(rep: dict[str, Any]) -> dict[str, Any]:
    """An explain report's ROAD block ('road'; run folders written before it was renamed call it 'faithfulness')."""
    return rep.get("road") or rep.get("faithfulness") or {}


def recorded_sanity(rep: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recorded explain report (Explanation.report, kept as metrics['gradcam']) in sanity_checks' shape, for
    maps_pass and the tables that show lifts beside their checks.

    Args:
        rep: the report, or None.

    Returns:
        {'faithfulness', 'randomisation_rank_corr', 'n'}, or None when neither check was run on these maps."""
    rep = rep or {}
    road_block, rc = road_of(rep), rep.get("randomisation_rank_corr") or {}
    if not road_block and not rc:
        return None
    return {"faithfulness": road_block, "randomisation_rank_corr": rc, "n": len(rc.get("per_image") or [])}


def choose_method(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row to keep as the default: among the (method, layer) pairs whose maps pass their checks, the one whose
    ROAD advantage over a random map has the highest lower bound (fewer empty maps breaking ties); None when no
    pair tried passes, which the caller must say."""
    ok = [r for r in rows if r.get("maps_pass")]
    if not ok:
        return None
    return max(ok, key=lambda r: (r["road_model_minus_random_ci95"][0], -r["empty_share"]))


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table (one row per method and layer) and the choice."""
    head = (
        "| method | layer | empty maps | ROAD model | ROAD random | model - random (95% CI) | randomisation corr "
        "| maps pass | lung lift NORMAL | lung lift PNEUMONIA |"
    )
    lines = [head, "|" + "---|" * 10]

    def lift(v):
        return (
            "n/a"
            if not v or v.get("mean") != v.get("mean")
            else f"{v['mean']:.2f} ({v['ci95'][0]:.2f}-{v['ci95'][1]:.2f})"
        )

    for r in rows:
        ci = r["road_model_minus_random_ci95"] or [float("nan")] * 2
        lines.append(
            f"| {r['method']} | {r['layer']} | {r['empty_share']:.0%} | {r['road_model']:+.3f} | "
            f"{r['road_random']:+.3f} | {r['road_model_minus_random']:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f}) | "
            f"{r['randomisation_rank_corr']:.2f} | {'yes' if r['maps_pass'] else 'no'} | "
            f"{lift(r['lung_lift'].get('NORMAL'))} | {lift(r['lung_lift'].get('PNEUMONIA'))} |"
        )
    best = choose_method(rows)
    lines.append("")
    lines.append(
        f"choice: {best['method']} at {best['layer']}"
        if best
        else "choice: none; no method and layer tried gives maps that pass their checks"
    )
    return "\n".join(lines)
