"""Write docs/external_cohort/recipes.json: the training config of each recipe the external cohort's record measured,
read from git history (git show COMMIT:pneumolib/config.py, its RECOMMENDED at the record's profile and seed), so a
verdict can tell whether a run is the recipe a measurement was made of. Re-run after the record gains an entry:
    python tools/cohort_recipes.py
"""

import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "external_cohort" / "measurements.json"
OUT = RECORD.with_name("recipes.json")
N_NORMAL = 234  # the record's cohort description: 624 films, 234 NORMAL, 390 PNEUMONIA


def config_at(commit: str, name: str, profile: str, seed: int) -> dict:
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:pneumolib/config.py"], check=True, capture_output=True, text=True
    ).stdout
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"config_{commit}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(f"config_{commit}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
        spec.loader.exec_module(mod)
        return asdict(replace(mod.apply_profile(mod.REGISTRY[name], profile), seed=seed))


def main() -> None:
    record = json.loads(RECORD.read_text())
    recipes = []  # one per measurement, in the record's order
    for m in record["measurements"]:
        packaged = m["experiment"] in ("recommended",) and "what" not in m
        recipes.append(
            {
                "commit": m["commit"],
                "experiment": m["experiment"],
                "seed": m["seed"],
                "config": config_at(m["commit"], m["experiment"], m["profile"], m["seed"])
                if packaged
                else None,  # a prototype outside the package: no config of the package's to match
                "cohort_specificity": m["cohort"]["specificity"],
                "n_normal": N_NORMAL,
            }
        )
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
