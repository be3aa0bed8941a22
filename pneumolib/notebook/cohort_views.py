"""The external cohort's record as the notebooks show it: every measurement, plain and adapted, and the newest entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..notebook.display import show

RECORD = Path(__file__).resolve().parents[2] / "docs" / "external_cohort"  # the repository's copy of the record
ADAPT_ORDER = ("bn", "both", "prior")  # the `--adapt` modes, in the order the tables show them (others after)


def cohort_recipes() -> list[dict]:
    """docs/external_cohort/recipes.json: the training config of each recorded measurement (from git history)."""
    path = RECORD / "recipes.json"
    return json.loads(path.read_text())["recipes"] if path.is_file() else []


def cohort_measurements() -> list[dict] | None:
    """docs/external_cohort/measurements.json's measurements; None in an installed package without the docs/."""
    path = RECORD / "measurements.json"
    return json.loads(path.read_text())["measurements"] if path.is_file() else None


def _three(x: dict[str, Any]) -> str:
    """A recorded result as 'accuracy / PNEUMONIA recall / NORMAL recall', three decimals."""
    return f"{x['accuracy']:.3f} / {x['sensitivity']:.3f} / {x['specificity']:.3f}"


def adapt_modes(measurements: list[dict]) -> list[str]:
    """Every `--adapt` mode the record measured, bn, both and prior first."""
    seen = dict.fromkeys(mode for m in measurements for mode in m.get("cohort_adapted") or {})
    return [m for m in ADAPT_ORDER if m in seen] + [m for m in seen if m not in ADAPT_ORDER]


def _row(m: dict[str, Any], modes: list[str]) -> dict[str, Any]:
    """One measurement as a table row: which run, its unadapted figures, each adapted result and the record's notes."""
    c, adapted = m["cohort"], m.get("cohort_adapted") or {}
    row = {
        "date": m.get("date", ""),
        "commit": m["commit"],
        "recipe": m["experiment"],
        "budget": m.get("profile", ""),
        "seed": m["seed"],
        "cohort accuracy": c["accuracy"],
        "PNEUMONIA recall": c["sensitivity"],
        "NORMAL recall": c["specificity"],
        "AUC": c["auc"],
        "internal NORMAL recall": m["internal_test"]["specificity"],
    }
    row.update({f"--adapt {mode}": _three(adapted[mode]) if mode in adapted else "" for mode in modes})
    row["the record's note"] = "; ".join(f"{mode}: {a['note']}" for mode, a in adapted.items() if a.get("note"))
    return row


def cohort_record() -> pd.DataFrame:
    """The external cohort's recorded measurements (docs/external_cohort, a copy of the record kept by whoever holds
    the cohort), unadapted and under each recorded `--adapt` mode side by side: not reproducible from this
    repository; shown, never tuned on."""
    measurements = cohort_measurements()
    if measurements is None:  # an installed package without the repository's docs/
        print("the external cohort's record is in the repository's docs/external_cohort/ (not installed)")
        return pd.DataFrame()
    modes = adapt_modes(measurements)
    print("recorded by whoever holds the external cohort (624 films); not reproducible from this repository")
    df = pd.DataFrame([_row(m, modes) for m in measurements])
    which = ["date", "commit", "recipe", "budget", "seed"]
    adapted = [f"--adapt {mode}" for mode in modes] + ["the record's note"]
    df.attrs["column_groups"] = {
        "which run": which,
        "on the cohort without adaptation, and the run's internal NORMAL recall": ["recipe", "seed"]
        + [c for c in df.columns if c not in which and c not in adapted],
        "on the cohort with label-free adaptation (`--adapt`): accuracy / PNEUMONIA recall / NORMAL recall": [
            "recipe",
            "seed",
        ]
        + adapted,
    }
    show(df)
    return df


def cohort_newest() -> dict[str, Any] | None:
    """The record's newest entry, field by field as recorded (each value as the record's JSON writes it), and its
    draws of sub-folders as a table; None without the record."""
    measurements = cohort_measurements()
    if not measurements:
        print("the external cohort's record is in the repository's docs/external_cohort/ (not installed)")
        return None
    m = measurements[-1]
    print(f"the record's newest entry (commit {m['commit']}, {m.get('date', '')}), as recorded:")
    draws = []
    for key, value in m.items():
        if isinstance(value, dict) and "draws" in value:
            draws = value["draws"]
            value = {k: v for k, v in value.items() if k != "draws"} | {"draws": f"{len(draws)} (the table below)"}
        print(f"- {key}: {json.dumps(value, ensure_ascii=False)}")
    if draws:
        print(
            "its draws of sub-folders (the record's names: sensitivity = PNEUMONIA recall, specificity = NORMAL recall):"
        )
        show(
            pd.DataFrame(
                [
                    {"films": d["n"], **{f"{c} films": k for c, k in d.get("n_per_class", {}).items()}}
                    | {f"{arm}: {k}": v for arm in ("plain", "bn") for k, v in d[arm].items()}
                    for d in draws
                ]
            )
        )
    return m


def cohort_claim(entry: str, profile: str, seeds: list[int]) -> list[dict[str, Any]]:
    """ENTRY's cohort claim as the record decides it before anything is trained: the recipe as the record last
    measured it (judged from the record alone, its adapted figures beside it), and the recipe this render trains
    (its training config at PROFILE and SEEDS, judged only by a measurement of that very config). Prints each row
    as a sentence and returns the judged rows."""
    from dataclasses import asdict, replace

    from ..core.config import apply_profile
    from ..studies import verdicts as V
    from ..studies.catalogue import get_config

    cfg = apply_profile(get_config(entry), profile)
    runs = [{"config": asdict(replace(cfg, seed=s))} for s in seeds]
    claims = [c for c in V.CLAIMS.get(entry, ()) if c.on_record or V.COHORT in c.needs]
    reference = V.cohort_reference(entry, cohort_recipes(), runs)
    rows = [V.judge(c, runs, reference) for c in claims]
    for r in rows:
        who = "the recipe as the record measured it" if r["on_record"] else f"the recipe this render trains ({profile})"
        print(f"- {who}, holds if {r['label'].rstrip(',')} {r['claimed']}: {r['verdict']}. {V.sentence(r)}")
    return rows
