"""A labelled film (`Sample`) and a data set's splits (`XRayData`), with the patient id read from a file name."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import CLASSES, SPLITS  # noqa: F401 (SPLITS: re-exported, owned by core.config)
from ..core.io import DataError
from ..data.cache import DecodedCache
from ..data.imaging import (
    ImageError,
)
from ..data.resources import Resources

IGNORED_NAMES = {"thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # NORMAL=0, PNEUMONIA=1
    patient: str
    split: str

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]


_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_"),  # person123_bacteria_456.jpeg -> person123
    # IM-0115-0001, NORMAL2-IM-1427-0001, NORMAL2-IM-0587-0001-0002 -> IM-0115, NORMAL2-IM-1427, NORMAL2-IM-0587
    re.compile(r"^((?:[A-Za-z]+\d*-)?IM-\d+)(?:-\d+)+$"),
)


def patient_id(path: str | Path) -> str:
    """The patient behind a Kaggle file name; an unrecognised name counts as its own patient."""
    stem = Path(path).stem
    for pat in _PATIENT_PATTERNS:
        m = pat.match(stem)
        if m:
            return m.group(1)
    return stem


def unlabelled(path: str | Path) -> Sample:
    """The Sample of a film given by path for prediction: no label (-1), the patient read from its name, split
    'predict'. The one place a served film becomes a Sample (api.predict_folder, api.explain, Predictor.predict_records)."""
    return Sample(Path(path), -1, patient_id(path), "predict")


_ROW = re.compile(r"^row \d+ of [^:]*: ")


_FIRST_AT = re.compile(r" \(first at row \d+\)")


def summarise_errors(errors: list[ImageError], per_kind: int = 5) -> list[str]:
    """One line per skipped file, up to `per_kind` of each kind of problem, then one line saying how many more of
    that kind there were: 100,000 duplicate manifest rows are 6 lines, not 100,000."""
    kinds: dict[str, list[ImageError]] = {}
    for e in errors:
        kind = _FIRST_AT.sub("", _ROW.sub("", str(getattr(e, "problem", e))))
        kinds.setdefault(kind, []).append(e)
    lines = []
    for kind, group in kinds.items():
        lines += [str(e) for e in group[:per_kind]]
        if len(group) > per_kind:
            lines.append(f"... and {len(group) - per_kind:,} more file(s) or row(s) with the same problem ({kind})")
    return lines


@dataclass
class XRayData:
    """The samples of each split, plus what was noticed while finding them."""

    root: Path
    splits: dict[str, list[Sample]]
    notes: list[str] = field(default_factory=list)
    bad_files: list[ImageError] = field(default_factory=list)
    hygiene: Any = None  # the pre-scan's data.hygiene.Hygiene, once it has run
    holdout: str = "folders"
    # the decode cache of these samples (each split's films decoded once per view), the lung segmenter and the device:
    # one context (data.resources.Resources), built with the data, never at import
    resources: Resources = field(default_factory=Resources, repr=False, compare=False)

    @property
    def cache(self) -> DecodedCache:
        """The decoded films of these samples: the context's cache."""
        return self.resources.cache

    def log_findings(self, logger) -> None:
        """Log what the pre-scan found (the hygiene table, the files skipped: summarise_errors)."""
        if self.hygiene and self.hygiene.n_problems:
            logger.warning("pre-scan of %s:\n%s", self.root, self.hygiene.table())
        for line in summarise_errors(self.bad_files):
            logger.warning("skipping: %s", line)
        for note in self.notes:
            if note.startswith("lung crop"):
                logger.warning("%s", note)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            s: {c: sum(x.label == i for x in samples) for i, c in enumerate(CLASSES)}
            for s, samples in self.splits.items()
        }

    def __getitem__(self, split: str) -> list[Sample]:
        if split not in self.splits:
            raise DataError(f"{self.root}: no {split!r} split (have: {', '.join(self.splits)})")
        return self.splits[split]

    def __repr__(self) -> str:
        rows = [f"XRayData({self.root})", f"  {'split':<6} {'NORMAL':>7} {'PNEUMONIA':>10} {'patients':>9}"]
        for s, samples in self.splits.items():
            c = self.counts()[s]
            rows.append(f"  {s:<6} {c['NORMAL']:>7} {c['PNEUMONIA']:>10} {len({x.patient for x in samples}):>9}")
        rows += [f"  note: {n}" for n in self.notes]
        rows += [f"  unreadable: {e}" for e in self.bad_files]
        return "\n".join(rows)
