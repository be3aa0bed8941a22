"""Training throughput, side by side: the plain ImageFolder pipeline, pneumolib's pipeline, pure compute."""
from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import torch
import torchvision.transforms as T
from torchvision.datasets import ImageFolder

from .checkpoint import preprocessing_for
from .config import BASELINE, apply_profile
from .data import DecodedCache, XRayDataset, discover, prescan
from .models import build_model
from .train import get_device, seed_everything
from .transforms import build_train_transform


def _plain_loader(root: Path, image_size: int, batch_size: int, workers: int):
    # what the log did: torchvision ImageFolder and per-sample PIL transforms, decoding every file every time
    t = T.Compose([T.Resize((image_size, image_size)), T.RandomHorizontalFlip(0.5), T.RandomRotation(10),
                   T.ColorJitter(brightness=0.2, contrast=0.2), T.Grayscale(num_output_channels=1), T.ToTensor()])
    ds = ImageFolder(str(root / "train"), transform=t)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       drop_last=True, persistent_workers=workers > 0)


def _repeat(loader) -> Iterable:
    while True:
        yield from loader


def _time_steps(model, opt, batches: Iterable, steps: int, warmup: int, device) -> float:
    """Images per second over `steps` training steps, after `warmup` untimed ones."""
    loss_fn = torch.nn.CrossEntropyLoss()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    it = iter(batches)
    n, t0 = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        x, y = next(it)[:2]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with amp:
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def bench(data_dir: str | Path, *, device: str = "auto", image_size: int = 128, batch_size: int = 32,
          steps: int = 20, warmup: int = 3, workers: int = 0) -> dict[str, Any]:
    """Train the baseline ResNet18 for `steps` steps through each pipeline and report images/s."""
    dev = get_device(device)
    cfg = replace(apply_profile(BASELINE, "full"), image_size=image_size, batch_size=batch_size)
    root = Path(data_dir)
    pre = preprocessing_for(cfg)
    cache = DecodedCache()
    data = prescan(discover(root), image_size, cache=cache)  # decode once, as fit() does
    ours = torch.utils.data.DataLoader(
        XRayDataset(data["train"], pre, build_train_transform(cfg.train_transforms), cache),
        batch_size=batch_size, shuffle=True, drop_last=True)
    results = {}
    for name, batches in (("plain", _repeat(_plain_loader(root, image_size, batch_size, workers))),
                          ("pipeline", _repeat(ours)),
                          ("compute", None)):
        seed_everything(0)
        model = build_model("resnet18", in_channels=1).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        if batches is None:  # the same model fed one constant, already augmented batch
            x, y = next(iter(ours))[:2]
            batches = itertools.repeat((x, y))
        results[f"{name}_img_s"] = _time_steps(model, opt, batches, steps, warmup, dev)
    results.update(device=str(dev), image_size=image_size, batch_size=batch_size, steps=steps,
                   data_dir=str(root), threads=torch.get_num_threads(), workers=workers,
                   pipeline_vs_plain=results["pipeline_img_s"] / results["plain_img_s"],
                   pipeline_vs_compute=results["pipeline_img_s"] / results["compute_img_s"])
    return results


def format_bench(r: dict[str, Any]) -> str:
    return (f"device {r['device']}, {r['image_size']} px, batch {r['batch_size']}, {r['steps']} timed steps, "
            f"{r['threads']} threads, {r['workers']} loader workers\n"
            f"  plain ImageFolder + PIL transforms  {r['plain_img_s']:8.1f} img/s\n"
            f"  pneumolib pipeline                  {r['pipeline_img_s']:8.1f} img/s  "
            f"({r['pipeline_vs_plain']:.2f}x plain)\n"
            f"  pure compute (constant batch)       {r['compute_img_s']:8.1f} img/s  "
            f"(pipeline at {r['pipeline_vs_compute']:.0%} of it)")
