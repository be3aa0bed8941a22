"""Atomic file writes and JSON: the bottom layer every module that saves something uses."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


class CheckpointError(ValueError):
    """A checkpoint (or saved weights) that cannot be used; str() is one line naming the file and the problem."""


class DataError(ValueError):
    """A data folder that cannot be used; str() is one line naming the folder and the problem."""


class OutputError(ValueError):
    """An output place that cannot be written (a file where a folder is needed, no permission, a full disk);
    str() is one line naming it. Checked before the work that would fill it starts."""


class RecordError(ValueError):
    """A record in a run folder (metrics.json, an evaluation) that is not what pneumolib wrote there."""


def ensure_writable_dir(path: str | Path) -> Path:
    """Make the folder (and its parents) if needed and prove that a file can be created in it.

    Args:
        path: the output folder.

    Returns:
        The folder.

    Raises:
        OutputError: the path is a file, a parent is a file, or the folder cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; give a folder (or a new name) for the output")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".pneumolib-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write there ({e.strerror or e})") from None
    return path


def ensure_writable_file(path: str | Path) -> Path:
    """Check, before the work starts, that PATH can be written as a file: not a folder, its folder writable.

    Raises:
        OutputError: naming the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for the output")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: cannot write there (permission denied)")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


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


def load_record(path: str | Path) -> dict[str, Any] | None:
    """A JSON mapping this package wrote beside a checkpoint (a stress test, an audit), or None when the file is
    absent or is not such a mapping (damaged, or planted: it is data, never code, and is then recomputed)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        logging.getLogger(__name__).warning("%s: not a readable record, ignored (%s)", path, str(e)[:120])
        return None
    return rec if isinstance(rec, dict) else None
