"""The experiment catalogue: the log's entries and their chain, the recipe, the ablations, the candidates; the claims.

`entries` holds the configs (each experiment a frozen `core.config.ExperimentConfig`, a small diff from the one it
changes), `MODIFIES` the log's chain; `claims` holds what the log asserted for each entry (imported on use: it
reads the verdict rule, and the 'experiments' command lists from here without it). Light on purpose (core only, no
torch)."""

from __future__ import annotations

from .entries import (  # noqa: F401 (re-exported: `catalogue.get_config(...)` and friends)
    ABLATIONS,
    BASELINE,
    CANDIDATES,
    CENTRAL_FOCUS_NORMAL,
    CENTRAL_FOCUS_PNEUMONIA,
    FOCAL_THRESHOLD,
    LOG_ENTRIES,
    MODIFIES,
    PRETRAINED,
    PRETRAINED_CENTRAL_FOCUS,
    RECOMMENDED,
    REGISTRY,
    REPORT_10,
    RGB_GRAYSCALE_MISMATCH,
    STRONG_NORMAL_AUG,
    UnknownExperiment,
    ablation_steps,
    candidate_steps,
    get_config,
    predecessor,
    previous,
    register,
    run_plan,
)
