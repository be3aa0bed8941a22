"""How the notebooks show things: the figure style, captions, tables as DataFrames, numbers with their intervals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

FIGURE_DPI = 120


def use_notebook_style() -> None:
    """Figures at FIGURE_DPI in the notebook's outputs; tables shown whole (pandas would otherwise hide columns past
    20 and rows past 60 behind '...', and the verdicts read the hidden ones)."""
    plt.rcParams["figure.dpi"] = FIGURE_DPI
    for key, value in (
        ("display.max_columns", None),
        ("display.max_rows", None),
        ("display.max_colwidth", None),
        ("display.width", 10_000),
    ):
        pd.set_option(key, value)


def caption(text: str) -> None:
    """Show the figures the cell has drawn so far, then TEXT under them as their caption ('Figure: ...'): what to
    see, with the numbers computed here (a markdown caption cannot hold numbers no cell printed above it). Outside
    a Jupyter kernel the figures are left as they are and only the caption is printed."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        kernel = get_ipython() is not None and hasattr(get_ipython(), "kernel")
    except ImportError:
        kernel = False
    if kernel:
        for num in plt.get_fignums():
            fig = plt.figure(num)
            display(fig)
            plt.close(fig)
    print(f"Figure: {text}")


# --- notebook series v2: provenance, seeds, computed verdicts, tables as DataFrames --------------------------
MAX_COLUMNS = 8  # columns of one shown table, its index included: wider ones ran off the page (13 in the seed table)


def _width(frame: pd.DataFrame) -> int:
    return len(frame.columns) + frame.index.nlevels


def _packed(frame: pd.DataFrame, limit: int) -> list[list]:
    """Consecutive columns packed into runs that fit `limit` (a MultiIndex's top-level groups kept together when
    they fit)."""
    cols = list(frame.columns)
    groups: list[list] = []
    for c in cols:
        top = c[0] if isinstance(c, tuple) else None
        if groups and top is not None and groups[-1][0][0] == top and len(groups[-1]) < limit:
            groups[-1].append(c)
        else:
            groups.append([c])
    runs: list[list] = []
    for g in groups:
        if runs and len(runs[-1]) + len(g) <= limit:
            runs[-1] += g
        else:
            runs += [g[i : i + limit] for i in range(0, len(g), limit)]
    return runs


def table_parts(frame: pd.DataFrame, max_columns: int = MAX_COLUMNS) -> list[tuple[str, pd.DataFrame]]:
    """A table as parts of at most `max_columns` columns, its index counted (each part keeps the index): the column
    groups the frame names in frame.attrs['column_groups'] (title -> columns; rows empty in a part are left out of
    it, such as a seed table's mean row among the training records), else consecutive runs of its columns. A table
    that fits is one untitled part."""
    groups = frame.attrs.get("column_groups")
    if not groups and _width(frame) <= max_columns:
        return [("", frame)]
    if not groups:
        runs = _packed(frame, max_columns - frame.index.nlevels)
        n = len(frame.columns)
        groups, start = {}, 0
        for run in runs:
            groups[f"columns {start + 1}-{start + len(run)} of {n}"] = run
            start += len(run)
    named = {c for cols in groups.values() for c in cols}
    rest = [c for c in frame.columns if c not in named]
    if rest:  # a column no group names is shown, never dropped
        groups = {**groups, "other columns": rest}
    parts = []
    for title, cols in groups.items():
        cols = [c for c in cols if c in frame.columns]
        if not cols:
            continue
        part = frame[cols]
        if frame.attrs.get("column_groups"):
            part = part[~part.astype(str).isin(["", "nan", "None"]).all(axis=1)]
        part.attrs = {}
        for sub_title, sub in table_parts(part, max_columns):  # a named group wider than the limit is split too
            parts.append((f"{title} ({sub_title})" if sub_title else title, sub))
    return parts


def grouped(frame: pd.DataFrame, groups: dict[str, list]) -> pd.DataFrame:
    """FRAME, shown (by `show`) as one table per group of columns: title -> columns."""
    frame.attrs["column_groups"] = groups
    return frame


def show(obj) -> None:
    """Display a table whole (the claims, notes and refusals in these tables are sentences, not values to
    abbreviate), as parts of at most MAX_COLUMNS columns (table_parts), each under its title."""
    with pd.option_context(
        "display.max_colwidth", None, "display.max_columns", None, "display.max_rows", None, "display.width", 10_000
    ):
        try:
            from IPython.display import display
        except ImportError:  # outside IPython: plain text
            display = print
        parts = table_parts(obj) if isinstance(obj, pd.DataFrame) else [("", obj)]
        for title, part in parts:
            if title:
                print(f"{title}:")
            display(part)


def fmt(v: Any, digits: int = 3) -> str:
    try:
        return "nan" if v is None or np.isnan(v) else f"{v:.{digits}f}"
    except TypeError:
        return str(v)


def span(pair) -> str:
    return "" if pair is None else f"[{fmt(pair[0])}, {fmt(pair[1])}]"  # brackets: bounds may be negative


def with_ci(v: float, ci) -> str:
    return f"{fmt(v)} ({fmt(ci[0], 2)}-{fmt(ci[1], 2)})" if ci else fmt(v)


def _finite(pair) -> bool:
    return bool(pair) and all(x is not None and np.isfinite(float(x)) for x in pair)


def area_text(*by_class: dict) -> str:
    """The mean share of the explained images the lung mask covers, over the classes that record it."""
    areas = [c["lung_area"] for c in by_class if isinstance(c.get("lung_area"), (int, float))]
    return f"{np.mean(areas):.0%}" if areas else "not recorded"


def metrics_frame(m: dict[str, Any]) -> pd.DataFrame:
    """A split's headline metrics with their 95% intervals (by patient when the films carry patients; Wilson
    intervals too for small samples, where the percentile bootstrap collapses)."""
    from ..core.stats import SMALL_N

    names = {
        "accuracy": "accuracy",
        "sensitivity": "PNEUMONIA recall",
        "specificity": "NORMAL recall",
        "precision": "PNEUMONIA precision",
        "npv": "NORMAL precision",
        "auc": "AUC",
    }
    # a precision is undefined when no film is called that class (a collapsed model): say so, not NaN
    undefined = {
        "precision": "undefined: no film called PNEUMONIA",
        "npv": "undefined: no film called NORMAL",
        "sensitivity": "undefined: no PNEUMONIA film",
        "specificity": "undefined: no NORMAL film",
        "auc": "undefined: films of one class only",
    }
    unit = "patients" if m.get("ci95_unit") == "patient" else "images"
    rows = []
    for k, label in names.items():
        if k not in m:
            continue
        v = m[k]
        known = v is not None and not np.isnan(float(v))
        row = {"metric": label, "value": round(float(v), 3) if known else undefined.get(k, "undefined")}
        ci = m.get("ci95", {}).get(k) if known else None
        row[f"95% CI (bootstrap over {unit})"] = f"{fmt(ci[0])}-{fmt(ci[1])}" if _finite(ci) else ""
        wil = m.get("ci95_wilson", {}).get(k) if known else None
        if m.get("n", SMALL_N) < SMALL_N:
            row["95% CI (Wilson)"] = f"{fmt(wil[0])}-{fmt(wil[1])}" if _finite(wil) else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def metrics_of(x) -> dict[str, Any]:
    return x.metrics if hasattr(x, "metrics") else x


def maps_checked(sanity: dict[str, Any] | None) -> str:
    """The maps' checks in words, for every table that shows lifts: ROAD (the model's map against a random map, with
    a 95% interval by patient) and the randomisation test (rank correlation with a re-initialised model's map)."""
    from ..analysis.cam import maps_pass, road_degenerate

    if not sanity:
        return "NOT CHECKED (no ROAD or randomisation test was run on these maps): lifts not to be read"
    fa, rc = sanity.get("faithfulness") or {}, sanity.get("randomisation_rank_corr") or {}
    ci = fa.get("model_minus_random_ci95")
    verdict = {True: "pass", False: "FAIL", None: "undecided"}[maps_pass(sanity)]
    if road_degenerate(fa):
        verdict = "cannot check (the model's output barely moves when pixels are removed: a collapsed model)"
    return (
        f"{verdict}: ROAD model - random map {fmt(fa.get('model_minus_random'))} {span(ci)}, randomisation rank "
        f"correlation {fmt(rc.get('mean'))} ({sanity.get('n')} films)"
    )


def one_class_epochs(history: list[dict[str, float]], val_samples) -> list[str]:
    """Epochs whose model called every val film one class at 0.5 (the log's symptom). Read from the epoch's share
    of films called PNEUMONIA when the history has it; older histories only have val accuracy, which equals a
    class's share of the val films in that case (consistent with it, not proof; and on a balanced val split it
    cannot say which class)."""
    labels = [s.label for s in val_samples]
    if not labels or not history:
        return []
    n, n_pneu = len(labels), sum(labels)
    found: dict[str, list[int]] = {}
    for h in history:
        share = h.get("val_share_pneumonia")
        if share is not None:
            cls = "PNEUMONIA" if share == 1.0 else ("NORMAL" if share == 0.0 else None)
            if cls:
                found.setdefault(f"called every val film {cls}", []).append(int(h["epoch"]))
            continue
        k = round(h["val_acc"] * n)
        if abs(h["val_acc"] * n - k) < 1e-6 and k in (n_pneu, n - n_pneu):
            cls = "one class" if n_pneu == n - n_pneu else ("PNEUMONIA" if k == n_pneu else "NORMAL")
            found.setdefault(
                f"val accuracy at 0.5 = the {cls} share of the {n} val films, consistent with every "
                f"val film called {cls}",
                [],
            ).append(int(h["epoch"]))
    return [f"epoch(s) {', '.join(map(str, e))}: {what}" for what, e in found.items()]


_SEED_FLAG = re.compile(r"^(?P<who>(?:entry \S+ )?)seed (?P<seed>\S+) (?P<what>.+)$")


def _plural(phrase: str) -> str:
    """'calls 100% ...' -> 'call 100% ...' (the verb after several seeds), other phrases as they are."""
    aside = "(compared with) "
    if phrase.startswith(aside):
        return aside + _plural(phrase[len(aside) :])
    phrase = phrase.replace(" at its threshold", " at their own thresholds")
    first, sep, rest = phrase.partition(" ")
    verbs = {"calls": "call", "is": "are", "was": "were", "has": "have", "does": "do", "kept": "kept"}
    if first in verbs:
        return verbs[first] + sep + rest
    if first.endswith("s") and not first.endswith("ss") and first.isalpha() and first.islower():
        return first[:-1] + sep + rest
    return phrase


def collapse_seed_flags(text: str) -> str:
    """A note's '; '-separated flags that repeat one phrase per seed ('seed 0 calls 100% of validation films
    PNEUMONIA ...; seed 2 calls 100% ...') as one flag naming the seeds ('seeds 0, 2 call 100% ...'), in the order
    of their first appearance; other parts of the note as they are."""
    parts = text.split("; ")
    found: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str] | str] = []
    for p in parts:
        m = _SEED_FLAG.match(p)
        if not m:
            order.append(p)
            continue
        key = (m["who"], m["what"])
        if key not in found:
            found[key] = []
            order.append(key)
        found[key].append(m["seed"])
    # the compared entries' flags that say one thing are one flag too: 'seed 0 of entry 01, seeds 0, 2 of entry 02
    # (compared with) call 100% ...', said where the first of them stood
    merged: dict[str, list[tuple[str, list[str]]]] = {}
    out: list[str | tuple[str, str]] = []
    for item in order:
        if isinstance(item, str):
            out.append(item)
            continue
        (who, what), seeds = item, found[item]
        if who and what in merged:
            merged[what].append((who, seeds))
            continue
        if who:
            merged[what] = [(who, seeds)]
            out.append(("merged", what))
            continue
        many = len(seeds) > 1
        out.append(f"seed{'s' if many else ''} {', '.join(seeds)} {_plural(what) if many else what}")
    return "; ".join(x if isinstance(x, str) else _merged(merged[x[1]], x[1]) for x in out)


def _merged(groups: list[tuple[str, list[str]]], what: str) -> str:
    """One flag for the compared entries' seeds that share WHAT: 'entry 01 seeds 0, 2 (compared with) call ...' for
    one entry, 'seed 0 of entry 01, seeds 0, 2 of entry 04 (compared with) call ...' for several."""

    def seeds(s: list[str]) -> str:
        return f"seed{'s' if len(s) > 1 else ''} {', '.join(s)}"

    if len(groups) == 1:
        who, s = groups[0]
        return f"{who}{seeds(s)} {_plural(what) if len(s) > 1 else what}"
    return ", ".join(f"{seeds(s)} of {who.strip()}" for who, s in groups) + f" {_plural(what)}"


# --- where a Grad-CAM map is hottest, in words, for the galleries' captions ----------------------------------------
# Inside the lung mask, the heart/diaphragm box, elsewhere outside the lungs, or the film's edge band, where burned-in
# letters and side markers ("R", "L") sit: a gallery's caption lists it per tile, so a reader is told what lights up.
EDGE_BAND = 0.08  # share of the film's side along each border: where burned-in markers and letters sit
HOT_SHARE = 0.05  # the hottest region of a map: its top 5% of pixels by value

REGIONS = ("lungs", "edge", "heart", "outside")  # the order a hot pixel is assigned in (the first that holds it)
WORDS = {
    "lungs": "in the lungs",
    "edge": "at the film's edge (markers?)",
    "heart": "on the heart/diaphragm box",
    "outside": "outside the lungs (not the edge band)",
    "empty": "nowhere (an empty map)",
}


@dataclass(frozen=True)
class Hotspot:
    """Where a map's hottest pixels lie: the region holding most of their heat, that share, and for the edge band
    which side (top, bottom, left, right of the image as shown)."""

    region: str
    share: float
    side: str = ""

    def words(self) -> str:
        if self.region == "edge" and self.side:
            return f"at the film's {self.side} edge (markers?)"
        return WORDS[self.region]


def edge_band_mask(h: int, w: int, band: float = EDGE_BAND) -> np.ndarray:
    """True within `band` of the image's side from any border."""
    b_r, b_c = max(1, int(round(band * h))), max(1, int(round(band * w)))
    m = np.zeros((h, w), bool)
    m[:b_r], m[-b_r:], m[:, :b_c], m[:, -b_c:] = True, True, True, True
    return m


def _side(edge_heat: np.ndarray) -> str:
    """The border nearest the hottest pixel of the edge band."""
    h, w = edge_heat.shape
    r, c = np.unravel_index(int(np.argmax(edge_heat)), edge_heat.shape)
    r, c = r / max(h - 1, 1), c / max(w - 1, 1)
    return min((r, "top"), (1 - r, "bottom"), (c, "left"), (1 - c, "right"))[1]


def hottest_region(cam: np.ndarray, lung_mask: np.ndarray | None = None, band: float = EDGE_BAND) -> Hotspot:
    """Where a map is hottest: its top HOT_SHARE of pixels, each assigned to the first region of REGIONS that holds
    it (inside `lung_mask`; the edge band; the heart/diaphragm box of cam_maps.HEART_BOX; elsewhere), and the region
    holding most of their heat wins. Without a lung mask (none, or one that failed its check: pass None) no pixel is
    called lungs. A map with no positive value is 'empty'."""
    cam = np.asarray(cam, float)
    if not np.isfinite(cam).all() or cam.max() <= 0:
        return Hotspot("empty", 0.0)
    from ..analysis.cam_maps import heart_box_mask

    h, w = cam.shape
    cut = np.quantile(cam, 1 - HOT_SHARE)
    hot = (cam >= cut) & (cam > 0)
    heat = np.where(hot, cam, 0.0)
    lungs = np.zeros((h, w), bool) if lung_mask is None else np.asarray(lung_mask, bool)
    if lungs.shape != (h, w):
        raise ValueError(f"lung mask {lungs.shape} and map {cam.shape} differ in size")
    edge = edge_band_mask(h, w, band) & ~lungs
    heart = heart_box_mask(h, w) & ~lungs & ~edge
    outside = ~(lungs | edge | heart)
    total = heat.sum()
    shares = {r: float(heat[m].sum() / total) for r, m in zip(REGIONS, (lungs, edge, heart, outside))}
    region = max(REGIONS, key=lambda r: shares[r])  # ties go to the earlier region
    return Hotspot(region, shares[region], _side(np.where(edge, heat, 0.0)) if region == "edge" else "")


def tile_hotspots(expl, picks: list[int]) -> list[tuple[str, Hotspot]]:
    """(tile name, where its map is hottest) for the films of an Explanation at indices `picks`, named as the
    gallery shows them: class and its position in that class's row ('NORMAL 2'). A mask that failed its check is
    not used (the tile's lungs are unknown)."""
    from ..core.config import CLASSES

    out, count = [], {}
    ok = expl.mask_ok
    for i in picks:
        cls = CLASSES[expl.samples[i].label]
        count[cls] = count.get(cls, 0) + 1
        empty = bool(expl.empty[i])
        spot = (
            Hotspot("empty", 0.0)
            if empty
            else hottest_region(expl.cams[i], expl.masks[i] if ok[i] and expl.masks[i].any() else None)
        )
        out.append((f"{cls} {count[cls]}", spot))
    return out


def gallery_caption(spots: list[tuple[str, Hotspot]]) -> str:
    """One caption line for a gallery: per region, how many tiles are hottest there and which, the edge band (where
    markers sit) first."""
    if not spots:
        return "no tiles"
    n = len(spots)
    order = ("edge", "outside", "heart", "lungs", "empty")
    parts = []
    for region in order:
        tiles = [(name, s) for name, s in spots if s.region == region]
        if not tiles:
            continue
        names = ", ".join(f"{name} ({s.side})" if s.side else name for name, s in tiles)
        parts.append(f"{len(tiles)} of {n} tiles {'is' if len(tiles) == 1 else 'are'} hottest {WORDS[region]}: {names}")
    return "; ".join(parts)


# --- the figures' captions, computed from what each figure draws --------------------------------------------------
def report_caption(m: dict[str, Any], seed, split: str, with_scores: bool) -> str:
    """The confusion matrix (and score histogram) of one run: the errors of each kind, counted."""
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    t = m.get("threshold", float("nan"))
    text = (
        f"left, seed {seed}'s {split} films by true class (rows) and call at threshold {fmt(t, 2)} (columns): "
        f"{fp} of {tn + fp} NORMAL films called PNEUMONIA, {fn} of {fn + tp} PNEUMONIA films called NORMAL"
    )
    if with_scores:
        text += (
            "; right, each film's P(PNEUMONIA) by true class with the threshold as a line: NORMAL films right of it "
            "are the false alarms, PNEUMONIA films left of it the misses"
        )
    return text + "."


def history_caption(history: list[dict[str, float]], best, seed) -> str:
    """Training curves: the validation loss at the first, kept and last epochs."""
    if not history:
        return f"seed {seed}: no training record to draw."
    first, last = history[0], history[-1]
    kept = next((h for h in history if h["epoch"] == best), last)
    return (
        f"seed {seed}'s training, epoch by epoch: left, train and validation loss (validation loss "
        f"{fmt(first['val_loss'])} at epoch {first['epoch']}, {fmt(kept['val_loss'])} at the kept epoch "
        f"{kept['epoch']}, dotted, {fmt(last['val_loss'])} at the last, {last['epoch']}); right, validation AUC and "
        f"accuracy at 0.5 (AUC {fmt(kept['val_auc'])} at the kept epoch). A validation loss that rises while the "
        "training loss falls is overfitting; a flat accuracy at one class's share is a model calling one class."
    )


def cam_picks(expl, n_per_class: int) -> list[int]:
    """The films plots.plot_cam_grid shows: the first n_per_class of each class in the explanation's order."""
    from ..core.config import CLASSES

    return [
        i
        for label in range(len(CLASSES))
        for i in [j for j, s in enumerate(expl.samples) if s.label == label][:n_per_class]
    ]


def cam_gallery_caption(expl, n_per_class: int) -> str:
    """A Grad-CAM gallery: per tile, where its map is hottest (tile_hotspots), the edge band (markers) first."""
    picks = cam_picks(expl, n_per_class)
    return (
        f"Grad-CAM ({expl.target} target) over {len(picks)} test films, NORMAL row first, tiles numbered left to right; "
        "white outline the lung mask, dashed red a mask that failed its check. Where each map is hottest (its top "
        f"{HOT_SHARE:.0%} of pixels; edge band = the outer {EDGE_BAND:.0%} of the film, where burned-in markers "
        f"sit): {gallery_caption(tile_hotspots(expl, picks))}."
    )


def mask_gallery_caption(expl, n: int = 12) -> str:
    """The lung-mask gallery: how many masks failed their check, shown first."""
    ok = np.asarray(expl.mask_ok, bool)
    failed = int((~ok).sum())
    return (
        f"lung masks from the shipped segmenter over up to {n} of the {len(ok)} explained films, failed ones first: "
        f"{failed} of {len(ok)} failed the mask check (red, with the reason); judge whether the white outlines follow "
        "the lung fields."
    )
