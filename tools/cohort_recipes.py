"""Write docs/external_cohort/recipes.json: the training config of each recipe the external cohort's record measured,
read from git history (the config module at the record's commit, its REGISTRY entry at the record's profile and
seed), so a verdict can tell whether a run is the recipe a measurement was made of; with each measurement's NORMAL
recall, plain and under each recorded `--adapt` mode. Re-run after the record gains an entry:
    python tools/cohort_recipes.py
"""

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "external_cohort" / "measurements.json"
OUT = RECORD.with_name("recipes.json")
N_NORMAL = 234  # the record's cohort description: 624 films, 234 NORMAL, 390 PNEUMONIA
# where the config module lived: pneumolib/config.py until the package's layers (core/ from December 2026)
CONFIG_PATHS = ("pneumolib/config.py", "pneumolib/core/config.py")


def config_source(commit: str) -> str:
    """The path of the config module at COMMIT."""
    tree = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", commit, "pneumolib"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    found = [p for p in CONFIG_PATHS if p in tree]
    if not found:
        raise SystemExit(f"no config module ({', '.join(CONFIG_PATHS)}) at {commit}")
    return found[0]


def config_at(commit: str, name: str, profile: str, seed: int) -> dict:
    """The config that `train NAME --profile PROFILE --seed SEED` trained at COMMIT, as that commit's code wrote it
    (fields added since, such as `members`, are absent: they did not exist then)."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{config_source(commit)}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"config_{commit}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(f"config_{commit}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
        spec.loader.exec_module(mod)
        return asdict(replace(mod.apply_profile(mod.REGISTRY[name], profile), seed=seed))


def trained_entry(m: dict) -> str | None:
    """The package's experiment a measurement trained (`... pneumolib train NAME ...` in its command); None for a
    prototype made outside the package (it says 'what' it did instead)."""
    found = re.search(r"pneumolib train (\S+)", m.get("command", ""))
    return found.group(1) if found and "what" not in m else None


def recipe(m: dict) -> dict:
    """One measurement's recipes.json entry."""
    name = trained_entry(m)
    adapted = m.get("cohort_adapted") or {}
    out = {
        "commit": m["commit"],
        "experiment": m["experiment"],
        "seed": m["seed"],
        "config": config_at(m["commit"], name, m["profile"], m["seed"]) if name else None,
        "config_source": (
            f"git show {m['commit']}:{config_source(m['commit'])}: apply_profile(REGISTRY[{name!r}], "
            f"{m['profile']!r}), seed {m['seed']}"
            if name
            else "none: a prototype outside the package, no config of the package's to match"
        ),
        "cohort_specificity": m["cohort"]["specificity"],
        "cohort_adapted_specificity": {mode: a["specificity"] for mode, a in adapted.items()},
        "n_normal": N_NORMAL,
    }
    notes = {mode: a["note"] for mode, a in adapted.items() if a.get("note")}  # the record's words
    if notes:
        out["cohort_adapted_notes"] = notes
    return out


def main() -> None:
    record = json.loads(RECORD.read_text())
    recipes = [recipe(m) for m in record["measurements"]]  # one per measurement, in the record's order
    OUT.write_text(
        json.dumps(
            {
                "derived_by": "tools/cohort_recipes.py from this repository's git history (not part of the record)",
                "recipes": recipes,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {OUT} ({len(recipes)} recipes)")


if __name__ == "__main__":
    main()
