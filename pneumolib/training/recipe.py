"""What a training run trains with and draws: its loss, optimizer, scheduler, sampler and augmentation by name.

The registries of the names config.py allows, and each epoch's own seeded random streams and training loader."""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import CLASSES, ExperimentConfig
from ..core.distributed import SINGLE, World, shard_batches
from ..core.registry import Registry
from ..core.runtime import generator
from ..data.augment import BatchAugment
from ..data.dataset import XRayDataset, subsample
from ..data.resources import Resources


class FocalLoss(nn.Module):
    """Focal loss on the 2-class softmax: mean of -alpha_t (1 - p_t)^gamma log p_t.

    alpha is the weight of PNEUMONIA (NORMAL gets 1 - alpha); None weighs both classes 1.
    gamma = 0 and alpha = None give plain cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        if self.alpha is not None:
            loss = loss * torch.where(target == 1, self.alpha, 1 - self.alpha)
        return loss.mean()

    def __repr__(self) -> str:
        return f"FocalLoss(gamma={self.gamma}, alpha={self.alpha})"


# Registries keyed by the names config.py allows (tests check the keys are the same sets): each name registered
# beside its implementation.
LOSSES = Registry("loss")  # name -> (config, class counts) -> the loss module
OPTIMIZERS = Registry("optimizer")  # name -> (config, parameters) -> the optimizer
SCHEDULERS = Registry("scheduler")  # name -> (optimizer, total steps) -> a per-step scheduler, or None
SAMPLERS = Registry("sampler")  # name -> (labels, generator) -> the training sampler


@LOSSES.register("ce")
def _ce(config: ExperimentConfig, class_counts: list[int]) -> nn.Module:
    weight = None
    if config.class_weighting == "balanced":
        counts = torch.tensor(class_counts, dtype=torch.float32)
        weight = counts.sum() / (len(counts) * counts)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


LOSSES.add("focal", lambda config, counts: FocalLoss(config.focal_gamma, config.focal_alpha))
OPTIMIZERS.add("adam", lambda c, params: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("adamw", lambda c, params: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add(
    "sgd", lambda c, params: torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay, nesterov=True)
)
SCHEDULERS.add("none", lambda opt, steps: None)
SCHEDULERS.add("cosine", lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps))


@SAMPLERS.register("shuffle")
def _shuffle_sampler(labels: torch.Tensor, g: torch.Generator):
    return torch.utils.data.RandomSampler(range(len(labels)), generator=g)


@SAMPLERS.register("balanced")
def _balanced_sampler(labels: torch.Tensor, g: torch.Generator):
    # each class drawn equally often: the model's prior is 50/50 instead of the folders' class mix
    w = 1.0 / torch.bincount(labels, minlength=len(CLASSES)).float()[labels]
    return torch.utils.data.WeightedRandomSampler(w, num_samples=len(labels), replacement=True, generator=g)


def make_loss(config: ExperimentConfig, class_counts: list[int]) -> nn.Module:
    return LOSSES[config.loss](config, class_counts)


def make_optimizer(config: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optimizer](config, model.parameters())


def stream_seed(seed: int, epoch: int, stream: str) -> int:
    """A 63-bit seed for one random stream ('sampling', 'augment') of one epoch of a run: every epoch's draws
    depend on (seed, epoch, stream) only, so a resumed run draws exactly what the uninterrupted one drew, and
    nothing outside the run (a plot, a notebook cell) can shift them."""
    digest = hashlib.sha256(f"pneumolib/{seed}/{epoch}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_worker(worker_id: int, base: int) -> None:
    """A DataLoader worker's RNGs seeded from the run (base) and its id, so decoding workers never share or leak
    random state (the items themselves draw nothing: augmentation runs on whole batches in the main process)."""
    seed = (base + worker_id) % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)
    import random

    random.seed(seed)


def epoch_loader(
    config: ExperimentConfig, train: list, resources: Resources, epoch: int, world: World = SINGLE, workers: int = 0
):
    """This epoch's training images as uint8 batches: one global draw by the run's own sampling stream, cut into
    global batches of config.batch_size and sharded across the ranks (distributed.shard_batches). Returns
    (loader over this rank's part of each batch, each global batch's size). The films are decoded through the
    cache of RESOURCES (the run's context)."""
    train = subsample(train, config.max_train_images, seed=config.seed * 1000 + epoch)
    ds = XRayDataset(train, None, None, resources, image_size=config.view)
    g = generator(stream_seed(config.seed, epoch, "sampling"))
    sampler = SAMPLERS[config.sampler](torch.tensor([s.label for s in train]), g)
    batches, sizes = shard_batches(list(sampler), config.batch_size, world, drop_last=len(ds) > config.batch_size)
    init = functools.partial(seed_worker, base=stream_seed(config.seed, epoch, f"workers/rank{world.rank}"))
    return torch.utils.data.DataLoader(
        ds, batch_sampler=batches, num_workers=workers, worker_init_fn=init if workers else None
    ), sizes


def make_batch_augment(config: ExperimentConfig) -> BatchAugment:
    """The training augmentation of a config, applied to whole uint8 batches on the training device."""
    return BatchAugment.from_specs(config.train_transforms)
