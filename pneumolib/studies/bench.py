"""Training throughput, side by side: the plain ImageFolder pipeline, pneumolib's pipeline, pure compute."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Any, Callable, Iterable

import torch
import torchvision.transforms as T
from torchvision.datasets.folder import default_loader

from ..core.config import apply_profile
from ..core.runtime import autocast, generator, get_device, seed_everything
from ..data.augment import BatchAugment, TrainBatches
from ..data.dataset import DecodedCache, XRayDataset, as_source, prepare
from ..data.resources import Resources
from ..models.checkpoint import preprocessing_for
from ..models.networks import build_model
from .catalogue import get_config


class _PlainFiles(torch.utils.data.Dataset):
    """What torchvision's ImageFolder does per item (PIL open, RGB, transforms), over a sample list, so a CSV
    manifest's films are timed the same way as a folder's."""

    def __init__(self, samples, transform):
        self.samples, self.transform = list(samples), transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        return self.transform(default_loader(str(s.path))), s.label


def _plain_loader(samples, image_size: int, batch_size: int, workers: int):
    # what the log did: ImageFolder-style per-sample PIL transforms, decoding every file every time
    t = T.Compose(
        [
            T.Resize((image_size, image_size)),
            T.RandomHorizontalFlip(0.5),
            T.RandomRotation(10),
            T.ColorJitter(brightness=0.2, contrast=0.2),
            T.Grayscale(num_output_channels=1),
            T.ToTensor(),
        ]
    )
    ds = _PlainFiles(samples, t)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True, persistent_workers=workers > 0
    )


def _repeat(loader) -> Iterable:
    while True:
        yield from loader


def _stepper(model, opt, batches: Iterable, device) -> Callable[[], int]:
    """One training step per call on the next batch; returns the number of images."""
    loss_fn = torch.nn.CrossEntropyLoss()
    amp = autocast(device)
    it = iter(batches)

    def step() -> int:
        x, y = next(it)[:2]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type == "cuda":  # as fit() trains on CUDA
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(y)

    return step


def _timed(step: Callable[[], int], k: int, device) -> tuple[int, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = sum(step() for _ in range(k))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n, time.perf_counter() - t0


def bench(
    data_dir,
    *,
    experiment: str = "baseline",
    device: str = "auto",
    image_size: int = 128,
    batch_size: int = 32,
    steps: int = 20,
    warmup: int = 3,
    workers: int = 0,
    rounds: int = 4,
) -> dict[str, Any]:
    """Train the experiment's model (random init) for `steps` steps through each pipeline and report images/s.

    plain: torchvision ImageFolder with the log's per-sample PIL transforms (what the log did, whatever the
    experiment); pipeline: what fit() does, uint8 batches from the decode cache, then the experiment's batched
    augmentation and preprocessing on the device (augment.TrainBatches); compute: one constant prepared batch.
    The timed steps run in `rounds` interleaved rounds (plain, pipeline, compute, plain, ...), so a machine
    whose load changes during the bench slows all three alike and their ratios stay meaningful."""
    dev = get_device(device)
    cfg = replace(
        apply_profile(get_config(experiment), "full"), image_size=image_size, batch_size=batch_size, pretrained=False
    )
    root = as_source(data_dir)  # a folder or a CSV manifest
    pre = preprocessing_for(cfg)
    data = prepare(root, seed=0, image_size=image_size, resources=Resources(DecodedCache()))  # decode once, as fit()
    ours = _pipeline_batches(cfg, data["train"], data.resources, pre, dev)
    x, y = next(iter(ours))[:2]  # pure compute: the same model fed one constant, augmented and preprocessed batch
    sources = {
        "plain": _repeat(_plain_loader(data["train"], image_size, batch_size, workers)),
        "pipeline": _repeat(ours),
        "compute": itertools.repeat((x, y)),
    }
    steppers = _warm_steppers(cfg, sources, warmup, dev)
    rounds = max(1, min(rounds, steps))
    totals = _interleaved(steppers, steps, rounds, dev)
    results = {f"{name}_img_s": n / sec for name, (n, sec) in totals.items()}
    results.update({f"{name}_images": n for name, (n, _) in totals.items()})  # what each rate was timed over
    results.update(
        device=str(dev),
        image_size=image_size,
        experiment=cfg.name,
        train_transforms=[list(t) for t in cfg.train_transforms],
        normalize=cfg.normalize,
        batch_size=batch_size,
        steps=steps,
        rounds=rounds,
        data_dir=str(root),
        threads=torch.get_num_threads(),
        workers=workers,
        pipeline_vs_plain=results["pipeline_img_s"] / results["plain_img_s"],
        pipeline_vs_compute=results["pipeline_img_s"] / results["compute_img_s"],
    )
    return results


def _pipeline_batches(cfg, train: list, resources: Resources, pre, dev) -> TrainBatches:
    """What fit() trains on: uint8 batches from the decode cache (of RESOURCES, the data's context), then the
    config's batched augmentation and preprocessing (pre) on the device."""
    loader = torch.utils.data.DataLoader(
        XRayDataset(train, None, None, resources, image_size=cfg.image_size),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator(0),
    )
    aug = BatchAugment.from_specs(cfg.train_transforms).to(dev)
    return TrainBatches(loader, aug, pre, generator(1), dev)


def _warm_steppers(cfg, sources: dict[str, Iterable], warmup: int, dev) -> dict[str, Callable[[], int]]:
    """A freshly seeded model and optimizer per source, each stepped `warmup` times untimed."""
    steppers = {}
    for name, batches in sources.items():
        seed_everything(0)
        # the plain loader serves 1-channel images, whatever the experiment's model takes
        model = build_model(cfg.model, in_channels=1 if name == "plain" else cfg.in_channels).to(dev)
        if dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        steppers[name] = _stepper(model, torch.optim.Adam(model.parameters(), lr=1e-3), batches, dev)
        _timed(steppers[name], warmup, dev)
    return steppers


def _interleaved(steppers: dict[str, Callable[[], int]], steps: int, rounds: int, dev) -> dict[str, list]:
    """`steps` timed steps of each stepper in `rounds` interleaved rounds; per stepper [images, seconds]."""
    totals = {name: [0, 0.0] for name in steppers}
    for r in range(rounds):
        k = steps // rounds + (r < steps % rounds)
        for name, step in steppers.items():
            n, sec = _timed(step, k, dev)
            totals[name][0] += n
            totals[name][1] += sec
    return totals


def format_bench(r: dict[str, Any]) -> str:
    specs = ", ".join(f"{c} {s}" for c, s in r["train_transforms"])
    return (
        f"experiment {r['experiment']} ({specs}; normalize {r['normalize']})\n"
        f"device {r['device']}, {r['image_size']} px, batch {r['batch_size']}, {r['steps']} timed steps, "
        f"{r['threads']} threads, {r['workers']} loader workers, {r['rounds']} interleaved rounds\n"
        f"  plain ImageFolder + the log's PIL transforms  {r['plain_img_s']:8.1f} img/s\n"
        f"  pneumolib pipeline (batched augmentation)     {r['pipeline_img_s']:8.1f} img/s  "
        f"({r['pipeline_vs_plain']:.2f}x plain)\n"
        f"  pure compute (constant batch)                 {r['compute_img_s']:8.1f} img/s  "
        f"(pipeline at {r['pipeline_vs_compute']:.0%} of it)"
    )
