"""The lung segmenter's studies: trained and tested, its Dice and mask check, the whole-film population reference.

The segmenter is trained and tested on annotated masks; the population reference is fitted on a data folder's
films and scores films."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import DataError
from ..data import lungs as L
from ..data import population as P
from ..data.dataset import discover
from ..data.imaging import ImageError
from ..training.lungs import train_segmenter


def train_tested_segmenter(
    data_dir: str | Path, *, epochs: int, seed: int, provenance: dict[str, Any]
) -> tuple[L.LungSegmenter, list[dict[str, float]], dict[str, Any] | None]:
    """(segmenter, history, its Dice on the test split's annotated masks or None without any): trained on DATA_DIR's
    masks, the test numbers kept in its provenance."""
    seg, history = train_segmenter(data_dir, epochs=epochs, seed=seed, provenance=provenance)
    test = L.discover_masks(data_dir).get("test", [])
    r = None
    if test:
        r = L.evaluate_pairs(seg, test)
        seg.provenance["test"] = {k: r[k] for k in ("n", "dice_mean", "dice_p05", "dice_min")}
    return seg, history, r


def annotated_pairs(data_dir: str | Path, split: str) -> list[L.MaskPair]:
    """The split's films with annotated masks; DataError when there are none."""
    pairs = L.discover_masks(data_dir).get(split, [])
    if not pairs:
        raise DataError(f"{data_dir}: no annotated masks in the {split} split")
    return pairs


def evaluate_segmenter(seg: L.LungSegmenter, pairs: list[L.MaskPair]) -> dict[str, Any]:
    """Dice on the annotated PAIRS, and the mask check on their predicted masks and on every film of their split,
    annotated or not (how often it passes; annotated masks failing it; bad masks, Dice < 0.9, passing it)."""
    r = L.evaluate_pairs(seg, pairs)
    r.update(L.qc_report(seg, pairs))
    films = sorted({p.image.parent.parent for p in pairs})  # every film of the split, annotated or not
    every = [f for d in films for f in sorted(d.rglob("*")) if f.suffix.lower() in L.IMAGE_SUFFIXES]
    r.update(L.qc_on_films(seg, every))
    return r


@dataclass
class PopulationFit:
    """The whole-film population reference fitted on a data folder, and what it says.

    Attributes:
        reference: the fitted reference (its info records how, and the test split's flag rate).
        report: threshold, quantile, n_fit; per split n, flagged, share, median score; per file scored, its score
            and flag (the JSON 'lungs population' writes).
        scored: (file, score, flagged) per file scored, in the order given.
        problems: the files that could not be read, one line each.
    """

    reference: P.PopulationReference
    report: dict[str, Any]
    scored: list[tuple[str, float, bool]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s in self.report]


def fit_population(
    data_dir: str | Path,
    seg: L.LungSegmenter,
    files: list[str] = (),
    *,
    seed: int = 0,
    info: dict[str, Any] | None = None,
) -> PopulationFit:
    """Fit the population reference on DATA_DIR's training films (a Kaggle-layout folder, or one holding
    chest_xray/; threshold on its validation films), measure the share of each split flagged, and score FILES.
    INFO: how it was asked for (command, commit), recorded with the data folder, the seed and the segmenter
    (INFO's 'segmenter', else the shipped one's digest)."""
    root = Path(data_dir)
    data = discover(root / "chest_xray" if (root / "chest_xray" / "train").is_dir() else root, seed=seed)
    feats = {
        split: P.film_statistics([s.path for s in data[split]], seg)
        for split in ("train", "val", "test")
        if data[split]
    }
    info = dict(info or {})
    segmenter = info.pop("segmenter", None) or L.shipped_digest()
    ref = P.fit_reference(
        feats["train"], feats["val"], info={**info, "data": str(data.root), "seed": seed, "segmenter": segmenter}
    )
    report = {"threshold": ref.threshold, "quantile": P.FLAG_QUANTILE, "n_fit": len(feats["train"])}
    for split, f in feats.items():
        score, flagged = ref.flag(f)
        report[split] = {
            "n": int(len(f)),
            "flagged": int(flagged.sum()),
            "share": float(flagged.mean()),
            "median": float(np.median(score)),
        }
    ref.info.update({k: report[k] for k in ("test",) if k in report})
    fit = PopulationFit(ref, report)
    report["files"] = {}
    for f in files:
        try:
            score, flagged = ref.flag(P.film_statistics([f], seg))
        except ImageError as e:
            fit.problems.append(str(e))
            continue
        report["files"][f] = {"score": float(score[0]), "flagged": bool(flagged[0])}
        fit.scored.append((f, float(score[0]), bool(flagged[0])))
    return fit
