"""Training the lung segmenter: the U-Net from random init on annotated lung masks, with scanner-like augmentation.

Its own module (the segmenter's inference, crop geometry and check live in data.lungs), so that the data layer holds
no training loop."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..core.io import DataError
from ..core.runtime import generator, seed_everything
from ..data.augment import ColorJitter, RandomGamma, RandomNoise, RandomResolution
from ..data.lungs import INPUT, UNET, LungSegmenter, build_unet, calibrate_check, discover_masks, read_mask, stack_pairs

log = logging.getLogger(__name__)

__all__ = ["PairAugment", "train_segmenter"]


class PairAugment(torch.nn.Module):
    """The project's scanner-like changes for segmentation: the same random geometry for film and mask (kornia),
    then grey-level changes (gamma, brightness and contrast, resolution, noise) for the film only."""

    def __init__(self):
        super().__init__()
        import kornia.augmentation as K

        self.geometry = K.AugmentationSequential(
            K.RandomAffine(degrees=12.0, translate=(0.08, 0.08), scale=(0.8, 1.15), shear=6.0, p=0.9),
            data_keys=["input", "mask"],
        )
        self.grey = torch.nn.Sequential(
            RandomGamma(0.6, 1.6), ColorJitter(0.3, 0.4), RandomResolution(0.35, 1.0, p=0.3), RandomNoise(15.0, p=0.3)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.geometry(x.float(), y)
        return self.grey(x).round().clamp(0, 255).to(torch.uint8), (y > 0.5).float()


def train_segmenter(
    data_dir: str | Path,
    *,
    epochs: int = 30,
    seed: int = 0,
    batch_size: int = 16,
    lr: float = 2e-3,
    channels: tuple[int, ...] = UNET["channels"],
    provenance: dict[str, Any] | None = None,
) -> tuple[LungSegmenter, list[dict[str, float]]]:
    """Train the U-Net from random init on the train masks (Dice + cross-entropy, MONAI's DiceCELoss), with
    PairAugment; keep the epoch with the best mean validation Dice (MONAI's DiceMetric at the segmenter's size)."""
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric

    t0 = time.perf_counter()
    train, val = _annotated_pairs(data_dir)
    x_tr, y_tr = stack_pairs(train)
    x_va, y_va = stack_pairs(val)
    seed_everything(seed)
    net = build_unet(channels)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn, metric = DiceCELoss(sigmoid=True), DiceMetric(include_background=True, reduction="mean")
    aug, g, step = PairAugment(), generator(seed), _stepper(net, opt, sched, loss_fn)
    history, best, best_state = [], -1.0, None
    for epoch in range(1, epochs + 1):
        net.train()
        te = time.perf_counter()
        order = torch.randperm(len(train), generator=g)
        with torch.random.fork_rng(devices=[]):  # the augmentation's draws belong to this run and epoch
            torch.manual_seed(seed * 100003 + epoch)
            total = _epoch_loss(step, aug, x_tr, y_tr, order, batch_size)
        vd = _val_dice(net, metric, x_va, y_va)
        _record_epoch(history, epoch, epochs, total / len(train), vd, te)
        if vd > best:
            best, best_state = vd, {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    best_epoch = max(history, key=lambda h: h["val_dice"])["epoch"]
    prov = {
        **(provenance or {}),
        "data_dir": str(data_dir),
        "n_train": len(train),
        "n_val": len(val),
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "channels": list(channels),
        "best_epoch": best_epoch,
        "val_dice_at_size": best,
        "train_seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
    }
    check = calibrate_check([read_mask(p.mask) for p in train])  # the quality check's limits, from annotations
    return LungSegmenter(net.eval(), prov, check=check), history


def _annotated_pairs(data_dir: str | Path) -> tuple[list, list]:
    """The (film, mask) pairs of the train and val splits; both must have some."""
    pairs = discover_masks(data_dir)
    train, val = pairs.get("train", []), pairs.get("val", [])
    if not train or not val:
        raise DataError(
            f"{data_dir}: lung training needs annotated train and val masks (found {len(train)} train, {len(val)} val)"
        )
    return train, val


def _stepper(net: torch.nn.Module, opt, sched, loss_fn) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """One optimisation step per call on an augmented batch (films, masks); returns the step's loss."""

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        loss = loss_fn(net(INPUT(xb)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return float(loss.detach())

    return step


def _epoch_loss(
    step, aug: PairAugment, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int
) -> float:
    """One epoch of steps on augmented batches of the films in `order` (whole batches, at least one); the summed
    training loss."""
    total = 0.0
    for k in range(max(1, len(order) // batch_size)):
        idx = order[k * batch_size : (k + 1) * batch_size]
        total += step(*aug(x[idx], y[idx])) * len(idx)
    return total


def _record_epoch(history: list, epoch: int, epochs: int, train_loss: float, val_dice: float, te: float) -> None:
    """The epoch's history row (te: when it started), and its log line."""
    history.append(
        {"epoch": epoch, "train_loss": train_loss, "val_dice": val_dice, "seconds": time.perf_counter() - te}
    )
    log.info(
        "lungs epoch %2d/%d  loss %.4f  val Dice %.4f  (%.0fs)",
        epoch,
        epochs,
        train_loss,
        val_dice,
        time.perf_counter() - te,
    )


def _val_dice(net: torch.nn.Module, metric, x: torch.Tensor, y: torch.Tensor) -> float:
    """The mean validation Dice of the segmenter as it is (MONAI's DiceMetric at the segmenter's size); the network
    is left in training mode."""
    seg = LungSegmenter(net)
    metric.reset()
    metric((seg.probabilities(x) >= 0.5).float()[:, None], y)
    vd = float(metric.aggregate())
    net.train()
    return vd
