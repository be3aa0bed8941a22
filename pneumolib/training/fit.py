"""Train one experiment config: a trainer object owns the loop's state; the best epoch, its threshold, the checkpoint.

The losses, optimizers, schedulers and samplers by name (training.recipe) and the saved training state
(training.state) are re-exported here, where they always were."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..analysis.adapt import validation_calibration
from ..analysis.evaluate import Scores, fit_threshold, predict_samples
from ..analysis.ood import reference_for
from ..core.config import CLASSES, ExperimentConfig
from ..core.distributed import (
    SINGLE,
    World,
    all_sum,
    any_rank,
    broadcast_buffers,
    gather_in_order,
    rank_device,
    sync_batchnorm,
)
from ..core.io import atomic_write
from ..core.runs import RunDir
from ..core.runtime import autocast, generator, get_device, git_commit, seed_everything
from ..core.stats import auc_score
from ..data.augment import BatchAugment, prepare_batch
from ..data.dataset import XRayData, fingerprint, prescan, subsample
from ..data.resources import Resources
from ..models.checkpoint import CheckpointError, Predictor, preprocessing_for, save_checkpoint
from ..models.networks import Ensemble, build_model
from ..training.recipe import (  # noqa: F401 (re-exported: the run's ingredients by name, where they always were)
    LOSSES,
    OPTIMIZERS,
    SAMPLERS,
    SCHEDULERS,
    FocalLoss,
    epoch_loader,
    make_batch_augment,
    make_loss,
    make_optimizer,
    seed_worker,
    stream_seed,
)
from ..training.state import STATE_FORMAT, Progress, load_train_state  # noqa: F401 (STATE_FORMAT: re-exported)

logger = logging.getLogger(__name__)


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


def init_weights_from(model: nn.Module, checkpoint: str | Path, config: ExperimentConfig) -> None:
    """Start from a pneumolib checkpoint's weights (fine-tuning): same architecture and input channels, checked
    field by field with the checkpoint's own messages."""
    src = Predictor.load(checkpoint)
    if isinstance(src.model, Ensemble):
        raise CheckpointError(
            f"{checkpoint}: an ensemble of {len(src.model.members)} networks, not one; start from one member's "
            "checkpoint (RUN/members/seedN/checkpoint.pt)"
        )
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
    DataLoader processes serving decoded films (results do not depend on it). The films are decoded in the data's
    context (XRayData.resources), which the validation, threshold and OOD passes share."""
    trainer = _Trainer.start(
        config, data, out_dir, device=device, strict=strict, resume=resume, world=world, workers=workers
    )
    val = None  # (a run resumed after its last epoch trains no epoch here)
    for epoch in range(trainer.progress.start, config.epochs + 1):
        val = trainer.epoch(epoch)
    return trainer.finish(val, extra)


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


@dataclass
class _Trainer:
    """One training run's state, owned in one place: what it trains on (data, its context, preprocessing, the device, the
    world of processes, DataLoader workers), what it trains (model; net, the model or its DistributedDataParallel
    wrapper; synced: BatchNorm synced over processes), how (criterion, optimiser, scheduler, batch augmentation),
    where it writes (run, or None), and how far it got (progress: what last.pt saves and resume restores).
    Its methods are the loop's steps: an epoch (train, validate, save the state), and the finish."""

    config: ExperimentConfig
    data: XRayData
    resources: Resources  # the data's context: every pass decodes through its cache
    pre: Any
    dev: torch.device
    world: World
    workers: int
    model: nn.Module
    net: nn.Module
    synced: bool
    counts: list[int]  # training films per class
    criterion: nn.Module
    opt: torch.optim.Optimizer
    augment: BatchAugment
    sched: Any  # a per-step scheduler, or None
    run: RunDir | None
    data_fp: str  # data.fingerprint of the train and val files
    t0: float  # when fit() started
    progress: Progress = field(default_factory=Progress)

    @classmethod
    def start(cls, config: ExperimentConfig, data: XRayData, out_dir, *, device, strict, resume, world, workers):
        """Everything before the first epoch, in the order that fixes the random draws (the model initialisation
        draws from the global torch RNG seeded here first); resumed from RUN_DIR/last.pt when asked."""
        t0 = time.perf_counter()
        seed_everything(config.seed)  # model initialisation draws from the global torch RNG
        dev = rank_device(get_device(device), world)
        pre = preprocessing_for(config)
        if data.hygiene is None:
            data = prescan(data, config.view, strict=strict)
            data.log_findings(logger)
        model, net, synced = _network(config, world, dev)
        counts = [sum(s.label == i for s in data["train"]) for i in range(len(CLASSES))]
        criterion = make_loss(config, counts).to(dev)
        opt = make_optimizer(config, model)
        augment = make_batch_augment(config).to(dev)
        n_per_epoch = len(subsample(data["train"], config.max_train_images, 0))
        sched = SCHEDULERS[config.scheduler](opt, config.epochs * max(1, n_per_epoch // config.batch_size))
        run = RunDir(out_dir) if out_dir is not None else None
        trainer = cls(
            config=config,
            data=data,
            resources=data.resources,
            pre=pre,
            dev=dev,
            world=world,
            workers=workers,
            model=model,
            net=net,
            synced=synced,
            counts=counts,
            criterion=criterion,
            opt=opt,
            augment=augment,
            sched=sched,
            run=run,
            data_fp=fingerprint(data),
            t0=t0,
        )
        trainer.resume_from(out_dir, resume)
        return trainer

    def resume_from(self, out_dir, resume: bool) -> None:
        """Continue from out_dir's saved training state, if resume asks and there is one."""
        run, world = self.run, self.world
        state = (
            load_train_state(out_dir, self.config, self.data_fp, world_size=world.size)
            if (resume and run is not None)
            else None
        )
        if state is not None:
            self.progress.restore(state, self.model, self.opt, self.sched)
            logger.info(
                "resuming from %s: epoch %d/%d was the last completed", run.state, state["epoch"], self.config.epochs
            )
        elif resume:
            logger.info("nothing to resume: no saved training state; starting from epoch 1")

    def epoch(self, epoch: int) -> Scores:
        """One epoch: train, validate, record; rank 0 saves the training state, then the epoch is logged. Returns
        the epoch's validation scores."""
        te = time.perf_counter()
        total, n = self.train_epoch(epoch)
        self.progress.train_time += time.perf_counter() - te
        self.progress.n_seen += n
        val, row = self.validate(epoch, total / max(n, 1))
        row["seconds"] = time.perf_counter() - te
        self.progress.record(row, self.model)
        self.save_state(epoch)
        # logged after the state is on disk: a run killed after this line resumes after this epoch
        logger.info(
            "epoch %2d/%d  train loss %.4f  val loss %.4f  val AUC %.3f  val acc@0.5 %.3f  (%.0fs)",
            epoch,
            self.config.epochs,
            row["train_loss"],
            row["val_loss"],
            row["val_auc"],
            row["val_acc"],
            row["seconds"],
        )
        return val

    def train_epoch(self, epoch: int) -> tuple[float, int]:
        """One epoch of steps; (summed training loss, films seen), over every rank."""
        config, world, dev = self.config, self.world, self.dev
        # one augmentation stream per rank (a rank augments only its own films); rank 0 of 1 keeps the plain stream
        aug_stream = "augment" if not world.distributed else f"augment/rank{world.rank}of{world.size}"
        g_aug = generator(stream_seed(config.seed, epoch, aug_stream))
        self.model.train()
        loader, sizes = epoch_loader(config, self.data["train"], self.resources, epoch, world, self.workers)
        amp = autocast(dev)
        total, n = 0.0, 0
        for (x, y, _), n_global in zip(
            tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=None if world.is_main else True),
            sizes,
        ):
            x, y = prepare_batch(self.augment, self.pre, x, y, g_aug, dev)  # the bench times this same call
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                loss = self.criterion(self.net(x), y)
            if any_rank(not torch.isfinite(loss), world):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch}, step {n // config.batch_size + 1}"
                    f"{f' (on one of {world.size} processes)' if world.distributed else ''}; "
                    "stopping (the state of the last completed epoch is kept in last.pt)"
                )
            self.opt.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks: weigh each rank's mean by its share of the global batch, so the
            # step is the global batch's mean-loss step even when the batch does not split evenly
            (loss * (len(y) * world.size / n_global) if world.distributed else loss).backward()
            self.opt.step()
            if self.sched:
                self.sched.step()
            total += loss.item() * len(y)
            n += len(y)
        total, n = (all_sum([total, n], world)) if world.distributed else (total, n)
        return total, int(n)

    def validate(self, epoch: int, train_loss: float) -> tuple[Scores, dict[str, float]]:
        """The epoch's validation scores (shared out over the ranks) and its history row."""
        broadcast_buffers(self.model, self.world)
        val = predict_split(
            self.model,
            self.data["val"],
            self.pre,
            world=self.world,
            device=self.dev,
            tta=self.config.tta,
            resources=self.resources,
        )
        return val, _val_row(epoch, train_loss, val, self.criterion, self.dev)

    def save_state(self, epoch: int) -> None:
        """Rank 0, with a run folder: the training state after this epoch, atomically to RUN_DIR/last.pt."""
        if self.run is not None and self.world.is_main:
            p = self.progress
            snapshot = p.snapshot(self.config, self.data_fp, epoch, self.model, self.opt, self.sched, self.world.size)
            atomic_write(self.run.state, lambda tmp: torch.save(snapshot, tmp))

    def keep_last_epoch(self) -> None:
        """The last epoch's weights, when another epoch was kept: both get test metrics."""
        p, run = self.progress, self.run
        last_epoch = p.history[-1]["epoch"] if p.history else 0
        if last_epoch != p.best_epoch:
            last = {"epoch": last_epoch, "state_dict": self.model.state_dict()}
            atomic_write(run.last_epoch, lambda tmp: torch.save(last, tmp))
        else:
            run.last_epoch.unlink(missing_ok=True)

    def finish(self, val: Scores | None, extra: dict[str, Any] | None) -> FitResult:
        """After the last epoch: the best epoch's weights on a plain model; rank 0 goes on to conclude, the other
        ranks return (their FitResult carries no threshold)."""
        config, world, p = self.config, self.world, self.progress
        if self.run is not None and world.is_main:
            self.keep_last_epoch()
        model = self.model
        if self.synced or world.distributed:  # from here on rank 0 works alone, on a plain model (no collectives)
            model = build_model(config.model, config.in_channels, pretrained=False).to(self.dev)
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
                time.perf_counter() - self.t0,
                images_per_s,
                notes=list(self.data.notes),
            )
        return self.conclude(model, images_per_s, extra)

    def conclude(self, model: nn.Module, images_per_s: float, extra: dict[str, Any] | None) -> FitResult:
        """Rank 0 after the last epoch: the threshold and the OOD reference from one validation pass, the checkpoint."""
        config, data, pre, res, dev, p = self.config, self.data, self.pre, self.resources, self.dev, self.progress
        # one pass over the validation films: their scores (threshold) and features (the OOD reference's calibration)
        val = predict_samples(model, data["val"], pre, device=dev, tta=config.tta, resources=res, features=True)
        threshold = fit_threshold(config.threshold, model, val, pre, tta=config.tta, resources=res, device=dev)
        ood = reference_for(
            model,
            data["train"],
            data["val"],
            pre,
            val_features=val.features,
            seed=config.seed,
            resources=res,
            device=dev,
        )
        seconds = time.perf_counter() - self.t0
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
        if self.run is not None:
            self.save_checkpoint(result, extra)
        logger.info(
            "best epoch %d (val loss %.4f); threshold %.3f (%s); %.0fs on %s%s, %.0f train img/s",
            p.best_epoch,
            p.best_loss,
            threshold,
            config.threshold,
            seconds,
            dev,
            f" x {self.world.size} processes" if self.world.distributed else "",
            images_per_s,
        )
        return result

    def save_checkpoint(self, result: FitResult, extra: dict[str, Any] | None) -> None:
        """RUN_DIR/checkpoint.pt with the run's record (history, timings, data, OOD reference, calibration, commit);
        it supersedes last.pt, which goes."""
        info = {
            "history": self.progress.history,
            "best_epoch": self.progress.best_epoch,
            "seconds": result.seconds,
            "device": str(self.dev),
            "train_images_per_s": result.train_images_per_s,
            "class_counts": dict(zip(CLASSES, self.counts)),
            "data_fingerprint": self.data_fp,
            "ood": result.ood,
            "world_size": self.world.size,
            "val_calibration": result.calibration,  # adapt's prior guard
            "commit": result.commit,
            **(extra or {}),
        }  # the code that trained it, printed whenever it is reused
        result.checkpoint = save_checkpoint(self.run.checkpoint, result.model, self.config, result.threshold, info)
        self.run.state.unlink(missing_ok=True)  # finished: checkpoint.pt supersedes it


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
