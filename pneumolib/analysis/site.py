"""Site adaptation: a folder of films from one site re-estimates the model's early BatchNorm statistics, if safe.

AdaBN (`analysis.adapt.adapt_bn`) is used when the checks below pass; otherwise the model is kept as trained.

Why by default: every label-free adaptation the external cohort recorded raised its NORMAL recall, and BatchNorm
re-estimation did so on random sub-folders of 32, 64 and 128 of its films as well (9 of 9 draws, see
docs/adaptation.md). Why at least 64 films: on simulated 32-film folders it lost balanced accuracy with both
models measured, while every 64- and 128-film sub-folder of the cohort gained. What it cannot do is undo a change in the class mix, and on a folder that mixes two sites,
or on too few films, the statistics it estimates belong to no site. So `adapt_to_site` adapts only a folder of at
least MIN_FILMS films in which a site change is seen, and `decide` keeps the adapted model only if the label-free
checks pass (how far the statistics moved is recorded too, but does not decide: docs/adaptation.md):

- **a site change seen** (analysis.site_shift): the folder's scores from the model as trained are not validation's
  scores in any class mix (a two-sample test against the checkpoint's validation scores, at ALPHA). Without it
  there is nothing for adaptation to correct, and on the training site's own films it did harm: this check runs
  first, and when it fails the BatchNorm passes are not run at all.
- **stable**: the statistics are a property of the folder, not of which films were drawn. Two models adapted on
  two random halves of the folder must make the same decision on at least MIN_HALF_AGREEMENT of its films. A
  folder too small, or too mixed, to have statistics of its own fails this.
- **class mix kept**: adaptation may move the share of films called PNEUMONIA by at most MAX_SHARE_MOVE. The
  early layers mostly see the scanner; when re-estimating them moves the predicted class mix a lot, they also
  absorbed the folder's class content (a folder of one class), and the decisions would follow the folder's mix
  rather than each film.
- **no lost certainty**: of the films the plain model is sure of (P < SURE or > 1 - SURE), adaptation may flip at
  most MAX_SURE_FLIPS. A scanner change moves the uncertain films; a model whose confident answers change has
  been moved too far.

None of them sees a label. The limits are guards against the failures named, set before measuring; on simulated
sites made of validation films (scanner-like exposure, contrast, blur, class-mix changes, a folder mixing two
sites), never a test split or the cohort, none of them fired, and site mode kept the balanced accuracy within
0.01 of the plain model's or raised it, in all but one condition: `studies.site.site_study` re-measures this,
and docs/adaptation.md shows the figures, the exception and the command.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..analysis.adapt import EARLY_BN_LAYERS, adapt_bn, bn_layers
from ..analysis.evaluate import Scores, predict_samples
from ..analysis.site_shift import ALPHA, ShiftTest, shift_test, usable
from ..data.samples import Sample
from ..models.checkpoint import Predictor

log = logging.getLogger(__name__)

MIN_FILMS = (
    64  # the cohort's record: adaptation helped on every 64- and 128-film sub-folder; simulated 32-film ones lost
)
MIN_HALF_AGREEMENT = 0.90
MAX_SHARE_MOVE = 0.25
SURE = 0.05
MAX_SURE_FLIPS = 0.10
ONE_FILM = "adaptation needs a folder of films from one site; a single film is scored by the model as trained"


@dataclass(frozen=True)
class SiteCheck:
    """One label-free check: its value, its limit, whether it passed, and what it means in words."""

    name: str
    value: float
    limit: float
    ok: bool
    says: str


@dataclass
class SiteDecision:
    """Whether the folder's predictions come from the site-adapted model, and why."""

    adapted: bool
    n_films: int
    reason: str
    checks: list[SiteCheck] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-ready, for evaluation records, prediction outputs and the model card."""
        return {
            "mode": "site",
            "adapted": self.adapted,
            "n_films": self.n_films,
            "reason": self.reason,
            "checks": [asdict(c) for c in self.checks],
            "figures": dict(self.figures),
            "method": "AdaBN on the early BatchNorm layers, kept only when the label-free checks pass",
        }

    def line(self) -> str:
        """One line for the command's output."""
        state = "adapted to this folder" if self.adapted else "not adapted (the model as trained)"
        return f"site adaptation: {state}: {self.reason}"


def _called(probs: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(probs, dtype=float) >= threshold


def stat_shift(plain: torch.nn.Module, adapted: torch.nn.Module, layers=EARLY_BN_LAYERS) -> float:
    """How far a folder's statistics sit from training's: the mean over the early BatchNorm channels of
    |mean_folder - mean_training| / sqrt(var_training), in training standard deviations."""
    old, new = dict(bn_layers(plain, layers)), dict(bn_layers(adapted, layers))
    moves = [
        ((new[k].running_mean - m.running_mean).abs() / (m.running_var + m.eps).sqrt()).float().cpu()
        for k, m in old.items()
    ]
    return float(torch.cat(moves).mean())


def relative_bn(plain: torch.nn.Module, folder: torch.nn.Module, reference: torch.nn.Module, layers=EARLY_BN_LAYERS):
    """A copy of PLAIN whose early BatchNorm statistics move by the folder's difference from a reference: FOLDER and
    REFERENCE are PLAIN adapted (adapt_bn) on the folder's films and on validation films. Re-estimating statistics
    on films like the training ones does not give back the training statistics (those were averaged over augmented
    training batches); moving by the difference leaves a folder like validation where it was, and moves a shifted
    one by its shift."""
    import copy

    out = copy.deepcopy(plain)
    f, r = dict(bn_layers(folder, layers)), dict(bn_layers(reference, layers))
    for name, bn in bn_layers(out, layers):
        bn.running_mean.add_(f[name].running_mean - r[name].running_mean)
        bn.running_var.mul_((f[name].running_var + bn.eps) / (r[name].running_var + bn.eps))
    return out


def decide(
    plain: np.ndarray,
    adapted: np.ndarray,
    halves: tuple[np.ndarray, np.ndarray],
    threshold: float,
    moved: float,
    shift: ShiftTest | None = None,
) -> SiteDecision:
    """The checks on P(PNEUMONIA) of the same films: from the plain model, the model adapted on the whole folder,
    and the two models adapted on two random halves of it. MOVED, how far the folder's BatchNorm statistics moved
    (stat_shift), is recorded but not judged: in the site study it did not separate the folders adaptation helped
    from those it did not. SHIFT: the site-change test of the plain scores (site_change); None where the checkpoint
    keeps no validation scores to test against, and the decision says so. Pure: no model, no labels."""
    plain, adapted = np.asarray(plain, dtype=float), np.asarray(adapted, dtype=float)
    n = len(plain)
    agree = float(np.mean(_called(halves[0], threshold) == _called(halves[1], threshold)))
    share_plain, share_adapted = float(_called(plain, threshold).mean()), float(_called(adapted, threshold).mean())
    move = abs(share_adapted - share_plain)
    sure = (plain < SURE) | (plain > 1 - SURE)
    flips = float(np.mean(_called(plain[sure], 0.5) != _called(adapted[sure], 0.5))) if sure.any() else 0.0
    checks = [
        SiteCheck("stable", agree, MIN_HALF_AGREEMENT, agree >= MIN_HALF_AGREEMENT,
                  f"models adapted on two random halves agree on {agree:.0%} of the films"),
        SiteCheck("class_mix_kept", move, MAX_SHARE_MOVE, move <= MAX_SHARE_MOVE,
                  f"PNEUMONIA share {share_plain:.0%} as trained, {share_adapted:.0%} adapted"),
        SiteCheck("no_lost_certainty", flips, MAX_SURE_FLIPS, flips <= MAX_SURE_FLIPS,
                  f"{flips:.0%} of the {int(sure.sum())} films the model was sure of changed side"),
    ]  # fmt: skip
    if shift is not None:
        checks.insert(0, site_change(shift))
    failed = [c for c in checks if not c.ok]
    reason = "; ".join(f"{c.name}: {c.says}" for c in (failed or checks))
    if shift is None:
        reason += f"; {NO_REFERENCE}"
    figures = {"share_plain": share_plain, "share_adapted": share_adapted, "half_agreement": agree, "moved": moved}
    if shift is not None:
        figures.update(shift_distance=shift.distance, shift_mix=shift.mix, shift_p=shift.p_value)
    return SiteDecision(not failed, n, ("refused: " if failed else "checks passed: ") + reason, checks, figures)


NO_REFERENCE = "this checkpoint keeps no validation scores, so whether the site changed was not tested"


def site_change(shift: ShiftTest) -> SiteCheck:
    """The first check: a site change was seen in the plain scores (p-value below ALPHA)."""
    return SiteCheck("site_change", shift.p_value, ALPHA, shift.shifted, shift.says())


def folder_shift(predictor: Predictor, plain_probs, seed: int = 0, reference=None) -> ShiftTest | None:
    """The site-change test of a folder's plain scores against REFERENCE (default: the checkpoint's validation
    scores); None when there is no usable reference."""
    ref = reference if reference is not None else (predictor.extra or {}).get("val_calibration", {}).get("val_scores")
    return shift_test(plain_probs, ref, seed=seed) if usable(ref) else None


def no_site_change(n: int, shift: ShiftTest) -> SiteDecision:
    """The decision when the folder looks like validation: the model as trained, and the test's figures."""
    figures = {"shift_distance": shift.distance, "shift_mix": shift.mix, "shift_p": shift.p_value}
    return SiteDecision(False, n, f"refused: site_change: {shift.says()}", [site_change(shift)], figures)


def too_few(n: int) -> SiteDecision:
    """The decision for a folder under MIN_FILMS films (a single film included): no adaptation, and why."""
    if n <= 1:
        return SiteDecision(False, n, ONE_FILM)
    return SiteDecision(False, n, f"{n} films, fewer than the {MIN_FILMS} adaptation needs to estimate a site")


def split_halves(n: int, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[: n // 2]), sorted(order[n // 2 :])


@dataclass
class SitePasses:
    """What a folder's site decision is made from: the model as trained's scores, the model adapted on the whole
    folder and its scores, and the decision (`too_few` under MIN_FILMS films, else `decide`)."""

    plain: Scores
    whole: torch.nn.Module
    adapted: Scores
    decision: SiteDecision


def site_passes(
    predictor: Predictor,
    samples: list[Sample],
    *,
    transform: Callable | None = None,
    seed: int = 0,
    batch_size: int = 64,
    threshold: float | None = None,
    plain: Scores | None = None,
    shift_reference: dict | None = None,
    shift: ShiftTest | None = None,
) -> SitePasses:
    """The passes behind a site decision (adapt_to_site; studies.site measures them on simulated sites). THRESHOLD:
    decide at this one instead of the predictor's; PLAIN: the model as trained's scores, when already computed;
    SHIFT_REFERENCE: validation scores by class to test the site change against (default: the checkpoint's); SHIFT:
    that test's result on PLAIN, when already run (adapt_to_site runs it first), so it is not run twice. The
    folder is always adapted here, whatever the site-change test says, so a study sees what the guard refused; the
    halves are adapted and the checks run only from MIN_FILMS films."""
    n = len(samples)
    cut = predictor.threshold if threshold is None else float(threshold)

    def score(model) -> Scores:
        return predict_samples(
            model,
            samples,
            predictor.preprocessing,
            tta=predictor.config.tta,
            resources=predictor.resources,
            transform=transform,
            device=predictor.device,
            batch_size=batch_size,
        )

    def bn(subset: list[Sample]):
        return adapt_bn(predictor.model, subset, predictor.preprocessing, layers=EARLY_BN_LAYERS,
                        transform=transform, batch_size=batch_size, resources=predictor.resources, device=predictor.device)  # fmt: skip

    plain = score(predictor.model) if plain is None else plain
    whole = bn(samples)
    adapted = score(whole)
    if n < MIN_FILMS:
        return SitePasses(plain, whole, adapted, too_few(n))
    a, b = split_halves(n, seed)
    halves = (score(bn([samples[i] for i in a])).probs, score(bn([samples[i] for i in b])).probs)
    if shift is None:
        shift = folder_shift(predictor, plain.probs, seed, shift_reference)
    decision = decide(plain.probs, adapted.probs, halves, cut, stat_shift(predictor.model, whole), shift)
    return SitePasses(plain, whole, adapted, decision)


def adapt_to_site(
    predictor: Predictor,
    samples: list[Sample],
    *,
    transform: Callable | None = None,
    seed: int = 0,
    batch_size: int = 64,
    threshold: float | None = None,
    plain: Scores | None = None,
) -> tuple[Predictor, Scores, SiteDecision]:
    """Score a folder of films from one site, adapted to it when the checks allow (module docstring). Returns the
    predictor used, its scores on the folder, and the decision. THRESHOLD: decide at this one instead of the
    predictor's; PLAIN: the model as trained's scores of these films, when already computed. Cost: one plain pass;
    where a site change is seen (or cannot be tested), three BatchNorm passes (the folder and its two halves) and
    three scoring passes more: about 7 forward passes."""
    if plain is None:
        plain = predict_samples(predictor.model, samples, predictor.preprocessing, tta=predictor.config.tta,
                                resources=predictor.resources, transform=transform, device=predictor.device,
                                batch_size=batch_size)  # fmt: skip
    if len(samples) < MIN_FILMS:  # no adaptation is tried: only the plain pass
        return predictor, plain, too_few(len(samples))
    shift = folder_shift(predictor, plain.probs, seed)
    if shift is not None and not shift.shifted:  # nothing for adaptation to correct: no BatchNorm pass
        decision = no_site_change(len(samples), shift)
        log.info("%s", decision.line())
        return predictor, plain, decision
    p = site_passes(predictor, samples, transform=transform, seed=seed, batch_size=batch_size, threshold=threshold,
                    plain=plain, shift=shift)  # fmt: skip
    log.info("%s", p.decision.line())
    if not p.decision.adapted:
        return predictor, p.plain, p.decision
    used = Predictor(
        p.whole,
        predictor.config,
        predictor.threshold,
        predictor.preprocessing,
        predictor.device,
        resources=predictor.resources,
    )
    used.extra = {**predictor.extra, "adaptation": p.decision.record()}
    return used, p.adapted, p.decision
