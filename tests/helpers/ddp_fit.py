"""Run by tests/test_distributed.py under torchrun (or plain python for one process): three SGD steps of the baseline
on the fixture without augmentation, then each rank saves its loss curve and weights to OUT/rank<R>.pt.
With --also-per-rank BatchNorm, the same three steps follow in the same processes with BatchNorm per process, saved
to OUT/per_rank/rank<R>.pt (one launch of torchrun instead of two: each costs seconds of start-up)."""

import sys
from dataclasses import replace
from pathlib import Path

import torch

from pneumolib.core import distributed
from pneumolib.core.config import apply_profile
from pneumolib.data.dataset import discover
from pneumolib.data.fixture import fixture_dir
from pneumolib.studies.catalogue import get_config
from pneumolib.training.fit import fit

out = Path(sys.argv[1])
world = distributed.start(torch.device("cpu"))
runs = [(out, True)] + ([(out / "per_rank", False)] if "--also-per-rank" in sys.argv else [])
for folder, sync_bn in runs:
    cfg = replace(
        apply_profile(get_config("baseline"), "fixture"),
        epochs=1,
        batch_size=16,
        max_train_images=48,
        optimizer="sgd",
        lr=0.001,
        train_transforms=(("NORMAL", "none"), ("PNEUMONIA", "none")),
        seed=3,
        sync_bn=sync_bn,
    )
    r = fit(cfg, discover(fixture_dir(), seed=cfg.seed), device="cpu", world=world)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"history": r.history, "state": r.model.state_dict(), "world_size": world.size}, folder / f"rank{world.rank}.pt"
    )
distributed.stop()
