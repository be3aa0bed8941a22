"""Splits by patient: grouped validation splits, the early-ID holdout, shared-patient checks, subsampling."""

from __future__ import annotations

import re

import numpy as np

from ..core.config import CLASSES, HOLDOUTS
from ..core.io import DataError
from ..data.samples import SPLITS, Sample, XRayData


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
        raise DataError(
            f"too few patients to build a validation split ({', '.join(short)} patient(s) across "
            f"train and val; need at least 2 per class): add images, or provide a val/ folder with "
            f"at least {VAL_MIN_PER_CLASS} images per class"
        )
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for i, patients in classes.items():
        k = min(len(patients) - 1, max(1, round(len(patients) * fraction)))
        held.update(patients[j] for j in rng.permutation(len(patients))[:k])
    return [s for s in samples if s.patient not in held], [s for s in samples if s.patient in held]


VAL_MIN_PER_CLASS = 10  # a val/ folder with fewer images of a class than this is pooled with train and re-split


def ensure_val(
    splits: dict[str, list[Sample]], notes: list[str], val_min_per_class: int, val_fraction: float, seed: int
) -> None:
    """When val is missing or tiny, pool it with train and split a patient-grouped, class-stratified val off."""
    val_counts = [sum(s.label == i for s in splits.get("val", [])) for i in range(len(CLASSES))]
    if min(val_counts) < val_min_per_class:
        why = "missing" if "val" not in splits else f"tiny ({sum(val_counts)} images)"
        pool = splits["train"] + splits.pop("val", [])
        train, val = grouped_split(pool, val_fraction, seed)
        splits["train"] = [Sample(s.path, s.label, s.patient, "train") for s in train]
        splits["val"] = [Sample(s.path, s.label, s.patient, "val") for s in val]
        notes.append(
            f"val/ {why}: pooled it with train/ and built a patient-grouped, class-stratified val split "
            f"({len(val)} images, {len({s.patient for s in val})} patients), seed {seed}"
        )


_FAMILY = re.compile(r"^(.*?)(\d+)$")  # person123 -> ("person", 123); NORMAL2-IM-1427 -> ("NORMAL2-IM-", 1427)


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
        raise DataError(
            f"{data.root}: the early-ID holdout needs numbered file names of both classes "
            "(person123_..., IM-0115-..., NORMAL2-IM-...)"
        )
    note = (
        f"early-ID holdout: test = the earliest-numbered patients, {fraction:.0%} of each file-name family's images "
        f"({len(splits['test'])} images); the other test patients train"
    )
    return XRayData(
        data.root,
        {k: splits[k] for k in SPLITS},
        [*data.notes, note],
        data.bad_files,
        resources=data.resources,
        holdout="early_ids",
    )


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
