"""The log's claims judged by one tested rule, and each entry's plain sentence; every verdict name in one place.

The claims live beside the experiments they are about (`studies.catalogue.claims`); the rule in `verdict_rule`, its
per-film evidence in `verdict_films`."""

from __future__ import annotations

from typing import Any

from ..studies.catalogue.claims import CLAIMS, NORMAL_RECALL_LOW, compared_with  # noqa: F401 (re-exported)
from ..studies.verdict_estimates import (  # noqa: F401 (re-exported: every name in one place)
    BOOT_SEEDS,
    BUDGET_MIN_VAL_AUC,
    CANNOT_TELL,
    CHECKPOINT_PATH,
    COHORT,
    COHORT_MEASURED,
    COLLAPSE_SHARE,
    COLLAPSED,
    FAILS,
    HOLDS,
    IMAGENET_PATH,
    LOG_PATH,
    MAPS_NOT_FAITHFUL,
    MIN_SEEDS,
    MIN_SEEDS_SPREAD,
    NO_PREFERENCE,
    NOT_TESTED,
    RANDOM_INIT,
    SEEDS_DISAGREE,
    TOO_FEW_FILMS,
    UNTRAINED,
    Estimate,
    Measure,
    NotMeasured,
    cohort_adapted,
    cohort_as_measured,
    cohort_as_measured_text,
    cohort_references,
    cohort_specificity,
    gap,
    heart_lift,
    inference_path,
    lowest,
    lung_lift,
    metric,
    normal_right,
    predicted_pneumonia,
    share,
    spread_gap,
    stress,
    summary_lift,
    target_lift,
)
from ..studies.verdict_films import FilmBook, PerFilm, balanced_effect, film_effect, films, has_films  # noqa: F401 (re-exported)
from ..studies.verdict_rule import (  # noqa: F401 (re-exported: every name in one place)
    Claim,
    budget,
    budget_rule,
    clip_interval,
    collapsed,
    combine,
    decide,
    judge,
    maps_faithful,
    maps_uncheckable,
    needed_text,
    paired_by_seed,
    random_init,
    settle,
    untrained,
    verdict,
)


def judge_entry(
    entry: str, metrics_by_seed: list[dict[str, Any]], reference: dict[str, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """Every claim of ENTRY judged on its runs, each run's per-film scores read once for all of them."""
    book = FilmBook()
    return [judge(c, metrics_by_seed, reference, book=book) for c in CLAIMS.get(entry, ())]


def cohort_reference(entry: str, record: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """What ENTRY's claims read from the cohort's record (RECORD: recipes.json's entries): under COHORT its
    measurements of these RUNS' training configs, under COHORT_MEASURED its newest measurement of the entry's recipe
    as it was then trained; {} for an entry with no claim about the cohort."""
    from ..studies.catalogue import get_config

    claims = CLAIMS.get(entry, ())
    out: dict[str, list[dict[str, Any]]] = {}
    if any(COHORT in c.needs for c in claims):
        out[COHORT] = cohort_references(record, runs)
    if any(c.on_record == COHORT_MEASURED for c in claims):
        out[COHORT_MEASURED] = cohort_as_measured(record, get_config(entry).name)
    return out


# --- the plain sentence per entry ----------------------------------------------------------------------------------
_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


def _num(x: float) -> str:
    return f"{x:.2f}"


def _number(row: dict[str, Any]) -> str:
    """'NORMAL recall fell by 0.58 (0.40 to 0.71)', or 'NORMAL recall was 0.72 (0.65 to 0.80)'."""
    m, iv, label = row["mean"], row.get("interval"), row.get("label") or row["quantity"]
    if row.get("versus") or " minus " in row["quantity"]:
        word = "rose" if m > 0 else "fell" if m < 0 else "did not move"
        text = f"{label} {word}" + (f" by {_num(abs(m))}" if m else "")
        if iv:
            lo, hi = sorted((abs(iv[0]), abs(iv[1]))) if iv[0] * iv[1] > 0 else (iv[0], iv[1])
            text += f" ({_num(lo)} to {_num(hi)})" if iv[0] * iv[1] > 0 else f" ({_num(iv[0])} to {_num(iv[1])})"
        return text + ("" if iv else " (no interval)")
    return f"{label} was {_num(m)}" + (f" ({_num(iv[0])} to {_num(iv[1])})" if iv else " (no interval)")


def _seeds(row: dict[str, Any]) -> str:
    """'on all five seeds' / '3 of 5 seeds above 0.9': how many seeds' own values lie on the claimed side."""
    vals, thr = row.get("per_seed") or (), row.get("threshold")
    if len(vals) < 2:
        return "on one seed" if vals else ""
    k = sum((v > thr) if row["direction"] == ">" else (v < thr) for v in vals)
    n = len(vals)
    if k == n:
        return f"on all {_WORDS.get(n, n)} seeds"
    if k == 0:
        return f"on none of the {_WORDS.get(n, n)} seeds"
    return f"{k} of {n} seeds {'above' if row['direction'] == '>' else 'below'} {thr:g}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentence(row: dict[str, Any]) -> str:
    """One judged claim (a `judge` row) as a plain sentence in the log's words, its number and the seeds."""
    yes, no = row.get("finding") or ("", "")
    verdict_ = row["verdict"].split(" (")[0]
    flags = row.get("flags") or []
    mark = f" [{', '.join(flags)}]" if flags else ""
    # a claim judged against two entries (the one it changed, the baseline) has two rows: the label tells them apart
    said = f'"{row["claim"]}"' + (f" ({row['label']})" if " against " in str(row.get("label") or "") else "")
    if row["verdict"] == MAPS_NOT_FAITHFUL:
        return f"{said}: cannot tell, the Grad-CAM maps fail their checks."
    if not row["n"] or verdict_ == NOT_TESTED:
        return f"{said}: not tested ({row['note'].split('; ')[0] or 'no runs'}){mark}."
    seeds = _seeds(row)
    tail = _number(row) + (f", {seeds}" if seeds else "") + (f"; {row['beside']}" if row.get("beside") else "")
    if verdict_ == HOLDS:
        return f"{_cap(yes or row['claim'])}: {tail}{mark}."
    if verdict_ == FAILS:
        return f"{_cap(no or 'not so: ' + row['claim'])}: {tail}{mark}."
    why = needed_text(row["needed"]) if row.get("needed") is not None else row["note"].split("; ")[0]
    return f"{said}: cannot tell, {tail}" + (f"; {why}" if why else "") + f"{mark}."


def headline(rows: list[dict[str, Any]]) -> str:
    """The entry's finding under its notebook's title, in at most two plain sentences computed from the judged
    claims (judge_entry's rows, so it changes when their numbers do): the entry's main claim (its first, the one
    the log's entry is about: the claim marked `main`, else its first) as `sentence` words it, then how many more claims follow and how they fared
    ('2 more claims below: 1 holds, 1 cannot tell.'). Every claim's own sentence is `sentence`'s."""
    if not rows:
        return ""
    main = next((r for r in rows if r.get("main")), rows[0])
    text = sentence(main)
    rest = [r for r in rows if r is not main]
    if not rest:
        return text
    tally: dict[str, int] = {}
    for r in rest:  # 'cannot tell: seeds disagree', 'cannot tell (maps not faithful)': cannot tell
        word = r["verdict"].split(" (")[0].split(":")[0]
        tally[word] = tally.get(word, 0) + 1
    order = [HOLDS, FAILS, CANNOT_TELL, NOT_TESTED]
    parts = [f"{tally[w]} {w}" for w in sorted(tally, key=lambda w: order.index(w) if w in order else len(order))]
    n = len(rest)
    return f"{text} {n} more claim{'s' if n != 1 else ''} below: {', '.join(parts)}."


def improvement(row: dict[str, Any]) -> str:
    """A comparison row's probability of improvement in words: 'P(improvement) 0.80: higher than entry 01's in 20
    of the 25 seed pairs' (rliable's measure, core.stats.SeedEffect.p_improve: every seed of this entry against every
    seed of the other, ties counted half); '' for a row that compares nothing or was judged without per-film
    scores."""
    p, n = row.get("p_improve"), row.get("n") or 0
    if p is None or not n:
        return ""
    versus = str(row.get("versus") or "")
    other = f"entry {versus}'s" if versus[:1].isdigit() else (versus.replace("_", " ") or "the other's")
    pairs = n * n
    k = p * pairs
    count = f"{round(k)}" if abs(k - round(k)) < 1e-9 else f"{k:.1f}"
    half = "" if count.isdigit() else ", ties counted half"
    return f"P(improvement) {p:.2f}: higher than {other} in {count} of the {pairs} seed pairs{half}"


def short_verdict(row: dict[str, Any]) -> str:
    """The verdict with its flags in a few words: 'cannot tell; untrained seed, collapsed seed'."""
    base = row["verdict"].split(" (")[0]
    flags = row.get("flags") or []
    return base + (f"; {', '.join(flags)}" if flags else "")
