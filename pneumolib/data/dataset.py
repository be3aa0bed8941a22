"""Find a Kaggle-layout chest X-ray folder, split it by patient, decode it once, and serve it as datasets."""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..core.config import CLASSES, ConfigError, View, as_view
from ..core.io import CheckpointError, DataError, OutputError, atomic_write
from ..data.fixture import fixture_dir
from ..data.imaging import (
    IMAGE_SUFFIXES,
    ImageError,
    check_file_type,
    check_readable,
    decode_cost,
    load_image,
    load_resized,
)
from ..data.lungs import SIZE as LUNG_SIZE
from ..data.lungs import LungBox, LungSegmenter, crop_film, mask_film, shipped_segmenter

SPLITS = ("train", "val", "test")
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


def _is_hidden(p: Path, root: Path) -> bool:
    return any(part.startswith((".", "__")) for part in p.relative_to(root).parts)


def _name_problem(p: Path) -> str | None:
    """Why a file name cannot be carried through a run (records, CSVs, the printed tables), or None."""
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8; rename the file"
    return None


def list_images(folder: Path) -> tuple[list[Path], list[Path], list[ImageError]]:
    """Image files under folder (recursively, by suffix in any case: .jpeg/.jpg/.png/.dcm/.dicom); the other files
    ignored (suffix-less DICOMs too: only a file named explicitly is read as DICOM by content); and the entries with
    an image suffix that cannot be used, each with its reason (a dangling link, a FIFO or device, a name that is not
    UTF-8): refused with a line each, never dropped without a word."""
    images, ignored, refused = [], [], []
    for p in sorted(folder.rglob("*")):
        if _is_hidden(p, folder) or p.name.lower() in IGNORED_NAMES or p.is_dir():
            continue
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            if p.is_file():
                ignored.append(p)
            continue
        problem = _name_problem(p)
        if problem is None:
            try:
                check_file_type(p)  # not a file one can read: refused here; its size is the pre-scan's to report
            except ImageError as e:
                problem = e.problem
        if problem:
            refused.append(ImageError(p, problem))
        else:
            images.append(p)
    return images, ignored, refused


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
    hygiene: "Hygiene | None" = None
    holdout: str = "folders"
    # the decoded films of these samples (each split's films decoded once per view); built with the data, never at import
    cache: "DecodedCache" = field(default_factory=lambda: DecodedCache.from_environment(), repr=False, compare=False)

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
        return {s: {c: sum(x.label == i for x in samples) for i, c in enumerate(CLASSES)}
                for s, samples in self.splits.items()}

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


def _scan_split(root: Path, split: str) -> tuple[list[Sample], int, list[ImageError]]:
    samples, n_ignored, refused = [], 0, []
    for label, cls in enumerate(CLASSES):
        folder = root / split / cls
        if not folder.is_dir():
            raise DataError(f"{folder}: missing class folder (expected {root}/{split}/{{{','.join(CLASSES)}}})")
        images, ignored, bad = list_images(folder)
        if not images:
            raise DataError(f"{folder}: no images ({'/'.join(IMAGE_SUFFIXES)}) in this class folder")
        n_ignored += len(ignored)
        refused += bad
        samples += [Sample(p, label, patient_id(p), split) for p in images]
    return samples, n_ignored, refused


def grouped_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off about `fraction` of each class's patients (all their films together), seeded.

    Patients are the unit, so no patient is on both sides; each class keeps at least one patient on each side.
    A patient whose films carry both labels counts with its majority label. Needs at least two patients per
    class (DataError otherwise, naming what is missing)."""
    by_patient: dict[str, list[Sample]] = {}
    for s in samples:
        by_patient.setdefault(s.patient, []).append(s)
    classes: dict[int, list[str]] = {i: [] for i in range(len(CLASSES))}
    for patient, films in sorted(by_patient.items()):
        labels = [f.label for f in films]
        classes[max(set(labels), key=lambda k: (labels.count(k), -k))].append(patient)
    short = [f"{CLASSES[i]} has {len(ps)}" for i, ps in classes.items() if len(ps) < 2]
    if short:
        raise DataError(f"too few patients to build a validation split ({', '.join(short)} patient(s) across "
                        f"train and val; need at least 2 per class): add images, or provide a val/ folder with "
                        f"at least {VAL_MIN_PER_CLASS} images per class")
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for i, patients in classes.items():
        k = min(len(patients) - 1, max(1, round(len(patients) * fraction)))
        held.update(patients[j] for j in rng.permutation(len(patients))[:k])
    return [s for s in samples if s.patient not in held], [s for s in samples if s.patient in held]


VAL_MIN_PER_CLASS = 10  # a val/ folder with fewer images of a class than this is pooled with train and re-split


def _ensure_val(splits: dict[str, list[Sample]], notes: list[str], val_min_per_class: int, val_fraction: float,
                seed: int) -> None:
    """When val is missing or tiny, pool it with train and split a patient-grouped, class-stratified val off."""
    val_counts = [sum(s.label == i for s in splits.get("val", [])) for i in range(len(CLASSES))]
    if min(val_counts) < val_min_per_class:
        why = "missing" if "val" not in splits else f"tiny ({sum(val_counts)} images)"
        pool = splits["train"] + splits.pop("val", [])
        train, val = grouped_split(pool, val_fraction, seed)
        splits["train"] = [Sample(s.path, s.label, s.patient, "train") for s in train]
        splits["val"] = [Sample(s.path, s.label, s.patient, "val") for s in val]
        notes.append(f"val/ {why}: pooled it with train/ and built a patient-grouped, class-stratified val split "
                     f"({len(val)} images, {len({s.patient for s in val})} patients), seed {seed}")


def _finish(root: Path, splits: dict[str, list[Sample]], notes: list[str], bad: list | None = None,
            why: str = "the Kaggle download's person numbering restarts per folder") -> XRayData:
    if "test" not in splits:
        notes.append("no test/ split: evaluation on 'test' is unavailable")
    splits = {s: splits[s] for s in SPLITS if s in splits}
    overlap = shared_patients(splits)
    if overlap:
        first = sorted(overlap)[0]
        notes.append(f"{len(overlap)} patient id(s) appear in more than one of the splits, e.g. {first} in "
                     f"{' and '.join(overlap[first])} ({why}; --strict refuses)")
    return XRayData(root, splits, notes, list(bad or []))


def discover(root: "str | Path | Manifest", *, val_min_per_class: int = VAL_MIN_PER_CLASS, val_fraction: float = 0.1,
             seed: int = 0) -> XRayData:
    """Read ROOT/{train,val,test}/{NORMAL,PNEUMONIA} (or a CSV Manifest: read_manifest); when val/ is missing or
    tiny, pool it with train and build a patient-grouped, class-stratified val split from the pool (so one patient
    can never sit on both sides)."""
    if isinstance(root, Manifest):
        return read_manifest(root, val_min_per_class=val_min_per_class, val_fraction=val_fraction, seed=seed)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if not (root / "train").is_dir():
        raise DataError(f"{root}: no train/ folder (expected the Kaggle layout ROOT/train/NORMAL, ...)")
    splits, notes, n_ignored, refused = {}, [], 0, []
    for split in SPLITS:
        if (root / split).is_dir():
            splits[split], k, bad = _scan_split(root, split)
            n_ignored += k
            refused += bad
    if n_ignored:
        notes.append(f"ignored {n_ignored} file(s) without an image suffix")
    _ensure_val(splits, notes, val_min_per_class, val_fraction, seed)
    return _finish(root, splits, notes, refused)


# --- CSV manifests (RSNA, NIH, CheXpert, MIMIC come as a folder of images plus a table) ---------------------------
MANIFEST_COLUMNS = ("path", "label", "patient")
SOURCE_SEP = "::"  # "manifest.csv::image_root", how a manifest is named in metrics.json and --data-dir
MANIFEST_TEST_FRACTION = 0.15  # without a split column: this share of patients is the test split (always seed 0)


@dataclass(frozen=True)
class Manifest:
    """A CSV with columns path,label,patient[,split] (labels NORMAL/PNEUMONIA; split train/val/test) and the folder
    its relative paths start from."""

    csv: Path
    image_root: Path

    def __str__(self) -> str:
        return f"{self.csv}{SOURCE_SEP}{self.image_root}"

    @property
    def name(self) -> str:
        return self.csv.name


def as_source(value: "str | Path | Manifest") -> "Path | Manifest":
    """A data source as given on the command line or recorded in metrics.json: a folder, or 'FILE.csv::ROOT'."""
    if isinstance(value, Manifest):
        return value
    text = str(value)
    if SOURCE_SEP in text and text.split(SOURCE_SEP)[0].lower().endswith(".csv"):
        csv, root = text.split(SOURCE_SEP, 1)
        return Manifest(Path(csv).expanduser().resolve(), Path(root).expanduser().resolve())
    return Path(text).expanduser()


def _row_problem(r: dict, root: Path, split: str, listed_at: int | None) -> str | None:
    """Why a manifest row cannot be used (its path empty, leaving the image root, missing; its label or split
    unknown; listed before at row LISTED_AT), or None."""
    rel = str(r["path"]).strip()
    path = root / rel
    if not rel:
        return "empty path"
    if Path(rel).is_absolute() or ".." in Path(os.path.normpath(rel)).parts:
        return f"the path {rel!r} leaves the image root {root} (give it relative to --image-root)"
    if str(r["label"]).strip().upper() not in CLASSES:
        return f"unknown label {r['label']!r} ({' or '.join(CLASSES)})"
    if split not in SPLITS:
        return f"unknown split {r['split']!r} ({' | '.join(SPLITS)})"
    if listed_at is not None:
        return f"listed again (first at row {listed_at}); this row is ignored"
    problem = _name_problem(path)
    if problem is None:
        try:
            check_file_type(path)  # a regular file with a size problem is the pre-scan's to report
        except ImageError as e:
            problem = e.problem
    return problem


def read_manifest(m: Manifest, *, val_min_per_class: int = VAL_MIN_PER_CLASS, val_fraction: float = 0.1,
                  seed: int = 0, only: str | None = None) -> XRayData:
    """The splits a CSV manifest lists. Bad rows (missing file, unknown label or split, a path listed twice) are
    dropped and listed like unreadable files, one line each; a patient in two given splits is a pre-scan finding
    (--strict refuses). Without a split column, a patient-grouped test split (MANIFEST_TEST_FRACTION, seed 0, the
    same for every run) and the val split (the run's seed) are built, as for a folder without val/.
    ONLY: the one split an evaluation reads (a cohort's manifest may list test rows alone: no train rows needed).
    A row whose path leaves the image root (an absolute path, or '..') is refused, named by its row."""
    import pandas as pd

    csv, root = Path(m.csv), Path(m.image_root)
    if not csv.is_file():
        raise DataError(f"{csv}: manifest not found")
    if not root.is_dir():
        raise DataError(f"{root}: image root folder not found (for {csv.name})")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{csv}: not a readable CSV ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{csv}: missing column(s) {', '.join(missing)} (need path,label,patient[,split]; "
                        f"found {','.join(df.columns) or 'none'})")
    if df.empty:
        raise DataError(f"{csv}: no rows")
    has_split = "split" in df.columns
    splits: dict[str, list[Sample]] = {}
    bad: list[ImageError] = []
    first_row: dict[Path, int] = {}
    for i, row in enumerate(df.itertuples(index=False), start=2):  # row numbers as a spreadsheet shows them
        r = row._asdict()
        path = root / str(r["path"]).strip()
        split = str(r["split"]).strip().lower() if has_split else "train"
        problem = _row_problem(r, root, split, first_row.get(path))
        if problem:
            bad.append(ImageError(path, f"row {i} of {csv.name}: {problem}"))
            continue
        first_row[path] = i
        patient = str(r["patient"]).strip() or patient_id(path)
        label = CLASSES.index(str(r["label"]).strip().upper())
        splits.setdefault(split, []).append(Sample(path, label, patient, split))
    notes = [f"manifest {csv.name}: {len(df)} rows, {len(df) - len(bad)} used, {len(bad)} skipped"]
    if only is not None and has_split:  # an evaluation: that split's rows, whatever else the manifest lists
        if not splits.get(only):
            raise DataError(f"{csv}: no usable {only!r} rows ({len(bad)} row(s) skipped"
                            f"{f', first: {bad[0]}' if bad else ''})")
        return _finish(root, {only: splits[only]}, notes, bad, why=f"{csv.name} gives their films different splits")
    if not has_split:
        pool = splits.pop("train", [])
        if not pool:
            raise DataError(f"{csv}: no usable rows ({len(bad)} skipped, first: {bad[0] if bad else 'none'})")
        rest, test = grouped_split(pool, MANIFEST_TEST_FRACTION, 0)
        splits = {"train": rest, "test": [Sample(s.path, s.label, s.patient, "test") for s in test]}
        notes.append(f"no split column: test = {MANIFEST_TEST_FRACTION:.0%} of each class's patients "
                     f"({len(test)} images, seed 0, the same for every run)")
    if "train" not in splits:
        raise DataError(f"{csv}: no usable 'train' rows ({len(bad)} row(s) skipped"
                        f"{f', first: {bad[0]}' if bad else ''})")
    for split, samples in splits.items():
        lacking = [c for k, c in enumerate(CLASSES) if not any(s.label == k for s in samples)]
        if lacking and split != "val":
            raise DataError(f"{csv}: the {split} split has no usable {lacking[0]} rows")
    _ensure_val(splits, notes, val_min_per_class, val_fraction, seed)
    return _finish(root, splits, notes, bad, why=f"{csv.name} gives their films different splits")


DATA_ENV = "PNEUMOLIB_DATA_DIR"


def resolve_data_dir(data_dir: "str | Path | Manifest | None" = None) -> "tuple[Path | Manifest, bool]":
    """(source, is_fixture): the given folder or manifest, else $PNEUMOLIB_DATA_DIR, else the bundled fixture."""
    chosen = data_dir or os.environ.get(DATA_ENV) or None
    if chosen in (None, "", "fixture"):
        return fixture_dir(), True
    source = as_source(chosen)
    if isinstance(source, Manifest):
        return source, False
    path = source.resolve()
    return path, path == fixture_dir().resolve()


def discover_split(root: "str | Path | Manifest", split: str = "test") -> XRayData:
    """Just one split, for evaluation: ROOT/<split>/{NORMAL,PNEUMONIA}, or ROOT/{NORMAL,PNEUMONIA} itself (an
    external cohort often comes as a bare pair of class folders); no train/ folder needed. A manifest: its rows of
    that split (without a split column, the split read_manifest builds, so 'test' is never a training film)."""
    root = as_source(root)
    if isinstance(root, Manifest):
        data = read_manifest(root, only=split)
        return XRayData(data.root, {split: data[split]}, data.notes, data.bad_files, cache=data.cache)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if (root / split).is_dir():
        samples, n_ignored, refused = _scan_split(root, split)
        notes = []
    elif all((root / c).is_dir() for c in CLASSES):
        samples, n_ignored, refused = _scan_split(root.parent, root.name)
        samples = [Sample(x.path, x.label, x.patient, split) for x in samples]
        notes = [f"{root} holds the class folders directly: evaluated as the {split!r} split"]
    else:
        raise DataError(f"{root}: no {split}/ folder and no {'/'.join(CLASSES)} class folders "
                        f"(expected {root}/{split}/{{{','.join(CLASSES)}}} or {root}/{{{','.join(CLASSES)}}})")
    if n_ignored:
        notes.append(f"ignored {n_ignored} file(s) without an image suffix")
    return XRayData(root, {split: samples}, notes, refused)


_FAMILY = re.compile(r"^(.*?)(\d+)$")  # person123 -> ("person", 123); NORMAL2-IM-1427 -> ("NORMAL2-IM-", 1427)
HOLDOUTS = ("folders", "early_ids")


def patient_family(patient: str) -> tuple[str, int]:
    """(file-name family, patient number): ('person', 123), ('IM-', 115), ('NORMAL2-IM-', 1427); ('', -1) if none."""
    m = _FAMILY.match(patient)
    return (m.group(1), int(m.group(2))) if m else ("", -1)


def early_id_holdout(data: XRayData, fraction: float = 0.15) -> XRayData:
    """An acquisition-batch validation protocol: the earliest-numbered patients, `fraction` of the images of every
    file-name family (IM-, NORMAL2-IM-, person) becomes the test split; the rest keep their train/val
    folders, and the other test patients join train.

    Why: the data set's external cohort sits at the low end of every family's numbering (the training
    folders have no IM- below 0115, no NORMAL2-IM- below 0383, and gaps in person1-299), so the earliest
    patients left are the nearest thing to it in acquisition order. A random split mixes every batch
    into both sides and says almost nothing about a new one."""
    pooled = [s for split in SPLITS if split in data.splits for s in data.splits[split]]
    by_family: dict[str, list[str]] = {}  # family -> one entry per image, by patient
    for smp in pooled:
        by_family.setdefault(patient_family(smp.patient)[0], []).append(smp.patient)
    early: set[str] = set()
    for fam, patients in by_family.items():
        if not fam:
            continue  # unrecognised names carry no acquisition order
        # whole patients, earliest first, until `fraction` of the family's images are held out
        for i, p in enumerate(sorted(patients, key=lambda p: (patient_family(p)[1], p))):
            if i >= round(len(patients) * fraction):
                break
            early.add(p)
    splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for smp in pooled:
        new = "test" if smp.patient in early else ("val" if smp.split == "val" else "train")
        splits[new].append(Sample(smp.path, smp.label, smp.patient, new))
    if not all(any(x.label == i for x in splits["test"]) for i in range(len(CLASSES))):
        raise DataError(f"{data.root}: the early-ID holdout needs numbered file names of both classes "
                        "(person123_..., IM-0115-..., NORMAL2-IM-...)")
    note = (f"early-ID holdout: test = the earliest-numbered patients, {fraction:.0%} of each file-name family's images "
            f"({len(splits['test'])} images); the other test patients train")
    return XRayData(data.root, {k: splits[k] for k in SPLITS}, [*data.notes, note], data.bad_files, cache=data.cache,
                    holdout="early_ids")


def apply_holdout(data: XRayData, holdout: str) -> XRayData:
    """The splits a run trains and tests on: the folders as they are, or the early-ID holdout."""
    if holdout == "early_ids":
        return early_id_holdout(data)
    if holdout != "folders":
        raise ValueError(f"unknown holdout {holdout!r} ({' | '.join(HOLDOUTS)})")
    return data


def shared_patients(splits: dict[str, list[Sample]]) -> dict[str, list[str]]:
    """Patients found in more than one split -> the splits they appear in."""
    where: dict[str, set[str]] = {}
    for split, samples in splits.items():
        for s in samples:
            where.setdefault(s.patient, set()).add(split)
    return {p: sorted(v) for p, v in where.items() if len(v) > 1}


def patient_overlap(splits: dict[str, list[Sample]]) -> set[str]:
    return set(shared_patients(splits))


# --- decoding once ----------------------------------------------------------------------
logger = logging.getLogger(__name__)
CACHE_ENV = "PNEUMOLIB_CACHE_DIR"  # on-disk decode cache; "off" disables it
DISK_KEY = ".key"  # DISK_KEY-<uid> in the cache folder: the user's private key that seals each entry


def default_cache_dir() -> Path | None:
    env = os.environ.get(CACHE_ENV)
    if env and env.lower() == "off":
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pneumolib" / "decoded"


MEMORY_ENV = "PNEUMOLIB_CACHE_MEMORY"  # the in-memory cache's bound, e.g. 512M or 8G
DEFAULT_MEMORY_BYTES = 4 * 2**30  # 4 GiB: the Kaggle set at 224 px is about 0.26 GiB; CheXpert at 224 px about 11 GiB


def parse_bytes(text: str) -> int:
    """'512M', '8G', '1.5G', '1000000' -> bytes (K, M, G, T are powers of 1024)."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    try:
        n = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise ConfigError(f"{MEMORY_ENV}={text!r}: not a size (e.g. 512M, 8G)") from None
    if not math.isfinite(n):
        raise ConfigError(f"{MEMORY_ENV}={text!r}: not a finite size (e.g. 512M, 8G)")
    if n < 0:
        raise ConfigError(f"{MEMORY_ENV}={text!r}: a size cannot be negative")
    return int(n)


def default_memory_bytes() -> int:
    env = os.environ.get(MEMORY_ENV)
    return parse_bytes(env) if env else DEFAULT_MEMORY_BYTES


class DecodedCache:
    """Each file decoded once per view (size, and the lung crop if any), kept as uint8 in memory and, with
    `disk_dir`, on disk as one .npz per file and view, named by the file's content hash and the view, so a new process
    (a re-run notebook) does not decode again. Each entry carries the file's digest, the view and a seal (an HMAC
    with this user's private key): an entry that does not match its key, or that another user planted in a shared
    cache folder, is decoded again, never trusted. The disk cache is safe to delete at any time; an edited file has a new hash.
    A lung-cropped view also keeps each film's crop box (lungs.LungBox): where the crop came from, or why the
    whole film was kept. `segmenter`: the lung segmenter that draws the boxes (default: the shipped one, loaded
    when first needed).
    Memory is bounded (`memory_bytes`, default $PNEUMOLIB_CACHE_MEMORY or DEFAULT_MEMORY_BYTES): the least recently
    used images are dropped first, and come back from the disk cache when asked for again (boxes, a few hundred
    bytes each, are all kept). Several processes (ranks, DataLoader workers) may share one disk_dir: every file is
    written to a temp name and renamed into place, so a reader sees a whole file or none."""

    def __init__(self, disk_dir: str | Path | None = None, segmenter: LungSegmenter | None = None,
                 memory_bytes: int | None = None):
        self._store: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._boxes: dict[tuple, LungBox] = {}
        self._masks: dict[tuple, np.ndarray] = {}  # a cropped view's whole-film lung mask at lungs.SIZE, bit-packed
        self.memory_bytes = default_memory_bytes() if memory_bytes is None else int(memory_bytes)
        self.nbytes = 0  # held in memory now
        self.disk_dir = Path(disk_dir).expanduser() if disk_dir else None
        self._key_bytes: bytes | None = None
        self._digests: dict[tuple, str] = {}  # this cache's films' content digests (one entry per file it has seen)
        self._segmenter = segmenter
        self._lock = threading.Lock()

    def segmenter(self, view: View, path: Path) -> LungSegmenter:
        """The lung segmenter for a cropped view; refuses a view whose boxes another segmenter drew."""
        with self._lock:
            if self._segmenter is None:
                self._segmenter = shipped_segmenter()
        if view.segmenter and view.segmenter != self._segmenter.digest:
            raise CheckpointError(f"{path}: this model was trained on lung crops drawn by segmenter "
                                  f"{view.segmenter}; this cache's segmenter is {self._segmenter.digest} "
                                  f"(install the pneumolib version the model was trained with)")
        return self._segmenter

    def _disk_path(self, path: Path, view: View) -> tuple[Path, str]:
        """(where this file's decoded view is kept on disk, the file's content digest)."""
        digest = file_digest(path, self._digests)
        return self.disk_dir / view.tag / digest[:2] / f"{digest}.npz", digest

    def _secret(self) -> bytes | None:
        """This user's key for the disk cache's entries (DISK_KEY-<uid>, mode 0600, made on first use): an entry
        another user planted in a shared cache folder cannot carry a valid seal. None: no key can be had (no disk
        cache then)."""
        if self._key_bytes is None:
            f = self.disk_dir / f"{DISK_KEY}-{os.getuid() if hasattr(os, 'getuid') else 0}"
            try:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        out.write(os.urandom(32))
                except FileExistsError:
                    pass
                fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as src:
                    st = os.fstat(src.fileno())
                    key = src.read(64)
                if (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o077 or len(key) != 32:
                    return None  # not this user's private key: trust nothing signed with it
                self._key_bytes = key
            except OSError:
                return None
        return self._key_bytes

    def _seal(self, digest: str, view: View, arr: np.ndarray, box_json: str, packed: np.ndarray | None) -> str:
        import hmac
        mac = hmac.new(self._secret() or b"", digestmod="sha256")
        for part in (digest.encode(), view.tag.encode(), str(arr.shape).encode(), str(arr.dtype).encode(),
                     arr.tobytes(), box_json.encode(), b"" if packed is None else packed.tobytes()):
            mac.update(len(part).to_bytes(8, "little") + part)
        return mac.hexdigest()

    def _read_disk(self, path: Path, view: View) -> tuple[np.ndarray, LungBox | None, np.ndarray | None] | None:
        """What an earlier process decoded for this file and view (image, crop box, packed lung mask), or None. An
        entry is used only when it names this file's content digest and this view, has the view's shape, and
        carries this user's seal over all of it; any other entry (damaged, stale, planted) is decoded again."""
        if self.disk_dir is None or self._secret() is None:
            return None
        target, digest = self._disk_path(path, view)
        try:
            with np.load(target, allow_pickle=False) as z:
                arr, box_json, packed = z["image"], str(z["box"]), z["mask"] if "mask" in z.files else None
                meta = json.loads(str(z["meta"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as e:  # damaged: decode again
            logger.info("%s: not a decode-cache entry (%s); decoded again", target, e)
            return None
        ok = (isinstance(meta, dict) and meta.get("digest") == digest and meta.get("view") == view.tag
              and arr.shape == (view.size, view.size) and arr.dtype == np.uint8
              and (packed is None or (packed.dtype == np.uint8 and packed.size == (LUNG_SIZE * LUNG_SIZE + 7) // 8))
              and (view.crop == "none") == (box_json == ""))
        import hmac
        if not ok or not hmac.compare_digest(str(meta.get("seal", "")), self._seal(digest, view, arr, box_json, packed)):
            logger.warning("%s: a decode-cache entry that does not match its key (file %s, view %s); ignored and "
                           "decoded again", target, path, view.tag)
            return None
        try:
            box = LungBox(**json.loads(box_json)) if box_json else None
        except (ValueError, TypeError):
            return None
        return arr, box, packed

    def _keep(self, path: Path, view: View, key: tuple, arr: np.ndarray, box: LungBox | None,
              from_disk: bool = False, mask: np.ndarray | None = None, packed: np.ndarray | None = None
              ) -> np.ndarray:
        """Hold a decoded image (and its box and lung mask) in memory and, unless it came from there, on disk: one
        sealed entry per file and view (the image, its box and packed mask, the file's digest and the view)."""
        if packed is None and mask is not None:
            packed = np.packbits(np.asarray(mask, dtype=bool).ravel())
        if self.disk_dir is not None and not from_disk and self._secret() is not None:
            target, digest = self._disk_path(path, view)
            box_json = json.dumps(asdict(box)) if box is not None else ""
            meta = {"digest": digest, "view": view.tag, "seal": self._seal(digest, view, arr, box_json, packed)}

            def write(tmp):
                with open(tmp, "wb") as f:  # a handle, so numpy does not append a suffix to the temp name
                    np.savez(f, image=arr, box=np.array(box_json), meta=np.array(json.dumps(meta)),
                             **({"mask": packed} if packed is not None else {}))
            try:
                atomic_write(target, write)
            except (OSError, OutputError):  # a read-only or full disk, a planted link: only costs speed
                pass
        with self._lock:
            if box is not None:
                self._boxes[key] = box
            if packed is not None:
                self._masks[key] = packed
            old = self._store.pop(key, None)
            self.nbytes += arr.nbytes - (old.nbytes if old is not None else 0)
            self._store[key] = arr
            while self.nbytes > self.memory_bytes and self._store:  # least recently used first
                _, dropped = self._store.popitem(last=False)
                self.nbytes -= dropped.nbytes
        return arr

    def _lookup(self, path: Path, view: View) -> tuple[tuple, np.ndarray | None]:
        """(memory key, the image if memory or the disk cache has it, else None)."""
        key = self._key(path, view)
        with self._lock:
            arr = self._store.get(key)
            if arr is not None:
                self._store.move_to_end(key)
                return key, arr
        hit = self._read_disk(path, view)
        if hit is not None:
            arr, box, packed = hit
            return key, self._keep(path, view, key, arr, box, from_disk=True, packed=packed)
        return key, None

    def _decode_many(self, paths: list[Path], view: View) -> list[np.ndarray]:
        """Decode films not cached yet; lung boxes are predicted in batches (one film at a time is ~20x slower)."""
        if view.crop == "none":
            return [self._keep(p, view, self._key(p, view), load_resized(p, view.size), None) for p in paths]
        films = [np.asarray(load_image(p), dtype=np.uint8) for p in paths]
        seg = self.segmenter(view, paths[0])
        def image(film, box, mask):
            if view.crop == "lung_mask":
                return mask_film(film, box, mask, view.size, view.dilation)
            return crop_film(film, box, view.size)

        return [self._keep(p, view, self._key(p, view), image(film, box, mask), box, mask=mask)
                for p, film, (box, mask) in zip(paths, films, seg.lung_fields(films, view.margin))]

    @staticmethod
    def _key(path: Path, view: View) -> tuple:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ImageError(path, "no such file") from None
        return (str(path), view, st.st_mtime_ns, st.st_size)

    def _resolve(self, path: Path, view: int | View) -> View:
        """The view with the segmenter that draws its boxes named (so memory and disk are keyed by it)."""
        view = as_view(view)
        if view.crop != "none" and not view.segmenter:
            view = View(view.size, view.crop, view.margin, self.segmenter(view, path).digest, view.dilation)
        return view

    def get(self, path: str | Path, view: int | View) -> np.ndarray:
        """The file as the model's uint8 image for `view` (an int: the whole film squashed to that size)."""
        path = Path(path)
        view = self._resolve(path, view)
        _, arr = self._lookup(path, view)
        return arr if arr is not None else self._decode_many([path], view)[0]

    def box(self, path: str | Path, view: int | View) -> LungBox | None:
        """Where a cropped view's image came from on the film (None for a view without a crop)."""
        path = Path(path)
        view = self._resolve(path, view)
        if view.crop == "none":
            return None
        self.get(path, view)
        return self._boxes[self._key(path, view)]

    def lung_mask(self, path: str | Path, view: int | View) -> np.ndarray | None:
        """For a cropped view: the whole film's bool lung mask at lungs.SIZE x SIZE that drew its box (the box's
        problem is that mask's quality decision); None for a view without a crop. Grad-CAM's lung statistics and
        the shortcut audit read this mask, so they agree with the crop about every film."""
        path = Path(path)
        view = self._resolve(path, view)
        if view.crop == "none":
            return None
        self.get(path, view)
        key = self._key(path, view)
        packed = self._masks.get(key)
        if packed is None:  # an image decoded before masks were kept: segment the film again (same network, same size)
            film = np.asarray(load_image(path), dtype=np.uint8)
            box, mask = self.segmenter(view, path).lung_fields([film], view.margin)[0]
            packed = np.packbits(mask.ravel())
        with self._lock:
            self._masks[key] = packed
        return np.unpackbits(packed)[:LUNG_SIZE * LUNG_SIZE].reshape(LUNG_SIZE, LUNG_SIZE).astype(bool)

    def warm(self, paths: Iterable[Path], image_size: int | View, workers: int | None = None,
             progress: Callable | None = None) -> list[ImageError]:
        """Decode all paths, in parallel (PIL releases the GIL) and, for a lung crop, segmenting in batches; return
        the unreadable ones, never raise."""
        paths = [Path(p) for p in paths]
        if not paths:
            return []
        view = self._resolve(paths[0], image_size)

        def guarded(fn, p):
            try:
                fn(p)
                return None
            except ImageError as e:
                return e
            except OSError as e:
                return ImageError(p, str(e))

        workers = workers or min(8, (os.cpu_count() or 2) * 2)
        missing: list[Path] = []
        with ThreadPoolExecutor(workers) as pool:
            if view.crop == "none":  # decoding is all there is: one file per task
                # memory, not only the worker count, bounds what is decoded at once: films whose decode_cost is
                # over DECODE_BUDGET / workers are decoded one at a time on this thread (in parallel, each thread's
                # allocator would keep its own film's worth of memory), the others in parallel
                def cost(p):  # 0 for a film already decoded, or one the decode will refuse with its reason
                    try:
                        return 0 if self._lookup(p, view)[1] is not None else decode_cost(p)
                    except (ImageError, OSError):
                        return 0

                costs = list(pool.map(cost, paths))
                light = [p for p, c in zip(paths, costs) if c <= DECODE_BUDGET // workers]
                heavy = [p for p, c in zip(paths, costs) if c > DECODE_BUDGET // workers]
                it = itertools.chain(pool.map(lambda p: guarded(lambda q: self.get(q, view), p), light),
                                     (guarded(lambda q: self.get(q, view), p) for p in heavy))
                results = list(progress(it, total=len(paths)) if progress else it)
                return [e for e in results if e is not None]
            found = list(pool.map(lambda p: guarded(
                lambda q: self._lookup(q, view)[1] is not None or missing.append(q), p), paths))
            errors = [e for e in found if e is not None]
            missing.sort()  # threads append in any order; batches should not depend on it
            chunks = budget_chunks(missing)

            def chunk(ps):
                try:
                    self._decode_many(ps, view)
                    return []
                except (ImageError, OSError):  # find the unreadable ones one by one
                    return [e for e in (guarded(lambda q: self._decode_many([q], view), p) for p in ps) if e]

            it = map(chunk, chunks)  # the U-Net uses both cores already
            for errs in (progress(it, total=len(chunks)) if progress else it):
                errors += errs
        return errors

    @classmethod
    def from_environment(cls, segmenter: LungSegmenter | None = None) -> "DecodedCache":
        """A new cache with the environment's settings: the disk folder $PNEUMOLIB_CACHE_DIR (default
        ~/.cache/pneumolib/decoded; "off": none) and the memory bound $PNEUMOLIB_CACHE_MEMORY."""
        return cls(default_cache_dir(), segmenter)

    def __len__(self) -> int:
        return len(self._store)


DECODE_BUDGET = 1 * 2**30  # bytes that decoding in parallel may hold at once (decode_cost of each film in flight)


def budget_chunks(paths: list[Path], total: int = DECODE_BUDGET, most: int = 64) -> list[list[Path]]:
    """PATHS in order, in chunks of at most MOST films whose decode_cost adds up to at most TOTAL (a film over it
    alone): segmenting a chunk holds all its films at their own size."""
    chunks: list[list[Path]] = []
    size = 0
    for p in paths:
        c = decode_cost(p)
        if not chunks or len(chunks[-1]) >= most or (chunks[-1] and size + c > total):
            chunks.append([])
            size = 0
        chunks[-1].append(p)
        size += c
    return chunks


def ensure_cache(cache: DecodedCache | None) -> DecodedCache:
    """The caller's cache, else a new one for this call only (the disk cache still spares the decoding): there is no
    process-wide cache. Whoever holds the data (XRayData.cache) or the model (Predictor.cache) holds its cache."""
    return DecodedCache.from_environment() if cache is None else cache


def file_digest(path: Path, memo: dict[tuple, str] | None = None) -> str:
    """SHA-1 of the file's bytes, read in 1 MB chunks after check_readable (a FIFO, device, folder or oversized file
    is refused before a byte is read); kept in MEMO (the caller's, e.g. a DecodedCache's) by path, size and
    modification time."""
    st = check_readable(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if memo is None or key not in memo:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(2**20), b""):
                h.update(chunk)
        if memo is None:
            return h.hexdigest()
        memo[key] = h.hexdigest()
    return memo[key]


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
        rows.append(("patients in two or more splits", len(self.shared_patients),
                     f"{first[0]}: {', '.join(first[1])}" if first else ""))
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


def prescan(data: XRayData, image_size: int | View, strict: bool = False, cache: DecodedCache | None = None,
            progress: Callable | None = None) -> XRayData:
    """Decode every file once and check the folder's hygiene (unreadable files, identical files within and
    across splits and classes, patients in two splits). Unreadable files are dropped and reported by path;
    strict mode refuses to start on any finding. CACHE (default: the data's own) keeps the decoded films; the
    returned data holds it."""
    cache = data.cache if cache is None else cache
    every = [s.path for samples in data.splits.values() for s in samples]
    bad = cache.warm(every, image_size, progress=progress)
    hygiene = check_hygiene(data, list(data.bad_files) + bad)  # a manifest's bad rows are findings too
    if strict and hygiene.n_problems:
        first = str(hygiene.unreadable[0]) if hygiene.unreadable else data.root
        raise DataError(f"{first}: strict mode refuses to start ({len(hygiene.unreadable)} unreadable, {len(hygiene.duplicates)} "
                        f"duplicate group(s), {len(hygiene.shared_patients)} patient(s) in two splits)")
    bad_paths = {e.path for e in bad}
    splits = {k: [s for s in v if s.path not in bad_paths] for k, v in data.splits.items()}
    for k, v in splits.items():
        for i, c in enumerate(CLASSES):
            if not any(s.label == i for s in v):
                raise DataError(f"{data.root}/{k}/{c}: no readable images left after the pre-scan")
    notes = list(data.notes) + crop_notes(splits, image_size, cache)
    return XRayData(data.root, splits, notes, list(data.bad_files) + bad, hygiene, data.holdout, cache)


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
            out.append(f"lung crop: lungs not found on {len(missed)} of {len(samples)} {split} films, kept whole "
                       f"(first: {s.path.name}: {b.problem})")
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


def prepare(root: str | Path, *, seed: int, holdout: str = "folders", image_size: int | View, strict: bool = False,
            cache: "DecodedCache | None" = None, logger=None) -> XRayData:
    """The one way a run's data is made ready: discover the folder (val split seeded), apply the holdout,
    pre-scan (decode once, hygiene; unreadable files dropped and listed), log what the pre-scan found."""
    data = apply_holdout(discover(root, seed=seed), holdout)
    data = prescan(data, image_size, strict=strict, cache=cache)
    if logger is not None:
        data.log_findings(logger)
    return data


class XRayDataset(torch.utils.data.Dataset):
    """Samples -> (model input, label, index); a label-free `transform` (a stress-test shift), then the preprocessing.

    With image_size and no preprocessing, items are the decoded uint8 1xHxW images themselves: training augments
    and preprocesses whole batches on the training device (augment.BatchAugment), so the loader only serves bytes."""

    def __init__(self, samples: list[Sample], preprocessing=None, transform: Callable | None = None,
                 cache: DecodedCache | None = None, image_size: int | View | None = None):
        self.samples, self.pre, self.transform = list(samples), preprocessing, transform
        self.cache = ensure_cache(cache)
        self.image_size = image_size or preprocessing.view  # the decode view (size and crop)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        x = torch.from_numpy(self.cache.get(s.path, self.image_size)).unsqueeze(0)
        if self.transform is not None:
            x = self.transform(x)
        return (self.pre(x) if self.pre is not None else x), s.label, i


def subsample(samples: list[Sample], n: int | None, seed: int) -> list[Sample]:
    """A seeded subsample of n, keeping the class mix (for CPU-sized epochs)."""
    if n is None or n >= len(samples):
        return list(samples)
    rng = np.random.default_rng(seed)
    out = []
    for label in range(len(CLASSES)):
        group = [s for s in samples if s.label == label]
        k = round(n * len(group) / len(samples))
        out += [group[j] for j in sorted(rng.choice(len(group), size=k, replace=False))]
    return out

