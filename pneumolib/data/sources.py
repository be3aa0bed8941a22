"""Data sources: a Kaggle-layout folder, a CSV manifest, or the bundled fixture, read into one `XRayData`.

Each kind of source is one `Source` class registered in SOURCES by name: how a value names it (`parse`: a command
line's --data-dir, a metrics.json's data_dir), how it is named back (`describe`), where it is (`resolve`), and how it
is read (`discover`: every split; `discover_split`: the one an evaluation reads). A new kind of source is one class
here; `discover`, `discover_split`, `as_source` and `resolve_data_dir` ask the source, never its type."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import CLASSES
from ..core.io import DataError
from ..core.registry import Registry
from ..data.fixture import fixture_dir
from ..data.imaging import (
    IMAGE_SUFFIXES,
    ImageError,
    check_file_type,
)
from ..data.samples import IGNORED_NAMES, SPLITS, Sample, XRayData, patient_id
from ..data.splits import VAL_MIN_PER_CLASS, ensure_val, grouped_split, shared_patients


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


def _finish(
    root: Path,
    splits: dict[str, list[Sample]],
    notes: list[str],
    bad: list | None = None,
    why: str = "the Kaggle download's person numbering restarts per folder",
) -> XRayData:
    if "test" not in splits:
        notes.append("no test/ split: evaluation on 'test' is unavailable")
    splits = {s: splits[s] for s in SPLITS if s in splits}
    overlap = shared_patients(splits)
    if overlap:
        first = sorted(overlap)[0]
        notes.append(
            f"{len(overlap)} patient id(s) appear in more than one of the splits, e.g. {first} in "
            f"{' and '.join(overlap[first])} ({why}; --strict refuses)"
        )
    return XRayData(root, splits, notes, list(bad or []))


# --- the sources ---------------------------------------------------------------------------------------------------
SOURCES = Registry("data source")  # name -> Source class; `source_for` asks each one's parse, a folder last


class Source:
    """A data source, one class per kind, registered in SOURCES under the kind's name."""

    @classmethod
    def parse(cls, value) -> "Source | None":
        """The source VALUE names, if it names one of this kind (a Source of this kind is itself), else None."""
        return value if isinstance(value, cls) else None

    def location(self) -> "Path | Manifest":
        """Where it is, as callers pass it on: a folder's path, or the manifest."""
        raise NotImplementedError

    def resolve(self) -> "tuple[Path | Manifest, bool]":
        """(the location made absolute, whether it is the bundled fixture)."""
        raise NotImplementedError

    def describe(self) -> str:
        """How a record names it (and `parse` reads back): the absolute folder, or 'FILE.csv::ROOT'."""
        return str(self.resolve()[0])

    def named_after(self) -> Path:
        """The path a cohort read from it is named after (studies.card_records.cohort_name)."""
        raise NotImplementedError

    def discover(self, *, val_min_per_class: int, val_fraction: float, seed: int) -> XRayData:
        """Every split, a val split built where the source has none usable (see `discover`)."""
        raise NotImplementedError

    def discover_split(self, split: str) -> XRayData:
        """Just SPLIT, for evaluation (see `discover_split`)."""
        raise NotImplementedError


@SOURCES.register("folder")
@dataclass(frozen=True)
class Folder(Source):
    """A folder in the Kaggle layout, ROOT/{train,val,test}/{NORMAL,PNEUMONIA} (for evaluation, also a bare pair of
    class folders)."""

    path: Path

    @classmethod
    def parse(cls, value) -> "Folder | None":
        """Any path names a folder (the fallback: tried after every other kind)."""
        return value if isinstance(value, Source) else cls(Path(str(value)).expanduser())

    def location(self) -> Path:
        return self.path

    def resolve(self) -> tuple[Path, bool]:
        path = self.path.resolve()
        return path, path == fixture_dir().resolve()

    def named_after(self) -> Path:
        return self.path

    def discover(self, *, val_min_per_class: int, val_fraction: float, seed: int) -> XRayData:
        root = self.path
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
        ensure_val(splits, notes, val_min_per_class, val_fraction, seed)
        return _finish(root, splits, notes, refused)

    def discover_split(self, split: str) -> XRayData:
        root = self.path
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
            raise DataError(
                f"{root}: no {split}/ folder and no {'/'.join(CLASSES)} class folders "
                f"(expected {root}/{split}/{{{','.join(CLASSES)}}} or {root}/{{{','.join(CLASSES)}}})"
            )
        if n_ignored:
            notes.append(f"ignored {n_ignored} file(s) without an image suffix")
        return XRayData(root, {split: samples}, notes, refused)


FIXTURE_NAMES = (None, "", "fixture")  # where a default source applies: nothing given, or the fixture by name


@SOURCES.register("fixture")
@dataclass(frozen=True)
class Fixture(Folder):
    """The synthetic fixture shipped in the package (pneumolib.data.fixture): the default source, named 'fixture'
    in records."""

    path: Path = field(default_factory=fixture_dir)

    @classmethod
    def parse(cls, value) -> "Fixture | None":
        """No path names it here ('fixture' may be a folder of that name): nothing or 'fixture' names it only where a
        default applies (`default_source`: resolve_data_dir, a recorded data_dir)."""
        return value if isinstance(value, cls) else None

    def resolve(self) -> tuple[Path, bool]:
        return self.path, True

    def describe(self) -> str:
        return "fixture"


# --- CSV manifests (RSNA, NIH, CheXpert, MIMIC come as a folder of images plus a table) ---------------------------
MANIFEST_COLUMNS = ("path", "label", "patient")


SOURCE_SEP = "::"  # "manifest.csv::image_root", how a manifest is named in metrics.json and --data-dir


MANIFEST_TEST_FRACTION = 0.15  # without a split column: this share of patients is the test split (always seed 0)


@SOURCES.register("manifest")
@dataclass(frozen=True)
class Manifest(Source):
    """A CSV with columns path,label,patient[,split] (labels NORMAL/PNEUMONIA; split train/val/test) and the folder
    its relative paths start from."""

    csv: Path
    image_root: Path

    @classmethod
    def at(cls, csv: str | Path, image_root: str | Path | None = None) -> "Manifest":
        """The manifest CSV with its image root (default: the CSV's folder), both made absolute (--data-csv and
        --image-root)."""
        return cls(Path(csv).expanduser().resolve(), Path(image_root or Path(csv).parent).expanduser().resolve())

    @classmethod
    def parse(cls, value) -> "Manifest | None":
        """A Manifest, or 'FILE.csv::ROOT' (how metrics.json and --data-dir name one)."""
        if isinstance(value, cls):
            return value
        text = str(value)
        if SOURCE_SEP in text and text.split(SOURCE_SEP)[0].lower().endswith(".csv"):
            csv, root = text.split(SOURCE_SEP, 1)
            return cls(Path(csv).expanduser().resolve(), Path(root).expanduser().resolve())
        return None

    def __str__(self) -> str:
        return f"{self.csv}{SOURCE_SEP}{self.image_root}"

    @property
    def name(self) -> str:
        return self.csv.name

    def location(self) -> "Manifest":
        return self

    def resolve(self) -> "tuple[Manifest, bool]":
        return self, False

    def describe(self) -> str:
        return str(self)

    def named_after(self) -> Path:
        return self.csv.with_suffix("")

    def discover(self, *, val_min_per_class: int, val_fraction: float, seed: int) -> XRayData:
        return read_manifest(self, val_min_per_class=val_min_per_class, val_fraction=val_fraction, seed=seed)

    def discover_split(self, split: str) -> XRayData:
        data = read_manifest(self, only=split)
        return XRayData(data.root, {split: data[split]}, data.notes, data.bad_files, resources=data.resources)


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


def _read_csv(csv: Path):
    """The manifest as a DataFrame of strings, its column names stripped and lower-cased; DataError when it cannot be
    read, lacks a column, or has no rows."""
    import pandas as pd

    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(
            f"{csv}: not a readable CSV ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{csv}: missing column(s) {', '.join(missing)} (need path,label,patient[,split]; "
            f"found {','.join(df.columns) or 'none'})"
        )
    if df.empty:
        raise DataError(f"{csv}: no rows")
    return df


def _manifest_rows(df, csv: Path, root: Path, has_split: bool) -> tuple[dict[str, list[Sample]], list[ImageError]]:
    """The usable rows as samples per split (all 'train' without a split column), and the refused ones."""
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
    return splits, bad


def _first_bad(bad: list[ImageError]) -> str:
    return f", first: {bad[0]}" if bad else ""


def _held_out_test(csv: Path, splits: dict[str, list[Sample]], bad: list, notes: list[str]) -> dict:
    """Without a split column: a patient-grouped test split of the pooled rows (MANIFEST_TEST_FRACTION, seed 0)."""
    pool = splits.pop("train", [])
    if not pool:
        raise DataError(f"{csv}: no usable rows ({len(bad)} skipped, first: {bad[0] if bad else 'none'})")
    rest, test = grouped_split(pool, MANIFEST_TEST_FRACTION, 0)
    notes.append(
        f"no split column: test = {MANIFEST_TEST_FRACTION:.0%} of each class's patients "
        f"({len(test)} images, seed 0, the same for every run)"
    )
    return {"train": rest, "test": [Sample(s.path, s.label, s.patient, "test") for s in test]}


def read_manifest(
    m: Manifest,
    *,
    val_min_per_class: int = VAL_MIN_PER_CLASS,
    val_fraction: float = 0.1,
    seed: int = 0,
    only: str | None = None,
) -> XRayData:
    """The splits a CSV manifest lists. Bad rows (missing file, unknown label or split, a path listed twice) are
    dropped and listed like unreadable files, one line each; a patient in two given splits is a pre-scan finding
    (--strict refuses). Without a split column, a patient-grouped test split (MANIFEST_TEST_FRACTION, seed 0, the
    same for every run) and the val split (the run's seed) are built, as for a folder without val/.
    ONLY: the one split an evaluation reads (a cohort's manifest may list test rows alone: no train rows needed).
    A row whose path leaves the image root (an absolute path, or '..') is refused, named by its row."""
    csv, root = Path(m.csv), Path(m.image_root)
    if not csv.is_file():
        raise DataError(f"{csv}: manifest not found")
    if not root.is_dir():
        raise DataError(f"{root}: image root folder not found (for {csv.name})")
    df = _read_csv(csv)
    has_split = "split" in df.columns
    splits, bad = _manifest_rows(df, csv, root, has_split)
    notes = [f"manifest {csv.name}: {len(df)} rows, {len(df) - len(bad)} used, {len(bad)} skipped"]
    why = f"{csv.name} gives their films different splits"
    if only is not None and has_split:  # an evaluation: that split's rows, whatever else the manifest lists
        if not splits.get(only):
            raise DataError(f"{csv}: no usable {only!r} rows ({len(bad)} row(s) skipped{_first_bad(bad)})")
        return _finish(root, {only: splits[only]}, notes, bad, why=why)
    if not has_split:
        splits = _held_out_test(csv, splits, bad, notes)
    if "train" not in splits:
        raise DataError(f"{csv}: no usable 'train' rows ({len(bad)} row(s) skipped{_first_bad(bad)})")
    for split, samples in splits.items():
        lacking = [c for k, c in enumerate(CLASSES) if not any(s.label == k for s in samples)]
        if lacking and split != "val":
            raise DataError(f"{csv}: the {split} split has no usable {lacking[0]} rows")
    ensure_val(splits, notes, val_min_per_class, val_fraction, seed)
    return _finish(root, splits, notes, bad, why=why)


# --- what callers use: each asks the source ---------------------------------------------------------------------
def source_for(value: "str | Path | Source") -> Source:
    """The Source a value names (a command line's --data-dir, a metrics.json's data_dir): a Source itself; else the
    first registered kind whose `parse` accepts it ('FILE.csv::ROOT': a manifest); else a folder."""
    for kind in SOURCES.values():
        if kind is not Folder and (source := kind.parse(value)) is not None:
            return source
    return Folder.parse(value)


def as_source(value: "str | Path | Source") -> "Path | Manifest":
    """A data source as given on the command line or recorded in metrics.json: a folder, or 'FILE.csv::ROOT'."""
    return source_for(value).location()


def discover(
    root: "str | Path | Source",
    *,
    val_min_per_class: int = VAL_MIN_PER_CLASS,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> XRayData:
    """Read ROOT/{train,val,test}/{NORMAL,PNEUMONIA} (or a CSV Manifest: read_manifest); when val/ is missing or
    tiny, pool it with train and build a patient-grouped, class-stratified val split from the pool (so one patient
    can never sit on both sides)."""
    return source_for(root).discover(val_min_per_class=val_min_per_class, val_fraction=val_fraction, seed=seed)


DATA_ENV = "PNEUMOLIB_DATA_DIR"


def default_source(data_dir: "str | Path | Source | None" = None) -> Source:
    """The given source, else $PNEUMOLIB_DATA_DIR's, else the bundled fixture ('fixture' names it too)."""
    chosen = data_dir or os.environ.get(DATA_ENV) or None
    return Fixture() if chosen in FIXTURE_NAMES else source_for(chosen)


def resolve_data_dir(data_dir: "str | Path | Source | None" = None) -> "tuple[Path | Manifest, bool]":
    """(source, is_fixture): the given folder or manifest, else $PNEUMOLIB_DATA_DIR, else the bundled fixture."""
    return default_source(data_dir).resolve()


def discover_split(root: "str | Path | Source", split: str = "test") -> XRayData:
    """Just one split, for evaluation: ROOT/<split>/{NORMAL,PNEUMONIA}, or ROOT/{NORMAL,PNEUMONIA} itself (an
    external cohort often comes as a bare pair of class folders); no train/ folder needed. A manifest: its rows of
    that split (without a split column, the split read_manifest builds, so 'test' is never a training film)."""
    return source_for(root).discover_split(split)
