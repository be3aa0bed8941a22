"""Train one experiment config: seeding, device choice, losses, the epoch loop and the best checkpoint."""
from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import CheckpointError, atomic_write, preprocessing_for, save_checkpoint
from .config import CLASSES, ExperimentConfig, diff, format_diff
from .data import DEFAULT_CACHE, DecodedCache, XRayData, XRayDataset, prescan, subsample
from .evaluate import Scores, choose_threshold, predict_samples
from .models import build_model
from .transforms import build_train_transform


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask for deterministic kernels where cheap."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    torch.backends.cudnn.benchmark = False


def get_device(preference: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; asking for an absent device is an error, not a silent CPU run."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(preference)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA GPU on this machine")
    return dev


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


def make_loss(config: ExperimentConfig, class_counts: list[int]) -> nn.Module:
    if config.loss == "focal":
        return FocalLoss(config.focal_gamma, config.focal_alpha)
    if config.loss != "ce":
        raise ValueError(f"unknown loss {config.loss!r} (ce | focal)")
    weight = None
    if config.class_weighting == "balanced":
        counts = torch.tensor(class_counts, dtype=torch.float32)
        weight = counts.sum() / (len(counts) * counts)
    elif config.class_weighting != "none":
        raise ValueError(f"unknown class_weighting {config.class_weighting!r} (none | balanced)")
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def make_optimizer(config: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay,
                               nesterov=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r} (adam | adamw | sgd)")


STATE_FILE = "last.pt"  # the training state after the last completed epoch, for --resume
STATE_FORMAT = "pneumolib-train-state/1"


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate()}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(s["python"])


def load_train_state(run_dir: str | Path, config: ExperimentConfig) -> dict[str, Any] | None:
    """The saved training state of run_dir, if any; refused (naming the fields) if it is another config's."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: unreadable training state ({type(e).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a pneumolib training state; delete it to start over")
    saved = ExperimentConfig.from_dict(state["config"])
    if saved.training_key() != config.training_key():
        raise CheckpointError(f"{path}: saved for a different config ({format_diff(diff(saved, config))}); "
                              "delete it or use another --out")
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


def _epoch_loader(config, data, pre, transform, cache, epoch):
    train = subsample(data["train"], config.max_train_images, seed=config.seed * 1000 + epoch)
    ds = XRayDataset(train, pre, transform, cache)
    g = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    if config.sampler == "balanced":
        labels = torch.tensor([s.label for s in train])
        w = 1.0 / torch.bincount(labels, minlength=len(CLASSES)).float()[labels]
        sampler = torch.utils.data.WeightedRandomSampler(w, num_samples=len(train), replacement=True, generator=g)
        return torch.utils.data.DataLoader(ds, batch_size=config.batch_size, sampler=sampler, drop_last=len(ds) > config.batch_size)
    if config.sampler != "shuffle":
        raise ValueError(f"unknown sampler {config.sampler!r} (shuffle | balanced)")
    return torch.utils.data.DataLoader(ds, batch_size=config.batch_size, shuffle=True, generator=g,
                                       drop_last=len(ds) > config.batch_size)


def fit(config: ExperimentConfig, data: XRayData, out_dir: str | Path | None = None, *, device: str = "auto",
        cache: DecodedCache | None = None, strict: bool = False, log: Callable[[str], Any] | None = print,
        extra: dict[str, Any] | None = None, resume: bool = False) -> FitResult:
    """Train `config` on data['train'], validate each epoch on data['val'], keep the best epoch (lowest val loss),
    pick the decision threshold by the config's rule on validation, and save RUN_DIR/checkpoint.pt.

    With out_dir, the full training state (weights, optimizer, scheduler, RNG, history) is written atomically to
    RUN_DIR/last.pt after every epoch; resume=True continues from it and ends with the same weights as an
    uninterrupted run on the CPU."""
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    seed_everything(config.seed)
    dev = get_device(device)
    cache = cache or DEFAULT_CACHE
    pre = preprocessing_for(config)
    data = prescan(data, config.image_size, strict=strict, cache=cache)
    if data.hygiene and data.hygiene.n_problems:
        log(f"pre-scan of {data.root}:\n{data.hygiene.table()}")
    for e in data.bad_files:
        log(f"skipping unreadable file: {e}")
    model = build_model(config.model, config.in_channels, config.pretrained).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    counts = [sum(s.label == i for s in data["train"]) for i in range(len(CLASSES))]
    criterion = make_loss(config, counts).to(dev)
    opt = make_optimizer(config, model)
    transform = build_train_transform(config.train_transforms)
    n_per_epoch = len(subsample(data["train"], config.max_train_images, 0))
    steps = config.epochs * max(1, n_per_epoch // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if config.scheduler == "cosine" else None
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    history, best_loss, best_state, best_epoch, n_seen, train_time = [], math.inf, None, 0, 0, 0.0
    start = 1
    state = load_train_state(out_dir, config) if (resume and out_dir is not None) else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched and state["scheduler"]:
            sched.load_state_dict(state["scheduler"])
        history, best_loss, best_epoch = state["history"], state["best_loss"], state["best_epoch"]
        best_state, n_seen, train_time = state["best_state"], state["n_seen"], state["train_time"]
        _set_rng_state(state["rng"])
        start = state["epoch"] + 1
        log(f"resuming from {Path(out_dir) / STATE_FILE}: epoch {state['epoch']}/{config.epochs} was the last completed")
    elif resume:
        log("nothing to resume: no saved training state; starting from epoch 1")
    for epoch in range(start, config.epochs + 1):
        model.train()
        loader = _epoch_loader(config, data, pre, transform, cache, epoch)
        te, total, n = time.perf_counter(), 0.0, 0
        for x, y, _ in tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=None):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with amp:
                loss = criterion(model(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}, step {n // config.batch_size + 1}; "
                                         "stopping (the state of the last completed epoch is kept in last.pt)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            total += loss.item() * len(y)
            n += len(y)
        train_time += time.perf_counter() - te
        n_seen += n
        val = predict_samples(model, data["val"], pre, device=dev, tta=config.tta, cache=cache)
        row = _val_row(epoch, total / max(n, 1), val, criterion, dev)
        row["seconds"] = time.perf_counter() - te
        history.append(row)
        if row["val_loss"] < best_loss:
            best_loss, best_epoch = row["val_loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        if out_dir is not None:
            snapshot = {"format": STATE_FORMAT, "config": config.to_dict(), "epoch": epoch,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict() if sched else None, "history": history,
                        "best_loss": best_loss, "best_epoch": best_epoch, "best_state": best_state,
                        "n_seen": n_seen, "train_time": train_time, "rng": _rng_state()}
            atomic_write(Path(out_dir) / STATE_FILE, lambda tmp: torch.save(snapshot, tmp))
        # logged after the state is on disk: a run killed after this line resumes after this epoch
        log(f"epoch {epoch:>2}/{config.epochs}  train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"val AUC {row['val_auc']:.3f}  val acc@0.5 {row['val_acc']:.3f}  ({row['seconds']:.0f}s)")

    model.load_state_dict(best_state)
    val = predict_samples(model, data["val"], pre, device=dev, tta=config.tta, cache=cache)
    threshold = choose_threshold(config.threshold, val.labels, val.probs)
    seconds = time.perf_counter() - t0
    result = FitResult(model, config, history, best_epoch, threshold, val, seconds,
                       n_seen / train_time if train_time else float("nan"), notes=list(data.notes))
    if out_dir is not None:
        info = {"history": history, "best_epoch": best_epoch, "seconds": seconds, "device": str(dev),
                "train_images_per_s": result.train_images_per_s, **(extra or {})}
        result.checkpoint = save_checkpoint(Path(out_dir) / "checkpoint.pt", model, config, threshold, info)
        (Path(out_dir) / STATE_FILE).unlink(missing_ok=True)  # finished: checkpoint.pt supersedes it
    log(f"best epoch {best_epoch} (val loss {best_loss:.4f}); threshold {threshold:.3f} ({config.threshold}); "
        f"{seconds:.0f}s on {dev}, {result.train_images_per_s:.0f} train img/s")
    return result


def _val_row(epoch, train_loss, val: Scores, criterion, dev) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    y, p = val.labels, np.clip(val.probs, 1e-7, 1 - 1e-7)
    logits = torch.tensor(np.stack([np.log(1 - p), np.log(p)], 1), dtype=torch.float32, device=dev)
    with torch.no_grad():
        vloss = float(criterion(logits, torch.tensor(y, device=dev)))
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": vloss, "val_auc": auc,
            "val_acc": float(((p >= 0.5).astype(int) == y).mean())}
