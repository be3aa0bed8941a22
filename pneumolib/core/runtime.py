"""Where and how a run computes: device choice, seeding, mixed precision."""

from __future__ import annotations

import contextlib
import random
import subprocess
from pathlib import Path

import numpy as np
import torch


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


def seed_everything(seed: int) -> None:
    """Seed the global Python, NumPy and torch RNGs (model initialisation draws from torch's) and ask for
    deterministic cuDNN kernels. Augmentation and sampling do not rely on this: they draw from generators the
    run owns (see train.RunGenerators). PYTHONHASHSEED cannot be set from inside a running interpreter, and
    nothing here depends on str hashing order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context elsewhere (CPU training stays in float32, bit-reproducible)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded from `seed`: the run's own stream, untouched by any other code."""
    return torch.Generator().manual_seed(int(seed))


def git_commit(repo: str | Path | None = None) -> str:
    """Short hash of HEAD, '+dirty' when the code (anything but the notebooks, whose outputs a render rewrites)
    differs from it; 'unknown' outside a git checkout."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if head.returncode:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)notebooks"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
