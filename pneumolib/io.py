"""Atomic file writes and JSON: the bottom layer every module that saves something uses."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


class CheckpointError(ValueError):
    """A checkpoint (or saved weights) that cannot be used; str() is one line naming the file and the problem."""


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Write through a temp file in the same folder and rename, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_json(obj: Any, path: str | Path) -> Path:
    """JSON (indented, non-JSON values as str), written atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str)
    return atomic_write(path, write)


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
