"""A run's saved training state (RUN_DIR/last.pt): its format, its checks before a resume, the progress it carries."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import ExperimentConfig, diff, format_diff
from ..core.io import CheckpointError
from ..core.runs import RunDir

STATE_FORMAT = "pneumolib-train-state/1"


def load_train_state(
    run_dir: str | Path, config: ExperimentConfig, data_fingerprint: str | None = None, world_size: int = 1
) -> dict[str, Any] | None:
    """The saved training state of run_dir, if any; refused in one line (naming what differs) if it is another
    config's, was trained on other data (data.fingerprint of the train and val files), or by another number of
    processes (the shards and augmentation streams depend on it)."""
    path = RunDir(run_dir).state
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: unreadable training state ({type(e).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a pneumolib training state; delete it to start over")
    saved = ExperimentConfig.from_dict(state["config"])
    if saved.training_key() != config.training_key():
        raise CheckpointError(
            f"{path}: saved for a different config ({format_diff(diff(saved, config))}); "
            "delete it or train into another run folder"
        )
    if data_fingerprint is not None and state.get("data_fingerprint") != data_fingerprint:
        raise CheckpointError(
            f"{path}: saved for other data (train/val files {state.get('data_fingerprint')} -> "
            f"{data_fingerprint}); delete it or train into another run folder"
        )
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise CheckpointError(
            f"{path}: saved by a run of {saved_world} process(es), resumed with {world_size}; "
            f"resume with torchrun --nproc_per_node {saved_world} (in total), or delete it to start over"
        )
    return state


@dataclass
class Progress:
    """What an interrupted training needs to continue: the history, the best epoch so far and its weights, counts."""

    history: list = field(default_factory=list)
    best_loss: float = math.inf
    best_state: dict | None = None
    best_epoch: int = 0
    n_seen: int = 0
    train_time: float = 0.0
    start: int = 1

    def restore(self, state: dict, model, opt, sched) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched and state["scheduler"]:
            sched.load_state_dict(state["scheduler"])
        self.history, self.best_loss, self.best_epoch = state["history"], state["best_loss"], state["best_epoch"]
        self.best_state, self.n_seen, self.train_time = state["best_state"], state["n_seen"], state["train_time"]
        self.start = state["epoch"] + 1

    def record(self, row: dict, model) -> None:
        self.history.append(row)
        if row["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch = row["val_loss"], row["epoch"]
            self.best_state = copy.deepcopy(model.state_dict())

    def snapshot(self, config, data_fp: str, epoch: int, model, opt, sched, world_size: int) -> dict:
        return {
            "format": STATE_FORMAT,
            "config": config.to_dict(),
            "data_fingerprint": data_fp,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched else None,
            "history": self.history,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "n_seen": self.n_seen,
            "train_time": self.train_time,
            "world_size": world_size,
        }
