"""The installed pneumolib's version, read from its package metadata (pyproject.toml's, once installed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pneumolib")
except PackageNotFoundError:  # a source tree run without installing (PYTHONPATH=.)
    __version__ = "0+unknown"
