"""Several processes through torch.distributed (launched by torchrun): who this process is, the sharded batches, BatchNorm synced across processes, gathers."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one training run: rank 0 of 1 without torchrun."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def launched() -> World:
    """The World torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); SINGLE without it."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return SINGLE
    return World(rank, size, local) if size > 1 else SINGLE


def current() -> World:
    """The World of the initialised process group, SINGLE when there is none (a plain `python -m pneumolib`)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return SINGLE


def start(device: torch.device) -> World:
    """Join the process group torchrun set up: NCCL for CUDA, gloo otherwise. A no-op in a single process."""
    world = launched()
    if not world.distributed or dist.is_initialized():
        return current()
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device this rank trains on: its own GPU (LOCAL_RANK) under torchrun, else `device` as it is."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def shard_batches(
    order: Sequence[int], batch_size: int, world: World, drop_last: bool
) -> tuple[list[list[int]], list[int]]:
    """Cut one global draw into global batches of batch_size (the last dropped if short and drop_last), and give
    this rank every world.size-th index of each: (this rank's batches, each global batch's size). The ranks'
    batches are disjoint and their union is exactly the single-process batch, for any world size."""
    if batch_size < world.size:
        raise ValueError(f"batch size {batch_size} is smaller than the {world.size} processes: each needs a film")
    order = [int(i) for i in order]
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and chunks and len(chunks[-1]) < batch_size:
        chunks.pop()
    return [c[world.rank :: world.size] for c in chunks], [len(c) for c in chunks]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. decoding into the shared disk cache), the others after it."""
    if not world.is_main:
        barrier(world)
    yield
    if world.is_main:
        barrier(world)


def gather_in_order(local: Sequence[Any], n: int, world: World) -> list[Any]:
    """Items computed by each rank for indices rank, rank + size, ... (items[rank::size] of n) -> all n, in order,
    on every rank."""
    if not world.distributed:
        return list(local)
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, list(local))
    out: list[Any] = [None] * n
    for r, part in enumerate(parts):
        out[r :: world.size] = part
    return out


def all_sum(values: Sequence[float], world: World) -> list[float]:
    """Sum numbers over the ranks (float64, so counts stay exact)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if it is true on any (so all ranks stop together instead of one waiting forever)."""
    if not world.distributed:
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_buffers(model: nn.Module, world: World) -> None:
    """Rank 0's BatchNorm running statistics everywhere, so every rank validates the same model."""
    if world.distributed:
        for b in model.buffers():
            dist.broadcast(b, 0)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks with its gradient (the sum of the ranks' gradients): what SyncBatchNorm needs."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        dist.all_reduce(g)
        return g


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over every rank's batch, on any device.

    torch's SyncBatchNorm runs on GPUs only; this is its CPU (gloo) counterpart, used when training on CPU under
    torchrun: the per-channel count, sum and sum of squared deviations are all-reduced (differentiably), so the
    statistics, the gradients and the running averages are those of the global batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        c, shape = x.shape[1], (1, x.shape[1], 1, 1)
        n = torch.full((1,), x.numel() / c, dtype=torch.float64)
        dist.all_reduce(n)  # films x pixels over every rank
        n = n.to(x.dtype).to(x.device)
        # two passes (the mean, then squared deviations from it): E[x^2] - E[x]^2 loses the variance of a
        # nearly constant channel to cancellation, and with it the input gradient
        mean = _AllReduceSum.apply(x.sum((0, 2, 3))) / n
        d = x - mean.view(shape)
        var = _AllReduceSum.apply((d * d).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        y = d * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d synced across ranks: torch's SyncBatchNorm on CUDA, CpuSyncBatchNorm elsewhere. The
    state_dict keys do not change, so the weights load into a plain model."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CpuSyncBatchNorm):
            new = CpuSyncBatchNorm(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
            )
            new.load_state_dict(module.state_dict())
            return new
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)
