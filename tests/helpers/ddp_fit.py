"""Run by tests/test_distributed.py under torchrun (or plain python for one process): three SGD steps of the baseline
on the fixture without augmentation, then each rank saves its loss curve and weights to OUT/rank<R>.pt."""
import sys
from dataclasses import replace
from pathlib import Path

import torch

from pneumolib.core import distributed
from pneumolib.core.config import apply_profile, get_config
from pneumolib.data.dataset import discover
from pneumolib.data.fixture import fixture_dir
from pneumolib.training.fit import fit

out, sync_bn = Path(sys.argv[1]), "--no-sync-bn" not in sys.argv
world = distributed.start(torch.device("cpu"))
cfg = replace(apply_profile(get_config("baseline"), "fixture"), epochs=1, batch_size=16, max_train_images=48,
              optimizer="sgd", lr=0.001, train_transforms=(("NORMAL", "none"), ("PNEUMONIA", "none")), seed=3, sync_bn=sync_bn)
r = fit(cfg, discover(fixture_dir(), seed=cfg.seed), device="cpu", world=world)
out.mkdir(parents=True, exist_ok=True)
torch.save({"history": r.history, "state": r.model.state_dict(), "world_size": world.size},
           out / f"rank{world.rank}.pt")
distributed.stop()
