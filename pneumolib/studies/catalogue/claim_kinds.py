"""The kinds of claim the log makes more than once, each built the same way wherever it recurs; per-film quantities.

'still low', 'hurts', 'slightly better', 'most stable', a Grad-CAM lift on NORMAL films."""

from __future__ import annotations

import dataclasses
import math
import re

from ...studies.catalogue.entries import MODIFIES
from ...studies.verdict_estimates import NO_PREFERENCE, lung_lift, spread_gap, target_lift
from ...studies.verdict_films import PerFilm, lift_effect
from ...studies.verdict_rule import Claim

NORMAL_RECALL_LOW = 0.80  # "NORMAL accuracy still low" / "normal images ambiguous": one NORMAL film in 5 misread
# the per-film quantities (PerFilm: a mean over films); EXTREME: P(PNEUMONIA) < 0.05 or > 0.95, a confident call
NORMAL_RECALL = PerFilm("correct", "NORMAL")
PNEUMONIA_RECALL = PerFilm("correct", "PNEUMONIA")
ACCURACY = PerFilm("correct")
CALLED_PNEUMONIA = PerFilm("called PNEUMONIA")
EXTREME = PerFilm("extreme")
# what a quantity can take, its printed interval clipped to (Claim.bounds): a share, a difference of shares, a lift
SHARE, DIFFERENCE, LIFT = (0.0, 1.0), (-1.0, 1.0), (0.0, math.inf)


def claim(entry, quote, quantity, direction, threshold, measure=None, **kw) -> Claim:
    return Claim(entry, quote, quantity, direction, threshold, measure, **kw)


def versus_text(entry: str, other: str) -> str:
    """'entry 01 (the baseline)' or 'entry 04 (the entry this one changes)'."""
    role = "the baseline" if other == "01" else "the entry this one changes" if MODIFIES.get(entry) == other else ""
    return f"entry {other}" + (f" ({role})" if role else "")


def with_baseline(step: Claim, finding: tuple[str, str], threshold: float | None = None) -> tuple[Claim, Claim]:
    """STEP, a comparison with the entry it changes, and beside it the same quantity against the baseline (entry 01),
    read on the same films (issue 47: the step and where the chain stands, side by side). FINDING (and THRESHOLD, when
    'still low' means something else against the baseline than against one step) are the baseline row's own."""
    quantity = step.quantity.replace(f"entry {step.versus}", "entry 01").replace(
        "(the entry this one changes)", "(the baseline)"
    )
    if not step.versus or step.versus == "01" or quantity == step.quantity:
        raise ValueError(f"claim {step.quote!r}: not a comparison with an entry other than the baseline")
    return step, dataclasses.replace(
        step,
        quantity=quantity,
        threshold=step.threshold if threshold is None else threshold,
        needs=tuple(n for n in step.needs if n != step.versus),
        versus="01",
        label=re.sub(r" against entry \d+$", "", step.label) + " against the baseline",
        finding=finding,
        main=False,
    )


def read_as(effect, how: str):
    """(EFFECT, how it was read, with the bootstrap named) for Claim.per_film; None (the recorded values decide)
    when there is no effect."""
    return None if effect is None else (effect, f"{how}; seeds, then patients within class, resampled")


def normal_still_low(entry: str) -> Claim:
    return claim(
        entry,
        "NORMAL accuracy still low",
        "NORMAL recall (test)",
        "<",
        NORMAL_RECALL_LOW,
        film=NORMAL_RECALL,
        label="NORMAL recall",
        finding=("NORMAL accuracy stayed low", "NORMAL accuracy was not low"),
    )


def lift_gain(entry: str, other: str, quote: str) -> Claim:
    return claim(
        entry,
        quote,
        f"Grad-CAM lung lift, this entry minus {versus_text(entry, other)}",
        ">",
        0.0,
        lambda m, r: lung_lift(m) - lung_lift(r[other]),
        needs=(other,),
        arm=lambda m: lung_lift(m).value,
        per_film=lambda ms, ref, book: read_as(
            lift_effect(ms, ref.get(other) or [], book=book), "paired per film (Grad-CAM maps), seed i against seed i"
        ),
        gradcam=True,
        label=f"the Grad-CAM lung lift against entry {other}",
        finding=(
            f"Grad-CAM attention moved toward the lungs against entry {other}",
            "Grad-CAM attention did not improve",
        ),
    )


def hurts(entry: str, other: str, quote: str, main: bool = False) -> Claim:
    return claim(
        entry,
        quote,
        f"accuracy, this entry minus {versus_text(entry, other)}",
        "<",
        0.0,
        film=ACCURACY,
        versus=other,
        label=f"accuracy against entry {other}",
        finding=(
            f"central focus cost accuracy against entry {other}",
            f"central focus did not cost accuracy against entry {other}",
        ),
        main=main,
    )


def stable(entry: str, others: tuple[str, ...], quote: str) -> Claim:
    names = " and ".join(others)
    return claim(
        entry,
        quote,
        f"spread of test accuracy over seeds (SD), the smaller of entries {names} minus entry 01's",
        ">",
        0.0,
        needs=tuple(dict.fromkeys(("01", *[o for o in others if o != entry]))),
        across_seeds=lambda this, r: spread_gap(r["01"], [r[o] if o != entry else this for o in others]),
        label="the accuracy spread over seeds against the baseline's",
        finding=(
            "the augmentation-only baseline was the steadiest over seeds",
            "the baseline was not the steadiest over seeds",
        ),
    )


def grad_cam_lift(entry: str, quote: str, key: str, direction: str, target: str, what: str) -> Claim:
    region = "lung" if key == "lung_lift" else "heart/diaphragm-box"
    return claim(
        entry,
        quote,
        f"{region} lift on NORMAL test films, {target}-target Grad-CAM maps (1 = uniform)",
        direction,
        NO_PREFERENCE,
        lambda m, r: target_lift(m, key, "NORMAL", target),
        gradcam=True,
        bounds=LIFT,
        cam_target=target,
        label=f"the {region} lift of {target}-target maps on NORMAL films",
        finding=(
            f"{target}-target maps on NORMAL films {what}",
            f"{target}-target maps on NORMAL films did not {what.split(' ', 1)[1]}",
        ),
    )
