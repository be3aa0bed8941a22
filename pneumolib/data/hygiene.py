"""The pre-scan (unreadable files, identical files, patients in two splits), the data fingerprint, `prepare`."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.config import CLASSES, View, as_view
from ..core.io import DataError
from ..data.cache import DecodedCache, file_digest
from ..data.imaging import (
    ImageError,
)
from ..data.resources import Resources
from ..data.samples import Sample, XRayData
from ..data.sources import discover
from ..data.splits import apply_holdout, shared_patients


@dataclass
class Hygiene:
    """What a pre-scan found: unreadable files, byte-identical duplicates, patients shared between splits."""

    unreadable: list[ImageError]
    duplicates: list[list[Sample]]  # groups of two or more files with identical bytes
    shared_patients: dict[str, list[str]]  # patient -> the splits it appears in

    def _dupes(self, kind: str) -> list[list[Sample]]:
        def kind_of(g):
            if len({s.split for s in g}) > 1:
                return "across splits"
            return "across classes" if len({s.label for s in g}) > 1 else "within a class"

        return [g for g in self.duplicates if kind_of(g) == kind]

    @property
    def n_problems(self) -> int:
        return len(self.unreadable) + len(self.duplicates) + len(self.shared_patients)

    def table(self) -> str:
        def ex(g):
            return " = ".join(f"{s.split}/{s.class_name}/{s.path.name}" for s in g[:2])

        rows = [("unreadable files", len(self.unreadable), str(self.unreadable[0]) if self.unreadable else "")]
        for kind in ("within a class", "across classes", "across splits"):
            groups = self._dupes(kind)
            rows.append((f"identical files {kind}", len(groups), ex(groups[0]) if groups else ""))
        first = next(iter(self.shared_patients.items()), None)
        rows.append(
            (
                "patients in two or more splits",
                len(self.shared_patients),
                f"{first[0]}: {', '.join(first[1])}" if first else "",
            )
        )
        return "\n".join(f"  {name:<34} {n:>5}  {example}" for name, n, example in rows)


def check_hygiene(data: XRayData, unreadable: list[ImageError] | None = None, workers: int = 8) -> Hygiene:
    samples = [s for split in data.splits.values() for s in split]
    with ThreadPoolExecutor(workers) as pool:

        def digest(s: Sample) -> str | None:
            try:
                return file_digest(s.path, data.cache._digests)  # the cache hashes each film once, for both
            except (ImageError, OSError):  # unreadable: the pre-scan lists it, it has no content to compare
                return None

        digests = list(pool.map(digest, samples))
    groups: dict[str, list[Sample]] = {}
    for s, d in zip(samples, digests):
        if d is not None:
            groups.setdefault(d, []).append(s)
    dupes = [g for g in groups.values() if len(g) > 1]
    return Hygiene(list(unreadable or []), dupes, shared_patients(data.splits))


def prescan(
    data: XRayData,
    image_size: int | View,
    strict: bool = False,
    progress: Callable | None = None,
    resources: Resources | None = None,
) -> XRayData:
    """Decode every file once and check the folder's hygiene (unreadable files, identical files within and
    across splits and classes, patients in two splits). Unreadable files are dropped and reported by path;
    strict mode refuses to start on any finding. RESOURCES (default: the data's own context) keeps the decoded
    films; the returned data holds it."""
    resources = data.resources if resources is None else resources
    cache = resources.cache
    every = [s.path for samples in data.splits.values() for s in samples]
    bad = cache.warm(every, image_size, progress=progress)
    hygiene = check_hygiene(data, list(data.bad_files) + bad)  # a manifest's bad rows are findings too
    if strict and hygiene.n_problems:
        first = str(hygiene.unreadable[0]) if hygiene.unreadable else data.root
        raise DataError(
            f"{first}: strict mode refuses to start ({len(hygiene.unreadable)} unreadable, {len(hygiene.duplicates)} "
            f"duplicate group(s), {len(hygiene.shared_patients)} patient(s) in two splits)"
        )
    bad_paths = {e.path for e in bad}
    splits = {k: [s for s in v if s.path not in bad_paths] for k, v in data.splits.items()}
    for k, v in splits.items():
        for i, c in enumerate(CLASSES):
            if not any(s.label == i for s in v):
                raise DataError(f"{data.root}/{k}/{c}: no readable images left after the pre-scan")
    notes = list(data.notes) + crop_notes(splits, image_size, cache)
    return XRayData(data.root, splits, notes, list(data.bad_files) + bad, hygiene, data.holdout, resources)


def crop_notes(splits: dict[str, list[Sample]], view: int | View, cache: DecodedCache) -> list[str]:
    """For a lung-cropped view: per split, the films whose lungs the segmenter did not find (kept whole), so a run
    says how many of its films were not cropped."""
    if as_view(view).crop == "none":
        return []
    out = []
    for split, samples in splits.items():
        missed = [(s, cache.box(s.path, view)) for s in samples]
        missed = [(s, b) for s, b in missed if b.problem]
        if missed:
            s, b = missed[0]
            out.append(
                f"lung crop: lungs not found on {len(missed)} of {len(samples)} {split} films, kept whole "
                f"(first: {s.path.name}: {b.problem})"
            )
    return out


def file_rows(split: str, samples: list[Sample], root: Path | None = None) -> list[str]:
    """One sorted line per file: split, label, path (relative to ROOT when under it) and size; what fingerprints
    hash (a file that cannot be read has size -1)."""
    rows = []
    for s in samples:
        try:
            rel = s.path.relative_to(root).as_posix() if root is not None else str(s.path)
            size = s.path.stat().st_size
        except (ValueError, OSError):
            rel, size = str(s.path), -1
        rows.append(f"{split}\t{s.label}\t{rel}\t{size}")
    return sorted(rows)


def fingerprint(data: XRayData) -> str:
    """What a run trained and validated on, as a short hash: every train and val file's split, label, path relative
    to the data folder and size. Stored in checkpoints, so a run folder is reused only for the same data."""
    h = hashlib.sha256()
    for split in ("train", "val"):
        h.update("\n".join(file_rows(split, data.splits.get(split, []), data.root)).encode())
    return h.hexdigest()[:16]


def prepare(
    root: str | Path,
    *,
    seed: int,
    holdout: str = "folders",
    image_size: int | View,
    strict: bool = False,
    logger=None,
    resources: Resources | None = None,
) -> XRayData:
    """The one way a run's data is made ready: discover the folder (val split seeded), apply the holdout,
    pre-scan (decode once, hygiene; unreadable files dropped and listed), log what the pre-scan found. The data
    carries RESOURCES (default: a new context)."""
    data = apply_holdout(discover(root, seed=seed), holdout)
    data = prescan(data, image_size, strict=strict, resources=resources)
    if logger is not None:
        data.log_findings(logger)
    return data
