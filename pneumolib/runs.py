"""The run-folder layout, in one place: what a finished (or interrupted) run leaves in RUN_DIR."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"  # weights + config + preprocessing + threshold
STATE = "last.pt"  # training state after the last completed epoch (for --resume); removed when training ends
METRICS = "metrics.json"  # everything run_experiment measured
CONFIG = "config.json"  # the frozen config the run trained
SCORES_TEST = "scores_test.csv"  # per-image P(PNEUMONIA) on the test split
SCORES_VAL = "scores_val.csv"
STRESS = "stress.json"  # the stress test's rows, cached per checkpoint
EVALUATIONS = "evaluations"  # one JSON per cohort 'evaluate' scored with this checkpoint
CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder: `RunDir(path).checkpoint`, `.metrics`, ..."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def scores_test(self) -> Path:
        return self.path / SCORES_TEST

    @property
    def scores_val(self) -> Path:
        return self.path / SCORES_VAL

    @property
    def stress(self) -> Path:
        return self.path / STRESS

    @property
    def evaluations(self) -> Path:
        return self.path / EVALUATIONS

    @property
    def card(self) -> Path:
        return self.path / CARD

    def is_finished(self) -> bool:
        return self.checkpoint.is_file() and self.metrics.is_file()


def run_dir_name(entry: str, name: str) -> str:
    """'01_baseline': the folder name 'run' and the notebooks use for a registered experiment."""
    return f"{entry}_{name}" if entry else name


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's metrics.json, with the stress test's summary under 'stress' when stress.json exists."""
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise FileNotFoundError(f"{run.metrics}: no {METRICS} (is {run.path} a finished run folder?)")
    m = json.loads(run.metrics.read_text())
    if run.stress.is_file():  # written by 'python -m pneumolib stress RUN_DIR'
        m["stress"] = json.loads(run.stress.read_text()).get("summary")
    return m
