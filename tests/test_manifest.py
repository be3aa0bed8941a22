"""CSV manifests (path,label,patient[,split]) as a data source: splits, bad rows as one-line findings, the CLI."""

import csv
from pathlib import Path

import pytest

from pneumolib.data.dataset import (
    DataError,
    Manifest,
    as_source,
    discover,
    discover_split,
    fingerprint,
    prescan,
    read_manifest,
)


def _write(path: Path, rows: list[dict], columns=("path", "label", "patient", "split")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _rows(fixture_data, root: Path, with_split=True) -> list[dict]:
    """The fixture's films listed with paths relative to `root` (the fixture folder itself)."""
    return [
        {
            "path": s.path.relative_to(root).as_posix(),
            "label": s.class_name,
            "patient": s.patient,
            "split": s.split if with_split else "",
        }
        for split in ("train", "val", "test")
        for s in fixture_data[split]
    ]


@pytest.fixture
def manifest(fixture_data, tmp_path):
    root = fixture_data.root
    rows = _rows(fixture_data, root)
    first_test = next(r for r in rows if r["split"] == "test")
    bad = [
        {"path": "train/NORMAL/not-there.png", "label": "NORMAL", "patient": "p-missing", "split": "train"},
        {
            "path": rows[0]["path"].replace(".png", "-copy.png"),
            "label": "Pneumonia?",
            "patient": "p-x",
            "split": "train",
        },
        # a patient in two given splits: a test patient's id on a training film
        {**rows[1], "patient": first_test["patient"]},
    ]
    rows = [rows[0]] + [bad[2]] + rows[2:] + bad[:2]
    return Manifest(_write(tmp_path / "m.csv", rows), root), first_test["patient"]


def test_a_manifest_with_a_split_column_gives_its_splits_and_lists_each_bad_row_in_one_line(manifest, fixture_data):
    m, shared = manifest
    data = discover(m)
    assert {k: len(v) for k, v in data.splits.items()} == {k: len(v) for k, v in fixture_data.splits.items()}
    problems = sorted(str(e) for e in data.bad_files)
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert any("not-there.png: row" in p and "no such file" in p for p in problems)
    assert any("unknown label 'Pneumonia?'" in p for p in problems)
    assert any(shared in n and "more than one of the splits" in n for n in data.notes)
    scanned = prescan(data, 64)
    assert scanned.hygiene.shared_patients == {shared: ["test", "train"]}
    assert len(scanned.hygiene.unreadable) == 2  # the bad rows are pre-scan findings ...
    with pytest.raises(DataError, match="strict mode refuses"):  # ... which --strict refuses
        prescan(data, 64, strict=True)


def test_without_a_split_column_test_is_patient_grouped_and_the_same_for_every_seed(fixture_data, tmp_path):
    m = Manifest(
        _write(
            tmp_path / "m.csv",
            _rows(fixture_data, fixture_data.root, with_split=False),
            columns=("path", "label", "patient"),
        ),
        fixture_data.root,
    )
    a, b = read_manifest(m, seed=0), read_manifest(m, seed=7)
    assert [s.path for s in a["test"]] == [s.path for s in b["test"]]
    assert [s.path for s in a["val"]] != [s.path for s in b["val"]]  # val follows the run's seed, as for folders
    for d in (a, b):
        patients = {k: {s.patient for s in v} for k, v in d.splits.items()}
        assert not (patients["train"] & patients["test"]) and not (patients["val"] & patients["test"])
        assert not (patients["train"] & patients["val"])
        assert sum(map(len, d.splits.values())) == sum(map(len, fixture_data.splits.values()))
    # evaluation reads the same test split, never a training film
    assert [s.path for s in discover_split(m, "test")["test"]] == [s.path for s in a["test"]]


def test_a_manifest_is_named_by_one_string_that_reads_back(manifest):
    m, _ = manifest
    assert as_source(str(m)) == m
    assert fingerprint(discover(m)) == fingerprint(discover(as_source(str(m))))


@pytest.mark.parametrize(
    "text,match",
    [
        ("file,label,patient\na.png,NORMAL,p1\n", "missing column.s. path"),
        ("path,label,patient\n", "no rows"),
    ],
)
def test_a_manifest_without_the_columns_or_rows_is_refused_in_one_line(tmp_path, text, match):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        read_manifest(Manifest(tmp_path / "m.csv", tmp_path))


def test_cli_refuses_a_bad_manifest_in_one_line_and_evaluates_a_good_one(manifest, run_copy, tmp_path, cli):
    (tmp_path / "bad.csv").write_text("file,label\nx.png,NORMAL\n")
    r = cli("train", "baseline", "--out", tmp_path / "o", "--data-csv", tmp_path / "bad.csv")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"pneumolib: error: {tmp_path / 'bad.csv'}: missing column")
    m, _ = manifest
    r = cli(
        "evaluate",
        run_copy / "checkpoint.pt",
        "--data-csv",
        m.csv,
        "--image-root",
        m.image_root,
        "--json",
        tmp_path / "e.json",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "n = 24" in r.stdout  # the fixture's 24 test films, found through the manifest
    assert len(list((run_copy / "evaluations").glob("m-*.json"))) == 1  # recorded under the manifest's name
