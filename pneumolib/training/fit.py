"""Train one experiment config: losses, optimizers, schedules and samplers by name, the epoch loop, the best checkpoint."""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..analysis.adapt import validation_calibration
from ..analysis.evaluate import Scores, fit_threshold, predict_samples
from ..analysis.ood import reference_for
from ..core.config import CLASSES, ExperimentConfig, diff, format_diff
from ..core.distributed import (
    SINGLE,
    World,
    all_sum,
    any_rank,
    broadcast_buffers,
    gather_in_order,
    rank_device,
    shard_batches,
    sync_batchnorm,
)
from ..core.io import atomic_write
from ..core.registry import Registry
from ..core.runs import RunDir
from ..core.runtime import autocast, generator, get_device, git_commit, seed_everything
from ..core.stats import auc_score
from ..data.augment import BatchAugment, prepare_batch
from ..data.dataset import DecodedCache, XRayData, XRayDataset, fingerprint, prescan, subsample
from ..models.checkpoint import CheckpointError, Predictor, preprocessing_for, save_checkpoint
from ..models.networks import build_model

logger = logging.getLogger(__name__)


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
class FitResult:
    model: nn.Module
    config: ExperimentConfig
    history: list[dict[str, float]]
    best_epoch: int
    threshold: float
    val_scores: Scores
    seconds: float
    train_images_per_s: float
    checkpoint: Path | None = None
    notes: list[str] = field(default_factory=list)
    ood: dict[str, Any] | None = None  # the out-of-distribution reference the checkpoint carries (ood.py)
    calibration: dict[str, Any] | None = None  # the validation calibration adapt's prior guard reads
    commit: str = "unknown"  # the code that trained it (runtime.git_commit), asked once per run


def seed_worker(worker_id: int, base: int) -> None:
    """A DataLoader worker's RNGs seeded from the run (base) and its id, so decoding workers never share or leak
    random state (the items themselves draw nothing: augmentation runs on whole batches in the main process)."""
    seed = (base + worker_id) % 2**32
    np.random.seed(seed)
    torch.manual_seed(seed)
    import random

    random.seed(seed)


def _epoch_loader(
    config: ExperimentConfig, train: list, cache: DecodedCache, epoch: int, world: World = SINGLE, workers: int = 0
):
    """This epoch's training images as uint8 batches: one global draw by the run's own sampling stream, cut into
    global batches of config.batch_size and sharded across the ranks (distributed.shard_batches). Returns
    (loader over this rank's part of each batch, each global batch's size)."""
    train = subsample(train, config.max_train_images, seed=config.seed * 1000 + epoch)
    ds = XRayDataset(train, None, None, cache, image_size=config.view)
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


def init_weights_from(model: nn.Module, checkpoint: str | Path, config: ExperimentConfig) -> None:
    """Start from a pneumolib checkpoint's weights (fine-tuning): same architecture and input channels, checked
    field by field with the checkpoint's own messages."""
    src = Predictor.load(checkpoint)
    problems = [
        f"{k}: checkpoint {a!r}, this run {b!r}"
        for k, a, b in (("model", src.config.model, config.model), ("in_channels", src.in_channels, config.in_channels))
        if a != b
    ]
    if problems:
        raise CheckpointError(f"{checkpoint}: cannot initialise from it ({'; '.join(problems)})")
    model.load_state_dict(src.model.state_dict())


def predict_split(model: nn.Module, samples: list, pre, *, world: World = SINGLE, **kw) -> Scores:
    """predict_samples, with the films shared out across ranks and the scores gathered back in order on every rank:
    each validation film is scored once, and the threshold rule sees all of them."""
    if not world.distributed:
        return predict_samples(model, samples, pre, **kw)
    local = predict_samples(model, samples[world.rank :: world.size], pre, **kw)
    probs = gather_in_order([float(p) for p in local.probs], len(samples), world)
    return Scores(list(samples), np.asarray(probs, dtype=local.probs.dtype))


def fit(
    config: ExperimentConfig,
    data: XRayData,
    out_dir: str | Path | None = None,
    *,
    device: str = "auto",
    cache: DecodedCache | None = None,
    strict: bool = False,
    extra: dict[str, Any] | None = None,
    resume: bool = False,
    world: World = SINGLE,
    workers: int = 0,
) -> FitResult:
    """Train `config` on data['train'], validate each epoch on data['val'], keep the best epoch (lowest val loss),
    pick the decision threshold by the config's rule on validation, and save RUN_DIR/checkpoint.pt.

    `data` is pre-scanned here unless it already was (experiment.run_experiment scans once and passes the
    cleaned sample lists on). Sampling and augmentation draw from generators seeded by (config.seed, epoch),
    so nothing outside the run shifts them. With out_dir, the training state (weights, optimizer, scheduler,
    history) is written atomically to RUN_DIR/last.pt after every epoch; resume=True continues from it and ends
    with the same weights as an uninterrupted run on the same CPU. config.init_from starts from a pneumolib
    checkpoint's weights instead of random init or ImageNet.

    Under torchrun (`world` of several ranks, process group started): DistributedDataParallel, each rank trains
    on its shard of every global batch (config.batch_size is the global batch), BatchNorm synced unless
    config.sync_bn is off, validation shared out and gathered; rank 0 alone writes last.pt and the checkpoint,
    and only rank 0's FitResult carries the threshold (the others return after the last epoch). `workers`:
    DataLoader processes serving decoded films (results do not depend on it)."""
    t0 = time.perf_counter()
    seed_everything(config.seed)  # model initialisation draws from the global torch RNG
    dev = rank_device(get_device(device), world)
    cache = data.cache if cache is None else cache
    pre = preprocessing_for(config)
    if data.hygiene is None:
        data = prescan(data, config.view, strict=strict, cache=cache)
        data.log_findings(logger)
    model, net, synced = _network(config, world, dev)
    counts = [sum(s.label == i for s in data["train"]) for i in range(len(CLASSES))]
    criterion = make_loss(config, counts).to(dev)
    opt = make_optimizer(config, model)
    augment = make_batch_augment(config).to(dev)
    n_per_epoch = len(subsample(data["train"], config.max_train_images, 0))
    sched = SCHEDULERS[config.scheduler](opt, config.epochs * max(1, n_per_epoch // config.batch_size))
    run = RunDir(out_dir) if out_dir is not None else None
    data_fp = fingerprint(data)
    p = _Progress()
    state = load_train_state(out_dir, config, data_fp, world_size=world.size) if (resume and run is not None) else None
    if state is not None:
        p.restore(state, model, opt, sched)
        logger.info("resuming from %s: epoch %d/%d was the last completed", run.state, state["epoch"], config.epochs)
    elif resume:
        logger.info("nothing to resume: no saved training state; starting from epoch 1")
    # one augmentation stream per rank (a rank augments only its own films); rank 0 of 1 keeps the plain stream
    aug_stream = "augment" if not world.distributed else f"augment/rank{world.rank}of{world.size}"
    val = None  # (a run resumed after its last epoch trains no epoch here)
    for epoch in range(p.start, config.epochs + 1):
        te = time.perf_counter()
        g_aug = generator(stream_seed(config.seed, epoch, aug_stream))
        total, n = _train_epoch(
            config, data, cache, epoch, world, workers, net, model, augment, pre, g_aug, dev, criterion, opt, sched
        )
        p.train_time += time.perf_counter() - te
        p.n_seen += n
        broadcast_buffers(model, world)
        val = predict_split(model, data["val"], pre, world=world, device=dev, tta=config.tta, cache=cache)
        row = _val_row(epoch, total / max(n, 1), val, criterion, dev)
        row["seconds"] = time.perf_counter() - te
        p.record(row, model)
        if run is not None and world.is_main:
            snapshot = p.snapshot(config, data_fp, epoch, model, opt, sched, world.size)
            atomic_write(run.state, lambda tmp: torch.save(snapshot, tmp))
        # logged after the state is on disk: a run killed after this line resumes after this epoch
        logger.info(
            "epoch %2d/%d  train loss %.4f  val loss %.4f  val AUC %.3f  val acc@0.5 %.3f  (%.0fs)",
            epoch,
            config.epochs,
            row["train_loss"],
            row["val_loss"],
            row["val_auc"],
            row["val_acc"],
            row["seconds"],
        )
    if run is not None and world.is_main:
        _keep_last_epoch(run, p, model)
    if synced or world.distributed:  # from here on rank 0 works alone, on a plain model (no collectives)
        model = build_model(config.model, config.in_channels, pretrained=False).to(dev)
    model.load_state_dict(p.best_state)
    images_per_s = p.n_seen / p.train_time if p.train_time else float("nan")
    if not world.is_main:
        return FitResult(
            model,
            config,
            p.history,
            p.best_epoch,
            float("nan"),
            val,
            time.perf_counter() - t0,
            images_per_s,
            notes=list(data.notes),
        )
    return _finish(config, data, model, pre, cache, dev, run, p, t0, images_per_s, counts, data_fp, world, extra)


@dataclass
class _Progress:
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


def _network(config: ExperimentConfig, world: World, dev: torch.device) -> tuple[nn.Module, nn.Module, bool]:
    """(the model, what the training steps call: the model or its DistributedDataParallel wrapper, whether its
    BatchNorm is synced over processes)."""
    model = build_model(config.model, config.in_channels, config.pretrained)
    if config.init_from:
        init_weights_from(model, config.init_from, config)
        logger.info("initialised from %s", config.init_from)
    synced = world.distributed and config.sync_bn
    if synced:
        model = sync_batchnorm(model, dev)
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net = model
    if world.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        logger.info(
            "DistributedDataParallel over %d processes (%s), global batch %d, BatchNorm %s",
            world.size,
            "nccl" if dev.type == "cuda" else "gloo",
            config.batch_size,
            "synced" if synced else "per process (sync_bn off)",
        )
    return model, net, synced


def _train_epoch(
    config, data, cache, epoch, world, workers, net, model, augment, pre, g_aug, dev, criterion, opt, sched
) -> tuple[float, int]:
    """One epoch of steps; (summed training loss, films seen), over every rank."""
    model.train()
    loader, sizes = _epoch_loader(config, data["train"], cache, epoch, world, workers)
    amp = autocast(dev)
    total, n = 0.0, 0
    for (x, y, _), n_global in zip(
        tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=None if world.is_main else True), sizes
    ):
        x, y = prepare_batch(augment, pre, x, y, g_aug, dev)  # the bench times this same call
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            loss = criterion(net(x), y)
        if any_rank(not torch.isfinite(loss), world):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {epoch}, step {n // config.batch_size + 1}"
                f"{f' (on one of {world.size} processes)' if world.distributed else ''}; "
                "stopping (the state of the last completed epoch is kept in last.pt)"
            )
        opt.zero_grad(set_to_none=True)
        # DDP averages gradients over ranks: weigh each rank's mean by its share of the global batch, so the
        # step is the global batch's mean-loss step even when the batch does not split evenly
        (loss * (len(y) * world.size / n_global) if world.distributed else loss).backward()
        opt.step()
        if sched:
            sched.step()
        total += loss.item() * len(y)
        n += len(y)
    total, n = (all_sum([total, n], world)) if world.distributed else (total, n)
    return total, int(n)


def _keep_last_epoch(run: RunDir, p: _Progress, model: nn.Module) -> None:
    """The last epoch's weights, when another epoch was kept: both get test metrics."""
    last_epoch = p.history[-1]["epoch"] if p.history else 0
    if last_epoch != p.best_epoch:
        last = {"epoch": last_epoch, "state_dict": model.state_dict()}
        atomic_write(run.last_epoch, lambda tmp: torch.save(last, tmp))
    else:
        run.last_epoch.unlink(missing_ok=True)


def _finish(
    config,
    data,
    model,
    pre,
    cache,
    dev,
    run,
    p: _Progress,
    t0: float,
    images_per_s: float,
    counts,
    data_fp: str,
    world: World,
    extra,
) -> FitResult:
    """Rank 0 after the last epoch: the threshold and the OOD reference from one validation pass, the checkpoint."""
    # one pass over the validation films: their scores (threshold) and features (the OOD reference's calibration)
    val = predict_samples(model, data["val"], pre, device=dev, tta=config.tta, cache=cache, features=True)
    threshold = fit_threshold(config.threshold, model, val, pre, tta=config.tta, cache=cache, device=dev)
    ood = reference_for(
        model, data["train"], data["val"], pre, val_features=val.features, seed=config.seed, cache=cache, device=dev
    )
    seconds = time.perf_counter() - t0
    result = FitResult(
        model,
        config,
        p.history,
        p.best_epoch,
        threshold,
        val,
        seconds,
        images_per_s,
        notes=list(data.notes),
        ood=ood,
        commit=git_commit(),
        calibration=validation_calibration(val.labels, val.probs, threshold, val.features, seed=config.seed),
    )
    if run is not None:
        info = {
            "history": p.history,
            "best_epoch": p.best_epoch,
            "seconds": seconds,
            "device": str(dev),
            "train_images_per_s": images_per_s,
            "class_counts": dict(zip(CLASSES, counts)),
            "data_fingerprint": data_fp,
            "ood": ood,
            "world_size": world.size,
            "val_calibration": result.calibration,  # adapt's prior guard
            "commit": result.commit,
            **(extra or {}),
        }  # the code that trained it, printed whenever it is reused
        result.checkpoint = save_checkpoint(run.checkpoint, model, config, threshold, info)
        run.state.unlink(missing_ok=True)  # finished: checkpoint.pt supersedes it
    logger.info(
        "best epoch %d (val loss %.4f); threshold %.3f (%s); %.0fs on %s%s, %.0f train img/s",
        p.best_epoch,
        p.best_loss,
        threshold,
        config.threshold,
        seconds,
        dev,
        f" x {world.size} processes" if world.distributed else "",
        images_per_s,
    )
    return result


def _val_row(epoch, train_loss, val: Scores, criterion, dev) -> dict[str, float]:
    y, p = val.labels, np.clip(val.probs, 1e-7, 1 - 1e-7)
    logits = torch.tensor(np.stack([np.log(1 - p), np.log(p)], 1), dtype=torch.float32, device=dev)
    with torch.no_grad():
        vloss = float(criterion(logits, torch.tensor(y, device=dev)))
    auc = auc_score(y, p)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": vloss,
        "val_auc": auc,
        "val_acc": float(((p >= 0.5).astype(int) == y).mean()),
        # share of val films called PNEUMONIA at 0.5: 1.0 or 0.0 is the log's "everything one class" symptom
        "val_share_pneumonia": float((p >= 0.5).mean()),
    }
