"""The experiments one can run: what each ablation step and recipe candidate changes, and a series' run folders.

Light on purpose (core only, no torch): the 'experiments' command lists from here without importing a model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..core import config as C
from ..core.runs import entry_dir, seed_dir


def ablation_steps() -> dict[str, str]:
    """{step: what it adds to the step before} along notebook 10's ablation chain ('abl_per_image' is a side branch
    off 'abl_robust_aug': the chain goes on from the step before it)."""
    steps, prev = {}, C.BASELINE
    for cfg in C.ABLATIONS.values():
        base = C.ABLATIONS.get("abl_robust_aug", prev) if cfg.name == "abl_per_image" else prev
        steps[cfg.name] = C.format_diff(C.diff(base, cfg))
        prev = cfg if cfg.name != "abl_per_image" else prev
    return steps


def candidate_steps() -> dict[str, str]:
    """{recipe candidate: 'STEP + the diff'} from the ablation step nearest to it ('= STEP' when it is that step)."""
    out = {}
    for cfg in C.CANDIDATES.values():
        base = min(C.ABLATIONS.values(), key=lambda a: len(C.diff(a, cfg)))
        d = C.diff(base, cfg)
        out[cfg.name] = f"{base.name} + {C.format_diff(d)}" if d else f"= {base.name}"
    return out


def run_plan(names: list[str], seeds: list[int] | None, runs: str | Path) -> list[tuple[C.ExperimentConfig, Path]]:
    """(config, run folder) for each named experiment (names or entry numbers; none or 'all': every registered one,
    each name checked before anything runs), once per seed: RUNS/NN_name, or with SEEDS RUNS/NN_name/seedS (the
    notebooks' layout) with the config's seed set."""
    configs = list(C.REGISTRY.values()) if not names or names == ["all"] else [C.get_config(n) for n in names]
    plan = []
    for cfg in configs:
        for seed in seeds or [None]:
            plan.append(
                (cfg, entry_dir(runs, cfg)) if seed is None else (replace(cfg, seed=seed), seed_dir(runs, cfg, seed))
            )
    return plan
