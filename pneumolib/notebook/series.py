"""The notebook series' orchestration: one Series of settings passed explicitly, training or reusing each seed's run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from ..core.config import ExperimentConfig
from ..core.runs import RunDir, load_metrics, seed_dir, seed_dirs
from ..core.runtime import git_commit
from ..data.dataset import resolve_data_dir
from ..notebook.provenance import (  # noqa: F401 (RENDERED_FROM, stale_paths: re-exported)
    RENDERED_FROM,
    reuse_summary,
    show_library_log,
    sources_digest,
    stale_paths,
    tidy,
)
from ..studies.catalogue import REGISTRY, get_config
from ..studies.experiment import (
    RunResult,
    data_fingerprint,
    default_profile,
    resolve_config,
    run_experiment,
    training_differences,
)
from ..studies.experiment import adopt_twin as adopt_twin_run

BUDGET_FIELDS = ("epochs", "max_train_images", "image_size", "batch_size")


def seed_list(seeds: Iterable[int] | str | int | None) -> list[int]:
    """SEEDS as a list of ints, whether given as [0, 1, 2], '0,1,2' (papermill -p, the environment) or 0."""
    if seeds is None or seeds == "":
        return [0]
    if isinstance(seeds, int):
        return [seeds]
    if isinstance(seeds, str):
        return [int(s) for s in seeds.strip("[]() ").replace(" ", "").split(",") if s]
    return [int(s) for s in seeds]


def parse_budget(text: str | dict | None) -> dict[str, int]:
    """A training budget written 'epochs=3,max_train_images=1000' (papermill -p, the environment) as a dict; ''
    or None -> {}. Only the fields that size a run are accepted."""
    if not text:
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.isdigit():
                raise ValueError(
                    f"budget {text!r}: expected NAME=INTEGER pairs such as 'epochs=3,max_train_images=1000'"
                )
            items.append((key, int(value)))
    bad = [k for k, _ in items if k not in BUDGET_FIELDS]
    if bad:
        raise ValueError(f"budget {text!r}: unknown field(s) {', '.join(bad)}; allowed: {', '.join(BUDGET_FIELDS)}")
    return {k: int(v) for k, v in items}


@dataclass
class Series:
    """One notebook's settings: where the data and run folders are, the profile, device and seeds, the one budget
    every seed trains with, and when the notebook started. Made by start() and passed to every helper that needs it."""

    data: Path | None  # None = the bundled fixture
    profile: str
    device: str
    seeds: list[int]
    runs: Path
    budget: dict[str, int] = field(default_factory=dict)  # overrides of the profile, the same for every seed (seeds
    # trained at different budgets are never pooled, so a series never makes them)
    started: float = field(default_factory=time.perf_counter)
    roots: dict[str, str] = field(default_factory=dict)  # absolute prefix -> what outputs print instead
    probes: Any = field(default=None, repr=False)  # the shortcut audit's fitted probes, shared by this notebook's runs

    def tidy(self, text: str) -> str:
        return tidy(text, self.roots)

    def wall_time(self) -> str:
        return f"wall time: {(time.perf_counter() - self.started) / 60:.1f} min (from the provenance cell to here)"


def start(
    data_dir: str | None,
    profile: str | None,
    device: str = "auto",
    seeds=(0,),
    budget: str | dict | None = None,
    runs: str | Path = "runs",
) -> Series:
    """Resolve the data folder and the run size, print where the data comes from and what produced the outputs
    (pneumolib version, git commit, profile, device, seeds, the budget), start the clock."""
    from ..core.runtime import get_device
    from ..core.version import __version__

    root, is_fixture = resolve_data_dir(data_dir)
    profile = profile or default_profile(is_fixture, device)
    s = Series(
        None if is_fixture else root,
        profile,
        device,
        seed_list(seeds),
        Path(runs),
        parse_budget(budget),
        # outputs name the data folder and the run folders' root (the RUNS parameter), never their paths
        roots={str(root): root.name, str(Path(runs).resolve()): "RUNS"},
    )
    show_library_log(s.roots)
    if is_fixture:
        print(
            f"No data folder given: using the bundled synthetic fixture ({root.name}), profile '{profile}'. Every "
            "number below is about phantoms, not patients. For the real films, set DATA_DIR in the parameters cell "
            "(or PNEUMOLIB_DATA_DIR, or papermill -p DATA_DIR) to a Kaggle-layout folder, with SEEDS = [0, 1, 2, 3, 4]."
        )
    else:
        print(f"Data: the folder '{root.name}', profile '{profile}'.")
    n = len(s.seeds)
    print(
        f"pneumolib {__version__}, commit {git_commit()}; profile {profile}; device {get_device(device)}; "
        f"{n} seed{'s' if n != 1 else ''}: {', '.join(map(str, s.seeds))}; sources {sources_digest()}"
    )
    if s.budget:
        print(
            f"every seed trains with the '{profile}' profile's budget changed to "
            f"{', '.join(f'{k}={v}' for k, v in s.budget.items())} (what this machine can afford): the results are "
            "about that budget, not the profile's"
        )
    return s


def wanted_config(
    series: Series, config: ExperimentConfig, seed: int, overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """The config a seed's run trains (profile, the series' budget, missing ImageNet weights as random init)."""
    c, _ = resolve_config(
        replace(config, seed=seed),
        series.profile,
        {**series.budget, **(overrides or {})},
        on_missing_weights="random_init",
        warn=False,
    )  # the run itself says it, once
    return c


def adopt_twin(
    series: Series, config: ExperimentConfig, seed: int, run_dir: Path, overrides: dict[str, Any] | None = None
) -> Path | None:
    """Start an empty run folder from another run folder of this seed that trained exactly this config on the same
    data (experiment.adopt_twin), e.g. notebook 05's from-scratch run is notebook 04's when no ImageNet weights exist;
    its stress test and Grad-CAM results come along, so they are shown, not computed again. The log says so."""
    want = wanted_config(series, config, seed, overrides)
    return adopt_twin_run(
        run_dir, seed_dirs(series.runs, seed), want, "folders", lambda: data_fingerprint(series.data, want)
    )


def run_seeds(config: ExperimentConfig, series: Series, **kwargs) -> list[RunResult]:
    """Train (or reuse) one run per seed, in RUNS/NN_name/seed{S}; the seed is the config's `seed` field. Entries
    that ask for ImageNet weights train from random init when they are missing, and say so. Every seed trains with
    the series' one budget. A seed whose folder is empty starts from another entry's checkpoint when
    that entry trained exactly the same config on the same data (it is then re-evaluated, not retrained)."""
    kwargs.setdefault("on_missing_weights", "random_init")
    kwargs.setdefault("resume", True)  # an interrupted render continues its runs from their last finished epoch
    explicit = kwargs.pop("overrides", None) or {}
    with reuse_summary(series.roots):  # one line for the seeds' reused runs, not one each
        return [_run_seed(config, series, i, seed, explicit, kwargs) for i, seed in enumerate(series.seeds)]


def _run_seed(config: ExperimentConfig, series: Series, i: int, seed: int, explicit: dict, kwargs: dict) -> RunResult:
    """One seed of run_seeds."""
    cfg = replace(config, seed=seed)
    overrides = {**series.budget, **explicit}
    d = seed_dir(series.runs, config, seed)
    adopt_twin(series, cfg, seed, d, explicit)
    # the pre-scan's table is the same for every seed: logged once
    return run_experiment(
        cfg,
        series.data,
        d,
        profile=series.profile,
        device=series.device,
        overrides=overrides or None,
        log_findings=i == 0,
        **kwargs,
    )


def load_runs(entries: Iterable[str], series: Series) -> dict[str, list[dict]]:
    """Other notebooks' finished runs (their metrics.json, per seed), for the comparisons a claim needs. Only runs
    of this series' profile count; nothing is trained here. Says what it found."""
    out: dict[str, list[dict]] = {}
    for entry in entries:
        cfg = get_config(entry)
        found = []
        for seed in series.seeds:
            try:
                m = load_metrics(seed_dir(series.runs, cfg, seed))
            except FileNotFoundError:
                continue
            if m.get("profile") == series.profile:
                found.append(m)
        out[cfg.entry] = found
        seeds_found = ", ".join(str(m["config"]["seed"]) for m in found)
        print(
            f"entry {cfg.entry} ({cfg.name}): "
            + (
                f"seed(s) {seeds_found} loaded"
                if found
                else f"no finished '{series.profile}' run in its folder: run notebook {cfg.entry} first; claims that "
                "compare with it are not tested here"
            )
        )
    return out


def load_compared(entry: str, series: Series) -> dict[str, list[dict]]:
    """The finished runs of every entry ENTRY's claims compare with (`studies.verdicts.compared_with`: the entry it
    changes in the log's chain, and the baseline), by entry, so each comparison is judged, never left 'not tested'
    for want of a run list typed into the notebook; nothing is trained here."""
    from ..studies.verdicts import compared_with

    return load_runs(compared_with(entry), series)


def experiments_by_seed(series: Series) -> dict[str, list[dict]]:
    """Every registered experiment's metrics per seed: from its seed folder when that holds a finished run of the
    same training and data (experiment.training_differences), else trained now."""
    out: dict[str, list[dict]] = {}
    fps: dict[tuple[int, int], str] = {}  # (seed, image size) -> fingerprint: one pre-scan each
    with reuse_summary(series.roots):
        for cfg in REGISTRY.values():
            out[cfg.entry] = [_experiment_seed(series, cfg, seed, fps) for seed in series.seeds]
    return out


def _experiment_seed(series: Series, cfg: ExperimentConfig, seed: int, fps: dict[tuple[int, int], str]) -> dict:
    """One seed of experiments_by_seed: its finished run's metrics, or the run trained now."""
    want = wanted_config(series, cfg, seed)
    d = seed_dir(series.runs, cfg, seed)
    if RunDir(d).is_finished():
        key = (seed, want.image_size)
        if key not in fps:  # (setdefault would pre-scan the folder again for every entry)
            fps[key] = data_fingerprint(series.data, want)
        if not training_differences(d, want, "folders", fps[key]):
            return load_metrics(d)
    # as run_seeds trains it: a twin entry's run is adopted, an interrupted one resumed
    adopt_twin(series, replace(cfg, seed=seed), seed, d)
    return run_experiment(
        replace(cfg, seed=seed),
        series.data,
        d,
        profile=series.profile,
        device=series.device,
        overrides=series.budget or None,
        on_missing_weights="random_init",
        resume=True,
    ).metrics


def stress_seeds(results, series: Series) -> dict[str, Any]:
    """The stress test of every seed's run (cached in its run folder); each run's metrics keep the summary under
    'stress', for the verdicts."""
    from ..studies.stress import stress_run

    reports = {}
    for r in results:
        rep = stress_run(r.run_dir, series.data)
        r.metrics["stress"] = rep.summary()
        reports[f"{r.config.name}, seed {r.config.seed}"] = rep
    return reports


def holdout_list(holdouts: str | Iterable[str]) -> tuple[str, ...]:
    """The ablation's protocols as a tuple ('folders,early_ids' from papermill or the environment; 'none' or ''
    skips the ablation); says what this render leaves out."""
    items = [h for h in (holdouts.replace(" ", "").split(",") if isinstance(holdouts, str) else holdouts) if h]
    if items in ([], ["none"]):
        from ..studies.protocol import ablation_configs

        print(
            f"the ablation was not trained in this render (HOLDOUTS=none): its {len(ablation_configs()) - 1} steps "
            "after the baseline (each trained, or re-evaluated, once per seed) did not fit the time this render "
            "had; its table, the protocol ranking and their figure are left out here ('python -m pneumolib "
            "ablate' trains them)"
        )
        return ()
    bad = [h for h in items if h not in ("folders", "early_ids")]
    if bad or "folders" not in items:
        raise ValueError(
            f"HOLDOUTS {holdouts!r}: 'folders' plus optionally 'early_ids', or 'none' "
            f"(got {', '.join(bad) or 'no folders'})"
        )
    if "early_ids" not in items:
        print(
            "this render scores the steps on the random split and the stress test only: the early-ID holdout was "
            "not trained (HOLDOUTS), so its columns are left out of the ablation table and no protocol is ranked "
            "against it"
        )
    return tuple(items)


def ablation(
    series: Series, holdouts: str | Iterable[str] = ("folders", "early_ids"), skip: str | Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Notebook 10's ablation rows (protocol.score_steps) under the chosen protocols; [] when HOLDOUTS skips it.
    `skip` leaves side branches out ('abl_per_image'; SKIP_STEPS in the notebook), said in one line; a step on the
    path to the recipe cannot be skipped (every later step builds on it)."""
    chosen = holdout_list(holdouts)
    if not chosen:
        return []
    skip = {x for x in (skip.replace(" ", "").split(",") if isinstance(skip, str) else skip) if x}
    side = {"abl_per_image"}
    if skip - side:
        raise ValueError(
            f"SKIP_STEPS {', '.join(sorted(skip - side))}: only side branches can be left out "
            f"({', '.join(sorted(side))})"
        )
    if skip:
        print(
            f"left out of this render: {', '.join(sorted(skip))} (a side branch; "
            f"'python -m pneumolib ablate --steps {' '.join(sorted(skip))}' trains it)"
        )
    with reuse_summary(series.roots, unit="step"):
        return _score_steps(series, chosen, skip)


def _score_steps(series: Series, chosen: tuple[str, ...], skip: set[str]) -> list[dict[str, Any]]:
    from ..studies.protocol import ablation_configs, score_steps

    return score_steps(
        series.data,
        series.runs,
        profile=series.profile,
        device=series.device,
        configs=[c for c in ablation_configs() if c.name not in skip],
        holdouts=chosen,
        overrides=series.budget or None,
        seeds=tuple(series.seeds),
    )


def final_budget(series: Series, config: ExperimentConfig) -> dict[str, Any]:
    """Says, before the final model trains, which budget it gets: the recipe's own budget under the series' profile,
    or the render's one budget (series.budget, the same for every run of the series), in which case the recipe's own
    budget is not trained in this render. A seed ensemble (config.members) trains each member at that budget: the
    ablation's last step is one such network.

    Returns:
        the budget the final model trains at (image_size, epochs, max_train_images, batch_size).
    """
    from ..studies.protocol import budget_of, budget_words

    own = budget_of(config, series.profile)
    used = {**own, **series.budget}
    if used == own:
        print(f"the final model trains at the recipe's own '{series.profile}' budget: {budget_words(own)}")
    else:
        print(
            f"the final model trains at this render's one budget, {budget_words(used)}, like every other run of the "
            f"series{_members_words(config)}. The recipe's own '{series.profile}' budget ({budget_words(own)}) is "
            "not trained in this render; its figures here are about this render's budget"
        )
    return used


def _members_words(config: ExperimentConfig) -> str:
    if config.members > 1:
        return f": each of its {config.members} members (seeds S to S+{config.members - 1}) is one such network"
    return ": the same training as the ablation's last step"


def matched_baseline(series: Series, train: bool = True) -> dict[str, Any] | None:
    """Notebook 10's anchor pair at equal budget: the log's baseline at the recipe's budget, one run per seed
    (protocol.matched_baseline; a run of the same training, such as notebook 01's when the budgets agree, is
    re-evaluated, not retrained), pooled into one ablation row whose 'metrics_by_seed' the verdicts read; None,
    said in one line, when this render does not train it."""
    from ..studies.catalogue import RECOMMENDED
    from ..studies.protocol import budget_of, budget_words, pool_seeds

    b = {**budget_of(RECOMMENDED, series.profile), **series.budget}
    if not train:
        print(
            f"not trained in this render (MATCHED=False): the log's baseline at the recipe's budget "
            f"({budget_words(b)}) is one more full-length run; the claims that compare with it are marked not tested"
        )
        return None
    print(f"the log's baseline at the recipe's budget: {budget_words(b)}")
    by_seed = {}
    with reuse_summary(series.roots):
        for seed in series.seeds:
            by_seed[seed] = _matched_seed(series, seed, b)
    row = pool_seeds("baseline (recommended budget)", "the log's baseline, trained as long as the recipe", by_seed)
    row["metrics_by_seed"] = [one["metrics"] for one in by_seed.values()]
    return row


def _matched_seed(series: Series, seed: int, b: dict[str, Any]) -> dict[str, Any]:
    """One seed of matched_baseline: trained, or its finished run (or a twin's) re-evaluated."""
    from ..core.runs import matched_baseline_dir
    from ..studies.catalogue import BASELINE
    from ..studies.protocol import matched_baseline as train_matched

    adopt_twin(series, replace(BASELINE, seed=seed), seed, matched_baseline_dir(series.runs, seed), b)
    return train_matched(
        series.data,
        series.runs,
        profile=series.profile,
        device=series.device,
        overrides=series.budget or None,
        seed=seed,
    )


def load_matched_baseline(series: Series) -> list[dict]:
    """The matched baseline's finished runs (notebook 10's anchor pair; metrics.json with its stress test), one per
    seed found at this series' profile; nothing is trained here. Says what it found."""
    from ..core.runs import matched_baseline_dir

    found = []
    for seed in series.seeds:
        try:
            m = load_metrics(matched_baseline_dir(series.runs, seed))
        except FileNotFoundError:
            continue
        if m.get("profile") == series.profile:
            found.append(m)
    seeds_found = ", ".join(str(m["config"]["seed"]) for m in found)
    print(
        "the log's baseline at the recipe's budget (notebook 10): "
        + (
            f"seed(s) {seeds_found} loaded"
            if found
            else f"no finished '{series.profile}' run: render notebook 10 with MATCHED first; claims that compare with it "
            "are not tested here"
        )
    )
    return found


def matched_stress(matched: dict[str, Any] | None, series: Series) -> dict[str, Any]:
    """The matched baseline's stress reports (one per seed) keyed for notebook.stress_table; nothing when it was
    not trained."""
    from ..studies.stress import stress_run

    if not matched:
        return {}
    return {
        f"log's baseline, same budget, seed {seed}": stress_run(one["run_dir"], series.data)
        for seed, one in matched["by_seed"].items()
    }


def shortcut_audit(r, series: Series, split: str = "val") -> dict:
    """The shortcut audit of a run on one split of its data (shortcuts.audit_run: kept in its run folder)."""
    from ..studies.shortcuts import Probes, audit_run

    if series.probes is None:
        series.probes = Probes()
    return audit_run(r.run_dir, series.data, split=split, probes=series.probes)
