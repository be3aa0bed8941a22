"""The docs' external-cohort table (docs/cohort.md) is the committed record, figure for figure (a number nobody can re-run
here must at least be copied right)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fmt(x):
    return f"{x['accuracy']:.3f} / {x['sensitivity']:.3f} / {x['specificity']:.3f} / {x['auc']:.3f}"


def test_every_recorded_cohort_measurement_is_in_the_docs_as_recorded():
    record = json.loads((ROOT / "docs" / "external_cohort" / "measurements.json").read_text())
    section = (ROOT / "docs" / "cohort.md").read_text()
    for m in record["measurements"]:
        row = next(
            (
                ln
                for ln in section.splitlines()
                if ln.startswith(f"| {m['commit']} | {m['experiment']}, seed {m['seed']} |")
            ),
            None,
        )
        assert row, f"no docs/cohort.md row for {m['commit']} {m['experiment']} seed {m['seed']}"
        assert _fmt(m["internal_test"]) in row and f"**{_fmt(m['cohort'])}**" in row, row
        both = (m.get("cohort_adapted") or {}).get("both")
        if both:
            assert _fmt(both) in row, row
        for mode in ("bn", "prior"):
            x = (m.get("cohort_adapted") or {}).get(mode)
            if x:
                assert f"{x['accuracy']:.3f} / {x['sensitivity']:.3f} / {x['specificity']:.3f}" in row, (mode, row)
